//! `[policy.NAME]` as written, and how it becomes merge rules and the
//! service's own per-policy settings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sshca_core::policy::{OnDisallowed, Policy};
use sshca_core::validity::parse_ttl;
use sshca_core::CertType;

use sshca_core::matcher::IdentityMatcher;

use super::{cert_options, check_matcher_issuers, duration, globs, matchers};

/// A policy as written in the file (all fields optional but `ca`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct PolicyConfig {
    pub ca: String,
    pub cert_type: Option<String>,
    pub valid_principals: Option<Vec<String>>,
    pub default_valid_principals: Option<Vec<String>>,
    pub allowed_valid_principals: Option<Vec<String>>,
    pub all_principals: Option<bool>,
    pub critical_options: Option<BTreeMap<String, String>>,
    pub default_critical_options: Option<BTreeMap<String, String>>,
    pub allowed_critical_options: Option<Vec<String>>,
    pub extensions: Option<BTreeMap<String, String>>,
    pub default_extensions: Option<BTreeMap<String, String>>,
    pub allowed_extensions: Option<Vec<String>>,
    pub ttl: Option<String>,
    pub max_ttl: Option<String>,
    pub max_start: Option<String>,
    pub allow_serial: Option<bool>,
    pub allow_key_id: Option<bool>,
    pub backdate: Option<String>,
    pub key_id: Option<String>,
    pub requesters: Option<Vec<String>>,
    pub allowed_key_types: Option<Vec<String>>,
    pub min_rsa_bits: Option<u32>,
    pub on_disallowed: Option<String>,
    pub issued_dir: Option<PathBuf>,
    /// Credential sources the policy accepts: `token`, `client-cert`,
    /// `oidc:NAME` (default: all).
    pub auth: Option<Vec<String>>,
    /// Binds each user certificate to the address it was asked from: the
    /// critical option `source-address` = that address (`/32` or `/128`).
    pub pin_source_address: Option<bool>,
    /// Certificates may be renewed by proof of possession of their key.
    pub renewable: Option<bool>,
    /// How long after its first certificate a chain of renewals ends
    /// (required when `renewable`).
    pub renew_max_age: Option<String>,
    /// The `[webhook.NAME]`s asked before a certificate is issued (each may
    /// deny, or add fields templates use as `{webhook.NAME.FIELD}`).
    pub webhooks: Option<Vec<String>>,
    /// Certificates are issued only once approvers approve the request.
    pub approval: Option<ApprovalConfig>,
}

/// A policy's `approval` table as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalConfig {
    /// Who may approve: identity matchers (`oidc:corp:ops-*`, `token:lead`).
    pub approvers: Vec<String>,
    /// How many distinct approvers must approve (default 1).
    pub count: Option<u32>,
    /// How long a request stays open to approval (default `15m`).
    pub expires: Option<String>,
    /// A `[webhook.NAME]` told about each new request (chat, ticketing).
    pub notify: Option<String>,
}

/// A policy's approval rule, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRule {
    /// Who may approve (never the requester).
    pub approvers: Vec<IdentityMatcher>,
    /// How many distinct approvers must approve.
    pub count: u32,
    /// Seconds a request stays open to approval.
    pub expires: u64,
    /// The webhook told about new requests.
    pub notify: Option<String>,
}

/// Most approvers a rule may require.
const MAX_APPROVALS: u32 = 10;

/// Longest a request may stay open to approval: a week.
const MAX_APPROVAL_WAIT: u64 = 7 * 86_400;

impl PolicyConfig {
    pub(super) fn build(&self, name: &str) -> std::result::Result<Policy, String> {
        let cert_type = match self.cert_type.as_deref() {
            None | Some("user") => CertType::User,
            Some("host") => CertType::Host,
            Some(o) => return Err(format!("field `cert_type`: `{o}` is not `user` or `host`")),
        };
        let mut p = Policy::new(name, cert_type);
        p.valid_principals = self.valid_principals.clone();
        if let Some(v) = &p.valid_principals {
            if v.is_empty() || v.iter().any(String::is_empty) {
                return Err("field `valid_principals`: empty list or empty principal".into());
            }
        }
        p.default_valid_principals = self.default_valid_principals.clone().unwrap_or_default();
        p.allowed_valid_principals = globs(
            self.allowed_valid_principals.as_ref(),
            "allowed_valid_principals",
        )?;
        p.all_principals = self.all_principals.unwrap_or(false);
        p.critical_options = cert_options(self.critical_options.as_ref(), "critical_options")?;
        p.default_critical_options = cert_options(
            self.default_critical_options.as_ref(),
            "default_critical_options",
        )?;
        p.allowed_critical_options = self.allowed_critical_options.clone();
        p.extensions = cert_options(self.extensions.as_ref(), "extensions")?;
        p.default_extensions =
            cert_options(self.default_extensions.as_ref(), "default_extensions")?;
        p.allowed_extensions = self.allowed_extensions.clone();
        if let Some(t) = duration(self.ttl.as_ref(), "ttl")? {
            p.ttl = t;
            p.max_ttl = p.max_ttl.max(t);
        }
        if let Some(m) = duration(self.max_ttl.as_ref(), "max_ttl")? {
            p.max_ttl = m;
        } else if self.ttl.is_some() {
            p.max_ttl = p.ttl;
        }
        if let Some(m) = duration(self.max_start.as_ref(), "max_start")? {
            p.max_start = m;
        }
        p.allow_serial = self.allow_serial.unwrap_or(false);
        if let Some(b) = duration(self.backdate.as_ref(), "backdate")? {
            p.backdate = b;
        }
        p.key_id = self.key_id.clone();
        p.allow_key_id = self.allow_key_id.unwrap_or(false);
        p.requesters = matchers(self.requesters.as_ref(), "requesters")?;
        p.allowed_key_types = self.allowed_key_types.clone();
        if let Some(b) = self.min_rsa_bits {
            p.min_rsa_bits = b;
        }
        p.on_disallowed = match self.on_disallowed.as_deref() {
            None | Some("reject") => OnDisallowed::Reject,
            Some("drop") => OnDisallowed::Drop,
            Some(o) => {
                return Err(format!(
                    "field `on_disallowed`: `{o}` is not `reject` or `drop`"
                ))
            }
        };
        p.check().map_err(|e| match e {
            sshca_core::Error::Template(m) => m,
            other => other.to_string(),
        })?;
        Ok(p)
    }
}

impl PolicyConfig {
    /// The service's settings of a policy built as `policy`:
    /// `pin_source_address`, and `renew_max_age` when renewable.
    pub(super) fn service_settings(
        &self,
        policy: &Policy,
    ) -> std::result::Result<(bool, Option<u64>), String> {
        let pin = self.pin_source_address.unwrap_or(false);
        if pin && policy.cert_type != CertType::User {
            return Err(
                "field `pin_source_address`: only user certificates carry a \
                        `source-address`; this policy issues host certificates"
                    .into(),
            );
        }
        if pin && policy.critical_options.contains_key("source-address") {
            return Err(
                "field `pin_source_address`: the policy forces `source-address` in \
                        `critical_options`; use one or the other"
                    .into(),
            );
        }
        let renew_max_age = match (self.renewable.unwrap_or(false), &self.renew_max_age) {
            (true, Some(age)) => {
                Some(parse_ttl(age).map_err(|e| format!("field `renew_max_age`: {e}"))?)
            }
            (true, None) => {
                return Err(
                    "field `renew_max_age`: required with `renewable = true` (how long \
                            a chain of renewals may last, e.g. \"30d\")"
                        .into(),
                )
            }
            (false, Some(_)) => {
                return Err("field `renew_max_age`: set, but the policy is not `renewable`".into())
            }
            (false, None) => None,
        };
        Ok((pin, renew_max_age))
    }
}

impl PolicyConfig {
    /// The policy's webhooks and approval rule, checked against the
    /// config's `[webhook.NAME]` and `[oidc.NAME]` tables.
    pub(super) fn gates(
        &self,
        policy: &Policy,
        webhooks: &BTreeMap<String, toml::Value>,
        oidc: &BTreeMap<String, toml::Value>,
    ) -> std::result::Result<(Vec<String>, Option<ApprovalRule>), String> {
        let defined = || {
            if webhooks.is_empty() {
                "none".to_owned()
            } else {
                webhooks.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        };
        let listed = self.webhooks.clone().unwrap_or_default();
        for (i, w) in listed.iter().enumerate() {
            if !webhooks.contains_key(w) {
                return Err(format!(
                    "field `webhooks`: no [webhook.{w}] table (defined: {})",
                    defined()
                ));
            }
            if listed[..i].contains(w) {
                return Err(format!("field `webhooks`: `{w}` is listed twice"));
            }
        }
        if let Some(w) = policy
            .webhooks_used()
            .into_iter()
            .find(|w| !listed.iter().any(|l| l == w))
        {
            return Err(format!(
                "a template uses `{{webhook.{w}.…}}`, but `webhooks` does not list `{w}`"
            ));
        }
        if self.renewable.unwrap_or(false) && !listed.is_empty() {
            return Err(
                "field `webhooks`: a renewable policy would renew without asking its webhooks; \
                 use one or the other"
                    .into(),
            );
        }
        let Some(a) = &self.approval else {
            return Ok((listed, None));
        };
        if self.renewable.unwrap_or(false) {
            return Err(
                "field `approval`: a renewable policy would renew without approval; \
                 use one or the other"
                    .into(),
            );
        }
        let approvers = matchers(Some(&a.approvers), "approval.approvers")?.unwrap_or_default();
        if approvers.is_empty() {
            return Err("field `approval.approvers`: name at least one approver".into());
        }
        check_matcher_issuers(&approvers, "approval.approvers", oidc)?;
        let count = a.count.unwrap_or(1);
        if !(1..=MAX_APPROVALS).contains(&count) {
            return Err(format!(
                "field `approval.count`: {count} is not between 1 and {MAX_APPROVALS}"
            ));
        }
        let expires = duration(a.expires.as_ref(), "approval.expires")?.unwrap_or(900);
        if !(1..=MAX_APPROVAL_WAIT).contains(&expires) {
            return Err(format!(
                "field `approval.expires`: between 1s and 7d (got {expires} s)"
            ));
        }
        if let Some(n) = &a.notify {
            if !webhooks.contains_key(n) {
                return Err(format!(
                    "field `approval.notify`: no [webhook.{n}] table (defined: {})",
                    defined()
                ));
            }
        }
        Ok((
            listed,
            Some(ApprovalRule {
                approvers,
                count,
                expires,
                notify: a.notify.clone(),
            }),
        ))
    }
}
