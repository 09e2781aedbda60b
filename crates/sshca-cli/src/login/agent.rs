//! The person's ssh-agent (`$SSH_AUTH_SOCK`): a login's key and
//! certificate go in with a lifetime, so the agent forgets them when the
//! certificate expires; `--check` lists the certificates it holds.

use std::path::{Path, PathBuf};

use ssh_agent_lib::agent::Session;
use ssh_agent_lib::proto::{
    AddIdentity, AddIdentityConstrained, KeyConstraint, PrivateCredential, PrivateKeyData,
    PublicCredential,
};
use sshca::core::ssh_key::private::Ed25519Keypair;
use sshca::core::ssh_key::Certificate;
use sshca::signer::{Error, ErrorKind, Result};

/// The agent's socket, when `$SSH_AUTH_SOCK` names one.
pub(super) fn socket() -> Option<PathBuf> {
    std::env::var_os("SSH_AUTH_SOCK")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

async fn connect(sock: &Path) -> Result<ssh_agent_lib::client::Client<tokio::net::UnixStream>> {
    let stream = tokio::net::UnixStream::connect(sock)
        .await
        .map_err(|e| Error::io("cannot reach the ssh-agent ($SSH_AUTH_SOCK)", sock, &e))?;
    Ok(ssh_agent_lib::client::Client::new(stream))
}

fn agent_err(sock: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        format!("the ssh-agent at {} {what}: {e}", sock.display()),
    )
}

/// Adds the Ed25519 `key` with its certificate (`-cert.pub` line),
/// forgotten by the agent after `lifetime` seconds.
pub(super) async fn add(
    sock: &Path,
    key: &Ed25519Keypair,
    cert: &str,
    lifetime: u32,
    comment: &str,
) -> Result<()> {
    let cert = Certificate::from_openssh(cert).map_err(|e| {
        Error::new(
            ErrorKind::BadResponse,
            format!("the service sent an unreadable certificate: {e}"),
        )
    })?;
    let mut client = connect(sock).await?;
    client
        .add_identity_constrained(AddIdentityConstrained {
            identity: AddIdentity {
                credential: PrivateCredential::Cert {
                    algorithm: cert.algorithm(),
                    certificate: Box::new(cert.clone()),
                    privkey: PrivateKeyData::Ed25519(key.clone()),
                    comment: comment.to_owned(),
                },
            },
            constraints: vec![KeyConstraint::Lifetime(lifetime.max(1))],
        })
        .await
        .map_err(|e| agent_err(sock, "refused the certificate", e))
}

/// The certificates the agent holds.
pub(super) async fn certificates(sock: &Path) -> Result<Vec<Certificate>> {
    let mut client = connect(sock).await?;
    let ids = client
        .request_identities()
        .await
        .map_err(|e| agent_err(sock, "did not list its keys", e))?;
    Ok(ids
        .into_iter()
        .filter_map(|id| match id.credential {
            PublicCredential::Cert(c) => Some(*c),
            PublicCredential::Key(_) => None,
        })
        .collect())
}
