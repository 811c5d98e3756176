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
