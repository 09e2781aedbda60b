//! sshca backend for CA keys held by a running ssh-agent, as `ssh-keygen -s
//! CA.pub -U` and step-ca's sshagentkms use one: the private key stays in
//! the agent (which may itself front a smartcard or another machine's
//! agent through forwarding).
//!
//! URI: `ssh-agent:SHA256:FINGERPRINT[?socket=PATH]` — the key whose SHA256
//! fingerprint is given, in the agent at `socket` (default:
//! `$SSH_AUTH_SOCK`). RSA keys sign rsa-sha2-512 or rsa-sha2-256 (the agent
//! flags 0x04 / 0x02). Each signature uses its own connection, so signers
//! may sign concurrently.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use ssh_agent_lib::agent::Session;
use ssh_agent_lib::client::Client;
use ssh_agent_lib::proto::{PublicCredential, SignRequest};
use ssh_key::HashAlg;
use sshca_core::{SigAlg, Signature};
use sshca_signer::{
    Error, ErrorKind, FixedKey, FixedKeyBackend, KeySigner, KeyUri, Registry, Result,
};

/// The URI scheme of this backend.
pub const SCHEME: &str = "ssh-agent";

/// Agent signature flags (draft-miller-ssh-agent §3.6.1).
const SSH_AGENT_RSA_SHA2_256: u32 = 0x02;
const SSH_AGENT_RSA_SHA2_512: u32 = 0x04;

/// Registers the `ssh-agent:` scheme.
pub fn register(registry: &mut Registry) {
    registry.register(SCHEME, |uri| {
        Box::pin(async move {
            let s: Arc<dyn KeySigner> = Arc::new(AgentSigner::open(uri).await?);
            Ok(s)
        })
    });
}

/// A CA key held by an ssh-agent.
#[derive(Debug)]
pub struct AgentSigner {
    key: FixedKey,
    socket: PathBuf,
}

fn unavailable(uri: &KeyUri, what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Unavailable, format!("`{uri}`: {what}"))
}

async fn connect(uri: &KeyUri, socket: &PathBuf) -> Result<Client<tokio::net::UnixStream>> {
    let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| {
        unavailable(
            uri,
            format_args!("cannot reach the ssh-agent at {}", socket.display()),
        )
        .with_source(e)
    })?;
    Ok(Client::new(stream))
}

impl AgentSigner {
    /// Finds the key in the agent.
    pub async fn open(uri: KeyUri) -> Result<Self> {
        uri.check_options(&["socket"])?;
        let want = uri.location().to_owned();
        if !want.starts_with("SHA256:") {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("`{uri}`: name the key by its SHA256 fingerprint (ssh-agent:SHA256:...)"),
            ));
        }
        let socket = match uri.option("socket") {
            Some(s) => PathBuf::from(s),
            None => std::env::var_os("SSH_AUTH_SOCK")
                .map(PathBuf::from)
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidInput,
                        format!("`{uri}`: no agent: add `?socket=PATH` or set SSH_AUTH_SOCK"),
                    )
                })?,
        };
        let mut client = connect(&uri, &socket).await?;
        let ids = client
            .request_identities()
            .await
            .map_err(|e| unavailable(&uri, format_args!("the agent did not list its keys: {e}")))?;
        let mut held = Vec::new();
        let mut found = None;
        for id in ids {
            let key = match id.credential {
                PublicCredential::Key(k) => k,
                PublicCredential::Cert(c) => c.public_key().clone(),
            };
            let fp = key.fingerprint(HashAlg::Sha256).to_string();
            if fp == want {
                found = Some(key);
                break;
            }
            held.push(fp);
        }
        let public = found.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                format!(
                    "`{uri}`: the agent at {} holds no key {want} (it holds: {})",
                    socket.display(),
                    if held.is_empty() {
                        "none".to_owned()
                    } else {
                        held.join(", ")
                    }
                ),
            )
        })?;
        let algorithms = SigAlg::for_key(&public)
            .map_err(|e| Error::new(ErrorKind::Unsupported, format!("`{uri}`: {e}")))?;
        Ok(Self {
            key: FixedKey::new(uri, public, algorithms),
            socket,
        })
    }
}

#[async_trait]
impl FixedKeyBackend for AgentSigner {
    fn fixed_key(&self) -> &FixedKey {
        &self.key
    }

    async fn sign_checked(&self, alg: SigAlg, message: &[u8]) -> Result<Signature> {
        let flags = match alg {
            SigAlg::RsaSha256 => SSH_AGENT_RSA_SHA2_256,
            SigAlg::RsaSha512 => SSH_AGENT_RSA_SHA2_512,
            _ => 0,
        };
        let uri = self.key.uri();
        let mut client = connect(uri, &self.socket).await?;
        let sig = client
            .sign(SignRequest {
                credential: PublicCredential::Key(self.key.public_key()),
                data: message.to_vec(),
                flags,
            })
            .await
            .map_err(|e| unavailable(uri, format_args!("the agent did not sign: {e}")))?;
        if sig.algorithm() != alg.algorithm() {
            return Err(Error::new(
                ErrorKind::BadResponse,
                format!(
                    "`{uri}`: asked the agent for {alg}, it signed with {}",
                    sig.algorithm()
                ),
            ));
        }
        Ok(sig)
    }
}

sshca_signer::fixed_key_signer!(AgentSigner);
