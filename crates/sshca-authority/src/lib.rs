//! The operations of an sshca certificate authority, without HTTP.
//!
//! Every front end — the `sshca` command line, the HTTPS API, its
//! Vault-compatible path — builds an [`Identity`] and calls the authority;
//! none signs or records on its own. The authority opens a CA with its
//! current, `next` and `retired` keys ([`OpenedCa`]), issues under a policy
//! (merge, sign, record, serial retry: [`issue`]), revokes ([`revoke`]),
//! builds KRLs ([`krl`]) and trust bundles ([`bundle`]), and answers
//! certificate queries. Refusals carry a [`RefusalKind`] each front end
//! maps to its own answer.

use std::collections::BTreeMap;
use std::sync::Arc;

use sshca::config::{Config, PolicyEntry};
use sshca::core::policy::Request;
use sshca::core::KeyData;
use sshca_store::{CertQuery, IssuedCert, Revocation, RevocationTarget, Store};
use tokio::sync::Mutex;

mod approval;
pub mod bundle;
pub mod ca;
mod error;
pub mod gate;
mod identity;
pub mod issue;
pub mod krl;
pub mod renew;
pub mod revoke;
mod store;

pub use approval::{requested, Requested};
pub use bundle::{bundle_text, BundleFormat};
pub use ca::{open_cas, CaKey, KeyRole, OpenedCa};
pub use error::{Refusal, RefusalKind};
pub use identity::{audit_claims, claims_from_json, claims_to_json, Identity};
pub use issue::{Issued, NoObserver, Observer, Prepared, SignBounds};
pub use krl::{build_krl, BuiltKrl, KRL_NAMESPACE};
pub use renew::{RenewRequest, Renewed};
pub use revoke::Revoker;
pub use store::{has_store, open_store, store_url};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How long a KRL is served before it is rebuilt (with a fresh
/// `generated_date` and version) even when nothing was revoked.
pub const KRL_MAX_AGE: u64 = 3600;

/// A KRL built here, served until a revocation is added or it is
/// [`KRL_MAX_AGE`] old.
struct CachedKrl {
    /// The revocation mark it was built at.
    mark: (u64, i64),
    /// When it was built (unix seconds).
    built_at: u64,
    krl: Arc<BuiltKrl>,
}

/// How an [`Authority`] signs.
pub struct AuthorityOptions {
    /// Bounds on the signatures in flight.
    pub bounds: Option<SignBounds>,
    /// What is counted.
    pub observer: Arc<dyn Observer>,
    /// The webhooks policies ask (`None`: a policy with webhooks refuses).
    pub webhooks: Option<Arc<dyn gate::Webhooks>>,
}

impl Default for AuthorityOptions {
    fn default() -> Self {
        Self {
            bounds: None,
            observer: Arc::new(NoObserver),
            webhooks: None,
        }
    }
}

impl std::fmt::Debug for AuthorityOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorityOptions")
            .field("bounds", &self.bounds)
            .finish_non_exhaustive()
    }
}

/// What one issuance asks for.
#[derive(Debug, Clone)]
pub struct IssueRequest<'a> {
    /// The policy's name.
    pub policy: &'a str,
    /// Who asks.
    pub identity: &'a Identity,
    /// The key to certify.
    pub subject: &'a KeyData,
    /// The request (its requester and claims are the identity's).
    pub request: Request,
    /// The request id, for logs.
    pub request_id: &'a str,
    /// The address the request came from (as the front end decided it),
    /// which a policy with `pin_source_address` binds the certificate to.
    pub source_address: Option<std::net::IpAddr>,
}

/// A CA service's state: the config, every CA a policy uses (opened), the
/// store every certificate is recorded in, and the KRLs built.
pub struct Authority {
    config: Config,
    cas: BTreeMap<String, OpenedCa>,
    store: Arc<dyn Store>,
    options: AuthorityOptions,
    krls: Mutex<BTreeMap<String, CachedKrl>>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("cas", &self.cas.keys().collect::<Vec<_>>())
            .field("store", &self.store.describe())
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Opens every CA a policy uses (pins checked) over `store`.
    pub async fn open(
        config: Config,
        store: Arc<dyn Store>,
        options: AuthorityOptions,
    ) -> sshca::signer::Result<Self> {
        let cas = open_cas(&config).await?;
        Ok(Self::with_cas(config, cas, store, options))
    }

    /// An authority over CAs already opened.
    pub fn with_cas(
        config: Config,
        cas: BTreeMap<String, OpenedCa>,
        store: Arc<dyn Store>,
        options: AuthorityOptions,
    ) -> Self {
        Self {
            config,
            cas,
            store,
            options,
            krls: Mutex::new(BTreeMap::new()),
        }
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The opened CAs by name.
    pub fn cas(&self) -> &BTreeMap<String, OpenedCa> {
        &self.cas
    }

    /// An opened CA: 404 when no policy's CA has that name.
    pub fn ca(&self, name: &str) -> Result<&OpenedCa, Refusal> {
        self.cas
            .get(name)
            .ok_or_else(|| Refusal::not_found(format!("no CA named `{name}`")))
    }

    /// Policy `name`, when `identity` may use it: 404 for an unknown
    /// policy, 403 when its `requesters` or `auth` leave the identity out.
    pub fn policy(&self, name: &str, identity: &Identity) -> Result<&PolicyEntry, Refusal> {
        let entry = self
            .config
            .policies
            .get(name)
            .ok_or_else(|| Refusal::not_found(format!("no policy named `{name}`")))?;
        identity.may_use(entry, name)?;
        Ok(entry)
    }

    /// The policies `identity` may use, by name.
    pub fn policies_for<'a>(
        &'a self,
        identity: &'a Identity,
    ) -> impl Iterator<Item = (&'a String, &'a PolicyEntry)> + 'a {
        self.config
            .policies
            .iter()
            .filter(move |(name, entry)| identity.may_use(entry, name).is_ok())
    }

    /// Issues under a policy the identity may use (see
    /// [`Authority::policy`]): its webhooks asked, merged, signed,
    /// recorded, only then returned. A policy that needs approval is
    /// refused (`approval_required`): [`Authority::request`] keeps such
    /// requests for approvers.
    pub async fn issue(&self, r: IssueRequest<'_>, now: u64) -> Result<Issued, Refusal> {
        let entry = self.policy(r.policy, r.identity)?;
        if entry.approval.is_some() {
            return Err(Refusal::new(
                RefusalKind::ApprovalRequired,
                format!(
                    "policy `{}` issues only once approvers approve; ask where a request can \
                     wait for them (`sshca request`, POST /v1/sign/{})",
                    r.policy, r.policy
                ),
            ));
        }
        match self.request_under(entry, r, now).await? {
            Requested::Issued(issued) => Ok(*issued),
            Requested::Pending(a) => Err(Refusal::new(
                RefusalKind::Internal,
                format!("approval request `{}` was kept instead of issuing", a.id),
            )),
        }
    }

    /// The trust bundle of CA `name`: its current and next keys, and
    /// retired keys whose certificates are not all expired.
    pub async fn trust_bundle(
        &self,
        name: &str,
        format: &BundleFormat,
        now: u64,
    ) -> Result<String, Refusal> {
        let ca = self.ca(name)?;
        let keys = ca
            .trusted_keys(Some(&*self.store), now)
            .await
            .map_err(|e| Refusal::store("the store cannot be read or written", e))?;
        bundle_text(name, &keys, format)
            .map_err(|e| Refusal::new(RefusalKind::Internal, e.to_string()))
    }

    /// Revokes `target` of CA `ca_name` (a CA key must be one of the CA's
    /// keys) and records who did it.
    pub async fn revoke(
        &self,
        ca_name: &str,
        target: RevocationTarget,
        reason: &str,
        by: &Revoker,
        now: u64,
    ) -> Result<Revocation, Refusal> {
        let ca = self.ca(ca_name)?;
        if matches!(target, RevocationTarget::CaKey { .. }) {
            let known = ca
                .keys()
                .any(|k| revoke::ca_key_target(&k.key).ok().as_ref() == Some(&target));
            if !known {
                return Err(Refusal::new(
                    RefusalKind::NotACaKey,
                    format!(
                        "`{}` is not a key of CA `{ca_name}`",
                        revoke::describe(&target)
                    ),
                ));
            }
        }
        revoke::revoke(&*self.store, ca_name, target, reason, by, now)
            .await
            .map_err(|e| match e.kind() {
                sshca::signer::ErrorKind::InvalidInput => Refusal::invalid(e.to_string()),
                _ => Refusal::store("the store cannot be read or written", e),
            })
    }

    /// The newest KRL of CA `name` (`None`: the only CA), rebuilt when a
    /// revocation was added or it is [`KRL_MAX_AGE`] old.
    pub async fn current_krl(
        &self,
        name: Option<&str>,
        now: u64,
    ) -> Result<Arc<BuiltKrl>, Refusal> {
        let name = match name {
            Some(n) => n.to_owned(),
            None if self.cas.len() == 1 => self.cas.keys().next().cloned().unwrap_or_default(),
            None => {
                return Err(Refusal::invalid(format!(
                    "name the CA: ?ca=NAME (CAs: {})",
                    self.cas.keys().cloned().collect::<Vec<_>>().join(", ")
                )))
            }
        };
        let ca = self.ca(&name)?;
        let mark = self
            .store
            .revocation_mark(&name)
            .await
            .map_err(|e| Refusal::store("the store cannot be read or written", e))?;
        let mut cache = self.krls.lock().await;
        if let Some(c) = cache.get(&name) {
            if c.mark == mark && now.saturating_sub(c.built_at) < KRL_MAX_AGE {
                return Ok(c.krl.clone());
            }
        }
        let built = build_krl(&*self.store, ca, false, now).await.map_err(|e| {
            tracing::warn!(ca = %name, error = %e.report(), "cannot build the KRL");
            Refusal::new(
                RefusalKind::KrlUnavailable,
                format!("the KRL of CA `{name}` cannot be built now"),
            )
            .retry(5)
            .caused_by(e)
        })?;
        let built = Arc::new(built);
        cache.insert(
            name,
            CachedKrl {
                mark,
                built_at: now,
                krl: built.clone(),
            },
        );
        Ok(built)
    }

    /// Certificates matching `q`: an admin sees all, anyone else only their
    /// own — its name from its source (asking for another requester's is
    /// 403).
    pub async fn certs(
        &self,
        identity: &Identity,
        admin: bool,
        mut q: CertQuery,
    ) -> Result<Vec<IssuedCert>, Refusal> {
        if !admin {
            match &q.requester {
                Some(r) if *r != identity.name => {
                    return Err(Refusal::forbidden(format!(
                        "`{}` may only list its own certificates (admins may list all)",
                        identity.name
                    )))
                }
                _ => q.requester = Some(identity.name.clone()),
            }
            q.requester_source = Some(identity.source.clone());
        }
        self.store.certs(&q).await.map_err(|e| {
            tracing::warn!(error = %e.report(), "store read failed");
            Refusal::new(RefusalKind::StoreUnavailable, "the store cannot be read")
                .retry(1)
                .caused_by(e)
        })
    }
}

impl Authority {
    /// How the service signs with CA `name` (`ca`, opened): its current
    /// key, recorded in the store, within the bounds, observed.
    pub(crate) fn signing<'a>(&'a self, name: &'a str, ca: &'a OpenedCa) -> issue::Signing<'a> {
        issue::Signing {
            ca_name: name,
            signer: &*ca.signer,
            ca_fingerprint: &ca.current.fingerprint,
            alg: None,
            store: Some(&*self.store),
            bounds: self.options.bounds.as_ref(),
            observer: &*self.options.observer,
        }
    }

    /// Merges one host certificate per key under `policy` for a host that
    /// proves it may join (the front end checks the join's proof, which
    /// authorizes the policy: its `requesters` and `auth` do not apply),
    /// with exactly `principals` when the proof names them (a join token),
    /// else the policy's own (templates over the identity's claims: a
    /// cloud instance's). If the policy refuses one key, the
    /// refusal names it and nothing is ready; otherwise
    /// [`Authority::issue_joined`] signs them.
    pub fn prepare_joined<'a>(
        &'a self,
        policy: &'a str,
        identity: &Identity,
        subjects: &[KeyData],
        principals: Option<&[String]>,
        now: u64,
    ) -> Result<Joined<'a>, Refusal> {
        let entry = self
            .config
            .policies
            .get(policy)
            .ok_or_else(|| Refusal::not_found(format!("no policy named `{policy}`")))?;
        let request = Request {
            cert_type: Some(sshca::core::CertType::Host),
            principals: principals.map(<[String]>::to_vec),
            ..Default::default()
        };
        let mut prepared = Vec::with_capacity(subjects.len());
        for (i, subject) in subjects.iter().enumerate() {
            let p = issue::prepare(
                entry,
                identity,
                subject,
                request.clone(),
                now,
                sshca::core::random_serial(),
            )
            .map_err(|mut r| {
                r.message = format!(
                    "key {} ({}): {}",
                    i + 1,
                    subject.algorithm().as_str(),
                    r.message
                );
                r
            })?;
            if principals.is_some_and(|want| p.template.principals != want) {
                return Err(Refusal::new(
                    RefusalKind::PolicyRefused,
                    format!(
                        "policy `{policy}` would issue principals {:?}, not the join token's {:?}",
                        p.template.principals, principals
                    ),
                ));
            }
            prepared.push(p);
        }
        Ok(Joined {
            policy,
            entry,
            prepared,
        })
    }

    /// Signs and records what [`Authority::prepare_joined`] merged for
    /// `identity`'s `subjects` (the same keys, in the same order).
    pub async fn issue_joined(
        &self,
        joined: Joined<'_>,
        identity: &Identity,
        subjects: &[KeyData],
        request_id: &str,
        now: u64,
    ) -> Result<Vec<Issued>, Refusal> {
        let entry = joined.entry;
        let ca = self.ca(&entry.ca)?;
        let signing = self.signing(&entry.ca, ca);
        let who = issue::RecordAs {
            identity,
            kind: "join",
            policy: joined.policy,
            now,
            request_id,
            renewal: None,
        };
        let mut out = Vec::with_capacity(joined.prepared.len());
        for (p, subject) in joined.prepared.into_iter().zip(subjects) {
            out.push(issue::sign_and_record(&signing, p, subject, &who).await?);
        }
        Ok(out)
    }
}

/// A join's host certificates, merged and ready to sign
/// ([`Authority::prepare_joined`]).
#[derive(Debug)]
pub struct Joined<'a> {
    policy: &'a str,
    entry: &'a PolicyEntry,
    prepared: Vec<Prepared>,
}

impl Joined<'_> {
    /// The principals the certificates will name (the same for every key).
    pub fn principals(&self) -> &[String] {
        self.prepared
            .first()
            .map_or(&[][..], |p| p.template.principals.as_slice())
    }
}
