//! The `[webhook.NAME]` tables: HTTPS receivers a policy asks before
//! issuing (`webhooks = [...]`) or tells about approval requests
//! (`approval.notify`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sshca::config::duration;

use super::is_path_segment;

/// A `[webhook.NAME]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The receiver's `https://` URL (redirects are not followed).
    pub url: String,
    /// CA certificates (PEM) the receiver must chain to (default: the
    /// system's roots).
    pub ca_cert: Option<PathBuf>,
    /// The file holding the secret of `X-Sshca-Signature` (at least 16
    /// bytes).
    pub secret_file: PathBuf,
    /// How long an answer may take (default `5s`).
    pub timeout: Option<String>,
    /// What a timeout, a failed connection, a non-2xx status or an answer
    /// that cannot be read means: `deny` (default) or `allow`.
    pub on_error: Option<String>,
}

impl WebhookConfig {
    /// How long an answer may take.
    pub fn timeout(&self) -> Duration {
        let secs = duration(self.timeout.as_ref(), "timeout")
            .ok()
            .flatten()
            .unwrap_or(5);
        Duration::from_secs(secs)
    }

    /// Whether a failure allows.
    pub fn allows_on_error(&self) -> bool {
        self.on_error.as_deref() == Some("allow")
    }
}

/// Checks that `url` (field `field`) is an `https://` URL.
pub(super) fn https_url(field: &str, url: &str) -> std::result::Result<(), String> {
    let rest = url.strip_prefix("https://").unwrap_or_default();
    if rest.is_empty() || rest.starts_with('/') || url.contains(char::is_whitespace) {
        return Err(format!("field `{field}`: {url:?} is not an https:// URL"));
    }
    Ok(())
}

/// Checks one webhook's fields; relative paths become relative to the
/// config file.
pub(super) fn check_webhook(
    name: &str,
    w: &mut WebhookConfig,
    path: &Path,
) -> std::result::Result<(), String> {
    if !is_path_segment(name) || name.contains('.') {
        return Err("the name must be letters, digits, `-` or `_`".into());
    }
    https_url("url", &w.url)?;
    match duration(w.timeout.as_ref(), "timeout")? {
        Some(t) if !(1..=60).contains(&t) => {
            return Err("field `timeout`: between 1s and 60s".into())
        }
        _ => {}
    }
    if let Some(o) = &w.on_error {
        if o != "deny" && o != "allow" {
            return Err(format!(
                "field `on_error`: {o:?} is not \"deny\" or \"allow\""
            ));
        }
    }
    super::relative_to_config(
        path,
        [Some(&mut w.secret_file), w.ca_cert.as_mut()]
            .into_iter()
            .flatten(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(t: &str) -> Result<WebhookConfig, String> {
        let text = format!("[webhook.hr]\n{t}\n");
        let cfg = sshca::config::Config::parse(&text, Path::new("/etc/sshca/sshca.toml"))
            .map_err(|e| e.to_string())?;
        let mut out = super::super::ServiceConfig::from_config(&cfg).map_err(|e| e.to_string())?;
        out.webhooks
            .remove("hr")
            .ok_or_else(|| "no webhook".to_owned())
    }

    #[test]
    fn fields_are_checked() {
        let w =
            check("url = \"https://hr.example.com/sshca\"\nsecret_file = \"hr.secret\"").unwrap();
        assert_eq!(w.secret_file, Path::new("/etc/sshca/hr.secret"));
        assert_eq!(w.timeout(), Duration::from_secs(5));
        assert!(!w.allows_on_error());
        for (t, want) in [
            ("url = \"http://x\"\nsecret_file = \"s\"", "https://"),
            ("url = \"https://x\"", "secret_file"),
            (
                "url = \"https://x\"\nsecret_file = \"s\"\ntimeout = \"2m\"",
                "between 1s and 60s",
            ),
            (
                "url = \"https://x\"\nsecret_file = \"s\"\non_error = \"maybe\"",
                "on_error",
            ),
            (
                "url = \"https://x\"\nsecret_file = \"s\"\nretries = 2",
                "retries",
            ),
        ] {
            let e = check(t).unwrap_err();
            assert!(e.contains(want), "{t}: {e}");
        }
    }
}
