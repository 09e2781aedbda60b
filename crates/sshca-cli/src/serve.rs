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
