//! Audit sinks: each `[audit.NAME]` gets this replica's audit chain, in
//! order, from the store. The store is the queue: an event is durable in
//! its chain before any sink sees it, each sink keeps its place (the last
//! place delivered) in `data_dir/audit/NAME.pos`, and a sink that is down
//! catches up in order when it is back, across restarts too. `/metrics`
//! says how far behind each sink is; a `required` sink that is down (or
//! too far behind) stops issuance with 503 `audit_unavailable`. The
//! chain's head goes to every sink every `head_interval`, so a cut tail is
//! found later.

pub(crate) mod sinks;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sshca::signer::{Error, ErrorKind, Result};
use sshca_store::Store;
use tokio::sync::Notify;

use crate::config::AuditSinkConfig;
use crate::metrics::Metrics;
pub(crate) use sinks::Sink;

/// Longest wait between two looks at the store when nothing woke a sink.
const POLL: Duration = Duration::from_secs(1);
/// Longest wait between two attempts at a sink that is down.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a sink lets events gather before it reads them again, when it
/// was woken or has just delivered less than a whole batch: under load it
/// delivers batches, not one event at a time.
const GATHER: Duration = Duration::from_millis(50);

/// One sink's state, shared by its worker and the request path.
#[derive(Debug)]
struct SinkState {
    name: String,
    required: bool,
    max_backlog: u64,
    /// The last attempt delivered (or there was nothing to deliver).
    up: AtomicBool,
    /// The last place delivered.
    delivered: AtomicU64,
    /// The newest place seen in the chain.
    head: AtomicU64,
}

impl SinkState {
    fn backlog(&self) -> u64 {
        self.head
            .load(Ordering::Relaxed)
            .saturating_sub(self.delivered.load(Ordering::Relaxed))
    }
}

/// The sinks of this replica.
#[derive(Debug, Default)]
pub(crate) struct Audit {
    sinks: Vec<Arc<SinkState>>,
    wake: Arc<Notify>,
    /// Bumped by SIGHUP: file sinks reopen their file.
    reopen: Arc<AtomicU64>,
    /// Set when the service stops: the workers end.
    stop: Option<tokio::sync::watch::Sender<bool>>,
}

impl Audit {
    /// Starts a worker per sink over this replica's chain.
    pub async fn start(
        configs: &std::collections::BTreeMap<String, AuditSinkConfig>,
        store: Arc<dyn Store>,
        replica: &str,
        data_dir: Option<&Path>,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        let mut audit = Audit::default();
        if configs.is_empty() {
            return Ok(audit);
        }
        let dir = data_dir
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidInput,
                    "[audit]: the sinks keep their place in [server] data_dir: set it",
                )
            })?
            .join("audit");
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io("cannot create the audit directory", &dir, &e))?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        audit.stop = Some(stop);
        let head = store.audit_head(replica).await?.map_or(0, |h| h.seq);
        for (name, cfg) in configs {
            let pos_file = dir.join(format!("{name}.pos"));
            // A new sink starts at the chain's present head.
            let delivered = match read_pos(&pos_file)? {
                Some(p) => p,
                None => {
                    write_pos(&pos_file, head)?;
                    head
                }
            };
            let sink = Sink::open(name, cfg, audit.reopen.clone())?;
            let state = Arc::new(SinkState {
                name: name.clone(),
                required: cfg.required,
                max_backlog: cfg.max_backlog(),
                up: AtomicBool::new(true),
                delivered: AtomicU64::new(delivered),
                head: AtomicU64::new(head.max(delivered)),
            });
            metrics.audit_sink(name, true, state.backlog());
            let worker = Worker {
                state: state.clone(),
                sink,
                store: store.clone(),
                replica: replica.to_owned(),
                pos_file,
                batch: cfg.batch(),
                head_interval: cfg.head_interval(),
                wake: audit.wake.clone(),
                metrics: metrics.clone(),
                stopped: stopped.clone(),
            };
            tokio::spawn(worker.run());
            audit.sinks.push(state);
        }
        Ok(audit)
    }

    /// `Err(NAME)` when a required sink cannot take events now: it is down
    /// or its backlog is full.
    pub fn ready(&self) -> std::result::Result<(), String> {
        for s in &self.sinks {
            if s.required && (!s.up.load(Ordering::Relaxed) || s.backlog() >= s.max_backlog) {
                return Err(s.name.clone());
            }
        }
        Ok(())
    }

    /// Something was written to the chain: the sinks look now.
    pub fn wake(&self) {
        if !self.sinks.is_empty() {
            self.wake.notify_waiters();
        }
    }

    /// Ends the workers (the service is stopping); what they have not
    /// delivered waits in the store for the next start.
    pub fn stop(&self) {
        if let Some(s) = &self.stop {
            let _ = s.send(true);
        }
    }

    /// File sinks reopen their file (after logrotate moved it).
    pub fn reopen(&self) {
        self.reopen.fetch_add(1, Ordering::Relaxed);
        self.wake();
    }
}

fn read_pos(path: &Path) -> Result<Option<u64>> {
    match std::fs::read_to_string(path) {
        Ok(t) => t.trim().parse().map(Some).map_err(|_| {
            Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{}: not a place in the audit chain (a number); remove it to start the sink at the chain's head",
                    path.display()
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("cannot read the audit sink's place", path, &e)),
    }
}

fn write_pos(path: &Path, pos: u64) -> Result<()> {
    let tmp = path.with_extension("pos.tmp");
    std::fs::write(&tmp, format!("{pos}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Error::io("cannot write the audit sink's place", path, &e))
}

struct Worker {
    state: Arc<SinkState>,
    sink: Sink,
    store: Arc<dyn Store>,
    replica: String,
    pos_file: PathBuf,
    batch: usize,
    head_interval: Duration,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    stopped: tokio::sync::watch::Receiver<bool>,
}

impl Worker {
    /// Waits `d` (or until woken, with `woken`); `false` when the service
    /// is stopping.
    async fn pause(
        &mut self,
        d: Duration,
        woken: Option<tokio::sync::futures::Notified<'_>>,
    ) -> bool {
        if *self.stopped.borrow() {
            return false;
        }
        let stopped = &mut self.stopped;
        tokio::select! {
            _ = stopped.changed() => return false,
            _ = tokio::time::sleep(d) => {}
            _ = async {
                match woken {
                    Some(w) => w.await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        !*self.stopped.borrow()
    }

    async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        let mut last_head: Option<Instant> = None;
        let mut head_hash: Option<(u64, String)> = None;
        let wake = self.wake.clone();
        loop {
            if *self.stopped.borrow() {
                return;
            }
            // Registered before looking, so a wake during the look counts.
            let woken = wake.notified();
            let delivered = self.state.delivered.load(Ordering::Relaxed);
            let limit = u32::try_from(self.batch).unwrap_or(u32::MAX);
            let rows = match self
                .store
                .audit_chain_rows(&self.replica, delivered, limit)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(sink = %self.state.name, error = %e.report(), "cannot read the audit chain");
                    if !self.pause(backoff, None).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let Some(last) = rows.last().and_then(|r| r.link.clone()) else {
                let due = last_head.is_none_or(|t| t.elapsed() >= self.head_interval);
                if let (true, Some((seq, hash))) = (due, &head_hash) {
                    match self.sink.deliver_head(&self.replica, *seq, hash).await {
                        Ok(()) => last_head = Some(Instant::now()),
                        Err(e) => {
                            tracing::warn!(sink = %self.state.name, error = %e, "cannot write the chain head")
                        }
                    }
                }
                if !self.pause(POLL, Some(woken)).await {
                    return;
                }
                if !self.pause(GATHER, None).await {
                    return;
                }
                if let Some(h) = self.refresh_head().await {
                    head_hash = Some(h);
                }
                continue;
            };
            self.state.head.fetch_max(last.seq, Ordering::Relaxed);
            let lines: Vec<String> = rows
                .iter()
                .map(|r| {
                    r.body.clone().unwrap_or_else(|| {
                        sshca_store::chain::event_json(&r.event).unwrap_or_default()
                    })
                })
                .collect();
            match self.sink.deliver(&lines).await {
                Ok(()) => {
                    self.state.delivered.store(last.seq, Ordering::Relaxed);
                    if let Err(e) = write_pos(&self.pos_file, last.seq) {
                        tracing::warn!(sink = %self.state.name, error = %e.report(), "cannot keep the sink's place");
                    }
                    head_hash = Some((last.seq, last.hash.clone()));
                    self.state.up.store(true, Ordering::Relaxed);
                    backoff = Duration::from_millis(100);
                    self.metrics
                        .audit_delivered(&self.state.name, lines.len() as u64);
                    // Caught up: let the next events gather rather than
                    // deliver them one at a time.
                    if rows.len() < self.batch && !self.pause(GATHER, None).await {
                        return;
                    }
                }
                Err(e) => {
                    if self.state.up.swap(false, Ordering::Relaxed) {
                        tracing::warn!(sink = %self.state.name, error = %e, "the audit sink is down; events wait in the store");
                    }
                    // The backlog counts what was written meanwhile.
                    let _ = self.refresh_head().await;
                    if !self.pause(backoff, None).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            self.skip_if_full();
            self.metrics.audit_sink(
                &self.state.name,
                self.state.up.load(Ordering::Relaxed),
                self.state.backlog(),
            );
        }
    }

    /// The newest place of the chain (so that the backlog counts events
    /// not read yet); its hash when the sink has delivered up to it.
    async fn refresh_head(&self) -> Option<(u64, String)> {
        let mut caught_up = None;
        if let Ok(Some(h)) = self.store.audit_head(&self.replica).await {
            self.state.head.fetch_max(h.seq, Ordering::Relaxed);
            if h.seq == self.state.delivered.load(Ordering::Relaxed) {
                caught_up = Some((h.seq, h.hash));
            }
        }
        self.metrics.audit_sink(
            &self.state.name,
            self.state.up.load(Ordering::Relaxed),
            self.state.backlog(),
        );
        caught_up
    }

    /// A sink that is not required and is past its backlog skips the
    /// oldest events (counted); a required one keeps them all and stops
    /// issuance instead.
    fn skip_if_full(&self) {
        let s = &self.state;
        if s.required || s.backlog() <= s.max_backlog {
            return;
        }
        let head = s.head.load(Ordering::Relaxed);
        let to = head - s.max_backlog;
        let skipped = to.saturating_sub(s.delivered.swap(to, Ordering::Relaxed));
        if let Err(e) = write_pos(&self.pos_file, to) {
            tracing::warn!(sink = %s.name, error = %e.report(), "cannot keep the sink's place");
        }
        tracing::warn!(sink = %s.name, skipped, "the audit sink's backlog is full: the oldest events were skipped");
        self.metrics.audit_dropped(&s.name, skipped);
    }
}
