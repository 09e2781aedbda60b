//! AWS KMS, JSON 1.1 protocol (`X-Amz-Target: TrentService.<Op>`), with
//! SigV4 verified against the configured credentials.

mod access;
mod crypto_ops;
mod data_ops;
mod import;
mod manage;
pub mod model;
mod multi_region;
pub use model::MAX_RAW_MESSAGE;
pub(crate) mod seed;
pub(crate) mod sigv4;
pub mod store;

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::aws::crypto_ops::*;
use crate::aws::model::*;
use crate::aws::store::{AwsKey, AwsKeyState, AWS_ACCOUNT};
use crate::crypto::{self};
use crate::faults::FaultError;
use crate::state::{read, write, State};
use crate::util::{b64, json_object};
use crate::{Reply, Request};

fn respond(result: Result<Value, AwsError>) -> Reply {
    let (status, body) = match result {
        Ok(v) => (StatusCode::OK, v),
        Err(e) => (e.status, json!({"__type": e.typ, "message": e.msg})),
    };
    let mut r = crate::json_response(status, &body);
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(&crypto::uuid()) {
        h.insert("x-amzn-requestid", v);
    }
    Reply::Send(r)
}

/// Creates a key.
pub fn create_key(
    state: &State,
    spec: &str,
    usage: &str,
    description: &str,
    region: &str,
) -> Result<AwsKey, String> {
    let mut key = new_key(state, spec, usage, region)?;
    key.description = description.to_string();
    write(&state.aws).keys.insert(key.slot(), key.clone());
    state.persist();
    Ok(key)
}

/// A new key of `spec` and `usage` (checked as AWS checks them), not yet
/// stored.
fn new_key(state: &State, spec: &str, usage: &str, region: &str) -> Result<AwsKey, String> {
    let (kind, _) = spec_kind(spec).ok_or_else(|| {
        if KEY_SPECS.contains(&spec) {
            format!("KeySpec {spec} is not emulated")
        } else {
            not_in_enum(spec, "keySpec", KEY_SPECS)
        }
    })?;
    if !KEY_USAGES.contains(&usage) {
        return Err(not_in_enum(usage, "keyUsage", KEY_USAGES));
    }
    check_usage(spec, usage)?;
    let material = crypto::Material::generate(kind).map_err(|e| e.to_string())?;
    Ok(AwsKey::new(
        crypto::uuid(),
        region.to_string(),
        spec.to_string(),
        usage.to_string(),
        state.now(),
        Arc::new(material),
    ))
}

fn paginate(b: &Body, items: Vec<Value>, field_name: &str) -> Result<Value, AwsError> {
    let limit = match b.get("Limit") {
        None | Some(Value::Null) => 100,
        Some(v) => match v.as_u64() {
            Some(n @ 1..=1000) => n as usize,
            _ => {
                return Err(validation(format!(
                    "1 validation error detected: Value '{v}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 1000"
                )))
            }
        },
    };
    let start = match field(b, "Marker")? {
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| e400("InvalidMarkerException", "Marker is invalid"))?,
        None => 0,
    };
    let end = (start + limit).min(items.len());
    let page: Vec<Value> = items
        .get(start..end)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    let mut out = json!({field_name: page, "Truncated": end < items.len()});
    if end < items.len() {
        out["NextMarker"] = json!(end.to_string());
    }
    Ok(out)
}

fn set_state(
    state: &State,
    b: &Body,
    to: Option<AwsKeyState>,
    window: Option<u64>,
) -> Result<Value, AwsError> {
    let now = state.now();
    update_key(state, &key_arg(state, b)?.slot(), |key| {
        Ok(match to {
            Some(AwsKeyState::PendingDeletion) => {
                if key.state == AwsKeyState::PendingDeletion {
                    return Err(e400(
                        "KMSInvalidStateException",
                        format!("{} is pending deletion.", key.arn()),
                    ));
                }
                let days = window.unwrap_or(30);
                key.state = AwsKeyState::PendingDeletion;
                key.deletion_date = Some(now + days * 86_400);
                json!({"KeyId": key.arn(), "DeletionDate": key.deletion_date, "KeyState": "PendingDeletion", "PendingWindowInDays": days})
            }
            Some(s) => {
                if matches!(
                    key.state,
                    AwsKeyState::PendingDeletion | AwsKeyState::PendingImport
                ) {
                    return Err(e400(
                        "KMSInvalidStateException",
                        format!("{} is {:?}.", key.arn(), key.state),
                    ));
                }
                key.state = s;
                json!({})
            }
            None => {
                // CancelKeyDeletion
                if key.state != AwsKeyState::PendingDeletion {
                    return Err(e400(
                        "KMSInvalidStateException",
                        format!("{} is not pending deletion.", key.arn()),
                    ));
                }
                key.state = if key.origin == "EXTERNAL" && !key.imported {
                    AwsKeyState::PendingImport
                } else {
                    AwsKeyState::Disabled
                };
                key.deletion_date = None;
                json!({"KeyId": key.arn()})
            }
        })
    })
}

fn operation(
    state: &State,
    op: &str,
    b: &Body,
    region: &str,
    caller: &str,
    corrupt: bool,
) -> Result<Value, AwsError> {
    match op {
        "CreateKey" => {
            let spec = field(b, "KeySpec")?
                .or(field(b, "CustomerMasterKeySpec")?)
                .unwrap_or("SYMMETRIC_DEFAULT");
            let usage = field(b, "KeyUsage")?.unwrap_or("ENCRYPT_DECRYPT");
            let desc = field(b, "Description")?.unwrap_or("");
            manage::check_description(desc)?;
            let tags = manage::tags_arg(b)?;
            manage::check_tags(&tags)?;
            let policy = field(b, "Policy")?;
            if let Some(p) = policy {
                access::check_new_policy(p, caller, b)?;
            }
            let external = match field(b, "Origin")?.unwrap_or("AWS_KMS") {
                "AWS_KMS" => false,
                "EXTERNAL" => true,
                o @ ("AWS_CLOUDHSM" | "EXTERNAL_KEY_STORE") => {
                    return Err(e400(
                        "UnsupportedOperationException",
                        format!("Origin {o} (custom key stores) is not emulated."),
                    ))
                }
                o => {
                    return Err(validation(not_in_enum(
                        o,
                        "origin",
                        &["AWS_CLOUDHSM", "EXTERNAL", "EXTERNAL_KEY_STORE", "AWS_KMS"],
                    )))
                }
            };
            let mut key = new_key(state, spec, usage, region).map_err(validation)?;
            key.description = desc.to_string();
            key.tags = tags;
            key.policy = policy.map(str::to_string);
            if b.get("MultiRegion").and_then(Value::as_bool) == Some(true) {
                key.id = multi_region::new_id();
                key.multi_region = true;
            }
            if external {
                key.origin = "EXTERNAL".into();
                key.state = AwsKeyState::PendingImport;
            }
            write(&state.aws).keys.insert(key.slot(), key.clone());
            state.persist();
            Ok(json!({"KeyMetadata": multi_region::describe(state, &key)}))
        }
        "DescribeKey" => {
            Ok(json!({"KeyMetadata": multi_region::describe(state, &key_arg(state, b)?)}))
        }
        "GetPublicKey" => {
            let k = key_arg(state, b)?;
            usable(&k)?;
            if k.spec == "SYMMETRIC_DEFAULT" || k.spec.starts_with("HMAC_") {
                return Err(e400(
                    "UnsupportedOperationException",
                    format!("{} is a symmetric key and has no public key.", k.arn()),
                ));
            }
            let der = k
                .material
                .public_der()
                .map_err(|e| e400("KMSInternalException", e.to_string()))?;
            let mut out = json!({
                "KeyId": k.arn(), "PublicKey": b64(&der), "KeySpec": k.spec,
                "CustomerMasterKeySpec": k.spec, "KeyUsage": k.usage,
            });
            match k.usage.as_str() {
                "SIGN_VERIFY" => out["SigningAlgorithms"] = json!(signing_algorithms(&k.spec)),
                "KEY_AGREEMENT" => out["KeyAgreementAlgorithms"] = json!(["ECDH"]),
                _ => out["EncryptionAlgorithms"] = json!(encryption_algorithms(&k.spec)),
            }
            Ok(out)
        }
        "ListKeys" => {
            let items = read(&state.aws)
                .keys
                .values()
                .map(|k| json!({"KeyId": k.id, "KeyArn": k.arn()}))
                .collect();
            paginate(b, items, "Keys")
        }
        "CreateAlias" => manage::create_alias(state, b),
        "UpdateAlias" => manage::update_alias(state, b),
        "DeleteAlias" => manage::delete_alias(state, b),
        "ListAliases" => {
            let only = match field(b, "KeyId")? {
                Some(id) => Some(resolve(state, id)?.id),
                None => None,
            };
            let store = read(&state.aws);
            let items = store
                .aliases
                .iter()
                .filter(|(_, id)| only.as_ref().is_none_or(|o| o == *id))
                .map(|(a, id)| {
                    let region = store.keys.get(id).map_or("us-east-1", |k| k.region.as_str());
                    json!({"AliasName": a, "AliasArn": format!("arn:aws:kms:{region}:{AWS_ACCOUNT}:{a}"), "TargetKeyId": id})
                })
                .collect();
            drop(store);
            paginate(b, items, "Aliases")
        }
        "Sign" => sign(state, b, corrupt),
        "Verify" => verify(state, b),
        "EnableKey" => set_state(state, b, Some(AwsKeyState::Enabled), None),
        "DisableKey" => set_state(state, b, Some(AwsKeyState::Disabled), None),
        "ScheduleKeyDeletion" => {
            let days = b
                .get("PendingWindowInDays")
                .and_then(Value::as_u64)
                .unwrap_or(30);
            if !(7..=30).contains(&days) {
                return Err(validation(format!(
                    "1 validation error detected: Value '{days}' at 'pendingWindowInDays' failed to satisfy constraint: Member must have value between 7 and 30"
                )));
            }
            set_state(state, b, Some(AwsKeyState::PendingDeletion), Some(days))
        }
        "CancelKeyDeletion" => set_state(state, b, None, None),
        "Encrypt" => encrypt(state, b),
        "Decrypt" => decrypt(state, b),
        "GenerateDataKey" => generate_data_key(state, b),
        "GenerateDataKeyWithoutPlaintext" => data_ops::data_key_without_plaintext(state, b),
        "GenerateDataKeyPair" => data_ops::data_key_pair(state, b, false),
        "GenerateDataKeyPairWithoutPlaintext" => data_ops::data_key_pair(state, b, true),
        "GenerateRandom" => data_ops::generate_random(b),
        "GenerateMac" => generate_mac(state, b),
        "DeriveSharedSecret" => derive_shared_secret(state, b),
        "ReplicateKey" => multi_region::replicate(state, b),
        "UpdatePrimaryRegion" => multi_region::update_primary(state, b),
        "GetParametersForImport" => import::parameters(state, b),
        "ImportKeyMaterial" => import::import(state, b),
        "DeleteImportedKeyMaterial" => import::delete(state, b),
        "VerifyMac" => verify_mac(state, b),
        "ReEncrypt" => data_ops::re_encrypt(state, b),
        "TagResource" => manage::tag(state, b),
        "UntagResource" => manage::untag(state, b),
        "ListResourceTags" => manage::list_tags(state, b),
        "UpdateKeyDescription" => manage::describe(state, b),
        "EnableKeyRotation" => manage::enable_rotation(state, b),
        "DisableKeyRotation" => manage::disable_rotation(state, b),
        "GetKeyRotationStatus" => manage::rotation_status(state, b),
        "RotateKeyOnDemand" => manage::rotate_on_demand(state, b),
        "ListKeyRotations" => manage::list_rotations(state, b),
        "GetKeyPolicy" => access::get_policy(state, b),
        "PutKeyPolicy" => access::put_policy(state, b, caller),
        "ListKeyPolicies" => access::list_policies(state, b),
        "CreateGrant" => access::create_grant(state, b, caller),
        "ListGrants" => access::list_grants(state, b),
        "ListRetirableGrants" => access::list_retirable(state, b),
        "RetireGrant" => access::retire_grant(state, b, caller),
        "RevokeGrant" => access::revoke_grant(state, b),
        other => Err(e400(
            "UnknownOperationException",
            format!("operation {other} is not supported"),
        )),
    }
}

fn fault_error(e: FaultError) -> AwsError {
    match e {
        FaultError::Throttle => e400("ThrottlingException", "Rate exceeded"),
        FaultError::Unavailable => AwsError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            typ: "DependencyTimeoutException",
            msg: "The service is temporarily unavailable.".into(),
        },
        FaultError::Internal => AwsError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            typ: "KMSInternalException",
            msg: "An internal error occurred.".into(),
        },
    }
}

/// The operations the emulated AWS KMS serves.
pub(crate) const OPERATIONS: [&str; 47] = [
    "DeriveSharedSecret",
    "ReplicateKey",
    "UpdatePrimaryRegion",
    "GetParametersForImport",
    "ImportKeyMaterial",
    "DeleteImportedKeyMaterial",
    "GenerateMac",
    "VerifyMac",
    "UpdateAlias",
    "DeleteAlias",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateRandom",
    "ReEncrypt",
    "TagResource",
    "UntagResource",
    "ListResourceTags",
    "UpdateKeyDescription",
    "EnableKeyRotation",
    "DisableKeyRotation",
    "GetKeyRotationStatus",
    "RotateKeyOnDemand",
    "ListKeyRotations",
    "GetKeyPolicy",
    "PutKeyPolicy",
    "ListKeyPolicies",
    "CreateGrant",
    "ListGrants",
    "ListRetirableGrants",
    "RetireGrant",
    "RevokeGrant",
    "CreateKey",
    "DescribeKey",
    "GetPublicKey",
    "ListKeys",
    "CreateAlias",
    "ListAliases",
    "Sign",
    "Verify",
    "EnableKey",
    "DisableKey",
    "ScheduleKeyDeletion",
    "CancelKeyDeletion",
    "Encrypt",
    "Decrypt",
    "GenerateDataKey",
];

/// Handles one AWS KMS request.
pub(crate) async fn handle(state: &Arc<State>, req: Request) -> Reply {
    if req.method != hyper::Method::POST || req.path != "/" {
        return respond(Err(e400(
            "UnknownOperationException",
            "AWS KMS takes POST / only",
        )));
    }
    let Some(op) = req
        .header("x-amz-target")
        .and_then(|t| t.strip_prefix("TrentService."))
    else {
        return respond(Err(e400(
            "UnknownOperationException",
            "missing or malformed X-Amz-Target header (TrentService.<Operation>)",
        )));
    };
    // Refused before anything is counted: counters hold real operations only.
    let Some(op) = OPERATIONS.iter().copied().find(|o| *o == op) else {
        return respond(Err(e400(
            "UnknownOperationException",
            format!("unknown operation {}", op.escape_debug()),
        )));
    };
    if req.too_large {
        return respond(Err(AwsError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            typ: "ValidationException",
            msg: format!("request body exceeds {} bytes", crate::MAX_BODY),
        }));
    }
    let verified = match sigv4::verify(&req, &state.config.aws_credentials) {
        Ok(v) => v,
        Err(sigv4::SigError::Missing(m)) => {
            return respond(Err(AwsError {
                status: StatusCode::BAD_REQUEST,
                typ: "MissingAuthenticationTokenException",
                msg: m,
            }))
        }
        Err(sigv4::SigError::UnknownKey(m)) => {
            return respond(Err(e400("UnrecognizedClientException", m)))
        }
        Err(sigv4::SigError::Mismatch(m)) => {
            return respond(Err(e400("InvalidSignatureException", m)))
        }
        Err(sigv4::SigError::Incomplete(m)) => {
            return respond(Err(e400("IncompleteSignatureException", m)))
        }
    };
    let corrupt = match crate::inject_faults(state, crate::Service::Aws, op, None, |e| {
        respond(Err(fault_error(e)))
    })
    .await
    {
        Ok(c) => c,
        Err(r) => return r,
    };
    let caller = state
        .config
        .aws_principals
        .iter()
        .find(|(a, _)| *a == verified.access_key)
        .map_or_else(access::account_root, |(_, arn)| arn.clone());
    dispatch(state, op, &req.body, &verified.region, &caller, corrupt)
}

/// What the emulated clock made due: deletes the keys whose pending
/// deletion ended (with their aliases), rotates the keys whose automatic
/// rotation came (and their replicas), and drops imported key material
/// past its ValidTo; one pass, one state file write.
fn sweep(state: &State) {
    let t = state.now();
    let deleted = |k: &AwsKey| {
        k.state == AwsKeyState::PendingDeletion && k.deletion_date.is_some_and(|d| d <= t)
    };
    let due =
        |k: &AwsKey| deleted(k) || manage::rotation_due(k, t) || import::material_expired(k, t);
    if !read(&state.aws).keys.values().any(due) {
        return;
    }
    let mut rotated = Vec::new();
    {
        let mut guard = write(&state.aws);
        let store = &mut *guard;
        store.keys.retain(|_, k| !deleted(k));
        let keys = &store.keys;
        store.aliases.retain(|_, id| keys.contains_key(id));
        for k in store.keys.values_mut() {
            if manage::rotation_due(k, t) {
                manage::rotate_due(k, t);
                rotated.push(k.id.clone());
            }
            if import::material_expired(k, t) {
                import::forget_material(k);
            }
        }
    }
    for id in rotated {
        multi_region::sync_material(state, &id);
    }
    state.persist();
}

/// Runs one operation on an already authenticated request body.
pub(crate) fn dispatch(
    state: &State,
    op: &str,
    body: &[u8],
    region: &str,
    caller: &str,
    corrupt: bool,
) -> Reply {
    set_region(region);
    sweep(state);
    let body = match json_object(body) {
        Ok(b) => b,
        Err(e) => return respond(Err(e400("SerializationException", e))),
    };
    let checked =
        access::check_grant_tokens(state, &body).and_then(|()| authorize(state, op, &body, caller));
    if let Err(e) = checked {
        return respond(Err(e));
    }
    respond(operation(state, op, &body, region, caller, corrupt))
}

/// The key a request names (`field_name`, or the key that made the
/// `CiphertextBlob`) when it has a policy of its own; keys without one
/// allow everything and are not copied.
fn governed_key(state: &State, b: &Body, field_name: &str) -> Option<AwsKey> {
    let id = match field(b, field_name) {
        Ok(Some(id)) => id.to_string(),
        _ => {
            let ct =
                crate::util::unb64("CiphertextBlob", field(b, "CiphertextBlob").ok()??).ok()?;
            crypto_ops::blob_key_id(&ct)?
        }
    };
    resolve_with(state, &id, |k| k.policy.is_some().then(|| k.clone()))
        .ok()
        .flatten()
}

/// Refuses an operation the key policy and grants do not allow the caller
/// (keys without a policy of their own allow everything).
fn authorize(state: &State, op: &str, b: &Body, caller: &str) -> Result<(), AwsError> {
    let checks: Vec<(Option<AwsKey>, &str)> = match op {
        "CreateKey" | "ListKeys" | "GenerateRandom" | "ListRetirableGrants" | "RetireGrant" => {
            Vec::new()
        }
        "CreateAlias" | "UpdateAlias" => vec![(governed_key(state, b, "TargetKeyId"), op)],
        "DeleteAlias" => vec![(governed_key(state, b, "AliasName"), op)],
        "ReEncrypt" => vec![
            (governed_key(state, b, "SourceKeyId"), "ReEncryptFrom"),
            (governed_key(state, b, "DestinationKeyId"), "ReEncryptTo"),
        ],
        _ => vec![(governed_key(state, b, "KeyId"), op)],
    };
    for (k, action) in checks {
        if let Some(k) = k {
            access::authorize(&k, caller, action, b)?;
        }
    }
    Ok(())
}

/// AWS KMS: JSON 1.1 over plain HTTP with SigV4.
#[derive(Debug)]
pub struct Aws;

impl crate::service::Emulated for Aws {
    const NAME: &'static str = "aws";
    const SEED_KEYS: &'static [&'static str] = &["aws"];
    type Seed = store::AwsSections;

    fn load_seed(state: &State, seed: Self::Seed) -> Result<(), String> {
        seed::load_seed(state, seed.aws)
    }

    fn export_seed(state: &State) -> Result<Self::Seed, String> {
        Ok(store::AwsSections {
            aws: seed::export_seed(state)?,
        })
    }

    fn resolve_files(seed: &mut Self::Seed, base: &std::path::Path) -> Result<(), String> {
        for k in &mut seed.aws {
            crate::seed::read_file(base, &mut k.private_key_file, &mut k.private_key)?;
        }
        Ok(())
    }

    async fn handle(state: &Arc<State>, req: Request, _replica: usize) -> Reply {
        handle(state, req).await
    }

    /// The SigV4 verifier sees the request as sent; the operation then
    /// runs as if it had been signed, so the fuzzer reaches the JSON
    /// parsing of every operation.
    #[cfg(feature = "fuzzing")]
    async fn fuzz(state: &Arc<State>, req: Request) -> Reply {
        let _ = sigv4::verify(&req, &[("test".into(), "test".into())]);
        let Some(op) = req
            .header("x-amz-target")
            .and_then(|t| t.strip_prefix("TrentService."))
        else {
            return handle(state, req).await;
        };
        dispatch(
            state,
            op,
            &req.body,
            "us-east-1",
            &access::account_root(),
            false,
        )
    }

    #[cfg(feature = "fuzzing")]
    fn check_error(status: u16, body: &Value) -> Result<(), String> {
        if body["__type"].as_str().is_none() || body["message"].as_str().is_none() {
            return Err(format!("error {status} without __type and message: {body}"));
        }
        Ok(())
    }
}
