//! Pure, versioned on-disk structures and their codecs. No I/O, no keys.
//!
//! Every top-level structure is serialized with postcard 1.x (a stable, documented wire format:
//! varint integers, length-prefixed sequences) and starts with a one-byte format version; decoders
//! reject unknown versions and trailing bytes. docs/format.md is the byte-level specification.

pub mod blob;
pub mod config;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod pack;
pub mod snapshot;
pub mod tree;
pub mod wal;

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// The format version written by this build into every structure.
pub const VERSION: u8 = 1;

/// Serialize a structure with postcard.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| Error::usage(format!("cannot encode: {e}")))
}

/// Decode a versioned structure; `what` names the object in errors.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &dyn std::fmt::Display) -> Result<T> {
    decode_version(bytes, what, VERSION)
}

/// Decode a structure whose own version (its first byte) must be `version`: for the structures
/// whose version moved on without the others (key files, key payloads, config; format.md §15).
pub fn decode_version<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    what: &dyn std::fmt::Display,
    version: u8,
) -> Result<T> {
    match bytes.first() {
        None => return Err(Error::corrupt(format!("{what} is corrupt: empty"))),
        Some(&v) if v != version => {
            return Err(Error::corrupt(format!(
                "{what} has format version {v}, this cairn reads version {version}"
            )));
        }
        _ => {}
    }
    let (value, rest) = postcard::take_from_bytes(bytes)
        .map_err(|e| Error::corrupt(format!("{what} is corrupt: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::corrupt(format!(
            "{what} is corrupt: {} trailing bytes",
            rest.len()
        )));
    }
    Ok(value)
}
