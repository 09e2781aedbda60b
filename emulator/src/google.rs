//! Google's error shape, google.rpc.Status `{"error":{code,message,status}}`,
//! shared by the emulated Cloud KMS and the external key manager, and
//! Google's resource id rule.

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::faults::FaultError;
use crate::Reply;

/// An error answer: `{"error":{code,message,status}}` (google.rpc.Status,
/// also the external key manager's error shape).
#[derive(Debug)]
pub struct GcpError {
    code: StatusCode,
    status: &'static str,
    message: String,
}

impl GcpError {
    /// The error's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

pub(crate) fn gerr(code: StatusCode, status: &'static str, message: impl Into<String>) -> GcpError {
    GcpError {
        code,
        status,
        message: message.into(),
    }
}

pub(crate) fn invalid(msg: impl Into<String>) -> GcpError {
    gerr(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", msg)
}

pub(crate) fn already_exists(what: &str) -> GcpError {
    gerr(
        StatusCode::CONFLICT,
        "ALREADY_EXISTS",
        format!("{what} already exists."),
    )
}

pub(crate) fn not_found(what: &str) -> GcpError {
    gerr(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("{what} not found."),
    )
}

pub(crate) fn precondition(msg: impl Into<String>) -> GcpError {
    gerr(StatusCode::BAD_REQUEST, "FAILED_PRECONDITION", msg)
}

pub(crate) fn reply(result: Result<Value, GcpError>) -> Reply {
    match result {
        Ok(v) => Reply::Send(crate::json_response(StatusCode::OK, &v)),
        Err(e) => Reply::Send(crate::json_response(
            e.code,
            &json!({"error": {"code": e.code.as_u16(), "message": e.message, "status": e.status}}),
        )),
    }
}

pub(crate) fn fault_error(e: FaultError) -> GcpError {
    match e {
        FaultError::Throttle => gerr(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Cryptographic requests'.",
        ),
        FaultError::Unavailable => gerr(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is currently unavailable.",
        ),
        FaultError::Internal => gerr(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "Internal error encountered.",
        ),
    }
}

/// Whether `id` is a Cloud KMS resource id: `[a-zA-Z0-9_-]{1,63}`.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
