//! `cargo xtask demo`: the main job.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// A CA key for the demo: backend name, key URI, what it is.
struct DemoCa {
    backend: &'static str,
    uri: String,
}

fn demo_cas(
    emu: &kms_emulator::Emulator,
    dir: &Path,
    cli: &dyn Fn() -> Command,
) -> Result<Vec<DemoCa>> {
    let ep = emu.endpoints();
    let ca_cert = ep.azure_ca_cert.display().to_string();
    let mut cas = Vec::new();
    for (name, args) in [
        ("ed25519", &["-t", "ed25519"][..]),
        ("ecdsa-p256", &["-t", "ecdsa", "-b", "256"][..]),
    ] {
        let p = dir.join(format!("ca_{name}"));
        output(
            &format!("ssh-keygen {name}"),
            Command::new("ssh-keygen")
                .args(["-q", "-N", "", "-C", name, "-f"])
                .arg(&p)
                .args(args),
        )?;
        cas.push(DemoCa {
            backend: "local",
            uri: format!("file:{}", p.display()),
        });
    }
    let p256 = emu.create_aws_key("ECC_NIST_P256", "SIGN_VERIFY")?;
    emu.create_aws_alias("alias/ssh-user-ca", &p256)?;
    cas.push(DemoCa {
        backend: "aws",
        uri: format!("awskms:alias/ssh-user-ca?endpoint={}", ep.aws),
    });
    let ed = emu.create_aws_key("ECC_NIST_EDWARDS25519", "SIGN_VERIFY")?;
    cas.push(DemoCa {
        backend: "aws",
        uri: format!("awskms:{ed}?endpoint={}", ep.aws),
    });
    let ring = "projects/demo/locations/global/keyRings/ssh";
    for (k, alg) in [
        ("user-ca-p384", "EC_SIGN_P384_SHA384"),
        ("user-ca-ed25519", "EC_SIGN_ED25519"),
    ] {
        let v = emu.create_gcp_key(&format!("{ring}/cryptoKeys/{k}"), alg)?;
        cas.push(DemoCa {
            backend: "gcp",
            uri: format!("gcpkms:{v}?endpoint={}", ep.gcp),
        });
    }
    for (k, kty, arg) in [
        ("user-ca-p256", "EC", "P-256"),
        ("user-ca-rsa", "RSA-HSM", "3072"),
    ] {
        let kid = emu.create_azure_key(k, kty, arg)?;
        cas.push(DemoCa {
            backend: "azure",
            uri: format!("azurekv:{kid}?ca-cert={ca_cert}"),
        });
    }
    // The external key manager: reached directly over mTLS with pinned
    // certificates, and through a Cloud KMS EkmConnection (EXTERNAL_VPC).
    let hosts: Vec<&str> = ep
        .ekm
        .iter()
        .map(|u| u.trim_start_matches("https://"))
        .collect();
    let space = "v0/spaces/ssh-ca";
    let direct = emu.create_ekm_key(space, "user-ca-p256", "EC_SIGN_P256_SHA256")?;
    let ekm_uri = format!(
        "ekm:{direct}?resolver={}&server-cert={}&client-identity={}",
        hosts.join(","),
        ep.ekm_server_cert.display(),
        ep.ekm_client_identity.display()
    );
    eprintln!(
        "xtask: sshca ekm verify:\n{}",
        output(
            "sshca ekm verify",
            cli().args(["ekm", "verify", "--uri", &ekm_uri])
        )?
    );
    cas.push(DemoCa {
        backend: "ekm",
        uri: ekm_uri,
    });
    let location = "projects/demo/locations/global";
    let mut create = cli();
    create
        .args(["ekm", "connections", "create", "--endpoint", &ep.gcp])
        .args(["--location", location, "--id", "hsm"]);
    for h in &hosts {
        create.args(["--resolver", h]);
    }
    create.arg("--server-cert").arg(&ep.ekm_server_cert);
    output("sshca ekm connections create", &mut create)?;
    let conn = format!("{location}/ekmConnections/hsm");
    eprintln!(
        "xtask: {}",
        output(
            "sshca ekm connections verify",
            cli().args(["ekm", "connections", "verify", "--endpoint", &ep.gcp, &conn])
        )?
        .trim()
    );
    let external = emu.create_ekm_key(space, "user-ca-ed25519", "EC_SIGN_ED25519")?;
    let v = emu.create_gcp_external_key(
        &format!("{ring}/cryptoKeys/external-ed25519"),
        "EC_SIGN_ED25519",
        &conn,
        &external,
    )?;
    cas.push(DemoCa {
        backend: "gcp+ekm",
        uri: format!("gcpkms:{v}?endpoint={}", ep.gcp),
    });
    Ok(cas)
}

/// The main job: starts the KMS emulator in-process, creates a CA key in
/// each emulated KMS (and local file keys), signs a user certificate through
/// each backend with the `sshca` CLI, checks each with `ssh-keygen -L` and
/// `sshca verify`, and prints a table.
pub fn demo() -> Result<()> {
    run(
        "build sshca (every backend)",
        cargo().args(["build", "-p", "sshca-cli"]),
    )?;
    let sshca = target_dir().join("debug").join("sshca");
    let dir = target_dir().join("sshca-demo");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let rt = tokio::runtime::Runtime::new().map_err(|e| format!("tokio runtime: {e}"))?;
    let emu = rt
        .block_on(kms_emulator::Emulator::start(kms_emulator::Config {
            azure_token: Some("demo-token".into()),
            cert_dir: Some(dir.join("emulator")),
            ..Default::default()
        }))
        .map_err(|e| format!("emulator: {e}"))?;
    eprintln!("xtask: KMS emulator: {}", serde_like(emu.endpoints()));
    let cli = || {
        let mut c = Command::new(&sshca);
        c.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.join("no-aws-credentials"),
            )
            .env("SSHCA_AZURE_ACCESS_TOKEN", "demo-token")
            .env_remove("SSHCA_PASSPHRASE");
        c
    };
    let user = dir.join("id_user");
    output(
        "ssh-keygen id_user",
        Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-C", "alice", "-t", "ed25519", "-f"])
            .arg(&user),
    )?;
    let cas = demo_cas(&emu, &dir, &cli)?;
    let mut rows = Vec::new();
    let mut failed = false;
    for (i, ca) in cas.iter().enumerate() {
        let uri = ca.uri.clone();
        let backend = ca.backend;
        let name = format!("{backend}-{i}");
        let subject = dir.join(format!("id_user_{name}.pub"));
        std::fs::copy(user.with_extension("pub"), &subject).map_err(|e| format!("copy: {e}"))?;
        let result = (|| -> Result<(String, PathBuf)> {
            output(
                "sshca sign",
                cli()
                    .args([
                        "sign",
                        "--ca",
                        &uri,
                        "-I",
                        "demo-alice",
                        "-n",
                        "alice",
                        "-V",
                        "-5m:+1h",
                    ])
                    .arg(&subject),
            )?;
            let cert = dir.join(format!("id_user_{name}-cert.pub"));
            let listed = output(
                "ssh-keygen -L",
                Command::new("ssh-keygen").arg("-L").arg("-f").arg(&cert),
            )?;
            let alg = listed
                .lines()
                .find_map(|l| l.split("(using ").nth(1))
                .map(|s| s.trim_end_matches(')').to_owned())
                .ok_or("ssh-keygen -L printed no signing algorithm")?;
            output(
                "sshca verify",
                cli()
                    .args(["verify", "--ca", &uri, "--principal", "alice"])
                    .arg(&cert),
            )?;
            Ok((alg, cert))
        })();
        match result {
            Ok((alg, cert)) => rows.push([
                backend.into(),
                uri,
                alg,
                cert.display().to_string(),
                "yes".into(),
            ]),
            Err(e) => {
                failed = true;
                rows.push([
                    backend.into(),
                    uri,
                    "-".into(),
                    "-".into(),
                    format!("NO: {e}"),
                ]);
            }
        }
    }
    let header = ["backend", "key URI", "algorithm", "certificate", "verified"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: [&str; 5]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("{}", line(header));
    for r in &rows {
        println!(
            "{}",
            line([&r[0], &r[1], &r[2], &r[3], &r[4]].map(String::as_str))
        );
    }
    println!("\ncertificates written to {}", dir.display());
    if failed {
        Err("some certificates failed".into())
    } else {
        Ok(())
    }
}

fn serde_like(ep: &kms_emulator::Endpoints) -> String {
    format!(
        "aws {} | gcp {} | azure {} (CA {}) | admin {} | ekm {}",
        ep.aws,
        ep.gcp,
        ep.azure,
        ep.azure_ca_cert.display(),
        ep.admin,
        ep.ekm.join(" ")
    )
}
