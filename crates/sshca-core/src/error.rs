use std::fmt;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the certificate core. Each names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A certificate or key blob could not be decoded.
    #[error("malformed certificate: {0}")]
    Decode(String),
    /// A signature could not be converted or does not fit the key.
    #[error("bad signature: {0}")]
    Signature(String),
    /// A validity specification (`-V`) is invalid.
    #[error("invalid validity interval `{input}`: {reason}")]
    Validity {
        /// The input that was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate option (`-O`) is invalid.
    #[error("invalid certificate option `{input}`: {reason}")]
    CertOption {
        /// The input that was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate template cannot produce a certificate.
    #[error("invalid certificate request: {0}")]
    Template(String),
    /// A key is not usable for what was asked.
    #[error("unsupported key: {0}")]
    Key(String),
    /// A certificate failed verification.
    #[error("certificate not valid: {0}")]
    Invalid(String),
    /// A key revocation list is malformed or cannot be written.
    #[error("bad KRL: {0}")]
    Krl(String),
}

impl Error {
    pub(crate) fn decode(msg: impl fmt::Display) -> Self {
        Error::Decode(msg.to_string())
    }
    pub(crate) fn signature(msg: impl fmt::Display) -> Self {
        Error::Signature(msg.to_string())
    }
}
