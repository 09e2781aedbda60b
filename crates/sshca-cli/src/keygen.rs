//! `sshca keygen`: a local CA key, as ssh-keygen writes it, or a key pair
//! created on a PKCS#11 token (`--pkcs11 URI`).

use std::path::PathBuf;

use clap::Args;
use sshca::signer::Result;

use crate::output::invalid;

/// Arguments of `sshca keygen`.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Key type: ed25519, ecdsa or rsa.
    #[arg(short = 't', default_value = "ed25519")]
    pub key_type: String,
    /// Bits: ecdsa 256 (default), 384, 521; rsa 2048, 3072 (default), 4096.
    #[arg(short = 'b')]
    pub bits: Option<u32>,
    /// Encrypt with the passphrase in SSHCA_PASSPHRASE.
    #[arg(short = 'N', conflicts_with = "passphrase_file")]
    pub encrypt_from_env: bool,
    /// Encrypt with the passphrase in this file (its first line).
    #[arg(long = "passphrase-file")]
    pub passphrase_file: Option<PathBuf>,
    /// Comment.
    #[arg(short = 'C', default_value = "")]
    pub comment: String,
    /// Overwrite PATH and PATH.pub if they exist.
    #[arg(long)]
    pub force: bool,
    /// Create the key pair on a PKCS#11 token instead (sensitive,
    /// non-extractable): the URI names the token, the new key's `object=`
    /// (and `id=`, else a random one), the module and `pin-source`; prints
    /// the new key's URI.
    #[cfg(feature = "pkcs11")]
    #[arg(long, value_name = "URI", conflicts_with_all = ["encrypt_from_env", "passphrase_file", "force"])]
    pub pkcs11: Option<String>,
    /// Seal the new key under this KMS key-encryption key instead of
    /// writing it in the clear: PATH becomes a `wrapped:` key.
    #[cfg(feature = "wrapped")]
    #[arg(long, value_name = "KEK_URI", conflicts_with_all = ["encrypt_from_env", "passphrase_file"])]
    pub wrap_with: Option<String>,
    /// Where to write the private key.
    pub path: Option<PathBuf>,
}

/// `sshca keygen`.
pub async fn run(a: KeygenArgs) -> Result<()> {
    #[cfg(feature = "pkcs11")]
    if let Some(uri) = &a.pkcs11 {
        if let Some(p) = &a.path {
            return Err(invalid(format!(
                "--pkcs11 creates the key on the token; PATH ({}) is not used",
                p.display()
            )));
        }
        let spec = sshca::signer::KeySpec::parse(&a.key_type, a.bits)?;
        let uri = sshca::signer::KeyUri::parse(uri)?;
        let created = sshca::pkcs11::generate(&uri, spec)?;
        eprintln!("Created a {} key pair on the token", a.key_type);
        println!("{created}");
        return Ok(());
    }
    #[cfg(feature = "wrapped")]
    if let Some(kek) = &a.wrap_with {
        let Some(path) = &a.path else {
            return Err(invalid("give PATH, where the wrapped key is written"));
        };
        let spec = sshca::signer::KeySpec::parse(&a.key_type, a.bits)?;
        let key = sshca_local::keys::generate(spec, &a.comment)?;
        let text = sshca_local::keys::to_openssh(&key, None)?;
        let registry = sshca::default_registry();
        let sealed =
            sshca::wrapped::WrappedFile::seal(&registry, kek, &text, key.public_key()).await?;
        return crate::key::write_wrapped(path, &sealed, a.force);
    }
    let KeygenArgs {
        key_type,
        bits,
        encrypt_from_env: from_env,
        passphrase_file,
        comment,
        force,
        path,
        ..
    } = a;
    let Some(path) = path else {
        return Err(invalid("give PATH, where the private key is written"));
    };
    let (key_type, passphrase_file, comment, path) = (
        key_type.as_str(),
        passphrase_file.as_deref(),
        comment.as_str(),
        path.as_path(),
    );
    use sshca_local::keys;
    let spec = keys::KeySpec::parse(key_type, bits)?;
    let passphrase = match (from_env, passphrase_file) {
        (_, Some(f)) => Some(sshca_local::read_passphrase_file(f)?),
        (true, None) => Some(
            std::env::var(sshca_local::PASSPHRASE_ENV)
                .map(sshca::signer::Secret::new)
                .map_err(|_| {
                    invalid(format!(
                        "-N needs the passphrase in {}",
                        sshca_local::PASSPHRASE_ENV
                    ))
                })?,
        ),
        (false, None) => None,
    };
    if passphrase.as_ref().is_some_and(|p| p.is_empty()) {
        return Err(invalid("the passphrase is empty"));
    }
    let pub_path = crate::files::key_pair_paths(path, force, " (use --force to overwrite)")?;
    let key = keys::generate(spec, comment)?;
    let private = keys::to_openssh(&key, passphrase.as_ref().map(|p| p.expose().as_bytes()))?;
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| invalid(format!("cannot encode the public key: {e}")))?;
    crate::files::write_atomic_with(path, private.as_bytes(), 0o600, force)?;
    if let Err(e) =
        crate::files::write_atomic_with(&pub_path, format!("{public}\n").as_bytes(), 0o644, force)
    {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    eprintln!(
        "Created {} ({}{}) and {}",
        path.display(),
        key.algorithm().as_str(),
        if passphrase.is_some() {
            ", encrypted"
        } else {
            ""
        },
        pub_path.display()
    );
    println!("{}", sshca::fingerprint(key.public_key().key_data()));
    Ok(())
}
