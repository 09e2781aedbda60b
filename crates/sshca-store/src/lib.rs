//! The durable record of an sshca signing service.
//!
//! A [`Store`] keeps a row for every issued certificate (written, and
//! committed, before the certificate is handed out) and a row for every
//! refused request (the audit trail). The embedded default is SQLite
//! ([`SqliteStore`], `sqlite:PATH` URLs); the trait is shaped so that a
//! shared database can serve several replicas.
//!
//! ```no_run
//! # async fn demo() -> sshca_signer::Result<()> {
//! let store = sshca_store::open("sqlite:/var/lib/sshca/sshca.db", &Default::default()).await?;
//! let recent = store.certs(&sshca_store::CertQuery::default()).await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sshca_signer::{Error, ErrorKind, Result};

mod approval;
pub mod chain;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod postgres;
mod sql;
mod sql_approval;
mod sql_audit;
mod sqlite;
mod store_impl;
mod writer;

pub use approval::{Approval, Vote};
pub use chain::{AuditRow, ChainHead, ChainLink};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// One issued certificate, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedCert {
    /// SHA256 fingerprint of the CA key that signed it.
    pub ca_fingerprint: String,
    /// Serial number.
    pub serial: u64,
    /// Key id.
    pub key_id: String,
    /// `user` or `host`.
    pub cert_type: String,
    /// Principals.
    pub principals: Vec<String>,
    /// Start of validity (unix seconds).
    pub valid_after: u64,
    /// End of validity (unix seconds; `u64::MAX` is forever).
    pub valid_before: u64,
    /// SHA256 fingerprint of the certified public key.
    pub subject_fingerprint: String,
    /// Identity of whoever asked for it (the name, without its source).
    pub requester: String,
    /// Where the requester's credential came from (`token`, `client-cert`,
    /// `oidc:ISSUER`, `local`); `None` for rows recorded before sources
    /// were kept (a token or a client certificate).
    pub requester_source: Option<String>,
    /// Policy it was issued under.
    pub policy: String,
    /// When it was issued (unix seconds).
    pub issued_at: u64,
    /// The certificate line (`TYPE BASE64 COMMENT`).
    pub certificate: String,
    /// The serial of the certificate (same CA key) this one renews; `None`
    /// when it is not a renewal.
    pub renews: Option<u64>,
    /// When the first certificate of its chain of renewals was issued
    /// (unix seconds); `None` when it is the first (`issued_at`).
    pub chain_start: Option<u64>,
}

impl IssuedCert {
    /// When its chain of renewals began.
    pub fn chain_started(&self) -> u64 {
        self.chain_start.unwrap_or(self.issued_at)
    }
}

/// One audit event (schema version [`AUDIT_SCHEMA`], written in
/// docs/audit.md): an issuance, a renewal, a refusal, a revocation, a KRL
/// build, a CA rotation, a join or an admin action.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditEvent {
    /// Unique id (for at-least-once delivery: a receiver drops repeats).
    pub id: String,
    /// When (unix seconds).
    pub at: u64,
    /// The request id the service logged (or the offline command's).
    pub request_id: String,
    /// What happened: `issue`, `renew`, `refuse`, `revoke`, `krl`,
    /// `ca_rotate`, `join`, `admin`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The authenticated identity, when there was one.
    pub identity: Option<String>,
    /// Where the identity came from (`token`, `client-cert`, ...).
    pub auth_source: Option<String>,
    /// The identity's claims (values capped).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
    /// The policy asked for, when there was one.
    pub policy: Option<String>,
    /// SHA256 fingerprint of the CA key involved.
    pub ca_fingerprint: Option<String>,
    /// Serial of the certificate issued.
    pub serial: Option<u64>,
    /// Key id of the certificate issued.
    pub key_id: Option<String>,
    /// Principals of the certificate issued.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// Start of its validity (unix seconds).
    pub valid_after: Option<u64>,
    /// End of its validity (unix seconds).
    pub valid_before: Option<u64>,
    /// SHA256 fingerprint of the certified key.
    pub subject_fingerprint: Option<String>,
    /// HTTP status answered (200 for offline commands).
    pub status: u16,
    /// `allowed`, `refused` or `failed`.
    pub outcome: String,
    /// Reason code (`issued`, `unauthenticated`, `policy_refused`, ...).
    pub code: String,
    /// Why, in words.
    pub reason: String,
}

/// The version of the audit event schema.
pub const AUDIT_SCHEMA: u32 = 1;

impl AuditEvent {
    /// An event of `kind` at `at` for `request_id`, with a fresh id; the
    /// other fields empty.
    pub fn new(kind: &str, request_id: &str, at: u64) -> Self {
        Self {
            id: chain::new_event_id(),
            at,
            request_id: request_id.to_owned(),
            kind: kind.to_owned(),
            ..Self::default()
        }
    }

    /// Copies what a certificate row says about the certificate.
    pub fn with_cert(mut self, cert: &IssuedCert) -> Self {
        self.ca_fingerprint = Some(cert.ca_fingerprint.clone());
        self.serial = Some(cert.serial);
        self.key_id = Some(cert.key_id.clone());
        self.principals.clone_from(&cert.principals);
        self.valid_after = Some(cert.valid_after);
        self.valid_before = Some(cert.valid_before);
        self.subject_fingerprint = Some(cert.subject_fingerprint.clone());
        self
    }
}

/// What a revocation revokes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RevocationTarget {
    /// Certificates with serials `from..=to` signed by any key of the CA.
    Serials {
        /// First serial.
        from: u64,
        /// Last serial.
        to: u64,
    },
    /// Certificates with this key id signed by any key of the CA.
    KeyId {
        /// The key id.
        key_id: String,
    },
    /// A key (and so every certificate of it), by its SHA256 fingerprint.
    Key {
        /// `SHA256:...`.
        fingerprint: String,
    },
    /// A key of the CA itself: every certificate it signed.
    CaKey {
        /// The CA key's public line (`TYPE BASE64`).
        public_key: String,
    },
}

/// One revocation, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revocation {
    /// The CA (its name in the configuration) whose KRL carries it.
    pub ca: String,
    /// What is revoked.
    #[serde(flatten)]
    pub target: RevocationTarget,
    /// Why.
    pub reason: String,
    /// Who revoked it.
    pub revoked_by: String,
    /// When (unix seconds).
    pub revoked_at: u64,
}

/// A cloud instance that joined (what makes each instance join once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JoinedInstance {
    /// The `[join.NAME]` it joined through.
    pub join: String,
    /// The instance (account and instance id, project and instance id,
    /// tenant and object id).
    pub instance: String,
    /// When it joined.
    pub enrolled_at: u64,
}

/// A join token as the store keeps it (the token itself never is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JoinToken {
    /// Its id (part of the token, and of the identity `join:NAME:ID`).
    pub id: String,
    /// The `[join.NAME]` it is for.
    pub join: String,
    /// Lower-case hex SHA-256 of the token.
    pub token_hash: String,
    /// The principals the host certificates get.
    pub principals: Vec<String>,
    /// When it stops being accepted (unix seconds).
    pub expires_at: u64,
    /// How many more enrollments it allows.
    pub uses_left: u64,
    /// When it was made (unix seconds).
    pub created_at: u64,
    /// Who made it.
    pub created_by: String,
}

/// Why a join token was not consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinRefusal {
    /// No token with that hash for that join.
    Unknown,
    /// Its uses are spent.
    Used,
    /// Past its expiry.
    Expired,
}

/// What [`Store::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The row is committed.
    Stored,
    /// The CA already issued a certificate with this serial: nothing was
    /// written; draw another serial and sign again.
    SerialTaken,
}

/// A filter over issued certificates; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertQuery {
    /// Only this CA (SHA256 fingerprint).
    pub ca_fingerprint: Option<String>,
    /// Only this serial.
    pub serial: Option<u64>,
    /// Only this key id.
    pub key_id: Option<String>,
    /// Only certificates naming this principal.
    pub principal: Option<String>,
    /// Only certificates asked for by this identity (its name).
    pub requester: Option<String>,
    /// Only certificates asked for with a credential of this source; a
    /// `token` or `client-cert` source also matches rows recorded before
    /// sources were kept.
    pub requester_source: Option<String>,
    /// At most this many rows, newest first (0 means [`CertQuery::DEFAULT_LIMIT`]).
    pub limit: u32,
}

impl CertQuery {
    /// Rows returned when no limit is given.
    pub const DEFAULT_LIMIT: u32 = 100;
    /// The largest limit honoured.
    pub const MAX_LIMIT: u32 = 10_000;

    /// The limit to apply.
    pub fn effective_limit(&self) -> u32 {
        match self.limit {
            0 => Self::DEFAULT_LIMIT,
            n => n.min(Self::MAX_LIMIT),
        }
    }
}

/// How a store is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// How long a write waits for a database that is locked or unreachable
    /// before the request fails as unavailable.
    pub write_timeout: Duration,
    /// Most rows committed together in one transaction (one sync).
    pub max_batch: usize,
    /// Most database connections for reads (PostgreSQL; SQLite uses at
    /// most 16).
    pub pool_size: u32,
    /// The audit chain this store handle appends to (one per replica; two
    /// processes naming the same one share it, one row at a time).
    pub replica_id: String,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            write_timeout: Duration::from_secs(5),
            max_batch: 256,
            pool_size: 8,
            replica_id: chain::default_replica_id(),
        }
    }
}

/// The record of a signing service.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Records an issued certificate; returns only once the row is durable
    /// (or [`Recorded::SerialTaken`] when the CA already used the serial).
    /// Errors are [`ErrorKind::Unavailable`] when the database cannot be
    /// written: the certificate must then not be handed out.
    async fn record(&self, cert: &IssuedCert) -> Result<Recorded>;
    /// Records an issued certificate and the audit event of its issuance
    /// in one transaction: the event is written only when the
    /// certificate is ([`Recorded::Stored`]).
    async fn record_audited(&self, cert: &IssuedCert, event: &AuditEvent) -> Result<Recorded>;
    /// Records an audit event (durable when it returns).
    async fn audit(&self, event: &AuditEvent) -> Result<()>;
    /// Issued certificates matching `query`, newest first.
    async fn certs(&self, query: &CertQuery) -> Result<Vec<IssuedCert>>;
    /// Certificates with row ids after `after`, oldest first, with their
    /// ids (to read a whole store page by page).
    async fn certs_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, IssuedCert)>>;
    /// The most recent audit events, newest first.
    async fn audit_events(&self, limit: u32) -> Result<Vec<AuditEvent>>;
    /// Audit events with row ids after `after`, oldest first, with their ids.
    async fn audit_after(&self, after: i64, limit: u32) -> Result<Vec<(i64, AuditEvent)>>;
    /// Audit rows with row ids after `after`, oldest first, as stored: the
    /// event, its JSON and its chain link (to verify or copy the trail).
    async fn audit_rows(&self, after: i64, limit: u32) -> Result<Vec<AuditRow>>;
    /// The newest row of every audit chain.
    async fn audit_heads(&self) -> Result<Vec<ChainHead>>;
    /// The newest row of one chain (an index lookup, unlike
    /// [`Store::audit_heads`]).
    async fn audit_head(&self, replica_id: &str) -> Result<Option<ChainHead>>;
    /// The rows of one chain after place `after_seq`, in order (what an
    /// audit sink delivers next).
    async fn audit_chain_rows(
        &self,
        replica_id: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<AuditRow>>;
    /// Writes rows read from another store, in their order (`sshca store
    /// copy`): one [`Recorded`] per certificate, and how many events went
    /// in. Audit rows keep their JSON and chain links as they were.
    async fn import(
        &self,
        certs: &[IssuedCert],
        events: &[AuditRow],
    ) -> Result<(Vec<Recorded>, usize)>;
    /// Records a revocation (durable when it returns).
    async fn revoke(&self, revocation: &Revocation) -> Result<()>;
    /// The revocations of one CA (every CA when `None`), oldest first.
    async fn revocations(&self, ca: Option<&str>) -> Result<Vec<Revocation>>;
    /// How many revocations a CA has and the newest one's row id: changes
    /// whenever a revocation is added.
    async fn revocation_mark(&self, ca: &str) -> Result<(u64, i64)>;
    /// Serials revoked one by one for `ca` whose certificates, all known to
    /// this store and signed by one of `ca_keys` (SHA256 fingerprints),
    /// expired before `now`: a KRL may leave them out.
    async fn expired_revoked_serials(
        &self,
        ca: &str,
        ca_keys: &[String],
        now: u64,
    ) -> Result<Vec<u64>>;
    /// Whether a certificate signed by this CA key (SHA256 fingerprint) is
    /// still valid after `now`.
    async fn has_unexpired(&self, ca_key: &str, now: u64) -> Result<bool>;
    /// The next KRL version of a CA: greater than every version handed out
    /// before (by any replica), and at least `at_least`.
    async fn next_krl_version(&self, ca: &str, at_least: u64) -> Result<u64>;
    /// The last KRL version handed out per CA.
    async fn krl_versions(&self) -> Result<Vec<(String, u64)>>;
    /// Uses a renewal proof's nonce: `true` the first time (it is kept
    /// until `expires_at`), `false` when it was used before — atomically,
    /// so that of two replicas given the same proof exactly one gets
    /// `true`. Nonces past their `expires_at` at `now` are forgotten.
    async fn use_nonce(&self, nonce: &str, expires_at: u64, now: u64) -> Result<bool>;
    /// Keeps a new join token.
    async fn add_join_token(&self, token: &JoinToken) -> Result<()>;
    /// The join token of `join` with hash `token_hash`, when it may still
    /// be used at `now`.
    async fn join_token(
        &self,
        join: &str,
        token_hash: &str,
        now: u64,
    ) -> Result<std::result::Result<JoinToken, JoinRefusal>>;
    /// Every join token, oldest first (for `sshca store copy`).
    async fn join_tokens(&self) -> Result<Vec<JoinToken>>;
    /// Uses the token once, atomically: of two replicas taking its last
    /// use at once, exactly one succeeds.
    async fn consume_join_token(
        &self,
        join: &str,
        token_hash: &str,
        now: u64,
    ) -> Result<std::result::Result<JoinToken, JoinRefusal>>;
    /// Records that cloud instance `instance` joined through `join`:
    /// `true` the first time, `false` when it joined before — atomically,
    /// so that of two replicas given the same instance's proof exactly
    /// one gets `true`.
    async fn claim_instance(&self, join: &str, instance: &str, now: u64) -> Result<bool>;
    /// Forgets that `instance` joined through `join` (its certificates
    /// could not be issued after all, so it may try again).
    async fn release_instance(&self, join: &str, instance: &str) -> Result<()>;
    /// Every instance that joined, oldest first (for `sshca store copy`).
    async fn joined_instances(&self) -> Result<Vec<JoinedInstance>>;
    /// Keeps a new sign request waiting for approval.
    async fn add_approval(&self, approval: &Approval) -> Result<()>;
    /// The approval request `id`.
    async fn approval(&self, id: &str) -> Result<Option<Approval>>;
    /// Approval requests in `state` (all when `None`), oldest first, at
    /// most `limit`.
    async fn approvals(&self, state: Option<&str>, limit: u32) -> Result<Vec<Approval>>;
    /// Writes `approval`'s state, votes, decision and certificate when the
    /// stored record's version is still `approval.version` (then bumped):
    /// `false` when another change came first, so of two replicas deciding
    /// at once exactly one succeeds.
    async fn update_approval(&self, approval: &Approval) -> Result<bool>;
    /// Whether the database answers.
    async fn health(&self) -> Result<()>;
    /// The store's URL, with any password removed.
    fn describe(&self) -> String;
}

/// Opens the store a URL names: `sqlite:PATH` (created, with its schema,
/// when missing) or `postgres://USER@HOST:PORT/DB?sslmode=...` (its schema
/// migrated under an advisory lock).
pub async fn open(url: &str, options: &StoreOptions) -> Result<Arc<dyn Store>> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("store `{url}`: no database path after `sqlite:`"),
            ));
        }
        return Ok(Arc::new(
            SqliteStore::open(std::path::Path::new(path), options).await?,
        ));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PgStore::open(url, options).await?));
    }
    let scheme = url.split(':').next().unwrap_or_default();
    Err(Error::new(
        ErrorKind::InvalidInput,
        format!(
            "store `{scheme}:...`: unknown kind of store (supported: sqlite:PATH, \
             postgres://USER@HOST:PORT/DB)"
        ),
    ))
}

/// u64 values (serials, times) are kept bit for bit in signed 64-bit columns.
pub(crate) fn to_db(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

/// The inverse of [`to_db`].
pub(crate) fn from_db(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

pub(crate) fn unavailable(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Unavailable, format!("store: {what}")).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_round_trips_through_the_database_type() {
        for v in [0, 1, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
            assert_eq!(from_db(to_db(v)), v);
        }
    }
}
