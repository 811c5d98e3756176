//! Ids: 32-byte BLAKE3 digests, shown as lowercase hex.
//!
//! Blob ids are keyed (BLAKE3 keyed with the repository's id key, over the plaintext); names of
//! packs, index files, snapshots and key files are the unkeyed BLAKE3 of the stored bytes.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A 256-bit identifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub [u8; 32]);

/// Binary formats get the 32 raw bytes; human-readable ones (JSON) get hex.
impl Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Id, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Id::from_hex(&s).map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(d).map(Id)
        }
    }
}

impl Id {
    /// Unkeyed BLAKE3 of `data`: the name of a stored object.
    pub fn of_stored(data: &[u8]) -> Id {
        Id(*blake3::hash(data).as_bytes())
    }
    /// Full lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// The first 8 hex digits, as shown in tables.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
    /// Parse 64 hex digits, either case (user input, JSON). Names found in a repository
    /// listing go through the stricter [`Id::from_name`].
    pub fn from_hex(s: &str) -> Result<Id> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| Error::usage(format!("invalid id {s:?}: expected 64 hex digits")))?;
        Ok(Id(out))
    }
    /// Parse an object name as the repository writes it: exactly 64 lower-case hex digits.
    /// Anything else (upper case, other lengths, a `#` suffix) is not an object name, so an
    /// upper-case copy of an object is never mistaken for a second object (format.md §1).
    pub fn from_name(s: &str) -> Option<Id> {
        let b = s.as_bytes();
        if b.len() != 64 || !b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Id(out))
    }
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn hex_round_trip() {
        let id = Id::of_stored(b"x");
        assert_eq!(Id::from_hex(&id.to_hex()).unwrap(), id);
        assert!(Id::from_hex("zz").is_err());
        assert_eq!(id.short().len(), 8);
    }

    #[test]
    fn names_are_strict() {
        let id = Id::of_stored(b"x");
        let hex = id.to_hex();
        assert_eq!(Id::from_name(&hex), Some(id));
        assert_eq!(Id::from_name(&hex.to_uppercase()), None);
        assert!(
            Id::from_hex(&hex.to_uppercase()).is_ok(),
            "user input may be upper case"
        );
        assert_eq!(Id::from_name(&hex[..63]), None);
        assert_eq!(Id::from_name(&format!("{hex}0")), None);
        assert_eq!(Id::from_name(&format!("{hex}#1")), None);
        assert_eq!(Id::from_name(&format!("{}g", &hex[..63])), None);
        assert_eq!(Id::from_name(""), None);
    }
}
