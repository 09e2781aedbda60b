//! What several subcommands share: reading inputs, the error helpers, and
//! how certificates and keys are shown.

use std::io::Read;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::keyref::CertInfo;
use sshca::core::{Certificate, KeyData, PublicKey};
use sshca::signer::{Error, ErrorKind, Result};

/// Seconds since the epoch.
/// Who runs an offline command, for its audit event: `$USER`, else `cli`.
#[cfg(feature = "store")]
pub fn local_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| "cli".into())
}

/// The request id of an offline command's audit event.
#[cfg(feature = "store")]
pub fn cli_request_id(now: u64) -> String {
    format!("cli-{}-{now}", std::process::id())
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An error in what the user gave.
pub fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidInput, msg)
}

/// An error that is not the user's doing (a task that died, JSON that could
/// not be encoded).
pub fn internal(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Internal, msg)
}

/// JSON text of `v`, pretty-printed.
pub fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    serde_json::to_string_pretty(v).map_err(|e| internal("cannot encode JSON").with_source(e))
}

/// The text of a file, or of stdin for `-`.
pub fn read_input(arg: &str) -> Result<String> {
    if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Error::new(ErrorKind::Io, "cannot read stdin").with_source(e))?;
        Ok(s)
    } else {
        std::fs::read_to_string(arg).map_err(|e| Error::io("cannot read", Path::new(arg), &e))
    }
}

/// A certificate from a file, or from stdin for `-`.
pub fn read_cert(arg: &str) -> Result<Certificate> {
    let text = read_input(arg)?;
    Certificate::from_openssh(&text).map_err(|e| invalid(format!("{arg}: {e}")))
}

/// A certificate as text in the layout of `ssh-keygen -L` (times in UTC). Fields the
/// certificate's maker chose (key id, principals, options) are shown
/// with control characters escaped ([`sshca::core::text::escape`]).
pub fn cert_text(info: &CertInfo, name: &str, cert: &Certificate) -> String {
    use sshca::core::text::escape;
    let mut s = String::new();
    let key_kind = key_kind_plain(cert.public_key());
    let ca_kind = key_kind_plain(cert.signature_key());
    s.push_str(&format!("{name}:\n"));
    s.push_str(&format!(
        "        Type: {} {} certificate\n",
        info.key_type, info.cert_type
    ));
    s.push_str(&format!(
        "        Public key: {key_kind}-CERT {}\n",
        info.public_key
    ));
    s.push_str(&format!(
        "        Signing CA: {ca_kind} {} (using {})\n",
        info.signing_ca, info.signature_algorithm
    ));
    s.push_str(&format!("        Key ID: \"{}\"\n", escape(&info.key_id)));
    s.push_str(&format!("        Serial: {}\n", info.serial));
    let valid = sshca::core::validity::describe(info.valid_after, info.valid_before);
    s.push_str(&format!("        Valid: {valid}\n"));
    if info.principals.is_empty() {
        s.push_str("        Principals: (none)\n");
    } else {
        s.push_str("        Principals: \n");
        for p in &info.principals {
            s.push_str(&format!("                {}\n", escape(p)));
        }
    }
    for (title, map) in [
        ("Critical Options", &info.critical_options),
        ("Extensions", &info.extensions),
    ] {
        if map.is_empty() {
            s.push_str(&format!("        {title}: (none)\n"));
        } else {
            s.push_str(&format!("        {title}: \n"));
            for (k, v) in map {
                if v.is_empty() {
                    s.push_str(&format!("                {}\n", escape(k)));
                } else {
                    s.push_str(&format!("                {} {}\n", escape(k), escape(v)));
                }
            }
        }
    }
    s
}

fn key_kind_plain(k: &KeyData) -> &'static str {
    match k {
        KeyData::Ed25519(_) => "ED25519",
        KeyData::Ecdsa(_) => "ECDSA",
        KeyData::Rsa(_) => "RSA",
        KeyData::SkEd25519(_) => "ED25519-SK",
        KeyData::SkEcdsaSha2NistP256(_) => "ECDSA-SK",
        _ => "UNKNOWN",
    }
}

/// The public key line of a CA for `TrustedUserCAKeys`, or with a pattern
/// the `@cert-authority PATTERN ...` line for `known_hosts`.
pub fn ca_line(key: &KeyData, known_hosts: Option<&str>, comment: &str) -> Result<String> {
    let line = PublicKey::new(key.clone(), comment)
        .to_openssh()
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidKey,
                format!("cannot encode the CA key: {e}"),
            )
        })?;
    Ok(match known_hosts {
        Some(p) => format!("@cert-authority {p} {line}"),
        None => line,
    })
}

/// A duration as `1d2h3m4s` (zero parts left out).
pub fn human(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (v, u) in [(d, "d"), (h, "h"), (m, "m"), (s, "s")] {
        if v > 0 || (u == "s" && out.is_empty()) {
            out.push_str(&format!("{v}{u}"));
        }
    }
    out
}

/// What `sshca sign` and `sshca request` report of a certificate after
/// "Signed user key PATH: ": id, serial, principals and validity, like
/// ssh-keygen (the key id escaped).
pub fn issued_summary(cert: &Certificate) -> String {
    let info = CertInfo::new(cert);
    format!(
        "id \"{}\" serial {}{} valid {}",
        sshca::core::text::escape(&info.key_id),
        info.serial,
        if info.principals.is_empty() {
            String::new()
        } else {
            format!(
                " for {}",
                sshca::core::text::escape(&info.principals.join(","))
            )
        },
        sshca::core::validity::describe(info.valid_after, info.valid_before)
    )
}

/// A JSON array of strings joined with `,` (`None` when `v` is not an
/// array).
#[cfg(feature = "client")]
pub(crate) fn joined(v: &serde_json::Value) -> Option<String> {
    v.as_array().map(|items| {
        items
            .iter()
            .filter_map(serde_json::Value::as_str)
            .collect::<Vec<_>>()
            .join(",")
    })
}
