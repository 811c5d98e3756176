//! Key material and sealing.
//!
//! *Sealing* turns plaintext into `nonce (12 random bytes) || AES-256-GCM-SIV(ciphertext || tag)`
//! with caller-chosen associated data: a blob's id for blobs, a fixed label for every other
//! object type, so one sealed object can never be passed off as another. GCM-SIV stays safe if a
//! random nonce ever repeats. The key for each object is passed in by the caller ([`Sealer`]),
//! never read from a global, so later formats can seal some objects under other keys.

pub mod kdf;

use crate::error::{Error, Result};
use crate::id::Id;
use aes_gcm_siv::aead::{AeadInOut, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Key, Nonce};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Bytes a sealed object adds to its plaintext: 12 of nonce, 16 of tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Length of the random nonce in front of every sealed object.
pub const NONCE_LEN: usize = 12;
/// Length of the GCM-SIV tag at the end of every sealed object.
pub const TAG_LEN: usize = 16;

/// Associated-data labels of the sealed object types other than blobs.
pub mod label {
    /// The repository config.
    pub const CONFIG: &[u8] = b"cairn/config";
    /// A pack header.
    pub const PACK_HEADER: &[u8] = b"cairn/pack-header";
    /// An index file.
    pub const INDEX: &[u8] = b"cairn/index";
    /// A snapshot.
    pub const SNAPSHOT: &[u8] = b"cairn/snapshot";
    /// The master keys inside a key file.
    pub const KEY: &[u8] = b"cairn/key";
    /// Lock objects.
    pub const LOCK: &[u8] = b"cairn/lock";
    /// The header of a WAL object (followed by a zero byte and the object's name).
    pub const WAL_HEADER: &[u8] = b"cairn/wal-header";
    /// The body of a WAL object (followed by a zero byte and the object's name).
    pub const WAL_BODY: &[u8] = b"cairn/wal";
}

/// Fill `buf` with random bytes from the operating system.
pub fn random_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::crypto(format!("no randomness from the OS: {e}")))
}

/// The repository's master key material, generated at `init`, stored only sealed in key files.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    /// AES-256-GCM-SIV key for every sealed object.
    pub encryption: [u8; 32],
    /// BLAKE3 key for blob ids.
    pub id: [u8; 32],
    /// Secret of the chunker's gear table (256 bits; format.md §14).
    pub chunker: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Fresh random key material.
    pub fn generate() -> Result<Self> {
        let mut k = MasterKey {
            encryption: [0; 32],
            id: [0; 32],
            chunker: [0; 32],
        };
        random_bytes(&mut k.encryption)?;
        random_bytes(&mut k.id)?;
        random_bytes(&mut k.chunker)?;
        Ok(k)
    }

    /// Whether `other` holds the same key material (used to check a key file read back after
    /// writing it; not constant-time, both sides are this process's own secrets).
    pub fn same_as(&self, other: &MasterKey) -> bool {
        self.encryption == other.encryption && self.id == other.id && self.chunker == other.chunker
    }

    /// The keyed BLAKE3 id of a blob's plaintext.
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.id, plaintext).as_bytes())
    }

    /// A sealer for this key's encryption key.
    pub fn sealer(&self) -> Sealer {
        Sealer::new(&self.encryption)
    }
}

/// Seals and opens objects under one AES-256-GCM-SIV key.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256GcmSiv,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// A sealer for a 256-bit key. The key is borrowed, not copied; the expanded cipher state
    /// is wiped when the sealer is dropped (the `zeroize` features of aes and aes-gcm-siv).
    pub fn new(key: &[u8; 32]) -> Self {
        let key: &Key<Aes256GcmSiv> = key.into();
        Sealer {
            cipher: Aes256GcmSiv::new(key),
        }
    }

    /// Seal the concatenation of `parts`, appending `nonce || ciphertext || tag` to `out`
    /// (encrypted in place: no intermediate copy).
    pub fn seal_parts_append(&self, aad: &[u8], parts: &[&[u8]], out: &mut Vec<u8>) -> Result<()> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        let len: usize = parts.iter().map(|p| p.len()).sum();
        out.reserve(NONCE_LEN + len + TAG_LEN);
        out.extend_from_slice(&nonce);
        let start = out.len();
        for p in parts {
            out.extend_from_slice(p);
        }
        let tag = self
            .cipher
            .encrypt_inout_detached(&Nonce::from(nonce), aad, (&mut out[start..]).into())
            .map_err(|_| Error::crypto("encryption failed"))?;
        out.extend_from_slice(tag.as_slice());
        Ok(())
    }

    /// Seal `plaintext`, appending `nonce || ciphertext || tag` to `out`.
    pub fn seal_append(&self, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.seal_parts_append(aad, &[plaintext], out)
    }

    /// Seal `plaintext` into a new buffer.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plaintext.len() + SEAL_OVERHEAD);
        self.seal_append(aad, plaintext, &mut out)?;
        Ok(out)
    }

    /// Open a sealed object; `what` names it in the error ("snapshot 1a2b…").
    pub fn open(&self, aad: &[u8], sealed: &[u8], what: &dyn std::fmt::Display) -> Result<Vec<u8>> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(Error::corrupt(format!(
                "{what} is corrupt: truncated ({} bytes)",
                sealed.len()
            )));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let mut nonce_arr = [0u8; NONCE_LEN];
        nonce_arr.copy_from_slice(nonce);
        let mut buf = body.to_vec();
        self.cipher
            .decrypt_in_place(&Nonce::from(nonce_arr), aad, &mut buf)
            .map_err(|_| Error::corrupt(format!("{what} is corrupt: authentication failed")))?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let k = MasterKey::generate().unwrap();
        let s = k.sealer();
        let sealed = s.seal(b"aad", b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(s.open(b"aad", &sealed, &"x").unwrap(), b"hello");
        assert!(s.open(b"other", &sealed, &"x").is_err());
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(
                s.open(b"aad", &bad, &"x").is_err(),
                "flip at {i} undetected"
            );
        }
        assert!(s.open(b"aad", &sealed[..10], &"x").is_err());
    }

    #[test]
    fn generated_keys_are_independent_and_full_width() {
        let a = MasterKey::generate().unwrap();
        let b = MasterKey::generate().unwrap();
        assert_ne!(a.chunker, b.chunker);
        assert_ne!(a.chunker, a.id);
        assert_ne!(a.chunker, a.encryption);
        // 256 bits of chunker secret: no more than a few zero bytes in a random key.
        assert!(a.chunker.iter().filter(|&&x| x == 0).count() < 8);
        assert_eq!(format!("{a:?}"), "MasterKey(..)");
    }

    /// Z1: the expanded AES key schedule is wiped on drop (the `zeroize` feature of aes is on;
    /// without it this does not compile).
    #[test]
    fn cipher_state_is_wiped_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<aes::Aes256>();
        wiped_on_drop::<MasterKey>();
    }

    #[test]
    fn blob_ids_are_keyed() {
        let a = MasterKey::generate().unwrap();
        let b = MasterKey::generate().unwrap();
        assert_ne!(a.blob_id(b"data"), b.blob_id(b"data"));
        assert_eq!(a.blob_id(b"data"), a.blob_id(b"data"));
    }
}
