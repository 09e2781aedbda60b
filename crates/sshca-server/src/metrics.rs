//! `/metrics`, in the Prometheus text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    policy: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    ca: String,
    outcome: String,
}

/// The service's counters and histograms.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    webhook: String,
    outcome: String,
}

#[derive(Debug)]
pub(crate) struct Metrics {
    webhook_calls: Family<WebhookLabels, Counter>,
    audit_backlog: Family<SinkLabels, Gauge>,
    audit_up: Family<SinkLabels, Gauge>,
    audit_delivered: Family<SinkLabels, Counter>,
    audit_dropped: Family<SinkLabels, Counter>,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    sign_seconds: Histogram,
    backend_calls: Family<BackendLabels, Counter>,
    store_write_seconds: Histogram,
    unauthenticated: Family<CodeLabels, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sshca");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by policy and outcome",
            requests.clone(),
        );
        let sign_seconds = Histogram::new(exponential_buckets(0.000_25, 2.0, 16));
        registry.register(
            "sign_duration_seconds",
            "Time to issue a certificate (policy, signature, store), in seconds",
            sign_seconds.clone(),
        );
        let backend_calls = Family::<BackendLabels, Counter>::default();
        registry.register(
            "backend_calls",
            "Signatures asked of the key backends, by CA and outcome",
            backend_calls.clone(),
        );
        let store_write_seconds = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        registry.register(
            "store_write_duration_seconds",
            "Time to commit a certificate row, in seconds",
            store_write_seconds.clone(),
        );
        let unauthenticated = Family::<CodeLabels, Counter>::default();
        registry.register(
            "unauthenticated",
            "Requests refused before an identity was established, by code",
            unauthenticated.clone(),
        );
        let webhook_calls = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_calls",
            "Webhook calls by webhook and outcome (allow, deny, error, notified)",
            webhook_calls.clone(),
        );
        let audit_backlog = Family::<SinkLabels, Gauge>::default();
        registry.register(
            "audit_sink_backlog",
            "Audit events this replica wrote that a sink has not taken yet",
            audit_backlog.clone(),
        );
        let audit_up = Family::<SinkLabels, Gauge>::default();
        registry.register(
            "audit_sink_up",
            "Whether the last delivery to an audit sink succeeded (1) or not (0)",
            audit_up.clone(),
        );
        let audit_delivered = Family::<SinkLabels, Counter>::default();
        registry.register(
            "audit_sink_delivered",
            "Audit events delivered to a sink",
            audit_delivered.clone(),
        );
        let audit_dropped = Family::<SinkLabels, Counter>::default();
        registry.register(
            "audit_sink_skipped",
            "Audit events a sink that is not required skipped because its backlog was full",
            audit_dropped.clone(),
        );
        Self {
            webhook_calls,
            audit_backlog,
            audit_up,
            audit_delivered,
            audit_dropped,
            registry,
            requests,
            sign_seconds,
            backend_calls,
            store_write_seconds,
            unauthenticated,
        }
    }

    /// `policy` is a configured policy name or `-`, never what a client
    /// typed (the label set stays bounded).
    pub fn request(&self, policy: &str, outcome: &str) {
        self.requests
            .get_or_create(&RequestLabels {
                policy: policy.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn signed(&self, seconds: f64) {
        self.sign_seconds.observe(seconds);
    }

    pub fn backend_call(&self, ca: &str, outcome: &str) {
        self.backend_calls
            .get_or_create(&BackendLabels {
                ca: ca.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn store_write(&self, seconds: f64) {
        self.store_write_seconds.observe(seconds);
    }

    /// A request refused before authentication; `code` is one of the
    /// service's own codes (bounded).
    pub fn unauthenticated(&self, code: &str) {
        self.unauthenticated
            .get_or_create(&CodeLabels {
                code: code.to_owned(),
            })
            .inc();
    }

    /// A call to webhook `webhook` ended with `outcome`.
    pub fn webhook_call(&self, webhook: &str, outcome: &str) {
        self.webhook_calls
            .get_or_create(&WebhookLabels {
                webhook: webhook.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    pub fn audit_sink(&self, sink: &str, up: bool, backlog: u64) {
        let l = SinkLabels {
            sink: sink.to_owned(),
        };
        self.audit_up.get_or_create(&l).set(i64::from(up));
        self.audit_backlog
            .get_or_create(&l)
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
    }

    pub fn audit_delivered(&self, sink: &str, n: u64) {
        self.audit_delivered
            .get_or_create(&SinkLabels {
                sink: sink.to_owned(),
            })
            .inc_by(n);
    }

    pub fn audit_dropped(&self, sink: &str, n: u64) {
        self.audit_dropped
            .get_or_create(&SinkLabels {
                sink: sink.to_owned(),
            })
            .inc_by(n);
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The authority's signatures and store writes, counted.
impl sshca_authority::Observer for Metrics {
    fn backend_call(&self, ca: &str, ok: bool) {
        Metrics::backend_call(self, ca, if ok { "ok" } else { "error" });
    }

    fn store_write(&self, seconds: f64) {
        Metrics::store_write(self, seconds);
    }

    fn signed(&self, seconds: f64) {
        Metrics::signed(self, seconds);
    }
}
