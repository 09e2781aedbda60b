//! Who may do what to an AWS KMS key: key policies (Allow/Deny statements
//! with `Principal.AWS` ARNs and `kms:` action globs; an explicit deny
//! wins), grants (grantee, operations, encryption context constraints,
//! grant tokens) and `AccessDeniedException`. A key without a policy of its
//! own has the default policy, which allows the account everything.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::aws::model::*;
use crate::aws::store::{AwsKey, Grant, AWS_ACCOUNT};
use crate::state::{read, write, State};

/// Largest key policy document.
const MAX_POLICY: usize = 32_768;

/// The caller of an account without a principal of its own.
pub(crate) fn account_root() -> String {
    format!("arn:aws:iam::{AWS_ACCOUNT}:root")
}

/// The default key policy: the account may do everything.
pub(crate) fn default_policy() -> String {
    json!({
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": account_root()},
            "Action": "kms:*",
            "Resource": "*",
        }],
    })
    .to_string()
}

/// One statement of a key policy.
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    allow: bool,
    principals: Vec<String>,
    actions: Vec<String>,
    not_actions: Vec<String>,
}

fn malformed(msg: impl Into<String>) -> AwsError {
    e400("MalformedPolicyDocumentException", msg)
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>, AwsError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| malformed(format!("{what} must be a string or a list of strings"))),
        _ => Err(malformed(format!(
            "{what} must be a string or a list of strings"
        ))),
    }
}

/// Parses a key policy document.
pub(crate) fn parse_policy(text: &str) -> Result<Vec<Statement>, AwsError> {
    if text.len() > MAX_POLICY {
        return Err(validation(format!(
            "1 validation error detected: Value at 'policy' failed to satisfy constraint: Member must have length less than or equal to {MAX_POLICY}"
        )));
    }
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| malformed(format!("The key policy is not valid JSON: {e}")))?;
    let list = match &doc["Statement"] {
        Value::Array(a) => a.clone(),
        o @ Value::Object(_) => vec![o.clone()],
        _ => return Err(malformed("The key policy has no Statement.")),
    };
    let mut out = Vec::new();
    for s in &list {
        let allow = match s["Effect"].as_str() {
            Some("Allow") => true,
            Some("Deny") => false,
            _ => return Err(malformed("Each statement needs Effect Allow or Deny.")),
        };
        let principals = match &s["Principal"] {
            Value::String(p) if p == "*" => vec!["*".to_string()],
            Value::Object(m) => match (m.get("AWS"), m.get("Service")) {
                (Some(v), _) => strings(v, "Principal.AWS")?,
                (None, Some(v)) => strings(v, "Principal.Service")?
                    .into_iter()
                    .map(|s| format!("service:{s}"))
                    .collect(),
                (None, None) => return Err(malformed("Principal needs AWS or Service.")),
            },
            _ => return Err(malformed("Each statement needs a Principal.")),
        };
        for p in &principals {
            let ok = p == "*"
                || p.starts_with("service:")
                || (p.len() == 12 && p.bytes().all(|b| b.is_ascii_digit()))
                || p.starts_with("arn:aws:iam::")
                || p.starts_with("arn:aws:sts::");
            if !ok {
                return Err(malformed(format!(
                    "Policy contains a statement with one or more invalid principals: {p}"
                )));
            }
        }
        let (actions, not_actions) = match (&s["Action"], &s["NotAction"]) {
            (Value::Null, Value::Null) => {
                return Err(malformed("Each statement needs Action or NotAction."))
            }
            (a, Value::Null) => (strings(a, "Action")?, Vec::new()),
            (Value::Null, n) => (Vec::new(), strings(n, "NotAction")?),
            _ => {
                return Err(malformed(
                    "A statement takes Action or NotAction, not both.",
                ))
            }
        };
        for a in actions.iter().chain(&not_actions) {
            if a != "*" && !a.to_ascii_lowercase().starts_with("kms:") {
                return Err(malformed(format!(
                    "Policy contains a statement with one or more invalid actions: {a}"
                )));
            }
        }
        out.push(Statement {
            allow,
            principals,
            actions,
            not_actions,
        });
    }
    Ok(out)
}

/// Case-insensitive glob with `*` and `?`.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (
        pattern.to_ascii_lowercase().chars().collect(),
        text.to_ascii_lowercase().chars().collect(),
    );
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn principal_matches(p: &str, caller: &str) -> bool {
    if p == "*" || p == caller {
        return true;
    }
    // The account's root stands for every principal of the account (whose
    // IAM policies the emulator does not model: they allow).
    let account = caller
        .strip_prefix("arn:aws:iam::")
        .or_else(|| caller.strip_prefix("arn:aws:sts::"))
        .and_then(|r| r.split(':').next())
        .unwrap_or("");
    !account.is_empty() && (p == format!("arn:aws:iam::{account}:root") || p == account)
}

fn statement_matches(s: &Statement, caller: &str, action: &str) -> bool {
    let action_ok = if s.not_actions.is_empty() {
        s.actions.iter().any(|a| glob(a, action))
    } else {
        !s.not_actions.iter().any(|a| glob(a, action))
    };
    action_ok && s.principals.iter().any(|p| principal_matches(p, caller))
}

/// Whether a grant's encryption context constraint admits the request's.
fn context_fits(g: &Grant, b: &Body) -> bool {
    let ctx: BTreeMap<String, String> = b
        .get("EncryptionContext")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default();
    if let Some(eq) = &g.context_equals {
        return *eq == ctx;
    }
    if let Some(sub) = &g.context_subset {
        return sub.iter().all(|(k, v)| ctx.get(k) == Some(v));
    }
    true
}

/// Refuses `op` on key `k` for `caller` unless the key policy or a grant
/// allows it.
pub(crate) fn authorize(k: &AwsKey, caller: &str, op: &str, b: &Body) -> Result<(), AwsError> {
    let Some(policy) = &k.policy else {
        return Ok(());
    };
    let action = format!("kms:{op}");
    let statements = parse_policy(policy)?;
    let denied = |why: &str| {
        e400(
            "AccessDeniedException",
            format!(
                "User: {caller} is not authorized to perform: {action} on resource: {} {why}",
                k.arn()
            ),
        )
    };
    if statements
        .iter()
        .any(|s| !s.allow && statement_matches(s, caller, &action))
    {
        return Err(denied("with an explicit deny in a resource-based policy"));
    }
    if statements
        .iter()
        .any(|s| s.allow && statement_matches(s, caller, &action))
    {
        return Ok(());
    }
    if k.grants
        .iter()
        .any(|g| g.grantee == caller && g.operations.iter().any(|o| o == op) && context_fits(g, b))
    {
        return Ok(());
    }
    Err(denied(&format!(
        "because no resource-based policy allows the {action} action"
    )))
}

/// Refuses grant tokens no grant issued.
pub(crate) fn check_grant_tokens(state: &State, b: &Body) -> Result<(), AwsError> {
    let Some(tokens) = b.get("GrantTokens") else {
        return Ok(());
    };
    let tokens = match tokens {
        Value::Array(a) if a.len() <= 10 => a,
        Value::Array(_) => {
            return Err(validation("1 validation error detected: Value at 'grantTokens' failed to satisfy constraint: Member must have length less than or equal to 10"))
        }
        _ => return Err(e400("SerializationException", "GrantTokens must be a list")),
    };
    let store = read(&state.aws);
    for t in tokens {
        let t = t.as_str().unwrap_or("");
        if !store
            .keys
            .values()
            .flat_map(|k| &k.grants)
            .any(|g| g.token == t)
        {
            return Err(e400("InvalidGrantTokenException", "Invalid grant token."));
        }
    }
    Ok(())
}

/// GetKeyPolicy.
pub(crate) fn get_policy(state: &State, b: &Body) -> Result<Value, AwsError> {
    let k = key_arg(state, b)?;
    policy_name(b)?;
    Ok(json!({"Policy": k.policy.clone().unwrap_or_else(default_policy), "PolicyName": "default"}))
}

fn policy_name(b: &Body) -> Result<(), AwsError> {
    match field(b, "PolicyName")? {
        None | Some("default") => Ok(()),
        Some(other) => Err(e400(
            "NotFoundException",
            format!("No such policy exists: {other}. The only key policy name is default."),
        )),
    }
}

/// PutKeyPolicy, with AWS's lockout check unless bypassed.
pub(crate) fn put_policy(state: &State, b: &Body, caller: &str) -> Result<Value, AwsError> {
    policy_name(b)?;
    let text = required(b, "Policy")?.to_string();
    check_new_policy(&text, caller, b)?;
    update_key(state, &key_arg(state, b)?.slot(), |k| {
        k.policy = Some(text);
        Ok(json!({}))
    })
}

/// Parses a new policy and, unless `BypassPolicyLockoutSafetyCheck`, checks
/// that the caller could still change it.
pub(crate) fn check_new_policy(text: &str, caller: &str, b: &Body) -> Result<(), AwsError> {
    let statements = parse_policy(text)?;
    if b.get("BypassPolicyLockoutSafetyCheck")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Ok(());
    }
    let action = "kms:PutKeyPolicy";
    let allowed = statements
        .iter()
        .any(|s| s.allow && statement_matches(s, caller, action))
        && !statements
            .iter()
            .any(|s| !s.allow && statement_matches(s, caller, action));
    if !allowed {
        return Err(malformed(
            "The new key policy will not allow you to update the key policy in the future.",
        ));
    }
    Ok(())
}

/// ListKeyPolicies.
pub(crate) fn list_policies(state: &State, b: &Body) -> Result<Value, AwsError> {
    key_arg(state, b)?;
    Ok(json!({"PolicyNames": ["default"], "Truncated": false}))
}

/// The operations a grant may give.
const GRANT_OPERATIONS: &[&str] = &[
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "Sign",
    "Verify",
    "GetPublicKey",
    "CreateGrant",
    "RetireGrant",
    "DescribeKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "VerifyMac",
    "DeriveSharedSecret",
];

fn context_map(
    v: Option<&Value>,
    what: &str,
) -> Result<Option<BTreeMap<String, String>>, AwsError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_string()))
                    .ok_or_else(|| {
                        e400(
                            "SerializationException",
                            format!("{what} values must be strings"),
                        )
                    })
            })
            .collect::<Result<_, _>>()
            .map(Some),
        Some(_) => Err(e400(
            "SerializationException",
            format!("{what} must be a map"),
        )),
    }
}

fn grant_json(k: &AwsKey, g: &Grant) -> Value {
    let mut out = json!({
        "KeyId": k.arn(),
        "GrantId": g.id,
        "Name": g.name,
        "CreationDate": g.created,
        "GranteePrincipal": g.grantee,
        "IssuingAccount": account_root(),
        "Operations": g.operations,
    });
    if let Some(r) = &g.retiring {
        out["RetiringPrincipal"] = json!(r);
    }
    match (&g.context_subset, &g.context_equals) {
        (Some(s), _) => out["Constraints"] = json!({"EncryptionContextSubset": s}),
        (_, Some(e)) => out["Constraints"] = json!({"EncryptionContextEquals": e}),
        _ => {}
    }
    out
}

/// CreateGrant.
pub(crate) fn create_grant(state: &State, b: &Body, caller: &str) -> Result<Value, AwsError> {
    let k = key_arg(state, b)?;
    let grantee = required(b, "GranteePrincipal")?.to_string();
    let retiring = field(b, "RetiringPrincipal")?.map(str::to_string);
    let ops: Vec<String> = match b.get("Operations") {
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|o| o.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| e400("SerializationException", "Operations must be strings"))?,
        _ => return Err(validation("1 validation error detected: Value null at 'operations' failed to satisfy constraint: Member must not be null")),
    };
    for o in &ops {
        if !GRANT_OPERATIONS.contains(&o.as_str()) {
            return Err(validation(format!(
                "1 validation error detected: Value '[{o}]' at 'operations' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [{}]]",
                GRANT_OPERATIONS.join(", ")
            )));
        }
        let fits = match o.as_str() {
            "Sign" | "Verify" | "GetPublicKey" => k.usage == "SIGN_VERIFY",
            "GenerateMac" | "VerifyMac" => k.usage == "GENERATE_VERIFY_MAC",
            "DeriveSharedSecret" => k.usage == "KEY_AGREEMENT",
            "CreateGrant" | "RetireGrant" | "DescribeKey" => true,
            _ => k.usage == "ENCRYPT_DECRYPT",
        };
        if !fits {
            return Err(validation(format!(
                "Grant operation {o} is not valid for a key with usage {}.",
                k.usage
            )));
        }
    }
    let constraints = b.get("Constraints").and_then(Value::as_object);
    let subset = context_map(
        constraints.and_then(|c| c.get("EncryptionContextSubset")),
        "EncryptionContextSubset",
    )?;
    let equals = context_map(
        constraints.and_then(|c| c.get("EncryptionContextEquals")),
        "EncryptionContextEquals",
    )?;
    if (subset.is_some() || equals.is_some()) && k.spec != "SYMMETRIC_DEFAULT" {
        return Err(validation(
            "Encryption context constraints are valid only for symmetric encryption keys.",
        ));
    }
    let name = field(b, "Name")?.unwrap_or("").to_string();
    let grant = Grant {
        id: hex::encode(crate::crypto::random_bytes(32)),
        token: crate::util::b64(&crate::crypto::random_bytes(48)),
        name,
        grantee,
        retiring,
        operations: ops,
        context_subset: subset,
        context_equals: equals,
        issuer: caller.to_string(),
        created: state.now(),
    };
    let mut store = write(&state.aws);
    let key = store.keys.get_mut(&k.slot()).ok_or_else(|| {
        e400(
            "NotFoundException",
            format!("Key '{}' does not exist", k.id),
        )
    })?;
    // A retry with the same name and settings gets the same grant.
    if !grant.name.is_empty() {
        if let Some(g) = key.grants.iter().find(|g| {
            g.name == grant.name
                && g.grantee == grant.grantee
                && g.operations == grant.operations
                && g.retiring == grant.retiring
                && g.context_subset == grant.context_subset
                && g.context_equals == grant.context_equals
        }) {
            return Ok(json!({"GrantId": g.id, "GrantToken": g.token}));
        }
    }
    if key.grants.len() >= 50_000 {
        return Err(e400(
            "LimitExceededException",
            "The key has too many grants.",
        ));
    }
    let out = json!({"GrantId": grant.id, "GrantToken": grant.token});
    key.grants.push(grant);
    drop(store);
    state.persist();
    Ok(out)
}

/// ListGrants.
pub(crate) fn list_grants(state: &State, b: &Body) -> Result<Value, AwsError> {
    let k = key_arg(state, b)?;
    let (id, grantee) = (field(b, "GrantId")?, field(b, "GranteePrincipal")?);
    let items = k
        .grants
        .iter()
        .filter(|g| id.is_none_or(|i| g.id == i) && grantee.is_none_or(|p| g.grantee == p))
        .map(|g| grant_json(&k, g))
        .collect();
    super::paginate(b, items, "Grants")
}

/// ListRetirableGrants.
pub(crate) fn list_retirable(state: &State, b: &Body) -> Result<Value, AwsError> {
    let who = required(b, "RetiringPrincipal")?;
    let store = read(&state.aws);
    let items = store
        .keys
        .values()
        .flat_map(|k| k.grants.iter().map(move |g| (k, g)))
        .filter(|(_, g)| g.retiring.as_deref() == Some(who))
        .map(|(k, g)| grant_json(k, g))
        .collect();
    drop(store);
    super::paginate(b, items, "Grants")
}

/// RetireGrant (by token, or key and grant id): the retiring principal or
/// the grantee may.
pub(crate) fn retire_grant(state: &State, b: &Body, caller: &str) -> Result<Value, AwsError> {
    let token = field(b, "GrantToken")?;
    let id = field(b, "GrantId")?;
    let key_id = match field(b, "KeyId")? {
        Some(_) => Some(key_arg(state, b)?.slot()),
        None => None,
    };
    let mut store = write(&state.aws);
    let found = store.keys.values_mut().find_map(|k| {
        if key_id.as_ref().is_some_and(|i| *i != k.slot()) {
            return None;
        }
        let at = k.grants.iter().position(|g| match (token, id) {
            (Some(t), _) => g.token == t,
            (None, Some(i)) => g.id == i,
            _ => false,
        })?;
        Some((k, at))
    });
    let Some((k, at)) = found else {
        return Err(match (token, id) {
            (Some(_), _) => e400("InvalidGrantTokenException", "Invalid grant token."),
            (None, Some(i)) => e400("NotFoundException", format!("Grant ID not found: {i}")),
            _ => validation("RetireGrant takes GrantToken, or KeyId and GrantId"),
        });
    };
    let g = &k.grants[at];
    if g.retiring.as_deref() != Some(caller) && g.grantee != caller {
        return Err(e400(
            "AccessDeniedException",
            format!(
                "User: {caller} is not authorized to perform: kms:RetireGrant on resource: {} because it is neither the grant's retiring nor its grantee principal",
                k.arn()
            ),
        ));
    }
    k.grants.remove(at);
    drop(store);
    state.persist();
    Ok(json!({}))
}

/// RevokeGrant.
pub(crate) fn revoke_grant(state: &State, b: &Body) -> Result<Value, AwsError> {
    let id = required(b, "GrantId")?.to_string();
    update_key(state, &key_arg(state, b)?.slot(), |k| {
        let before = k.grants.len();
        k.grants.retain(|g| g.id != id);
        if k.grants.len() == before {
            return Err(e400(
                "NotFoundException",
                format!("Grant ID not found: {id}"),
            ));
        }
        Ok(json!({}))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_and_principals() {
        assert!(glob("kms:*", "kms:Sign"));
        assert!(glob("KMS:get*", "kms:GetPublicKey"));
        assert!(glob("kms:?ign", "kms:Sign"));
        assert!(!glob("kms:Get*", "kms:Sign"));
        assert!(glob("*", "kms:Sign"));
        let alice = "arn:aws:iam::111122223333:user/alice";
        assert!(principal_matches("arn:aws:iam::111122223333:root", alice));
        assert!(principal_matches("111122223333", alice));
        assert!(!principal_matches("arn:aws:iam::444455556666:root", alice));
        assert!(!principal_matches(
            "arn:aws:iam::111122223333:user/bob",
            alice
        ));
        assert!(parse_policy("{").is_err());
        assert!(parse_policy(
            r#"{"Statement": [{"Effect": "Maybe", "Principal": "*", "Action": "kms:*"}]}"#
        )
        .is_err());
        assert!(parse_policy(r#"{"Statement": [{"Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "kms:*"}]}"#).is_err());
        assert!(parse_policy(
            r#"{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:*"}]}"#
        )
        .is_err());
    }
}
