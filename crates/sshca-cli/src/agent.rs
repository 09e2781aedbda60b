//! `sshca agent`: keys held by any backend served over the ssh-agent
//! protocol (ssh-agent-lib), so that `ssh`, `ssh-keygen -Y sign`,
//! `ssh-keygen -s CA.pub -U` and git use them. Keys cannot be added or
//! removed; every signature is verified before it is answered.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clap::Args;
use sha2::{Digest, Sha256};
use ssh_agent_lib::agent::Session;
use ssh_agent_lib::error::AgentError;
use ssh_agent_lib::proto::{Identity, PublicCredential, SignRequest};
use sshca::core::ssh_key::EcdsaCurve;
use sshca::core::{Algorithm, KeyData, SigAlg, Signature};
use sshca::signer::{verify_signature, Error, ErrorKind, KeySigner, KeyUri, Result};

use crate::output::{internal, invalid};

#[derive(Args, Debug, Clone)]
pub struct AgentArgs {
    /// Key URI to serve (repeatable; a plain path means `file:PATH`); its
    /// comment is the URI, or the URI's `comment=` option.
    #[arg(long = "key", required = true)]
    keys: Vec<String>,
    /// A certificate of one of the keys, offered too (repeatable).
    #[arg(long = "cert")]
    certs: Vec<PathBuf>,
    /// Socket path (default: agent.PID in a new 0700 directory under $TMPDIR).
    #[arg(short = 'a')]
    socket: Option<PathBuf>,
    /// Stay in the foreground.
    #[arg(short = 'D')]
    foreground: bool,
    /// The socket's directory was made for this agent: remove it on exit.
    #[arg(long, hide = true)]
    own_dir: bool,
    /// Run this command before each signature (through `sh -c`, with
    /// SSHCA_AGENT_KEY set to the key's comment); sign only if it exits 0.
    #[arg(long)]
    confirm: Option<String>,
}

struct AgentKey {
    signer: Arc<dyn KeySigner>,
    public: KeyData,
    comment: String,
    cert: Option<sshca::core::ssh_key::Certificate>,
}

struct State {
    keys: Vec<AgentKey>,
    /// SHA-256 of the lock passphrase while locked.
    locked: Mutex<Option<[u8; 32]>>,
    confirm: Option<String>,
}

#[derive(Clone)]
struct Agent(Arc<State>);

fn failure(e: Error) -> AgentError {
    eprintln!("sshca agent: {}", e.report());
    AgentError::Failure
}

impl Agent {
    fn is_locked(&self) -> bool {
        self.0.locked.lock().map(|l| l.is_some()).unwrap_or(true)
    }
}

/// The algorithm for a key and the request's flags (SSH_AGENT_RSA_SHA2_256
/// = 2, SSH_AGENT_RSA_SHA2_512 = 4).
fn algorithm(key: &KeyData, flags: u32) -> Result<SigAlg> {
    Ok(match key.algorithm() {
        Algorithm::Ed25519 => SigAlg::Ed25519,
        Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 } => SigAlg::EcdsaP256,
        Algorithm::Ecdsa { curve: EcdsaCurve::NistP384 } => SigAlg::EcdsaP384,
        Algorithm::Ecdsa { curve: EcdsaCurve::NistP521 } => SigAlg::EcdsaP521,
        Algorithm::Rsa { .. } if flags & 4 != 0 => SigAlg::RsaSha512,
        Algorithm::Rsa { .. } if flags & 2 != 0 => SigAlg::RsaSha256,
        Algorithm::Rsa { .. } => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "ssh-rsa (SHA-1) signatures are not made; the client must ask for rsa-sha2-256 or rsa-sha2-512",
            ))
        }
        other => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("keys of type {} are not served", other.as_str()),
            ))
        }
    })
}

#[ssh_agent_lib::async_trait]
impl Session for Agent {
    async fn request_identities(&mut self) -> std::result::Result<Vec<Identity>, AgentError> {
        if self.is_locked() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for k in &self.0.keys {
            out.push(Identity {
                credential: PublicCredential::Key(k.public.clone()),
                comment: k.comment.clone(),
            });
            if let Some(c) = &k.cert {
                out.push(Identity {
                    credential: PublicCredential::Cert(Box::new(c.clone())),
                    comment: k.comment.clone(),
                });
            }
        }
        Ok(out)
    }

    async fn sign(&mut self, request: SignRequest) -> std::result::Result<Signature, AgentError> {
        if self.is_locked() {
            return Err(failure(invalid("the agent is locked")));
        }
        let wanted = request.credential.key_data();
        let Some(key) = self.0.keys.iter().find(|k| &k.public == wanted) else {
            return Err(failure(invalid(format!(
                "no such key in this agent: {}",
                sshca::fingerprint(wanted)
            ))));
        };
        let alg = algorithm(&key.public, request.flags).map_err(failure)?;
        if let Some(cmd) = &self.0.confirm {
            let ok = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .env("SSHCA_AGENT_KEY", &key.comment)
                .status()
                .await
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                return Err(failure(Error::new(
                    ErrorKind::PermissionDenied,
                    format!("--confirm refused a signature by {}", key.comment),
                )));
            }
        }
        let sig = key.signer.sign(alg, &request.data).await.map_err(failure)?;
        if !key.signer.verifies_signatures() {
            verify_signature(&key.public, &request.data, &sig).map_err(failure)?;
        }
        Ok(sig)
    }

    async fn lock(&mut self, key: String) -> std::result::Result<(), AgentError> {
        let mut l = self.0.locked.lock().map_err(|_| AgentError::Failure)?;
        if l.is_some() {
            return Err(AgentError::Failure);
        }
        *l = Some(Sha256::digest(key.as_bytes()).into());
        Ok(())
    }

    async fn unlock(&mut self, key: String) -> std::result::Result<(), AgentError> {
        let mut l = self.0.locked.lock().map_err(|_| AgentError::Failure)?;
        let given: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        match *l {
            Some(h) if subtle::ConstantTimeEq::ct_eq(&h[..], &given[..]).into() => {
                *l = None;
                Ok(())
            }
            _ => Err(AgentError::Failure),
        }
    }
}

async fn open_keys(a: &AgentArgs) -> Result<Vec<AgentKey>> {
    let registry = sshca::default_registry();
    let mut keys = Vec::new();
    for k in &a.keys {
        // `comment=` is the agent's, not the backend's.
        let mut uri = KeyUri::parse(&crate::keyref::ca_uri(k))?;
        let comment = uri.remove_option("comment");
        let uri = uri.to_string();
        let comment = comment.unwrap_or_else(|| uri.clone());
        let signer = registry.open(&uri).await?;
        let public = signer.public_key().await?;
        keys.push(AgentKey {
            signer,
            public,
            comment,
            cert: None,
        });
    }
    for path in &a.certs {
        let text = crate::output::read_input(&path.display().to_string())?;
        let cert = sshca::core::ssh_key::Certificate::from_openssh(text.trim()).map_err(|e| {
            invalid(format!(
                "{}: not a certificate this agent can offer: {e}",
                path.display()
            ))
        })?;
        let key = keys
            .iter_mut()
            .find(|k| &k.public == cert.public_key())
            .ok_or_else(|| {
                invalid(format!(
                    "{}: certifies none of the --key keys",
                    path.display()
                ))
            })?;
        key.cert = Some(cert);
    }
    Ok(keys)
}

fn print_env(socket: &std::path::Path, pid: u32) {
    println!(
        "SSH_AUTH_SOCK={}; export SSH_AUTH_SOCK;\nSSH_AGENT_PID={pid}; export SSH_AGENT_PID;\necho Agent pid {pid};",
        socket.display()
    );
}

/// The agent's socket: a connection from another user (neither ours nor
/// root, by `SO_PEERCRED` / `getpeereid`) is closed unanswered, as OpenSSH's
/// ssh-agent does, whatever the socket's permissions.
#[derive(Debug)]
struct OwnerOnly {
    listener: tokio::net::UnixListener,
    uid: u32,
}

#[async_trait::async_trait]
impl ssh_agent_lib::agent::ListeningSocket for OwnerOnly {
    type Stream = tokio::net::UnixStream;

    async fn accept(&mut self) -> std::io::Result<Self::Stream> {
        loop {
            let (stream, _) = self.listener.accept().await?;
            match stream.peer_cred() {
                Ok(c) if c.uid() == self.uid || c.uid() == 0 => return Ok(stream),
                Ok(c) => eprintln!(
                    "sshca agent: refused a connection from uid {} (the agent is uid {})",
                    c.uid(),
                    self.uid
                ),
                Err(e) => eprintln!("sshca agent: refused a connection without credentials: {e}"),
            }
        }
    }
}

/// A session per connection that the owner check let through.
impl ssh_agent_lib::agent::Agent<OwnerOnly> for Agent {
    fn new_session(&mut self, _socket: &tokio::net::UnixStream) -> impl Session {
        self.clone()
    }
}

/// `sshca agent`.
pub async fn run(a: AgentArgs) -> Result<()> {
    let mut made_dir = None;
    let socket = match &a.socket {
        Some(p) => p.clone(),
        None => {
            let dir = tempfile::Builder::new()
                .prefix("sshca-agent-")
                .tempdir()
                .map_err(|e| {
                    Error::new(ErrorKind::Io, "cannot create the socket directory").with_source(e)
                })?;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io("cannot set permissions of", dir.path(), &e))?;
            let path = dir.path().join(format!("agent.{}", std::process::id()));
            made_dir = Some(dir.keep());
            path
        }
    };
    if !a.foreground {
        // Like ssh-agent: the agent goes on in the background, with no
        // terminal; this process checks the keys first (so that their errors
        // are shown here), prints where the agent listens and exits.
        if let Err(e) = open_keys(&a).await {
            if let Some(dir) = &made_dir {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(e);
        }
        let exe = std::env::current_exe()
            .map_err(|e| internal("cannot find this program").with_source(e))?;
        let mut args: Vec<std::ffi::OsString> = vec![
            "agent".into(),
            "-D".into(),
            "-a".into(),
            socket.clone().into(),
        ];
        if made_dir.is_some() || a.own_dir {
            args.push("--own-dir".into());
        }
        for k in &a.keys {
            args.extend(["--key".into(), k.into()]);
        }
        for c in &a.certs {
            args.extend(["--cert".into(), c.clone().into()]);
        }
        if let Some(c) = &a.confirm {
            args.extend(["--confirm".into(), c.into()]);
        }
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new(exe)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| internal("cannot start the agent").with_source(e))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !socket.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("the agent exited ({status})"),
                ));
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    "the agent did not start within 60 s",
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        print_env(&socket, child.id());
        return Ok(());
    }
    let keys = open_keys(&a).await?;
    // The socket is created 0600 (no window in which another user could
    // connect), as OpenSSH's ssh-agent does.
    let old = rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o177));
    let bound = tokio::net::UnixListener::bind(&socket);
    rustix::process::umask(old);
    let listener = OwnerOnly {
        listener: bound.map_err(|e| Error::io("cannot listen on", &socket, &e))?,
        uid: rustix::process::getuid().as_raw(),
    };
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("cannot set permissions of", &socket, &e))?;
    print_env(&socket, std::process::id());
    let agent = Agent(Arc::new(State {
        keys,
        locked: Mutex::new(None),
        confirm: a.confirm.clone(),
    }));
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let result = tokio::select! {
        r = ssh_agent_lib::agent::listen(listener, agent) => {
            r.map_err(|e| Error::new(ErrorKind::Io, "the agent stopped").with_source(e))
        }
        () = term => Ok(()),
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    let _ = std::fs::remove_file(&socket);
    if let Some(dir) = made_dir.or_else(|| {
        a.own_dir
            .then(|| socket.parent().map(PathBuf::from))
            .flatten()
    }) {
        let _ = std::fs::remove_dir(dir);
    }
    result
}
