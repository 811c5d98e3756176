//! Key files `keys/<id>`: a plaintext argon2id header and the sealed master key.
//!
//! Everything in a key file except `sealed_master` is unauthenticated: the KDF parameters and
//! salt only matter because a changed value makes the payload fail to open, but `created_ns`,
//! `host` and `user` are informational and anyone with write access to the store can change
//! them (the file then gets another name, and opens as before). Print them escaped.

use crate::crypto::kdf::KdfParams;
use crate::error::{Error, Result};
use crate::id::Id;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Version of [`KeyFile`] and [`MasterKeyPayload`] written and read by this build. Version 1
/// (development builds before 2026-11-30) sealed a 64-bit chunker seed; it is refused with a
/// message of its own ([`KeyFile::is_legacy`]).
pub const KEY_FILE_VERSION: u8 = 2;

/// Largest key file a reader fetches, in bytes. A key file written by cairn is about 190 bytes
/// plus its host and user names, which writers cut to [`MAX_NAME_LEN`] bytes each.
pub const MAX_KEY_FILE_SIZE: u64 = 4096;

/// Longest host or user name written into a key file, in bytes (longer ones are cut at a
/// character boundary).
pub const MAX_NAME_LEN: usize = 256;

/// Upper bound on the KDF memory a key file may ask for, in KiB (see [`KdfParams::validate`]).
pub const MAX_KDF_MEMORY_KIB: u32 = crate::crypto::kdf::MAX_MEMORY_KIB;
/// Upper bound on KDF iterations (see [`KdfParams::validate`]).
pub const MAX_KDF_ITERATIONS: u32 = crate::crypto::kdf::MAX_ITERATIONS;

/// One password's key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// Format version ([`KEY_FILE_VERSION`]).
    pub version: u8,
    /// argon2id parameters.
    pub kdf: KdfParams,
    /// argon2id salt.
    pub salt: [u8; 16],
    /// When the key was made, ns since the Unix epoch. Not authenticated.
    pub created_ns: i64,
    /// Host that made it. Not authenticated: untrusted text.
    pub host: String,
    /// User that made it. Not authenticated: untrusted text.
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
    /// Format version ([`KEY_FILE_VERSION`]).
    pub version: u8,
    /// The repository's id (from its config).
    #[zeroize(skip)]
    pub repository_id: Id,
    /// Encryption key.
    pub encryption: [u8; 32],
    /// Blob id key.
    pub id: [u8; 32],
    /// Chunker key: the 256-bit secret of the gear table (format.md §14).
    pub chunker: [u8; 32],
}

/// Exact encoded length of a [`MasterKeyPayload`]: version, id, three keys (postcard writes
/// fixed-size arrays without a length).
pub const PAYLOAD_LEN: usize = 1 + 32 + 3 * 32;

impl MasterKeyPayload {
    /// Encode into a buffer that is wiped when dropped. The buffer has its final size from
    /// the start, so no reallocation leaves a copy of the keys behind.
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>> {
        let mut buf = Zeroizing::new(vec![0u8; PAYLOAD_LEN]);
        let used = postcard::to_slice(self, &mut buf[..])
            .map_err(|e| Error::usage(format!("cannot encode the key payload: {e}")))?
            .len();
        buf.truncate(used);
        Ok(buf)
    }

    /// Decode a payload (after opening it).
    pub fn decode(bytes: &[u8]) -> Result<MasterKeyPayload> {
        super::decode_version(bytes, &"key payload", KEY_FILE_VERSION)
    }
}

impl KeyFile {
    /// Decode and bound-check a key file: its version, and KDF parameters within
    /// [`KdfParams::validate`] (the same check every writer applies).
    pub fn decode(bytes: &[u8], what: &dyn std::fmt::Display) -> Result<KeyFile> {
        if bytes.len() as u64 > MAX_KEY_FILE_SIZE {
            return Err(Error::corrupt(format!(
                "{what} is corrupt: {} bytes, more than a key file may have ({MAX_KEY_FILE_SIZE})",
                bytes.len()
            )));
        }
        if Self::is_legacy(bytes) {
            return Err(Error::corrupt(format!(
                "{what} has format version 1 (a development build's 64-bit chunker seed); this \
                 cairn reads version {KEY_FILE_VERSION} only: re-create the repository"
            )));
        }
        let k: KeyFile = super::decode_version(bytes, what, KEY_FILE_VERSION)?;
        k.kdf
            .validate()
            .map_err(|e| Error::corrupt(format!("{what} is corrupt: {e}")))?;
        Ok(k)
    }

    /// Whether `bytes` start like a key file of the withdrawn version 1.
    pub fn is_legacy(bytes: &[u8]) -> bool {
        bytes.first() == Some(&1)
    }

    /// Encode for storage, after checking what every reader checks (so nothing unreadable is
    /// ever written): the KDF parameters and the size bound.
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.kdf.validate()?;
        let bytes = super::encode(self)?;
        if bytes.len() as u64 > MAX_KEY_FILE_SIZE {
            return Err(Error::usage(format!(
                "key file of {} bytes is larger than readers accept ({MAX_KEY_FILE_SIZE})",
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}

/// `s` cut to at most [`MAX_NAME_LEN`] bytes at a character boundary.
pub fn clip_name(s: &str) -> String {
    let mut end = s.len().min(MAX_NAME_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> KeyFile {
        KeyFile {
            version: KEY_FILE_VERSION,
            kdf: KdfParams::default(),
            salt: [0x5a; 16],
            created_ns: 0,
            host: "h".into(),
            user: "u".into(),
            sealed_master: vec![0xde, 0xad, 0xbe, 0xef],
        }
    }

    #[test]
    fn round_trip_and_bounds_shared_with_the_writer() {
        let k = sample();
        let b = k.encode().unwrap();
        assert_eq!(KeyFile::decode(&b, &"key").unwrap(), k);
        let mut bad = sample();
        bad.kdf.iterations = 65;
        // The writer refuses what the reader refuses, with the same check.
        assert!(bad.encode().is_err());
        let raw = crate::format::encode(&bad).unwrap();
        let e = KeyFile::decode(&raw, &"key x").unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Corrupt);
        assert!(e.to_string().contains("out of range"), "{e}");
        bad.kdf.iterations = 3;
        bad.kdf.memory_kib = (1 << 20) + 1;
        assert!(bad.encode().is_err());
    }

    #[test]
    fn oversized_and_legacy_files_are_refused_early() {
        let mut k = sample();
        k.host = "h".repeat(5000);
        assert!(k.encode().is_err());
        let raw = crate::format::encode(&k).unwrap();
        assert!(
            KeyFile::decode(&raw, &"key")
                .unwrap_err()
                .to_string()
                .contains("more than")
        );
        let mut old = sample().encode().unwrap();
        old[0] = 1;
        let e = KeyFile::decode(&old, &"key 1234").unwrap_err();
        assert!(e.to_string().contains("version 1"), "{e}");
        assert!(KeyFile::is_legacy(&old));
    }

    #[test]
    fn payload_encodes_to_its_exact_length() {
        let p = MasterKeyPayload {
            version: KEY_FILE_VERSION,
            repository_id: Id([7; 32]),
            encryption: [1; 32],
            id: [2; 32],
            chunker: [3; 32],
        };
        let b = p.encode().unwrap();
        assert_eq!(b.len(), PAYLOAD_LEN);
        assert_eq!(b[..], crate::format::encode(&p).unwrap()[..]);
        assert!(MasterKeyPayload::decode(&b).unwrap() == p);
        let mut old = b.to_vec();
        old[0] = 1;
        assert!(MasterKeyPayload::decode(&old).is_err());
    }

    #[test]
    fn names_are_clipped_on_char_boundaries() {
        assert_eq!(clip_name("abc"), "abc");
        let long = "é".repeat(200);
        let c = clip_name(&long);
        assert!(c.len() <= MAX_NAME_LEN && c.len() >= MAX_NAME_LEN - 1);
        assert!(long.starts_with(&c));
    }
}
