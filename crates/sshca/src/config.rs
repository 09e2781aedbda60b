//! The CA config file (`sshca.toml`): named CAs and named signing policies.
//!
//! ```toml
//! [ca.users]
//! key = "file:/etc/sshca/user_ca"
//! pin = "SHA256:..."            # optional
//! next = ["file:/etc/sshca/user_ca.next"]      # optional: rotation
//! retired = ["file:/etc/sshca/user_ca.old"]    # optional: still trusted
//!
//! [policy.dev]
//! ca = "users"
//! cert_type = "user"
//! allowed_valid_principals = ["alice", "bob", "deploy-*"]
//! default_valid_principals = ["alice"]
//! critical_options = { "force-command" = "/usr/bin/true" }
//! default_extensions = { "permit-pty" = "" }
//! allowed_extensions = ["permit-pty", "permit-port-forwarding"]
//! ttl = "1h"
//! max_ttl = "8h"
//! requesters = ["ci-*"]
//! issued_dir = "/var/lib/sshca/issued"
//!
//! [ca.hsm]
//! key = "ekm:v0/spaces/ssh-ca/keys/users?connection=hsm"
//!
//! [server]                               # `sshca serve`
//! listen = "127.0.0.1:8443"
//! tls_cert = "server.pem"                # relative to this file
//! tls_key = "server.key"
//! client_ca = "clients-ca.pem"           # optional: client certificates
//! data_dir = "/var/lib/sshca"
//! store = "sqlite:/var/lib/sshca/sshca.db"
//! admins = ["ops-*"]
//! rate_limit = "600/min"
//!
//! vault_mount = "ssh"                    # optional: Vault-compatible API
//!
//! [token.ci-deploy]                      # `sshca token new ci-deploy`
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//!
//! [oidc.github]                          # JWT bearer tokens (OIDC)
//! issuer = "https://token.actions.githubusercontent.com"
//! audience = "sshca"
//! jwks = "https://token.actions.githubusercontent.com/.well-known/jwks"
//! identity_claim = "repository"          # default `sub`
//!
//! [policy.ci]
//! ca = "users"
//! auth = ["oidc:github"]                 # default: every source
//! valid_principals = ["deploy-{claims.repository_owner}"]
//!
//! [ekm_connection.hsm]                   # see sshca_ekm::ConnectionFile
//! crypto_space_path = "v0/spaces/ssh-ca"
//! client_identity = "ekm-client.pem"     # relative to this file
//! [[ekm_connection.hsm.service_resolvers]]
//! hostname = "ekm-1.example.internal:8443"
//! server_certificates = ["ekm-server.pem"]
//! ```
//! Unknown fields and incoherent values are errors naming the file, the
//! policy and the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sshca_core::policy::{Glob, OnDisallowed, Policy};
use sshca_core::validity::parse_ttl;
use sshca_core::{CertOptions, CertType, OptionValue};
use sshca_signer::{Error, ErrorKind, KeyUri, Result};

/// A CA entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    /// Key URI.
    pub key: String,
    /// Fingerprint pin (`SHA256:...`), checked when the CA is opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// Keys that will sign next (CA rotation): published in the trust
    /// bundle before `sshca ca rotate` makes the first one current.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next: Vec<String>,
    /// Keys that signed before: published while certificates they signed
    /// are unexpired, and covered by the CA's KRLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<String>,
}

impl CaConfig {
    /// The key URI with the pin applied as the `pin=` option.
    pub fn uri(&self) -> Result<String> {
        let mut u = KeyUri::parse(&self.key)?;
        if let Some(p) = &self.pin {
            u.set_option("pin", p);
        }
        Ok(u.to_string())
    }
}

/// The `[server]` table: how `sshca serve` listens and where it keeps its
/// record. Relative paths are relative to the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (default `127.0.0.1:8443`).
    pub listen: Option<String>,
    /// TLS certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to; enables
    /// client-certificate identities.
    pub client_ca: Option<PathBuf>,
    /// Store URL (default `sqlite:<data_dir>/sshca.db`).
    pub store: Option<String>,
    /// Where the service keeps its files.
    pub data_dir: Option<PathBuf>,
    /// Identity globs allowed to list every certificate.
    pub admins: Option<Vec<String>>,
    /// Largest request body in bytes (default 65536).
    pub max_body: Option<u64>,
    /// Requests per identity, `N/sec`, `N/min` or `N/hour`.
    pub rate_limit: Option<String>,
    /// Longest a request may take (ssh-keygen time syntax, default `30s`).
    pub request_timeout: Option<String>,
    /// Most signatures asked of the backends at once (default 64).
    pub max_concurrent_signs: Option<usize>,
    /// How long a store write may wait for the database (default `5s`).
    pub store_timeout: Option<String>,
    /// Most database connections for reads (default 8).
    pub store_pool: Option<u32>,
    /// Serve Vault's SSH secrets engine API under `/v1/<vault_mount>/`
    /// (off when unset).
    pub vault_mount: Option<String>,
    /// The CA whose key `/v1/<vault_mount>/public_key` returns (default:
    /// the only CA the policies use).
    pub vault_ca: Option<String>,
}

/// An `[oidc.NAME]` table: JWTs from an OpenID Connect issuer accepted as
/// bearer tokens; the requester's identity is `identity_claim` and its
/// source `oidc:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// The `aud` tokens must carry (one of, when a list).
    pub audience: String,
    /// The issuer's keys: a JWKS file (relative to the config file) or an
    /// `https://` URL, fetched, cached and fetched again on an unknown
    /// `kid`.
    pub jwks: String,
    /// CA certificates (PEM) that the JWKS URL's server must chain to
    /// (default: the system's roots).
    pub jwks_ca: Option<PathBuf>,
    /// The claim holding the identity policies' `requesters` match
    /// (default `sub`).
    pub identity_claim: Option<String>,
    /// Signature algorithms accepted (default: every asymmetric one).
    pub algorithms: Option<Vec<String>>,
    /// Clock skew allowed on `exp`, `nbf` and `iat` (default `60s`).
    pub leeway: Option<String>,
}

/// The JWT algorithms an `[oidc.NAME]` table may list: asymmetric only,
/// never `none` or HMAC (a shared secret would let anyone holding the
/// issuer's public key mint tokens).
pub const OIDC_ALGORITHMS: [&str; 7] = [
    "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA",
];

/// A `[token.NAME]` table: a bearer token whose identity is `NAME`, kept
/// only as a hash.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Lower-case hex SHA-256 of the token.
    pub sha256: String,
}

/// A policy as written in the file (all fields optional but `ca`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct PolicyConfig {
    pub ca: String,
    pub cert_type: Option<String>,
    pub valid_principals: Option<Vec<String>>,
    pub default_valid_principals: Option<Vec<String>>,
    pub allowed_valid_principals: Option<Vec<String>>,
    pub all_principals: Option<bool>,
    pub critical_options: Option<BTreeMap<String, String>>,
    pub default_critical_options: Option<BTreeMap<String, String>>,
    pub allowed_critical_options: Option<Vec<String>>,
    pub extensions: Option<BTreeMap<String, String>>,
    pub default_extensions: Option<BTreeMap<String, String>>,
    pub allowed_extensions: Option<Vec<String>>,
    pub ttl: Option<String>,
    pub max_ttl: Option<String>,
    pub max_start: Option<String>,
    pub allow_serial: Option<bool>,
    pub backdate: Option<String>,
    pub key_id: Option<String>,
    pub requesters: Option<Vec<String>>,
    pub allowed_key_types: Option<Vec<String>>,
    pub min_rsa_bits: Option<u32>,
    pub on_disallowed: Option<String>,
    pub issued_dir: Option<PathBuf>,
    /// Credential sources the policy accepts: `token`, `client-cert`,
    /// `oidc:NAME` (default: all).
    pub auth: Option<Vec<String>>,
}

/// A policy ready to use: the merge rules, its CA, and where copies go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyEntry {
    /// The merge rules.
    pub policy: Policy,
    /// Name of the CA it signs with.
    pub ca: String,
    /// Where a copy of every issued certificate is written.
    pub issued_dir: Option<PathBuf>,
    /// Credential sources accepted (`None`: all).
    pub auth: Option<Vec<String>>,
    /// The policy as written (for `policy show`).
    pub raw: PolicyConfig,
}

/// The whole config.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Where it was read from.
    pub path: PathBuf,
    /// CAs by name.
    pub cas: BTreeMap<String, CaConfig>,
    /// Policies by name.
    pub policies: BTreeMap<String, PolicyEntry>,
    /// External key manager connections by name (`[ekm_connection.NAME]`,
    /// the fields of a connection description file).
    pub ekm_connections: BTreeMap<String, toml::Value>,
    /// The `[server]` table, when present.
    pub server: Option<ServerConfig>,
    /// Bearer tokens by identity (`[token.NAME]`).
    pub tokens: BTreeMap<String, TokenConfig>,
    /// OIDC issuers by name (`[oidc.NAME]`).
    pub oidc: BTreeMap<String, OidcConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    #[serde(default)]
    ca: BTreeMap<String, toml::Value>,
    #[serde(default)]
    policy: BTreeMap<String, toml::Value>,
    #[serde(default)]
    ekm_connection: BTreeMap<String, toml::Value>,
    server: Option<toml::Value>,
    #[serde(default)]
    token: BTreeMap<String, toml::Value>,
    #[serde(default)]
    oidc: BTreeMap<String, toml::Value>,
}

fn cfg_err(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("{}: {what}", path.display()),
    )
}

fn check_oidc(name: &str, o: &mut OidcConfig, path: &Path) -> std::result::Result<(), String> {
    sshca_core::text::check_printable("oidc name", name).map_err(|e| e.to_string())?;
    if o.issuer.is_empty() {
        return Err("field `issuer`: empty".into());
    }
    if o.audience.is_empty() {
        return Err("field `audience`: empty".into());
    }
    if o.jwks.starts_with("http://") {
        return Err(format!(
            "field `jwks`: `{}` is plain HTTP; keys must come over https:// or from a file",
            o.jwks
        ));
    }
    if !o.jwks.starts_with("https://") {
        let p = Path::new(&o.jwks);
        if p.is_relative() {
            let base = path.parent().unwrap_or(Path::new(""));
            o.jwks = base.join(p).display().to_string();
        }
    }
    if let Some(ca) = &mut o.jwks_ca {
        if ca.is_relative() {
            *ca = path.parent().unwrap_or(Path::new("")).join(&*ca);
        }
    }
    if o.identity_claim.as_deref() == Some("") {
        return Err("field `identity_claim`: empty".into());
    }
    for alg in o.algorithms.iter().flatten() {
        if !OIDC_ALGORITHMS.contains(&alg.as_str()) {
            let why = if alg.eq_ignore_ascii_case("none") {
                " (unsigned tokens are never accepted)"
            } else if alg.to_ascii_uppercase().starts_with("HS") {
                " (HMAC needs a shared secret; only asymmetric algorithms are accepted)"
            } else {
                ""
            };
            return Err(format!(
                "field `algorithms`: `{alg}` is not accepted{why} (accepted: {})",
                OIDC_ALGORITHMS.join(", ")
            ));
        }
    }
    if o.algorithms.as_ref().is_some_and(Vec::is_empty) {
        return Err("field `algorithms`: empty list".into());
    }
    duration(o.leeway.as_ref(), "leeway")?;
    Ok(())
}

/// Certificate options from a name → value map as the config and the
/// service's requests write them (an empty value is a flag); `field` names
/// the map in errors.
pub fn cert_options(
    map: Option<&BTreeMap<String, String>>,
    field: &str,
) -> std::result::Result<CertOptions, String> {
    let mut out = CertOptions::new();
    for (k, v) in map.into_iter().flatten() {
        if k.is_empty() {
            return Err(format!("field `{field}`: an option has an empty name"));
        }
        if k == "force-command" && v.is_empty() {
            return Err(format!("field `{field}`: force-command is empty"));
        }
        let value = if v.is_empty() {
            OptionValue::Flag
        } else {
            OptionValue::Text(v.clone())
        };
        out.insert(k.clone(), value);
    }
    Ok(out)
}

fn globs(v: Option<&Vec<String>>, field: &str) -> std::result::Result<Option<Vec<Glob>>, String> {
    v.map(|list| {
        list.iter()
            .map(|g| Glob::new(g).map_err(|e| format!("field `{field}`: {e}")))
            .collect()
    })
    .transpose()
}

fn duration(v: Option<&String>, field: &str) -> std::result::Result<Option<u64>, String> {
    v.map(|s| parse_ttl(s).map_err(|e| format!("field `{field}`: {e}")))
        .transpose()
}

/// A rate, `N/sec`, `N/min` or `N/hour` (`s`, `m`, `h` also accepted): the
/// number of events and the period in seconds.
pub fn parse_rate(text: &str) -> std::result::Result<(u32, u64), String> {
    let (n, per) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` is not N/sec, N/min or N/hour"))?;
    let n: u32 = n
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{text}`: the count must be a positive integer"))?;
    let secs = match per.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        other => {
            return Err(format!(
                "`{text}`: unknown period `{other}` (sec, min or hour)"
            ))
        }
    };
    Ok((n, secs))
}

impl PolicyConfig {
    fn build(&self, name: &str) -> std::result::Result<Policy, String> {
        let cert_type = match self.cert_type.as_deref() {
            None | Some("user") => CertType::User,
            Some("host") => CertType::Host,
            Some(o) => return Err(format!("field `cert_type`: `{o}` is not `user` or `host`")),
        };
        let mut p = Policy::new(name, cert_type);
        p.valid_principals = self.valid_principals.clone();
        if let Some(v) = &p.valid_principals {
            if v.is_empty() || v.iter().any(String::is_empty) {
                return Err("field `valid_principals`: empty list or empty principal".into());
            }
        }
        p.default_valid_principals = self.default_valid_principals.clone().unwrap_or_default();
        p.allowed_valid_principals = globs(
            self.allowed_valid_principals.as_ref(),
            "allowed_valid_principals",
        )?;
        p.all_principals = self.all_principals.unwrap_or(false);
        p.critical_options = cert_options(self.critical_options.as_ref(), "critical_options")?;
        p.default_critical_options = cert_options(
            self.default_critical_options.as_ref(),
            "default_critical_options",
        )?;
        p.allowed_critical_options = self.allowed_critical_options.clone();
        p.extensions = cert_options(self.extensions.as_ref(), "extensions")?;
        p.default_extensions =
            cert_options(self.default_extensions.as_ref(), "default_extensions")?;
        p.allowed_extensions = self.allowed_extensions.clone();
        if let Some(t) = duration(self.ttl.as_ref(), "ttl")? {
            p.ttl = t;
            p.max_ttl = p.max_ttl.max(t);
        }
        if let Some(m) = duration(self.max_ttl.as_ref(), "max_ttl")? {
            p.max_ttl = m;
        } else if self.ttl.is_some() {
            p.max_ttl = p.ttl;
        }
        if let Some(m) = duration(self.max_start.as_ref(), "max_start")? {
            p.max_start = m;
        }
        p.allow_serial = self.allow_serial.unwrap_or(false);
        if let Some(b) = duration(self.backdate.as_ref(), "backdate")? {
            p.backdate = b;
        }
        p.key_id = self.key_id.clone();
        p.requesters = globs(self.requesters.as_ref(), "requesters")?;
        p.allowed_key_types = self.allowed_key_types.clone();
        if let Some(b) = self.min_rsa_bits {
            p.min_rsa_bits = b;
        }
        p.on_disallowed = match self.on_disallowed.as_deref() {
            None | Some("reject") => OnDisallowed::Reject,
            Some("drop") => OnDisallowed::Drop,
            Some(o) => {
                return Err(format!(
                    "field `on_disallowed`: `{o}` is not `reject` or `drop`"
                ))
            }
        };
        p.check().map_err(|e| match e {
            sshca_core::Error::Template(m) => m,
            other => other.to_string(),
        })?;
        Ok(p)
    }
}

impl Config {
    /// Parses config text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let shape: FileShape = toml::from_str(text).map_err(|e| cfg_err(path, e.message()))?;
        let mut cfg = Config {
            path: path.to_owned(),
            ..Default::default()
        };
        for (name, v) in shape.ekm_connection {
            #[cfg(feature = "ekm")]
            sshca_ekm::ConnectionFile::deserialize(v.clone()).map_err(|e| {
                cfg_err(
                    path,
                    format_args!("ekm_connection `{name}`: {}", e.message()),
                )
            })?;
            cfg.ekm_connections.insert(name, v);
        }
        if let Some(v) = shape.server {
            let mut server = ServerConfig::deserialize(v)
                .map_err(|e| cfg_err(path, format_args!("[server]: {}", e.message())))?;
            let base = path.parent().unwrap_or(Path::new(""));
            for p in [
                &mut server.tls_cert,
                &mut server.tls_key,
                &mut server.client_ca,
                &mut server.data_dir,
            ]
            .into_iter()
            .flatten()
            {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
            if server.tls_cert.is_some() != server.tls_key.is_some() {
                return Err(cfg_err(
                    path,
                    "[server]: `tls_cert` and `tls_key` go together (set both or neither)",
                ));
            }
            if let Some(l) = &server.listen {
                l.parse::<std::net::SocketAddr>().map_err(|e| {
                    cfg_err(path, format_args!("[server]: field `listen`: `{l}`: {e}"))
                })?;
            }
            globs(server.admins.as_ref(), "admins")
                .map_err(|m| cfg_err(path, format_args!("[server]: {m}")))?;
            for (field, v) in [
                ("request_timeout", &server.request_timeout),
                ("store_timeout", &server.store_timeout),
            ] {
                duration(v.as_ref(), field)
                    .map_err(|m| cfg_err(path, format_args!("[server]: {m}")))?;
            }
            if let Some(r) = &server.rate_limit {
                parse_rate(r).map_err(|m| {
                    cfg_err(path, format_args!("[server]: field `rate_limit`: {m}"))
                })?;
            }
            cfg.server = Some(server);
        }
        for (name, v) in shape.token {
            let token = TokenConfig::deserialize(v)
                .map_err(|e| cfg_err(path, format_args!("token `{name}`: {}", e.message())))?;
            sshca_core::text::check_printable("token name", &name)
                .map_err(|e| cfg_err(path, format_args!("token: {e}")))?;
            if token.sha256.len() != 64
                || !token
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(cfg_err(
                    path,
                    format_args!(
                        "token `{name}`: field `sha256`: not 64 lower-case hex digits \
                         (the SHA-256 of the token, as `sshca token new` prints it)"
                    ),
                ));
            }
            cfg.tokens.insert(name, token);
        }
        for (name, v) in shape.oidc {
            let mut o = OidcConfig::deserialize(v)
                .map_err(|e| cfg_err(path, format_args!("oidc `{name}`: {}", e.message())))?;
            check_oidc(&name, &mut o, path)
                .map_err(|m| cfg_err(path, format_args!("oidc `{name}`: {m}")))?;
            cfg.oidc.insert(name, o);
        }
        for (name, v) in shape.ca {
            let mut ca = CaConfig::deserialize(v)
                .map_err(|e| cfg_err(path, format_args!("ca `{name}`: {}", e.message())))?;
            ca.key = cfg
                .connection_reference(&ca.key)
                .map_err(|e| cfg_err(path, format_args!("ca `{name}`: field `key`: {e}")))?;
            ca.uri()
                .map_err(|e| cfg_err(path, format_args!("ca `{name}`: field `key`: {e}")))?;
            for (field, list) in [("next", &mut ca.next), ("retired", &mut ca.retired)] {
                for key in list.iter_mut() {
                    *key = cfg.connection_reference(key).map_err(|e| {
                        cfg_err(path, format_args!("ca `{name}`: field `{field}`: {e}"))
                    })?;
                    KeyUri::parse(key).map_err(|e| {
                        cfg_err(path, format_args!("ca `{name}`: field `{field}`: {e}"))
                    })?;
                }
            }
            cfg.cas.insert(name, ca);
        }
        for (name, v) in shape.policy {
            let raw = PolicyConfig::deserialize(v)
                .map_err(|e| cfg_err(path, format_args!("policy `{name}`: {}", e.message())))?;
            if !cfg.cas.contains_key(&raw.ca) {
                return Err(cfg_err(
                    path,
                    format_args!(
                        "policy `{name}`: field `ca`: no CA named `{}` (defined: {})",
                        raw.ca,
                        cfg.cas.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            let policy = raw
                .build(&name)
                .map_err(|m| cfg_err(path, format_args!("policy `{name}`: {m}")))?;
            for source in raw.auth.iter().flatten() {
                let known = match source.strip_prefix("oidc:") {
                    Some(issuer) => cfg.oidc.contains_key(issuer),
                    None => source == "token" || source == "client-cert",
                };
                if !known {
                    return Err(cfg_err(
                        path,
                        format_args!(
                            "policy `{name}`: field `auth`: unknown source `{source}` \
                             (known: token, client-cert{})",
                            cfg.oidc
                                .keys()
                                .map(|k| format!(", oidc:{k}"))
                                .collect::<String>()
                        ),
                    ));
                }
            }
            cfg.policies.insert(
                name,
                PolicyEntry {
                    policy,
                    ca: raw.ca.clone(),
                    issued_dir: raw.issued_dir.clone(),
                    auth: raw.auth.clone(),
                    raw,
                },
            );
        }
        if let Some(server) = &cfg.server {
            cfg.check_vault(server)
                .map_err(|m| cfg_err(path, format_args!("[server]: {m}")))?;
        }
        Ok(cfg)
    }

    /// The CA `/v1/<vault_mount>/public_key` serves: `[server] vault_ca`,
    /// else the only CA the policies use.
    pub fn vault_ca(&self) -> std::result::Result<Option<&str>, String> {
        let Some(server) = self.server.as_ref().filter(|s| s.vault_mount.is_some()) else {
            return Ok(None);
        };
        if let Some(ca) = &server.vault_ca {
            return Ok(Some(ca.as_str()));
        }
        let used: std::collections::BTreeSet<&str> =
            self.policies.values().map(|p| p.ca.as_str()).collect();
        match used.len() {
            1 => Ok(used.into_iter().next()),
            0 => Err("field `vault_mount`: no policy uses a CA; set `vault_ca`".into()),
            _ => Err(format!(
                "field `vault_mount`: the policies use several CAs ({}); set `vault_ca` to \
                 the one `public_key` serves",
                used.into_iter().collect::<Vec<_>>().join(", ")
            )),
        }
    }

    fn check_vault(&self, server: &ServerConfig) -> std::result::Result<(), String> {
        if let Some(mount) = &server.vault_mount {
            const TAKEN: [&str; 7] = [
                "sign", "ca", "revoke", "krl", "krl.sig", "policies", "certs",
            ];
            if mount.is_empty()
                || !mount
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!(
                    "field `vault_mount`: `{mount}` must be one path segment of letters, digits, `-`, `_` or `.`"
                ));
            }
            if TAKEN.contains(&mount.as_str()) {
                return Err(format!(
                    "field `vault_mount`: `{mount}` is one of the service's own paths ({})",
                    TAKEN.join(", ")
                ));
            }
        }
        if let Some(ca) = &server.vault_ca {
            if !self.cas.contains_key(ca) {
                return Err(format!("field `vault_ca`: no CA named `{ca}`"));
            }
        }
        self.vault_ca().map(|_| ())
    }

    /// `FILE#NAME` (this file's absolute path) when `name` is one of its
    /// `[ekm_connection.NAME]` tables: the `connection=` reference the
    /// external key manager backend reads; `None` otherwise.
    pub fn named_connection(&self, name: &str) -> Result<Option<String>> {
        if !self.ekm_connections.contains_key(name) {
            return Ok(None);
        }
        let file = std::path::absolute(&self.path).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("cannot resolve {}: {e}", self.path.display()),
            )
        })?;
        Ok(Some(format!("{}#{name}", file.display())))
    }

    /// For an `ekm:` key URI whose `connection=` names one of the file's
    /// `[ekm_connection.NAME]` tables: the URI with `connection=FILE#NAME`
    /// ([`Config::named_connection`]). Other URIs are returned as they are.
    pub fn connection_reference(&self, key: &str) -> Result<String> {
        let mut uri = KeyUri::parse(key)?;
        if uri.scheme() != "ekm" {
            return Ok(key.to_string());
        }
        let named = match uri.option("connection") {
            Some(name) => self.named_connection(name)?,
            None => None,
        };
        match named {
            Some(reference) => {
                uri.set_option("connection", &reference);
                Ok(uri.to_string())
            }
            None => Ok(key.to_string()),
        }
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| cfg_err(path, format_args!("cannot read the config: {e}")))?;
        Self::parse(&text, path)
    }

    /// A policy by name, with its CA.
    pub fn policy(&self, name: &str) -> Result<(&PolicyEntry, &CaConfig)> {
        let p = self.policies.get(name).ok_or_else(|| {
            cfg_err(
                &self.path,
                format_args!(
                    "no policy named `{name}` (defined: {})",
                    self.policies.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        let ca = self
            .cas
            .get(&p.ca)
            .ok_or_else(|| cfg_err(&self.path, format_args!("no CA named `{}`", p.ca)))?;
        Ok((p, ca))
    }
}

/// The effective values of a policy, as `sshca policy show --json` prints
/// them: every field of the [`Policy`] plus its CA and copy directory.
#[derive(Debug, Clone, Serialize)]
pub struct EffectivePolicy<'a> {
    /// The merge rules.
    #[serde(flatten)]
    pub policy: &'a Policy,
    /// CA name.
    pub ca: &'a str,
    /// CA key URI (with the pin applied).
    pub ca_key: String,
    /// Where copies of issued certificates go.
    pub issued_dir: Option<&'a Path>,
    /// Credential sources the service accepts for it (`None`: all).
    pub auth: Option<&'a [String]>,
}

impl<'a> EffectivePolicy<'a> {
    /// The effective values of `entry`.
    pub fn new(entry: &'a PolicyEntry, ca: &CaConfig) -> Self {
        Self {
            policy: &entry.policy,
            ca: &entry.ca,
            ca_key: ca.uri().unwrap_or_else(|_| ca.key.clone()),
            issued_dir: entry.issued_dir.as_deref(),
            auth: entry.auth.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/etc/sshca/sshca.toml"))
    }

    #[test]
    fn server_and_tokens() {
        let c = parse(
            "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"s.pem\"\ntls_key = \"/k.pem\"\n\
             rate_limit = \"10/min\"\n[token.ci]\nsha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n",
        )
        .unwrap();
        let s = c.server.unwrap();
        assert_eq!(s.tls_cert.unwrap(), Path::new("/etc/sshca/s.pem"));
        assert_eq!(s.tls_key.unwrap(), Path::new("/k.pem"));
        assert_eq!(c.tokens.len(), 1);
        assert_eq!(parse_rate("10/min"), Ok((10, 60)));
        assert!(parse_rate("0/min").is_err() && parse_rate("5/day").is_err());
    }

    #[test]
    fn server_mistakes_are_named() {
        for (text, needle) in [
            ("[server]\nlisten = \"nowhere\"\n", "field `listen`"),
            ("[server]\ntls_cert = \"a\"\n", "go together"),
            ("[server]\nrate_limit = \"lots\"\n", "field `rate_limit`"),
            ("[server]\nrequest_timeout = \"soon\"\n", "request_timeout"),
            ("[server]\nadmins = [\"a,b\"]\n", "admins"),
            ("[server]\nlisen = \"x\"\n", "lisen"),
            (
                "[token.ci]\nsha256 = \"abc\"\n",
                "token `ci`: field `sha256`",
            ),
            ("[token.ci]\nsecret = \"abc\"\n", "token `ci`"),
            (
                "[oidc.gh]\nissuer = \"i\"\naudience = \"a\"\njwks = \"http://x\"\n",
                "plain HTTP",
            ),
            (
                "[oidc.gh]\nissuer = \"i\"\naudience = \"a\"\njwks = \"k.json\"\nalgorithms = [\"HS256\"]\n",
                "HMAC",
            ),
            (
                "[oidc.gh]\nissuer = \"i\"\naudience = \"a\"\njwks = \"k.json\"\nalgorithms = [\"none\"]\n",
                "unsigned",
            ),
            (
                "[ca.u]\nkey = \"file:/k\"\n[policy.p]\nca = \"u\"\nauth = [\"oidc:nope\"]\n",
                "unknown source `oidc:nope`",
            ),
            ("[server]\nvault_mount = \"ca\"\n", "own paths"),
            ("[server]\nvault_mount = \"a/b\"\n", "one path segment"),
            (
                "[ca.a]\nkey = \"file:/a\"\n[ca.b]\nkey = \"file:/b\"\n[policy.p]\nca = \"a\"\n[policy.q]\nca = \"b\"\n[server]\nvault_mount = \"ssh\"\n",
                "set `vault_ca`",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
