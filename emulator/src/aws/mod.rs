//! AWS KMS, JSON 1.1 protocol (`X-Amz-Target: TrentService.<Op>`), with
//! SigV4 verified against the configured credentials.

mod crypto_ops;
pub mod model;
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
    let (kind, _) = spec_kind(spec).ok_or_else(|| format!("KeySpec {spec} is not supported"))?;
    check_usage(spec, usage)?;
    let material = crypto::Material::generate(kind).map_err(|e| e.to_string())?;
    let key = AwsKey {
        id: crypto::uuid(),
        region: region.to_string(),
        spec: spec.to_string(),
        usage: usage.to_string(),
        state: AwsKeyState::Enabled,
        created: state.now(),
        deletion_date: None,
        description: description.to_string(),
        material: Arc::new(material),
    };
    write(&state.aws).keys.insert(key.id.clone(), key.clone());
    state.persist();
    Ok(key)
}

fn paginate(b: &Body, items: Vec<Value>, field_name: &str) -> Result<Value, AwsError> {
    let limit = b
        .get("Limit")
        .and_then(Value::as_u64)
        .unwrap_or(100)
        .clamp(1, 1000) as usize;
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
    let k = key_arg(state, b)?;
    let mut store = write(&state.aws);
    let key = store.keys.get_mut(&k.id).ok_or_else(|| {
        e400(
            "NotFoundException",
            format!("Key '{}' does not exist", k.id),
        )
    })?;
    let out = match to {
        Some(AwsKeyState::PendingDeletion) => {
            if key.state == AwsKeyState::PendingDeletion {
                return Err(e400(
                    "KMSInvalidStateException",
                    format!("{} is pending deletion.", key.arn()),
                ));
            }
            let days = window.unwrap_or(30);
            key.state = AwsKeyState::PendingDeletion;
            key.deletion_date = Some(state.now() + days * 86_400);
            json!({"KeyId": key.arn(), "DeletionDate": key.deletion_date, "KeyState": "PendingDeletion", "PendingWindowInDays": days})
        }
        Some(s) => {
            if key.state == AwsKeyState::PendingDeletion {
                return Err(e400(
                    "KMSInvalidStateException",
                    format!("{} is pending deletion.", key.arn()),
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
            key.state = AwsKeyState::Disabled;
            key.deletion_date = None;
            json!({"KeyId": key.arn()})
        }
    };
    drop(store);
    state.persist();
    Ok(out)
}

fn operation(
    state: &State,
    op: &str,
    b: &Body,
    region: &str,
    corrupt: bool,
) -> Result<Value, AwsError> {
    match op {
        "CreateKey" => {
            let spec = field(b, "KeySpec")?
                .or(field(b, "CustomerMasterKeySpec")?)
                .unwrap_or("SYMMETRIC_DEFAULT");
            let usage = field(b, "KeyUsage")?.unwrap_or("ENCRYPT_DECRYPT");
            let desc = field(b, "Description")?.unwrap_or("");
            let key = create_key(state, spec, usage, desc, region).map_err(validation)?;
            Ok(json!({"KeyMetadata": metadata(&key)}))
        }
        "DescribeKey" => Ok(json!({"KeyMetadata": metadata(&key_arg(state, b)?)})),
        "GetPublicKey" => {
            let k = key_arg(state, b)?;
            usable(&k)?;
            if k.spec == "SYMMETRIC_DEFAULT" {
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
            if k.usage == "SIGN_VERIFY" {
                out["SigningAlgorithms"] = json!(signing_algorithms(&k.spec));
            } else {
                out["EncryptionAlgorithms"] = json!(encryption_algorithms(&k.spec));
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
        "CreateAlias" => {
            let name = required(b, "AliasName")?;
            if !name.starts_with("alias/") || name.len() <= 6 || name.starts_with("alias/aws/") {
                return Err(validation(format!(
                    "Alias name {name:?} must begin with alias/ and must not begin with alias/aws/"
                )));
            }
            let target = required(b, "TargetKeyId")?;
            if target.starts_with("alias/") || target.contains(":alias/") {
                return Err(validation(
                    "TargetKeyId must be a key id or key ARN, not an alias",
                ));
            }
            let k = resolve(state, target)?;
            let mut store = write(&state.aws);
            if store.aliases.contains_key(name) {
                return Err(e400(
                    "AlreadyExistsException",
                    format!("An alias with the name {name} already exists"),
                ));
            }
            store.aliases.insert(name.to_string(), k.id);
            drop(store);
            state.persist();
            Ok(json!({}))
        }
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
                    "PendingWindowInDays {days} is not between 7 and 30"
                )));
            }
            set_state(state, b, Some(AwsKeyState::PendingDeletion), Some(days))
        }
        "CancelKeyDeletion" => set_state(state, b, None, None),
        "Encrypt" => encrypt(state, b),
        "Decrypt" => decrypt(state, b),
        "GenerateDataKey" => generate_data_key(state, b),
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
pub(crate) const OPERATIONS: [&str; 15] = [
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
    dispatch(state, op, &req.body, &verified.region, corrupt)
}

/// Deletes the keys whose pending deletion ended on the emulated clock,
/// with their aliases.
fn sweep(state: &State) {
    let t = state.now();
    let due = |k: &AwsKey| {
        k.state == AwsKeyState::PendingDeletion && k.deletion_date.is_some_and(|d| d <= t)
    };
    if !read(&state.aws).keys.values().any(due) {
        return;
    }
    {
        let mut guard = write(&state.aws);
        let store = &mut *guard;
        store.keys.retain(|_, k| !due(k));
        let keys = &store.keys;
        store.aliases.retain(|_, id| keys.contains_key(id));
    }
    state.persist();
}

/// Runs one operation on an already authenticated request body.
pub(crate) fn dispatch(state: &State, op: &str, body: &[u8], region: &str, corrupt: bool) -> Reply {
    sweep(state);
    let body = match json_object(body) {
        Ok(b) => b,
        Err(e) => return respond(Err(e400("SerializationException", e))),
    };
    respond(operation(state, op, &body, region, corrupt))
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
        dispatch(state, op, &req.body, "us-east-1", false)
    }

    #[cfg(feature = "fuzzing")]
    fn check_error(status: u16, body: &Value) -> Result<(), String> {
        if body["__type"].as_str().is_none() || body["message"].as_str().is_none() {
            return Err(format!("error {status} without __type and message: {body}"));
        }
        Ok(())
    }
}
