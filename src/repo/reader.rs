//! Reading blobs: fetch from the pack, open with the blob id as associated data, decompress,
//! and recompute the keyed id: every read is verified.

use super::Repository;
use crate::backend::FileType;
use crate::cache::BlobLocation;
use crate::error::{Error, Result};
use crate::format::blob;
use crate::id::Id;

impl Repository {
    /// Where a blob is stored, or `NotFound`.
    pub fn locate(&self, id: &Id) -> Result<BlobLocation> {
        self.ensure_index()?;
        self.cache()
            .blob(id)?
            .ok_or_else(|| Error::not_found(format!("blob {} is not in the index", id.short())))
    }

    /// Read, verify and decompress one blob.
    pub fn read_blob(&self, id: &Id) -> Result<Vec<u8>> {
        let loc = self.locate(id)?;
        let start = u64::from(loc.offset);
        let sealed = self.backend().get_range(
            FileType::Pack,
            &loc.pack.to_hex(),
            start..start + u64::from(loc.length),
        )?;
        self.open_blob(id, &loc, &sealed)
    }

    /// Read a byte range of a pack (restore reads runs of blobs at once).
    pub fn read_pack_range(&self, pack: &Id, range: std::ops::Range<u64>) -> Result<bytes::Bytes> {
        self.backend()
            .get_range(FileType::Pack, &pack.to_hex(), range)
    }

    /// Open a blob's sealed bytes (as cut from its pack) and verify it.
    pub fn open_blob(&self, id: &Id, loc: &BlobLocation, sealed: &[u8]) -> Result<Vec<u8>> {
        let what = format!("blob {} in pack {}", id.short(), loc.pack.short());
        let plain = self.sealer().open(id.as_bytes(), sealed, &what)?;
        let raw = blob::decode(&plain, loc.raw_length as usize, &what)?;
        if self.blob_id(&raw) != *id {
            return Err(Error::corrupt(format!(
                "{what} is corrupt: content does not match its id"
            )));
        }
        Ok(raw)
    }
}

impl Repository {
    /// Read and open a pack's header (the list of its blobs).
    pub fn read_pack_header(&self, pack: &Id) -> Result<crate::format::pack::PackHeader> {
        use crate::format::pack::{PackHeader, TRAILER_LEN, header_range};
        let name = pack.to_hex();
        let what = format!("pack {}", pack.short());
        let size = self.backend().size(FileType::Pack, &name)?;
        if size < TRAILER_LEN as u64 {
            return Err(Error::corrupt(format!("{what} is corrupt: truncated")));
        }
        let trailer =
            self.backend()
                .get_range(FileType::Pack, &name, size - TRAILER_LEN as u64..size)?;
        let range = header_range(size, &trailer, &what)?;
        let start = range.start;
        let sealed = self.backend().get_range(FileType::Pack, &name, range)?;
        let plain = self
            .sealer()
            .open(crate::crypto::label::PACK_HEADER, &sealed, &what)?;
        PackHeader::decode(&plain, start, &what)
    }
}

/// Two blobs of a pack at most this far apart are fetched in one ranged read (the bytes between
/// are read and dropped: cheaper than another request).
pub const MAX_GAP: u64 = 256 << 10;
/// A ranged read covers at most this many bytes (plus one blob that is larger on its own).
pub const MAX_RUN: u64 = 16 << 20;

/// Group blobs sorted by offset into runs that one ranged read each covers: gaps of at most
/// [`MAX_GAP`], runs of at most [`MAX_RUN`]. Returns index ranges into `blobs`.
pub fn runs(blobs: &[(Id, BlobLocation)]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=blobs.len() {
        let split = i == blobs.len() || {
            let first = u64::from(blobs[start].1.offset);
            let prev = &blobs[i - 1].1;
            let prev_end = u64::from(prev.offset) + u64::from(prev.length);
            let next = &blobs[i].1;
            let next_end = u64::from(next.offset) + u64::from(next.length);
            u64::from(next.offset) > prev_end + MAX_GAP
                || u64::from(next.offset) < prev_end
                || next_end - first > MAX_RUN
        };
        if split {
            out.push(start..i);
            start = i;
        }
    }
    out
}

impl Repository {
    /// Read blobs of one pack, as stored (sealed), merging neighbours into ranged reads
    /// ([`runs`]); `f` gets each blob's sealed bytes, in offset order, or the error of its read
    /// when the pack is missing or too short. `f`'s own error stops the reading. A failure of
    /// the store (other than a missing pack) is returned.
    pub fn read_pack_blobs(
        &self,
        pack: &Id,
        blobs: &mut [(Id, BlobLocation)],
        mut f: impl FnMut(&Id, &BlobLocation, Result<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        blobs.sort_by_key(|(_, l)| (l.offset, l.length));
        let name = pack.to_hex();
        for run in runs(blobs) {
            let part = &blobs[run];
            let Some(first) = part.first() else {
                continue;
            };
            let start = u64::from(first.1.offset);
            let end = part
                .iter()
                .map(|(_, l)| u64::from(l.offset) + u64::from(l.length))
                .max()
                .unwrap_or(start);
            let bytes = match self.backend().get_range(FileType::Pack, &name, start..end) {
                Ok(b) => b,
                Err(e) if e.kind() == crate::error::ErrorKind::NotFound => {
                    for (id, l) in part {
                        let e = Error::not_found(format!("pack {} is missing", pack.short()));
                        f(id, l, Err(e))?;
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            for (id, l) in part {
                let from = u64::from(l.offset) - start;
                let to = from + u64::from(l.length);
                let slice = usize::try_from(from)
                    .ok()
                    .zip(usize::try_from(to).ok())
                    .and_then(|(a, b)| bytes.get(a..b));
                match slice {
                    Some(s) => f(id, l, Ok(s))?,
                    None => f(
                        id,
                        l,
                        Err(Error::corrupt(format!(
                            "pack {} is corrupt: truncated before blob {}",
                            pack.short(),
                            id.short()
                        ))),
                    )?,
                }
            }
        }
        Ok(())
    }
}
