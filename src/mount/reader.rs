//! Reading through the mount: `read_at` on an open file (a prefix sum of its blobs' raw
//! lengths finds the blobs under a range; only those are fetched), over any [`Source`] of
//! trees and blobs (the repository's is [`super::source::RepoSource`]).

use crate::error::{Error, Result};
use crate::format::tree::{CONTENT_SLACK, Node, Tree};
use crate::id::Id;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the file system reads: trees, blobs and blob lengths by id.
pub trait Source: Send + Sync {
    /// A decoded, verified tree.
    fn tree(&self, id: &Id) -> Result<Arc<Tree>>;
    /// The raw (plaintext) length of each blob, in order.
    fn raw_lengths(&self, ids: &[Id]) -> Result<Vec<u64>>;
    /// A decrypted, verified blob; `next` says what the reader is likely to want after it.
    fn blob(&self, id: &Id, next: Next<'_>) -> Result<Arc<Vec<u8>>>;
}

/// What a reader will probably ask for after a blob: a hint, never needed for correctness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next<'a> {
    /// A sequential reader of a larger file: these blobs of the file come next.
    Blobs(&'a [Id]),
    /// The last blob of a file read from its start: the first blobs of the next files of its
    /// folder (whoever reads a whole file often reads the folder: `cat *`, `cp -r`, `grep -r`).
    Siblings(&'a [Id]),
    /// A random read: fetch nothing more.
    Nothing,
}

/// Blobs fetched ahead for a sequential reader, at most.
const AHEAD_BLOBS: usize = 8;
/// Blobs of the next files named by a [`Next::Siblings`] hint, at most.
pub const SIBLING_BLOBS: usize = 32;
/// … per file.
pub const SIBLING_BLOBS_PER_FILE: usize = 2;

/// An open file: its blobs and where each ends in the file.
#[derive(Debug)]
pub struct OpenFile {
    /// The file's node, shared with the tree it came from (its content list is not copied).
    node: Arc<Node>,
    /// `ends[i]`: offset just past blob `i` (prefix sum of raw lengths).
    ends: Vec<u64>,
    /// Where the last read ended: a read starting there is sequential (read ahead).
    next: AtomicU64,
    /// First blobs of the files after this one in its folder (see [`Next::Siblings`]).
    siblings: Vec<Id>,
}

impl OpenFile {
    /// Open file node `node`: one length lookup per blob, nothing fetched. A content list that
    /// is implausible for the node's size is refused before anything is copied or summed:
    /// more blobs than bytes (a blob is never empty; one more is allowed), or raw lengths that
    /// sum to more than [`CONTENT_SLACK`] past the size (a node of size 1 repeating a large blob
    /// thousands of times). Reads never go past the node's size.
    pub fn new<S: Source + ?Sized>(source: &S, node: Arc<Node>) -> Result<OpenFile> {
        let size = node.size;
        let entries = node.content.len() as u64;
        if entries > size.saturating_add(1) {
            return Err(Error::corrupt(format!(
                "file {} lists {entries} blobs for {size} bytes",
                node.name.escape_ascii()
            )));
        }
        let lens = source.raw_lengths(&node.content)?;
        let limit = size.saturating_add(CONTENT_SLACK);
        let mut ends = Vec::with_capacity(lens.len());
        let mut end = 0u64;
        for l in lens {
            end = end.checked_add(l).filter(|&e| e <= limit).ok_or_else(|| {
                Error::corrupt(format!(
                    "the content of file {} is far longer than its size of {size} bytes",
                    node.name.escape_ascii()
                ))
            })?;
            ends.push(end);
        }
        Ok(OpenFile {
            node,
            ends,
            next: AtomicU64::new(0),
            siblings: Vec::new(),
        })
    }

    /// Name the first blobs of the files after this one in its folder, for read-ahead.
    pub fn with_siblings(mut self, siblings: Vec<Id>) -> Self {
        self.siblings = siblings;
        self
    }

    /// The length of the content (at most the node's size).
    pub fn len(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0).min(self.node.size)
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `size` bytes at `offset` (fewer only at the end of the file): only the blobs
    /// under the range are read; a read that continues the previous one also lets the source
    /// fetch the next few blobs.
    pub fn read_at<S: Source + ?Sized>(
        &self,
        source: &S,
        offset: u64,
        size: usize,
    ) -> Result<Data> {
        let end = offset.saturating_add(size as u64).min(self.len());
        if offset >= end {
            return Ok(Data::Owned(Vec::new()));
        }
        let sequential = offset == self.next.load(Ordering::Relaxed);
        let content = &self.node.content;
        let mut out: Option<Vec<u8>> = None;
        let mut i = self.ends.partition_point(|&e| e <= offset);
        let mut pos = offset;
        while pos < end {
            let (Some(id), Some(&blob_end)) = (content.get(i), self.ends.get(i)) else {
                break;
            };
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            let last = i + 1 == content.len();
            let next = if !sequential {
                Next::Nothing
            } else if last {
                Next::Siblings(&self.siblings)
            } else {
                Next::Blobs(&content[i + 1..(i + 1 + AHEAD_BLOBS).min(content.len())])
            };
            let blob = source.blob(id, next)?;
            if blob.len() as u64 != blob_end - start {
                return Err(Error::corrupt(format!(
                    "blob {} is {} bytes, the index says {}",
                    id.short(),
                    blob.len(),
                    blob_end - start
                )));
            }
            // Both within the blob: start <= pos < min(end, blob_end) <= blob_end.
            let from = (pos - start) as usize;
            let to = (end.min(blob_end) - start) as usize;
            if out.is_none() && end <= blob_end {
                // The whole range lies in this blob: no copy.
                self.next.store(end, Ordering::Relaxed);
                return Ok(Data::Blob(blob, from..to));
            }
            out.get_or_insert_with(|| {
                Vec::with_capacity(usize::try_from(end - offset).unwrap_or(0))
            })
            .extend_from_slice(&blob[from..to]);
            pos = start + to as u64;
            i += 1;
        }
        self.next.store(end, Ordering::Relaxed);
        Ok(Data::Owned(out.unwrap_or_default()))
    }
}

/// Bytes read from a file: a range of one blob (no copy), or pieces of several copied
/// together.
#[derive(Debug, Clone)]
pub enum Data {
    /// A range of a decrypted blob.
    Blob(Arc<Vec<u8>>, std::ops::Range<usize>),
    /// Bytes of their own.
    Owned(Vec<u8>),
}

impl Data {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Data::Blob(b, r) => &b[r.clone()],
            Data::Owned(v) => v,
        }
    }
}

impl PartialEq<[u8]> for Data {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<Vec<u8>> for Data {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Data {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.as_slice() == other.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::format::tree::NodeKind;
    use crate::mount::testing::MemSource;

    /// A file node of `size` bytes made of `content`.
    fn file(content: &[Id], size: u64) -> Arc<Node> {
        let mut n = Node::new(b"f".to_vec(), NodeKind::File);
        n.content = content.to_vec();
        n.size = size;
        Arc::new(n)
    }

    #[test]
    fn read_at_reads_only_the_blobs_under_the_range() {
        let src = MemSource::default();
        let parts: Vec<Vec<u8>> = (0..50u8)
            .map(|i| vec![i; 100 + usize::from(i) * 7])
            .collect();
        let ids: Vec<Id> = parts.iter().map(|p| src.add_blob(p)).collect();
        let whole: Vec<u8> = parts.concat();
        let f = OpenFile::new(&src, file(&ids, whole.len() as u64)).unwrap();
        assert_eq!(f.len(), whole.len() as u64);
        // A read in the middle, off the blob boundaries.
        src.reset_counts();
        let at = 3000u64;
        let got = f.read_at(&src, at, 500).unwrap();
        assert_eq!(got.as_slice(), &whole[3000..3500]);
        // Blobs 18 (2871..3097), 19 (..3330) and 20 (..3570) lie under 3000..3500: only those.
        assert_eq!(src.fetched(), 3);
        // Ranges of every kind: empty, at the end, past the end, across many blobs.
        let mut seed = 7u64;
        for _ in 0..300 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let off = (seed >> 33) % (whole.len() as u64 + 50);
            let len = ((seed >> 13) % 3000) as usize;
            let got = f.read_at(&src, off, len).unwrap();
            let s = (off as usize).min(whole.len());
            let e = (off as usize).saturating_add(len).min(whole.len());
            assert_eq!(got.as_slice(), &whole[s..e], "offset {off} len {len}");
        }
        assert!(
            f.read_at(&src, u64::MAX - 1, 10)
                .unwrap()
                .as_slice()
                .is_empty()
        );
        // An empty file.
        let empty = OpenFile::new(&src, file(&[], 0)).unwrap();
        assert!(empty.is_empty());
        assert!(empty.read_at(&src, 0, 10).unwrap().as_slice().is_empty());
    }

    #[test]
    fn sequential_reads_ask_for_the_next_blobs_random_ones_do_not() {
        let src = MemSource::default();
        let ids: Vec<Id> = (0..20u8).map(|i| src.add_blob(&[i; 1000])).collect();
        let sib = src.add_blob(b"next file");
        let f = OpenFile::new(&src, file(&ids, 20_000))
            .unwrap()
            .with_siblings(vec![sib]);
        f.read_at(&src, 0, 10).unwrap();
        assert_eq!(src.last_next(), format!("blobs {AHEAD_BLOBS}"));
        f.read_at(&src, 10, 10).unwrap();
        assert_eq!(src.last_next(), format!("blobs {AHEAD_BLOBS}"));
        f.read_at(&src, 15_500, 10).unwrap();
        assert_eq!(src.last_next(), "nothing");
        // Reaching the last blob in order: the next files.
        f.read_at(&src, 15_510, 4490).unwrap();
        assert_eq!(src.last_next(), "siblings 1");
        // A one-blob file read from its start: the next files at once.
        let one = OpenFile::new(&src, file(&ids[..1], 1000))
            .unwrap()
            .with_siblings(vec![sib, ids[3]]);
        one.read_at(&src, 0, 10).unwrap();
        assert_eq!(src.last_next(), "siblings 2");
    }

    #[test]
    fn a_blob_of_the_wrong_length_is_an_error_not_a_panic() {
        let src = MemSource::default();
        let a = src.add_blob(b"abcdef");
        src.lie_about_length(&a, 10);
        let f = OpenFile::new(&src, file(&[a], 10)).unwrap();
        let e = f.read_at(&src, 0, 10).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
    }

    /// DM1: a node of size 1 whose content repeats a 64 KiB blob 10 000 times is refused at
    /// open before its list is summed or copied (more blobs than bytes), one of 20 000 bytes
    /// with that list (655 MB listed) before its prefix sums are kept; nothing is read. A list
    /// a little longer than the size opens, and reads stop at the size.
    #[test]
    fn a_content_list_implausible_for_the_size_is_refused_at_open() {
        let src = MemSource::default();
        let big = src.add_blob(&[7u8; 64 << 10]);
        let e = OpenFile::new(&src, file(&vec![big; 10_000], 1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.to_string().contains("10000 blobs for 1 bytes"), "{e}");
        let e = OpenFile::new(&src, file(&vec![big; 10_000], 20_000)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.to_string().contains("far longer than its size"), "{e}");
        let tiny = src.add_blob(b"x");
        let e = OpenFile::new(&src, file(&[tiny; 3], 1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.to_string().contains("3 blobs for 1 bytes"), "{e}");
        assert_eq!(src.fetched(), 0);
        // Within the slack: opened, but nothing past the size is shown.
        let f = OpenFile::new(&src, file(&[big], 1000)).unwrap();
        assert_eq!(f.len(), 1000);
        assert_eq!(f.read_at(&src, 0, 1 << 20).unwrap(), vec![7u8; 1000]);
        assert!(f.read_at(&src, 1000, 10).unwrap().as_slice().is_empty());
    }
}
