//! Key files `keys/<id>`: a plaintext argon2id header and the sealed master key.

use crate::crypto::kdf::KdfParams;
use crate::error::{Error, Result};
use crate::id::Id;
use serde::{Deserialize, Serialize};

/// One password's key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// Format version.
    pub version: u8,
    /// argon2id parameters.
    pub kdf: KdfParams,
    /// argon2id salt.
    pub salt: [u8; 16],
    /// When the key was made, ns since the Unix epoch.
    pub created_ns: i64,
    /// Host that made it.
    pub host: String,
    /// User that made it.
    pub user: String,
    /// [`MasterKeyPayload`] sealed under the password-derived key.
    #[serde(with = "serde_bytes")]
    pub sealed_master: Vec<u8>,
}

/// What a key file seals: the master key material and the repository it belongs to.
#[derive(
    Clone, PartialEq, Eq, Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop,
)]
pub struct MasterKeyPayload {
    /// Format version.
    pub version: u8,
    /// The repository's id (from its config).
    #[zeroize(skip)]
    pub repository_id: Id,
    /// Encryption key.
    pub encryption: [u8; 32],
    /// Blob id key.
    pub id: [u8; 32],
    /// Chunker seed.
    pub chunker_seed: u64,
}

/// Upper bounds on KDF parameters a key file may ask for (a hostile file must not exhaust memory).
pub const MAX_KDF_MEMORY_KIB: u32 = 1 << 20;
/// Upper bound on KDF iterations.
pub const MAX_KDF_ITERATIONS: u32 = 64;

impl KeyFile {
    /// Decode and bound-check a key file.
    pub fn decode(bytes: &[u8], what: &dyn std::fmt::Display) -> Result<KeyFile> {
        let k: KeyFile = super::decode(bytes, what)?;
        let p = &k.kdf;
        if p.memory_kib > MAX_KDF_MEMORY_KIB
            || p.memory_kib < p.parallelism.saturating_mul(8)
            || p.iterations == 0
            || p.iterations > MAX_KDF_ITERATIONS
            || p.parallelism == 0
            || p.parallelism > 64
        {
            return Err(Error::corrupt(format!(
                "{what} is corrupt: KDF parameters out of range"
            )));
        }
        Ok(k)
    }
}
