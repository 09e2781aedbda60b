//! `sshca sshsig`: file signatures as `ssh-keygen -Y sign|verify|
//! check-novalidate` makes and checks them, with the key in any backend.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use sshca::core::sshsig::{decode, parse_allowed_signers, verify};
use sshca::core::{HashAlg, KeyData};
use sshca::signer::{Error, ErrorKind, Result, SignerExt};

use crate::output::{invalid, now};

#[derive(Subcommand, Debug)]
pub enum SshsigCmd {
    /// Sign files (FILE.sig) or stdin (to stdout), like `ssh-keygen -Y sign`.
    Sign(SignArgs),
    /// Check a signature of stdin against an allowed-signers file and
    /// identity, or one public key, like `ssh-keygen -Y verify`.
    Verify(VerifyArgs),
    /// Check that a signature of stdin is well formed and verifies under the
    /// key it carries (no identity), like `ssh-keygen -Y check-novalidate`.
    CheckNovalidate(CheckArgs),
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// Key URI (a plain path means `file:PATH`).
    #[arg(long, short = 'f')]
    key: String,
    /// Namespace (`git`, `file`, ...).
    #[arg(short = 'n')]
    namespace: String,
    /// `hashalg=sha256` or `hashalg=sha512` (default sha512).
    #[arg(short = 'O')]
    options: Vec<String>,
    /// Files to sign (none or `-`: stdin to stdout).
    files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Allowed-signers file (with -I).
    #[arg(
        short = 'f',
        long = "allowed-signers",
        requires = "identity",
        conflicts_with = "signer_key"
    )]
    allowed_signers: Option<PathBuf>,
    /// Identity the signer must have in the allowed-signers file.
    #[arg(short = 'I')]
    identity: Option<String>,
    /// The one public key that may have signed (instead of -f and -I).
    #[arg(long, required_unless_present = "allowed_signers")]
    signer_key: Option<PathBuf>,
    /// Namespace.
    #[arg(short = 'n')]
    namespace: String,
    /// Signature file.
    #[arg(short = 's')]
    signature: PathBuf,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Namespace.
    #[arg(short = 'n')]
    namespace: String,
    /// Signature file.
    #[arg(short = 's')]
    signature: PathBuf,
}

fn read_stdin() -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| Error::new(ErrorKind::Io, "cannot read stdin").with_source(e))?;
    Ok(buf)
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(&format!("cannot read the {what}"), path, &e))
}

/// How ssh-keygen names a key type in its messages.
fn key_label(key: &KeyData) -> &'static str {
    use sshca::core::Algorithm;
    match key.algorithm() {
        Algorithm::Ed25519 => "ED25519",
        Algorithm::Ecdsa { .. } => "ECDSA",
        Algorithm::Rsa { .. } => "RSA",
        Algorithm::SkEd25519 => "ED25519-SK",
        Algorithm::SkEcdsaSha2NistP256 => "ECDSA-SK",
        _ => "?",
    }
}

fn hash_alg(options: &[String]) -> Result<HashAlg> {
    let mut alg = HashAlg::Sha512;
    for o in options {
        alg = match o.to_ascii_lowercase().as_str() {
            "hashalg=sha256" => HashAlg::Sha256,
            "hashalg=sha512" => HashAlg::Sha512,
            _ => {
                return Err(invalid(format!(
                    "-O {o}: the only option is hashalg=sha256 or hashalg=sha512"
                )))
            }
        };
    }
    Ok(alg)
}

/// `sshca sshsig`.
pub async fn run(cmd: SshsigCmd) -> Result<()> {
    match cmd {
        SshsigCmd::Sign(a) => {
            let alg = hash_alg(&a.options)?;
            if a.namespace.is_empty() {
                return Err(invalid("-n: the namespace is empty"));
            }
            let signer = sshca::default_registry()
                .open(&crate::keyref::ca_uri(&a.key))
                .await?;
            let to_stdout = a.files.is_empty() || a.files.iter().all(|f| f.as_os_str() == "-");
            if to_stdout {
                let msg = read_stdin()?;
                let sig = signer.sign_sshsig(&a.namespace, alg, &msg).await?;
                let pem = armour(&sig)?;
                std::io::stdout()
                    .write_all(pem.as_bytes())
                    .map_err(|e| Error::new(ErrorKind::Io, "cannot write stdout").with_source(e))?;
                return Ok(());
            }
            for f in &a.files {
                if f.as_os_str() == "-" {
                    return Err(invalid("`-` (stdin) cannot be mixed with files"));
                }
                let msg = read_file(f, "file to sign")?;
                let sig = signer.sign_sshsig(&a.namespace, alg, &msg).await?;
                let out = PathBuf::from(format!("{}.sig", f.display()));
                crate::files::write_atomic(&out, armour(&sig)?.as_bytes())?;
                eprintln!(
                    "Signing file {}\nWrite signature to {}",
                    f.display(),
                    out.display()
                );
            }
            Ok(())
        }
        SshsigCmd::Verify(a) => {
            let sig = decode(&read_file(&a.signature, "signature")?)?;
            let msg = read_stdin()?;
            let key = verify(&sig, &a.namespace, &msg)?.clone();
            let fp = sshca::fingerprint(&key);
            match (&a.allowed_signers, &a.identity, &a.signer_key) {
                (Some(file), Some(identity), _) => {
                    let text = String::from_utf8(read_file(file, "allowed signers file")?)
                        .map_err(|_| invalid(format!("{}: not UTF-8 text", file.display())))?;
                    let list = parse_allowed_signers(&text)
                        .map_err(|e| Error::from(e).context(file.display()))?;
                    if !list
                        .iter()
                        .any(|s| s.allows(identity, &key, &a.namespace, now()))
                    {
                        return Err(Error::new(
                            ErrorKind::PermissionDenied,
                            format!(
                                "{} key {fp} may not sign for \"{}\" in namespace \"{}\" ({})",
                                key_label(&key),
                                sshca::core::text::escape(identity),
                                sshca::core::text::escape(&a.namespace),
                                file.display()
                            ),
                        ));
                    }
                    println!(
                        "Good \"{}\" signature for {} with {} key {fp}",
                        a.namespace,
                        sshca::core::text::escape(identity),
                        key_label(&key)
                    );
                }
                (_, _, Some(pub_path)) => {
                    let (want, _) = sshca::read_subject_key(pub_path)?;
                    if want != key {
                        return Err(Error::new(
                            ErrorKind::PermissionDenied,
                            format!("signed by {fp}, not by the key in {}", pub_path.display()),
                        ));
                    }
                    println!(
                        "Good \"{}\" signature with {} key {fp}",
                        a.namespace,
                        key_label(&key)
                    );
                }
                _ => {
                    return Err(invalid(
                        "give -f ALLOWED_SIGNERS -I IDENTITY, or --signer-key PUB",
                    ))
                }
            }
            Ok(())
        }
        SshsigCmd::CheckNovalidate(a) => {
            let sig = decode(&read_file(&a.signature, "signature")?)?;
            let msg = read_stdin()?;
            let key = verify(&sig, &a.namespace, &msg)?;
            println!(
                "Good \"{}\" signature with {} key {}",
                a.namespace,
                key_label(key),
                sshca::fingerprint(key)
            );
            Ok(())
        }
    }
}

pub(crate) fn armour(sig: &sshca::core::ssh_key::SshSig) -> Result<String> {
    let mut pem = sig
        .to_pem(sshca::core::ssh_key::LineEnding::LF)
        .map_err(|e| {
            Error::new(ErrorKind::Internal, "cannot armour the signature").with_source(e)
        })?;
    if !pem.ends_with('\n') {
        pem.push('\n');
    }
    Ok(pem)
}
