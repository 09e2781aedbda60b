//! `sshca verify`: a certificate checked as sshd (user certificates) or ssh
//! (host certificates) would check it.

use std::process::ExitCode;

use clap::Args;
use sshca::core::validity::parse_point;
use sshca::core::{CertType, Validation};
use sshca::signer::Result;

use crate::output::{now, read_cert};

/// Arguments of `sshca verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Trusted CA: a key URI or a CA public key file.
    #[arg(long)]
    pub ca: String,
    /// A principal the certificate must name (for a host certificate: a
    /// host name its principals, OpenSSH patterns, must match).
    #[arg(long)]
    pub principal: Option<String>,
    /// Accept a certificate without principals for any principal (an
    /// authorized_keys `cert-authority` line before OpenSSH 10.3); by
    /// default it is refused, as sshd's TrustedUserCAKeys does.
    #[arg(long = "any-principal")]
    pub any_principal: bool,
    /// Print JSON: `valid`, and when invalid `reason` (a stable code)
    /// and `message`.
    #[arg(long)]
    pub json: bool,
    /// Time to check at: unix seconds, `YYYYMMDD[HHMM[SS]]` (UTC) or `now`.
    #[arg(long, default_value = "now")]
    pub at: String,
    /// Required certificate type (`user` or `host`).
    #[arg(long = "type")]
    pub cert_type: Option<String>,
    /// Certificate file (`-` for stdin).
    pub cert: String,
}

/// `sshca verify`.
pub async fn run(a: VerifyArgs) -> Result<ExitCode> {
    let VerifyArgs {
        ca,
        principal,
        any_principal,
        json,
        at,
        cert_type,
        cert,
    } = a;
    let c = read_cert(&cert)?;
    let registry = sshca::default_registry();
    let ca_key = crate::keyref::resolve_ca_public_key(&registry, &ca).await?;
    let at = parse_point(&at, now())?;
    let cert_type = cert_type
        .as_deref()
        .map(str::parse::<CertType>)
        .transpose()?;
    let keys = [ca_key];
    let v = Validation {
        ca_keys: &keys,
        at,
        principal: principal.as_deref(),
        any_principal,
        cert_type,
    };
    let result = c.check(&v);
    if json {
        let out = match &result {
            Ok(()) => serde_json::json!({
                "valid": true, "type": c.cert_type().to_string(), "serial": c.serial(),
                "signing_ca": c.signing_ca_fingerprint().to_string(),
            }),
            Err(r) => serde_json::json!({
                "valid": false, "reason": r.reason.code(), "message": r.message,
            }),
        };
        println!("{out}");
    }
    match result {
        Ok(()) => {
            if !json {
                println!(
                    "{cert}: valid {} certificate, serial {}, signed by {}",
                    c.cert_type(),
                    c.serial(),
                    c.signing_ca_fingerprint()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(r) => {
            if !json {
                eprintln!("sshca: {cert}: {r}");
            }
            Ok(ExitCode::from(1))
        }
    }
}
