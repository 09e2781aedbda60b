//! Group commit: one writer task per store takes every row waiting and
//! writes them in one transaction; each caller is answered only after the
//! commit. A failed batch drops the connection (a fresh one next time) and
//! fails every row in it.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::{unavailable, AuditEvent, IssuedCert, Recorded};
use sshca_signer::{Error, ErrorKind, Result};

/// One row to write, with where its result goes.
pub(crate) enum Job {
    Cert(IssuedCert, oneshot::Sender<Result<Recorded>>),
    Audit(AuditEvent, oneshot::Sender<Result<()>>),
}

impl Job {
    fn answer(self, r: &Result<Recorded>) {
        let copy = |e: &Error| Error::new(e.kind(), e.report());
        match (self, r) {
            (Job::Cert(_, tx), Ok(r)) => {
                let _ = tx.send(Ok(*r));
            }
            (Job::Audit(_, tx), Ok(_)) => {
                let _ = tx.send(Ok(()));
            }
            (Job::Cert(_, tx), Err(e)) => {
                let _ = tx.send(Err(copy(e)));
            }
            (Job::Audit(_, tx), Err(e)) => {
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

/// The handle of a running writer.
#[derive(Debug, Clone)]
pub(crate) struct Writer(mpsc::Sender<Job>);

impl Writer {
    /// Starts the writer task over `sink` (already connected).
    pub fn spawn(sink: impl BatchSink, max_batch: usize, timeout: Duration) -> Self {
        let max_batch = max_batch.max(1);
        let (tx, rx) = mpsc::channel(max_batch * 4);
        tokio::spawn(run(sink, rx, max_batch, timeout));
        Self(tx)
    }

    /// Sends the certificates and then the events, in order (so that rows
    /// keep their order in the table), and waits for every result.
    pub async fn submit_all(
        &self,
        certs: &[IssuedCert],
        events: &[AuditEvent],
    ) -> Result<(Vec<Recorded>, usize)> {
        let gone = || Error::new(ErrorKind::Unavailable, "store: the writer has stopped");
        let mut cert_rx = Vec::with_capacity(certs.len());
        for c in certs {
            let (tx, rx) = oneshot::channel();
            self.0
                .send(Job::Cert(c.clone(), tx))
                .await
                .map_err(|_| gone())?;
            cert_rx.push(rx);
        }
        let mut event_rx = Vec::with_capacity(events.len());
        for e in events {
            let (tx, rx) = oneshot::channel();
            self.0
                .send(Job::Audit(e.clone(), tx))
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
        self.0.send(job(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

async fn run(
    mut sink: impl BatchSink,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
    timeout: Duration,
) {
    let mut connected = true;
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
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
