//! A private PostgreSQL cluster for tests: `initdb` in a temporary
//! directory, run as an unprivileged user (initdb refuses root), `pg_ctl`
//! on 127.0.0.1 with an OS-chosen port and a private socket directory;
//! stopped and removed when dropped. A missing PostgreSQL is a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running cluster.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// The OS user that owns and runs it (`None` when the tests are not root).
    run_as: Option<String>,
    durable: bool,
    /// Server certificate and key files (PEM) in the data directory: TLS on.
    tls: bool,
}

/// The directory holding initdb and pg_ctl: on PATH, else Debian's
/// `/usr/lib/postgresql/VERSION/bin` (newest first).
pub fn pg_bin() -> PathBuf {
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v pg_ctl"])
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !p.is_empty() {
            let real = std::fs::canonicalize(&p).unwrap_or_else(|_| PathBuf::from(&p));
            if let Some(dir) = real.parent() {
                if dir.join("initdb").exists() {
                    return dir.to_owned();
                }
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .find(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .unwrap_or_else(|| {
            panic!("PostgreSQL is missing (initdb, pg_ctl): install postgresql (.ci/run does)")
        })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PgCluster {
    fn cmd(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn check(what: &str, out: Output) {
        assert!(
            out.status.success(),
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// initdb, then start, with `fsync=off` (tests: durability against a
    /// crash of the machine is not what they check).
    pub fn start() -> PgCluster {
        Self::start_inner(false, None)
    }

    /// Like [`PgCluster::start`], with TLS (`ssl = on`) from the certificate
    /// chain and key in these PEM files; connections without TLS are still
    /// accepted.
    pub fn start_tls(cert: &Path, key: &Path) -> PgCluster {
        Self::start_inner(false, Some((cert, key)))
    }

    /// Like [`PgCluster::start`], with PostgreSQL's default durability
    /// (`fsync=on`, `synchronous_commit=on`), for benchmarks.
    pub fn start_durable() -> PgCluster {
        Self::start_inner(true, None)
    }

    fn start_inner(durable: bool, tls: Option<(&Path, &Path)>) -> PgCluster {
        let bin = pg_bin();
        let run_as = is_root().then(|| "postgres".to_string());
        let dir = tempfile::Builder::new()
            .prefix("sshca-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::create_dir(dir.path().join("sock")).unwrap();
        if let Some(user) = &run_as {
            // The cluster user must own its directory (and reach it: /tmp is 1777).
            let out = Command::new("chown")
                .args(["-R", &format!("{user}:"), &dir.path().display().to_string()])
                .output()
                .unwrap();
            Self::check("chown", out);
        }
        let mut pg = PgCluster {
            dir,
            bin,
            port: 0,
            run_as,
            durable,
            tls: tls.is_some(),
        };
        let out = pg
            .cmd("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "sshca",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(pg.data())
            .output()
            .unwrap();
        Self::check("initdb", out);
        if let Some((cert, key)) = tls {
            // The key must be the server user's and 0600, or it refuses it.
            for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
                let dest = pg.data().join(to);
                std::fs::copy(from, &dest).unwrap();
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600)).unwrap();
                if let Some(user) = &pg.run_as {
                    let out = Command::new("chown")
                        .args([&format!("{user}:"), &dest.display().to_string()])
                        .output()
                        .unwrap();
                    Self::check("chown", out);
                }
            }
        }
        for _ in 0..5 {
            pg.port = crate::cli::free_port();
            if pg.try_start() {
                return pg;
            }
        }
        panic!("PostgreSQL did not start: {}", pg.log());
    }

    fn try_start(&self) -> bool {
        let mut opts = format!(
            "-k {} -p {} -c listen_addresses=127.0.0.1 -c fsync={} -c max_connections=200",
            self.socket_dir().display(),
            self.port,
            if self.durable { "on" } else { "off" }
        );
        if self.tls {
            opts.push_str(" -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key");
        }
        self.cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("pg.log"))
            .args(["-o", &opts, "-w", "-t", "60", "start"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// The server log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pg.log")).unwrap_or_default()
    }

    /// The URL of database `postgres` as superuser `sshca`.
    pub fn url(&self) -> String {
        format!(
            "postgres://sshca@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// Creates a database and returns its URL.
    pub fn database(&self, name: &str) -> String {
        let out = self
            .cmd("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "sshca",
                "-d",
                "postgres",
            ])
            .args([
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                &format!("CREATE DATABASE \"{name}\""),
            ])
            .output()
            .unwrap();
        Self::check("CREATE DATABASE", out);
        format!(
            "postgres://sshca@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }

    /// Stops the server (fast shutdown); [`PgCluster::restart`] starts it
    /// again on the same port.
    pub fn stop(&self) {
        let out = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .unwrap();
        Self::check("pg_ctl stop", out);
    }

    /// Starts a stopped server again on the same port.
    pub fn restart(&self) {
        assert!(
            self.try_start(),
            "PostgreSQL did not restart: {}",
            self.log()
        );
    }

    /// The postmaster's process id.
    pub fn postmaster_pid(&self) -> String {
        std::fs::read_to_string(self.data().join("postmaster.pid"))
            .unwrap_or_default()
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    /// The data directory (for tests that look inside).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
