//! `sshca host enroll` on cloud joins: the instance identity read from the
//! emulator's metadata services (IMDSv2, GCE, Azure IMDS, pointed at with
//! the variables the clouds' SDKs read), host certificates whose
//! principals and key ids come from the instance, sshd serving them and
//! `ssh` trusting the host through the host CA alone; a second enrollment
//! of the same instance and an instance of another account are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;
mod serve_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serve_support::*;

const GCP_AUDIENCE: &str = "https://ca.example.com/join/gcp";
const AZURE_RESOURCE: &str = "api://sshca";

fn tables(hosts_ca: &Path, aws_cert: &Path) -> String {
    format!(
        r#"
[ca.hosts]
key = "file:{ca}"

[policy.aws_hosts]
ca = "hosts"
cert_type = "host"
valid_principals = ["127.0.0.1", "{{claims.instance_id}}.{{claims.region}}.compute.internal"]
key_id = "{{claims.join}}-{{claims.account_id}}-{{claims.instance_id}}"
ttl = "1h"
renewable = true
renew_max_age = "30d"

[policy.gcp_hosts]
ca = "hosts"
cert_type = "host"
valid_principals = ["127.0.0.1", "{{claims.instance_name}}.{{claims.zone}}.c.{{claims.project_id}}.internal"]
key_id = "{{claims.join}}-{{claims.instance_id}}"
renewable = true
renew_max_age = "30d"

[policy.azure_hosts]
ca = "hosts"
cert_type = "host"
valid_principals = ["127.0.0.1", "{{claims.vm_name}}.{{claims.resource_group}}.example.net"]
key_id = "{{claims.join}}-{{claims.vm_name}}"
renewable = true
renew_max_age = "30d"

[join.aws]
method = "aws-iid"
policy = "aws_hosts"
certificates = ["{aws_cert}"]
accounts = ["123456789012"]

[join.aws-other]
method = "aws-iid"
policy = "aws_hosts"
certificates = ["{aws_cert}"]
accounts = ["210987654321"]

[join.gcp]
method = "gcp-iit"
policy = "gcp_hosts"
audience = "{GCP_AUDIENCE}"
jwks = "gcp-jwks.json"
projects = ["emulator-project"]

[join.azure]
method = "azure-msi"
policy = "azure_hosts"
audience = "{AZURE_RESOURCE}"
jwks = "azure-jwks.json"
tenants = ["72f988bf-0000-4000-8000-000000000001"]
subscriptions = ["00000000-0000-4000-8000-000000000002"]
"#,
        ca = hosts_ca.display(),
        aws_cert = aws_cert.display(),
    )
}

#[test]
fn cloud_instances_enroll_and_sshd_serves_their_certificates() {
    let rt = runtime();
    // The emulator's default instance per cloud answers.
    let emu = rt
        .block_on(kms_emulator::Emulator::start(
            kms_emulator::Config::default(),
        ))
        .unwrap();
    let ep = emu.endpoints().clone();
    let s = setup("", None);
    for (file, url) in [
        ("gcp-jwks.json", &ep.metadata_gcp_jwks),
        ("azure-jwks.json", &ep.metadata_azure_jwks),
    ] {
        let jwks = rt
            .block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
            .to_owned();
        std::fs::write(s.dir.join(file), jwks).unwrap();
    }
    let hosts_ca = keygen(&s.dir, "hosts_ca", "ed25519", None);
    let mut text = std::fs::read_to_string(&s.config).unwrap();
    text.push_str(&tables(&hosts_ca, &ep.metadata_aws_certificate));
    std::fs::write(&s.config, text).unwrap();
    let svc = Service::start(&s.dir, &s.config);

    let ssh_dir = s.dir.join("etc-ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let host_key = ssh_dir.join("ssh_host_ed25519_key");
    run(Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "ed25519", "-f"])
        .arg(&host_key));
    let pid_file = s.dir.join("sshd.pid");
    let sshd = start_sshd_file(
        &ssh_dir.join("sshd_config"),
        &s.dir.join("sshd.log"),
        |port| {
            format!(
                "Include {dropins}/*.conf\nListenAddress 127.0.0.1:{port}\nHostKey {key}\n\
             AuthorizedKeysFile none\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\nPidFile {pid}\n",
                dropins = ssh_dir.join("sshd_config.d").display(),
                key = host_key.display(),
                pid = pid_file.display()
            )
        },
    );
    let metadata_host = ep.metadata.trim_start_matches("http://").to_owned();
    let enroll = |join: &str| -> Output {
        sshca()
            .args(["host", "enroll", "--server", &svc.url, "--server-ca"])
            .arg(&s.pki.tls_ca)
            .args(["--join", join, "--user-ca", "users", "--ssh-dir"])
            .arg(&ssh_dir)
            .arg("--state")
            .arg(s.dir.join("host.toml"))
            .args(["--reload", "--sshd-pid-file"])
            .arg(&pid_file)
            .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &ep.metadata)
            .env("GCE_METADATA_HOST", &metadata_host)
            .env("SSHCA_AZURE_IMDS_ENDPOINT", &ep.metadata)
            .env_remove("SSHCA_JOIN_TOKEN")
            .output()
            .unwrap()
    };

    // ssh trusts the host through the host CA alone.
    let hosts_pub = std::fs::read_to_string(hosts_ca.with_extension("pub")).unwrap();
    let known_hosts = s.dir.join("known_hosts_ca_only");
    std::fs::write(
        &known_hosts,
        format!("@cert-authority 127.0.0.1 {hosts_pub}"),
    )
    .unwrap();
    let user_key = keygen(&s.dir, "id_user", "ed25519", None);
    run(sshca()
        .args(["sign", "-I", "u", "-n", &user(), "--ca"])
        .arg(format!("file:{}", s.user_ca.display()))
        .arg(user_key.with_extension("pub")));
    let cert_file = PathBuf::from(format!("{}-cert.pub", host_key.display()));

    for (join, principal, key_id) in [
        (
            "aws",
            "i-0123456789abcdef0.us-east-1.compute.internal",
            "aws-123456789012-i-0123456789abcdef0",
        ),
        (
            "gcp",
            "instance-1.us-central1-a.c.emulator-project.internal",
            "gcp-1234567890123456789",
        ),
        ("azure", "vm-1.emulator-rg.example.net", "azure-vm-1"),
    ] {
        let out = enroll(join);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{join}: {err}");
        assert!(err.contains("sshd reloaded"), "{err}");
        let view = sshca_view(&cert_file);
        assert!(view.cert_type.contains("host"), "{}", view.cert_type);
        assert_eq!(view.principals, ["127.0.0.1", principal], "{join}");
        assert_eq!(view.key_id, key_id);
        // A reload re-executes sshd: wait for it to listen again.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let out = loop {
            let out = ssh_with(
                &sshd,
                &s.dir,
                &user_key,
                &cert_of(&user_key.with_extension("pub")),
                &known_hosts,
                "echo cloud-host-ok",
                &["HostKeyAlgorithms=ssh-ed25519-cert-v01@openssh.com"],
            );
            if out.status.success() || std::time::Instant::now() > deadline {
                break out;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        assert!(
            out.status.success(),
            "{join}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(s.dir.join("sshd.log")).unwrap_or_default()
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "cloud-host-ok");
        // The same instance again: refused, the certificate kept.
        let before = std::fs::read_to_string(&cert_file).unwrap();
        let out = enroll(join);
        assert_eq!(out.status.code(), Some(1), "{join}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("join_instance_used"), "{err}");
        assert_eq!(std::fs::read_to_string(&cert_file).unwrap(), before);
    }

    // An instance of an account the join does not list.
    let out = enroll("aws-other");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("join_instance_refused") && err.contains("123456789012"),
        "{err}"
    );
    // No metadata service at all: a clear error, nothing sent.
    let out = sshca()
        .args(["host", "enroll", "--server", &svc.url, "--server-ca"])
        .arg(&s.pki.tls_ca)
        .args(["--join", "gcp", "--ssh-dir"])
        .arg(&ssh_dir)
        .arg("--state")
        .arg(s.dir.join("host2.toml"))
        .env("GCE_METADATA_HOST", "127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the Compute Engine metadata server"),
        "{err}"
    );
    // The host renews what it got through the usual proof of possession,
    // without the metadata service.
    let before = std::fs::read_to_string(&cert_file).unwrap();
    let out = sshca()
        .args(["host", "renew", "--within", "100%", "--state"])
        .arg(s.dir.join("host.toml"))
        .env("SSHCA_AZURE_IMDS_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_ne!(std::fs::read_to_string(&cert_file).unwrap(), before);
    assert_eq!(
        sshca_view(&cert_file).principals,
        ["127.0.0.1", "vm-1.emulator-rg.example.net"]
    );
    drop(emu);
}
