//! SQLite, embedded: WAL, `synchronous=FULL`, one writer that commits the
//! rows of concurrent requests together (group commit: one sync for many
//! certificates), readers on a small pool.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite};
use tokio::sync::{mpsc, oneshot};

use crate::{
    from_db, to_db, unavailable, AuditEvent, CertQuery, IssuedCert, Recorded, Store, StoreOptions,
};
use sshca_signer::{Error, ErrorKind, Result};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// A store in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    readers: SqlitePool,
    writer: mpsc::Sender<Job>,
}

enum Job {
    Cert(IssuedCert, oneshot::Sender<Result<Recorded>>),
    Audit(AuditEvent, oneshot::Sender<Result<()>>),
}

impl Job {
    fn fail(self, e: &Error) {
        let copy = || Error::new(e.kind(), e.report());
        match self {
            Job::Cert(_, tx) => {
                let _ = tx.send(Err(copy()));
            }
            Job::Audit(_, tx) => {
                let _ = tx.send(Err(copy()));
            }
        }
    }
}

impl SqliteStore {
    /// Opens (or creates) the database at `path` and brings its schema up to
    /// date.
    pub async fn open(path: &Path, options: &StoreOptions) -> Result<Self> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "store sqlite:{shown}: the directory {} does not exist",
                        dir.display()
                    ),
                ));
            }
        }
        let connect = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|e| unavailable("cannot configure SQLite", e))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.write_timeout);
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(options.write_timeout)
            .connect_with(connect.clone())
            .await
            .map_err(|e| open_error(&shown, e))?;
        MIGRATIONS
            .run(&readers)
            .await
            .map_err(|e| unavailable(&format!("cannot migrate sqlite:{shown}"), e))?;
        let conn = SqliteConnection::connect_with(&connect)
            .await
            .map_err(|e| open_error(&shown, e))?;
        let (tx, rx) = mpsc::channel(options.max_batch.max(1) * 4);
        tokio::spawn(writer(conn, connect, rx, options.max_batch.max(1)));
        Ok(Self {
            path: path.to_owned(),
            readers,
            writer: tx,
        })
    }

    async fn submit<T>(&self, job: impl FnOnce(oneshot::Sender<Result<T>>) -> Job) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let gone = || Error::new(ErrorKind::Unavailable, "store: the writer has stopped");
        self.writer.send(job(tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

fn open_error(shown: &str, e: sqlx::Error) -> Error {
    unavailable(&format!("cannot open sqlite:{shown}"), e)
}

/// The single writer: takes every job waiting, writes them in one
/// transaction, and answers each only after the commit.
async fn writer(
    conn: SqliteConnection,
    connect: SqliteConnectOptions,
    mut rx: mpsc::Receiver<Job>,
    max_batch: usize,
) {
    let mut conn = Some(conn);
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if conn.is_none() {
            match SqliteConnection::connect_with(&connect).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    let err = unavailable("cannot reopen the database", e);
                    tracing::warn!(error = %err.report(), "store write failed");
                    batch.drain(..).for_each(|j| j.fail(&err));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        match write_batch(c, &batch).await {
            Ok(results) => {
                for (job, r) in batch.drain(..).zip(results) {
                    match job {
                        Job::Cert(_, tx) => {
                            let _ = tx.send(Ok(r));
                        }
                        Job::Audit(_, tx) => {
                            let _ = tx.send(Ok(()));
                        }
                    }
                }
            }
            Err(err) => {
                tracing::warn!(error = %err.report(), rows = batch.len(), "store write failed");
                let _ = sqlx::query("ROLLBACK").execute(&mut *c).await;
                // A fresh connection next time, in case this one is broken.
                conn = None;
                batch.drain(..).for_each(|j| j.fail(&err));
            }
        }
    }
}

/// One transaction for the whole batch: one multi-row INSERT for the
/// certificates (RETURNING tells which rows went in), one for the audit
/// rows, so a batch costs three round trips to SQLite whatever its size.
async fn write_batch(c: &mut SqliteConnection, batch: &[Job]) -> Result<Vec<Recorded>> {
    let write = |e| unavailable("cannot write to the database", e);
    let certs: Vec<&IssuedCert> = batch
        .iter()
        .filter_map(|j| match j {
            Job::Cert(cert, _) => Some(cert),
            Job::Audit(..) => None,
        })
        .collect();
    let events: Vec<&AuditEvent> = batch
        .iter()
        .filter_map(|j| match j {
            Job::Audit(e, _) => Some(e),
            Job::Cert(..) => None,
        })
        .collect();
    let mut principals = Vec::with_capacity(certs.len());
    for cert in &certs {
        principals.push(serde_json::to_string(&cert.principals).map_err(|e| {
            Error::new(ErrorKind::Internal, "cannot encode principals").with_source(e)
        })?);
    }
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *c)
        .await
        .map_err(write)?;
    // (CA, serial) of the rows that went in, in VALUES order.
    let mut inserted = std::collections::HashSet::new();
    // SQLite allows 32766 bound values per statement: 12 per row.
    for (chunk, principals) in certs.chunks(1000).zip(principals.chunks(1000)) {
        let mut b: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO certs (ca_fingerprint, serial, key_id, cert_type, principals, \
             valid_after, valid_before, subject_fingerprint, requester, policy, issued_at, \
             certificate) ",
        );
        b.push_values(
            chunk.iter().zip(principals),
            |mut row, (cert, principals)| {
                row.push_bind(&cert.ca_fingerprint)
                    .push_bind(to_db(cert.serial))
                    .push_bind(&cert.key_id)
                    .push_bind(&cert.cert_type)
                    .push_bind(principals)
                    .push_bind(to_db(cert.valid_after))
                    .push_bind(to_db(cert.valid_before))
                    .push_bind(&cert.subject_fingerprint)
                    .push_bind(&cert.requester)
                    .push_bind(&cert.policy)
                    .push_bind(to_db(cert.issued_at))
                    .push_bind(&cert.certificate);
            },
        );
        b.push(" ON CONFLICT (ca_fingerprint, serial) DO NOTHING RETURNING ca_fingerprint, serial");
        for r in b.build().fetch_all(&mut *c).await.map_err(write)? {
            let ca: String = r.try_get("ca_fingerprint").map_err(write)?;
            let serial: i64 = r.try_get("serial").map_err(write)?;
            inserted.insert((ca, from_db(serial)));
        }
    }
    for chunk in events.chunks(2000) {
        let mut b: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO audit (at, request_id, identity, auth_source, policy, status, code, reason) ",
        );
        b.push_values(chunk, |mut row, e| {
            row.push_bind(to_db(e.at))
                .push_bind(&e.request_id)
                .push_bind(&e.identity)
                .push_bind(&e.auth_source)
                .push_bind(&e.policy)
                .push_bind(i64::from(e.status))
                .push_bind(&e.code)
                .push_bind(&e.reason);
        });
        b.build().execute(&mut *c).await.map_err(write)?;
    }
    sqlx::query("COMMIT")
        .execute(&mut *c)
        .await
        .map_err(|e| unavailable("cannot commit to the database", e))?;
    // The first job with a given (CA, serial) is the row that went in; a
    // second one in the same batch, like one already in the table, is taken.
    Ok(batch
        .iter()
        .map(|j| match j {
            Job::Cert(cert, _) => {
                if inserted.remove(&(cert.ca_fingerprint.clone(), cert.serial)) {
                    Recorded::Stored
                } else {
                    Recorded::SerialTaken
                }
            }
            Job::Audit(..) => Recorded::Stored,
        })
        .collect())
}

fn cert_row(r: &SqliteRow) -> std::result::Result<IssuedCert, sqlx::Error> {
    let principals: String = r.try_get("principals")?;
    Ok(IssuedCert {
        ca_fingerprint: r.try_get("ca_fingerprint")?,
        serial: from_db(r.try_get("serial")?),
        key_id: r.try_get("key_id")?,
        cert_type: r.try_get("cert_type")?,
        principals: serde_json::from_str(&principals).map_err(|e| sqlx::Error::ColumnDecode {
            index: "principals".into(),
            source: Box::new(e),
        })?,
        valid_after: from_db(r.try_get("valid_after")?),
        valid_before: from_db(r.try_get("valid_before")?),
        subject_fingerprint: r.try_get("subject_fingerprint")?,
        requester: r.try_get("requester")?,
        policy: r.try_get("policy")?,
        issued_at: from_db(r.try_get("issued_at")?),
        certificate: r.try_get("certificate")?,
    })
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn record(&self, cert: &IssuedCert) -> Result<Recorded> {
        let cert = cert.clone();
        self.submit(|tx| Job::Cert(cert, tx)).await
    }

    async fn audit(&self, event: &AuditEvent) -> Result<()> {
        let event = event.clone();
        self.submit(|tx| Job::Audit(event, tx)).await
    }

    async fn certs(&self, q: &CertQuery) -> Result<Vec<IssuedCert>> {
        let mut b: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT * FROM certs WHERE 1=1");
        if let Some(v) = &q.ca_fingerprint {
            b.push(" AND ca_fingerprint = ").push_bind(v.clone());
        }
        if let Some(v) = q.serial {
            b.push(" AND serial = ").push_bind(to_db(v));
        }
        if let Some(v) = &q.key_id {
            b.push(" AND key_id = ").push_bind(v.clone());
        }
        if let Some(v) = &q.requester {
            b.push(" AND requester = ").push_bind(v.clone());
        }
        if let Some(v) = &q.principal {
            b.push(" AND EXISTS (SELECT 1 FROM json_each(certs.principals) WHERE value = ")
                .push_bind(v.clone())
                .push(")");
        }
        b.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(q.effective_limit()));
        let rows = b
            .build()
            .fetch_all(&self.readers)
            .await
            .map_err(|e| unavailable("cannot read certificates", e))?;
        rows.iter()
            .map(|r| cert_row(r).map_err(|e| unavailable("cannot read a certificate row", e)))
            .collect()
    }

    async fn audit_events(&self, limit: u32) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query("SELECT * FROM audit ORDER BY id DESC LIMIT ?")
            .bind(i64::from(limit.clamp(1, CertQuery::MAX_LIMIT)))
            .fetch_all(&self.readers)
            .await
            .map_err(|e| unavailable("cannot read the audit table", e))?;
        rows.iter()
            .map(|r| {
                let status: i64 = r.try_get("status")?;
                Ok(AuditEvent {
                    at: from_db(r.try_get("at")?),
                    request_id: r.try_get("request_id")?,
                    identity: r.try_get("identity")?,
                    auth_source: r.try_get("auth_source")?,
                    policy: r.try_get("policy")?,
                    status: u16::try_from(status).unwrap_or(0),
                    code: r.try_get("code")?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(|e| unavailable("cannot read an audit row", e))
    }

    async fn health(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.readers)
            .await
            .map(|_| ())
            .map_err(|e| unavailable("the database does not answer", e))
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(serial: u64, requester: &str) -> IssuedCert {
        IssuedCert {
            ca_fingerprint: "SHA256:ca".into(),
            serial,
            key_id: format!("id-{serial}"),
            cert_type: "user".into(),
            principals: vec!["alice".into(), format!("p{serial}")],
            valid_after: 1,
            valid_before: u64::MAX,
            subject_fingerprint: "SHA256:subject".into(),
            requester: requester.into(),
            policy: "dev".into(),
            issued_at: 10,
            certificate: "ssh-ed25519-cert-v01@openssh.com AAAA".into(),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn records_queries_and_refuses_a_second_serial() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = SqliteStore::open(&path, &StoreOptions::default())
            .await
            .unwrap();
        assert_eq!(
            store.record(&cert(7, "ci")).await.unwrap(),
            Recorded::Stored
        );
        assert_eq!(
            store.record(&cert(u64::MAX, "bob")).await.unwrap(),
            Recorded::Stored
        );
        let mut again = cert(7, "other");
        again.key_id = "different".into();
        assert_eq!(store.record(&again).await.unwrap(), Recorded::SerialTaken);
        // The same serial under another CA is fine.
        again.ca_fingerprint = "SHA256:other-ca".into();
        assert_eq!(store.record(&again).await.unwrap(), Recorded::Stored);

        let all = store.certs(&CertQuery::default()).await.unwrap();
        assert_eq!(all.len(), 3);
        let q = |f: fn(&mut CertQuery)| {
            let mut q = CertQuery::default();
            f(&mut q);
            q
        };
        let got = store
            .certs(&q(|q| q.serial = Some(u64::MAX)))
            .await
            .unwrap();
        assert_eq!(got, vec![cert(u64::MAX, "bob")]);
        let got = store
            .certs(&q(|q| q.principal = Some("p7".into())))
            .await
            .unwrap();
        assert_eq!(got.len(), 2);
        let got = store
            .certs(&q(|q| q.requester = Some("ci".into())))
            .await
            .unwrap();
        assert_eq!(got, vec![cert(7, "ci")]);
        let got = store.certs(&q(|q| q.limit = 1)).await.unwrap();
        assert_eq!(got.len(), 1);

        // Everything is there after reopening.
        drop(store);
        let store = SqliteStore::open(&path, &StoreOptions::default())
            .await
            .unwrap();
        assert_eq!(store.certs(&CertQuery::default()).await.unwrap().len(), 3);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn one_serial_twice_in_one_batch_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(
            SqliteStore::open(&dir.path().join("s.db"), &StoreOptions::default())
                .await
                .unwrap(),
        );
        // Many writers of the same serial at once: batches form, and exactly
        // one of them is stored.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..64 {
            let s = store.clone();
            tasks.spawn(async move { s.record(&cert(42, &format!("r{i}"))).await });
        }
        let mut stored = 0;
        while let Some(r) = tasks.join_next().await {
            if r.unwrap().unwrap() == Recorded::Stored {
                stored += 1;
            }
        }
        assert_eq!(stored, 1);
        assert_eq!(store.certs(&CertQuery::default()).await.unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn concurrent_writes_are_all_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(
            SqliteStore::open(&dir.path().join("s.db"), &StoreOptions::default())
                .await
                .unwrap(),
        );
        let mut tasks = tokio::task::JoinSet::new();
        for i in 1..=200u64 {
            let s = store.clone();
            tasks.spawn(async move { s.record(&cert(i, "ci")).await });
        }
        while let Some(r) = tasks.join_next().await {
            assert_eq!(r.unwrap().unwrap(), Recorded::Stored);
        }
        let q = CertQuery {
            limit: 1000,
            ..Default::default()
        };
        assert_eq!(store.certs(&q).await.unwrap().len(), 200);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_locked_database_is_unavailable_then_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let options = StoreOptions {
            write_timeout: std::time::Duration::from_millis(200),
            ..Default::default()
        };
        let store = SqliteStore::open(&path, &options).await.unwrap();
        let mut other = SqliteConnection::connect(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut other)
            .await
            .unwrap();
        let e = store.record(&cert(1, "ci")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        let e = store
            .audit(&AuditEvent {
                at: 1,
                request_id: "r".into(),
                identity: None,
                auth_source: None,
                policy: None,
                status: 401,
                code: "unauthenticated".into(),
                reason: "no credential".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
        assert_eq!(
            store.record(&cert(1, "ci")).await.unwrap(),
            Recorded::Stored
        );
        assert!(store.audit_events(10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn bad_urls_are_named() {
        let e = crate::open("mysql://x", &StoreOptions::default())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("unknown kind of store"), "{e}");
        let e = crate::open("sqlite:/nonexistent-dir/x.db", &StoreOptions::default())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
