#![no_main]
//! A PostgreSQL WAL segment (or its beginning), as `cairn pg wal-push` reads it.
//!
//! Each input is read twice: as raw segment bytes, and as a recipe for a segment whose records
//! the target frames itself (page headers, continuation pages, lengths, `xl_prev` links and
//! CRC-32C filled in), so that mutations reach the record decoding behind the CRC check.
use cairn::pg::waldecode::{segment_header, summarize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(seg) = framed(data) {
        check(&seg);
    }
});

/// Decodes `data` and checks what any summary must satisfy.
fn check(data: &[u8]) {
    let header = segment_header(data);
    if let Ok((h, s)) = summarize(data) {
        assert_eq!(header, Ok(h), "summarize reads the same header");
        let start = h.page_addr;
        let end = start + u64::from(h.segment_size);
        assert!(
            start <= s.end_lsn && s.end_lsn <= end,
            "end_lsn inside the segment"
        );
        assert!(s.records == 0 || s.end_lsn > start);
        assert!(s.transactions <= s.records);
        assert!(s.restore_points.len() as u64 <= s.records);
        assert_eq!(s.transactions == 0, s.time_range.is_none());
        if let Some((lo, hi)) = s.time_range {
            assert!(lo <= hi);
        }
        if let Some((lo, hi)) = s.xid_range {
            assert!(0 < lo && lo <= hi);
        }
        for rp in &s.restore_points {
            assert!(start < rp.lsn && rp.lsn < rp.end_lsn && rp.end_lsn <= s.end_lsn);
            assert!(
                rp.name.len() <= 3 * 64,
                "64 bytes at most, each maybe replaced"
            );
        }
    } else if let Ok(h) = header {
        // After a valid header, only an input longer than its segment is an error.
        assert!(data.len() as u64 > u64::from(h.segment_size));
    }
}

const MAGICS: [u16; 5] = [0xD106, 0xD10D, 0xD110, 0xD113, 0xD116];
const PAGE_ADDR: u64 = 0x3_0000_0000;
/// Framed segments stay small (the walk is linear; this keeps executions fast).
const MAX_FRAMED: usize = 64 << 10;

/// A 1 MiB segment's beginning built from `data`: byte 0 picks the block size (1 to 8 KiB) and
/// the magic, byte 1 the length of a continuation at the start; then records, each
/// `len: u16, info: u8, rmid: u8, xid: u32` and `len % 4096` bytes of body (block headers,
/// data headers, data, main data, as the input has them).
fn framed(data: &[u8]) -> Option<Vec<u8>> {
    let (&p, rest) = data.split_first()?;
    let (&cont, mut rest) = rest.split_first()?;
    let blck = 1024usize << (p & 3);
    let magic = MAGICS[usize::from(p >> 2) % MAGICS.len()];
    let mut w = Writer {
        out: Vec::new(),
        blck,
        magic,
    };
    w.out.extend_from_slice(&magic.to_le_bytes());
    let cont_len = usize::from(cont) * 40;
    w.out
        .extend_from_slice(&(if cont_len > 0 { 3u16 } else { 2 }).to_le_bytes());
    w.out.extend_from_slice(&1u32.to_le_bytes());
    w.out.extend_from_slice(&PAGE_ADDR.to_le_bytes());
    w.out.extend_from_slice(&(cont_len as u32).to_le_bytes());
    w.out.extend_from_slice(&[0; 4]);
    w.out
        .extend_from_slice(&0x1234_5678_9ABC_DEF0u64.to_le_bytes());
    w.out.extend_from_slice(&(1u32 << 20).to_le_bytes());
    w.out.extend_from_slice(&(blck as u32).to_le_bytes());
    if cont_len > 0 {
        w.write(&vec![0xC5; cont_len], true);
        w.align();
    }
    let mut prev = PAGE_ADDR - 0x100;
    while rest.len() >= 8 && w.out.len() < MAX_FRAMED {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])) % 4096;
        let (info, rmid) = (rest[2], rest[3]);
        let xid = [rest[4], rest[5], rest[6], rest[7]];
        let body = &rest[8..(8 + len).min(rest.len())];
        rest = &rest[8 + body.len()..];
        let mut rec = Vec::with_capacity(24 + body.len());
        rec.extend_from_slice(&((24 + body.len()) as u32).to_le_bytes());
        rec.extend_from_slice(&xid);
        rec.extend_from_slice(&prev.to_le_bytes());
        rec.extend_from_slice(&[info, rmid, 0, 0]);
        let mut crc = crc32c_update(!0, body);
        crc = !crc32c_update(crc, &rec[..20]);
        rec.extend_from_slice(&crc.to_le_bytes());
        rec.extend_from_slice(body);
        if w.out.len() % blck == 0 {
            w.page_header(false, 0);
        }
        prev = PAGE_ADDR + w.out.len() as u64;
        w.write(&rec, false);
        w.align();
    }
    Some(w.out)
}

struct Writer {
    out: Vec<u8>,
    blck: usize,
    magic: u16,
}

impl Writer {
    fn page_header(&mut self, cont: bool, rem: usize) {
        let addr = PAGE_ADDR + self.out.len() as u64;
        self.out.extend_from_slice(&self.magic.to_le_bytes());
        self.out.extend_from_slice(&u16::from(cont).to_le_bytes());
        self.out.extend_from_slice(&1u32.to_le_bytes());
        self.out.extend_from_slice(&addr.to_le_bytes());
        self.out.extend_from_slice(&(rem as u32).to_le_bytes());
        self.out.extend_from_slice(&[0; 4]);
    }

    fn write(&mut self, data: &[u8], continuation: bool) {
        let mut i = 0;
        while i < data.len() {
            if self.out.len() % self.blck == 0 {
                self.page_header(i > 0 || continuation, data.len() - i);
            }
            let room = self.blck - self.out.len() % self.blck;
            let n = room.min(data.len() - i);
            self.out.extend_from_slice(&data[i..i + n]);
            i += n;
        }
    }

    fn align(&mut self) {
        while self.out.len() % 8 != 0 {
            self.out.push(0);
        }
    }
}

/// CRC-32C (Castagnoli, reflected), bit by bit: inputs are small.
fn crc32c_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    crc
}
