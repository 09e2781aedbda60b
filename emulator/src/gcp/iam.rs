//! Cloud KMS IAM: policies on key rings and crypto keys (a key inherits its
//! ring's), the built-in roles' permissions, and `PERMISSION_DENIED` for a
//! caller no binding allows. Until a policy is set on a resource or its
//! ring, everything is allowed; a token without an identity in the seed is
//! the project's owner.

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use crate::gcp::store::{GcpIdentity, IamBinding, IamPolicy, RingIamSeed};
use crate::google::{gerr, invalid, not_found, GcpError};
use crate::state::{read, write, State};
use crate::util::b64;

/// The built-in roles and the permissions they grant (`*` at the end: any
/// permission starting with what comes before; `!` at the start: except).
const ROLES: &[(&str, &[&str])] = &[
    ("roles/owner", &["cloudkms.*"]),
    (
        "roles/cloudkms.admin",
        &[
            "!cloudkms.cryptoKeyVersions.useTo*",
            "!cloudkms.cryptoKeyVersions.viewPublicKey",
            "!cloudkms.importJobs.useToImport",
            "cloudkms.*",
        ],
    ),
    (
        "roles/cloudkms.cryptoKeyEncrypterDecrypter",
        &[
            "cloudkms.cryptoKeyVersions.useToEncrypt",
            "cloudkms.cryptoKeyVersions.useToDecrypt",
        ],
    ),
    (
        "roles/cloudkms.cryptoKeyEncrypter",
        &["cloudkms.cryptoKeyVersions.useToEncrypt"],
    ),
    (
        "roles/cloudkms.cryptoKeyDecrypter",
        &["cloudkms.cryptoKeyVersions.useToDecrypt"],
    ),
    (
        "roles/cloudkms.signerVerifier",
        &[
            "cloudkms.cryptoKeyVersions.useToSign",
            "cloudkms.cryptoKeyVersions.useToVerify",
            "cloudkms.cryptoKeyVersions.viewPublicKey",
        ],
    ),
    (
        "roles/cloudkms.signer",
        &["cloudkms.cryptoKeyVersions.useToSign"],
    ),
    (
        "roles/cloudkms.publicKeyViewer",
        &["cloudkms.cryptoKeyVersions.viewPublicKey"],
    ),
    (
        "roles/cloudkms.viewer",
        &[
            "cloudkms.*.get",
            "cloudkms.*.list",
            "cloudkms.*.getIamPolicy",
        ],
    ),
    (
        "roles/cloudkms.importer",
        &["cloudkms.importJobs.useToImport"],
    ),
];

fn matches(pattern: &str, permission: &str) -> bool {
    match pattern.split_once('*') {
        Some((pre, post)) => {
            permission.len() >= pre.len() + post.len()
                && permission.starts_with(pre)
                && permission.ends_with(post)
        }
        None => pattern == permission,
    }
}

fn role_grants(role: &str, permission: &str) -> bool {
    let Some((_, patterns)) = ROLES.iter().find(|(r, _)| *r == role) else {
        return false;
    };
    for p in patterns.iter() {
        if let Some(except) = p.strip_prefix('!') {
            if matches(except, permission) {
                return false;
            }
        } else if matches(p, permission) {
            return true;
        }
    }
    false
}

/// A fresh policy etag.
pub(super) fn new_etag() -> String {
    b64(&crate::crypto::random_bytes(8))
}

/// Checks role names and member forms.
pub(super) fn check_bindings(bindings: &[IamBinding]) -> Result<(), GcpError> {
    for b in bindings {
        if !ROLES.iter().any(|(r, _)| *r == b.role) {
            return Err(invalid(format!(
                "Role {} is not supported for this resource.",
                b.role
            )));
        }
        for m in &b.members {
            let ok = matches!(m.as_str(), "allUsers" | "allAuthenticatedUsers")
                || [
                    "user:",
                    "serviceAccount:",
                    "group:",
                    "domain:",
                    "principal:",
                    "principalSet:",
                ]
                .iter()
                .any(|p| m.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
            if !ok {
                return Err(invalid(format!(
                    "Invalid member {m:?}: expected user:, serviceAccount:, group:, domain:, allUsers or allAuthenticatedUsers."
                )));
            }
        }
    }
    Ok(())
}

/// Loads the seed's ring policies and identities.
pub(super) fn seed(
    state: &State,
    rings: Vec<RingIamSeed>,
    identities: Vec<GcpIdentity>,
) -> Result<(), String> {
    for i in &identities {
        if i.token.is_empty() {
            return Err("gcp_identities: an identity needs a token".into());
        }
        check_bindings(&[IamBinding {
            role: "roles/cloudkms.viewer".into(),
            members: vec![i.member.clone()],
        }])
        .map_err(|e| format!("gcp_identities: {}", e.message()))?;
    }
    let t = state.now();
    let mut store = write(&state.gcp);
    for r in rings {
        let segs: Vec<&str> = r.key_ring.split('/').collect();
        if segs.len() != 6
            || segs[0] != "projects"
            || segs[2] != "locations"
            || segs[4] != "keyRings"
        {
            return Err(format!(
                "gcp_key_ring_iam: {:?} is not projects/P/locations/L/keyRings/R",
                r.key_ring
            ));
        }
        check_bindings(&r.bindings)
            .map_err(|e| format!("gcp_key_ring_iam {}: {}", r.key_ring, e.message()))?;
        store.rings.entry(r.key_ring.clone()).or_insert(t);
        store.ring_iam.insert(
            r.key_ring,
            IamPolicy {
                bindings: r.bindings,
                etag: new_etag(),
            },
        );
    }
    store.identities = identities;
    Ok(())
}

/// The permission an operation needs.
pub(super) fn permission(op: &str, segs: &[&str]) -> Option<&'static str> {
    let on_ring = segs.len() == 6;
    Some(match op {
        "listKeyRings" => "cloudkms.keyRings.list",
        "createKeyRing" => "cloudkms.keyRings.create",
        "getKeyRing" => "cloudkms.keyRings.get",
        "listCryptoKeys" => "cloudkms.cryptoKeys.list",
        "createCryptoKey" => "cloudkms.cryptoKeys.create",
        "getCryptoKey" => "cloudkms.cryptoKeys.get",
        "updateCryptoKey" | "updateCryptoKeyPrimaryVersion" => "cloudkms.cryptoKeys.update",
        "encrypt" => "cloudkms.cryptoKeyVersions.useToEncrypt",
        "decrypt" => "cloudkms.cryptoKeyVersions.useToDecrypt",
        "listCryptoKeyVersions" => "cloudkms.cryptoKeyVersions.list",
        "createCryptoKeyVersion" | "importCryptoKeyVersion" => "cloudkms.cryptoKeyVersions.create",
        "getCryptoKeyVersion" => "cloudkms.cryptoKeyVersions.get",
        "updateCryptoKeyVersion" => "cloudkms.cryptoKeyVersions.update",
        "destroyCryptoKeyVersion" => "cloudkms.cryptoKeyVersions.destroy",
        "restoreCryptoKeyVersion" => "cloudkms.cryptoKeyVersions.restore",
        "asymmetricSign" => "cloudkms.cryptoKeyVersions.useToSign",
        "getPublicKey" => "cloudkms.cryptoKeyVersions.viewPublicKey",
        "createImportJob" => "cloudkms.importJobs.create",
        "getImportJob" => "cloudkms.importJobs.get",
        "listImportJobs" => "cloudkms.importJobs.list",
        "getIamPolicy" if on_ring => "cloudkms.keyRings.getIamPolicy",
        "getIamPolicy" => "cloudkms.cryptoKeys.getIamPolicy",
        "setIamPolicy" if on_ring => "cloudkms.keyRings.setIamPolicy",
        "setIamPolicy" => "cloudkms.cryptoKeys.setIamPolicy",
        _ => return None,
    })
}

/// The policies that apply to a resource path: its ring's, then its key's.
fn policies(state: &State, segs: &[&str]) -> Vec<IamPolicy> {
    let store = read(&state.gcp);
    let mut out = Vec::new();
    if segs.len() >= 6 && segs[4] == "keyRings" {
        if let Some(p) = store.ring_iam.get(&segs[..6].join("/")) {
            out.push(p.clone());
        }
    }
    if segs.len() >= 8 && segs[6] == "cryptoKeys" {
        if let Some(p) = store
            .keys
            .get(&segs[..8].join("/"))
            .and_then(|k| k.iam.clone())
        {
            out.push(p);
        }
    }
    out
}

/// The member a token stands for; `None`: the owner.
fn member(state: &State, token: Option<&str>) -> Option<String> {
    let token = token?;
    read(&state.gcp)
        .identities
        .iter()
        .find(|i| i.token == token)
        .map(|i| i.member.clone())
}

fn allowed(policies: &[IamPolicy], member: &str, permission: &str) -> bool {
    policies.iter().flat_map(|p| &p.bindings).any(|b| {
        b.members
            .iter()
            .any(|m| m == member || m == "allUsers" || m == "allAuthenticatedUsers")
            && role_grants(&b.role, permission)
    })
}

/// Refuses an operation the caller's bindings do not allow.
pub(super) fn authorize(
    state: &State,
    token: Option<&str>,
    op: &str,
    segs: &[&str],
) -> Result<(), GcpError> {
    let Some(permission) = permission(op, segs) else {
        return Ok(());
    };
    let Some(member) = member(state, token) else {
        return Ok(());
    };
    let policies = policies(state, segs);
    if policies.is_empty() || allowed(&policies, &member, permission) {
        return Ok(());
    }
    Err(gerr(
        StatusCode::FORBIDDEN,
        "PERMISSION_DENIED",
        format!(
            "Permission '{permission}' denied on resource '{}' (or it may not exist).",
            segs.join("/")
        ),
    ))
}

fn policy_json(p: Option<&IamPolicy>) -> Value {
    match p {
        None => json!({"etag": "ACAB"}),
        Some(p) => json!({"version": 1, "etag": p.etag, "bindings": p.bindings}),
    }
}

/// The resource's own policy: (is a ring, name), or NOT_FOUND.
fn resource(state: &State, segs: &[&str]) -> Result<(bool, String), GcpError> {
    let name = segs.join("/");
    let store = read(&state.gcp);
    match segs.len() {
        6 if store.rings.contains_key(&name) => Ok((true, name)),
        8 if segs[6] == "cryptoKeys" && store.keys.contains_key(&name) => Ok((false, name)),
        6 => Err(not_found(&format!("KeyRing {name}"))),
        8 if segs[6] == "cryptoKeys" => Err(not_found(&format!("CryptoKey {name}"))),
        _ => Err(invalid(format!(
            "{name}: IAM policies are on key rings and crypto keys"
        ))),
    }
}

/// `getIamPolicy`.
pub(super) fn get_policy(state: &State, segs: &[&str]) -> Result<Value, GcpError> {
    let (ring, name) = resource(state, segs)?;
    let store = read(&state.gcp);
    let p = if ring {
        store.ring_iam.get(&name).cloned()
    } else {
        store.keys.get(&name).and_then(|k| k.iam.clone())
    };
    Ok(policy_json(p.as_ref()))
}

/// `setIamPolicy`: `{"policy": {"bindings": [...], "etag": ...}}`; a stale
/// etag is refused (`ABORTED`).
pub(super) fn set_policy(
    state: &State,
    segs: &[&str],
    b: &Map<String, Value>,
) -> Result<Value, GcpError> {
    let (ring, name) = resource(state, segs)?;
    let policy = b
        .get("policy")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("policy is required"))?;
    let bindings: Vec<IamBinding> = match policy.get("bindings") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| invalid(format!("policy.bindings: {e}")))?,
    };
    check_bindings(&bindings)?;
    let given = policy
        .get("etag")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty());
    let mut store = write(&state.gcp);
    let slot = if ring {
        store.ring_iam.get(&name).cloned()
    } else {
        store.keys.get(&name).and_then(|k| k.iam.clone())
    };
    let current = slot.as_ref().map_or("ACAB", |p| p.etag.as_str());
    if given.is_some_and(|g| g != current) {
        return Err(gerr(
            StatusCode::CONFLICT,
            "ABORTED",
            "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
        ));
    }
    let new = IamPolicy {
        bindings,
        etag: new_etag(),
    };
    let out = policy_json(Some(&new));
    if ring {
        store.ring_iam.insert(name, new);
    } else if let Some(k) = store.keys.get_mut(&name) {
        k.iam = Some(new);
    }
    drop(store);
    state.persist();
    Ok(out)
}

/// `testIamPermissions`: the asked permissions the caller holds.
pub(super) fn test_permissions(
    state: &State,
    token: Option<&str>,
    segs: &[&str],
    b: &Map<String, Value>,
) -> Result<Value, GcpError> {
    resource(state, segs)?;
    let asked: Vec<String> = match b.get("permissions") {
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| invalid("permissions must be a list of strings"))?,
        None => Vec::new(),
    };
    if let Some(p) = asked.iter().find(|p| !p.starts_with("cloudkms.")) {
        return Err(invalid(format!(
            "Permission {p} is not valid for this resource."
        )));
    }
    let member = member(state, token);
    let policies = policies(state, segs);
    let held: Vec<&String> = asked
        .iter()
        .filter(|p| match &member {
            None => true,
            Some(m) => policies.is_empty() || allowed(&policies, m, p),
        })
        .collect();
    Ok(if held.is_empty() {
        json!({})
    } else {
        json!({"permissions": held})
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        assert!(role_grants(
            "roles/cloudkms.signerVerifier",
            "cloudkms.cryptoKeyVersions.useToSign"
        ));
        assert!(!role_grants(
            "roles/cloudkms.signerVerifier",
            "cloudkms.cryptoKeys.get"
        ));
        assert!(role_grants(
            "roles/cloudkms.viewer",
            "cloudkms.cryptoKeys.get"
        ));
        assert!(role_grants(
            "roles/cloudkms.viewer",
            "cloudkms.keyRings.getIamPolicy"
        ));
        assert!(!role_grants(
            "roles/cloudkms.viewer",
            "cloudkms.cryptoKeyVersions.useToSign"
        ));
        assert!(role_grants(
            "roles/cloudkms.admin",
            "cloudkms.cryptoKeyVersions.destroy"
        ));
        assert!(!role_grants(
            "roles/cloudkms.admin",
            "cloudkms.cryptoKeyVersions.useToSign"
        ));
        assert!(!role_grants(
            "roles/cloudkms.admin",
            "cloudkms.cryptoKeyVersions.viewPublicKey"
        ));
        assert!(role_grants(
            "roles/owner",
            "cloudkms.cryptoKeyVersions.useToSign"
        ));
        assert!(check_bindings(&[IamBinding {
            role: "roles/cloudkms.root".into(),
            members: vec![]
        }])
        .is_err());
        assert!(check_bindings(&[IamBinding {
            role: "roles/cloudkms.signer".into(),
            members: vec!["bob".into()]
        }])
        .is_err());
    }
}
