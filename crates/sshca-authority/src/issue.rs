//! Issuing: the request merged under the policy for the identity, signed by
//! the CA (each signature verified), recorded in the store when there is
//! one, and signed again with a fresh serial when the store says the CA
//! already used it. Every front end issues through here: `sshca sign
//! --policy` (no store), `POST /v1/sign/{policy}` and the Vault-compatible
//! path.

use std::time::{Duration, Instant};

use sshca::config::PolicyEntry;
use sshca::core::policy::{Change, Request};
use sshca::core::text::cap;
use sshca::core::{random_serial, CertTemplate, Certificate, KeyData, SigAlg};
use sshca::signer::{ErrorKind, KeySigner, SignerExt};
use sshca_store::{AuditEvent, IssuedCert, Recorded, Store};
use tokio::sync::Semaphore;

use crate::error::{Refusal, RefusalKind};
use crate::identity::Identity;

/// How many serials are drawn before giving up on a store that says each
/// one is taken.
const SERIAL_DRAWS: usize = 4;

/// What a front end may count or time; every method defaults to nothing
/// (the service's metrics implement it).
pub trait Observer: Send + Sync {
    /// A signature asked of CA `ca`'s backend ended (`ok`: it signed).
    fn backend_call(&self, ca: &str, ok: bool) {
        let _ = (ca, ok);
    }
    /// A store write took `seconds`.
    fn store_write(&self, seconds: f64) {
        let _ = seconds;
    }
    /// A certificate was signed and recorded, `seconds` after signing began.
    fn signed(&self, seconds: f64) {
        let _ = seconds;
    }
}

/// The observer that observes nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl Observer for NoObserver {}

/// Bounds on the signatures in flight: at most `permits` at once, and each
/// (queue plus signature) within `timeout`.
#[derive(Debug)]
pub struct SignBounds {
    permits: Semaphore,
    timeout: Duration,
}

impl SignBounds {
    /// At most `max_concurrent` signatures at once (at least one), each
    /// within `timeout`.
    pub fn new(max_concurrent: usize, timeout: Duration) -> Self {
        Self {
            permits: Semaphore::new(max_concurrent.max(1)),
            timeout,
        }
    }
}

/// A request merged under its policy: the certificate to sign, and what
/// the policy changed in the request.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The certificate to sign.
    pub template: CertTemplate,
    /// What the policy changed (dropped options, capped validity, ...).
    pub changes: Vec<Change>,
}

/// Merges `req` under `entry` for `identity` (the requester and claims are
/// the identity's, whatever the request says): 422 when the policy refuses.
pub fn prepare(
    entry: &PolicyEntry,
    identity: &Identity,
    subject: &KeyData,
    mut req: Request,
    now: u64,
    serial: u64,
) -> Result<Prepared, Refusal> {
    req.requester = (!identity.name.is_empty()).then(|| identity.name.clone());
    req.requester_source = Some(identity.source.clone());
    req.claims = identity.claims.clone();
    let (template, changes) = entry
        .policy
        .merge(&req, subject, now, serial)
        .map_err(|e| {
            Refusal::new(
                RefusalKind::PolicyRefused,
                e.to_string().trim_start_matches("invalid template: "),
            )
        })?;
    Ok(Prepared { template, changes })
}

/// Under a policy with `pin_source_address`, sets the critical option
/// `source-address` to `from` alone (`/32` or `/128`), replacing what the
/// request or the policy's defaults asked for; refused when the address is
/// unknown. Other policies are left as they are.
pub fn pin_source_address(
    entry: &PolicyEntry,
    prepared: &mut Prepared,
    from: Option<std::net::IpAddr>,
) -> Result<(), Refusal> {
    if !entry.pin_source_address {
        return Ok(());
    }
    let Some(ip) = from else {
        return Err(Refusal::new(
            RefusalKind::PolicyRefused,
            "the policy binds certificates to the requester's address (`pin_source_address`), \
             and the address of this request is not known",
        ));
    };
    let ip = ip.to_canonical();
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    prepared.template.critical_options.insert(
        "source-address".to_owned(),
        sshca::core::OptionValue::Text(format!("{ip}/{bits}")),
    );
    Ok(())
}

/// The CA a certificate is signed by, and where it goes.
pub struct Signing<'a> {
    /// The CA's name (logs, metrics, messages).
    pub ca_name: &'a str,
    /// Its current key.
    pub signer: &'a dyn KeySigner,
    /// Its current key's SHA256 fingerprint (the store's CA column).
    pub ca_fingerprint: &'a str,
    /// The signature algorithm of an RSA CA (`None`: the key's default).
    pub alg: Option<SigAlg>,
    /// Where the certificate is recorded before it is returned (`None`:
    /// nowhere, for the offline command line).
    pub store: Option<&'a dyn Store>,
    /// Bounds on signatures in flight (`None`: unbounded).
    pub bounds: Option<&'a SignBounds>,
    /// What is counted.
    pub observer: &'a dyn Observer,
}

/// Who the certificate is recorded for.
#[derive(Debug, Clone)]
pub struct RecordAs<'a> {
    /// Who asked.
    pub identity: &'a Identity,
    /// The audit event's type: `issue`, `renew` or `join`.
    pub kind: &'static str,
    /// The policy's name.
    pub policy: &'a str,
    /// When (unix seconds).
    pub now: u64,
    /// The request id, for the log line of a failed store write.
    pub request_id: &'a str,
    /// For a renewal: the serial renewed and when its chain began.
    pub renewal: Option<(u64, u64)>,
}

/// A certificate signed (and recorded, when there was a store).
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub certificate: Certificate,
    /// Its OpenSSH line.
    pub line: String,
    /// Its row as the store holds it.
    pub row: IssuedCert,
    /// What the policy changed in the request.
    pub changes: Vec<Change>,
}

/// Signs `prepared` for `subject` and records it: the certificate is
/// returned only once its row is committed; a serial the store already
/// holds for the CA means another draw and another signature.
pub async fn sign_and_record(
    s: &Signing<'_>,
    prepared: Prepared,
    subject: &KeyData,
    who: &RecordAs<'_>,
) -> Result<Issued, Refusal> {
    let Prepared {
        mut template,
        changes,
    } = prepared;
    let started = Instant::now();
    for _ in 0..SERIAL_DRAWS {
        let certificate = sign_bounded(s, &template, subject).await?;
        let line = certificate.to_openssh().map_err(|e| {
            Refusal::new(
                RefusalKind::Internal,
                format!("cannot encode the certificate: {e}"),
            )
        })?;
        let row = IssuedCert {
            ca_fingerprint: s.ca_fingerprint.to_owned(),
            serial: certificate.serial(),
            key_id: certificate.key_id().to_owned(),
            cert_type: certificate.cert_type().to_string(),
            principals: certificate.principals().to_vec(),
            valid_after: certificate.valid_after(),
            valid_before: certificate.valid_before(),
            subject_fingerprint: sshca::fingerprint(subject),
            requester: who.identity.name.clone(),
            requester_source: Some(who.identity.source.clone()),
            policy: who.policy.to_owned(),
            issued_at: who.now,
            certificate: line.clone(),
            renews: who.renewal.map(|(serial, _)| serial),
            chain_start: who.renewal.map(|(_, start)| start),
        };
        let Some(store) = s.store else {
            return Ok(Issued {
                certificate,
                line,
                row,
                changes,
            });
        };
        let write_started = Instant::now();
        let event = AuditEvent {
            identity: Some(cap(&who.identity.name).into_owned()),
            auth_source: Some(who.identity.source.clone()),
            claims: crate::identity::audit_claims(&who.identity.claims),
            policy: Some(who.policy.to_owned()),
            status: 200,
            outcome: "allowed".into(),
            code: match who.kind {
                "renew" => "renewed",
                "join" => "joined",
                _ => "issued",
            }
            .into(),
            ..AuditEvent::new(who.kind, who.request_id, who.now)
        }
        .with_cert(&row);
        let recorded = store.record_audited(&row, &event).await.map_err(|e| {
            tracing::warn!(request_id = %who.request_id, error = %e.report(), "store write failed");
            Refusal::new(
                RefusalKind::StoreUnavailable,
                "the certificate could not be recorded; none was issued",
            )
            .retry(1)
            .caused_by(e)
        })?;
        s.observer
            .store_write(write_started.elapsed().as_secs_f64());
        match recorded {
            Recorded::SerialTaken => template.serial = random_serial(),
            Recorded::Stored => {
                s.observer.signed(started.elapsed().as_secs_f64());
                return Ok(Issued {
                    certificate,
                    line,
                    row,
                    changes,
                });
            }
        }
    }
    Err(Refusal::new(
        RefusalKind::StoreUnavailable,
        format!("no unused serial found after {SERIAL_DRAWS} draws"),
    )
    .retry(1))
}

/// Signs within the bounds: a backend failure is 503 naming only the CA
/// and the kind of failure (the cause goes to the log and the command
/// line).
async fn sign_bounded(
    s: &Signing<'_>,
    template: &CertTemplate,
    subject: &KeyData,
) -> Result<Certificate, Refusal> {
    let ca = s.ca_name;
    let work = async {
        let _permit = match s.bounds {
            Some(b) => Some(b.permits.acquire().await.map_err(|_| {
                Refusal::new(
                    RefusalKind::BackendUnavailable,
                    "the service is shutting down",
                )
                .retry(1)
            })?),
            None => None,
        };
        let r = s.signer.sign_certificate(template, subject, s.alg).await;
        s.observer.backend_call(ca, r.is_ok());
        r.map_err(|e| {
            tracing::warn!(ca, error = %e.report(), "signing failed");
            let kind = match e.kind() {
                ErrorKind::Throttled => RefusalKind::BackendThrottled,
                _ => RefusalKind::BackendUnavailable,
            };
            Refusal::new(kind, format!("CA `{ca}` could not sign: {}", e.kind()))
                .retry(1)
                .caused_by(e)
        })
    };
    match s.bounds {
        None => work.await,
        Some(b) => match tokio::time::timeout(b.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(Refusal::new(
                RefusalKind::BackendTimeout,
                format!("CA `{ca}` did not sign within {} s", b.timeout.as_secs()),
            )
            .retry(1)),
        },
    }
}
