//! Key Vault's role-based access: the data actions of the built-in roles,
//! and the refusal a caller without one gets.

use hyper::StatusCode;

use super::store::{AzureIdentity, AzureStore};
use super::{aerr, AzError};

/// The built-in roles and the data actions they grant (below
/// `Microsoft.KeyVault/vaults/`).
const ROLES: &[(&str, &[&str])] = &[
    ("Key Vault Administrator", &["keys/*", "deletedKeys/*"]),
    ("Key Vault Crypto Officer", &["keys/*", "deletedKeys/*"]),
    (
        "Key Vault Crypto User",
        &[
            "keys/read",
            "keys/update/action",
            "keys/encrypt/action",
            "keys/decrypt/action",
            "keys/wrap/action",
            "keys/unwrap/action",
            "keys/sign/action",
            "keys/verify/action",
        ],
    ),
    (
        "Key Vault Crypto Service Encryption User",
        &["keys/read", "keys/wrap/action", "keys/unwrap/action"],
    ),
    ("Key Vault Reader", &["*/read"]),
];

/// The data action an operation needs.
pub(super) fn action(op: &str) -> &'static str {
    match op {
        "createKey" => "keys/create/action",
        "importKey" => "keys/import/action",
        "updateKey" => "keys/update/action",
        "deleteKey" => "keys/delete",
        "rotateKey" => "keys/rotate/action",
        "getRotationPolicy" => "keys/rotationpolicy/read",
        "updateRotationPolicy" => "keys/rotationpolicy/write",
        "listDeletedKeys" | "getDeletedKey" => "deletedKeys/read",
        "recoverDeletedKey" => "deletedKeys/recover/action",
        "purgeDeletedKey" => "deletedKeys/delete",
        "sign" => "keys/sign/action",
        "verify" => "keys/verify/action",
        "encrypt" => "keys/encrypt/action",
        "decrypt" => "keys/decrypt/action",
        "wrapKey" => "keys/wrap/action",
        "unwrapKey" => "keys/unwrap/action",
        _ => "keys/read",
    }
}

fn grants(pattern: &str, action: &str) -> bool {
    if let Some(prefix) = pattern.strip_suffix('*') {
        return action.starts_with(prefix);
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return action.ends_with(suffix);
    }
    pattern == action
}

fn role_grants(role: &str, action: &str) -> bool {
    ROLES
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(role))
        .any(|(_, actions)| actions.iter().any(|p| grants(p, action)))
}

/// Checks a seeded identity: known roles, a token.
pub(super) fn check_identity(i: &AzureIdentity) -> Result<(), String> {
    if i.token.is_empty() {
        return Err("azure_identities: an identity needs a token".into());
    }
    for r in &i.roles {
        if !ROLES.iter().any(|(name, _)| name.eq_ignore_ascii_case(r)) {
            let known: Vec<&str> = ROLES.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "azure_identities: unknown role {r:?} (one of: {})",
                known.join(", ")
            ));
        }
    }
    Ok(())
}

/// Whether the caller with `token` may run `op` on key `name` (empty: the
/// vault). A token without role assignments is the vault's owner.
pub(super) fn authorize(
    store: &AzureStore,
    token: &str,
    op: &str,
    name: &str,
) -> Result<(), AzError> {
    let Some(identity) = store.identities.iter().find(|i| i.token == token) else {
        return Ok(());
    };
    let action = action(op);
    let in_scope = identity.keys.is_empty() || identity.keys.iter().any(|k| k == name);
    if in_scope && identity.roles.iter().any(|r| role_grants(r, action)) {
        return Ok(());
    }
    let resource = if name.is_empty() {
        "/keys".to_string()
    } else {
        format!("/keys/{name}")
    };
    let mut e = aerr(
        StatusCode::FORBIDDEN,
        "Forbidden",
        format!(
            "Caller is not authorized to perform action on resource.\r\n\
             If role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\n\
             Caller: {}\r\n\
             Action: 'Microsoft.KeyVault/vaults/{action}'\r\n\
             Resource: '{resource}'\r\n\
             Assignment: (not found)\r\n\
             DenyAssignmentId: null\r\n\
             DecisionReason: null\r\n",
            crate::requests::token_caller(token)
        ),
    );
    e.inner = Some("ForbiddenByRbac");
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        assert!(role_grants("Key Vault Crypto User", "keys/sign/action"));
        assert!(!role_grants("Key Vault Crypto User", "keys/create/action"));
        assert!(role_grants(
            "key vault crypto officer",
            "deletedKeys/recover/action"
        ));
        assert!(role_grants("Key Vault Reader", "keys/rotationpolicy/read"));
        assert!(!role_grants("Key Vault Reader", "keys/verify/action"));
        assert!(!role_grants(
            "Key Vault Crypto Service Encryption User",
            "keys/sign/action"
        ));
        // Scoped to one key: that key only, and no vault-wide listing.
        let store = AzureStore {
            identities: vec![AzureIdentity {
                token: "signer".into(),
                roles: vec!["Key Vault Crypto User".into()],
                keys: vec!["ca".into()],
            }],
            ..AzureStore::default()
        };
        assert!(authorize(&store, "signer", "sign", "ca").is_ok());
        let e = authorize(&store, "signer", "sign", "other").unwrap_err();
        assert_eq!(
            (e.status, e.inner),
            (StatusCode::FORBIDDEN, Some("ForbiddenByRbac"))
        );
        assert!(e
            .message
            .contains("'Microsoft.KeyVault/vaults/keys/sign/action'"));
        assert!(
            !e.message.contains("signer"),
            "the token stays out of the message"
        );
        assert!(authorize(&store, "signer", "listKeys", "").is_err());
        // A token without assignments is the owner.
        assert!(authorize(&store, "owner", "purgeDeletedKey", "ca").is_ok());
        assert!(check_identity(&AzureIdentity {
            token: "t".into(),
            roles: vec!["Key Vault Owner".into()],
            keys: vec![],
        })
        .is_err());
    }
}
