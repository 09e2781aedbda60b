//! `sshca pubkey`: the CA line for `TrustedUserCAKeys`, or for known_hosts;
//! with `--all --ca NAME`, the CA's whole trust bundle (current, next and
//! retired-but-unexpired keys).

use std::path::Path;
use std::process::ExitCode;

use clap::Args;
use sshca::signer::Result;

use crate::output::{ca_line, invalid};

/// Arguments of `sshca pubkey`.
#[derive(Args, Debug)]
pub struct PubkeyArgs {
    /// Print `@cert-authority PATTERN KEY` for known_hosts.
    #[arg(long = "known-hosts", value_name = "PATTERN")]
    pub known_hosts: Option<String>,
    /// Every key of the CA named by --ca: the trust bundle to publish
    /// before and during a rotation.
    #[arg(long, requires = "ca", conflicts_with = "uri")]
    pub all: bool,
    /// A CA of the config (`[ca.NAME]`).
    #[arg(long)]
    pub ca: Option<String>,
    /// With --all: `cert-authority` lines for authorized_keys.
    #[arg(long = "authorized-keys", conflicts_with = "known_hosts")]
    pub authorized_keys: bool,
    /// With --all: the store telling which retired keys still have valid
    /// certificates (default: the config's `[server] store`, when set).
    #[arg(long)]
    pub store: Option<String>,
    /// The CA key URI.
    #[arg(required_unless_present = "ca")]
    pub uri: Option<String>,
}

/// `sshca pubkey`.
pub async fn run(a: PubkeyArgs, #[allow(unused)] config: &Path) -> Result<ExitCode> {
    if a.all {
        return all(a, config).await;
    }
    let uri = match (&a.uri, &a.ca) {
        (Some(u), _) => crate::keyref::ca_uri(u),
        (None, Some(name)) => {
            let cfg = sshca::config::Config::load(config)?;
            cfg.cas
                .get(name)
                .ok_or_else(|| invalid(format!("no CA named `{name}` in {}", config.display())))?
                .uri()?
        }
        (None, None) => return Err(invalid("give a key URI or --ca NAME")),
    };
    let registry = sshca::default_registry();
    let signer = registry.open(&uri).await?;
    let key = signer.public_key().await?;
    println!("{}", ca_line(&key, a.known_hosts.as_deref(), "")?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "store")]
async fn all(a: PubkeyArgs, config: &Path) -> Result<ExitCode> {
    use sshca_authority::{bundle_text, BundleFormat, OpenedCa};
    let name = a.ca.as_deref().unwrap_or_default();
    let cfg = sshca::config::Config::load(config)?;
    let opened = OpenedCa::open(&cfg, name).await?;
    let store = if a.store.is_some() || sshca_authority::has_store(&cfg)? {
        Some(sshca_authority::open_store(a.store.as_deref(), &cfg).await?)
    } else {
        None
    };
    let keys = opened
        .trusted_keys(store.as_deref(), sshca_authority::unix_now())
        .await?;
    let format = match (&a.known_hosts, a.authorized_keys) {
        (Some(p), _) => BundleFormat::parse("known-hosts", Some(p))?,
        (None, true) => BundleFormat::AuthorizedKeys,
        (None, false) => BundleFormat::TrustedUserCaKeys,
    };
    print!("{}", bundle_text(name, &keys, &format)?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "store"))]
async fn all(_: PubkeyArgs, _: &Path) -> Result<ExitCode> {
    Err(sshca::signer::Error::new(
        sshca::signer::ErrorKind::Unsupported,
        "--all needs the `store` feature (the store of issued certificates)",
    ))
}
