//! The `[join.NAME]` tables: how hosts enroll themselves, by join token or
//! by their cloud instance identity, and the checks each method's fields
//! get when the config loads.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sshca::config::{duration, Config};

use super::is_path_segment;

/// A `[join.NAME]` table: how hosts enroll themselves under a host policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JoinConfig {
    /// The proof a host brings: `token` (a join token from `sshca token
    /// join`), `aws-iid` (an EC2 instance identity document), `gcp-iit` (a
    /// Compute Engine instance identity token) or `azure-msi` (an Azure
    /// managed identity access token).
    pub method: String,
    /// The host policy the certificates are issued under.
    pub policy: String,
    /// What a proof is bound to: the identity token's audience
    /// (`gcp-iit`), the access token's resource (`azure-msi`).
    pub audience: Option<String>,
    /// `aws-iid`: PEM files of the certificates that verify instance
    /// identity signatures (the regions' certificates AWS publishes).
    pub certificates: Option<Vec<PathBuf>>,
    /// `aws-iid`: the accounts whose instances may join.
    pub accounts: Option<Vec<String>>,
    /// `aws-iid`: the regions they may be in (default: any).
    pub regions: Option<Vec<String>>,
    /// `aws-iid`: how long after its launch (`pendingTime`) an instance
    /// may join (default `10m`).
    pub max_age: Option<String>,
    /// `gcp-iit`, `azure-msi`: the issuer's keys, a JWKS file (relative to
    /// the config file) or an `https://` URL.
    pub jwks: Option<String>,
    /// CA certificates (PEM) the JWKS URL's server must chain to (default:
    /// the system's roots).
    pub jwks_ca: Option<PathBuf>,
    /// `gcp-iit`: the projects whose instances may join.
    pub projects: Option<Vec<String>>,
    /// `gcp-iit`: the zones they may be in (default: any).
    pub zones: Option<Vec<String>>,
    /// `azure-msi`: the tenants (directory ids) whose tokens are accepted.
    pub tenants: Option<Vec<String>>,
    /// `azure-msi`: the subscriptions whose VMs may join.
    pub subscriptions: Option<Vec<String>>,
    /// `azure-msi`: the resource groups they may be in (default: any).
    pub resource_groups: Option<Vec<String>>,
    /// Lets an instance that joined before join again (cloud methods; by
    /// default each instance joins once, and renews through `/v1/renew`).
    #[serde(default)]
    pub allow_reenroll: bool,
}

/// The join methods.
pub const JOIN_METHODS: [&str; 4] = ["token", "aws-iid", "gcp-iit", "azure-msi"];

pub(super) fn check_join(
    name: &str,
    j: &mut JoinConfig,
    cfg: &Config,
) -> std::result::Result<(), String> {
    if !is_path_segment(name) {
        return Err(
            "the name must be letters, digits, `-`, `_` or `.` (it is a URL path segment)".into(),
        );
    }
    if !JOIN_METHODS.contains(&j.method.as_str()) {
        return Err(format!(
            "field `method`: `{}` is not a join method (known: {})",
            sshca::core::text::escape(&j.method),
            JOIN_METHODS.join(", ")
        ));
    }
    let Some(entry) = cfg.policies.get(&j.policy) else {
        return Err(format!("field `policy`: no policy named `{}`", j.policy));
    };
    if entry.approval.is_some() || !entry.webhooks.is_empty() {
        return Err(format!(
            "field `policy`: policy `{}` asks webhooks or approvers, which a join does not \
             wait for; give the join a policy of its own",
            j.policy
        ));
    }
    if entry.policy.cert_type != sshca::core::CertType::Host {
        return Err(format!(
            "field `policy`: policy `{}` issues user certificates; a join issues host certificates",
            j.policy
        ));
    }
    check_join_method(j, &cfg.path)
}

/// The fields each join method needs, and no field of another method.
fn check_join_method(j: &mut JoinConfig, path: &Path) -> std::result::Result<(), String> {
    let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let fields: [(&str, bool, &[&str]); 13] = [
        (
            "audience",
            j.audience.is_some(),
            &["token", "gcp-iit", "azure-msi"],
        ),
        ("certificates", j.certificates.is_some(), &["aws-iid"]),
        ("accounts", j.accounts.is_some(), &["aws-iid"]),
        ("regions", j.regions.is_some(), &["aws-iid"]),
        ("max_age", j.max_age.is_some(), &["aws-iid"]),
        ("jwks", j.jwks.is_some(), &["gcp-iit", "azure-msi"]),
        ("jwks_ca", j.jwks_ca.is_some(), &["gcp-iit", "azure-msi"]),
        ("projects", j.projects.is_some(), &["gcp-iit"]),
        ("zones", j.zones.is_some(), &["gcp-iit"]),
        ("tenants", j.tenants.is_some(), &["azure-msi"]),
        ("subscriptions", j.subscriptions.is_some(), &["azure-msi"]),
        (
            "resource_groups",
            j.resource_groups.is_some(),
            &["azure-msi"],
        ),
        (
            "allow_reenroll",
            j.allow_reenroll,
            &["aws-iid", "gcp-iit", "azure-msi"],
        ),
    ];
    let method = j.method.as_str();
    for (field, present, methods) in fields {
        if present && !methods.contains(&method) {
            return Err(format!(
                "field `{field}`: not a field of `{method}` joins (it belongs to {})",
                methods.join(", ")
            ));
        }
    }
    let required: &[(&str, bool)] = match method {
        "aws-iid" => &[
            ("certificates", j.certificates.is_some()),
            ("accounts", j.accounts.is_some()),
        ],
        "gcp-iit" => &[
            ("audience", j.audience.is_some()),
            ("jwks", j.jwks.is_some()),
            ("projects", j.projects.is_some()),
        ],
        "azure-msi" => &[
            ("audience", j.audience.is_some()),
            ("jwks", j.jwks.is_some()),
            ("tenants", j.tenants.is_some()),
            ("subscriptions", j.subscriptions.is_some()),
        ],
        _ => &[],
    };
    if let Some((field, _)) = required.iter().find(|(_, present)| !present) {
        return Err(format!("field `{field}`: `{method}` joins need it"));
    }
    for (field, list) in [
        ("certificates", j.certificates.as_ref().map(|v| v.len())),
        ("accounts", j.accounts.as_ref().map(Vec::len)),
        ("regions", j.regions.as_ref().map(Vec::len)),
        ("projects", j.projects.as_ref().map(Vec::len)),
        ("zones", j.zones.as_ref().map(Vec::len)),
        ("tenants", j.tenants.as_ref().map(Vec::len)),
        ("subscriptions", j.subscriptions.as_ref().map(Vec::len)),
        ("resource_groups", j.resource_groups.as_ref().map(Vec::len)),
    ] {
        if list == Some(0) {
            return Err(format!("field `{field}`: empty list (nothing could join)"));
        }
    }
    if j.audience.as_deref() == Some("") {
        return Err("field `audience`: empty".into());
    }
    if let Some(bad) = j
        .accounts
        .iter()
        .flatten()
        .find(|a| a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "field `accounts`: `{}` is not a 12-digit AWS account id",
            sshca::core::text::escape(bad)
        ));
    }
    duration(j.max_age.as_ref(), "max_age")?;
    for c in j.certificates.iter_mut().flatten() {
        if c.is_relative() {
            *c = base.join(&*c);
        }
    }
    if let Some(jwks) = &mut j.jwks {
        if jwks.starts_with("http://") {
            return Err(format!(
                "field `jwks`: `{jwks}` is plain HTTP; keys must come over https:// or from a file"
            ));
        }
        if !jwks.starts_with("https://") && Path::new(jwks.as_str()).is_relative() {
            *jwks = base.join(jwks.as_str()).display().to_string();
        }
    }
    if let Some(ca) = &mut j.jwks_ca {
        if ca.is_relative() {
            *ca = base.join(&*ca);
        }
    }
    Ok(())
}
