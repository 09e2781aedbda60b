//! `POST /v1/join/{name}` with a cloud instance's identity, fetched from
//! the emulator's metadata services: an EC2 identity document (`signature`
//! and `rsa2048`), a Compute Engine identity token, an Azure managed
//! identity token. Principals and key ids come from the instance's claims;
//! refused: another account / project / tenant or subscription, a tampered
//! document or token, the SHA-1 `pkcs7` signature, a wrong audience, a
//! second enrollment of the same instance, an instance launched too long
//! ago.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use base64::Engine;
use serde_json::{json, Value};
use support::*;

const GCP_AUDIENCE: &str = "https://ca.example.com/v1/join/gcp";
const AZURE_RESOURCE: &str = "api://sshca-join";
const TENANT: &str = "72f988bf-0000-4000-8000-00000000aaaa";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn seed(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("instances.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[instances.aws]]
account_id = "111111111111"
region = "eu-west-1"
instance_id = "i-0aaaaaaaaaaaaaaa1"

[[instances.aws]]
account_id = "111111111111"
region = "eu-west-1"
instance_id = "i-0aaaaaaaaaaaaaaa2"

[[instances.aws]]
account_id = "222222222222"
region = "eu-west-1"
instance_id = "i-0bbbbbbbbbbbbbbb1"

[[instances.aws]]
account_id = "111111111111"
region = "eu-west-1"
instance_id = "i-0aaaaaaaaaaaaaold"
pending_time = {old}

[[instances.gcp]]
project_id = "fleet-prod"
zone = "europe-west1-b"
instance_id = "4000000000000000001"
instance_name = "web-1"

[[instances.gcp]]
project_id = "someone-else"
zone = "europe-west1-b"
instance_id = "4000000000000000002"
instance_name = "web-2"

[[instances.azure]]
tenant_id = "{TENANT}"
subscription_id = "00000000-0000-4000-8000-0000000000s1"
resource_group = "Fleet-RG"
vm_name = "vm-1"
principal_id = "00000000-0000-4000-8000-00000000000a"

[[instances.azure]]
tenant_id = "{TENANT}"
subscription_id = "00000000-0000-4000-8000-0000000000s2"
resource_group = "Fleet-RG"
vm_name = "vm-2"
principal_id = "00000000-0000-4000-8000-00000000000b"
"#,
            old = now() - 3600
        ),
    )
    .unwrap();
    path
}

fn tables(cert: &std::path::Path) -> String {
    format!(
        r#"
[policy.aws_hosts]
ca = "users"
cert_type = "host"
valid_principals = ["{{claims.instance_id}}.{{claims.region}}.compute.internal"]
key_id = "{{claims.join}}-{{claims.account_id}}-{{claims.instance_id}}"

[join.aws]
method = "aws-iid"
policy = "aws_hosts"
certificates = ["{cert}"]
accounts = ["111111111111"]
regions = ["eu-west-1"]

[policy.gcp_hosts]
ca = "users"
cert_type = "host"
valid_principals = ["{{claims.instance_name}}.{{claims.zone}}.c.{{claims.project_id}}.internal"]
key_id = "{{claims.join}}-{{claims.instance_id}}"

[join.gcp]
method = "gcp-iit"
policy = "gcp_hosts"
audience = "{GCP_AUDIENCE}"
jwks = "gcp-jwks.json"
projects = ["fleet-prod"]

[policy.azure_hosts]
ca = "users"
cert_type = "host"
valid_principals = ["{{claims.vm_name}}.{{claims.resource_group}}.example.net"]
key_id = "{{claims.join}}-{{claims.vm_name}}"

[join.azure]
method = "azure-msi"
policy = "azure_hosts"
audience = "{AZURE_RESOURCE}"
jwks = "azure-jwks.json"
tenants = ["{TENANT}"]
subscriptions = ["00000000-0000-4000-8000-0000000000S1"]
resource_groups = ["fleet-rg"]

[join.azure-again]
method = "azure-msi"
policy = "azure_hosts"
audience = "{AZURE_RESOURCE}"
jwks = "azure-jwks.json"
tenants = ["{TENANT}"]
subscriptions = ["00000000-0000-4000-8000-0000000000s1"]
allow_reenroll = true
"#,
        cert = cert.display()
    )
}

struct Meta {
    url: String,
    c: reqwest::Client,
}

impl Meta {
    async fn ec2(&self, instance: &str, what: &str) -> String {
        let token = self
            .c
            .put(format!("{}/latest/api/token", self.url))
            .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
            .header("X-Kms-Emulator-Instance", instance)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let r = self
            .c
            .get(format!(
                "{}/latest/dynamic/instance-identity/{what}",
                self.url
            ))
            .header("X-aws-ec2-metadata-token", token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    async fn gce(&self, instance: &str, audience: &str, format: &str) -> String {
        self.c
            .get(format!(
                "{}/computeMetadata/v1/instance/service-accounts/default/identity?audience={audience}&format={format}",
                self.url
            ))
            .header("Metadata-Flavor", "Google")
            .header("X-Kms-Emulator-Instance", instance)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn azure(&self, vm: &str, resource: &str) -> String {
        let v: Value = serde_json::from_str(
            &self
                .c
                .get(format!(
                    "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={resource}",
                    self.url
                ))
                .header("Metadata", "true")
                .header("X-Kms-Emulator-Instance", vm)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
        .unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }
}

async fn join(
    c: &reqwest::Client,
    svc: &Service,
    name: &str,
    key: &str,
    proof: Value,
) -> (u16, Value) {
    let r = c
        .post(format!("{}/v1/join/{name}", svc.url))
        .json(&json!({"public_keys": [key], "proof": proof}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn cert_of(v: &Value) -> sshca::core::Certificate {
    sshca::core::Certificate::from_openssh(v["certificates"][0].as_str().unwrap()).unwrap()
}

/// A JWT with one payload claim changed (the signature kept).
fn tampered(token: &str, claim: &str, value: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    payload[claim] = json!(value);
    format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(payload.to_string()),
        parts[2]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_join_by_their_cloud_identity() {
    let d = tempfile::tempdir().unwrap();
    let emu = kms_emulator::Emulator::start(kms_emulator::Config {
        seed: Some(seed(d.path())),
        ..Default::default()
    })
    .await
    .unwrap();
    let meta = Meta {
        url: emu.endpoints().metadata.clone(),
        c: reqwest::Client::new(),
    };
    let s = setup("", &tables(&emu.endpoints().metadata_aws_certificate));
    for (file, url) in [
        ("gcp-jwks.json", &emu.endpoints().metadata_gcp_jwks),
        ("azure-jwks.json", &emu.endpoints().metadata_azure_jwks),
    ] {
        let jwks = meta.c.get(url).send().await.unwrap().text().await.unwrap();
        std::fs::write(s.dir.join(file), jwks).unwrap();
    }
    let svc = Service::start(&s.config).await;
    let c = s.client(None);
    let key = s.pubkey("host");
    let (st, v) = get_json(&c, &svc, "/v1/join/gcp", None).await;
    assert_eq!(
        (st, v),
        (200, json!({"method": "gcp-iit", "audience": GCP_AUDIENCE}))
    );

    // EC2: the PKCS#7 `rsa2048` signature, then the plain one.
    let first = "i-0aaaaaaaaaaaaaaa1";
    let doc = meta.ec2(first, "document").await;
    let rsa2048 = meta.ec2(first, "rsa2048").await;
    let (st, v) = join(
        &c,
        &svc,
        "aws",
        &key,
        json!({"document": doc, "signature": rsa2048}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let cert = cert_of(&v);
    assert_eq!(cert.cert_type(), sshca::core::CertType::Host);
    assert_eq!(
        cert.principals(),
        ["i-0aaaaaaaaaaaaaaa1.eu-west-1.compute.internal"]
    );
    assert_eq!(cert.key_id(), "aws-111111111111-i-0aaaaaaaaaaaaaaa1");
    assert_eq!(v["principals"], json!(cert.principals()));
    // The same instance again (any signature): it joined already.
    let signature = meta.ec2(first, "signature").await;
    let (st, v) = join(
        &c,
        &svc,
        "aws",
        &key,
        json!({"document": doc, "signature": signature}),
    )
    .await;
    assert_eq!((st, code(&v)), (409, "join_instance_used"), "{v}");
    // A document changed after signing, with either signature.
    let second = "i-0aaaaaaaaaaaaaaa2";
    let doc2 = meta.ec2(second, "document").await;
    let forged = doc2.replace(second, "i-0aaaaaaaaaaaaaaa9");
    for sig in [
        meta.ec2(second, "signature").await,
        meta.ec2(second, "rsa2048").await,
    ] {
        let (st, v) = join(
            &c,
            &svc,
            "aws",
            &key,
            json!({"document": forged, "signature": sig}),
        )
        .await;
        assert_eq!((st, code(&v)), (401, "join_proof_invalid"), "{v}");
    }
    // The SHA-1 `pkcs7` signature is refused, naming what to send.
    let (st, v) = join(
        &c,
        &svc,
        "aws",
        &key,
        json!({"document": doc2, "signature": meta.ec2(second, "pkcs7").await}),
    )
    .await;
    assert_eq!((st, code(&v)), (401, "join_proof_invalid"), "{v}");
    assert!(message(&v).contains("SHA-1"), "{v}");
    // Another account; an instance launched an hour ago.
    let other = "i-0bbbbbbbbbbbbbbb1";
    let (st, v) = join(
        &c,
        &svc,
        "aws",
        &key,
        json!({
            "document": meta.ec2(other, "document").await,
            "signature": meta.ec2(other, "signature").await,
        }),
    )
    .await;
    assert_eq!((st, code(&v)), (403, "join_instance_refused"), "{v}");
    assert!(message(&v).contains("222222222222"), "{v}");
    let old = "i-0aaaaaaaaaaaaaold";
    let (st, v) = join(
        &c,
        &svc,
        "aws",
        &key,
        json!({
            "document": meta.ec2(old, "document").await,
            "signature": meta.ec2(old, "signature").await,
        }),
    )
    .await;
    assert_eq!((st, code(&v)), (401, "join_proof_stale"), "{v}");
    // The wrong shape of proof for the method.
    let (st, v) = join(&c, &svc, "aws", &key, json!({"token": "x"})).await;
    assert_eq!((st, code(&v)), (400, "bad_request"), "{v}");
    // Nothing but the first join was recorded; the instance's identity is
    // on the row.
    let rows = store(&s)
        .await
        .certs(&sshca_store::CertQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].requester_source.as_deref(), Some("join:aws"));
    assert_eq!(rows[0].requester, "111111111111/i-0aaaaaaaaaaaaaaa1");

    // Compute Engine.
    let token = meta.gce("web-1", GCP_AUDIENCE, "full").await;
    let (st, v) = join(&c, &svc, "gcp", &key, json!({"identity_token": token})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        cert_of(&v).principals(),
        ["web-1.europe-west1-b.c.fleet-prod.internal"]
    );
    let (st, v) = join(&c, &svc, "gcp", &key, json!({"identity_token": token})).await;
    assert_eq!((st, code(&v)), (409, "join_instance_used"), "{v}");
    for (proof, want) in [
        (
            meta.gce("web-2", GCP_AUDIENCE, "full").await,
            (403, "join_instance_refused"),
        ),
        (
            meta.gce("web-1", "https://elsewhere.example.com", "full")
                .await,
            (401, "token_audience"),
        ),
        (
            meta.gce("web-1", GCP_AUDIENCE, "standard").await,
            (401, "join_proof_invalid"),
        ),
        (
            tampered(
                &meta.gce("web-2", GCP_AUDIENCE, "full").await,
                "sub",
                "someone",
            ),
            (401, "token_signature"),
        ),
        ("not.a.jwt".to_owned(), (401, "token_malformed")),
    ] {
        let (st, v) = join(&c, &svc, "gcp", &key, json!({"identity_token": proof})).await;
        assert_eq!((st, code(&v)), want, "{v}");
    }

    // Azure: the subscription and resource group are compared without
    // case, as Azure does.
    let token = meta.azure("vm-1", AZURE_RESOURCE).await;
    let (st, v) = join(&c, &svc, "azure", &key, json!({"access_token": token})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(cert_of(&v).principals(), ["vm-1.Fleet-RG.example.net"]);
    let (st, v) = join(&c, &svc, "azure", &key, json!({"access_token": token})).await;
    assert_eq!((st, code(&v)), (409, "join_instance_used"), "{v}");
    // A join that allows enrolling again takes it twice.
    for _ in 0..2 {
        let (st, v) = join(
            &c,
            &svc,
            "azure-again",
            &key,
            json!({"access_token": token}),
        )
        .await;
        assert_eq!(st, 200, "{v}");
    }
    for (proof, want) in [
        (
            meta.azure("vm-2", AZURE_RESOURCE).await,
            (403, "join_instance_refused"),
        ),
        (
            meta.azure("vm-1", "https://management.azure.com/").await,
            (401, "token_audience"),
        ),
        (
            tampered(
                &token,
                "xms_mirid",
                "/subscriptions/x/resourcegroups/y/providers/Microsoft.Compute/virtualMachines/z",
            ),
            (401, "token_signature"),
        ),
    ] {
        let (st, v) = join(&c, &svc, "azure", &key, json!({"access_token": proof})).await;
        assert_eq!((st, code(&v)), want, "{v}");
    }
    svc.stop().await;
}

#[test]
fn cloud_join_tables_are_checked() {
    let d = tempfile::tempdir().unwrap();
    let base = "[ca.u]\nkey = \"file:/k\"\n[policy.h]\nca = \"u\"\ncert_type = \"host\"\n";
    for (table, want) in [
        (
            "[join.a]\nmethod = \"aws-iid\"\npolicy = \"h\"\naccounts = [\"111111111111\"]\n",
            "field `certificates`: `aws-iid` joins need it",
        ),
        (
            "[join.a]\nmethod = \"aws-iid\"\npolicy = \"h\"\ncertificates = [\"c.pem\"]\naccounts = [\"1111\"]\n",
            "not a 12-digit AWS account id",
        ),
        (
            "[join.a]\nmethod = \"aws-iid\"\npolicy = \"h\"\ncertificates = [\"c.pem\"]\naccounts = [\"111111111111\"]\nprojects = [\"p\"]\n",
            "field `projects`: not a field of `aws-iid` joins",
        ),
        (
            "[join.g]\nmethod = \"gcp-iit\"\npolicy = \"h\"\njwks = \"k.json\"\nprojects = [\"p\"]\n",
            "field `audience`: `gcp-iit` joins need it",
        ),
        (
            "[join.g]\nmethod = \"gcp-iit\"\npolicy = \"h\"\naudience = \"a\"\njwks = \"http://x/k\"\nprojects = [\"p\"]\n",
            "plain HTTP",
        ),
        (
            "[join.z]\nmethod = \"azure-msi\"\npolicy = \"h\"\naudience = \"a\"\njwks = \"k.json\"\ntenants = [\"t\"]\nsubscriptions = []\n",
            "field `subscriptions`: empty list",
        ),
        (
            "[join.t]\nmethod = \"token\"\npolicy = \"h\"\nallow_reenroll = true\n",
            "field `allow_reenroll`: not a field of `token` joins",
        ),
    ] {
        let path = d.path().join("sshca.toml");
        std::fs::write(&path, format!("{base}{table}")).unwrap();
        let cfg = sshca::config::Config::load(&path).unwrap();
        let e = sshca_server::config::ServiceConfig::from_config(&cfg).unwrap_err();
        assert!(e.to_string().contains(want), "{table}: {e}");
    }
}
