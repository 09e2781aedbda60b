//! Cloud KMS EkmService (`ekmConnections`, `ekmConfig`, `verifyConnectivity`)
//! and the link from `EXTERNAL_VPC` crypto key versions to the external key
//! manager: the emulated Cloud KMS dials the connection's service resolvers
//! over HTTPS, trusting only their `serverCertificates`, presents the
//! emulator's EKM client identity, and speaks the EKM protocol
//! (`docs/ekm-protocol.md`).
//!
//! Differences from Google, on purpose: Service Directory is not emulated, so
//! a resolver's `hostname` may carry a port (`127.0.0.1:8443`) and is dialled
//! directly; several resolvers are accepted (Google takes one today); the
//! emulator only dials resolvers that resolve to loopback addresses (or the
//! address it is bound to).

use hyper::StatusCode;
use serde_json::{json, Map, Value};
use sha2::Digest;

use crate::gcp::external::{call_one, Answer};
use crate::gcp::link::host_port;
use crate::gcp::model::{name_of, parse_enum, Enc};
use crate::gcp::store::{EkmConnection, ServiceResolver};
use crate::google::{already_exists, gerr, invalid, not_found, precondition, valid_id, GcpError};
use crate::state::{read, write, State};
use crate::util::{b64, rfc3339, unb64, valid_path};
use crate::Request;

/// KeyManagementMode MANUAL.
pub const MANUAL: i32 = 1;
/// KeyManagementMode CLOUD_KMS.
pub const CLOUD_KMS: i32 = 2;
/// Most service resolvers per connection.
pub const MAX_RESOLVERS: usize = 10;
/// Most server certificates per resolver (Google's limit).
pub const MAX_CERTIFICATES: usize = 10;

pub(crate) const MODES: &[(&str, i32)] = &[
    ("KEY_MANAGEMENT_MODE_UNSPECIFIED", 0),
    ("MANUAL", MANUAL),
    ("CLOUD_KMS", CLOUD_KMS),
];

/// The output-only fields Google fills in for a certificate.
pub(crate) fn certificate_json(der: &[u8]) -> Value {
    use x509_cert::der::oid::AssociatedOid;
    use x509_cert::der::Decode;
    let fingerprint = hex::encode(sha2::Sha256::digest(der));
    let Ok(cert) = x509_cert::Certificate::from_der(der) else {
        return json!({"rawDer": b64(der), "parsed": false, "sha256Fingerprint": fingerprint});
    };
    let tbs = &cert.tbs_certificate;
    let time = |t: &x509_cert::time::Time| rfc3339(t.to_unix_duration().as_secs());
    let mut dns = Vec::new();
    for ext in tbs.extensions.iter().flatten() {
        if ext.extn_id == <x509_cert::ext::pkix::SubjectAltName as AssociatedOid>::OID {
            if let Ok(san) =
                x509_cert::ext::pkix::SubjectAltName::from_der(ext.extn_value.as_bytes())
            {
                for n in san.0 {
                    if let x509_cert::ext::pkix::name::GeneralName::DnsName(d) = n {
                        dns.push(d.to_string());
                    }
                }
            }
        }
    }
    json!({
        "rawDer": b64(der),
        "parsed": true,
        "issuer": tbs.issuer.to_string(),
        "subject": tbs.subject.to_string(),
        "subjectAlternativeDnsNames": dns,
        "notBeforeTime": time(&tbs.validity.not_before),
        "notAfterTime": time(&tbs.validity.not_after),
        "serialNumber": hex::encode(tbs.serial_number.as_bytes()),
        "sha256Fingerprint": fingerprint,
    })
}

pub(crate) fn connection_json(c: &EkmConnection, enc: Enc) -> Value {
    let resolvers: Vec<Value> = c
        .resolvers
        .iter()
        .map(|r| {
            json!({
                "serviceDirectoryService": r.service_directory_service,
                "endpointFilter": r.endpoint_filter,
                "hostname": r.hostname,
                "serverCertificates": r.server_certificates.iter().map(|d| certificate_json(d)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "name": c.name,
        "createTime": rfc3339(c.created),
        "serviceResolvers": resolvers,
        "etag": c.etag,
        "keyManagementMode": enc.e(MODES, c.mode),
        "cryptoSpacePath": c.crypto_space_path,
    })
}

pub(crate) fn new_etag() -> String {
    b64(&crate::crypto::random_bytes(12))
}

/// A KeyManagementMode; absent or unspecified means MANUAL.
pub(crate) fn parse_mode(v: &Value) -> Result<i32, GcpError> {
    let n = match v {
        Value::Null => 0,
        v => parse_enum(v, MODES, "keyManagementMode")?,
    };
    match n {
        0 | MANUAL => Ok(MANUAL),
        CLOUD_KMS => Ok(CLOUD_KMS),
        other => Err(invalid(format!("keyManagementMode: unknown value {other}"))),
    }
}

pub(crate) fn str_of<'a>(
    v: &'a Map<String, Value>,
    field: &str,
    ctx: &str,
) -> Result<&'a str, GcpError> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(format!("{ctx}{field} must be a string"))),
    }
}

pub(crate) fn parse_resolvers(v: &Value) -> Result<Vec<ServiceResolver>, GcpError> {
    let list = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        _ => return Err(invalid("serviceResolvers must be a list")),
    };
    if list.len() > MAX_RESOLVERS {
        return Err(invalid(format!(
            "serviceResolvers has {} entries; at most {MAX_RESOLVERS}",
            list.len()
        )));
    }
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let ctx = format!("serviceResolvers[{i}].");
        let r = r
            .as_object()
            .ok_or_else(|| invalid(format!("serviceResolvers[{i}] must be an object")))?;
        let hostname = str_of(r, "hostname", &ctx)?;
        let certs = match r.get("serverCertificates") {
            Some(Value::Array(a)) => a,
            None | Some(Value::Null) => {
                return Err(invalid(format!("{ctx}serverCertificates is required")))
            }
            Some(_) => return Err(invalid(format!("{ctx}serverCertificates must be a list"))),
        };
        let mut ders = Vec::new();
        for (j, c) in certs.iter().enumerate() {
            let field = format!("{ctx}serverCertificates[{j}].rawDer");
            let raw = c
                .get("rawDer")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid(format!("{field} is required (base64 DER)")))?;
            ders.push(unb64(&field, raw).map_err(invalid)?);
        }
        out.push(check_resolver(
            &ctx,
            ".rawDer",
            ServiceResolver {
                service_directory_service: str_of(r, "serviceDirectoryService", &ctx)?.to_string(),
                endpoint_filter: str_of(r, "endpointFilter", &ctx)?.to_string(),
                hostname: hostname.to_string(),
                server_certificates: ders,
            },
        )?);
    }
    Ok(out)
}

/// Checks a resolver however it was given (API or seed): `ctx` names it
/// and `der_field` the field under each certificate that held its DER.
pub(crate) fn check_resolver(
    ctx: &str,
    der_field: &str,
    r: ServiceResolver,
) -> Result<ServiceResolver, GcpError> {
    if r.hostname.is_empty() {
        return Err(invalid(format!("{ctx}hostname is required")));
    }
    if host_port(&r.hostname).is_none() {
        return Err(invalid(format!(
            "{ctx}hostname {:?} is not HOST or HOST:PORT",
            r.hostname
        )));
    }
    let n = r.server_certificates.len();
    if n == 0 || n > MAX_CERTIFICATES {
        return Err(invalid(format!(
            "{ctx}serverCertificates has {n} entries; give 1 to {MAX_CERTIFICATES}"
        )));
    }
    for (j, der) in r.server_certificates.iter().enumerate() {
        use x509_cert::der::Decode;
        if let Err(e) = x509_cert::Certificate::from_der(der) {
            return Err(invalid(format!(
                "{ctx}serverCertificates[{j}]{der_field} is not an X.509 certificate: {e}"
            )));
        }
    }
    Ok(r)
}

/// Checks what a connection must hold after a create or an update.
pub(crate) fn check_connection(c: &EkmConnection) -> Result<(), GcpError> {
    if c.mode == CLOUD_KMS && c.crypto_space_path.is_empty() {
        return Err(invalid(
            "cryptoSpacePath is required when keyManagementMode is CLOUD_KMS",
        ));
    }
    if !c.crypto_space_path.is_empty() && !valid_path(&c.crypto_space_path) {
        return Err(invalid(format!(
            "cryptoSpacePath {:?} is not segments of [A-Za-z0-9._-] joined by /",
            c.crypto_space_path
        )));
    }
    Ok(())
}

pub(crate) fn connection_from(
    name: &str,
    b: &Map<String, Value>,
    created: u64,
) -> Result<EkmConnection, GcpError> {
    let c = EkmConnection {
        name: name.to_string(),
        created,
        resolvers: parse_resolvers(b.get("serviceResolvers").unwrap_or(&Value::Null))?,
        mode: parse_mode(b.get("keyManagementMode").unwrap_or(&Value::Null))?,
        crypto_space_path: str_of(b, "cryptoSpacePath", "")?.to_string(),
        etag: new_etag(),
    };
    check_connection(&c)?;
    Ok(c)
}

pub(crate) fn camel(field: &str) -> String {
    let mut out = String::new();
    let mut up = false;
    for ch in field.chars() {
        if ch == '_' {
            up = true;
        } else if up {
            out.extend(ch.to_uppercase());
            up = false;
        } else {
            out.push(ch);
        }
    }
    out
}

/// The fields of an update mask, in camelCase; an error names an unknown one.
pub(crate) fn mask_fields(req: &Request, allowed: &[&str]) -> Result<Vec<String>, GcpError> {
    let mask = req.query("updateMask").unwrap_or("");
    let fields: Vec<String> = mask
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(camel)
        .collect();
    if fields.is_empty() {
        return Err(invalid(format!(
            "updateMask is required: one or more of {}",
            allowed.join(", ")
        )));
    }
    for f in &fields {
        if !allowed.contains(&f.as_str()) {
            return Err(invalid(format!(
                "updateMask: {f:?} cannot be updated; one or more of {}",
                allowed.join(", ")
            )));
        }
    }
    Ok(fields)
}

/// The operation a request path names, when it is an EkmService one:
/// `segs` are the resource segments (`projects/P/locations/L/...`).
pub(crate) fn operation(
    segs: &[&str],
    method: &hyper::Method,
    verb: Option<&str>,
) -> Option<&'static str> {
    use hyper::Method as M;
    Some(match (segs.len(), segs.get(4).copied()?, method, verb) {
        (5, "ekmConnections", &M::GET, None) => "listEkmConnections",
        (5, "ekmConnections", &M::POST, None) => "createEkmConnection",
        (6, "ekmConnections", &M::GET, None) => "getEkmConnection",
        (6, "ekmConnections", &M::PATCH, None) => "updateEkmConnection",
        (6, "ekmConnections", &M::GET, Some("verifyConnectivity")) => "verifyConnectivity",
        (5, "ekmConfig", &M::GET, None) => "getEkmConfig",
        (5, "ekmConfig", &M::PATCH, None) => "updateEkmConfig",
        _ => return None,
    })
}

/// Runs an EkmService operation.
pub(crate) async fn handle(
    state: &State,
    op: &str,
    segs: &[&str],
    req: &Request,
    b: &Map<String, Value>,
    enc: Enc,
) -> Result<Value, GcpError> {
    let location = segs[..4].join("/");
    match op {
        "listEkmConnections" => {
            let prefix = format!("{location}/ekmConnections/");
            let list: Vec<Value> = read(&state.gcp)
                .ekm_connections
                .values()
                .filter(|c| c.name.starts_with(&prefix))
                .map(|c| connection_json(c, enc))
                .collect();
            Ok(json!({"totalSize": list.len(), "ekmConnections": list}))
        }
        "createEkmConnection" => {
            let id = req
                .query("ekmConnectionId")
                .ok_or_else(|| invalid("ekmConnectionId is required"))?;
            if !valid_id(id) {
                return Err(invalid(format!(
                    "ekmConnectionId {id:?} must match [a-zA-Z0-9_-]{{1,63}}"
                )));
            }
            let name = format!("{location}/ekmConnections/{id}");
            let c = connection_from(&name, b, state.now())?;
            let out = connection_json(&c, enc);
            let mut store = write(&state.gcp);
            if store.ekm_connections.contains_key(&name) {
                return Err(already_exists(&format!("EkmConnection {name}")));
            }
            store.ekm_connections.insert(name, c);
            drop(store);
            state.persist();
            Ok(out)
        }
        "getEkmConnection" => {
            let name = segs.join("/");
            read(&state.gcp)
                .ekm_connections
                .get(&name)
                .map(|c| connection_json(c, enc))
                .ok_or_else(|| not_found(&format!("EkmConnection {name}")))
        }
        "updateEkmConnection" => {
            let name = segs.join("/");
            let fields = mask_fields(
                req,
                &["serviceResolvers", "keyManagementMode", "cryptoSpacePath"],
            )?;
            let mut store = write(&state.gcp);
            let cur = store
                .ekm_connections
                .get(&name)
                .ok_or_else(|| not_found(&format!("EkmConnection {name}")))?;
            let etag = str_of(b, "etag", "")?;
            if !etag.is_empty() && etag != cur.etag {
                return Err(gerr(
                    StatusCode::CONFLICT,
                    "ABORTED",
                    format!("The etag {etag:?} does not match the current etag of {name}."),
                ));
            }
            let mut next = cur.clone();
            for f in &fields {
                match f.as_str() {
                    "serviceResolvers" => {
                        next.resolvers =
                            parse_resolvers(b.get("serviceResolvers").unwrap_or(&Value::Null))?
                    }
                    "keyManagementMode" => {
                        next.mode = parse_mode(b.get("keyManagementMode").unwrap_or(&Value::Null))?
                    }
                    _ => next.crypto_space_path = str_of(b, "cryptoSpacePath", "")?.to_string(),
                }
            }
            check_connection(&next)?;
            next.etag = new_etag();
            let out = connection_json(&next, enc);
            store.ekm_connections.insert(name, next);
            drop(store);
            state.persist();
            Ok(out)
        }
        "verifyConnectivity" => {
            let name = segs.join("/");
            let conn = read(&state.gcp)
                .ekm_connections
                .get(&name)
                .cloned()
                .ok_or_else(|| not_found(&format!("EkmConnection {name}")))?;
            verify_connectivity(state, &conn).await
        }
        "getEkmConfig" => {
            let default = read(&state.gcp)
                .ekm_configs
                .get(&location)
                .cloned()
                .unwrap_or_default();
            Ok(json!({"name": format!("{location}/ekmConfig"), "defaultEkmConnection": default}))
        }
        _ => {
            mask_fields(req, &["defaultEkmConnection"])?;
            let conn = str_of(b, "defaultEkmConnection", "")?.to_string();
            let mut store = write(&state.gcp);
            if !conn.is_empty() {
                check_connection_in(&store, &location, &conn, "defaultEkmConnection")?;
                store.ekm_configs.insert(location.clone(), conn.clone());
            } else {
                store.ekm_configs.remove(&location);
            }
            drop(store);
            state.persist();
            Ok(json!({"name": format!("{location}/ekmConfig"), "defaultEkmConnection": conn}))
        }
    }
}

/// Checks every resolver: TLS with the pinned certificates and the
/// health operation. `{}` when all pass, else FAILED_PRECONDITION naming
/// each resolver that failed and why.
pub(crate) async fn verify_connectivity(
    state: &State,
    conn: &EkmConnection,
) -> Result<Value, GcpError> {
    if conn.resolvers.is_empty() {
        return Err(precondition(format!(
            "EkmConnection {} has no service resolvers.",
            conn.name
        )));
    }
    let mut failures = Vec::new();
    for (i, r) in conn.resolvers.iter().enumerate() {
        let res = call_one(state, r, reqwest::Method::GET, "/v1/health", None).await;
        let fail = match res {
            Ok(Answer::Ok(v)) if v["status"] == "SERVING" => None,
            Ok(Answer::Ok(v)) => Some(format!("health answered {v}")),
            Ok(Answer::Refused(code, name, m)) => Some(format!("{code} {name}: {m}")),
            Err(e) => Some(e),
        };
        if let Some(f) = fail {
            failures.push(format!("resolver {i} ({}): {f}", r.hostname));
        }
    }
    if failures.is_empty() {
        Ok(json!({}))
    } else {
        Err(precondition(format!(
            "EkmConnection {} failed the connectivity check: {}",
            conn.name,
            failures.join("; ")
        )))
    }
}

/// Creates a seeded EkmConnection.
pub fn seed_connection(
    state: &State,
    s: crate::gcp::store::EkmConnectionSeed,
) -> Result<(), String> {
    let what = format!("gcp_ekm_connections {}", s.name);
    let segs: Vec<&str> = s.name.split('/').collect();
    if segs.len() != 6
        || segs[0] != "projects"
        || segs[2] != "locations"
        || segs[4] != "ekmConnections"
        || !valid_id(segs[5])
    {
        return Err(format!(
            "{what}: expected projects/P/locations/L/ekmConnections/ID"
        ));
    }
    if s.service_resolvers.len() > MAX_RESOLVERS {
        return Err(format!(
            "{what}: {} service resolvers; at most {MAX_RESOLVERS}",
            s.service_resolvers.len()
        ));
    }
    let mut resolvers = Vec::new();
    for (i, r) in s.service_resolvers.iter().enumerate() {
        let mut ders = Vec::new();
        for pem in &r.server_certificates {
            let found: Vec<_> = rustls_pemfile::certs(&mut pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{what}: server certificate PEM: {e}"))?;
            if found.is_empty() {
                return Err(format!(
                    "{what}: a server certificate entry holds no CERTIFICATE block"
                ));
            }
            ders.extend(found.into_iter().map(|c| c.to_vec()));
        }
        let resolver = ServiceResolver {
            service_directory_service: r.service_directory_service.clone(),
            endpoint_filter: r.endpoint_filter.clone(),
            hostname: r.hostname.clone(),
            server_certificates: ders,
        };
        resolvers.push(
            check_resolver(&format!("service_resolvers[{i}]."), "", resolver)
                .map_err(|e| format!("{what}: {}", e.message()))?,
        );
    }
    let mode = match s.key_management_mode.as_deref() {
        None => MANUAL,
        Some(m) => parse_mode(&json!(m)).map_err(|e| format!("{what}: {}", e.message()))?,
    };
    let c = EkmConnection {
        name: s.name.clone(),
        created: state.now(),
        resolvers,
        mode,
        crypto_space_path: s.crypto_space_path,
        etag: new_etag(),
    };
    check_connection(&c).map_err(|e| format!("{what}: {}", e.message()))?;
    write(&state.gcp).ekm_connections.insert(s.name, c);
    Ok(())
}

/// Sets a seeded EkmConfig.
pub fn seed_config(state: &State, s: crate::gcp::store::EkmConfigSeed) -> Result<(), String> {
    let what = format!("gcp_ekm_configs {}", s.location);
    let mut store = write(&state.gcp);
    check_connection_in(
        &store,
        &s.location,
        &s.default_ekm_connection,
        "default_ekm_connection",
    )
    .map_err(|e| format!("{what}: {}", e.message()))?;
    store
        .ekm_configs
        .insert(s.location, s.default_ekm_connection);
    Ok(())
}

/// A connection as the state file holds it (certificates in PEM).
pub fn export_connection(c: &EkmConnection) -> crate::gcp::store::EkmConnectionSeed {
    crate::gcp::store::EkmConnectionSeed {
        name: c.name.clone(),
        key_management_mode: name_of(MODES, c.mode).map(str::to_string),
        crypto_space_path: c.crypto_space_path.clone(),
        service_resolvers: c
            .resolvers
            .iter()
            .map(|r| crate::gcp::store::ServiceResolverSeed {
                hostname: r.hostname.clone(),
                service_directory_service: r.service_directory_service.clone(),
                endpoint_filter: r.endpoint_filter.clone(),
                server_certificates: r.server_certificates.iter().map(|d| pem(d)).collect(),
                server_certificate_files: Vec::new(),
            })
            .collect(),
    }
}

pub(crate) fn pem(der: &[u8]) -> String {
    let b = b64(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Checks a `cryptoKeyBackend` for a new `EXTERNAL_VPC` key in `ring`;
/// returns the connection's key management mode.
pub(crate) fn check_backend(state: &State, ring: &str, backend: &str) -> Result<i32, GcpError> {
    let location = ring.split('/').take(4).collect::<Vec<_>>().join("/");
    if backend.is_empty() {
        return Err(invalid(
            "cryptoKeyBackend (an EkmConnection) is required for EXTERNAL_VPC keys",
        ));
    }
    check_connection_in(&read(&state.gcp), &location, backend, "cryptoKeyBackend")
}

/// Checks that `name` (given in `field`) is an existing EkmConnection of
/// `location`; returns its key management mode.
pub(crate) fn check_connection_in(
    store: &crate::gcp::store::GcpStore,
    location: &str,
    name: &str,
    field: &str,
) -> Result<i32, GcpError> {
    if !name.starts_with(&format!("{location}/ekmConnections/")) {
        return Err(invalid(format!(
            "{field} {name:?} must be an EkmConnection in {location}"
        )));
    }
    store
        .ekm_connections
        .get(name)
        .map(|c| c.mode)
        .ok_or_else(|| not_found(&format!("EkmConnection {name}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_masks() {
        assert_eq!(camel("service_resolvers"), "serviceResolvers");
        assert_eq!(camel("cryptoSpacePath"), "cryptoSpacePath");
    }
}
