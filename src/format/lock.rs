//! Lock objects `locks/<id>`: who holds the repository's exclusive lock (prune, repair).

use crate::error::Result;
use serde::{Deserialize, Serialize};

/// The plaintext of a lock object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// Format version.
    pub version: u8,
    /// Host name of the holder.
    pub host: String,
    /// User name of the holder.
    pub user: String,
    /// Process id of the holder on its host.
    pub pid: u32,
    /// What holds it (`prune`, `repair index`, ...).
    pub command: String,
    /// When the lock was first taken, ns since the epoch.
    pub created_ns: i64,
    /// When this object was written (a refresh writes a new object), ns since the epoch.
    pub refreshed_ns: i64,
}

impl Lock {
    /// Decode a lock's plaintext.
    pub fn decode(bytes: &[u8], what: &dyn std::fmt::Display) -> Result<Lock> {
        super::decode(bytes, what)
    }
}
