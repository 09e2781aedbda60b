//! `sshca pubkey`: the CA line for `TrustedUserCAKeys`, or for known_hosts.

use std::process::ExitCode;

use clap::Args;
use sshca::signer::Result;

use crate::output::ca_line;

/// Arguments of `sshca pubkey`.
#[derive(Args, Debug)]
pub struct PubkeyArgs {
    /// Print `@cert-authority PATTERN KEY` for known_hosts.
    #[arg(long = "known-hosts", value_name = "PATTERN")]
    pub known_hosts: Option<String>,
    /// The CA key URI.
    pub uri: String,
}

/// `sshca pubkey`.
pub async fn run(a: PubkeyArgs) -> Result<ExitCode> {
    let PubkeyArgs { known_hosts, uri } = a;
    let registry = sshca::default_registry();
    let signer = registry.open(&sshca::ca_uri(&uri)).await?;
    let key = signer.public_key().await?;
    println!("{}", ca_line(&key, known_hosts.as_deref(), "")?);
    Ok(ExitCode::SUCCESS)
}
