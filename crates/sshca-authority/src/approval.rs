//! Issuing under a policy: webhooks asked, then either signed at once or,
//! under a policy with `approval`, kept as a request that approvers
//! approve or deny. Pending requests live in the store, so every replica
//! sees and decides the same ones; each decision is a compare-and-set, so
//! two approvers completing a request at once issue one certificate.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sshca::config::{ApprovalRule, PolicyEntry};
use sshca::core::text::cap;
use sshca_store::{Approval, AuditEvent, Vote};

use crate::error::{Refusal, RefusalKind};
use crate::gate::{self, Call, CertView, RequestView};
use crate::identity::{claims_from_json, claims_to_json, Identity};
use crate::issue::{self, Issued, Prepared};
use crate::{Authority, IssueRequest};

/// An approval request stuck in `issuing` this long (its replica stopped
/// while signing) is open again.
const ISSUING_STALE: u64 = 300;

/// How often a decision is retried when another replica changed the
/// request first.
const CAS_TRIES: usize = 8;

/// What a sign request led to.
#[derive(Debug)]
pub enum Requested {
    /// A certificate, signed and recorded.
    Issued(Box<Issued>),
    /// A request waiting for approval.
    Pending(Box<Approval>),
}

/// What the store keeps of a request waiting for approval: what was asked,
/// by whom with which claims (the webhooks' answers included), from where.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    request: RequestView,
    claims: Map<String, Value>,
    source_address: Option<std::net::IpAddr>,
    request_id: String,
}

impl Authority {
    /// Issues under a policy the identity may use: its webhooks asked,
    /// then signed and recorded — or, under a policy with `approval`, kept
    /// as a pending request ([`Requested::Pending`]).
    pub async fn request(&self, r: IssueRequest<'_>, now: u64) -> Result<Requested, Refusal> {
        let entry = self.policy(r.policy, r.identity)?;
        self.request_under(entry, r, now).await
    }

    /// [`Authority::request`] under `entry`, the policy `r` names (which
    /// the identity may use).
    pub(crate) async fn request_under(
        &self,
        entry: &PolicyEntry,
        r: IssueRequest<'_>,
        now: u64,
    ) -> Result<Requested, Refusal> {
        let ca = self.cas.get(&entry.ca).ok_or_else(|| {
            Refusal::new(
                RefusalKind::BackendUnavailable,
                format!("CA `{}` is not open", entry.ca),
            )
            .retry(1)
        })?;
        // What webhooks and a stored request carry; not made on the plain
        // path.
        let view = (!entry.webhooks.is_empty() || entry.approval.is_some())
            .then(|| RequestView::of(r.subject, &r.request));
        let merge = |identity: &Identity| -> Result<Prepared, Refusal> {
            let mut p = issue::prepare(
                entry,
                identity,
                r.subject,
                r.request.clone(),
                now,
                sshca::core::random_serial(),
            )?;
            issue::pin_source_address(entry, &mut p, r.source_address)?;
            Ok(p)
        };
        let mut identity = std::borrow::Cow::Borrowed(r.identity);
        if let Some(view) = view.as_ref().filter(|_| !entry.webhooks.is_empty()) {
            // The certificate as it would be without the webhooks' answers
            // (refused here when the policy refuses it anyway).
            let preview = if entry.policy.webhooks_used().is_empty() {
                let clean = Identity {
                    claims: gate::credential_claims(&r.identity.claims),
                    ..r.identity.clone()
                };
                Some(CertView::of(&merge(&clean)?, r.subject))
            } else {
                None
            };
            let call = self.call(r.policy, r.identity, r.request_id, view, preview, None);
            let mut events = Vec::new();
            let asked = gate::ask(
                self.options.webhooks.as_deref(),
                entry,
                r.identity,
                call,
                now,
                &mut events,
            )
            .await;
            for ev in &events {
                self.store
                    .audit(ev)
                    .await
                    .map_err(|e| Refusal::store("the audit trail cannot be written", e))?;
            }
            identity = std::borrow::Cow::Owned(asked?);
        }
        let prepared = merge(&identity)?;
        let Some(rule) = &entry.approval else {
            let who = issue::RecordAs {
                identity: &identity,
                kind: "issue",
                policy: r.policy,
                now,
                request_id: r.request_id,
                renewal: None,
            };
            let signing = self.signing(&entry.ca, ca);
            return issue::sign_and_record(&signing, prepared, r.subject, &who)
                .await
                .map(|i| Requested::Issued(Box::new(i)));
        };
        let view = view.unwrap_or_else(|| RequestView::of(r.subject, &r.request));
        let stored = Stored {
            request: view.clone(),
            claims: claims_to_json(&identity.claims),
            source_address: r.source_address,
            request_id: r.request_id.to_owned(),
        };
        let approval = Approval {
            id: sshca_store::chain::new_event_id(),
            policy: r.policy.to_owned(),
            requester: r.identity.name.clone(),
            requester_source: r.identity.source.clone(),
            request: serde_json::to_string(&stored)
                .map_err(|e| Refusal::new(RefusalKind::Internal, e.to_string()))?,
            created_at: now,
            expires_at: now.saturating_add(rule.expires),
            state: "pending".into(),
            votes: Vec::new(),
            decided_by: None,
            decided_at: None,
            reason: None,
            serial: None,
            certificate: None,
            version: 0,
        };
        self.store
            .add_approval(&approval)
            .await
            .map_err(|e| Refusal::store("the approval request cannot be recorded", e))?;
        self.audit_approval(&approval, "approval_request", r.identity, r.request_id, now)
            .await?;
        if let (Some(name), Some(hooks)) = (&rule.notify, self.options.webhooks.as_deref()) {
            let call = Call {
                kind: "approval_request",
                webhook: name,
                ..self.call(
                    r.policy,
                    r.identity,
                    r.request_id,
                    &view,
                    Some(CertView::of(&prepared, r.subject)),
                    Some(&approval.id),
                )
            };
            hooks.notify(name, call.to_json());
        }
        Ok(Requested::Pending(Box::new(approval)))
    }

    fn call<'a>(
        &self,
        policy: &'a str,
        identity: &'a Identity,
        request_id: &'a str,
        view: &'a RequestView,
        certificate: Option<CertView>,
        approval_id: Option<&'a str>,
    ) -> Call<'a> {
        Call {
            kind: "authorize",
            webhook: "",
            request_id,
            policy,
            identity: identity.qualified(),
            source: &identity.source,
            name: &identity.name,
            claims: claims_to_json(&gate::credential_claims(&identity.claims)),
            request: view,
            certificate,
            approval_id,
        }
    }

    /// The approval rule of `a`'s policy as configured now.
    fn rule_of(&self, a: &Approval) -> Result<(&PolicyEntry, &ApprovalRule), Refusal> {
        self.config
            .policies
            .get(&a.policy)
            .and_then(|e| e.approval.as_ref().map(|r| (e, r)))
            .ok_or_else(|| {
                Refusal::new(
                    RefusalKind::ApprovalDecided,
                    format!("policy `{}` no longer takes approvals; ask again", a.policy),
                )
            })
    }

    async fn load_approval(&self, id: &str) -> Result<Approval, Refusal> {
        self.store
            .approval(id)
            .await
            .map_err(|e| Refusal::store("the approval request cannot be read", e))?
            .ok_or_else(|| Refusal::not_found(format!("no approval request `{}`", cap(id))))
    }

    /// Approval request `id`, for its requester or one who may decide it:
    /// 410 `approval_expired` when it was not approved in time.
    pub async fn approval(
        &self,
        id: &str,
        identity: &Identity,
        now: u64,
    ) -> Result<Approval, Refusal> {
        let a = self.load_approval(id).await?;
        let mine = is_requester(&a, identity);
        let approver = self
            .rule_of(&a)
            .is_ok_and(|(_, r)| identity.matches_any(&r.approvers));
        if !mine && !approver {
            return Err(Refusal::forbidden(format!(
                "`{}` neither asked for nor may decide approval request `{}`",
                identity.qualified(),
                a.id
            )));
        }
        let mut a = a;
        self.recover(&mut a, now).await?;
        expired(&a, now)?;
        Ok(a)
    }

    /// The pending requests `identity` may decide (not its own), oldest
    /// first.
    pub async fn approvals_for(
        &self,
        identity: &Identity,
        now: u64,
    ) -> Result<Vec<Approval>, Refusal> {
        let all = self
            .store
            .approvals(Some("pending"), 1_000)
            .await
            .map_err(|e| Refusal::store("the approval requests cannot be read", e))?;
        Ok(all
            .into_iter()
            .filter(|a| a.expires_at > now && !is_requester(a, identity))
            .filter(|a| {
                self.rule_of(a)
                    .is_ok_and(|(_, r)| identity.matches_any(&r.approvers))
            })
            .collect())
    }

    /// Approves request `id` as `identity`: once `count` distinct
    /// approvers approved, the certificate is signed (its validity starting
    /// now) and recorded, and the request holds it.
    pub async fn approve(
        &self,
        id: &str,
        identity: &Identity,
        request_id: &str,
        now: u64,
    ) -> Result<Approval, Refusal> {
        for _ in 0..CAS_TRIES {
            let mut a = self.open_for_decision(id, identity, now).await?;
            let (entry, rule) = self.rule_of(&a)?;
            let me = identity.qualified();
            let voted = a.votes.iter().any(|v| v.by == me);
            if !voted {
                a.votes.push(Vote {
                    by: me.clone(),
                    at: now,
                });
            }
            if (a.votes.len() as u64) < u64::from(rule.count) {
                if voted {
                    return Ok(a);
                }
                if !self.save_approval(&a).await? {
                    continue;
                }
                a.version += 1;
                self.audit_approval(&a, "approval_approve", identity, request_id, now)
                    .await?;
                return Ok(a);
            }
            let pending = a.clone();
            // The serial is drawn before signing and kept with the request,
            // so that a replica finding it stuck in `issuing` can tell
            // whether its certificate was recorded.
            let serial = sshca::core::random_serial();
            a.state = "issuing".into();
            a.decided_by = Some(me);
            a.decided_at = Some(now);
            a.serial = Some(serial);
            if !self.save_approval(&a).await? {
                continue;
            }
            a.version += 1;
            return match self
                .issue_approved(entry, &a, serial, request_id, now)
                .await
            {
                Ok(issued) => {
                    a.state = "approved".into();
                    a.serial = Some(issued.row.serial);
                    a.certificate = Some(issued.line);
                    if self.save_approval(&a).await? {
                        a.version += 1;
                    }
                    self.audit_approval(&a, "approval_approve", identity, request_id, now)
                        .await?;
                    Ok(a)
                }
                Err(refusal) => {
                    // Open again with the approvals given, so that a retry
                    // of any of them issues.
                    let back = Approval {
                        version: a.version,
                        serial: None,
                        ..pending
                    };
                    let _ = self.save_approval(&back).await;
                    Err(refusal)
                }
            };
        }
        Err(busy())
    }

    /// Denies request `id` as `identity`, with `reason`.
    pub async fn deny(
        &self,
        id: &str,
        identity: &Identity,
        reason: &str,
        request_id: &str,
        now: u64,
    ) -> Result<Approval, Refusal> {
        for _ in 0..CAS_TRIES {
            let mut a = self.open_for_decision(id, identity, now).await?;
            a.state = "denied".into();
            a.decided_by = Some(identity.qualified());
            a.decided_at = Some(now);
            a.reason = Some(cap(reason).into_owned());
            if !self.save_approval(&a).await? {
                continue;
            }
            a.version += 1;
            self.audit_approval(&a, "approval_deny", identity, request_id, now)
                .await?;
            return Ok(a);
        }
        Err(busy())
    }

    /// Request `id` when `identity` may decide it and it is open.
    async fn open_for_decision(
        &self,
        id: &str,
        identity: &Identity,
        now: u64,
    ) -> Result<Approval, Refusal> {
        let mut a = self.load_approval(id).await?;
        let (_, rule) = self.rule_of(&a)?;
        if is_requester(&a, identity) {
            return Err(Refusal::forbidden(format!(
                "`{}` asked for request `{}` and may not decide it",
                identity.qualified(),
                a.id
            )));
        }
        if !identity.matches_any(&rule.approvers) {
            return Err(Refusal::forbidden(format!(
                "`{}` is not an approver of policy `{}`",
                identity.qualified(),
                a.policy
            )));
        }
        self.recover(&mut a, now).await?;
        match a.state.as_str() {
            "pending" => {}
            "issuing" => {
                return Err(Refusal::new(
                    RefusalKind::ApprovalDecided,
                    format!("request `{}` is approved and being signed", a.id),
                )
                .retry(1))
            }
            other => {
                return Err(Refusal::new(
                    RefusalKind::ApprovalDecided,
                    format!("request `{}` is already {other}", a.id),
                ))
            }
        }
        expired(&a, now)?;
        Ok(a)
    }

    /// A request stuck in `issuing` for [`ISSUING_STALE`] (its replica
    /// stopped while signing): `approved` with its certificate when that
    /// was recorded under the serial drawn for it, else `pending` again
    /// (only in `a`: the caller's decision writes it).
    async fn recover(&self, a: &mut Approval, now: u64) -> Result<(), Refusal> {
        if a.state != "issuing" || now.saturating_sub(a.decided_at.unwrap_or(0)) <= ISSUING_STALE {
            return Ok(());
        }
        let recorded = match a.serial {
            Some(serial) => self
                .store
                .certs(&sshca_store::CertQuery {
                    serial: Some(serial),
                    ..Default::default()
                })
                .await
                .map_err(|e| Refusal::store("the store cannot be read", e))?
                .into_iter()
                .find(|c| {
                    c.policy == a.policy
                        && c.requester == a.requester
                        && c.requester_source.as_deref() == Some(a.requester_source.as_str())
                }),
            None => None,
        };
        match recorded {
            Some(row) => {
                a.state = "approved".into();
                a.certificate = Some(row.certificate);
                if self.save_approval(a).await? {
                    a.version += 1;
                }
            }
            None => {
                a.state = "pending".into();
                a.serial = None;
            }
        }
        Ok(())
    }

    async fn save_approval(&self, a: &Approval) -> Result<bool, Refusal> {
        self.store
            .update_approval(a)
            .await
            .map_err(|e| Refusal::store("the approval request cannot be updated", e))
    }

    /// Signs and records the certificate of approved request `a`, its
    /// validity starting `now` (as long as was asked, else the policy's).
    async fn issue_approved(
        &self,
        entry: &PolicyEntry,
        a: &Approval,
        serial: u64,
        request_id: &str,
        now: u64,
    ) -> Result<Issued, Refusal> {
        let stored: Stored = serde_json::from_str(&a.request).map_err(|e| {
            Refusal::new(
                RefusalKind::Internal,
                format!("approval request `{}` cannot be read: {e}", a.id),
            )
        })?;
        let (subject, mut request) = stored.request.to_request()?;
        if let Some(v) = &mut request.validity {
            if v.valid_before != sshca::core::FOREVER {
                let length = v.valid_before.saturating_sub(v.valid_after);
                v.valid_before = now.saturating_add(length);
            }
            v.valid_after = now;
        }
        let requester = Identity {
            source: a.requester_source.clone(),
            name: a.requester.clone(),
            claims: claims_from_json(stored.claims),
        };
        let ca = self.ca(&entry.ca)?;
        let mut prepared = issue::prepare(entry, &requester, &subject, request, now, serial)?;
        issue::pin_source_address(entry, &mut prepared, stored.source_address)?;
        let who = issue::RecordAs {
            identity: &requester,
            kind: "issue",
            policy: &a.policy,
            now,
            request_id,
            renewal: None,
        };
        issue::sign_and_record(&self.signing(&entry.ca, ca), prepared, &subject, &who).await
    }

    async fn audit_approval(
        &self,
        a: &Approval,
        kind: &str,
        by: &Identity,
        request_id: &str,
        now: u64,
    ) -> Result<(), Refusal> {
        let (outcome, code, status) = match a.state.as_str() {
            "approved" => ("allowed", "approved", 200),
            "denied" => ("refused", "denied", 200),
            _ if kind == "approval_request" => ("pending", "approval_pending", 202),
            _ => ("pending", "approval_recorded", 200),
        };
        let ev = AuditEvent {
            identity: Some(cap(&by.name).into_owned()),
            auth_source: Some(by.source.clone()),
            claims: crate::identity::audit_claims(&gate::credential_claims(&by.claims)),
            policy: Some(a.policy.clone()),
            serial: a.serial,
            status,
            outcome: outcome.into(),
            code: code.into(),
            reason: format!(
                "approval request {} by {}:{} ({} of the approvals){}",
                a.id,
                a.requester_source,
                a.requester,
                a.votes.len(),
                a.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            ..AuditEvent::new(kind, request_id, now)
        };
        self.store
            .audit(&ev)
            .await
            .map_err(|e| Refusal::store("the audit trail cannot be written", e))
    }
}

/// What approval request `a` asks for (`None` when its record cannot be
/// read).
pub fn requested(a: &Approval) -> Option<RequestView> {
    serde_json::from_str::<Stored>(&a.request)
        .ok()
        .map(|s| s.request)
}

fn is_requester(a: &Approval, identity: &Identity) -> bool {
    a.requester_source == identity.source && a.requester == identity.name
}

/// 410 for a request still pending past its `expires_at`.
fn expired(a: &Approval, now: u64) -> Result<(), Refusal> {
    if a.state == "pending" && now >= a.expires_at {
        return Err(Refusal::new(
            RefusalKind::ApprovalExpired,
            format!(
                "approval request `{}` was not approved in time (it expired {} s ago); ask again",
                a.id,
                now - a.expires_at
            ),
        ));
    }
    Ok(())
}

fn busy() -> Refusal {
    Refusal::new(
        RefusalKind::ApprovalDecided,
        "the approval request changed while it was being decided; try again",
    )
    .retry(1)
}
