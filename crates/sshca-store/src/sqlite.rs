//! SQLite, embedded: WAL, `synchronous=FULL`, one writer that commits the
//! rows of concurrent requests together (group commit: one sync for many
//! certificates), readers on a small pool.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::Connection;

use crate::writer::{BatchSink, Writer};
use crate::StoreOptions;

mod sql {
    crate::sql::sql_for!(
        db = sqlx::Sqlite,
        conn = sqlx::sqlite::SqliteConnection,
        row = sqlx::sqlite::SqliteRow,
        begin = "BEGIN IMMEDIATE",
        chain_lock = ("", ""),
        principal = (
            " AND EXISTS (SELECT 1 FROM json_each(certs.principals) WHERE value = ",
            ")"
        ),
    );
}

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// A store in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    shown: String,
    readers: SqlitePool,
    writer: Writer,
}

struct Sink {
    conn: Option<SqliteConnection>,
    connect: SqliteConnectOptions,
    replica: String,
}

#[async_trait::async_trait]
impl BatchSink for Sink {
    async fn connect(&mut self) -> Result<()> {
        let c = SqliteConnection::connect_with(&self.connect)
            .await
            .map_err(|e| unavailable("cannot reopen the database", e))?;
        self.conn = Some(c);
        Ok(())
    }

    async fn write(&mut self, batch: &[Job]) -> Result<Vec<Recorded>> {
        let c = self
            .conn
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::Unavailable, "store: no connection"))?;
        sql::write_batch(c, batch, &self.replica).await
    }

    async fn reset(&mut self) {
        if let Some(mut c) = self.conn.take() {
            let _ = sqlx::query("ROLLBACK").execute(&mut c).await;
        }
    }
}

use crate::writer::Job;
use crate::{unavailable, AuditEvent, CertQuery, IssuedCert, Recorded};
use sshca_signer::{Error, ErrorKind, Result};

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
        protect(path)?;
        let open_error = |e| unavailable(&format!("cannot open sqlite:{shown}"), e);
        let connect = SqliteConnectOptions::from_str("sqlite:")
            .map_err(|e| unavailable("cannot configure SQLite", e))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(options.write_timeout)
            // The WAL is copied back every 8192 pages (32 MiB) rather than
            // 1000: a page written many times between checkpoints is copied
            // once.
            .pragma("wal_autocheckpoint", "8192");
        let readers = SqlitePoolOptions::new()
            .max_connections(options.pool_size.clamp(1, 16))
            .acquire_timeout(options.write_timeout)
            .connect_with(connect.clone())
            .await
            .map_err(open_error)?;
        MIGRATIONS
            .run(&readers)
            .await
            .map_err(|e| unavailable(&format!("cannot migrate sqlite:{shown}"), e))?;
        let conn = SqliteConnection::connect_with(&connect)
            .await
            .map_err(open_error)?;
        let sink = Sink {
            conn: Some(conn),
            connect,
            replica: options.replica_id.clone(),
        };
        Ok(Self {
            shown: format!("sqlite:{shown}"),
            readers,
            // SQLite's busy_timeout bounds the wait for a lock; the writer's
            // own deadline is a little longer.
            writer: Writer::spawn(sink, options.max_batch, options.write_timeout * 2),
        })
    }
}

/// Creates the database file 0600 when it is missing (SQLite gives its WAL
/// and shared-memory files the database file's permissions), and warns
/// when an existing one is readable or writable by others: it holds every
/// certificate issued, who asked for it, and the audit.
fn protect(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                for suffix in ["", "-wal", "-shm"] {
                    let file = format!("{}{suffix}", path.display());
                    if let Ok(m) = std::fs::metadata(&file) {
                        let mode = m.permissions().mode() & 0o777;
                        if mode & 0o077 != 0 {
                            tracing::warn!(
                                file = %file,
                                mode = format!("{mode:o}"),
                                "the store's file is readable or writable by other users; \
                                 chmod 600 it"
                            );
                        }
                    }
                }
            }
            Err(e) => return Err(Error::io("cannot create the store", path, &e)),
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

crate::store_impl::impl_store!(SqliteStore);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{cert, event};

    #[cfg(unix)]
    #[tokio::test]
    async fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("sshca.db");
        let store = SqliteStore::open(&path, &StoreOptions::default())
            .await
            .unwrap();
        crate::Store::record(&store, &cert(1, "ci")).await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", path.display());
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}: {mode:o}");
        }
    }
    use crate::Store;

    #[tokio::test(flavor = "multi_thread")]
    async fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        crate::conformance::run_all(|| async {
            std::sync::Arc::new(
                SqliteStore::open(&path, &StoreOptions::default())
                    .await
                    .unwrap(),
            ) as std::sync::Arc<dyn Store>
        })
        .await;
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
        let e = store.audit(&event(1)).await.unwrap_err();
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
        let e = crate::open(
            "postgres://u:hunter2@127.0.0.1:notaport/db",
            &StoreOptions::default(),
        )
        .await
        .unwrap_err();
        assert!(!e.report().contains("hunter2"), "{}", e.report());
    }
}
