//! Group commit: one writer task per store takes every row waiting and
//! writes them in one transaction; each caller is answered only after the
//! commit. A failed batch drops the connection (a fresh one next time) and
//! fails every row in it.
//!
//! Certificate rows and audit rows wait in two queues: a flood of audit
//! rows (refused requests) never fills the queue a certificate waits in,
//! and each batch takes the waiting certificates first.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::{unavailable, AuditEvent, IssuedCert, Recorded};
use sshca_signer::{Error, ErrorKind, Result};

/// An audit row copied from another store as it was (its JSON and its
/// link, both `None` for a row from before the chains).
pub(crate) struct Copied {
    pub body: Option<String>,
    pub link: Option<crate::ChainLink>,
}

/// One row to write, with where its result goes. An audit event without
/// [`Copied`] is new: it is appended to this store's chain.
pub(crate) enum Job {
    /// A certificate, with the event that records its issuance (written
    /// in the same transaction, only when the certificate went in).
    Cert(
        IssuedCert,
        Option<AuditEvent>,
        oneshot::Sender<Result<Recorded>>,
    ),
    Audit(AuditEvent, Option<Copied>, oneshot::Sender<Result<()>>),
}

impl Job {
    fn answer(self, r: &Result<Recorded>) {
        let copy = |e: &Error| Error::new(e.kind(), e.report());
        match (self, r) {
            (Job::Cert(_, _, tx), Ok(r)) => {
                let _ = tx.send(Ok(*r));
            }
            (Job::Audit(_, _, tx), Ok(_)) => {
                let _ = tx.send(Ok(()));
            }
            (Job::Cert(_, _, tx), Err(e)) => {
                let _ = tx.send(Err(copy(e)));
            }
            (Job::Audit(_, _, tx), Err(e)) => {
                let _ = tx.send(Err(copy(e)));
            }
        }
    }
}

/// A database connection the writer writes batches through.
#[async_trait::async_trait]
pub(crate) trait BatchSink: Send + 'static {
    /// Opens a connection (again).
    async fn connect(&mut self) -> Result<()>;
    /// Writes the batch in one transaction on the open connection; one
    /// result per job.
    async fn write(&mut self, batch: &[Job]) -> Result<Vec<Recorded>>;
    /// Forgets the connection (after an error).
    async fn reset(&mut self);
}

/// The handle of a running writer: the certificate queue and the audit
/// queue.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    certs: mpsc::Sender<Job>,
    audit: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task over `sink` (already connected).
    pub fn spawn(sink: impl BatchSink, max_batch: usize, timeout: Duration) -> Self {
        let max_batch = max_batch.max(1);
        let (certs, cert_rx) = mpsc::channel(max_batch * 4);
        let (audit, audit_rx) = mpsc::channel(max_batch * 4);
        tokio::spawn(run(sink, cert_rx, audit_rx, max_batch, timeout));
        Self { certs, audit }
    }

    /// The queue a job waits in.
    fn queue(&self, job: &Job) -> &mpsc::Sender<Job> {
        match job {
            Job::Cert(..) => &self.certs,
            Job::Audit(..) => &self.audit,
        }
    }

    /// Sends the certificates and then the events, in order (so that rows
    /// keep their order in the table), and waits for every result.
    pub async fn submit_all(
        &self,
        certs: &[IssuedCert],
        events: &[crate::AuditRow],
    ) -> Result<(Vec<Recorded>, usize)> {
        let gone = || Error::new(ErrorKind::Unavailable, "store: the writer has stopped");
        let mut cert_rx = Vec::with_capacity(certs.len());
        for c in certs {
            let (tx, rx) = oneshot::channel();
            self.certs
                .send(Job::Cert(c.clone(), None, tx))
                .await
                .map_err(|_| gone())?;
            cert_rx.push(rx);
        }
        let mut event_rx = Vec::with_capacity(events.len());
        for e in events {
            let (tx, rx) = oneshot::channel();
            self.audit
                .send(Job::Audit(
                    e.event.clone(),
                    Some(Copied {
                        body: e.body.clone(),
                        link: e.link.clone(),
                    }),
                    tx,
                ))
                .await
                .map_err(|_| gone())?;
            event_rx.push(rx);
        }
        let mut recorded = Vec::with_capacity(certs.len());
        for rx in cert_rx {
            recorded.push(rx.await.map_err(|_| gone())??);
        }
        for rx in event_rx {
            rx.await.map_err(|_| gone())??;
        }
        Ok((recorded, events.len()))
    }

    /// Sends a job and waits for its result.
    pub async fn submit<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T>>) -> Job,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let gone = || Error::new(ErrorKind::Unavailable, "store: the writer has stopped");
        let job = job(tx);
        self.queue(&job).send(job).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

/// The next job: a certificate when one waits, else an audit row; `None`
/// once both queues are closed and empty.
async fn next(certs: &mut mpsc::Receiver<Job>, audit: &mut mpsc::Receiver<Job>) -> Option<Job> {
    tokio::select! {
        biased;
        Some(job) = certs.recv() => Some(job),
        Some(job) = audit.recv() => Some(job),
        else => None,
    }
}

async fn run(
    mut sink: impl BatchSink,
    mut certs: mpsc::Receiver<Job>,
    mut audit: mpsc::Receiver<Job>,
    max_batch: usize,
    timeout: Duration,
) {
    let mut connected = true;
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = next(&mut certs, &mut audit).await {
        batch.push(first);
        // Every certificate waiting first, then audit rows.
        while batch.len() < max_batch {
            match certs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        while batch.len() < max_batch {
            match audit.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let result = async {
            if !connected {
                sink.connect().await?;
                connected = true;
            }
            sink.write(&batch).await
        };
        let result = match tokio::time::timeout(timeout, result).await {
            Ok(r) => r,
            Err(elapsed) => Err(unavailable("the database did not answer in time", elapsed)),
        };
        match result {
            Ok(results) => {
                for (job, r) in batch.drain(..).zip(results) {
                    job.answer(&Ok(r));
                }
            }
            Err(err) => {
                tracing::warn!(error = %err.report(), rows = batch.len(), "store write failed");
                sink.reset().await;
                connected = false;
                let err = Err(err);
                batch.drain(..).for_each(|j| j.answer(&err));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A sink that remembers, batch by batch, what it was given.
    struct Recording(Arc<Mutex<Vec<(usize, usize)>>>);

    #[async_trait::async_trait]
    impl BatchSink for Recording {
        async fn connect(&mut self) -> Result<()> {
            Ok(())
        }
        async fn write(&mut self, batch: &[Job]) -> Result<Vec<Recorded>> {
            let certs = batch.iter().filter(|j| matches!(j, Job::Cert(..))).count();
            self.0.lock().unwrap().push((certs, batch.len() - certs));
            tokio::time::sleep(Duration::from_millis(2)).await;
            Ok(vec![Recorded::Stored; batch.len()])
        }
        async fn reset(&mut self) {}
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_audit_rows_does_not_hold_up_a_certificate() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let w = Writer::spawn(Recording(batches.clone()), 8, Duration::from_secs(5));
        let mut flood = tokio::task::JoinSet::new();
        for n in 0..400u64 {
            let w = w.clone();
            flood.spawn(async move {
                w.submit(|tx| Job::Audit(crate::conformance::event(n), None, tx))
                    .await
                    .unwrap();
            });
        }
        // Let the flood fill the audit queue.
        while batches.lock().unwrap().len() < 2 {
            tokio::task::yield_now().await;
        }
        let written_before = batches.lock().unwrap().len();
        let recorded = w
            .submit(|tx| Job::Cert(crate::conformance::cert(1, "ci"), None, tx))
            .await
            .unwrap();
        assert_eq!(recorded, Recorded::Stored);
        let seen = batches.lock().unwrap().clone();
        let at = seen.iter().position(|(c, _)| *c == 1).unwrap();
        // Only the batch being written when it arrived went first: not the
        // hundreds of audit rows queued ahead of it.
        assert!(at <= written_before + 2, "batch {at} of {seen:?}");
        while flood.join_next().await.is_some() {}
        let total: usize = batches.lock().unwrap().iter().map(|(_, a)| a).sum();
        assert_eq!(total, 400);
    }
}
