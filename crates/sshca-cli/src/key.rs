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
    /// Seal a private key under a KMS key-encryption key: DEST becomes a
    /// `wrapped:` key (and DEST.pub its public key); SRC is left as it is.
    #[cfg(feature = "wrapped")]
    Wrap {
        /// The key-encryption key's URI (awskms:, gcpkms:, azurekv:, ekm:).
        #[arg(long = "with", value_name = "KEK_URI")]
        with: String,
        /// Passphrase file of an encrypted SRC (else SSHCA_PASSPHRASE).
        #[arg(long = "passphrase-file")]
        passphrase_file: Option<PathBuf>,
        /// The private key file to seal.
        src: PathBuf,
        /// Where the wrapped key is written (must not exist).
        dest: PathBuf,
    },
    /// Move a wrapped key to another key-encryption key (KEK rotation): one
    /// unwrap with the old KEK, one wrap with the new one; same public key.
    #[cfg(feature = "wrapped")]
    Rewrap {
        /// The new key-encryption key's URI.
        #[arg(long = "with", value_name = "KEK_URI")]
        with: String,
        /// The wrapped key file.
        src: PathBuf,
        /// Where the re-wrapped key is written (may be SRC: replaced atomically).
        dest: PathBuf,
    },
}

/// Writes a wrapped key (0600) and its public key beside it (DEST.pub).
#[cfg(feature = "wrapped")]
pub(crate) fn write_wrapped(
    dest: &std::path::Path,
    file: &sshca::wrapped::WrappedFile,
    replace: bool,
) -> Result<()> {
    let pub_path = crate::files::key_pair_paths(dest, replace, "")?;
    crate::files::write_atomic_with(dest, file.to_text()?.as_bytes(), 0o600, replace)?;
    crate::files::write_atomic_with(
        &pub_path,
        format!("{}\n", file.public_key).as_bytes(),
        0o644,
        true,
    )?;
    eprintln!(
        "Wrote {} (sealed under {}) and {}",
        dest.display(),
        file.kek,
        pub_path.display()
    );
    println!("{}", file.key_id);
    Ok(())
}

/// `sshca key`.
pub async fn run(cmd: KeyCmd) -> Result<ExitCode> {
    let registry = sshca::default_registry();
    match cmd {
        KeyCmd::Public {
            passphrase_file,
            reference,
        } => {
            let r =
                crate::keyref::load_ref(&registry, &reference, passphrase_file.as_deref()).await?;
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
            let r =
                crate::keyref::load_ref(&registry, &reference, passphrase_file.as_deref()).await?;
            let key = r.public_key();
            let (bits, curve) = sshca::key_size(&key);
            let kind = match &r {
                crate::keyref::KeyRef::Public(_) => "public key",
                crate::keyref::KeyRef::Certificate(_) => "certificate (certified key)",
                crate::keyref::KeyRef::Private(_) => "private key",
                crate::keyref::KeyRef::Uri(..) => "key URI",
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
            let p =
                crate::keyref::load_ref(&registry, &private, passphrase_file.as_deref()).await?;
            if !matches!(p, crate::keyref::KeyRef::Private(_)) {
                return Err(invalid(format!("{private} is not a private key file")));
            }
            let other = crate::keyref::load_ref(&registry, &public, None).await?;
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
        #[cfg(feature = "wrapped")]
        KeyCmd::Wrap {
            with,
            passphrase_file,
            src,
            dest,
        } => {
            let mut uri = sshca::signer::KeyUri::new("file", &src.to_string_lossy())?;
            if let Some(f) = &passphrase_file {
                uri.set_option("passphrase-file", &f.to_string_lossy());
            }
            let local = sshca_local::LocalSigner::open(&uri)?;
            let key = local.to_private_key()?;
            let text = sshca_local::keys::to_openssh(&key, None)?;
            let sealed =
                sshca::wrapped::WrappedFile::seal(&registry, &with, &text, key.public_key())
                    .await?;
            write_wrapped(&dest, &sealed, false)?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "wrapped")]
        KeyCmd::Rewrap { with, src, dest } => {
            let old = sshca::wrapped::WrappedFile::load(&src)?;
            let text = old.open_private(&registry, &src).await?;
            let key = sshca::core::ssh_key::PrivateKey::from_openssh(text.as_bytes())
                .map_err(|e| invalid(format!("{}: the unwrapped key: {e}", src.display())))?;
            let sealed =
                sshca::wrapped::WrappedFile::seal(&registry, &with, &text, key.public_key())
                    .await?;
            write_wrapped(&dest, &sealed, dest == src)?;
            Ok(ExitCode::SUCCESS)
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
            let r =
                crate::keyref::load_ref(&registry, &arg, old_passphrase_file.as_deref()).await?;
            let crate::keyref::KeyRef::Private(key) = r else {
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
