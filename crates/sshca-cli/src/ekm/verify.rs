//! `sshca ekm verify`: a connection to an external key manager checked from
//! this machine, resolver by resolver.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sshca::signer::{Error, ErrorKind, KeyUri, Result};
use sshca_ekm::{Connection, ResolverReport};

/// Where `sshca ekm verify` takes its connection from: exactly one of a
/// key URI (or a config CA holding one), a connection file, or resolver
/// flags.
#[derive(Debug, Clone, Default)]
pub struct VerifyArgs {
    /// An `ekm:` key URI (its connection and key).
    pub uri: Option<String>,
    /// A connection description file, or `FILE#NAME` for the
    /// `[ekm_connection.NAME]` table of a TOML file.
    pub connection: Option<String>,
    /// Resolvers `HOST:PORT`, tried in order.
    pub resolvers: Vec<String>,
    /// Files with the pinned server certificates (for `resolvers`).
    pub server_certs: Vec<PathBuf>,
    /// Client identity PEM (for `resolvers`).
    pub client_identity: Option<PathBuf>,
    /// Environment variable with a bearer token.
    pub token_env: Option<String>,
    /// Endpoint filter for every resolver ([`sshca_ekm::EndpointFilter`]).
    pub endpoint_filter: Option<String>,
    /// A key to fetch: `SPACE/keys/KEY_ID`, or `KEY_ID` in the
    /// connection's crypto space.
    pub key: Option<String>,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidInput, msg.into())
}

/// Builds the connection and the key path to check.
pub fn resolve(a: &VerifyArgs) -> Result<(Connection, Option<String>)> {
    let sources = [
        a.uri.is_some(),
        a.connection.is_some(),
        !a.resolvers.is_empty(),
    ];
    if sources.iter().filter(|s| **s).count() != 1 {
        return Err(bad(
            "give exactly one of --ca/--uri, --connection FILE, or --resolver HOST:PORT (with --server-cert)",
        ));
    }
    if a.resolvers.is_empty() && (!a.server_certs.is_empty() || a.client_identity.is_some()) {
        return Err(bad(
            "--server-cert and --client-identity go with --resolver",
        ));
    }
    let (mut conn, uri_key) = if let Some(u) = &a.uri {
        let uri = KeyUri::parse(u)?;
        if uri.scheme() != sshca_ekm::SCHEME {
            return Err(bad(format!(
                "`{u}` is not an ekm: key URI; only external key manager connections can be verified"
            )));
        }
        let (conn, path) = sshca_ekm::connection_and_key(&uri)?;
        (conn, Some(path))
    } else if let Some(f) = &a.connection {
        (Connection::from_reference(f)?, None)
    } else {
        if a.server_certs.is_empty() {
            return Err(bad(
                "--server-cert PATH is required with --resolver: only pinned certificates are trusted",
            ));
        }
        let hosts: Vec<&str> = a.resolvers.iter().map(String::as_str).collect();
        let certs: Vec<&Path> = a.server_certs.iter().map(PathBuf::as_path).collect();
        (
            Connection::from_parts(&hosts, &certs, a.client_identity.as_deref())?,
            None,
        )
    };
    if let Some(var) = &a.token_env {
        conn.set_token_from_env(var)?;
    }
    if let Some(f) = &a.endpoint_filter {
        conn.set_endpoint_filter(f)?;
    }
    let key = match (&a.key, uri_key) {
        (Some(_), Some(_)) => {
            return Err(bad("--key does not go with a key URI, which names its key"))
        }
        (Some(k), None) if k.contains("/keys/") => Some(k.clone()),
        (Some(k), None) if conn.crypto_space_path.is_empty() => {
            return Err(bad(format!(
                "--key {k}: give SPACE/keys/{k}; the connection has no crypto space path"
            )))
        }
        (Some(k), None) => Some(format!("{}/keys/{k}", conn.crypto_space_path)),
        (None, k) => k,
    };
    Ok((conn, key))
}

/// One step of a resolver's report, as printed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StepReport {
    /// The step: `tls_handshake`, `certificate_match`, `health`, `public_key`.
    pub step: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was found, or why it failed.
    pub detail: String,
}

/// A resolver's report, as printed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ResolverSummary {
    /// `host:port`.
    pub hostname: String,
    /// Every step passed.
    pub ok: bool,
    /// The steps in order.
    pub steps: Vec<StepReport>,
}

/// Flattens the reports of [`sshca_ekm::verify_connectivity`].
pub fn summarize(reports: &[ResolverReport]) -> Vec<ResolverSummary> {
    reports
        .iter()
        .map(|r| {
            let mut steps = Vec::new();
            let mut push = |step, s: &sshca_ekm::Step| {
                let (ok, detail) = match s {
                    Ok(d) => (true, d.clone()),
                    Err(d) => (false, d.clone()),
                };
                steps.push(StepReport { step, ok, detail });
            };
            push("tls_handshake", &r.tls_handshake);
            push("certificate_match", &r.certificate_match);
            push("health", &r.health);
            if let Some(p) = &r.public_key {
                push("public_key", p);
            }
            ResolverSummary {
                hostname: r.hostname.clone(),
                ok: r.ok(),
                steps,
            }
        })
        .collect()
}

/// The report as text: a line per resolver and one per step.
pub fn summary_text(s: &[ResolverSummary]) -> String {
    let mut out = String::new();
    for r in s {
        out.push_str(&format!(
            "{}: {}\n",
            r.hostname,
            if r.ok { "ok" } else { "FAILED" }
        ));
        for st in &r.steps {
            out.push_str(&format!(
                "  {:<18} {:<4} {}\n",
                st.step.replace('_', " "),
                if st.ok { "ok" } else { "FAIL" },
                st.detail
            ));
        }
    }
    out
}

/// Checks every resolver of the connection `a` describes.
pub async fn verify(a: &VerifyArgs) -> Result<Vec<ResolverSummary>> {
    let (conn, key) = resolve(a)?;
    let reports = sshca_ekm::verify_connectivity(&conn, key.as_deref()).await;
    Ok(summarize(&reports))
}
