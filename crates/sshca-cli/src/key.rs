//! `sshca key`: public, info, match and passphrase for any key reference.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use sshca::core::KeyData;
use sshca::signer::{Error, ErrorKind, Result};

use crate::output::invalid;

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Print the public key line of REF (public key, certificate, private key file, key URI).
    Public {
        /// Passphrase file of an encrypted private key (else SSHCA_PASSPHRASE).
        #[arg(long = "passphrase-file")]
        passphrase_file: Option<PathBuf>,
        /// The key reference.
        reference: String,
    },
    /// Print algorithm, size, curve, fingerprint and comment of REF.
    Info {
        /// Also print the MD5 fingerprint.
        #[arg(long)]
        md5: bool,
        /// Passphrase file of an encrypted private key (else SSHCA_PASSPHRASE).
        #[arg(long = "passphrase-file")]
        passphrase_file: Option<PathBuf>,
        /// The key reference.
        reference: String,
    },
    /// Exit 0 when PRIVATE belongs to PUBLIC (a public key or certificate).
    Match {
        /// Passphrase file of an encrypted private key (else SSHCA_PASSPHRASE).
        #[arg(long = "passphrase-file")]
        passphrase_file: Option<PathBuf>,
        /// The private key file.
        private: String,
        /// A public key, certificate, or key URI.
        public: String,
    },
    /// Re-encode a private key with a new passphrase or none (atomically).
    Passphrase {
        /// File holding the current passphrase (else SSHCA_PASSPHRASE).
        #[arg(long = "old-passphrase-file")]
        old_passphrase_file: Option<PathBuf>,
        /// File holding the new passphrase.
        #[arg(
            long = "new-passphrase-file",
            required_unless_present = "no_passphrase"
        )]
        new_passphrase_file: Option<PathBuf>,
        /// Store the key unencrypted.
        #[arg(long = "no-passphrase", conflicts_with = "new_passphrase_file")]
        no_passphrase: bool,
        /// The private key file.
        private: PathBuf,
    },
}

/// `sshca key`.
pub async fn run(cmd: KeyCmd) -> Result<ExitCode> {
    let registry = sshca::default_registry();
    match cmd {
        KeyCmd::Public {
            passphrase_file,
            reference,
        } => {
            let r = sshca::load_ref(&registry, &reference, passphrase_file.as_deref()).await?;
            println!(
                "{}",
                crate::output::ca_line(&r.public_key(), None, r.comment())?
            );
            Ok(ExitCode::SUCCESS)
        }
        KeyCmd::Info {
            md5,
            passphrase_file,
            reference,
        } => {
            let r = sshca::load_ref(&registry, &reference, passphrase_file.as_deref()).await?;
            let key = r.public_key();
            let (bits, curve) = sshca::key_size(&key);
            let kind = match &r {
                sshca::KeyRef::Public(_) => "public key",
                sshca::KeyRef::Certificate(_) => "certificate (certified key)",
                sshca::KeyRef::Private(_) => "private key",
                sshca::KeyRef::Uri(..) => "key URI",
            };
            println!("source: {kind}");
            println!("algorithm: {}", key.algorithm().as_str());
            println!("size: {bits}");
            if let Some(c) = curve {
                println!("curve: {c}");
            }
            println!("fingerprint: {}", sshca::fingerprint(&key));
            if md5 {
                println!("fingerprint-md5: {}", md5_fingerprint(&key)?);
            }
            println!("comment: {}", sshca::core::text::escape(r.comment()));
            Ok(ExitCode::SUCCESS)
        }
        KeyCmd::Match {
            passphrase_file,
            private,
            public,
        } => {
            let p = sshca::load_ref(&registry, &private, passphrase_file.as_deref()).await?;
            if !matches!(p, sshca::KeyRef::Private(_)) {
                return Err(invalid(format!("{private} is not a private key file")));
            }
            let other = sshca::load_ref(&registry, &public, None).await?;
            if p.public_key() == other.public_key() {
                println!("{private} matches {public}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "sshca: {private} ({}) does not belong to {public} ({})",
                    sshca::fingerprint(&p.public_key()),
                    sshca::fingerprint(&other.public_key())
                );
                Ok(ExitCode::from(1))
            }
        }
        KeyCmd::Passphrase {
            old_passphrase_file,
            new_passphrase_file,
            no_passphrase,
            private,
        } => {
            let new = match (&new_passphrase_file, no_passphrase) {
                (Some(f), _) => Some(sshca_local::read_passphrase_file(f)?),
                (None, true) => None,
                (None, false) => {
                    return Err(invalid("give --new-passphrase-file or --no-passphrase"))
                }
            };
            if new.as_ref().is_some_and(|p| p.is_empty()) {
                return Err(invalid("the new passphrase is empty (use --no-passphrase)"));
            }
            let arg = private.to_string_lossy().into_owned();
            let r = sshca::load_ref(&registry, &arg, old_passphrase_file.as_deref()).await?;
            let sshca::KeyRef::Private(key) = r else {
                return Err(invalid(format!("{arg} is not a private key file")));
            };
            let text =
                sshca_local::keys::to_openssh(&key, new.as_ref().map(|p| p.expose().as_bytes()))?;
            crate::files::write_atomic_with(&private, text.as_bytes(), 0o600, true)?;
            eprintln!(
                "{}: {}",
                private.display(),
                if new.is_some() {
                    "encrypted with the new passphrase"
                } else {
                    "stored without a passphrase"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// MD5 fingerprint in OpenSSH's form (`MD5:aa:bb:...`).
fn md5_fingerprint(key: &KeyData) -> Result<String> {
    use md5::{Digest, Md5};
    use sshca::core::ssh_key::PublicKey as Pk;
    let blob = Pk::new(key.clone(), "")
        .to_bytes()
        .map_err(|e| Error::new(ErrorKind::InvalidKey, format!("cannot encode key: {e}")))?;
    let d = Md5::digest(&blob);
    Ok(format!(
        "MD5:{}",
        d.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    ))
}
