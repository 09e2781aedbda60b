//! OpenSSH certificate core of sshca.
//!
//! This crate does no I/O and needs no async runtime. It holds:
//! - the certificate model and its two-phase signing: [`TbsCertificate::encode`]
//!   produces the bytes a CA key must sign, [`TbsCertificate::assemble`] joins them
//!   with the SSH signature into a [`Certificate`];
//! - a strict decoder for any OpenSSH certificate ([`Certificate::from_openssh`]),
//!   and verification ([`Certificate::validate`]);
//! - conversion of native signature formats (DER ECDSA, raw `r||s`, RSA PKCS#1
//!   v1.5, Ed25519) into SSH signatures ([`convert`]);
//! - OpenSSH key revocation lists, encoded compactly and decoded strictly
//!   ([`krl`]);
//! - ssh-keygen compatible syntax for validity intervals ([`validity`]) and
//!   certificate options ([`options`]).

pub mod cert;
pub mod convert;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod glob;
pub mod krl;
pub mod matcher;
pub mod options;
pub mod policy;
pub mod spki;
pub mod sshsig;
pub mod template;
pub mod text;
pub mod validate;
pub mod validity;
pub mod verify;
pub mod wire;

pub use cert::{
    random_serial, CertOptions, CertTemplate, CertType, Certificate, OptionValue, TbsCertificate,
};
pub use convert::{DigestAlg, SigAlg};
pub use error::{Error, Result};
pub use ssh_key;
pub use ssh_key::{public::KeyData, Algorithm, HashAlg, PublicKey, Signature};
pub use validate::{Refused, Rejection, Validation};
pub use verify::PreparedCa;

/// The `valid_before` value that means "forever" in OpenSSH certificates.
pub const FOREVER: u64 = u64::MAX;
