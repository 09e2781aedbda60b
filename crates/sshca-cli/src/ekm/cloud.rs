//! `sshca ekm connections|config`: Cloud KMS EkmConnections and EkmConfig
//! through the EkmService API.

use std::path::PathBuf;

use google_cloud_kms_v1::client::EkmService;
use google_cloud_kms_v1::model::ekm_connection::{KeyManagementMode, ServiceResolver};
use google_cloud_kms_v1::model::Certificate;
use google_cloud_wkt::FieldMask;
use sshca::signer::{Error, ErrorKind, Result};
use sshca_gcp::service_error;

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
