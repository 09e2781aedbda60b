//! Webhooks a policy asks before issuing: each is told who asks, with
//! which claims, for what, and the certificate the policy would issue; it
//! allows (optionally adding fields templates use as
//! `{webhook.NAME.FIELD}`) or denies with a reason. The authority decides
//! what their answers mean; the front end that can reach them (the
//! service, over HTTPS) implements [`Webhooks`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sshca::config::PolicyEntry;
use sshca::core::policy::Request;
use sshca::core::template::{Claims, WEBHOOK_PREFIX};
use sshca::core::text::cap;
use sshca::core::{CertOptions, CertType, KeyData, OptionValue};
use sshca_store::AuditEvent;

use crate::error::{Refusal, RefusalKind};
use crate::identity::{claims_from_json, claims_to_json, Identity};
use crate::issue::Prepared;

/// What a webhook said, as the front end that called it read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Allowed, with the fields of its `data`.
    Allow(Map<String, Value>),
    /// Denied, with its reason.
    Deny(String),
    /// No usable answer (a timeout, a 5xx, a body that is not an answer):
    /// what went wrong, and whether the webhook's `on_error` allows.
    Failed {
        /// What went wrong (safe to show: no secret, no body).
        error: String,
        /// `on_error = "allow"`.
        allow: bool,
    },
}

/// The webhooks a front end can call by name.
#[async_trait::async_trait]
pub trait Webhooks: Send + Sync {
    /// Asks webhook `name` about `call` (a [`Call`] as JSON) and reads its
    /// answer.
    async fn call(&self, name: &str, call: &[u8]) -> Verdict;
    /// Tells webhook `name` about `call` without waiting for it (a new
    /// approval request, for chat or ticketing).
    fn notify(&self, name: &str, call: Vec<u8>);
}

/// A sign request as webhooks and stored approval requests carry it: the
/// fields of `POST /v1/sign/{policy}`'s body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestView {
    /// The key to certify (OpenSSH line).
    pub public_key: String,
    /// `user` or `host`, when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_type: Option<String>,
    /// Principals asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principals: Option<Vec<String>>,
    /// Key id asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Critical options asked for (an empty value is a flag).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critical_options: Option<BTreeMap<String, String>>,
    /// Extensions asked for (an empty value is a flag).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extensions: Option<BTreeMap<String, String>>,
    /// Validity asked for: its start and end (unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validity: Option<(u64, u64)>,
}

fn options_view(o: &CertOptions) -> BTreeMap<String, String> {
    o.iter()
        .map(|(k, v)| {
            let v = match v {
                OptionValue::Flag => String::new(),
                OptionValue::Text(t) => t.clone(),
                OptionValue::Raw(r) => format!("(raw, {} bytes)", r.len()),
            };
            (k.clone(), v)
        })
        .collect()
}

impl RequestView {
    /// The view of `req` for `subject`.
    pub fn of(subject: &KeyData, req: &Request) -> Self {
        Self {
            public_key: sshca::core::PublicKey::new(subject.clone(), "")
                .to_openssh()
                .unwrap_or_default(),
            cert_type: req.cert_type.map(|t| t.to_string()),
            principals: req.principals.clone(),
            key_id: req.key_id.clone(),
            critical_options: req.critical_options.as_ref().map(options_view),
            extensions: req.extensions.as_ref().map(options_view),
            validity: req.validity.map(|v| (v.valid_after, v.valid_before)),
        }
    }

    /// The subject key and request it holds (its validity as given).
    pub fn to_request(&self) -> Result<(KeyData, Request), Refusal> {
        let bad = |m: String| Refusal::new(RefusalKind::Internal, m);
        let key = sshca::parse_public_key(&self.public_key, "the stored request")
            .map_err(|e| bad(e.to_string()))?
            .key_data()
            .clone();
        let opts = |m: &Option<BTreeMap<String, String>>, f: &str| {
            m.as_ref()
                .map(|m| sshca::config::cert_options(Some(m), f))
                .transpose()
                .map_err(bad)
        };
        let cert_type = match self.cert_type.as_deref() {
            None => None,
            Some("host") => Some(CertType::Host),
            Some(_) => Some(CertType::User),
        };
        Ok((
            key,
            Request {
                cert_type,
                principals: self.principals.clone(),
                critical_options: opts(&self.critical_options, "critical_options")?,
                extensions: opts(&self.extensions, "extensions")?,
                validity: self.validity.map(|(a, b)| sshca::core::validity::Validity {
                    valid_after: a,
                    valid_before: b,
                }),
                key_id: self.key_id.clone(),
                ..Default::default()
            },
        ))
    }
}

/// The certificate a policy would issue, as webhooks see it.
#[derive(Debug, Clone, Serialize)]
pub struct CertView {
    /// `user` or `host`.
    pub cert_type: String,
    /// Its key id.
    pub key_id: String,
    /// Its principals.
    pub principals: Vec<String>,
    /// Start of validity (unix seconds).
    pub valid_after: u64,
    /// End of validity (unix seconds).
    pub valid_before: u64,
    /// Its critical options.
    pub critical_options: BTreeMap<String, String>,
    /// Its extensions.
    pub extensions: BTreeMap<String, String>,
    /// The subject key's SHA256 fingerprint.
    pub subject_fingerprint: String,
}

impl CertView {
    /// The view of a merged request.
    pub fn of(p: &Prepared, subject: &KeyData) -> Self {
        let t = &p.template;
        Self {
            cert_type: t.cert_type.to_string(),
            key_id: t.key_id.clone(),
            principals: t.principals.clone(),
            valid_after: t.valid_after,
            valid_before: t.valid_before,
            critical_options: options_view(&t.critical_options),
            extensions: options_view(&t.extensions),
            subject_fingerprint: sshca::fingerprint(subject),
        }
    }
}

/// What a webhook is sent.
#[derive(Debug, Clone, Serialize)]
pub struct Call<'a> {
    /// `authorize` (answer expected) or `approval_request` (a notice).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The webhook's name.
    pub webhook: &'a str,
    /// The request id (logs, audit).
    pub request_id: &'a str,
    /// The policy asked for.
    pub policy: &'a str,
    /// The requester, source first (`oidc:corp:alice@example.com`).
    pub identity: String,
    /// Where its credential comes from.
    pub source: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its credential's claims.
    pub claims: Map<String, Value>,
    /// What it asked for.
    pub request: &'a RequestView,
    /// The certificate the policy would issue (`null` when the policy's
    /// templates need the webhooks' answers to fill it).
    pub certificate: Option<CertView>,
    /// The approval request's id (`approval_request` notices).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<&'a str>,
}

impl Call<'_> {
    /// The call as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The identity's claims without any that use the webhooks' prefix (a
/// credential never speaks for a webhook).
pub fn credential_claims(claims: &Claims) -> Claims {
    claims
        .iter()
        .filter(|(k, _)| !k.starts_with(WEBHOOK_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Asks `entry`'s webhooks (all at once) about `call` and returns the
/// identity whose claims carry their answers (`webhook.NAME.FIELD`): 403
/// `webhook_denied` when one denies, or fails under `on_error = "deny"`.
/// Every call becomes an audit event in `events`.
pub async fn ask(
    hooks: Option<&dyn Webhooks>,
    entry: &PolicyEntry,
    identity: &Identity,
    call: Call<'_>,
    now: u64,
    events: &mut Vec<AuditEvent>,
) -> Result<Identity, Refusal> {
    let mut out = Identity {
        claims: credential_claims(&identity.claims),
        ..identity.clone()
    };
    if entry.webhooks.is_empty() {
        return Ok(out);
    }
    let Some(hooks) = hooks else {
        return Err(Refusal::new(
            RefusalKind::WebhookDenied,
            format!(
                "policy `{}` asks webhooks before issuing, and none can be called here",
                call.policy
            ),
        ));
    };
    let bodies: Vec<(&str, Vec<u8>)> = entry
        .webhooks
        .iter()
        .map(|name| {
            let body = Call {
                webhook: name,
                claims: claims_to_json(&out.claims),
                ..call.clone()
            }
            .to_json();
            (name.as_str(), body)
        })
        .collect();
    let verdicts =
        futures_util::future::join_all(bodies.iter().map(|(name, body)| hooks.call(name, body)))
            .await;
    let mut refusal = None;
    for ((name, _), verdict) in bodies.iter().zip(verdicts) {
        let mut ev = AuditEvent {
            identity: Some(cap(&identity.name).into_owned()),
            auth_source: Some(identity.source.clone()),
            policy: Some(call.policy.to_owned()),
            ..AuditEvent::new("webhook", call.request_id, now)
        };
        match verdict {
            Verdict::Allow(data) => {
                ev.outcome = "allowed".into();
                ev.code = "webhook_allowed".into();
                ev.reason = format!("webhook `{name}` allowed");
                for (field, v) in claims_from_json(data) {
                    out.claims
                        .insert(format!("{WEBHOOK_PREFIX}{name}.{field}"), v);
                }
            }
            Verdict::Deny(reason) => {
                let reason = cap(&sshca::core::text::escape(&reason)).into_owned();
                ev.outcome = "refused".into();
                ev.code = "webhook_denied".into();
                ev.reason = format!("webhook `{name}` denied: {reason}");
                refusal.get_or_insert(Refusal::new(
                    RefusalKind::WebhookDenied,
                    format!("webhook `{name}` denied the request: {reason}"),
                ));
            }
            Verdict::Failed { error, allow } => {
                ev.outcome = "failed".into();
                ev.code = "webhook_failed".into();
                ev.reason = format!(
                    "webhook `{name}` failed ({error}); on_error = {}",
                    if allow { "allow" } else { "deny" }
                );
                if !allow {
                    refusal.get_or_insert(Refusal::new(
                        RefusalKind::WebhookDenied,
                        format!(
                            "webhook `{name}` could not be asked ({error}), and it denies \
                             when it cannot answer"
                        ),
                    ));
                } else {
                    tracing::warn!(webhook = %name, %error, "webhook failed; on_error allows");
                }
            }
        }
        events.push(ev);
    }
    match refusal {
        Some(r) => Err(r),
        None => Ok(out),
    }
}
