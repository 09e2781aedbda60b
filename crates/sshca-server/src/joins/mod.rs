//! The cloud join methods: a host proves which instance it is with what
//! its cloud's metadata service signs — an EC2 instance identity document
//! (`aws-iid`), a Compute Engine instance identity token (`gcp-iit`) or an
//! Azure managed identity access token (`azure-msi`) — and the join's
//! allow-lists decide whether that instance may join. The instance's
//! facts become the claims the join's policy templates read.

mod aws;

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Map, Value};
use sshca::core::template::{Claim, Claims};
use sshca::core::validity::parse_ttl;
use sshca::signer::{Error, ErrorKind, Result};

use crate::config::JoinConfig;
use crate::error::ApiError;
use crate::oidc::Issuers;

/// The issuer of Compute Engine identity tokens (both spellings Google
/// uses).
const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// The longest proof field read (a document, a signature or a token).
const MAX_PROOF: usize = 16 * 1024;

/// What a host sends as `proof` (the fields its join's method reads).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Proof {
    /// A join token (`token`).
    pub token: Option<String>,
    /// The instance identity document (`aws-iid`).
    pub document: Option<String>,
    /// Its signature: base64 RSA/SHA-256, or the PKCS#7 `rsa2048` one
    /// (`aws-iid`).
    pub signature: Option<String>,
    /// The instance identity token (`gcp-iit`).
    pub identity_token: Option<String>,
    /// The managed identity access token (`azure-msi`).
    pub access_token: Option<String>,
}

/// A cloud instance whose proof was verified and whose facts the join's
/// lists accept.
#[derive(Debug)]
pub(crate) struct Instance {
    /// Names the instance uniquely within its cloud (what "joins once"
    /// counts): account and instance id, project and instance id, tenant
    /// and the managed identity's object id.
    pub key: String,
    /// The identity's name in the record.
    pub name: String,
    /// What the policy's templates read.
    pub claims: Claims,
}

/// The cloud joins, ready to verify proofs.
#[derive(Default)]
pub(crate) struct Joins(BTreeMap<String, Method>);

enum Method {
    Aws(aws::AwsJoin),
    Gcp(TokenJoin),
    Azure(TokenJoin),
}

/// A join whose proof is a JWT.
struct TokenJoin {
    issuers: Issuers,
    /// Projects (GCP) or subscriptions (Azure) allowed.
    owners: Vec<String>,
    /// Zones (GCP) or resource groups (Azure) allowed, when limited.
    places: Option<Vec<String>>,
    /// Tenants (Azure).
    tenants: Vec<String>,
}

fn refused(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code, message)
}

/// A proof that does not prove anything: 401 `join_proof_invalid`.
pub(crate) fn invalid(message: impl Into<String>) -> ApiError {
    refused(StatusCode::UNAUTHORIZED, "join_proof_invalid", message)
}

/// `Ok` when `allowed` (`None`: any) lists `value` (without case for
/// Azure's names); else 403 `join_instance_refused` naming it as `what`.
fn admit(
    allowed: Option<&[String]>,
    value: &str,
    what: &str,
    ignore_case: bool,
) -> std::result::Result<(), ApiError> {
    let listed = |a: &String| {
        if ignore_case {
            a.eq_ignore_ascii_case(value)
        } else {
            a == value
        }
    };
    match allowed {
        Some(list) if !list.iter().any(listed) => Err(refused(
            StatusCode::FORBIDDEN,
            "join_instance_refused",
            format!("{what} `{}` may not join", sshca::core::text::escape(value)),
        )),
        _ => Ok(()),
    }
}

impl Joins {
    /// The cloud joins of `joins` (token joins need nothing here), their
    /// certificates read and their JWKS loaded.
    pub async fn new(joins: &BTreeMap<String, JoinConfig>) -> Result<Self> {
        let mut out = BTreeMap::new();
        for (name, j) in joins {
            let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
            let jwks = || {
                j.jwks.as_deref().ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidInput,
                        format!("join `{name}`: field `jwks` is required"),
                    )
                })
            };
            let audience = j.audience.clone().unwrap_or_default();
            let method = match j.method.as_str() {
                "aws-iid" => Method::Aws(aws::AwsJoin::new(name, j)?),
                "gcp-iit" => Method::Gcp(TokenJoin {
                    issuers: Issuers::for_join(
                        name,
                        &GOOGLE_ISSUERS.map(str::to_owned),
                        &audience,
                        jwks()?,
                        j.jwks_ca.as_deref(),
                    )
                    .await?,
                    owners: list(&j.projects),
                    places: j.zones.clone(),
                    tenants: Vec::new(),
                }),
                "azure-msi" => {
                    let tenants = list(&j.tenants);
                    let issuers: Vec<String> = tenants
                        .iter()
                        .flat_map(|t| {
                            [
                                format!("https://sts.windows.net/{t}/"),
                                format!("https://login.microsoftonline.com/{t}/v2.0"),
                            ]
                        })
                        .collect();
                    Method::Azure(TokenJoin {
                        issuers: Issuers::for_join(
                            name,
                            &issuers,
                            &audience,
                            jwks()?,
                            j.jwks_ca.as_deref(),
                        )
                        .await?,
                        owners: list(&j.subscriptions),
                        places: j.resource_groups.clone(),
                        tenants,
                    })
                }
                _ => continue,
            };
            out.insert(name.clone(), method);
        }
        Ok(Joins(out))
    }

    /// The instance `proof` proves to the cloud join `name`, at `now`;
    /// `None` when `name` is not a cloud join.
    pub async fn verify(
        &self,
        name: &str,
        proof: &Proof,
        now: u64,
    ) -> Option<std::result::Result<Instance, ApiError>> {
        let method = self.0.get(name)?;
        Some(match method {
            Method::Aws(a) => match (&proof.document, &proof.signature) {
                (Some(doc), Some(sig)) if only(proof, 2) => bounded(doc, "document")
                    .and_then(|()| bounded(sig, "signature"))
                    .and_then(|()| a.verify(doc, sig, now)),
                _ => Err(shape(name, "aws-iid", "{\"document\", \"signature\"}")),
            },
            Method::Gcp(g) => match &proof.identity_token {
                Some(t) if only(proof, 1) => match bounded(t, "identity_token") {
                    Ok(()) => g.gcp(t.trim()).await,
                    Err(e) => Err(e),
                },
                _ => Err(shape(name, "gcp-iit", "{\"identity_token\"}")),
            },
            Method::Azure(z) => match &proof.access_token {
                Some(t) if only(proof, 1) => match bounded(t, "access_token") {
                    Ok(()) => z.azure(t.trim()).await,
                    Err(e) => Err(e),
                },
                _ => Err(shape(name, "azure-msi", "{\"access_token\"}")),
            },
        })
    }
}

impl Proof {
    /// The join token, when the proof is `{"token"}` alone (what a `token`
    /// join takes).
    pub(crate) fn join_token(&self, name: &str) -> std::result::Result<&str, ApiError> {
        match &self.token {
            Some(t) if only(self, 1) => Ok(t),
            _ => Err(shape(name, "token", "{\"token\"}")),
        }
    }
}

/// Whether `proof` has exactly `n` fields.
fn only(proof: &Proof, n: usize) -> bool {
    [
        proof.token.is_some(),
        proof.document.is_some(),
        proof.signature.is_some(),
        proof.identity_token.is_some(),
        proof.access_token.is_some(),
    ]
    .iter()
    .filter(|p| **p)
    .count()
        == n
}

fn shape(name: &str, method: &str, want: &str) -> ApiError {
    ApiError::bad_request(format!(
        "field `proof`: join `{name}` ({method}) takes {want}"
    ))
}

fn bounded(v: &str, field: &str) -> std::result::Result<(), ApiError> {
    if v.len() > MAX_PROOF {
        return Err(ApiError::bad_request(format!(
            "field `proof.{field}`: over {MAX_PROOF} bytes"
        )));
    }
    Ok(())
}

/// A string claim, or the token is refused naming it.
fn text<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    what: &str,
) -> std::result::Result<&'a str, ApiError> {
    match m.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(invalid(format!("{what} has no string `{key}`"))),
    }
}

/// A claim value for templates, refused when it holds what no principal or
/// key id may (control characters, over-long values).
fn claim(value: &str, key: &str) -> std::result::Result<Claim, ApiError> {
    sshca::core::text::check_printable(key, value).map_err(|e| invalid(e.to_string()))?;
    if value.len() > sshca::core::text::CAP {
        return Err(invalid(format!(
            "`{key}` is over {} bytes",
            sshca::core::text::CAP
        )));
    }
    Ok(Claim::Text(value.to_owned()))
}

impl TokenJoin {
    async fn gcp(&self, token: &str) -> std::result::Result<Instance, ApiError> {
        let m = self.issuers.claims(token).await?;
        let ce = m
            .get("google")
            .and_then(|g| g.get("compute_engine"))
            .and_then(Value::as_object)
            .ok_or_else(|| {
                invalid(
                    "the token has no `google.compute_engine` claims (ask the metadata server \
                     with format=full)",
                )
            })?;
        let what = "the token's google.compute_engine";
        let project = text(ce, "project_id", what)?;
        let zone = text(ce, "zone", what)?;
        let instance_id = match ce.get("instance_id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(invalid(format!("{what} has no `instance_id`"))),
        };
        let instance_name = text(ce, "instance_name", what)?;
        admit(Some(&self.owners), project, "project", false)?;
        admit(self.places.as_deref(), zone, "zone", false)?;
        let number = match ce.get("project_number") {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let mut claims = Claims::new();
        claims.insert("project_id".into(), claim(project, "project_id")?);
        claims.insert("project_number".into(), claim(&number, "project_number")?);
        claims.insert("zone".into(), claim(zone, "zone")?);
        claims.insert("instance_id".into(), claim(&instance_id, "instance_id")?);
        claims.insert(
            "instance_name".into(),
            claim(instance_name, "instance_name")?,
        );
        Ok(Instance {
            key: format!("{project}/{instance_id}"),
            name: format!("{project}/{instance_name}"),
            claims,
        })
    }

    async fn azure(&self, token: &str) -> std::result::Result<Instance, ApiError> {
        let m = self.issuers.claims(token).await?;
        let what = "the token";
        let tid = text(&m, "tid", what)?;
        admit(Some(&self.tenants), tid, "tenant", true)?;
        let oid = text(&m, "oid", what)?;
        let mirid = text(&m, "xms_mirid", what)?;
        let (sub, group, vm) = parse_mirid(mirid).ok_or_else(|| {
            invalid(format!(
                "`xms_mirid` `{}` is not a virtual machine's resource id \
                 (/subscriptions/S/resourcegroups/G/providers/Microsoft.Compute/virtualMachines/VM)",
                sshca::core::text::escape(mirid)
            ))
        })?;
        admit(Some(&self.owners), sub, "subscription", true)?;
        admit(self.places.as_deref(), group, "resource group", true)?;
        let mut claims = Claims::new();
        claims.insert("tenant_id".into(), claim(tid, "tenant_id")?);
        claims.insert("subscription_id".into(), claim(sub, "subscription_id")?);
        claims.insert("resource_group".into(), claim(group, "resource_group")?);
        claims.insert("vm_name".into(), claim(vm, "vm_name")?);
        claims.insert("principal_id".into(), claim(oid, "principal_id")?);
        Ok(Instance {
            key: format!("{}/{}", tid.to_ascii_lowercase(), oid.to_ascii_lowercase()),
            name: format!("{sub}/{group}/{vm}"),
            claims,
        })
    }
}

/// (subscription, resource group, VM name) of a VM's resource id.
fn parse_mirid(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.strip_prefix('/')?.split('/').collect();
    let [s, sub, rg, group, p, ns, t, vm] = parts.as_slice() else {
        return None;
    };
    let fixed = [
        (s, "subscriptions"),
        (rg, "resourcegroups"),
        (p, "providers"),
        (ns, "microsoft.compute"),
        (t, "virtualmachines"),
    ];
    if fixed
        .iter()
        .all(|(got, want)| got.eq_ignore_ascii_case(want))
        && [sub, group, vm].iter().all(|v| !v.is_empty())
    {
        Some((sub, group, vm))
    } else {
        None
    }
}

/// Seconds in a `max_age` (default 10 minutes).
fn max_age(j: &JoinConfig) -> Result<u64> {
    match &j.max_age {
        Some(v) => parse_ttl(v)
            .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("field `max_age`: {e}"))),
        None => Ok(600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_resource_ids() {
        assert_eq!(
            parse_mirid("/subscriptions/s1/resourcegroups/RG/providers/Microsoft.Compute/virtualMachines/vm-1"),
            Some(("s1", "RG", "vm-1"))
        );
        assert_eq!(
            parse_mirid(
                "/subscriptions/s1/resourceGroups/rg/providers/microsoft.compute/virtualmachines/v"
            ),
            Some(("s1", "rg", "v"))
        );
        for bad in [
            "",
            "/subscriptions/s1/resourcegroups/rg",
            "/subscriptions/s1/resourcegroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/v",
            "/subscriptions//resourcegroups/rg/providers/Microsoft.Compute/virtualMachines/v",
            "/subscriptions/s1/resourcegroups/rg/providers/Microsoft.Compute/virtualMachines/v/x",
        ] {
            assert_eq!(parse_mirid(bad), None, "{bad}");
        }
    }
}
