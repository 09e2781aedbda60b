#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]
//! The instance metadata services: IMDSv2's session tokens and signed
//! identity documents, the Compute Engine identity token and the Azure
//! managed identity token, each with the headers its cloud requires, signed
//! by the key the emulator publishes; seeded instances and picking one.

use base64::Engine;
use der::{Decode, Encode};
use kms_emulator::{Config, Emulator};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde_json::Value;

fn b64(s: &str) -> Vec<u8> {
    let clean: String = s.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .unwrap()
}

fn b64url(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

async fn imds_token(c: &reqwest::Client, url: &str, instance: Option<&str>) -> String {
    let mut r = c
        .put(format!("{url}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "60");
    if let Some(i) = instance {
        r = r.header("X-Kms-Emulator-Instance", i);
    }
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

async fn imds_get(c: &reqwest::Client, url: &str, token: &str, what: &str) -> String {
    let r = c
        .get(format!("{url}/latest/dynamic/instance-identity/{what}"))
        .header("X-aws-ec2-metadata-token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{what}");
    r.text().await.unwrap()
}

/// The payload of a JWT whose RS256 signature verifies with the JWKS.
fn verified_payload(token: &str, jwks: &Value) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&b64url(parts[0])).unwrap();
    assert_eq!(header["alg"], "RS256");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the token's kid is in the JWKS");
    let public = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(&b64url(key["n"].as_str().unwrap())),
        rsa::BigUint::from_bytes_be(&b64url(key["e"].as_str().unwrap())),
    )
    .unwrap();
    let sig = Signature::try_from(b64url(parts[2]).as_slice()).unwrap();
    VerifyingKey::<sha2::Sha256>::new(public)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .expect("the token verifies with the JWKS");
    serde_json::from_slice(&b64url(parts[1])).unwrap()
}

#[tokio::test]
async fn ec2_identity_document_and_its_three_signatures() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    let url = emu.endpoints().metadata.clone();
    let c = reqwest::Client::new();
    // IMDSv1 is off: no token, no document.
    let r = c
        .get(format!("{url}/latest/dynamic/instance-identity/document"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A session token needs its TTL, and never comes through a proxy.
    let r = c
        .put(format!("{url}/latest/api/token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .put(format!("{url}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
        .header("X-Forwarded-For", "10.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .get(format!("{url}/latest/dynamic/instance-identity/document"))
        .header("X-aws-ec2-metadata-token", "made-up")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let token = imds_token(&c, &url, None).await;
    let doc = imds_get(&c, &url, &token, "document").await;
    let v: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(v["accountId"], "123456789012");
    assert_eq!(v["region"], "us-east-1");
    assert_eq!(v["instanceId"], "i-0123456789abcdef0");
    assert_eq!(v["availabilityZone"], "us-east-1a");
    assert!(v["pendingTime"].as_str().unwrap().ends_with('Z'));

    // `signature` verifies with the published certificate.
    let pem = std::fs::read_to_string(&emu.endpoints().metadata_aws_certificate).unwrap();
    let der = pem::parse(&pem).unwrap();
    let cert = x509_cert::Certificate::from_der(der.contents()).unwrap();
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .unwrap();
    let public = rsa::RsaPublicKey::from_public_key_der(&spki).unwrap();
    let verifier = VerifyingKey::<sha2::Sha256>::new(public.clone());
    let sig = b64(&imds_get(&c, &url, &token, "signature").await);
    verifier
        .verify(
            doc.as_bytes(),
            &Signature::try_from(sig.as_slice()).unwrap(),
        )
        .unwrap();
    assert!(verifier
        .verify(
            doc.replace("123456789012", "123456789013").as_bytes(),
            &Signature::try_from(sig.as_slice()).unwrap()
        )
        .is_err());

    // `rsa2048` and `pkcs7` are SignedData holding the document, the first
    // with SHA-256, the second with SHA-1.
    for (what, digest) in [
        ("rsa2048", const_oid::db::rfc5912::ID_SHA_256),
        ("pkcs7", const_oid::db::rfc5912::ID_SHA_1),
    ] {
        let raw = b64(&imds_get(&c, &url, &token, what).await);
        let info = cms::content_info::ContentInfo::from_der(&raw).unwrap();
        assert_eq!(info.content_type, const_oid::db::rfc5911::ID_SIGNED_DATA);
        let sd: cms::signed_data::SignedData = info.content.decode_as().unwrap();
        let content = sd.encap_content_info.econtent.unwrap();
        assert_eq!(content.value(), doc.as_bytes(), "{what}");
        let signer = sd.signer_infos.0.get(0).unwrap();
        assert_eq!(signer.digest_alg.oid, digest, "{what}");
        let attrs = signer.signed_attrs.as_ref().unwrap().to_der().unwrap();
        let sig = signer.signature.as_bytes();
        if what == "rsa2048" {
            verifier
                .verify(&attrs, &Signature::try_from(sig).unwrap())
                .unwrap();
        } else {
            VerifyingKey::<sha1::Sha1>::new(public.clone())
                .verify(&attrs, &Signature::try_from(sig).unwrap())
                .unwrap();
        }
    }
    // Counted: the two refused and the four answered.
    assert_eq!(emu.count("metadata", "instance_identity"), 6);
}

#[tokio::test]
async fn gce_identity_token_and_azure_managed_identity_token() {
    let emu = Emulator::start(Config::default()).await.unwrap();
    let url = emu.endpoints().metadata.clone();
    let c = reqwest::Client::new();
    let identity = format!("{url}/computeMetadata/v1/instance/service-accounts/default/identity");
    let r = c
        .get(format!("{identity}?audience=https://ca.example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "no Metadata-Flavor header");
    let r = c
        .get(&identity)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no audience");
    let r = c
        .get(format!(
            "{identity}?audience=https://ca.example.com&format=full"
        ))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["metadata-flavor"], "Google");
    let token = r.text().await.unwrap();
    let jwks: Value = c
        .get(&emu.endpoints().metadata_gcp_jwks)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    let p = verified_payload(&token, &jwks);
    assert_eq!(p["iss"], "https://accounts.google.com");
    assert_eq!(p["aud"], "https://ca.example.com");
    let ce = &p["google"]["compute_engine"];
    assert_eq!(ce["project_id"], "emulator-project");
    assert_eq!(ce["instance_name"], "instance-1");
    assert_eq!(ce["zone"], "us-central1-a");

    let azure = format!("{url}/metadata/identity/oauth2/token");
    let r = c
        .get(format!(
            "{azure}?api-version=2018-02-01&resource=https://ca.example.com"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no Metadata header");
    let r = c
        .get(format!("{azure}?resource=https://ca.example.com"))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no api-version");
    let v: Value = c
        .get(format!(
            "{azure}?api-version=2018-02-01&resource=https://ca.example.com"
        ))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["resource"], "https://ca.example.com");
    let jwks: Value = c
        .get(&emu.endpoints().metadata_azure_jwks)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    let p = verified_payload(v["access_token"].as_str().unwrap(), &jwks);
    let tid = p["tid"].as_str().unwrap();
    assert_eq!(p["iss"], format!("https://sts.windows.net/{tid}/"));
    assert_eq!(p["aud"], "https://ca.example.com");
    assert!(p["xms_mirid"]
        .as_str()
        .unwrap()
        .ends_with("/resourcegroups/emulator-rg/providers/Microsoft.Compute/virtualMachines/vm-1"));
}

#[tokio::test]
async fn seeded_instances_and_picking_one() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.toml");
    std::fs::write(
        &seed,
        r#"
[[instances.aws]]
account_id = "111111111111"
region = "eu-west-1"
instance_id = "i-0aaaaaaaaaaaaaaaa"
pending_time = 1700000000

[[instances.aws]]
account_id = "222222222222"
region = "eu-west-2"
instance_id = "i-0bbbbbbbbbbbbbbbb"

[[instances.gcp]]
project_id = "p1"
zone = "europe-west1-b"
instance_id = "1"
instance_name = "web-1"

[[instances.gcp]]
project_id = "p2"
zone = "europe-west1-c"
instance_id = "2"
instance_name = "web-2"
"#,
    )
    .unwrap();
    let emu = Emulator::start(Config {
        seed: Some(seed.clone()),
        ..Config::default()
    })
    .await
    .unwrap();
    let url = emu.endpoints().metadata.clone();
    let c = reqwest::Client::new();
    let doc = |token: String| {
        let c = c.clone();
        let url = url.clone();
        async move {
            let d = imds_get(&c, &url, &token, "document").await;
            serde_json::from_str::<Value>(&d).unwrap()
        }
    };
    let first = doc(imds_token(&c, &url, None).await).await;
    assert_eq!(first["accountId"], "111111111111");
    assert_eq!(first["pendingTime"], "2023-11-14T22:13:20Z");
    let second = doc(imds_token(&c, &url, Some("i-0bbbbbbbbbbbbbbbb")).await).await;
    assert_eq!(second["accountId"], "222222222222");
    // The admin API (here in-process) changes the default.
    emu.select_instance("aws", "i-0bbbbbbbbbbbbbbbb").unwrap();
    assert_eq!(
        doc(imds_token(&c, &url, None).await).await["region"],
        "eu-west-2"
    );
    assert!(emu.select_instance("aws", "i-nope").is_err());
    let r = c
        .post(format!(
            "{}/metadata/select?cloud=gcp&instance=web-2",
            emu.endpoints().admin
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = c
        .get(format!(
            "{url}/computeMetadata/v1/instance/service-accounts/default/identity?audience=a&format=full"
        ))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let payload: Value = serde_json::from_slice(&b64url(token.split('.').nth(1).unwrap())).unwrap();
    assert_eq!(payload["google"]["compute_engine"]["project_id"], "p2");
    // Azure was not seeded: its default instance answers.
    let r = c
        .get(format!(
            "{url}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=r"
        ))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A bad seed names what is wrong.
    std::fs::write(
        &seed,
        "[[instances.aws]]\naccount_id = \"12\"\nregion = \"r\"\ninstance_id = \"i-1\"\n",
    )
    .unwrap();
    let e = Emulator::start(Config {
        seed: Some(seed),
        ..Config::default()
    })
    .await
    .unwrap_err();
    assert!(e.to_string().contains("not 12 digits"), "{e}");
}
