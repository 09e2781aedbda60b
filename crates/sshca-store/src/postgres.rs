//! PostgreSQL, for several replicas behind one database: the database
//! decides serial uniqueness (the same unique key), every replica writes its
//! rows with the same group commit as SQLite, migrations run under
//! PostgreSQL's advisory lock (replicas starting together do not race), and
//! a replica whose database went away reconnects by itself.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection};

use crate::writer::{BatchSink, Job, Writer};
use crate::{unavailable, AuditEvent, CertQuery, IssuedCert, Recorded, StoreOptions};
use sshca_signer::{Error, ErrorKind, Result};

mod sql {
    crate::sql::sql_for!(
        db = sqlx::Postgres,
        conn = sqlx::postgres::PgConnection,
        row = sqlx::postgres::PgRow,
        begin = "BEGIN",
        chain_lock = ("SELECT pg_advisory_xact_lock(hashtext(", ")::bigint)"),
        principal = (" AND principals::jsonb @> jsonb_build_array(", "::text)"),
    );
}

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A store in a PostgreSQL database.
#[derive(Debug)]
pub struct PgStore {
    shown: String,
    readers: PgPool,
    writer: Writer,
}

struct Sink {
    conn: Option<PgConnection>,
    connect: PgConnectOptions,
    replica: String,
}

#[async_trait::async_trait]
impl BatchSink for Sink {
    async fn connect(&mut self) -> Result<()> {
        let c = PgConnection::connect_with(&self.connect)
            .await
            .map_err(|e| unavailable("cannot reconnect to the database", e))?;
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
        // A connection that failed mid-transaction is not trusted again.
        if let Some(c) = self.conn.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), c.close()).await;
        }
    }
}

/// `postgres://USER@HOST:PORT/DB` without password or parameters.
fn shown(o: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or_default()
    )
}

impl PgStore {
    /// Connects to the database `url` names and brings its schema up to
    /// date.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Self> {
        let connect = PgConnectOptions::from_str(url).map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("store: not a PostgreSQL URL: {}", redact(&e.to_string())),
            )
        })?;
        let mut connect = connect.disable_statement_logging();
        if default_verify_full(url, connect.get_host()) {
            connect = connect.ssl_mode(PgSslMode::VerifyFull);
        }
        let shown = shown(&connect);
        let open_error = |e| unavailable(&format!("cannot connect to {shown}"), e);
        let readers = PgPoolOptions::new()
            .max_connections(options.pool_size.max(1))
            .acquire_timeout(options.write_timeout)
            .connect_with(connect.clone())
            .await
            .map_err(open_error)?;
        MIGRATIONS
            .run(&readers)
            .await
            .map_err(|e| unavailable(&format!("cannot migrate {shown}"), e))?;
        let conn = PgConnection::connect_with(&connect)
            .await
            .map_err(open_error)?;
        let sink = Sink {
            conn: Some(conn),
            connect,
            replica: options.replica_id.clone(),
        };
        Ok(Self {
            writer: Writer::spawn(sink, options.max_batch, options.write_timeout),
            shown,
            readers,
        })
    }
}

/// Whether a URL without `sslmode` (and no `PGSSLMODE`) should get
/// `verify-full`: a server that is not on this machine is reached over TLS,
/// its certificate checked against `sslrootcert` (or the system's roots)
/// and its name; libpq's default (`prefer`) would fall back to plain text
/// and accept any certificate. Loopback and Unix sockets keep the default.
fn default_verify_full(url: &str, host: &str) -> bool {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    let named = query
        .split('&')
        .any(|kv| kv.split('=').next() == Some("sslmode"));
    if named || std::env::var_os("PGSSLMODE").is_some() {
        return false;
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let local = host.is_empty()
        || host.starts_with('/')
        || host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !local
}

/// Error text from URL parsing may quote the URL: drop anything that looks
/// like `user:password@`.
fn redact(text: &str) -> String {
    match (text.find("://"), text.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &text[..s], &text[at..]),
        _ => text.to_owned(),
    }
}

crate::store_impl::impl_store!(PgStore);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::cert;
    use crate::Store;
    use sshca_testkit::pg::PgCluster;

    #[test]
    fn remote_servers_default_to_verify_full() {
        for (url, host, want) in [
            ("postgres://u@db.example.com/sshca", "db.example.com", true),
            ("postgres://u@10.0.0.5:5432/sshca", "10.0.0.5", true),
            (
                "postgres://u@db.example.com/sshca?sslmode=require",
                "db.example.com",
                false,
            ),
            (
                "postgres://u@db.example.com/sshca?connect_timeout=5&sslmode=disable",
                "db.example.com",
                false,
            ),
            ("postgres://u@127.0.0.1:5432/sshca", "127.0.0.1", false),
            ("postgres://u@[::1]:5432/sshca", "[::1]", false),
            ("postgres://u@localhost/sshca", "localhost", false),
            (
                "postgres://u@%2Frun%2Fpostgresql/sshca",
                "/run/postgresql",
                false,
            ),
        ] {
            if std::env::var_os("PGSSLMODE").is_none() {
                assert_eq!(default_verify_full(url, host), want, "{url}");
            }
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn tls_with_verify_full_and_sslrootcert() {
        let d = tempfile::tempdir().unwrap();
        let tls_ca = sshca_testkit::tls::pki(d.path());
        let pg = PgCluster::start_tls(&d.path().join("tls.pem"), &d.path().join("tls.key"));
        let plain = pg.database("tls");
        let base = plain.trim_end_matches("?sslmode=disable");
        // verify-full against the server's CA: a TLS session, rows recorded.
        let url = format!(
            "{base}?sslmode=verify-full&sslrootcert={}",
            tls_ca.display()
        );
        let store = PgStore::open(&url, &StoreOptions::default()).await.unwrap();
        store.record(&cert(1, "ci")).await.unwrap();
        let ssl: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&store.readers)
                .await
                .unwrap();
        assert!(ssl, "the connection is not encrypted");
        // Another CA: refused, naming the database.
        let other = tempfile::tempdir().unwrap();
        let rogue = sshca_testkit::tls::pki(other.path());
        let url = format!("{base}?sslmode=verify-full&sslrootcert={}", rogue.display());
        let opts = StoreOptions {
            write_timeout: std::time::Duration::from_secs(3),
            ..Default::default()
        };
        let Err(e) = PgStore::open(&url, &opts).await else {
            panic!("a server certificate from another CA was accepted");
        };
        assert!(
            e.to_string()
                .contains("cannot connect to postgres://sshca@127.0.0.1"),
            "{e}"
        );
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("bad url postgres://u:secret@h/db"),
            "bad url postgres://***@h/db"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn conformance_and_a_database_that_goes_away() {
        let pg = PgCluster::start();
        let url = pg.database("conformance");
        crate::conformance::run_all(|| async {
            std::sync::Arc::new(PgStore::open(&url, &StoreOptions::default()).await.unwrap())
                as std::sync::Arc<dyn Store>
        })
        .await;

        // Replicas starting together migrate once (advisory lock).
        let fresh = pg.database("fresh");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let url = fresh.clone();
                tokio::spawn(async move { PgStore::open(&url, &StoreOptions::default()).await })
            })
            .collect();
        let mut stores = Vec::new();
        for h in handles {
            stores.push(h.await.unwrap().unwrap());
        }
        assert_eq!(
            stores[0].record(&cert(1, "a")).await.unwrap(),
            Recorded::Stored
        );
        assert_eq!(
            stores[3].record(&cert(1, "b")).await.unwrap(),
            Recorded::SerialTaken
        );

        // The database stopped: unavailable; started again: back, by itself.
        let options = StoreOptions {
            write_timeout: std::time::Duration::from_secs(2),
            ..Default::default()
        };
        let store = PgStore::open(&fresh, &options).await.unwrap();
        pg.stop();
        let e = store.record(&cert(2, "a")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(store.health().await.is_err());
        pg.restart();
        let mut back = false;
        for _ in 0..50 {
            if store.record(&cert(2, "a")).await.is_ok() {
                back = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(back, "the store did not reconnect");
        store.health().await.unwrap();
        assert!(store.describe().starts_with("postgres://sshca@127.0.0.1:"));
    }
}
