//! Sign requests waiting for approval, as the store keeps them: shared by
//! every replica over the same store, each change a compare-and-set on
//! the record's `version`.

use serde::{Deserialize, Serialize};

/// One approval given: who (qualified identity) and when (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    /// The approver, source first (`oidc:corp:bob@example.com`).
    pub by: String,
    /// When.
    pub at: u64,
}

/// A sign request under a policy that needs approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// Its id (the `request_id` its requester polls).
    pub id: String,
    /// The policy asked for.
    pub policy: String,
    /// The requester's name.
    pub requester: String,
    /// The requester's source (`token`, `oidc:NAME`, ...).
    pub requester_source: String,
    /// The request as the authority wrote it (JSON): what is signed once
    /// it is approved.
    pub request: String,
    /// When it was asked (unix seconds).
    pub created_at: u64,
    /// When it stops being open to approval (unix seconds).
    pub expires_at: u64,
    /// `pending`, `issuing` (approved, being signed), `approved` or
    /// `denied`.
    pub state: String,
    /// The approvals given so far (distinct approvers).
    pub votes: Vec<Vote>,
    /// Who denied it, or whose approval completed it.
    pub decided_by: Option<String>,
    /// When it was decided.
    pub decided_at: Option<u64>,
    /// The denial's reason.
    pub reason: Option<String>,
    /// The certificate's serial, once issued.
    pub serial: Option<u64>,
    /// The certificate (OpenSSH line), once issued.
    pub certificate: Option<String>,
    /// Bumped by every change ([`crate::Store::update_approval`]).
    pub version: u64,
}
