//! The `[audit.NAME]` tables: where audit events go besides the store
//! (a file, stdout, syslog, an HTTPS receiver), and whether issuance
//! waits for the sink (`required`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sshca::config::duration;

use super::is_path_segment;

/// An `[audit.NAME]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSinkConfig {
    /// `file`, `stdout`, `syslog` or `http`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `file`: the file (JSON lines, appended; reopened on SIGHUP).
    pub path: Option<PathBuf>,
    /// `syslog`: `udp://HOST:PORT`, `tcp://HOST:PORT` (octet counting) or
    /// `unix:PATH` (a datagram socket such as `/dev/log`).
    pub address: Option<String>,
    /// `http`: the receiver's `https://` URL (events POSTed in batches as
    /// a JSON array).
    pub url: Option<String>,
    /// `http`: CA certificates (PEM) the receiver must chain to (default:
    /// the system's roots).
    pub ca_cert: Option<PathBuf>,
    /// `http`: the file holding the secret of `X-Sshca-Signature`.
    pub secret_file: Option<PathBuf>,
    /// Issuance fails (503 `audit_unavailable`) while this sink cannot
    /// take events.
    #[serde(default)]
    pub required: bool,
    /// Most events one delivery carries (default 100).
    pub batch: Option<usize>,
    /// Most events waiting for this sink (default 100000): past it, a sink
    /// that is not required skips the oldest (counted in `/metrics`), and
    /// a required one stops issuance.
    pub max_backlog: Option<u64>,
    /// How often the chain's head is written to the sink (default `5m`).
    pub head_interval: Option<String>,
}

/// The sink types.
pub const AUDIT_SINKS: [&str; 4] = ["file", "stdout", "syslog", "http"];

impl AuditSinkConfig {
    /// Events per delivery.
    pub fn batch(&self) -> usize {
        self.batch.unwrap_or(100)
    }

    /// Most events waiting.
    pub fn max_backlog(&self) -> u64 {
        self.max_backlog.unwrap_or(100_000)
    }

    /// How often the head is written.
    pub fn head_interval(&self) -> Duration {
        let secs = duration(self.head_interval.as_ref(), "head_interval")
            .ok()
            .flatten()
            .unwrap_or(300);
        Duration::from_secs(secs)
    }
}

/// Checks one sink's fields; relative paths become relative to the config
/// file.
pub(super) fn check_audit(
    name: &str,
    a: &mut AuditSinkConfig,
    path: &Path,
) -> std::result::Result<(), String> {
    if !is_path_segment(name) {
        return Err("the name must be letters, digits, `-`, `_` or `.`".into());
    }
    if !AUDIT_SINKS.contains(&a.kind.as_str()) {
        return Err(format!(
            "field `type`: {:?} is not one of {}",
            a.kind,
            AUDIT_SINKS.join(", ")
        ));
    }
    let fields: [(&str, bool, &str); 5] = [
        ("path", a.path.is_some(), "file"),
        ("address", a.address.is_some(), "syslog"),
        ("url", a.url.is_some(), "http"),
        ("ca_cert", a.ca_cert.is_some(), "http"),
        ("secret_file", a.secret_file.is_some(), "http"),
    ];
    for (field, set, kind) in fields {
        if set && a.kind != kind {
            return Err(format!("field `{field}` is for type = \"{kind}\" only"));
        }
    }
    let need = |field: &str, set: bool| {
        if set {
            Ok(())
        } else {
            Err(format!("type = \"{}\" needs field `{field}`", a.kind))
        }
    };
    match a.kind.as_str() {
        "file" => need("path", a.path.is_some())?,
        "syslog" => {
            need("address", a.address.is_some())?;
            let addr = a.address.as_deref().unwrap_or_default();
            let ok = match addr.split_once(':') {
                Some(("udp" | "tcp", rest)) => rest.strip_prefix("//").is_some_and(|hp| {
                    hp.rsplit_once(':')
                        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
                }),
                Some(("unix", rest)) => !rest.is_empty(),
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "field `address`: {addr:?} is not udp://HOST:PORT, tcp://HOST:PORT or unix:PATH"
                ));
            }
        }
        "http" => {
            need("url", a.url.is_some())?;
            need("secret_file", a.secret_file.is_some())?;
            super::webhook::https_url("url", a.url.as_deref().unwrap_or_default())?;
        }
        _ => {}
    }
    if a.batch.is_some_and(|b| b == 0 || b > 10_000) {
        return Err("field `batch`: between 1 and 10000".into());
    }
    if a.max_backlog == Some(0) {
        return Err("field `max_backlog`: at least 1".into());
    }
    if duration(a.head_interval.as_ref(), "head_interval")? == Some(0) {
        return Err("field `head_interval`: at least 1s".into());
    }
    super::relative_to_config(
        path,
        [&mut a.path, &mut a.ca_cert, &mut a.secret_file]
            .into_iter()
            .flatten(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(t: &str) -> Result<AuditSinkConfig, String> {
        let text = format!("[server]\ndata_dir = \"/var/lib/sshca\"\n[audit.s]\n{t}\n");
        let cfg = sshca::config::Config::parse(&text, Path::new("/etc/sshca/sshca.toml"))
            .map_err(|e| e.to_string())?;
        let mut out = super::super::ServiceConfig::from_config(&cfg).map_err(|e| e.to_string())?;
        out.audits.remove("s").ok_or_else(|| "no sink".to_owned())
    }

    #[test]
    fn sinks_need_a_data_dir() {
        let cfg = sshca::config::Config::parse(
            "[audit.s]\ntype = \"stdout\"\n",
            Path::new("/etc/sshca/sshca.toml"),
        )
        .unwrap();
        let e = super::super::ServiceConfig::from_config(&cfg).unwrap_err();
        assert!(e.to_string().contains("data_dir"), "{e}");
    }

    #[test]
    fn each_type_gets_its_fields_checked() {
        let a = check("type = \"file\"\npath = \"audit.jsonl\"").unwrap();
        assert_eq!(a.path.unwrap(), Path::new("/etc/sshca/audit.jsonl"));
        assert!(check("type = \"stdout\"").is_ok());
        assert!(check("type = \"syslog\"\naddress = \"udp://127.0.0.1:514\"").is_ok());
        assert!(check("type = \"syslog\"\naddress = \"unix:/dev/log\"").is_ok());
        for (t, want) in [
            ("type = \"kafka\"", "not one of"),
            ("type = \"file\"", "needs field `path`"),
            (
                "type = \"stdout\"\npath = \"x\"",
                "`path` is for type = \"file\"",
            ),
            (
                "type = \"syslog\"\naddress = \"udp://h\"",
                "udp://HOST:PORT",
            ),
            (
                "type = \"http\"\nurl = \"http://x\"\nsecret_file = \"s\"",
                "https://",
            ),
            (
                "type = \"http\"\nurl = \"https://x\"",
                "needs field `secret_file`",
            ),
            ("type = \"stdout\"\nbatch = 0", "between 1"),
            (
                "type = \"stdout\"\nhead_interval = \"soon\"",
                "head_interval",
            ),
            ("type = \"stdout\"\nwhat = 1", "unknown field"),
        ] {
            let e = check(t).unwrap_err();
            assert!(e.contains(want), "{t}: {e}");
        }
    }
}
