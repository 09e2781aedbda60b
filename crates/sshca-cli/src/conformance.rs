//! `sshca conformance URI`: the checks of the backend conformance suite
//! that are safe against a production key — its public key (and `pin=`),
//! every signature algorithm it allows, certificates through the strict
//! decoder and `ssh-keygen -L`, concurrent signing, many principals — with
//! the number of signature requests said (and, on a terminal, agreed to)
//! before the first one.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use serde_json::json;
use sshca::core::{Certificate, KeyData, SigAlg};
use sshca::signer::probe::{planned_signatures, probe, Check, ProbeOptions};
use sshca::signer::{Error, ErrorKind, KeySigner, KeyUri, Result, SignerExt};

use crate::output::{internal, invalid, to_json};

#[derive(Args, Debug)]
pub struct ConformanceArgs {
    /// Key URI (a plain path means `file:PATH`).
    uri: String,
    /// Print the checks as JSON.
    #[arg(long)]
    json: bool,
    /// Certificates signed at once in the concurrency check.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Do not ask before signing (the requests are said on stderr).
    #[arg(long)]
    yes: bool,
}

/// `sshca conformance`: exit 0 when every check passes, 1 otherwise.
pub async fn run(a: ConformanceArgs) -> Result<ExitCode> {
    if a.concurrency == 0 || a.concurrency > 256 {
        return Err(invalid(format!(
            "--concurrency {}: from 1 to 256",
            a.concurrency
        )));
    }
    let uri = crate::keyref::ca_uri(&a.uri);
    let parsed = KeyUri::parse(&uri)?;
    let registry = sshca::default_registry();
    let mut checks = Vec::new();
    let signer = match registry.open(&uri).await {
        Ok(s) => s,
        Err(e) => {
            checks.push(Check {
                name: "open (public key)".into(),
                ok: false,
                detail: e.report(),
            });
            return finish(&a, &uri, &checks);
        }
    };
    let key = signer.public_key().await?;
    checks.push(Check {
        name: "open (public key)".into(),
        ok: true,
        detail: format!(
            "{} {}{}",
            key.algorithm(),
            sshca::fingerprint(&key),
            if parsed.option("pin").is_some() {
                ", pin matches"
            } else {
                ""
            }
        ),
    });
    let options = ProbeOptions {
        concurrency: a.concurrency,
        ..ProbeOptions::default()
    };
    let algorithms = signer.algorithms().await?.len();
    let n = planned_signatures(algorithms, &options);
    eprintln!(
        "sshca conformance: {n} signature requests to `{uri}` ({algorithms} algorithm{}); \
         each may be billed and audited by the key's service",
        if algorithms == 1 { "" } else { "s" }
    );
    if !a.yes && std::io::stdin().is_terminal() && !confirm()? {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "cancelled: nothing was signed",
        ));
    }
    let keygen = ssh_keygen_on_path();
    let extra = move |cert: &Certificate, alg: SigAlg| ssh_keygen_check(keygen, cert, alg);
    checks.extend(probe(signer.clone(), &options, Some(&extra)).await);
    if parsed.scheme() == "awskms" && matches!(key, KeyData::Ed25519(_)) {
        checks.push(raw_limit(&signer).await);
    }
    finish(&a, &uri, &checks)
}

/// Asks on the terminal; true for `y` or `yes`.
fn confirm() -> Result<bool> {
    eprint!("continue? [y/N] ");
    std::io::stderr()
        .flush()
        .map_err(|e| internal("cannot write stderr").with_source(e))?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::new(ErrorKind::Io, "cannot read the answer").with_source(e))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

fn ssh_keygen_on_path() -> bool {
    std::process::Command::new("ssh-keygen")
        .arg("-?")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// `ssh-keygen -L` reads the certificate and names its signature
/// algorithm (skipped when ssh-keygen is not on PATH).
fn ssh_keygen_check(
    on_path: bool,
    cert: &Certificate,
    alg: SigAlg,
) -> std::result::Result<String, String> {
    if !on_path {
        return Ok("ssh-keygen not on PATH".into());
    }
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let path = dir.path().join("probe-cert.pub");
    let text = cert.to_openssh().map_err(|e| e.to_string())?;
    std::fs::write(&path, format!("{text}\n")).map_err(|e| e.to_string())?;
    let out = std::process::Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(&path)
        .output()
        .map_err(|e| format!("ssh-keygen: {e}"))?;
    let listed = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "ssh-keygen -L refuses it: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    if !listed.contains(&format!("(using {})", alg.name())) {
        return Err(format!("ssh-keygen -L does not show {}", alg.name()));
    }
    Ok("ssh-keygen -L reads it".into())
}

/// AWS KMS signs Ed25519 as RAW messages of at most 4096 bytes: a larger
/// certificate is refused before any request, naming its size.
async fn raw_limit(signer: &Arc<dyn KeySigner>) -> Check {
    let name = "AWS RAW limit (4096 bytes)".to_owned();
    let mut t = sshca::core::CertTemplate::new(sshca::core::CertType::User, "sshca-conformance");
    t.principals = (0..600).map(|i| format!("principal-{i:04}")).collect();
    t.serial = 7000;
    t.valid_after = 1_700_000_000;
    t.valid_before = 4_000_000_000;
    let subject = {
        use sshca::core::ssh_key::{private::Ed25519Keypair, rand_core::OsRng};
        KeyData::Ed25519(Ed25519Keypair::random(&mut OsRng).public)
    };
    match signer.sign_certificate(&t, &subject, None).await {
        Ok(_) => Check {
            name,
            ok: false,
            detail: "a certificate over 4096 bytes was signed".into(),
        },
        Err(e) if e.kind() == ErrorKind::InvalidInput && e.to_string().contains("4096") => Check {
            name,
            ok: true,
            detail: "a larger certificate is refused, naming its size".into(),
        },
        Err(e) => Check {
            name,
            ok: false,
            detail: format!("refused, but not for its size: {}", e.report()),
        },
    }
}

fn finish(a: &ConformanceArgs, uri: &str, checks: &[Check]) -> Result<ExitCode> {
    let ok = checks.iter().all(|c| c.ok);
    if a.json {
        let v = json!({
            "uri": uri,
            "ok": ok,
            "checks": checks.iter().map(|c| json!({"name": c.name, "ok": c.ok, "detail": c.detail})).collect::<Vec<_>>(),
        });
        println!("{}", to_json(&v)?);
    } else {
        let width = checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        println!("{:<width$}  RESULT  DETAIL", "CHECK");
        for c in checks {
            println!(
                "{:<width$}  {:<6}  {}",
                c.name,
                if c.ok { "ok" } else { "FAIL" },
                sshca::core::text::escape(&c.detail)
            );
        }
        println!(
            "{}: {} of {} checks passed",
            uri,
            checks.iter().filter(|c| c.ok).count(),
            checks.len()
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
