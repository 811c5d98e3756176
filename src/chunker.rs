//! Content-defined chunking: FastCDC (2020) over a gear table derived from the repository's
//! 256-bit chunker key, so cut points (and hence chunk sizes) cannot be predicted without it.
//!
//! The crate's own seeded constructors only XOR one u64 into its public table; here all 256
//! entries come from BLAKE3 in key-derivation mode. The table is a secret derived from the key:
//! it is wiped when the chunker is dropped.

use crate::format::config::ChunkerParams;
use bytes::Bytes;
use fastcdc::v2020::{Normalization, cut_gear, select_masks};
use std::io::Read;
use zeroize::Zeroize;

/// Context string of the gear-table derivation (BLAKE3 `derive_key` mode). v1 took a 64-bit
/// seed; v2 takes the 256-bit chunker key of the master key material.
const GEAR_CONTEXT: &str = "cairn 2026-11 chunker gear table v2";

/// A chunker bound to one repository's parameters and gear table.
#[derive(Clone)]
pub struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Chunker({}/{}/{})", self.min, self.avg, self.max)
    }
}

impl Chunker {
    /// A chunker for validated `params` and the repository's 256-bit chunker `key`.
    pub fn new(params: ChunkerParams, key: &[u8; 32]) -> Chunker {
        let mut gear = Box::new([0u64; 256]);
        let mut gear_ls = Box::new([0u64; 256]);
        {
            let mut h = blake3::Hasher::new_derive_key(GEAR_CONTEXT);
            h.update(key);
            let mut xof = h.finalize_xof();
            h.zeroize();
            let mut w = [0u8; 8];
            for (g, ls) in gear.iter_mut().zip(gear_ls.iter_mut()) {
                xof.fill(&mut w);
                *g = u64::from_le_bytes(w);
                *ls = *g << 1;
            }
            w.zeroize();
            xof.zeroize();
        }
        let (mask_s, mask_l) = select_masks(params.avg as usize, Normalization::Level1);
        Chunker {
            min: params.min as usize,
            avg: params.avg as usize,
            max: params.max as usize,
            mask_s,
            mask_l,
            gear,
            gear_ls,
        }
    }

    /// The first entries and the last of the gear table (for the test vectors of format.md
    /// §18; the table is secret, so this is only compiled into tests).
    #[cfg(test)]
    fn gear_vector(&self) -> [u64; 4] {
        [self.gear[0], self.gear[1], self.gear[2], self.gear[255]]
    }

    /// Largest chunk this chunker emits.
    pub fn max_size(&self) -> usize {
        self.max
    }

    /// Input a stream keeps ahead of its position: enough for most chunks (twice the average),
    /// never more than the largest. A chunk without a cut point inside it grows the buffer.
    fn lookahead(&self) -> usize {
        (2 * self.avg).clamp(self.min.max(1), self.max)
    }

    /// Length of the next chunk at the start of `data`. `data` must hold at least `max_size()`
    /// bytes unless it is the end of the stream.
    pub fn cut(&self, data: &[u8]) -> usize {
        let (_, n) = cut_gear(
            data,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear[..],
            &self.gear_ls[..],
        );
        n.max(1).min(data.len())
    }

    /// Split a reader into chunks.
    pub fn stream<R: Read>(&self, reader: R) -> ChunkStream<'_, R> {
        self.stream_sized(reader, None)
    }

    /// Split a reader into chunks, with the expected length (a file's size) as a hint for the
    /// first buffer. A stream that fits one chunk is handed on without a copy.
    pub fn stream_sized<R: Read>(&self, reader: R, size_hint: Option<u64>) -> ChunkStream<'_, R> {
        let first = size_hint
            .map(|s| (s as usize).saturating_add(1).min(2 * self.lookahead()))
            .unwrap_or(0);
        ChunkStream {
            chunker: self,
            reader,
            buf: Vec::with_capacity(first),
            pos: 0,
            eof: false,
        }
    }
}

impl Drop for Chunker {
    fn drop(&mut self) {
        self.gear.zeroize();
        self.gear_ls.zeroize();
    }
}

/// Iterator of chunks over a reader. Holds about two lookaheads of input (a few MiB), more only
/// while a chunk larger than the lookahead is being cut (at most one maximum chunk plus a
/// lookahead); each input byte is copied at most twice (compaction, and into its chunk).
///
/// Cutting with less than a maximum chunk at hand gives the same cut points: a cut point found
/// inside the buffer depends only on the bytes before it (the gear hash and the normalization
/// masks switch at fixed offsets); when none is found, the stream reads on and cuts again.
pub struct ChunkStream<'a, R> {
    chunker: &'a Chunker,
    reader: R,
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl<R: Read> ChunkStream<'_, R> {
    /// Make at least `need` bytes available after the position (fewer only at the end), reading
    /// up to `need + lookahead` so that compaction happens about once per lookahead consumed.
    fn fill(&mut self, need: usize) -> std::io::Result<()> {
        if self.eof || self.buf.len() - self.pos >= need {
            return Ok(());
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let want = need + self.chunker.lookahead() - self.buf.len();
        let got = loop {
            match (&mut self.reader)
                .take(want as u64)
                .read_to_end(&mut self.buf)
            {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        if got < want {
            self.eof = true;
        }
        Ok(())
    }
}

impl<R: Read> Iterator for ChunkStream<'_, R> {
    type Item = std::io::Result<Bytes>;
    fn next(&mut self) -> Option<Self::Item> {
        let max = self.chunker.max;
        let mut need = self.chunker.lookahead();
        loop {
            if let Err(e) = self.fill(need) {
                return Some(Err(e));
            }
            let rest = &self.buf[self.pos..];
            if rest.is_empty() {
                return None;
            }
            let n = self.chunker.cut(rest);
            if n == rest.len() && !self.eof && rest.len() < max {
                // No cut point in what is at hand: read a whole maximum chunk and cut again
                // (once: then a cut is found, or the chunk is the maximum).
                need = max;
                continue;
            }
            if self.pos == 0 && n == self.buf.len() && self.eof {
                return Some(Ok(Bytes::from(std::mem::take(&mut self.buf))));
            }
            let chunk = Bytes::copy_from_slice(&rest[..n]);
            self.pos += n;
            return Some(Ok(chunk));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        let mut x = 0x9e3779b97f4a7c15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn key(n: u8) -> [u8; 32] {
        [n; 32]
    }

    fn small() -> ChunkerParams {
        ChunkerParams {
            min: 2048,
            avg: 4096,
            max: 16384,
        }
    }

    #[test]
    fn chunks_reassemble_and_respect_bounds() {
        let c = Chunker::new(small(), &key(7));
        let d = data(300_000);
        let chunks: Vec<Bytes> = c.stream(&d[..]).map(|r| r.unwrap()).collect();
        assert_eq!(chunks.concat(), d);
        for ch in &chunks[..chunks.len() - 1] {
            assert!(ch.len() >= 2048 && ch.len() <= 16384, "{}", ch.len());
        }
        assert!(chunks.len() > 20);
    }

    #[test]
    fn stream_matches_whole_buffer_and_reads_of_any_size() {
        let c = Chunker::new(small(), &key(1));
        let d = data(200_000);
        let whole: Vec<usize> = c.stream(&d[..]).map(|r| r.unwrap().len()).collect();
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                let n = b.len().min(self.0.len()).min(777);
                b[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let trickled: Vec<usize> = c.stream(Trickle(&d)).map(|r| r.unwrap().len()).collect();
        assert_eq!(whole, trickled);
        // Reference: cut with all remaining input at hand (the stream keeps only a lookahead).
        let mut reference = Vec::new();
        let mut pos = 0;
        while pos < d.len() {
            let n = c.cut(&d[pos..]);
            reference.push(n);
            pos += n;
        }
        assert_eq!(whole, reference);
        assert!(
            whole.iter().any(|&n| n > c.lookahead()),
            "no chunk longer than the lookahead: the re-read path went untested"
        );
    }

    #[test]
    fn key_changes_cut_points_and_shift_resyncs() {
        let d = data(400_000);
        let a: Vec<usize> = Chunker::new(small(), &key(1))
            .stream(&d[..])
            .map(|r| r.unwrap().len())
            .collect();
        let b: Vec<usize> = Chunker::new(small(), &key(2))
            .stream(&d[..])
            .map(|r| r.unwrap().len())
            .collect();
        assert_ne!(a, b);
        // Insert bytes at the front: most chunks after the edit are unchanged.
        let c = Chunker::new(small(), &key(1));
        let mut e = b"inserted".to_vec();
        e.extend_from_slice(&d);
        let x: std::collections::HashSet<Bytes> = c.stream(&d[..]).map(|r| r.unwrap()).collect();
        let y: Vec<Bytes> = c.stream(&e[..]).map(|r| r.unwrap()).collect();
        let shared = y.iter().filter(|ch| x.contains(*ch)).count();
        assert!(shared + 3 >= y.len(), "{shared} of {}", y.len());
    }

    // format.md §18, computed independently (Python `blake3`).
    const GEAR_ZERO_0: u64 = 0xc868fe12e795e140;
    const GEAR_ZERO_1: u64 = 0x503832ce46b15b75;
    const GEAR_ZERO_2: u64 = 0x1b4c356a5ae604bf;
    const GEAR_ZERO_255: u64 = 0x474f07d9033e4ab7;
    const GEAR_ZERO_XOF_16: &str = "40e195e712fe68c8755bb146ce323850";
    const GEAR_COUNT_0: u64 = 0x039f8b96e8c32e9d;
    const GEAR_COUNT_1: u64 = 0x2c84c9d67363ce63;
    const GEAR_COUNT_2: u64 = 0xd53cd251a2ddac46;
    const GEAR_COUNT_255: u64 = 0x26b49c9778887fbb;

    /// The test vectors of format.md §18: keep both in sync.
    #[test]
    fn gear_table_test_vectors() {
        let zero = Chunker::new(small(), &[0u8; 32]);
        let mut counting = [0u8; 32];
        for (i, b) in counting.iter_mut().enumerate() {
            *b = i as u8;
        }
        let counting = Chunker::new(small(), &counting);
        assert_eq!(
            zero.gear_vector(),
            [GEAR_ZERO_0, GEAR_ZERO_1, GEAR_ZERO_2, GEAR_ZERO_255]
        );
        assert_eq!(
            counting.gear_vector(),
            [GEAR_COUNT_0, GEAR_COUNT_1, GEAR_COUNT_2, GEAR_COUNT_255]
        );
        // gear_ls is gear shifted left by one, wrapping.
        assert_eq!(zero.gear_ls[255], GEAR_ZERO_255 << 1);
        // The XOF's first bytes for the zero key, as listed in the doc.
        let mut h = blake3::Hasher::new_derive_key(GEAR_CONTEXT);
        h.update(&[0u8; 32]);
        let mut first = [0u8; 16];
        h.finalize_xof().fill(&mut first);
        assert_eq!(hex::encode(first), GEAR_ZERO_XOF_16);
    }

    #[test]
    fn empty_input_gives_no_chunks() {
        let c = Chunker::new(small(), &key(1));
        assert_eq!(c.stream(&[][..]).count(), 0);
    }
}
