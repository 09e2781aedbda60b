//! Reader of OpenSSH private key files (`openssh-key-v1`), unencrypted or
//! encrypted (bcrypt KDF + any cipher ssh-key supports).
//!
//! The container is parsed here rather than by `ssh_key::PrivateKey`, whose
//! 0.6 decoder rejects an ECDSA private scalar whose mpint is shorter than the
//! field size: ssh-keygen writes such keys for about half of all P-521 keys
//! and one in 256 P-256/P-384 keys. Decryption uses ssh-key's `Kdf` and `Cipher`.

use base64ct::{Base64, Encoding};
use ssh_encoding::Decode;
use ssh_key::{Cipher, Kdf};
use sshca_core::wire::Cursor;
use zeroize::Zeroizing;

use crate::{rsa_native, Native};
use sshca_signer::Secret;

const MAGIC: &[u8] = b"openssh-key-v1\0";

/// Why a key could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The file is malformed or of an unsupported kind.
    Invalid(String),
    /// The key is encrypted and needs a passphrase.
    NeedPassphrase,
    /// The passphrase does not decrypt the key.
    WrongPassphrase,
}

fn inv(e: impl std::fmt::Display) -> ReadError {
    ReadError::Invalid(e.to_string())
}

/// Left-pads an unsigned big-endian mpint body to `size` bytes.
fn scalar(m: &[u8], size: usize) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    let trimmed = match m {
        [0, rest @ ..] => rest,
        _ => m,
    };
    if trimmed.len() > size {
        return Err(inv(format_args!(
            "private scalar of {} bytes is too long for a {size}-byte curve",
            trimmed.len()
        )));
    }
    let mut v = Zeroizing::new(vec![0u8; size - trimmed.len()]);
    v.extend_from_slice(trimmed);
    Ok(v)
}

/// Reads an OpenSSH private key from its PEM text.
pub(crate) fn read(
    pem: &str,
    passphrase: impl FnOnce() -> Option<Secret>,
) -> Result<(Native, String), ReadError> {
    let b64: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "-----BEGIN OPENSSH PRIVATE KEY-----")
        .skip(1)
        .take_while(|l| *l != "-----END OPENSSH PRIVATE KEY-----")
        .collect();
    let blob = Zeroizing::new(
        Base64::decode_vec(&b64).map_err(|_| inv("the key body is not valid base64"))?,
    );
    let body = blob
        .strip_prefix(MAGIC)
        .ok_or_else(|| inv("not an openssh-key-v1 key"))?;
    let mut c = Cursor::new(body, "private key");
    let cipher_name = c.utf8("cipher name").map_err(inv)?;
    let kdf_start = c.remaining();
    c.string("kdf name").map_err(inv)?;
    c.string("kdf options").map_err(inv)?;
    let kdf_len = kdf_start.len() - c.remaining().len();
    let mut kdf_reader = &kdf_start[..kdf_len];
    let kdf = Kdf::decode(&mut kdf_reader).map_err(|e| inv(format_args!("kdf: {e}")))?;
    if c.u32("key count").map_err(inv)? != 1 {
        return Err(inv("files with more than one key are not supported"));
    }
    c.string("public key").map_err(inv)?;
    let private = c.string("private section").map_err(inv)?;
    let cipher = Cipher::new(cipher_name)
        .map_err(|_| inv(format_args!("unsupported cipher `{cipher_name}`")))?;
    let mut plain = Zeroizing::new(private.to_vec());
    if cipher.is_some() {
        let tag = if cipher.has_tag() {
            let t = c.take(16, "authentication tag").map_err(inv)?;
            let mut a = [0u8; 16];
            a.copy_from_slice(t);
            Some(a)
        } else {
            None
        };
        let pw = passphrase().ok_or(ReadError::NeedPassphrase)?;
        let (key, iv) = kdf
            .derive_key_and_iv(cipher, pw.expose().as_bytes())
            .map_err(|e| inv(format_args!("key derivation: {e}")))?;
        cipher
            .decrypt(&key, &iv, &mut plain, tag)
            .map_err(|_| ReadError::WrongPassphrase)?;
    }
    c.finish().map_err(inv)?;
    let mut p = Cursor::new(&plain, "private section");
    let check1 = p.u32("check").map_err(inv)?;
    let check2 = p.u32("check").map_err(inv)?;
    if check1 != check2 {
        return Err(if cipher.is_some() {
            ReadError::WrongPassphrase
        } else {
            inv("corrupt private section (check bytes differ)")
        });
    }
    let key_type = p.utf8("key type").map_err(inv)?;
    let native = match key_type {
        "ssh-ed25519" => {
            p.string("public key").map_err(inv)?;
            let sk = p.string("private key").map_err(inv)?;
            if sk.len() != 64 {
                return Err(inv("Ed25519 private key must be 64 bytes"));
            }
            let mut seed = Zeroizing::new([0u8; 32]);
            seed.copy_from_slice(&sk[..32]);
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            if key.verifying_key().as_bytes() != &sk[32..] {
                return Err(inv("Ed25519 private and public halves do not match"));
            }
            Native::Ed25519(key)
        }
        "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521" => {
            p.string("curve").map_err(inv)?;
            p.string("public point").map_err(inv)?;
            let d = p.string("private scalar").map_err(inv)?;
            let bad = |e: p256::ecdsa::Error| inv(format_args!("bad ECDSA private key: {e}"));
            match key_type {
                "ecdsa-sha2-nistp256" => {
                    Native::P256(p256::ecdsa::SigningKey::from_slice(&scalar(d, 32)?).map_err(bad)?)
                }
                "ecdsa-sha2-nistp384" => {
                    Native::P384(p384::ecdsa::SigningKey::from_slice(&scalar(d, 48)?).map_err(bad)?)
                }
                _ => Native::P521(p521::ecdsa::SigningKey::from_slice(&scalar(d, 66)?).map_err(bad)?),
            }
        }
        "ssh-rsa" => {
            let mut next = |f: &str| {
                p.string(f)
                    .map(rsa::BigUint::from_bytes_be)
                    .map_err(inv)
            };
            let n = next("n")?;
            let e = next("e")?;
            let d = next("d")?;
            let _iqmp = next("iqmp")?;
            let pr = next("p")?;
            let q = next("q")?;
            let key = rsa::RsaPrivateKey::from_components(n, e, d, vec![pr, q])
                .map_err(|e| inv(format_args!("bad RSA key: {e}")))?;
            rsa_native(key)
        }
        other => {
            return Err(inv(format_args!(
                "`{other}` keys cannot be CA keys (supported: ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa)"
            )))
        }
    };
    let comment = p.utf8("comment").map_err(inv)?.to_owned();
    // Padding: 1, 2, 3, ... up to the block size.
    for (i, b) in p.remaining().iter().enumerate() {
        if usize::from(*b) != i + 1 {
            return Err(if cipher.is_some() {
                ReadError::WrongPassphrase
            } else {
                inv("corrupt padding")
            });
        }
    }
    Ok((native, comment))
}
