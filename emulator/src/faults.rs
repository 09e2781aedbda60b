//! Fault injection and request counters, shared by every emulated service.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::state::State;
use crate::Reply;

macro_rules! service_enum {
    ($($field:ident: $variant:ident = $ty:ty => $store:ty,)*) => {
        /// An emulated service: what counters and fault rules are keyed by.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Service {
            $(
                #[doc = concat!("`", stringify!($field), "`.")]
                $variant,
            )*
        }

        impl Service {
            /// Every service, in port order.
            pub const ALL: &'static [Service] = &[$(Service::$variant),*];

            /// The name in `/stats` and fault rules (`aws`, `gcp`, ...).
            pub fn name(self) -> &'static str {
                match self {
                    $(Service::$variant => <$ty as crate::service::Emulated>::NAME,)*
                }
            }
        }
    };
}
crate::service::for_each_service!(service_enum);

impl Service {
    /// The service of a name.
    pub fn parse(name: &str) -> Option<Service> {
        Service::ALL.iter().copied().find(|s| s.name() == name)
    }

    /// Every service's name, for messages (`aws, gcp, ...`).
    pub fn names() -> String {
        Service::ALL
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The error a fault makes a service return, shaped like that service's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultError {
    /// Throttling (AWS `ThrottlingException`, GCP 429 `RESOURCE_EXHAUSTED`,
    /// Azure 429 `Throttled`).
    Throttle,
    /// Service unavailable (HTTP 503).
    Unavailable,
    /// Internal error (HTTP 500).
    Internal,
}

/// One fault rule, as posted to the admin API's `/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// `aws`, `gcp`, `azure`, `ekm` or `*`.
    pub service: String,
    /// Operation name as counted by `/stats` (`Sign`, `asymmetricSign`,
    /// `sign`, ...); absent or `*` for every operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// For `ekm`: only this replica (0-based); absent for all replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<usize>,
    /// Added latency in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Error response to return instead of the real answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<FaultError>,
    /// Close the connection without answering.
    #[serde(default)]
    pub drop_connection: bool,
    /// Return a signature that does not verify.
    #[serde(default)]
    pub corrupt_signature: bool,
    /// Answer `307 Temporary Redirect` to this http(s) URL instead (a
    /// client must never follow it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<String>,
    /// Probability (0..=1) that a matching request is affected; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Affect only the next N matching requests, then expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

impl Fault {
    /// A rule for `service` (`aws`, `gcp`, `azure`, `ekm` or `*`) that does
    /// nothing yet: every operation, every replica, no effect, no expiry.
    /// Set the fields that matter with struct update syntax.
    pub fn new(service: &str) -> Self {
        Fault {
            service: service.into(),
            operation: None,
            replica: None,
            latency_ms: 0,
            error: None,
            drop_connection: false,
            corrupt_signature: false,
            redirect: None,
            rate: None,
            count: None,
        }
    }

    /// Checks the rule's values.
    pub fn validate(&self) -> Result<(), String> {
        if self.service != "*" && Service::parse(&self.service).is_none() {
            return Err(format!(
                "fault: unknown service {:?} ({} or *)",
                self.service,
                Service::names()
            ));
        }
        if let Some(r) = self.rate {
            if !(0.0..=1.0).contains(&r) || r.is_nan() {
                return Err(format!("fault: rate {r} is not between 0 and 1"));
            }
        }
        if self.latency_ms > 600_000 {
            return Err("fault: latency_ms above 600000".into());
        }
        if let Some(u) = &self.redirect {
            if !(u.starts_with("http://") || u.starts_with("https://"))
                || u.len() > 2048
                || u.chars().any(|c| c.is_control() || c == ' ')
            {
                return Err(format!(
                    "fault: redirect {u:?} is not an http(s) URL of at most 2048 characters"
                ));
            }
        }
        Ok(())
    }

    fn matches(&self, service: Service, op: &str, replica: Option<usize>) -> bool {
        (self.service == "*" || self.service == service.name())
            && self
                .operation
                .as_deref()
                .is_none_or(|o| o == "*" || o.eq_ignore_ascii_case(op))
            && match (self.replica, replica) {
                (Some(want), Some(got)) => want == got,
                (Some(_), None) => false,
                (None, _) => true,
            }
    }
}

/// What the faults decided for one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effect {
    /// Wait this long before answering.
    pub latency: Duration,
    /// Answer with this error.
    pub error: Option<FaultError>,
    /// Close the connection.
    pub drop_connection: bool,
    /// Corrupt the signature in the answer.
    pub corrupt_signature: bool,
    /// Answer with a redirect to this URL.
    pub redirect: Option<String>,
}

/// Most fault rules held at once; adding more is refused.
pub const MAX_RULES: usize = 256;

/// Fault rules and request counters.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Fault>>,
    stats: Mutex<BTreeMap<(Service, &'static str), u64>>,
}

fn chance(rate: f64) -> bool {
    let x = (OsRng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    x < rate
}

impl Faults {
    /// Adds rules, all or none: refused when the list would hold more than
    /// [`MAX_RULES`].
    pub fn add_all(&self, faults: Vec<Fault>) -> Result<(), String> {
        let mut rules = lock(&self.rules);
        if rules.len() + faults.len() > MAX_RULES {
            return Err(format!(
                "fault: at most {MAX_RULES} rules are held ({} now, {} more asked)",
                rules.len(),
                faults.len()
            ));
        }
        rules.extend(faults);
        Ok(())
    }

    /// Adds a rule (see [`Faults::add_all`]).
    pub fn add(&self, fault: Fault) -> Result<(), String> {
        self.add_all(vec![fault])
    }

    /// The current rules.
    pub fn list(&self) -> Vec<Fault> {
        lock(&self.rules).clone()
    }

    /// Removes every rule.
    pub fn clear(&self) {
        lock(&self.rules).clear();
    }

    /// Clears rules and counters.
    pub fn reset(&self) {
        self.clear();
        lock(&self.stats).clear();
    }

    /// Counts one request and decides its faults.
    pub fn on_request(&self, service: Service, op: &'static str, replica: Option<usize>) -> Effect {
        crate::requests::note_operation(op);
        *lock(&self.stats).entry((service, op)).or_default() += 1;
        let mut effect = Effect::default();
        let mut rules = lock(&self.rules);
        for rule in rules.iter_mut() {
            if !rule.matches(service, op, replica) || rule.count == Some(0) {
                continue;
            }
            if let Some(rate) = rule.rate {
                if !chance(rate) {
                    continue;
                }
            }
            if let Some(n) = rule.count.as_mut() {
                *n -= 1;
            }
            effect.latency += Duration::from_millis(rule.latency_ms);
            effect.error = effect.error.or(rule.error);
            effect.drop_connection |= rule.drop_connection;
            effect.corrupt_signature |= rule.corrupt_signature;
            if effect.redirect.is_none() {
                effect.redirect.clone_from(&rule.redirect);
            }
        }
        rules.retain(|r| r.count != Some(0));
        effect
    }

    /// Request counts per service and operation.
    pub fn stats(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for s in Service::ALL {
            out.entry(s.name().to_string()).or_default();
        }
        for ((service, op), n) in lock(&self.stats).iter() {
            out.entry(service.name().to_string())
                .or_default()
                .insert((*op).to_string(), *n);
        }
        out
    }

    /// Count of one operation.
    pub fn count(&self, service: &str, op: &str) -> u64 {
        let Some(service) = Service::parse(service) else {
            return 0;
        };
        lock(&self.stats)
            .iter()
            .filter(|((s, o), _)| *s == service && *o == op)
            .map(|(_, n)| *n)
            .sum()
    }
}

/// Locks a mutex, recovering the data if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits `d` to within a fraction of a millisecond, so an injected latency
/// of 20 ms is 20 ms and not the 21–22 ms of tokio's timer (1 ms ticks,
/// rounded up): the timer for all but the last 2 ms, then a blocking-pool
/// thread's sleep (a high-resolution timer) for the rest.
async fn precise_sleep(d: std::time::Duration) {
    let deadline = std::time::Instant::now() + d;
    let fine = std::time::Duration::from_millis(2);
    if d > fine {
        tokio::time::sleep(d - fine).await;
    }
    let rest = deadline.saturating_duration_since(std::time::Instant::now());
    if !rest.is_zero() {
        // A failed blocking task only shortens the wait.
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
    }
}

/// Applies the fault rules matching a request: waits out any added
/// latency, then `Err(reply)` when the request is to be dropped or answered
/// with an injected error (`on_error` puts it in the service's shape); else
/// `Ok(corrupt_signature)`.
pub(crate) async fn inject_faults(
    state: &State,
    service: Service,
    op: &'static str,
    replica: Option<usize>,
    on_error: impl FnOnce(FaultError) -> Reply,
) -> Result<bool, Reply> {
    let effect = state.faults.on_request(service, op, replica);
    if !effect.latency.is_zero() {
        precise_sleep(effect.latency).await;
    }
    if effect.drop_connection {
        return Err(Reply::Drop);
    }
    if let Some(to) = effect.redirect {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
        if let Ok(v) = hyper::header::HeaderValue::from_str(&to) {
            r.headers_mut().insert(hyper::header::LOCATION, v);
        }
        return Err(Reply::Send(r));
    }
    match effect.error {
        Some(e) => Err(on_error(e)),
        None => Ok(effect.corrupt_signature),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(json: &str) -> Fault {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn count_limited_rule_expires() {
        let f = Faults::default();
        f.add(fault(
            r#"{"service":"aws","operation":"Sign","error":"throttle","count":2}"#,
        ))
        .unwrap();
        assert_eq!(f.on_request(Service::Aws, "GetPublicKey", None).error, None);
        assert_eq!(
            f.on_request(Service::Aws, "Sign", None).error,
            Some(FaultError::Throttle)
        );
        assert_eq!(
            f.on_request(Service::Aws, "Sign", None).error,
            Some(FaultError::Throttle)
        );
        assert_eq!(f.on_request(Service::Aws, "Sign", None).error, None);
        assert!(f.list().is_empty());
        assert_eq!(f.count("aws", "Sign"), 3);
    }

    #[test]
    fn replica_and_rate() {
        let f = Faults::default();
        f.add(fault(
            r#"{"service":"ekm","replica":1,"drop_connection":true}"#,
        ))
        .unwrap();
        f.add(fault(
            r#"{"service":"gcp","corrupt_signature":true,"rate":0}"#,
        ))
        .unwrap();
        assert!(!f.on_request(Service::Ekm, "sign", Some(0)).drop_connection);
        assert!(f.on_request(Service::Ekm, "sign", Some(1)).drop_connection);
        assert!(
            !f.on_request(Service::Gcp, "asymmetricSign", None)
                .corrupt_signature
        );
        assert!(fault(r#"{"service":"x"}"#).validate().is_err());
        assert!(serde_json::from_str::<Fault>(r#"{"service":"aws","bogus":1}"#).is_err());
    }

    #[test]
    fn the_rule_list_is_bounded() {
        let f = Faults::default();
        let one = || fault(r#"{"service":"aws","latency_ms":1}"#);
        f.add_all((0..MAX_RULES - 1).map(|_| one()).collect())
            .unwrap();
        // All or none: two more would overflow, so neither is added.
        let e = f.add_all(vec![one(), one()]).unwrap_err();
        assert!(e.contains("at most 256 rules"), "{e}");
        assert_eq!(f.list().len(), MAX_RULES - 1);
        f.add(one()).unwrap();
        assert!(f.add(one()).is_err());
        f.clear();
        f.add(one()).unwrap();
    }

    #[test]
    fn redirect_rules_are_checked() {
        let ok = fault(r#"{"service":"ekm","redirect":"https://127.0.0.1:1/v1/health"}"#);
        assert!(ok.validate().is_ok());
        let f = Faults::default();
        f.add(ok).unwrap();
        assert_eq!(
            f.on_request(Service::Ekm, "health", Some(0))
                .redirect
                .as_deref(),
            Some("https://127.0.0.1:1/v1/health")
        );
        for bad in ["ftp://x", "https://a b", "javascript:alert(1)"] {
            let j = format!(r#"{{"service":"ekm","redirect":"{bad}"}}"#);
            assert!(fault(&j).validate().is_err(), "{bad}");
        }
    }
}
