//! The JSON error answer: `{"error":{"code":"...","message":"..."}}`, or
//! Vault's `{"errors":["..."]}` on the Vault-compatible paths.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sshca_authority::{Refusal, RefusalKind};

/// A request that ends in an error answer.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
    /// Answer in Vault's error shape.
    pub vault: bool,
}

/// How a request ended, left on its response for the request context
/// (its log line, metrics and audit row).
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// `ok`, or the error code.
    pub code: &'static str,
    /// Why, for a refusal.
    pub reason: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            vault: false,
        }
    }

    /// The same error in Vault's shape.
    pub fn in_vault_shape(mut self) -> Self {
        self.vault = true;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message).retry(1)
    }

    pub fn retry(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }
}

/// The authority's refusals as HTTP answers.
impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let status = match r.kind {
            RefusalKind::NotFound | RefusalKind::CertificateUnknown => StatusCode::NOT_FOUND,
            RefusalKind::Forbidden
            | RefusalKind::WebhookDenied
            | RefusalKind::ApprovalRequired
            | RefusalKind::RenewNotAllowed
            | RefusalKind::RenewalExpired
            | RefusalKind::CertificateRevoked => StatusCode::FORBIDDEN,
            RefusalKind::RenewProofInvalid
            | RefusalKind::RenewProofReplayed
            | RefusalKind::RenewProofStale => StatusCode::UNAUTHORIZED,
            RefusalKind::InvalidInput => StatusCode::BAD_REQUEST,
            RefusalKind::ApprovalExpired => StatusCode::GONE,
            RefusalKind::ApprovalDecided => StatusCode::CONFLICT,
            RefusalKind::PolicyRefused | RefusalKind::NotACaKey => StatusCode::UNPROCESSABLE_ENTITY,
            RefusalKind::BackendThrottled
            | RefusalKind::BackendUnavailable
            | RefusalKind::BackendTimeout
            | RefusalKind::StoreUnavailable
            | RefusalKind::KrlUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut e = Self::new(status, r.kind.code(), r.message);
        e.retry_after = r.retry_after;
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.vault {
            serde_json::json!({ "errors": [self.message] })
        } else {
            serde_json::json!({"error": {"code": self.code, "message": self.message}})
        };
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r.extensions_mut().insert(Outcome {
            code: self.code,
            reason: self.message,
        });
        r
    }
}
