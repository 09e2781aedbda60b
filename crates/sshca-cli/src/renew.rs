//! `sshca renew`: certificates renewed by the signing service on proof of
//! possession of their key — nothing while more than `--within` of the
//! lifetime is left, else a proof (an SSHSIG by the key over the renewal
//! message) sent to `POST /v1/renew` and the new certificate written
//! atomically over `KEY-cert.pub`.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use sshca::core::validity::parse_ttl;
use sshca::core::HashAlg;
use sshca::signer::{Error, ErrorKind, Result, SignerExt};
use sshca_authority::renew;

use crate::output::{human, invalid, now};

#[derive(Args, Debug)]
pub struct RenewArgs {
    /// The signing service (`https://HOST:PORT`, its `public_url`).
    #[arg(long)]
    server: String,
    /// PEM certificates to trust for the service (default: the system's).
    #[arg(long)]
    server_ca: Option<PathBuf>,
    /// Renew once no more than this is left: a duration (`8h`) or a share
    /// of the lifetime (`33%`; the default is a third).
    #[arg(long, value_name = "DUR|PCT%")]
    within: Option<String>,
    /// Private keys (user or host) with KEY-cert.pub beside them.
    #[arg(required = true)]
    keys: Vec<PathBuf>,
}

/// How much of `lifetime` may be left before renewing.
fn threshold(within: Option<&str>, lifetime: u64) -> Result<u64> {
    match within {
        None => Ok(lifetime / 3),
        Some(w) => match w.strip_suffix('%') {
            Some(pct) => {
                let p: f64 = pct
                    .trim()
                    .parse()
                    .ok()
                    .filter(|p: &f64| *p > 0.0 && *p <= 100.0)
                    .ok_or_else(|| {
                        invalid(format!("--within {w}: not a share between 0% and 100%"))
                    })?;
                Ok((lifetime as f64 * p / 100.0) as u64)
            }
            None => parse_ttl(w).map_err(|e| invalid(format!("--within {w}: {e}"))),
        },
    }
}

/// `sshca renew`.
pub async fn run(a: RenewArgs) -> Result<()> {
    if !a.server.starts_with("https://") {
        return Err(invalid(format!(
            "--server {}: the service is only reachable over https://",
            a.server
        )));
    }
    let client = crate::request::https_client(a.server_ca.as_deref(), None)?;
    for key in &a.keys {
        renew_one(&client, &a.server, key, a.within.as_deref()).await?;
    }
    Ok(())
}

/// Renews `key`'s certificate (`KEY-cert.pub`) at `server` when no more
/// than `within` of its lifetime is left: `true` when it wrote a new one.
pub(crate) async fn renew_one(
    client: &reqwest::Client,
    server: &str,
    key: &std::path::Path,
    within: Option<&str>,
) -> Result<bool> {
    let server = server.trim_end_matches('/');
    let cert_path = crate::files::cert_path_for(key);
    let text = std::fs::read_to_string(&cert_path)
        .map_err(|e| Error::io("cannot read the certificate", &cert_path, &e))?;
    let cert = sshca::core::Certificate::from_openssh(text.trim())
        .map_err(|e| invalid(format!("{}: not a certificate: {e}", cert_path.display())))?;
    let t = now();
    if cert.valid_before() <= t {
        return Err(Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "{}: expired; an expired certificate cannot be renewed (ask for a new one)",
                cert_path.display()
            ),
        ));
    }
    let left = cert.valid_before() - t;
    let lifetime = cert.valid_before().saturating_sub(cert.valid_after());
    let limit = threshold(within, lifetime)?;
    if left > limit {
        eprintln!(
            "sshca: {}: {} left, renewed within {}: nothing to do",
            cert_path.display(),
            human(left),
            human(limit)
        );
        return Ok(false);
    }
    let signer = sshca::default_registry()
        .open(&crate::keyref::ca_uri(&key.display().to_string()))
        .await
        .map_err(|e| e.context(key.display()))?;
    if signer.public_key().await? != *cert.public_key() {
        return Err(invalid(format!(
            "{}: the certificate {} is for another key",
            key.display(),
            cert_path.display()
        )));
    }
    let nonce = format!(
        "{:016x}{:016x}",
        sshca::core::random_serial(),
        sshca::core::random_serial()
    );
    let time = now();
    let msg = renew::message(server, &renew::fingerprint(&cert), time, &nonce);
    let sig = signer
        .sign_sshsig(renew::NAMESPACE, HashAlg::Sha512, msg.as_bytes())
        .await?;
    let body = json!({
        "certificate": text.trim(),
        "time": time,
        "nonce": nonce,
        "signature": crate::sshsig::armour(&sig)?,
    });
    let v = crate::request::post_json(
        client,
        &format!("{server}/v1/renew"),
        &body,
        &cert_path.display().to_string(),
    )
    .await?;
    let (line, new) = crate::request::certified(&v, cert.public_key())?;
    if new.cert_type() != cert.cert_type() {
        return Err(Error::new(
            ErrorKind::BadResponse,
            "the service certified another type",
        ));
    }
    crate::files::write_atomic(&cert_path, format!("{}\n", line.trim_end()).as_bytes())?;
    eprintln!(
        "sshca: {}: renewed: {}",
        cert_path.display(),
        crate::output::issued_summary(&new)
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_is_a_duration_or_a_share() {
        assert_eq!(threshold(None, 900).unwrap(), 300);
        assert_eq!(threshold(Some("10m"), 900).unwrap(), 600);
        assert_eq!(threshold(Some("50%"), 900).unwrap(), 450);
        assert!(threshold(Some("0%"), 900).is_err());
        assert!(threshold(Some("150%"), 900).is_err());
        assert!(threshold(Some("soon"), 900).is_err());
    }
}
