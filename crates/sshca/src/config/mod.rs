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
//! policy and the field. The service's own tables (`[server]`,
//! `[token.NAME]`, `[oidc.NAME]`) are kept as written here and parsed, with
//! the same kind of errors, by `sshca serve` (the `sshca-server` crate).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sshca_core::matcher::{IdentityMatcher, SourceMatch};
use sshca_core::policy::{Glob, Policy};
use sshca_core::validity::parse_ttl;
use sshca_core::{CertOptions, OptionValue};
use sshca_signer::{Error, ErrorKind, KeyUri, Result};

mod policy;
pub use policy::{ApprovalConfig, ApprovalRule, PolicyConfig};

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
    /// Whether each certificate gets the critical option `source-address`
    /// = the requester's address (user policies of the service only).
    pub pin_source_address: bool,
    /// How long after its first certificate a chain of renewals ends,
    /// seconds; `None` when certificates are not renewable.
    pub renew_max_age: Option<u64>,
    /// The `[webhook.NAME]`s asked before issuing, in order.
    pub webhooks: Vec<String>,
    /// Who must approve before a certificate is issued.
    pub approval: Option<ApprovalRule>,
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
    /// The `[server]` table as written, when present: the service
    /// (`sshca-server`) parses it; the store's location in it is read by
    /// `sshca_authority::store_url`.
    pub server: Option<toml::Value>,
    /// The `[token.NAME]` tables as written (parsed by the service).
    pub tokens: BTreeMap<String, toml::Value>,
    /// The `[oidc.NAME]` tables as written (parsed by the service; their
    /// names are the `oidc:NAME` sources a policy's `auth` may list).
    pub oidc: BTreeMap<String, toml::Value>,
    /// The `[join.NAME]` tables as written (parsed by the service): how
    /// hosts enroll themselves.
    pub joins: BTreeMap<String, toml::Value>,
    /// The `[audit.NAME]` tables as written (parsed by the service): where
    /// audit events go besides the store.
    pub audits: BTreeMap<String, toml::Value>,
    /// The `[webhook.NAME]` tables as written (parsed by the service): who
    /// is asked before a policy's certificates are issued.
    pub webhooks: BTreeMap<String, toml::Value>,
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
    #[serde(default)]
    join: BTreeMap<String, toml::Value>,
    #[serde(default)]
    audit: BTreeMap<String, toml::Value>,
    #[serde(default)]
    webhook: BTreeMap<String, toml::Value>,
}

/// An error in the config file at `path`.
pub fn cfg_err(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidInput,
        format!("{}: {what}", path.display()),
    )
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

/// Globs from a list of patterns; `field` names the list in errors.
pub fn globs(
    v: Option<&Vec<String>>,
    field: &str,
) -> std::result::Result<Option<Vec<Glob>>, String> {
    v.map(|list| {
        list.iter()
            .map(|g| Glob::new(g).map_err(|e| format!("field `{field}`: {e}")))
            .collect()
    })
    .transpose()
}

/// Identity matchers (`token:NAME`, `client-cert:NAME`, `local:NAME`,
/// `oidc:ISSUER:VALUE`, or a bare glob; see
/// [`sshca_core::matcher`]); `field` names the list in errors.
pub fn matchers(
    v: Option<&Vec<String>>,
    field: &str,
) -> std::result::Result<Option<Vec<IdentityMatcher>>, String> {
    v.map(|list| {
        list.iter()
            .map(|m| {
                IdentityMatcher::parse(m).map_err(|e| {
                    format!(
                        "field `{field}`: {}",
                        e.to_string().trim_start_matches("invalid template: ")
                    )
                })
            })
            .collect()
    })
    .transpose()
}

/// Checks matchers against the config's OIDC issuers: an `oidc:ISSUER:...`
/// matcher must name one of them.
pub fn check_matcher_issuers(
    list: &[IdentityMatcher],
    field: &str,
    oidc: &BTreeMap<String, toml::Value>,
) -> std::result::Result<(), String> {
    for m in list {
        if let Some(issuer) = m.oidc_issuer() {
            if !oidc.contains_key(issuer) {
                return Err(format!(
                    "field `{field}`: `{m}` names issuer `{issuer}`, which no [oidc.NAME] table \
                     defines (defined: {})",
                    if oidc.is_empty() {
                        "none".to_owned()
                    } else {
                        oidc.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ));
            }
        }
    }
    Ok(())
}

/// A duration in ssh-keygen's time syntax (`1h`, `90s`), in seconds;
/// `field` names it in errors.
pub fn duration(v: Option<&String>, field: &str) -> std::result::Result<Option<u64>, String> {
    v.map(|s| parse_ttl(s).map_err(|e| format!("field `{field}`: {e}")))
        .transpose()
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
        cfg.server = shape.server;
        cfg.tokens = shape.token;
        cfg.oidc = shape.oidc;
        cfg.joins = shape.join;
        cfg.audits = shape.audit;
        cfg.webhooks = shape.webhook;
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
            let (pin_source_address, renew_max_age) = raw
                .service_settings(&policy)
                .map_err(|m| cfg_err(path, format_args!("policy `{name}`: {m}")))?;
            let (webhooks, approval) = raw
                .gates(&policy, &cfg.webhooks, &cfg.oidc)
                .map_err(|m| cfg_err(path, format_args!("policy `{name}`: {m}")))?;
            let requesters = policy.requesters.as_deref().unwrap_or_default();
            check_matcher_issuers(requesters, "requesters", &cfg.oidc)
                .map_err(|m| cfg_err(path, format_args!("policy `{name}`: {m}")))?;
            // A bare pattern never matches an OIDC identity: under a policy
            // that admits only OIDC sources it would match nobody, which is
            // never what was meant.
            if let Some(auth) = raw
                .auth
                .as_ref()
                .filter(|a| !a.is_empty() && a.iter().all(|s| s.starts_with("oidc:")))
            {
                if let Some(bare) = requesters.iter().find(|m| *m.source() == SourceMatch::Bare) {
                    return Err(cfg_err(
                        path,
                        format_args!(
                            "policy `{name}`: field `requesters`: `{bare}` has no source, so it \
                             matches tokens, client certificates and local requesters only, but \
                             `auth` admits {}; write `{}:{bare}`",
                            auth.join(", "),
                            auth[0]
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
                    pin_source_address,
                    renew_max_age,
                    webhooks,
                    approval,
                    raw,
                },
            );
        }
        Ok(cfg)
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

    /// The policies whose behaviour the safer defaults changed, and how:
    /// without `allowed_extensions` or `allowed_critical_options` a request
    /// may carry only the policy's default names; without `key_id` or
    /// `allow_key_id` the key id is `{requester}-{serial}` and a requested
    /// one is refused. Setting the field says what is meant and silences
    /// the warning.
    pub fn changed_defaults(&self) -> Vec<(String, String)> {
        let names = |m: &sshca_core::CertOptions| {
            if m.is_empty() {
                "none".to_owned()
            } else {
                m.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        };
        let mut out = Vec::new();
        for (name, entry) in &self.policies {
            let raw = &entry.raw;
            let mut what = Vec::new();
            if raw.allowed_extensions.is_none() {
                what.push(format!(
                    "requests may ask only for its default extensions ({}; set \
                     allowed_extensions to allow others)",
                    names(&entry.policy.default_extensions)
                ));
            }
            if raw.allowed_critical_options.is_none() {
                what.push(format!(
                    "its default critical options ({}) stay as written and requests can \
                     add none (set allowed_critical_options to let them)",
                    names(&entry.policy.default_critical_options)
                ));
            }
            if raw.key_id.is_none() && raw.allow_key_id.is_none() {
                what.push(
                    "the key id is `{requester}-{serial}` and a requested one is refused \
                     (set allow_key_id = true, or a key_id template)"
                        .to_owned(),
                );
            }
            if !what.is_empty() {
                out.push((name.clone(), what.join("; ")));
            }
        }
        out
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
    fn policy_auth_sources_are_checked() {
        let e =
            parse("[ca.u]\nkey = \"file:/k\"\n[policy.p]\nca = \"u\"\nauth = [\"oidc:nope\"]\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("unknown source `oidc:nope`"), "{e}");
        let c = parse(
            "[oidc.gh]\nissuer = \"i\"\n[ca.u]\nkey = \"file:/k\"\n[policy.p]\nca = \"u\"\nauth = [\"oidc:gh\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.policies["p"].auth.as_deref(),
            Some(&["oidc:gh".to_string()][..])
        );
        let e = parse("[servr]\nlisten = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("servr"), "{e}");
    }

    #[test]
    fn webhooks_and_approval_are_checked() {
        let head = "[oidc.corp]\nissuer = \"i\"\n[webhook.hr]\nurl = \"https://x\"\n\
                    [ca.u]\nkey = \"file:/k\"\n[policy.p]\nca = \"u\"\n";
        let c = parse(&format!(
            "{head}webhooks = [\"hr\"]\nvalid_principals = [\"{{webhook.hr.login}}\"]\n\
             approval = {{ approvers = [\"oidc:corp:ops-*\"], count = 2, expires = \"1h\", \
             notify = \"hr\" }}\n"
        ))
        .unwrap();
        let p = &c.policies["p"];
        assert_eq!(p.webhooks, ["hr"]);
        let a = p.approval.as_ref().unwrap();
        assert_eq!(
            (a.count, a.expires, a.notify.as_deref()),
            (2, 3600, Some("hr"))
        );
        for (extra, needle) in [
            (
                "webhooks = [\"crm\"]\n",
                "no [webhook.crm] table (defined: hr)",
            ),
            ("webhooks = [\"hr\", \"hr\"]\n", "listed twice"),
            (
                "key_id = \"{webhook.crm.x}\"\n",
                "`webhooks` does not list `crm`",
            ),
            ("approval = { approvers = [] }\n", "at least one approver"),
            (
                "approval = { approvers = [\"oidc:gh:*\"] }\n",
                "issuer `gh`",
            ),
            (
                "approval = { approvers = [\"a\"], count = 0 }\n",
                "between 1 and 10",
            ),
            (
                "approval = { approvers = [\"a\"], expires = \"8d\" }\n",
                "between 1s and 7d",
            ),
            (
                "approval = { approvers = [\"a\"], notify = \"x\" }\n",
                "approval.notify",
            ),
            ("approval = { approvers = [\"a\"], whom = 1 }\n", "whom"),
            (
                "renewable = true\nrenew_max_age = \"1d\"\napproval = { approvers = [\"a\"] }\n",
                "renew without approval",
            ),
            (
                "renewable = true\nrenew_max_age = \"1d\"\nwebhooks = [\"hr\"]\n",
                "without asking its webhooks",
            ),
        ] {
            let e = parse(&format!("{head}{extra}")).unwrap_err().to_string();
            assert!(e.contains(needle), "{extra}: {e}");
        }
    }
}
