//! The `[webhook.NAME]` receivers, called over HTTPS: each call is a JSON
//! POST signed with `X-Sshca-Signature` (the audit sinks' header), its
//! answer `{"allow": bool, "reason": "...", "data": {...}}` read within
//! the webhook's `timeout`; redirects are not followed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use sshca::signer::Result;
use sshca_authority::gate::{Verdict, Webhooks};
use sshca_authority::unix_now;

use crate::audit::sinks::{Secret, SIGNATURE_HEADER};
use crate::config::WebhookConfig;
use crate::metrics::Metrics;

/// Largest answer read (bytes).
const MAX_ANSWER: usize = 64 * 1024;

struct Hook {
    url: String,
    client: reqwest::Client,
    secret: Secret,
    timeout: Duration,
    allow_on_error: bool,
}

/// The configured webhooks.
pub(crate) struct HttpWebhooks {
    hooks: BTreeMap<String, Arc<Hook>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for HttpWebhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpWebhooks")
            .field("hooks", &self.hooks.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A webhook's answer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    allow: bool,
    reason: Option<String>,
    data: Option<Map<String, Value>>,
}

impl HttpWebhooks {
    /// The webhooks of `cfg` (their secrets read, their clients built).
    pub fn open(cfg: &BTreeMap<String, WebhookConfig>, metrics: Arc<Metrics>) -> Result<Self> {
        let mut hooks = BTreeMap::new();
        for (name, w) in cfg {
            let what = format!("webhook `{name}`");
            hooks.insert(
                name.clone(),
                Arc::new(Hook {
                    url: w.url.clone(),
                    client: crate::tls::https_client(
                        w.ca_cert.as_deref(),
                        &format!("{what} CA (ca_cert)"),
                    )?,
                    secret: Secret::read(&w.secret_file, &what)?,
                    timeout: w.timeout(),
                    allow_on_error: w.allows_on_error(),
                }),
            );
        }
        Ok(Self { hooks, metrics })
    }
}

impl Hook {
    /// POSTs `body` and reads the answer's body (2xx only) within the
    /// timeout.
    async fn post(&self, body: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
        let call =
            async {
                let sig = self.secret.sign(unix_now(), &body);
                let mut resp = self
                    .client
                    .post(&self.url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(SIGNATURE_HEADER, sig)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| format!("cannot call it: {}", crate::tls::error_chain(&e)))?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(format!("it answered HTTP {}", status.as_u16()));
                }
                let mut got = Vec::new();
                while let Some(chunk) = resp.chunk().await.map_err(|e| {
                    format!("cannot read its answer: {}", crate::tls::error_chain(&e))
                })? {
                    if got.len() + chunk.len() > MAX_ANSWER {
                        return Err(format!("its answer is larger than {MAX_ANSWER} bytes"));
                    }
                    got.extend_from_slice(&chunk);
                }
                Ok(got)
            };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} s", self.timeout.as_secs())),
        }
    }
}

#[async_trait::async_trait]
impl Webhooks for HttpWebhooks {
    async fn call(&self, name: &str, call: &[u8]) -> Verdict {
        let Some(hook) = self.hooks.get(name) else {
            return Verdict::Failed {
                error: "it is not configured".into(),
                allow: false,
            };
        };
        let answer = hook.post(call.to_vec()).await.and_then(|body| {
            serde_json::from_slice::<Answer>(&body)
                .map_err(|e| format!("its answer is not {{\"allow\", \"reason\", \"data\"}}: {e}"))
        });
        let verdict = match answer {
            Ok(a) if a.allow => Verdict::Allow(a.data.unwrap_or_default()),
            Ok(a) => Verdict::Deny(a.reason.unwrap_or_else(|| "no reason given".into())),
            Err(error) => {
                tracing::warn!(webhook = %name, %error, "webhook call failed");
                Verdict::Failed {
                    error,
                    allow: hook.allow_on_error,
                }
            }
        };
        let outcome = match &verdict {
            Verdict::Allow(_) => "allow",
            Verdict::Deny(_) => "deny",
            Verdict::Failed { .. } => "error",
        };
        self.metrics.webhook_call(name, outcome);
        verdict
    }

    fn notify(&self, name: &str, call: Vec<u8>) {
        let Some(hook) = self.hooks.get(name).cloned() else {
            return;
        };
        let (name, metrics) = (name.to_owned(), self.metrics.clone());
        tokio::spawn(async move {
            // A notice's receiver need not answer {"allow": ...}: any 2xx
            // is taken.
            let outcome = match hook.post(call).await {
                Ok(_) => "notified",
                Err(error) => {
                    tracing::warn!(webhook = %name, %error, "webhook notice failed");
                    "error"
                }
            };
            metrics.webhook_call(&name, outcome);
        });
    }
}
