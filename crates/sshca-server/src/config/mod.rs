//! The service's own tables of the config file: `[server]` (how
//! `sshca serve` listens, where it keeps its record, the Vault-compatible
//! API), `[token.NAME]` (bearer tokens, as hashes) and `[oidc.NAME]` (JWT
//! issuers). The facade's [`Config`] keeps them as written; they are
//! parsed here, with errors naming the file, the table and the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sshca::config::{cfg_err, check_matcher_issuers, duration, matchers, Config};
use sshca::signer::Result;

mod audit;
mod join;
mod webhook;
use audit::check_audit;
pub use audit::{AuditSinkConfig, AUDIT_SINKS};
use join::check_join;
pub use join::{JoinConfig, JOIN_METHODS};
use webhook::check_webhook;
pub use webhook::WebhookConfig;

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
    /// Identities allowed to list every certificate and to revoke:
    /// matchers with their source (`token:NAME`, `client-cert:NAME`,
    /// `oidc:ISSUER:VALUE`; a bare glob matches tokens and client
    /// certificates only).
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
    /// Peers (CIDRs) whose `X-Forwarded-For` / `Forwarded` headers name the
    /// client's address (load balancers, reverse proxies); from any other
    /// peer those headers are ignored.
    pub trusted_proxies: Option<Vec<String>>,
    /// Requests that fail authentication, per client address (IPv6 per
    /// /64), before further requests from it get 429 without their
    /// credential being read: `N/sec`, `N/min`, `N/hour` (default
    /// `60/min`), or `off`.
    pub unauthenticated_limit: Option<String>,
    /// Who may read `/metrics`: `public` (default), `admins` (an admin's
    /// credential), or `off` (404).
    pub metrics: Option<String>,
    /// The URL clients use for the service (`https://ca.example.com`;
    /// replicas behind a load balancer share it), which renewal proofs
    /// sign (default: `https://` and the listening address).
    pub public_url: Option<String>,
    /// This replica's audit chain (default: the machine's name); replicas
    /// sharing a database each need their own.
    pub replica_id: Option<String>,
}

/// An `[oidc.NAME]` table: JWTs from an OpenID Connect issuer accepted as
/// bearer tokens; the requester's identity is `identity_claim` and its
/// source `oidc:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// The `aud` tokens must carry (default: `client_id`).
    #[serde(default)]
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
    /// The public client `sshca login` signs in with (registered at the
    /// issuer as a native or desktop application); issuers with one are
    /// listed by `GET /v1/login`.
    pub client_id: Option<String>,
    /// The client's "secret", for issuers that want one even for desktop
    /// and device clients (Google among them). It is not a secret there: it
    /// is handed to every `sshca login`.
    pub client_secret: Option<String>,
    /// Scopes `sshca login` asks for (default `openid`, `email`,
    /// `profile`).
    pub scopes: Option<Vec<String>>,
    /// The policy `sshca login` signs under by default.
    pub login_policy: Option<String>,
}

impl OidcConfig {
    /// The scopes `sshca login` asks for.
    pub fn login_scopes(&self) -> Vec<String> {
        self.scopes
            .clone()
            .unwrap_or_else(|| ["openid", "email", "profile"].map(str::to_owned).to_vec())
    }
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

/// The service's tables, parsed and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceConfig {
    /// `[server]` (all defaults when absent).
    pub server: ServerConfig,
    /// Bearer tokens by identity (`[token.NAME]`).
    pub tokens: BTreeMap<String, TokenConfig>,
    /// OIDC issuers by name (`[oidc.NAME]`).
    pub oidc: BTreeMap<String, OidcConfig>,
    /// Join methods by name (`[join.NAME]`).
    pub joins: BTreeMap<String, JoinConfig>,
    /// Audit sinks by name (`[audit.NAME]`).
    pub audits: BTreeMap<String, AuditSinkConfig>,
    /// Webhooks by name (`[webhook.NAME]`).
    pub webhooks: BTreeMap<String, WebhookConfig>,
}

impl ServiceConfig {
    /// Parses the service's tables of `cfg` (relative paths become
    /// relative to the config file).
    pub fn from_config(cfg: &Config) -> Result<Self> {
        let mut out = ServiceConfig::default();
        if let Some(v) = cfg.server.clone() {
            let mut server = ServerConfig::deserialize(v)
                .map_err(|e| cfg_err(&cfg.path, format_args!("[server]: {}", e.message())))?;
            relative_to_config(
                &cfg.path,
                [
                    &mut server.tls_cert,
                    &mut server.tls_key,
                    &mut server.client_ca,
                    &mut server.data_dir,
                ]
                .into_iter()
                .flatten(),
            );
            if server.tls_cert.is_some() != server.tls_key.is_some() {
                return Err(cfg_err(
                    &cfg.path,
                    "[server]: `tls_cert` and `tls_key` go together (set both or neither)",
                ));
            }
            if let Some(l) = &server.listen {
                l.parse::<std::net::SocketAddr>().map_err(|e| {
                    cfg_err(
                        &cfg.path,
                        format_args!("[server]: field `listen`: `{l}`: {e}"),
                    )
                })?;
            }
            let admins = matchers(server.admins.as_ref(), "admins")
                .map_err(|m| cfg_err(&cfg.path, format_args!("[server]: {m}")))?;
            check_matcher_issuers(admins.as_deref().unwrap_or_default(), "admins", &cfg.oidc)
                .map_err(|m| cfg_err(&cfg.path, format_args!("[server]: {m}")))?;
            for (field, v) in [
                ("request_timeout", &server.request_timeout),
                ("store_timeout", &server.store_timeout),
            ] {
                duration(v.as_ref(), field)
                    .map_err(|m| cfg_err(&cfg.path, format_args!("[server]: {m}")))?;
            }
            if let Some(m) = &server.metrics {
                if !["public", "admins", "off"].contains(&m.as_str()) {
                    return Err(cfg_err(
                        &cfg.path,
                        format_args!(
                            "[server]: field `metrics`: `{m}` is not `public`, `admins` or `off`"
                        ),
                    ));
                }
            }
            for p in server.trusted_proxies.iter().flatten() {
                parse_cidr(p).map_err(|m| {
                    cfg_err(
                        &cfg.path,
                        format_args!("[server]: field `trusted_proxies`: {m}"),
                    )
                })?;
            }
            if let Some(r) = server
                .unauthenticated_limit
                .as_deref()
                .filter(|r| *r != "off")
            {
                parse_rate(r).map_err(|m| {
                    cfg_err(
                        &cfg.path,
                        format_args!("[server]: field `unauthenticated_limit`: {m}"),
                    )
                })?;
            }
            if let Some(u) = &server.public_url {
                let ok = u.strip_prefix("https://").is_some_and(|rest| {
                    !rest.is_empty()
                        && !rest.ends_with('/')
                        && !rest.contains(['?', '#', ' ', '\n'])
                });
                if !ok {
                    return Err(cfg_err(
                        &cfg.path,
                        format_args!(
                            "[server]: field `public_url`: `{}` is not an https:// URL without a \
                             trailing slash, query or fragment",
                            sshca::core::text::escape(u)
                        ),
                    ));
                }
            }
            if let Some(r) = &server.rate_limit {
                parse_rate(r).map_err(|m| {
                    cfg_err(&cfg.path, format_args!("[server]: field `rate_limit`: {m}"))
                })?;
            }
            out.server = server;
        }
        for (name, v) in cfg.tokens.clone() {
            let token = TokenConfig::deserialize(v)
                .map_err(|e| cfg_err(&cfg.path, format_args!("token `{name}`: {}", e.message())))?;
            sshca::core::text::check_printable("token name", &name)
                .map_err(|e| cfg_err(&cfg.path, format_args!("token: {e}")))?;
            if token.sha256.len() != 64
                || !token
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(cfg_err(
                    &cfg.path,
                    format_args!(
                        "token `{name}`: field `sha256`: not 64 lower-case hex digits \
                         (the SHA-256 of the token, as `sshca token new` prints it)"
                    ),
                ));
            }
            out.tokens.insert(name, token);
        }
        for (name, v) in cfg.oidc.clone() {
            let mut o = OidcConfig::deserialize(v)
                .map_err(|e| cfg_err(&cfg.path, format_args!("oidc `{name}`: {}", e.message())))?;
            check_oidc(&name, &mut o, &cfg.path)
                .and_then(|()| check_login(&name, &o, cfg))
                .map_err(|m| cfg_err(&cfg.path, format_args!("oidc `{name}`: {m}")))?;
            out.oidc.insert(name, o);
        }
        for (name, v) in cfg.joins.clone() {
            let mut j = JoinConfig::deserialize(v)
                .map_err(|e| cfg_err(&cfg.path, format_args!("join `{name}`: {}", e.message())))?;
            check_join(&name, &mut j, cfg)
                .map_err(|m| cfg_err(&cfg.path, format_args!("join `{name}`: {m}")))?;
            out.joins.insert(name, j);
        }
        for (name, v) in cfg.audits.clone() {
            let mut a = AuditSinkConfig::deserialize(v)
                .map_err(|e| cfg_err(&cfg.path, format_args!("audit `{name}`: {}", e.message())))?;
            check_audit(&name, &mut a, &cfg.path)
                .map_err(|m| cfg_err(&cfg.path, format_args!("audit `{name}`: {m}")))?;
            out.audits.insert(name, a);
        }
        for (name, v) in cfg.webhooks.clone() {
            let mut w = WebhookConfig::deserialize(v).map_err(|e| {
                cfg_err(&cfg.path, format_args!("webhook `{name}`: {}", e.message()))
            })?;
            check_webhook(&name, &mut w, &cfg.path)
                .map_err(|m| cfg_err(&cfg.path, format_args!("webhook `{name}`: {m}")))?;
            out.webhooks.insert(name, w);
        }
        if let Some(r) = &out.server.replica_id {
            if r.is_empty()
                || r.len() > 128
                || r.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return Err(cfg_err(
                    &cfg.path,
                    "[server]: field `replica_id`: 1 to 128 characters, no spaces",
                ));
            }
        }
        if !out.audits.is_empty() && out.server.data_dir.is_none() {
            return Err(cfg_err(
                &cfg.path,
                "[audit]: the sinks keep their place in [server] data_dir: set it",
            ));
        }
        out.check_vault(cfg)
            .map_err(|m| cfg_err(&cfg.path, format_args!("[server]: {m}")))?;
        Ok(out)
    }

    /// The CA `/v1/<vault_mount>/public_key` serves: `[server] vault_ca`,
    /// else the only CA the policies use.
    pub fn vault_ca<'a>(&'a self, cfg: &'a Config) -> std::result::Result<Option<&'a str>, String> {
        let server = &self.server;
        if server.vault_mount.is_none() {
            return Ok(None);
        }
        if let Some(ca) = &server.vault_ca {
            return Ok(Some(ca.as_str()));
        }
        let used: std::collections::BTreeSet<&str> =
            cfg.policies.values().map(|p| p.ca.as_str()).collect();
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

    fn check_vault(&self, cfg: &Config) -> std::result::Result<(), String> {
        let server = &self.server;
        if let Some(mount) = &server.vault_mount {
            const TAKEN: [&str; 11] = [
                "sign",
                "ca",
                "revoke",
                "krl",
                "krl.sig",
                "policies",
                "certs",
                "login",
                "renew",
                "join",
                "approvals",
            ];
            if !is_path_segment(mount) {
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
            if !cfg.cas.contains_key(ca) {
                return Err(format!("field `vault_ca`: no CA named `{ca}`"));
            }
        }
        self.vault_ca(cfg).map(|_| ())
    }
}

fn check_oidc(name: &str, o: &mut OidcConfig, path: &Path) -> std::result::Result<(), String> {
    sshca::core::text::check_printable("oidc name", name).map_err(|e| e.to_string())?;
    if o.issuer.is_empty() {
        return Err("field `issuer`: empty".into());
    }
    match (&o.client_id, o.audience.is_empty()) {
        (Some(id), _) if id.is_empty() => return Err("field `client_id`: empty".into()),
        (Some(id), true) => o.audience = id.clone(),
        (Some(id), false) if *id != o.audience => {
            return Err(format!(
                "fields `audience` (`{}`) and `client_id` (`{id}`) differ; the ID tokens \
                 `sshca login` obtains carry the client id as their audience (drop `audience`)",
                o.audience
            ))
        }
        (None, true) => {
            return Err("field `audience`: missing (or set `client_id`, its default)".into())
        }
        _ => {}
    }
    if o.client_id.is_none() {
        for (field, set) in [
            ("client_secret", o.client_secret.is_some()),
            ("scopes", o.scopes.is_some()),
            ("login_policy", o.login_policy.is_some()),
        ] {
            if set {
                return Err(format!(
                    "field `{field}`: only used by `sshca login`, which needs `client_id`"
                ));
            }
        }
    }
    if let Some(scopes) = &o.scopes {
        if !scopes.iter().any(|s| s == "openid") {
            return Err(
                "field `scopes`: must include `openid` (an ID token is what signs in)".into(),
            );
        }
        if let Some(bad) = scopes.iter().find(|s| {
            s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        }) {
            return Err(format!(
                "field `scopes`: `{}` is not a scope token",
                sshca::core::text::escape(bad)
            ));
        }
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

/// One URL path segment of letters, digits, `-`, `_` or `.`.
/// Makes each relative path relative to the directory of the config file
/// at `config`.
fn relative_to_config<'a>(config: &Path, paths: impl IntoIterator<Item = &'a mut PathBuf>) {
    let base = config.parent().unwrap_or(Path::new(""));
    for p in paths {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
}

fn is_path_segment(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// `login_policy` names a policy that this issuer's identities may use.
fn check_login(name: &str, o: &OidcConfig, cfg: &Config) -> std::result::Result<(), String> {
    let Some(policy) = &o.login_policy else {
        return Ok(());
    };
    let Some(entry) = cfg.policies.get(policy) else {
        return Err(format!("field `login_policy`: no policy named `{policy}`"));
    };
    if let Some(auth) = &entry.auth {
        let source = format!("oidc:{name}");
        if !auth.contains(&source) {
            return Err(format!(
                "field `login_policy`: policy `{policy}` does not accept `{source}` (its `auth` is {})",
                auth.join(", ")
            ));
        }
    }
    if entry.policy.cert_type != sshca::core::CertType::User {
        return Err(format!(
            "field `login_policy`: policy `{policy}` issues host certificates"
        ));
    }
    Ok(())
}

/// A network, `ADDRESS/PREFIX`, or one address (`/32`, `/128`).
pub fn parse_cidr(text: &str) -> std::result::Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{text}` is not an address or a CIDR network"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServiceConfig> {
        ServiceConfig::from_config(&Config::parse(text, Path::new("/etc/sshca/sshca.toml"))?)
    }

    #[test]
    fn server_and_tokens() {
        let c = parse(
            "[server]\nlisten = \"127.0.0.1:0\"\ntls_cert = \"s.pem\"\ntls_key = \"/k.pem\"\n\
             rate_limit = \"10/min\"\n[token.ci]\nsha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n",
        )
        .unwrap();
        let s = c.server;
        assert_eq!(s.tls_cert.unwrap(), Path::new("/etc/sshca/s.pem"));
        assert_eq!(s.tls_key.unwrap(), Path::new("/k.pem"));
        assert_eq!(c.tokens.len(), 1);
        assert_eq!(parse_rate("10/min"), Ok((10, 60)));
        assert!(parse_rate("0/min").is_err() && parse_rate("5/day").is_err());
    }

    #[test]
    fn a_login_client_is_the_audience() {
        let c = parse(
            "[oidc.g]\nissuer = \"https://i\"\nclient_id = \"sshca-cli\"\njwks = \"k.json\"\n",
        )
        .unwrap();
        let o = &c.oidc["g"];
        assert_eq!(o.audience, "sshca-cli");
        assert_eq!(o.login_scopes(), ["openid", "email", "profile"]);
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
            ("[server]\nvault_mount = \"login\"\n", "own paths"),
            ("[server]\nvault_mount = \"renew\"\n", "own paths"),
            (
                "[oidc.g]\nissuer = \"i\"\njwks = \"k.json\"\n",
                "field `audience`: missing",
            ),
            (
                "[oidc.g]\nissuer = \"i\"\naudience = \"a\"\nclient_id = \"b\"\njwks = \"k.json\"\n",
                "differ",
            ),
            (
                "[oidc.g]\nissuer = \"i\"\naudience = \"a\"\nlogin_policy = \"p\"\njwks = \"k.json\"\n",
                "needs `client_id`",
            ),
            (
                "[oidc.g]\nissuer = \"i\"\nclient_id = \"c\"\nscopes = [\"email\"]\njwks = \"k.json\"\n",
                "must include `openid`",
            ),
            (
                "[oidc.g]\nissuer = \"i\"\nclient_id = \"c\"\nlogin_policy = \"nope\"\njwks = \"k.json\"\n",
                "no policy named `nope`",
            ),
            (
                "[oidc.g]\nissuer = \"i\"\nclient_id = \"c\"\nlogin_policy = \"p\"\njwks = \"k.json\"\n[ca.u]\nkey = \"file:/k\"\n[policy.p]\nca = \"u\"\nauth = [\"token\"]\n",
                "does not accept `oidc:g`",
            ),
            ("[server]\nmetrics = \"private\"\n", "field `metrics`"),
            ("[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n", "trusted_proxies"),
            ("[server]\nunauthenticated_limit = \"lots\"\n", "unauthenticated_limit"),
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
