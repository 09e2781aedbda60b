//! Why the authority refused, or could not do, what was asked: a kind that
//! each front end maps to its own answer (an HTTP status and code, an exit
//! status), a message safe to show the requester, and the cause for the
//! operator.

use sshca::signer::{Error, ErrorKind};

/// What kind of refusal: one answer of a front end each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalKind {
    /// No such policy, CA or certificate (404).
    NotFound,
    /// The identity may not do this (403).
    Forbidden,
    /// What the requester sent is malformed (400).
    InvalidInput,
    /// The policy refuses the request (422).
    PolicyRefused,
    /// A CA key revocation names a key that is not one of the CA's (422).
    NotACaKey,
    /// The CA's backend throttles (503).
    BackendThrottled,
    /// The CA's backend cannot sign now (503).
    BackendUnavailable,
    /// The CA's backend did not sign in time (503).
    BackendTimeout,
    /// The store cannot be read or written (503).
    StoreUnavailable,
    /// A KRL cannot be built now (503).
    KrlUnavailable,
    /// A renewal proof that does not verify, or is malformed (401).
    RenewProofInvalid,
    /// A renewal proof used before (401).
    RenewProofReplayed,
    /// A renewal proof whose time is too far from now (401).
    RenewProofStale,
    /// The certificate's policy or identity no longer allows renewal (403).
    RenewNotAllowed,
    /// The certificate expired, or its chain of renewals ended (403).
    RenewalExpired,
    /// The certificate is revoked (403).
    CertificateRevoked,
    /// No CA of this service issued the certificate, or the store has no
    /// record of it (404).
    CertificateUnknown,
    /// A policy's webhook denied the request, or failed under
    /// `on_error = "deny"` (403).
    WebhookDenied,
    /// The policy needs approval, which this front end cannot wait for
    /// (403).
    ApprovalRequired,
    /// The approval request was not approved in time (410).
    ApprovalExpired,
    /// The approval request was already decided (409).
    ApprovalDecided,
    /// sshca's own failure (500).
    Internal,
}

impl RefusalKind {
    /// The code the HTTP API answers with (`policy_refused`, ...).
    pub fn code(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Forbidden => "forbidden",
            Self::InvalidInput => "bad_request",
            Self::PolicyRefused => "policy_refused",
            Self::NotACaKey => "not_a_ca_key",
            Self::BackendThrottled => "backend_throttled",
            Self::BackendUnavailable => "backend_unavailable",
            Self::BackendTimeout => "backend_timeout",
            Self::StoreUnavailable => "store_unavailable",
            Self::KrlUnavailable => "krl_unavailable",
            Self::RenewProofInvalid => "renew_proof_invalid",
            Self::RenewProofReplayed => "renew_proof_replayed",
            Self::RenewProofStale => "renew_proof_stale",
            Self::RenewNotAllowed => "renew_not_allowed",
            Self::RenewalExpired => "renewal_expired",
            Self::CertificateRevoked => "certificate_revoked",
            Self::CertificateUnknown => "certificate_unknown",
            Self::WebhookDenied => "webhook_denied",
            Self::ApprovalRequired => "approval_required",
            Self::ApprovalExpired => "approval_expired",
            Self::ApprovalDecided => "approval_decided",
            Self::Internal => "internal",
        }
    }
}

/// A refusal: its kind, a message for the requester (never a backend's or
/// store's error text), a retry hint, and the cause.
#[derive(Debug)]
pub struct Refusal {
    /// The kind.
    pub kind: RefusalKind,
    /// What the requester is told.
    pub message: String,
    /// Seconds after which trying again may succeed.
    pub retry_after: Option<u64>,
    /// The underlying error, for the operator's log and the command line.
    pub source: Option<Error>,
}

impl Refusal {
    /// A refusal of `kind` with `message`.
    pub fn new(kind: RefusalKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retry_after: None,
            source: None,
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(RefusalKind::NotFound, message)
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(RefusalKind::Forbidden, message)
    }

    /// 400.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(RefusalKind::InvalidInput, message)
    }

    /// The store failed: logged with its cause, the requester told only
    /// that the store is unavailable.
    pub fn store(message: impl Into<String>, cause: Error) -> Self {
        tracing::warn!(error = %cause.report(), "store failed");
        Self::new(RefusalKind::StoreUnavailable, message)
            .retry(5)
            .caused_by(cause)
    }

    /// With a retry hint (at least one second).
    pub fn retry(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// With its cause.
    pub fn caused_by(mut self, cause: Error) -> Self {
        self.source = Some(cause);
        self
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// For the command line: the cause itself when there is one (its whole
/// text), else an error of the matching kind.
impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        if let Some(e) = r.source {
            return e;
        }
        let kind = match r.kind {
            RefusalKind::NotFound | RefusalKind::CertificateUnknown => ErrorKind::NotFound,
            RefusalKind::Forbidden
            | RefusalKind::WebhookDenied
            | RefusalKind::ApprovalRequired
            | RefusalKind::ApprovalExpired
            | RefusalKind::ApprovalDecided
            | RefusalKind::RenewNotAllowed
            | RefusalKind::RenewalExpired
            | RefusalKind::CertificateRevoked => ErrorKind::PermissionDenied,
            RefusalKind::RenewProofInvalid
            | RefusalKind::RenewProofReplayed
            | RefusalKind::RenewProofStale => ErrorKind::Unauthenticated,
            RefusalKind::InvalidInput | RefusalKind::NotACaKey => ErrorKind::InvalidInput,
            RefusalKind::PolicyRefused => ErrorKind::Policy,
            RefusalKind::BackendThrottled => ErrorKind::Throttled,
            RefusalKind::BackendUnavailable
            | RefusalKind::BackendTimeout
            | RefusalKind::StoreUnavailable
            | RefusalKind::KrlUnavailable => ErrorKind::Unavailable,
            RefusalKind::Internal => ErrorKind::Internal,
        };
        Error::new(kind, r.message)
    }
}
