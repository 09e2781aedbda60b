use std::fmt;

/// Result type of signers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, by meaning rather than by backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The key (or its vault, ring, file) does not exist.
    NotFound,
    /// The caller is known but may not use the key.
    PermissionDenied,
    /// Credentials are missing or wrong.
    Unauthenticated,
    /// The key exists but cannot sign SSH certificates (wrong usage, disabled,
    /// unsupported algorithm).
    InvalidKey,
    /// The service or this build does not support what was asked.
    Unsupported,
    /// The service asks us to slow down.
    Throttled,
    /// The service cannot be reached or failed (5xx, timeout, reset).
    Unavailable,
    /// The service answered with something unusable (a corrupt signature, a
    /// public key that does not match the pin).
    BadResponse,
    /// A signing policy refused the request.
    Policy,
    /// The request itself is wrong (a bad key URI, a bad template).
    InvalidInput,
    /// Reading or writing a local file or stream failed for a reason other
    /// than "not found" or "permission denied" (a full disk, an I/O error).
    Io,
    /// Something went wrong inside sshca, not in what was asked (a task
    /// that died, a runtime that could not start).
    Internal,
}

impl ErrorKind {
    /// Whether errors of this kind are temporary by default.
    pub fn is_temporary_by_default(self) -> bool {
        matches!(self, ErrorKind::Throttled | ErrorKind::Unavailable)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::InvalidKey => "invalid key",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::BadResponse => "bad response",
            ErrorKind::Policy => "refused by policy",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Io => "I/O error",
            ErrorKind::Internal => "internal error",
        };
        f.write_str(s)
    }
}

/// A signer error: a kind, whether retrying may help, a message with context,
/// and the underlying error if any.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Error {
    kind: ErrorKind,
    temporary: bool,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error; temporary if the kind is temporary by default.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            temporary: kind.is_temporary_by_default(),
            message: message.into(),
            source: None,
        }
    }

    /// An I/O failure on `path`: the message `"{what} {path}"`, the OS
    /// error as the [`source`](std::error::Error::source) (shown by
    /// [`Error::report`]); of kind NotFound or PermissionDenied where the OS
    /// says so, else Io.
    pub fn io(what: &str, path: &std::path::Path, e: &std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
            _ => ErrorKind::Io,
        };
        Error::new(kind, format!("{what} {}", path.display()))
            .with_source(std::io::Error::new(e.kind(), e.to_string()))
    }

    /// The whole story in one line: this error, then each cause in its
    /// [`source`](std::error::Error::source) chain, joined by `": "`.
    pub fn report(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Overrides whether the error is temporary.
    pub fn set_temporary(mut self, temporary: bool) -> Self {
        self.temporary = temporary;
        self
    }

    /// Prefixes the message with context.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.message = format!("{ctx}: {}", self.message);
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether retrying the same call may succeed.
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// The message (without the kind).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<sshca_core::Error> for Error {
    fn from(e: sshca_core::Error) -> Self {
        let kind = match &e {
            sshca_core::Error::Signature(_) | sshca_core::Error::Invalid(_) => {
                ErrorKind::BadResponse
            }
            sshca_core::Error::Key(_) => ErrorKind::InvalidKey,
            _ => ErrorKind::InvalidInput,
        };
        Error::new(kind, e.to_string())
    }
}
