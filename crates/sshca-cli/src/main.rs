//! The `sshca` command line: parses the arguments and hands each subcommand
//! to its module.

#[cfg(feature = "agent")]
mod agent;
#[cfg(feature = "client")]
mod approvals;
#[cfg(feature = "store")]
mod audit;
#[cfg(feature = "store")]
mod ca;
mod conformance;
#[cfg(any(feature = "ekm", feature = "gcp"))]
mod ekm;
mod expires;
mod files;
#[cfg(feature = "client")]
mod host;
mod inspect;
#[cfg(feature = "local")]
mod key;
#[cfg(feature = "local")]
mod keygen;
mod keyref;
mod krl;
#[cfg(feature = "login")]
mod login;
#[cfg(feature = "client")]
mod metadata;
mod output;
mod policy;
mod pubkey;
#[cfg(feature = "store")]
mod records;
#[cfg(feature = "client")]
mod renew;
#[cfg(feature = "client")]
mod request;
#[cfg(feature = "server")]
mod serve;
mod sign;
mod sshsig;
#[cfg(feature = "store")]
mod store;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sshca::signer::{Error, ErrorKind, Result};

/// OpenSSH certificate authority whose CA key can stay in a KMS.
#[derive(Parser, Debug)]
#[command(name = "sshca", version, about)]
struct Cli {
    /// Config file with CAs and signing policies.
    #[arg(long, global = true, default_value = "sshca.toml")]
    config: PathBuf,
    /// Accept `pin-value=` (the PIN itself) in `pkcs11:` URIs.
    #[cfg(feature = "pkcs11")]
    #[arg(long, global = true)]
    allow_pin_value: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Sign public keys into certificates (flags as `ssh-keygen -s`).
    Sign(sign::SignArgs),
    /// Show a certificate's fields (like `ssh-keygen -L`).
    Inspect(inspect::InspectArgs),
    /// Check a certificate as sshd (user) or ssh (host) would: CA signature,
    /// validity, principal, type, critical options.
    Verify(verify::VerifyArgs),
    /// Create a local private key (OpenSSH format, 0600) and PATH.pub, or a
    /// key pair on a PKCS#11 token (--pkcs11 URI).
    #[cfg(feature = "local")]
    Keygen(keygen::KeygenArgs),
    /// Key utilities: public, info, match, passphrase.
    #[cfg(feature = "local")]
    #[command(subcommand)]
    Key(key::KeyCmd),
    /// Exit 0 when a certificate has expired or will within TTL, else 1.
    Expires(expires::ExpiresArgs),
    /// Signing policies of the config file.
    #[command(subcommand)]
    Policy(policy::PolicyCmd),
    /// External key managers: check a connection; Cloud KMS EkmConnections
    /// and EkmConfig.
    #[cfg(any(feature = "ekm", feature = "gcp"))]
    #[command(subcommand)]
    Ekm(ekm::EkmCmd),
    /// Check a key of any backend before a CA uses it: the conformance
    /// suite's checks that are safe against a production key.
    Conformance(conformance::ConformanceArgs),
    /// Print the CA public key line (TrustedUserCAKeys) or known_hosts line.
    Pubkey(pubkey::PubkeyArgs),
    /// Serve keys of any backend over the ssh-agent protocol.
    #[cfg(feature = "agent")]
    Agent(agent::AgentArgs),
    /// File signatures (SSHSIG, as `ssh-keygen -Y`) with a key in any backend.
    #[command(subcommand)]
    Sshsig(sshsig::SshsigCmd),
    /// Run the signing service (HTTPS API, authenticated requesters,
    /// policies, a durable record of every certificate).
    #[cfg(feature = "server")]
    Serve(serve::ServeArgs),
    /// Bearer tokens for the signing service.
    #[cfg(feature = "server")]
    #[command(subcommand)]
    Token(serve::TokenCmd),
    /// Certificates recorded by the signing service (read from its store).
    #[cfg(feature = "store")]
    #[command(subcommand)]
    Certs(records::CertsCmd),
    /// The audit trail: the newest events; `verify` checks its hash
    /// chains, `export` writes and signs a time range.
    #[cfg(feature = "store")]
    Audit(audit::AuditArgs),
    /// The signing service's store: migrate, copy (SQLite to PostgreSQL).
    #[cfg(feature = "store")]
    #[command(subcommand)]
    Store(store::StoreCmd),
    /// Ask a signing service for certificates (written as `sshca sign` does).
    #[cfg(feature = "client")]
    Request(request::RequestArgs),
    /// Sign requests waiting for approval: list those you may decide,
    /// approve or deny one.
    #[cfg(feature = "client")]
    Approvals(approvals::ApprovalsArgs),
    /// Renew certificates from a signing service by proof of possession
    /// of their keys (when little of their lifetime is left).
    #[cfg(feature = "client")]
    Renew(renew::RenewArgs),
    /// Sign in at the service's identity provider: a short-lived
    /// certificate for a fresh key, into the ssh-agent.
    #[cfg(feature = "login")]
    Login(login::LoginArgs),
    /// Client configuration: `sshca config ssh` (from a signing service),
    /// `sshca config systemd` (the host renewal timer).
    #[cfg(feature = "client")]
    #[command(subcommand)]
    Config(ConfigCmd),
    /// This host's certificates: enroll with a join token, renew.
    #[cfg(feature = "client")]
    #[command(subcommand)]
    Host(host::HostCmd),
    /// Revoke certificates (by serial or key id), keys, or a CA key: a row
    /// in the store that every KRL of the CA carries from then on.
    #[cfg(feature = "store")]
    Revoke(krl::RevokeArgs),
    /// Key revocation lists: build from the store, inspect, check, fetch.
    #[command(subcommand)]
    Krl(krl::KrlCmd),
    /// CA key rotation.
    #[cfg(feature = "store")]
    #[command(subcommand)]
    Ca(ca::CaCmd),
}

/// `sshca config`.
#[cfg(feature = "client")]
#[derive(clap::Subcommand, Debug)]
enum ConfigCmd {
    /// known_hosts and ssh_config lines for a server's hosts: its host CAs,
    /// and `sshca login` when the agent's certificate runs out.
    #[cfg(feature = "login")]
    Ssh(login::ssh_config::SshConfigArgs),
    /// A systemd service and timer running `sshca host renew`.
    Systemd {
        /// The state file `sshca host enroll` wrote.
        #[arg(long, default_value = "/etc/sshca/host.toml")]
        state: std::path::PathBuf,
    },
}

async fn run(cli: Cli) -> Result<ExitCode> {
    #[cfg(feature = "pkcs11")]
    sshca::pkcs11::allow_pin_value(cli.allow_pin_value);
    match cli.cmd {
        Cmd::Sign(a) => sign::run(a, &cli.config).await.map(|()| ExitCode::SUCCESS),
        Cmd::Inspect(a) => inspect::run(a),
        Cmd::Verify(a) => verify::run(a).await,
        #[cfg(feature = "local")]
        Cmd::Keygen(a) => keygen::run(a).await.map(|()| ExitCode::SUCCESS),
        #[cfg(feature = "local")]
        Cmd::Key(k) => key::run(k).await,
        Cmd::Expires(a) => expires::run(a),
        Cmd::Policy(p) => policy::run(p, &cli.config),
        #[cfg(any(feature = "ekm", feature = "gcp"))]
        Cmd::Ekm(e) => ekm::run(e, &cli.config).await,
        Cmd::Pubkey(a) => pubkey::run(a, &cli.config).await,
        Cmd::Conformance(a) => conformance::run(a).await,
        #[cfg(feature = "agent")]
        Cmd::Agent(a) => agent::run(a).await.map(|()| ExitCode::SUCCESS),
        Cmd::Sshsig(c) => sshsig::run(c).await.map(|()| ExitCode::SUCCESS),
        #[cfg(feature = "server")]
        Cmd::Serve(a) => serve::serve(a, &cli.config)
            .await
            .map(|()| ExitCode::SUCCESS),
        #[cfg(feature = "server")]
        Cmd::Token(t) => serve::token(t, &cli.config)
            .await
            .map(|()| ExitCode::SUCCESS),
        #[cfg(feature = "store")]
        Cmd::Certs(c) => records::certs(c, &cli.config)
            .await
            .map(|()| ExitCode::SUCCESS),
        #[cfg(feature = "store")]
        Cmd::Store(c) => store::run(c, &cli.config).await.map(|()| ExitCode::SUCCESS),
        #[cfg(feature = "store")]
        Cmd::Audit(a) => audit::run(a, &cli.config).await,
        #[cfg(feature = "client")]
        Cmd::Request(a) => request::run(a).await,
        #[cfg(feature = "client")]
        Cmd::Approvals(a) => approvals::run(a).await,
        #[cfg(feature = "client")]
        Cmd::Renew(a) => renew::run(a).await.map(|()| ExitCode::SUCCESS),
        #[cfg(feature = "login")]
        Cmd::Login(a) => login::run(a).await,
        #[cfg(feature = "login")]
        Cmd::Config(ConfigCmd::Ssh(a)) => {
            login::ssh_config::run(a).await.map(|()| ExitCode::SUCCESS)
        }
        #[cfg(feature = "client")]
        Cmd::Config(ConfigCmd::Systemd { state }) => host::systemd(&state).map(|text| {
            print!("{text}");
            ExitCode::SUCCESS
        }),
        #[cfg(feature = "client")]
        Cmd::Host(c) => host::run(c).await.map(|()| ExitCode::SUCCESS),
        #[cfg(feature = "store")]
        Cmd::Revoke(a) => krl::revoke(a, &cli.config)
            .await
            .map(|()| ExitCode::SUCCESS),
        Cmd::Krl(k) => krl::run(k, &cli.config).await,
        #[cfg(feature = "store")]
        Cmd::Ca(c) => ca::run(c, &cli.config).await.map(|()| ExitCode::SUCCESS),
    }
}

/// The one place errors are printed: the error, then its causes.
fn report(e: &Error) {
    eprintln!("sshca: error: {}", e.report());
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `sshca login --check` runs before every `ssh`: one thread, no log
    // set-up (it prints nothing).
    #[cfg(feature = "login")]
    let quick = matches!(&cli.cmd, Cmd::Login(a) if a.is_check());
    #[cfg(not(feature = "login"))]
    let quick = false;
    let mut builder = if quick {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    // The service uses every core; a command two threads.
    #[cfg(feature = "server")]
    let serving = matches!(cli.cmd, Cmd::Serve(_));
    #[cfg(not(feature = "server"))]
    let serving = false;
    if !serving && !quick {
        builder.worker_threads(2);
        // Warnings (a PIN file others can read, a store file others can
        // read) on stderr; `sshca serve` sets up its own logging.
        let filter = tracing_subscriber::EnvFilter::try_from_env("SSHCA_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .without_time()
            .with_target(false)
            .with_ansi(false)
            .try_init();
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            report(
                &Error::new(ErrorKind::Internal, "cannot start the async runtime").with_source(e),
            );
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            ExitCode::from(1)
        }
    }
}
