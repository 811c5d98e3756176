//! Reading blobs: fetch from the pack, open with the blob id as associated data, decompress,
//! and recompute the keyed id: every read is verified.

use super::Repository;
use crate::backend::FileType;
use crate::error::{Error, Result};
use crate::format::blob;
use crate::id::Id;
use crate::index::BlobLocation;

/// Two blobs of a pack at most this far apart are fetched in one ranged read (the bytes between
/// are read and dropped: cheaper than another request).
pub const MAX_GAP: u64 = 256 << 10;
/// A ranged read covers at most this many bytes (plus one blob that is larger on its own).
pub const MAX_RUN: u64 = 16 << 20;

impl Repository {
    /// Read, verify and decompress one blob.
    pub fn read_blob(&self, id: &Id) -> Result<Vec<u8>> {
        let loc = self.index()?.locate(id)?;
        let start = u64::from(loc.offset);
        let sealed = self.backend().get_range(
            FileType::Pack,
            &loc.pack.to_hex(),
            start..start + u64::from(loc.length),
        )?;
        self.open_blob(id, &loc, &sealed)
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
    /// Read and open the header of pack `pack`, `size` bytes long, through `read` (a ranged
    /// read of the pack: from the store, or from a pack already in memory): the trailer, then
    /// the sealed header it points to, checked as `PackHeader::decode` does.
    pub(crate) fn pack_header<B: AsRef<[u8]>>(
        &self,
        pack: &Id,
        size: u64,
        mut read: impl FnMut(std::ops::Range<u64>) -> Result<B>,
    ) -> Result<crate::format::pack::PackHeader> {
        use crate::format::pack::{PackHeader, TRAILER_LEN, header_range};
        let what = format!("pack {}", pack.short());
        if size < TRAILER_LEN as u64 {
            return Err(Error::corrupt(format!("{what} is corrupt: truncated")));
        }
        let trailer = read(size - TRAILER_LEN as u64..size)?;
        let range = header_range(size, trailer.as_ref(), &what)?;
        let start = range.start;
        let sealed = read(range)?;
        let plain =
            self.sealer()
                .open(crate::crypto::label::PACK_HEADER, sealed.as_ref(), &what)?;
        PackHeader::decode(&plain, start, &what)
    }
}

/// Group blobs sorted by offset into runs that one ranged read each covers: gaps of at most
/// [`MAX_GAP`], runs of at most [`MAX_RUN`] (a single larger blob is a run of its own). Returns
/// index ranges into `locs`. All arithmetic is in u64: a hostile index cannot wrap it.
pub fn runs(locs: &[&BlobLocation]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut end = 0u64;
    for (i, l) in locs.iter().enumerate() {
        let (o, len) = (u64::from(l.offset), u64::from(l.length));
        if i > start {
            let first = u64::from(locs[start].offset);
            if o > end + MAX_GAP || o < first || (o + len).saturating_sub(first) > MAX_RUN {
                out.push(start..i);
                start = i;
                end = 0;
            }
        }
        end = end.max(o + len);
    }
    if start < locs.len() {
        out.push(start..locs.len());
    }
    out
}

impl Repository {
    /// The one pack reader (restore, repack): read `items`' blobs from `pack` as stored
    /// (sealed), neighbours merged into ranged reads ([`runs`]). `items` must be sorted by
    /// offset; `loc` gives each one's location. `f` gets each item with its sealed bytes, or
    /// with the error of its read (pack missing or too short, store failure): it decides
    /// whether that stops the reading (return `Err`) or not.
    pub fn read_pack_blobs<T>(
        &self,
        pack: &Id,
        items: &[T],
        loc: impl Fn(&T) -> &BlobLocation,
        mut f: impl FnMut(&T, Result<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        let locs: Vec<&BlobLocation> = items.iter().map(&loc).collect();
        let name = pack.to_hex();
        for run in runs(&locs) {
            let part = &items[run.clone()];
            let ls = &locs[run];
            let start = ls.iter().map(|l| u64::from(l.offset)).min().unwrap_or(0);
            let end = ls
                .iter()
                .map(|l| u64::from(l.offset) + u64::from(l.length))
                .max()
                .unwrap_or(start);
            let bytes = match self.backend().get_range(FileType::Pack, &name, start..end) {
                Ok(b) => b,
                Err(e) => {
                    let e = if e.kind() == crate::error::ErrorKind::NotFound {
                        Error::not_found(format!("pack {} is missing", pack.short()))
                    } else {
                        e
                    };
                    for item in part {
                        f(item, Err(Error::new(e.kind(), e.to_string())))?;
                    }
                    continue;
                }
            };
            for (item, l) in part.iter().zip(ls) {
                let from = u64::from(l.offset) - start;
                let slice = usize::try_from(from)
                    .ok()
                    .and_then(|a| bytes.get(a..a.checked_add(usize::try_from(l.length).ok()?)?));
                match slice {
                    Some(s) => f(item, Ok(s))?,
                    None => f(
                        item,
                        Err(Error::corrupt(format!(
                            "pack {} is corrupt: too short for its blobs",
                            pack.short()
                        ))),
                    )?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::BlobKind;

    fn l(offset: u32, length: u32) -> BlobLocation {
        BlobLocation {
            pack: Id([0; 32]),
            offset,
            length,
            raw_length: length,
            kind: BlobKind::Data,
            marked: false,
        }
    }

    #[test]
    fn runs_merge_neighbours_and_split_on_gaps_and_size() {
        let a = [l(0, 100), l(100, 100), l(300, 100)];
        let r: Vec<&BlobLocation> = a.iter().collect();
        assert_eq!(runs(&r), vec![0..3]);
        let gap = MAX_GAP as u32 + 1000;
        let b = [l(0, 100), l(100 + gap, 100)];
        assert_eq!(runs(&b.iter().collect::<Vec<_>>()), vec![0..1, 1..2]);
        let big = (MAX_RUN as u32) / 2 + 1;
        let c = [l(0, big), l(big, big), l(2 * big, 10)];
        assert_eq!(runs(&c.iter().collect::<Vec<_>>()), vec![0..1, 1..3]);
        // Hostile offsets near u32::MAX do not wrap.
        let d = [l(u32::MAX - 10, u32::MAX), l(5, 5)];
        assert_eq!(runs(&d.iter().collect::<Vec<_>>()).len(), 2);
        assert!(runs(&[]).is_empty());
    }
}
