//! The one public error type of the library: a kind the CLI maps to an exit code and a message
//! that names the object or path concerned and, where possible, what to do next.

use std::fmt;

/// What went wrong, coarsely: callers branch on this, users read the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A repository object, snapshot, path or key does not exist.
    NotFound,
    /// Bytes read from the repository failed a check (AEAD, id, length, decoding).
    Corrupt,
    /// A password did not open any key, or key material is unusable.
    Crypto,
    /// The object store failed (network, permissions, ...).
    Backend,
    /// Something else holds a lock we need.
    Locked,
    /// The user asked for something malformed or impossible.
    Usage,
    /// A local file system operation failed.
    Io,
    /// An object that must be created already exists.
    AlreadyExists,
    /// There is no repository at the location (no config object).
    NoRepository,
    /// A bug or an impossible state inside cairn (a thread panicked, an encoder failed).
    Internal,
}

/// The library's error: a kind and a one-line message.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }
    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// `NotFound` with a message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// `Corrupt` with a message naming the object.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }
    /// `Usage` with a message.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, message)
    }
    /// `Crypto` with a message.
    pub fn crypto(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Crypto, message)
    }
    /// `Io` for `path`.
    pub fn io(context: impl Into<String>, e: std::io::Error) -> Self {
        Self::new(ErrorKind::Io, context).with_source(e)
    }
    /// `Backend` with a message.
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Backend, message)
    }
}
