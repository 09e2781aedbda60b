//! `sshca serve`, `sshca token new` and `sshca certs`: the signing service,
//! its credentials and its record.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use sshca::config::Config;
use sshca::signer::Result;
use sshca_store::{CertQuery, IssuedCert};

use crate::output::to_json;

/// Log line format.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// `key=value` text.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Listen address (overrides `[server] listen`; port 0 picks a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Once listening, write `{"url": ..., "ca_cert": ...}` here.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// A throwaway setup: temporary data dir, generated CA and TLS
    /// certificate, one printed token, a `dev` policy.
    #[arg(long)]
    dev: bool,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SSHCA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second initialisation (never in the binary) is not an error.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// `sshca serve`.
pub async fn serve(a: ServeArgs, config: &Path) -> Result<()> {
    init_logging(a.log_format);
    let mut options = sshca_server::ServeOptions {
        listen: a.listen,
        ready_file: a.ready_file,
        ..Default::default()
    };
    if a.dev {
        let dev = sshca_server::dev::setup()?;
        options.trust_cert = Some(dev.trust_cert.clone());
        let (dir, ca) = (dev.dir.path().to_owned(), dev.trust_cert.clone());
        let token = dev.token.clone();
        options.on_listening = Some(Box::new(move |url: &str| {
            eprintln!(
                "sshca: development server at {url}: nothing it issues or records outlives it.\n\
                 \n  data dir:       {dir}\n  TLS CA:         {ca}\n  token (`dev`):  {token}\n\
                 \n  export SSHCA_TOKEN={token}\n  \
                 sshca request --server {url} --server-ca {ca} --policy dev -n $USER ~/.ssh/id_ed25519.pub\n  \
                 curl --cacert {ca} {url}/v1/ca/dev\n",
                dir = dir.display(),
                ca = ca.display(),
                token = token.expose(),
            );
        }));
        let config = dev.config.clone();
        let r = sshca_server::serve(config, options).await;
        drop(dev);
        return r;
    }
    let cfg = Config::load(config)?;
    sshca_server::serve(cfg, options).await
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Print a fresh random token (stdout) and the `[token.NAME]` lines to
    /// add to the config (stderr).
    New {
        /// The identity the token stands for.
        name: String,
    },
}

/// `sshca token`.
pub fn token(cmd: TokenCmd) -> Result<()> {
    match cmd {
        TokenCmd::New { name } => {
            sshca::core::text::check_printable("token name", &name)?;
            if name.is_empty() || name.contains(['"', '\\', ' ']) {
                return Err(crate::output::invalid(format!(
                    "token name `{name}`: use letters, digits, `-`, `_`, `.`, `@`"
                )));
            }
            let token = sshca_server::new_token();
            eprintln!(
                "# add to the config (the token itself is not kept anywhere):\n[token.{name}]\nsha256 = \"{}\"",
                sshca_server::token_hash(&token)
            );
            println!("{token}");
            Ok(())
        }
    }
}

#[derive(Args, Debug)]
pub struct StoreArg {
    /// Store URL (default: the config's `[server] store`, or
    /// sqlite:<data_dir>/sshca.db).
    #[arg(long)]
    store: Option<String>,
    /// JSON output.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
pub enum CertsCmd {
    /// Issued certificates, newest first.
    List {
        #[command(flatten)]
        store: StoreArg,
        /// Only this serial.
        #[arg(long)]
        serial: Option<u64>,
        /// Only this key id.
        #[arg(long)]
        key_id: Option<String>,
        /// Only certificates naming this principal.
        #[arg(long)]
        principal: Option<String>,
        /// Only certificates asked for by this identity.
        #[arg(long)]
        requester: Option<String>,
        /// At most this many (default 100).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One certificate by serial: its record and its certificate line.
    Show {
        #[command(flatten)]
        store: StoreArg,
        /// Serial number.
        serial: u64,
    },
}

async fn open_store(
    arg: &StoreArg,
    config: &Path,
) -> Result<std::sync::Arc<dyn sshca_store::Store>> {
    match &arg.store {
        Some(u) => sshca_store::open(u, &Default::default()).await,
        None => crate::store::open_configured(None, &Config::load(config)?).await,
    }
}

fn print_rows(rows: &[IssuedCert]) {
    println!(
        "{:<20}  {:<4}  {:<24}  {:<24}  {:<20}  {:<12}  VALID UNTIL",
        "SERIAL", "TYPE", "KEY ID", "PRINCIPALS", "REQUESTER", "POLICY"
    );
    for r in rows {
        println!(
            "{:<20}  {:<4}  {:<24}  {:<24}  {:<20}  {:<12}  {}",
            r.serial,
            r.cert_type,
            sshca::core::text::escape(&r.key_id),
            sshca::core::text::escape(&r.principals.join(",")),
            sshca::core::text::escape(&r.requester),
            r.policy,
            sshca::core::validity::describe(r.valid_after, r.valid_before)
        );
    }
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    store: StoreArg,
    /// At most this many events, newest first.
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

/// `sshca audit`: the refused requests the service recorded.
pub async fn audit(a: AuditArgs, config: &Path) -> Result<()> {
    let s = open_store(&a.store, config).await?;
    let rows = s.audit_events(a.limit).await?;
    if a.store.json {
        println!("{}", to_json(&rows)?);
        return Ok(());
    }
    println!(
        "{:<10}  {:<16}  {:<20}  {:<11}  {:<12}  {:<6}  {:<20}  REASON",
        "AT", "REQUEST", "IDENTITY", "SOURCE", "POLICY", "STATUS", "CODE"
    );
    for r in rows {
        println!(
            "{:<10}  {:<16}  {:<20}  {:<11}  {:<12}  {:<6}  {:<20}  {}",
            r.at,
            r.request_id,
            sshca::core::text::escape(r.identity.as_deref().unwrap_or("-")),
            r.auth_source.as_deref().unwrap_or("-"),
            sshca::core::text::escape(r.policy.as_deref().unwrap_or("-")),
            r.status,
            r.code,
            sshca::core::text::escape(&r.reason)
        );
    }
    Ok(())
}

/// `sshca certs`.
pub async fn certs(cmd: CertsCmd, config: &Path) -> Result<()> {
    match cmd {
        CertsCmd::List {
            store,
            serial,
            key_id,
            principal,
            requester,
            limit,
        } => {
            let s = open_store(&store, config).await?;
            let rows = s
                .certs(&CertQuery {
                    serial,
                    key_id,
                    principal,
                    requester,
                    limit,
                    ..Default::default()
                })
                .await?;
            if store.json {
                println!("{}", to_json(&rows)?);
            } else {
                print_rows(&rows);
            }
        }
        CertsCmd::Show { store, serial } => {
            let s = open_store(&store, config).await?;
            let rows = s
                .certs(&CertQuery {
                    serial: Some(serial),
                    ..Default::default()
                })
                .await?;
            if rows.is_empty() {
                return Err(sshca::signer::Error::new(
                    sshca::signer::ErrorKind::NotFound,
                    format!("no certificate with serial {serial} in {}", s.describe()),
                ));
            }
            if store.json {
                println!("{}", to_json(&rows)?);
            } else {
                for r in &rows {
                    println!(
                        "serial: {}\nca: {}\ntype: {}\nkey id: {}\nprincipals: {}\nvalid: {}\n\
                         subject: {}\nrequester: {}\npolicy: {}\nissued at: {}\n{}",
                        r.serial,
                        r.ca_fingerprint,
                        r.cert_type,
                        sshca::core::text::escape(&r.key_id),
                        sshca::core::text::escape(&r.principals.join(",")),
                        sshca::core::validity::describe(r.valid_after, r.valid_before),
                        r.subject_fingerprint,
                        sshca::core::text::escape(&r.requester),
                        r.policy,
                        r.issued_at,
                        r.certificate
                    );
                }
            }
        }
    }
    Ok(())
}
