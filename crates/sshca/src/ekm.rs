//! External key managers: checking a connection from sshca's side
//! (`sshca ekm verify`, feature `ekm`) and managing Cloud KMS EkmConnections
//! and EkmConfig (`sshca ekm connections|config`, feature `gcp`).

#[cfg(feature = "ekm")]
pub use verify::*;

#[cfg(feature = "gcp")]
pub use cloud::*;

#[cfg(feature = "ekm")]
mod verify {
    use std::path::{Path, PathBuf};

    use serde::Serialize;
    use sshca_ekm::{Connection, ResolverReport};
    use sshca_signer::{Error, ErrorKind, KeyUri, Result};

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
}

#[cfg(feature = "gcp")]
mod cloud {
    use std::path::PathBuf;

    use google_cloud_kms_v1::client::EkmService;
    use google_cloud_kms_v1::model::ekm_connection::{KeyManagementMode, ServiceResolver};
    use google_cloud_kms_v1::model::Certificate;
    use google_cloud_wkt::FieldMask;
    use sshca_gcp::service_error;
    use sshca_signer::{Error, ErrorKind, Result};

    pub use google_cloud_kms_v1::model::{EkmConfig, EkmConnection};

    fn bad(msg: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidInput, msg.into())
    }

    /// A Cloud KMS EkmService client: Application Default Credentials, or
    /// anonymous access to `endpoint` (such as the emulator).
    pub async fn client(endpoint: Option<&str>) -> Result<EkmService> {
        sshca_gcp::ekm_service(endpoint).await
    }

    fn check_location(location: &str) -> Result<()> {
        let segs: Vec<&str> = location.split('/').collect();
        if segs.len() != 4
            || segs[0] != "projects"
            || segs[2] != "locations"
            || segs[1].is_empty()
            || segs[3].is_empty()
        {
            return Err(bad(format!(
                "`{location}` is not projects/PROJECT/locations/LOCATION"
            )));
        }
        Ok(())
    }

    fn check_connection_name(name: &str) -> Result<()> {
        match name.rsplit_once("/ekmConnections/") {
            Some((loc, id)) if !id.is_empty() && !id.contains('/') => check_location(loc),
            _ => Err(bad(format!(
                "`{name}` is not projects/P/locations/L/ekmConnections/ID"
            ))),
        }
    }

    /// The connections in `location` (`projects/P/locations/L`).
    pub async fn list(c: &EkmService, location: &str) -> Result<Vec<EkmConnection>> {
        check_location(location)?;
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = c
                .list_ekm_connections()
                .set_parent(location)
                .set_page_token(token.clone())
                .send()
                .await
                .map_err(|e| service_error(&format!("listing EkmConnections in {location}"), e))?;
            out.extend(page.ekm_connections);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            token = page.next_page_token;
        }
    }

    /// One connection by name.
    pub async fn get(c: &EkmService, name: &str) -> Result<EkmConnection> {
        check_connection_name(name)?;
        c.get_ekm_connection()
            .set_name(name)
            .send()
            .await
            .map_err(|e| service_error(&format!("getting {name}"), e))
    }

    /// What `sshca ekm connections create` makes.
    #[derive(Debug, Clone, Default)]
    pub struct NewConnection {
        /// `projects/P/locations/L`.
        pub location: String,
        /// The connection id.
        pub id: String,
        /// Resolver hostnames, one per replica.
        pub hostnames: Vec<String>,
        /// Files with the server certificates each resolver may present.
        pub server_certs: Vec<PathBuf>,
        /// Service Directory service of the resolvers (Google requires one).
        pub service_directory_service: String,
        /// Service Directory endpoint filter.
        pub endpoint_filter: String,
        /// `CLOUD_KMS` mode instead of `MANUAL`.
        pub cloud_kms_mode: bool,
        /// Crypto space path (required in `CLOUD_KMS` mode).
        pub crypto_space_path: String,
    }

    /// Creates a connection.
    pub async fn create(c: &EkmService, n: &NewConnection) -> Result<EkmConnection> {
        check_location(&n.location)?;
        if n.hostnames.is_empty() {
            return Err(bad("--resolver HOSTNAME is required (one per replica)"));
        }
        if n.server_certs.is_empty() {
            return Err(bad(
                "--server-cert PATH is required: the key manager's server certificates",
            ));
        }
        let mut certs = Vec::new();
        for p in &n.server_certs {
            certs.extend(sshca_ekm::read_certificates(p)?);
        }
        let resolvers = n.hostnames.iter().map(|h| {
            ServiceResolver::new()
                .set_hostname(h)
                .set_service_directory_service(&n.service_directory_service)
                .set_endpoint_filter(&n.endpoint_filter)
                .set_server_certificates(
                    certs
                        .iter()
                        .map(|d| Certificate::new().set_raw_der(d.to_vec())),
                )
        });
        let conn = EkmConnection::new()
            .set_service_resolvers(resolvers)
            .set_key_management_mode(if n.cloud_kms_mode {
                KeyManagementMode::CloudKms
            } else {
                KeyManagementMode::Manual
            })
            .set_crypto_space_path(&n.crypto_space_path);
        c.create_ekm_connection()
            .set_parent(&n.location)
            .set_ekm_connection_id(&n.id)
            .set_ekm_connection(conn)
            .send()
            .await
            .map_err(|e| {
                service_error(
                    &format!("creating EkmConnection {} in {}", n.id, n.location),
                    e,
                )
            })
    }

    /// Asks Cloud KMS to check a connection (VerifyConnectivity).
    pub async fn verify_remote(c: &EkmService, name: &str) -> Result<()> {
        check_connection_name(name)?;
        c.verify_connectivity()
            .set_name(name)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| service_error(&format!("VerifyConnectivity of {name}"), e))
    }

    /// The EkmConfig of `location`.
    pub async fn config_get(c: &EkmService, location: &str) -> Result<EkmConfig> {
        check_location(location)?;
        c.get_ekm_config()
            .set_name(format!("{location}/ekmConfig"))
            .send()
            .await
            .map_err(|e| service_error(&format!("getting the EkmConfig of {location}"), e))
    }

    /// Sets (or, with an empty name, clears) the default connection of
    /// `location`.
    pub async fn config_set(
        c: &EkmService,
        location: &str,
        default_connection: &str,
    ) -> Result<EkmConfig> {
        check_location(location)?;
        if !default_connection.is_empty() {
            check_connection_name(default_connection)?;
        }
        c.update_ekm_config()
            .set_ekm_config(
                EkmConfig::new()
                    .set_name(format!("{location}/ekmConfig"))
                    .set_default_ekm_connection(default_connection),
            )
            .set_update_mask(FieldMask::default().set_paths(["default_ekm_connection"]))
            .send()
            .await
            .map_err(|e| service_error(&format!("updating the EkmConfig of {location}"), e))
    }

    /// A connection as text.
    pub fn connection_text(c: &EkmConnection) -> String {
        let mode = match c.key_management_mode {
            KeyManagementMode::CloudKms => "CLOUD_KMS",
            _ => "MANUAL",
        };
        let mut out = format!(
            "{}\n  mode: {mode}\n  crypto space path: {}\n  etag: {}\n",
            c.name,
            if c.crypto_space_path.is_empty() {
                "-"
            } else {
                &c.crypto_space_path
            },
            c.etag
        );
        for (i, r) in c.service_resolvers.iter().enumerate() {
            out.push_str(&format!("  resolver {i}: {}\n", r.hostname));
            for cert in &r.server_certificates {
                out.push_str(&format!(
                    "    certificate {} (subject {}, SHA-256 {})\n",
                    if cert.parsed { "parsed" } else { "unparsed" },
                    if cert.subject.is_empty() {
                        "?"
                    } else {
                        &cert.subject
                    },
                    cert.sha256_fingerprint
                ));
            }
        }
        out
    }

    /// Any Cloud KMS model as pretty JSON.
    pub fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
        serde_json::to_string_pretty(v)
            .map_err(|e| Error::new(ErrorKind::BadResponse, format!("cannot encode JSON: {e}")))
    }
}
