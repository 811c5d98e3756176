//! WAL files of PostgreSQL clusters, `wal/<system id>/<name>` (format.md §13a): one object per
//! archived file (segment, `.partial`, `.history`, `.backup`), written create-only.
//!
//! An object is `header_len: u32 LE || sealed(WalHeader) || sealed(tag || payload)`: the header
//! (what the file is, its keyed hash, what its records say) can be read with one short ranged
//! read, without the body; the body is the file compressed as a blob is (§9). Both parts are
//! sealed with associated data naming the object, so no part can be served under another name.

use crate::error::{Error, Result};
use crate::id::Id;
use serde::{Deserialize, Serialize};

/// Version of [`WalHeader`].
pub const WAL_VERSION: u8 = 1;
/// Bytes read first to get a header: enough for every header but one with many restore points.
pub const HEADER_PROBE: u64 = 4096;
/// Largest header accepted (sealed): restore points are at most 64 bytes of name each.
pub const MAX_HEADER_LEN: u32 = 1 << 20;

/// A named restore point found in a segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalRestorePoint {
    /// Its name.
    pub name: String,
    /// WAL position of its record's start.
    pub lsn: u64,
    /// Its time, ns since the Unix epoch (the server's clock).
    pub time_ns: i64,
}

/// What the records that start in a segment say (from `pg::waldecode`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalSummary {
    /// Timeline of the segment's pages.
    pub timeline: u32,
    /// WAL position of the segment's first byte.
    pub start_lsn: u64,
    /// WAL position just past the last valid record starting in the segment.
    pub end_lsn: u64,
    /// Commit and abort records.
    pub transactions: u64,
    /// Earliest and latest commit/abort time, ns since the Unix epoch.
    pub time_range: Option<(i64, i64)>,
    /// Smallest and largest transaction id that committed or aborted.
    pub xid_range: Option<(u32, u32)>,
    /// Named restore points.
    pub restore_points: Vec<WalRestorePoint>,
    /// The segment ends with a switch record.
    pub switched: bool,
}

/// The plaintext of a WAL object's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalHeader {
    /// Format version ([`WAL_VERSION`]).
    pub version: u8,
    /// The cluster's system identifier.
    pub system_identifier: u64,
    /// The file's name as PostgreSQL gives it (`000000010000000000000003`, `00000002.history`).
    pub name: String,
    /// The file's size in bytes.
    pub size: u64,
    /// Keyed BLAKE3 of the file's content (the blob id of the whole file): a second push of the
    /// same name is compared with it.
    pub hash: Id,
    /// For segments and `.partial` files, what their records say; `None` for other files and
    /// for segments that could not be decoded.
    pub summary: Option<WalSummary>,
}

impl WalHeader {
    /// Decode a header's plaintext.
    pub fn decode(bytes: &[u8], what: &dyn std::fmt::Display) -> Result<WalHeader> {
        let h: WalHeader = super::decode_version(bytes, what, WAL_VERSION)?;
        if h.name.is_empty() || h.name.len() > 64 || h.name.contains('/') {
            return Err(Error::corrupt(format!("{what} is corrupt: bad file name")));
        }
        Ok(h)
    }
}

/// Associated data of a WAL object's header or body: the label, a zero byte, then the object's
/// name below `wal/` (`<system id>/<file name>`).
pub fn aad(label: &[u8], object: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(label.len() + 1 + object.len());
    a.extend_from_slice(label);
    a.push(0);
    a.extend_from_slice(object.as_bytes());
    a
}

/// Frame a sealed header and a sealed body into one object.
pub fn frame(sealed_header: &[u8], sealed_body: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(sealed_header.len())
        .ok()
        .filter(|&l| l <= MAX_HEADER_LEN)
        .ok_or_else(|| Error::usage("WAL header too large"))?;
    let mut out = Vec::with_capacity(4 + sealed_header.len() + sealed_body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(sealed_header);
    out.extend_from_slice(sealed_body);
    Ok(out)
}

/// The length of the sealed header an object starts with, from its first four bytes.
pub fn header_len(prefix: &[u8], what: &dyn std::fmt::Display) -> Result<u32> {
    let b: [u8; 4] = prefix
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::corrupt(format!("{what} is corrupt: truncated")))?;
    let len = u32::from_le_bytes(b);
    if len > MAX_HEADER_LEN || (len as usize) < crate::crypto::SEAL_OVERHEAD {
        return Err(Error::corrupt(format!(
            "{what} is corrupt: header length {len}"
        )));
    }
    Ok(len)
}

/// Split an object into its sealed header and sealed body.
pub fn split<'a>(object: &'a [u8], what: &dyn std::fmt::Display) -> Result<(&'a [u8], &'a [u8])> {
    let len = header_len(object, what)? as usize;
    let rest = &object[4..];
    if rest.len() < len + crate::crypto::SEAL_OVERHEAD {
        return Err(Error::corrupt(format!("{what} is corrupt: truncated")));
    }
    Ok(rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> WalHeader {
        WalHeader {
            version: WAL_VERSION,
            system_identifier: 7_312_345_678_901_234_567,
            name: "000000010000000000000003".into(),
            size: 16 << 20,
            hash: Id([7; 32]),
            summary: Some(WalSummary {
                timeline: 1,
                start_lsn: 3 << 24,
                end_lsn: (3 << 24) + 4096,
                transactions: 2,
                time_range: Some((1, 2)),
                xid_range: Some((740, 741)),
                restore_points: vec![WalRestorePoint {
                    name: "rp".into(),
                    lsn: (3 << 24) + 200,
                    time_ns: 5,
                }],
                switched: true,
            }),
        }
    }

    #[test]
    fn header_round_trip_and_refusals() {
        let h = header();
        let bytes = crate::format::encode(&h).unwrap();
        assert_eq!(WalHeader::decode(&bytes, &"h").unwrap(), h);
        let mut bad = h.clone();
        bad.name = "../x".into();
        let bytes = crate::format::encode(&bad).unwrap();
        assert!(WalHeader::decode(&bytes, &"h").is_err());
        let mut v2 = crate::format::encode(&h).unwrap();
        v2[0] = 2;
        assert!(WalHeader::decode(&v2, &"h").is_err());
    }

    #[test]
    fn framing() {
        let sh = vec![1u8; 40];
        let sb = vec![2u8; 50];
        let obj = frame(&sh, &sb).unwrap();
        let (a, b) = split(&obj, &"o").unwrap();
        assert_eq!((a, b), (&sh[..], &sb[..]));
        assert!(split(&obj[..30], &"o").is_err());
        assert!(split(&[0xff, 0xff, 0xff, 0xff, 0], &"o").is_err());
        assert!(split(&[], &"o").is_err());
    }
}
