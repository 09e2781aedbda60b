//! `sshca serve` and `sshca token new`: the signing service and its
//! credentials.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use sshca::config::Config;
use sshca::signer::Result;

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
    /// Make a join token for `[join.NAME]` (printed alone on stdout; the
    /// store keeps its hash, principals, expiry and uses).
    Join {
        /// The `[join.NAME]` it is for.
        name: String,
        /// A principal of the host certificates (repeatable; at least one).
        #[arg(long = "principal", required = true)]
        principals: Vec<String>,
        /// How long it may be used (default 1h).
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// How many enrollments it allows (default 1).
        #[arg(long, default_value_t = 1)]
        uses: u64,
        /// Store URL (default: the config's).
        #[arg(long)]
        store: Option<String>,
    },
}

/// `sshca token`.
pub async fn token(cmd: TokenCmd, config: &Path) -> Result<()> {
    match cmd {
        TokenCmd::Join {
            name,
            principals,
            ttl,
            uses,
            store,
        } => {
            let cfg = Config::load(config)?;
            let service = sshca_server::ServiceConfig::from_config(&cfg)?;
            if !service.joins.contains_key(&name) {
                return Err(crate::output::invalid(format!(
                    "{}: no [join.{name}] table (joins: {})",
                    config.display(),
                    if service.joins.is_empty() {
                        "none".to_owned()
                    } else {
                        service.joins.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                )));
            }
            for p in &principals {
                sshca::core::text::check_name("principal", p)?;
            }
            if uses == 0 {
                return Err(crate::output::invalid(
                    "--uses 0: a token must allow one use at least",
                ));
            }
            let ttl = sshca::core::validity::parse_ttl(&ttl)
                .map_err(|e| crate::output::invalid(format!("--ttl {ttl}: {e}")))?;
            let store = match store {
                Some(u) => sshca_store::open(&u, &Default::default()).await?,
                None => sshca_authority::open_store(None, &cfg).await?,
            };
            let (id, token) = sshca_server::new_join_token();
            let now = crate::output::now();
            store
                .add_join_token(&sshca_store::JoinToken {
                    id: id.clone(),
                    join: name.clone(),
                    token_hash: sshca_server::token_hash(&token),
                    principals: principals.clone(),
                    expires_at: now.saturating_add(ttl),
                    uses_left: uses,
                    created_at: now,
                    created_by: "local".into(),
                })
                .await?;
            store
                .audit(&sshca_store::AuditEvent {
                    identity: Some(crate::output::local_user()),
                    auth_source: Some("cli".into()),
                    principals: principals.clone(),
                    status: 200,
                    outcome: "allowed".into(),
                    code: "join_token_created".into(),
                    reason: format!(
                        "join token {id} for [join.{name}]: {uses} use(s), expires at {}",
                        now.saturating_add(ttl)
                    ),
                    ..sshca_store::AuditEvent::new(
                        "admin",
                        &crate::output::cli_request_id(now),
                        now,
                    )
                })
                .await?;
            eprintln!(
                "# join token {id} for [join.{name}]: principals {}, {uses} use(s), expires in {}",
                principals.join(","),
                crate::output::human(ttl)
            );
            println!("{token}");
            Ok(())
        }
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
