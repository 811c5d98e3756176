//! What a PostgreSQL WAL segment holds, read from its bytes: the long page header of its first
//! page (system identifier, timeline, segment and block size) and a summary of its records
//! (commit and abort times and transaction ids, restore points, a segment switch), enough to
//! choose the base backup a recovery target needs without replaying anything.
//!
//! The layout is PostgreSQL's `access/xlog_internal.h` and `access/xlogrecord.h` (stable from 13
//! to 17 for everything read here). Every input is untrusted: a decoder error, never a panic.
//!
//! # How the walk reads a segment
//!
//! It follows PostgreSQL's `xlogreader.c`: pages of `xlp_xlog_blcksz` bytes, each with a page
//! header (the long one on the first page); records MAXALIGNed to 8 bytes, a record's bytes
//! (its 24-byte header included) running on over as many pages as it needs, each continuation
//! page flagged `XLP_FIRST_IS_CONTRECORD` with `xlp_rem_len` the bytes still to come. The tail of
//! a record begun in the previous segment (the first page's `xlp_rem_len`, over several pages if
//! need be) is skipped: that record belongs to the previous segment's summary.
//!
//! The walk stops, without an error, at the end of the valid WAL, as recovery does: a record
//! length of zero or below 24 (a zeroed tail), a record whose `xl_prev` is not the previous
//! record's start (the first one's must lie before it), a page whose header is not the one
//! expected (magic, flags, `xlp_pageaddr` = its own position: a recycled segment's old pages
//! carry older addresses; a timeline going backwards; a continuation flag or `xlp_rem_len` that
//! does not match), a CRC-32C that does not hold, block headers `DecodeXLogRecord` would refuse,
//! the end of the input (a truncated segment is summarized as far as it goes), or a switch
//! record (the rest of the segment is unused). Only records whose CRC holds are counted.
//!
//! A record that starts in this segment but ends in the next one is not counted here (nor in
//! the next segment, which skips it as a continuation): its CRC covers bytes in the next
//! segment, and its main data (the commit time, the restore point) comes last, so it is never
//! all present. Such a record is rare (one per segment at most, and only a record that happens
//! to straddle the boundary), and [`SegmentSummary::end_lsn`] then stops before it.
//!
//! WAL is read little-endian (every platform PostgreSQL is commonly built for); a big-endian
//! server's segment fails the magic check.

/// The long page header that starts every WAL segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// `xlp_magic`: the WAL format of the server's major version (see
    /// [`SegmentHeader::major_version`]).
    pub magic: u16,
    /// Timeline (`xlp_tli`).
    pub timeline: u32,
    /// WAL position of the segment's first byte (`xlp_pageaddr`).
    pub page_addr: u64,
    /// The cluster's system identifier (`xlp_sysid`).
    pub system_identifier: u64,
    /// Segment size in bytes (`xlp_seg_size`).
    pub segment_size: u32,
    /// WAL block size in bytes (`xlp_xlog_blcksz`).
    pub block_size: u32,
}

impl SegmentHeader {
    /// The PostgreSQL major version whose WAL format `magic` is (13 to 17).
    pub fn major_version(&self) -> u32 {
        major_version(self.magic).unwrap_or(0)
    }
}

/// A named restore point (`pg_create_restore_point`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePoint {
    /// Its name (`rp_name`, up to its first NUL; bytes that are not UTF-8 are replaced).
    pub name: String,
    /// WAL position of the record's start (what `recovery_target_lsn` compares with a record).
    pub lsn: u64,
    /// WAL position just past the record, MAXALIGNed: where the next record starts, and the
    /// value `pg_create_restore_point` returned.
    pub end_lsn: u64,
    /// Its time (`rp_time`), ns since the Unix epoch.
    pub time_ns: i64,
}

/// What the records that start in one segment say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Records that start here and were read whole with a valid CRC (all resource managers).
    pub records: u64,
    /// Commit and abort records (`XLOG_XACT_COMMIT`, `_ABORT`, `_COMMIT_PREPARED`,
    /// `_ABORT_PREPARED`). As recovery sees them: the abort record a subtransaction writes
    /// (`ROLLBACK TO SAVEPOINT` after it got an xid) counts too.
    pub transactions: u64,
    /// Earliest and latest commit/abort time (`xact_time`), ns since the Unix epoch.
    pub time_range: Option<(i64, i64)>,
    /// Smallest and largest transaction id that committed or aborted here (recovery_target_xid
    /// stops at either): the record's `xl_xid` for a plain commit or abort, the prepared
    /// transaction's xid (the record's `xl_xact_twophase`) for the `_PREPARED` kinds. Plain
    /// 32-bit xids, compared as numbers (no wraparound logic); xid 0 is never counted.
    pub xid_range: Option<(u32, u32)>,
    /// Named restore points, in WAL order.
    pub restore_points: Vec<RestorePoint>,
    /// WAL position just past the last record that starts here, MAXALIGNed (PostgreSQL's
    /// `EndRecPtr`: where the next record starts; after a switch record, the value
    /// `pg_switch_wal` returned). The segment's start when no record starts here.
    pub end_lsn: u64,
    /// The segment ends with a switch record (`pg_switch_wal`, `archive_timeout`).
    pub switched: bool,
}

/// Why a segment could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WalError(pub String);

/// `XLOG_PAGE_MAGIC` of each supported major version (`access/xlog_internal.h`).
const MAGICS: [(u16, u32); 5] = [
    (0xD106, 13),
    (0xD10D, 14),
    (0xD110, 15),
    (0xD113, 16),
    (0xD116, 17),
];
/// First magic whose image headers name a compression method (PG 15); before it one
/// `BKPIMAGE_IS_COMPRESSED` bit.
const MAGIC_PG15: u16 = 0xD110;

const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
const XLP_LONG_HEADER: u16 = 0x0002;
/// Every defined `xlp_info` bit (`XLP_FIRST_IS_OVERWRITE_CONTRECORD` 0x0008 included).
const XLP_ALL_FLAGS: u16 = 0x000F;
/// `SizeOfXLogShortPHD`, `SizeOfXLogLongPHD` (MAXALIGNed).
const SHORT_PHD: usize = 24;
const LONG_PHD: usize = 40;
/// `SizeOfXLogRecord`; `xl_crc` is its last field.
const RECORD_HEADER: usize = 24;
const CRC_OFFSET: usize = 20;

const MIN_SEGMENT: u32 = 1 << 20;
const MAX_SEGMENT: u32 = 1 << 30;
const MIN_BLOCK: u32 = 1 << 10;
const MAX_BLOCK: u32 = 1 << 16;

const RM_XLOG_ID: u8 = 0;
const RM_XACT_ID: u8 = 1;
const XLR_INFO_MASK: u8 = 0x0F;
const XLOG_SWITCH: u8 = 0x40;
const XLOG_RESTORE_POINT: u8 = 0x70;
/// `MAXFNAMELEN`: the size of `rp_name`.
const RP_NAME_LEN: usize = 64;

const XLOG_XACT_OPMASK: u8 = 0x70;
const XLOG_XACT_HAS_INFO: u8 = 0x80;
const XLOG_XACT_COMMIT: u8 = 0x00;
const XLOG_XACT_ABORT: u8 = 0x20;
const XLOG_XACT_COMMIT_PREPARED: u8 = 0x30;
const XLOG_XACT_ABORT_PREPARED: u8 = 0x40;
const XACT_XINFO_HAS_DBINFO: u32 = 1 << 0;
const XACT_XINFO_HAS_SUBXACTS: u32 = 1 << 1;
const XACT_XINFO_HAS_RELFILELOCATORS: u32 = 1 << 2;
const XACT_XINFO_HAS_INVALS: u32 = 1 << 3;
const XACT_XINFO_HAS_TWOPHASE: u32 = 1 << 4;
/// PG 15 on; the bit is unused before.
const XACT_XINFO_HAS_DROPPED_STATS: u32 = 1 << 8;
/// `sizeof(RelFileLocator)`, `sizeof(xl_xact_stats_item)` (PG 15-17),
/// `sizeof(SharedInvalidationMessage)`.
const RELFILELOCATOR_SIZE: usize = 12;
const STATS_ITEM_SIZE: usize = 12;
const INVAL_MSG_SIZE: usize = 16;

const XLR_MAX_BLOCK_ID: u8 = 32;
const XLR_BLOCK_ID_DATA_SHORT: u8 = 255;
const XLR_BLOCK_ID_DATA_LONG: u8 = 254;
const XLR_BLOCK_ID_ORIGIN: u8 = 253;
const XLR_BLOCK_ID_TOPLEVEL_XID: u8 = 252;
const BKPBLOCK_HAS_IMAGE: u8 = 0x10;
const BKPBLOCK_HAS_DATA: u8 = 0x20;
const BKPBLOCK_SAME_REL: u8 = 0x80;
const BKPIMAGE_HAS_HOLE: u8 = 0x01;
/// PG 13-14: one compression bit.
const BKPIMAGE_IS_COMPRESSED_PG13: u8 = 0x02;
/// PG 15 on: `BKPIMAGE_COMPRESS_PGLZ | _LZ4 | _ZSTD`.
const BKPIMAGE_COMPRESSED_PG15: u8 = 0x04 | 0x08 | 0x10;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const PG_EPOCH_UNIX_US: i128 = 946_684_800_000_000;

fn major_version(magic: u16) -> Option<u32> {
    MAGICS.iter().find(|(m, _)| *m == magic).map(|(_, v)| *v)
}

fn err(msg: impl Into<String>) -> WalError {
    WalError(msg.into())
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes(s.try_into().ok()?))
}

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

fn le_i64(b: &[u8], at: usize) -> Option<i64> {
    le_u64(b, at).map(|v| v as i64)
}

/// MAXALIGN (8).
fn align8(n: usize) -> Option<usize> {
    Some(n.checked_add(7)? & !7)
}

/// A `TimestampTz` (µs since 2000-01-01 UTC) as ns since the Unix epoch, saturated to `i64`.
fn pg_time_to_unix_ns(t: i64) -> i64 {
    let ns = (i128::from(t) + PG_EPOCH_UNIX_US) * 1000;
    ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// The fields of `XLogPageHeaderData` (any page).
struct PageHeader {
    magic: u16,
    info: u16,
    tli: u32,
    page_addr: u64,
    rem_len: u32,
}

fn page_header(bytes: &[u8], at: usize) -> Option<PageHeader> {
    Some(PageHeader {
        magic: le_u16(bytes, at)?,
        info: le_u16(bytes, at.checked_add(2)?)?,
        tli: le_u32(bytes, at.checked_add(4)?)?,
        page_addr: le_u64(bytes, at.checked_add(8)?)?,
        rem_len: le_u32(bytes, at.checked_add(16)?)?,
    })
}

/// Reads and checks the long page header (`XLogLongPageHeaderData`) that starts a segment:
/// a supported magic (PostgreSQL 13 to 17), the `XLP_LONG_HEADER` bit and no unknown flag, a
/// timeline other than 0, a power-of-two segment size from 1 MiB to 1 GiB and block size from
/// 1 KiB to 64 KiB, and a page address that is a multiple of the segment size (with room for
/// the whole segment below 2^64). Only the first 40 bytes are read.
pub fn segment_header(bytes: &[u8]) -> Result<SegmentHeader, WalError> {
    let b = bytes.get(..LONG_PHD).ok_or_else(|| {
        err(format!(
            "WAL segment: {} bytes, shorter than a long page header ({LONG_PHD})",
            bytes.len()
        ))
    })?;
    let short = || err("WAL segment: truncated page header");
    let ph = page_header(b, 0).ok_or_else(short)?;
    let system_identifier = le_u64(b, 24).ok_or_else(short)?;
    let segment_size = le_u32(b, 32).ok_or_else(short)?;
    let block_size = le_u32(b, 36).ok_or_else(short)?;
    if major_version(ph.magic).is_none() {
        return Err(err(format!(
            "WAL segment: unknown page magic {:#06x} (PostgreSQL 13 to 17 are read)",
            ph.magic
        )));
    }
    if ph.info & XLP_LONG_HEADER == 0 {
        return Err(err("WAL segment: the first page has no long header"));
    }
    if ph.info & !XLP_ALL_FLAGS != 0 {
        return Err(err(format!(
            "WAL segment: unknown page flags {:#06x}",
            ph.info
        )));
    }
    if ph.tli == 0 {
        return Err(err("WAL segment: timeline 0"));
    }
    if !segment_size.is_power_of_two() || !(MIN_SEGMENT..=MAX_SEGMENT).contains(&segment_size) {
        return Err(err(format!(
            "WAL segment: segment size {segment_size} is not a power of two from 1 MiB to 1 GiB"
        )));
    }
    if !block_size.is_power_of_two() || !(MIN_BLOCK..=MAX_BLOCK).contains(&block_size) {
        return Err(err(format!(
            "WAL segment: block size {block_size} is not a power of two from 1 KiB to 64 KiB"
        )));
    }
    if ph.page_addr % u64::from(segment_size) != 0
        || ph.page_addr.checked_add(u64::from(segment_size)).is_none()
    {
        return Err(err(format!(
            "WAL segment: page address {:#x} is not the start of a {segment_size}-byte segment",
            ph.page_addr
        )));
    }
    Ok(SegmentHeader {
        magic: ph.magic,
        timeline: ph.tli,
        page_addr: ph.page_addr,
        system_identifier,
        segment_size,
        block_size,
    })
}

/// Reads a segment's header and summarizes the records that start in it (see the module doc
/// for where the walk stops). `bytes` is the segment file, or its beginning: a truncated
/// segment is summarized as far as it goes. An error only when the first page's long header is
/// not valid ([`segment_header`]) or the input is longer than the segment size; whatever
/// follows is WAL that ends where it stops being valid, never an error.
///
/// Linear in `bytes.len()`; the only allocation is one buffer for the record being read,
/// never larger than the input.
pub fn summarize(bytes: &[u8]) -> Result<(SegmentHeader, SegmentSummary), WalError> {
    let head = segment_header(bytes)?;
    let seg = usize::try_from(head.segment_size)
        .map_err(|_| err("WAL segment: segment size does not fit in memory"))?;
    if bytes.len() > seg {
        return Err(err(format!(
            "WAL segment: {} bytes, longer than its segment size {seg}",
            bytes.len()
        )));
    }
    let blck = usize::try_from(head.block_size)
        .map_err(|_| err("WAL segment: block size does not fit in memory"))?;
    let mut walker = Walker {
        bytes,
        head,
        blck,
        seg,
        tli: head.timeline,
    };
    let mut summary = SegmentSummary {
        end_lsn: head.page_addr,
        ..SegmentSummary::default()
    };
    walker.walk(&mut summary);
    Ok((head, summary))
}

/// What a page header says about its page's content.
struct Page {
    /// `XLP_FIRST_IS_CONTRECORD`: the page starts with the rest of a record.
    cont: bool,
    /// `xlp_rem_len`: that rest's length.
    rem_len: u32,
    /// Offset of the page's first data byte from the page's start.
    header_size: usize,
}

struct Walker<'a> {
    bytes: &'a [u8],
    head: SegmentHeader,
    blck: usize,
    seg: usize,
    /// Timeline of the last page read (it may only grow).
    tli: u32,
}

impl Walker<'_> {
    /// The WAL position of an offset in the segment (at most the segment size, which
    /// `segment_header` checked fits after `page_addr`).
    fn lsn(&self, off: usize) -> u64 {
        self.head.page_addr.saturating_add(off as u64)
    }

    /// Page 0, from the long header `segment_header` checked.
    fn first_page(&self) -> Option<Page> {
        let ph = page_header(self.bytes, 0)?;
        Some(Page {
            cont: ph.info & XLP_FIRST_IS_CONTRECORD != 0,
            rem_len: ph.rem_len,
            header_size: LONG_PHD,
        })
    }

    /// Checks the header of page `k` (k ≥ 1) as `XLogReaderValidatePageHeader` does; `None`
    /// ends the walk (past the segment or the input, a foreign, zeroed or recycled page).
    fn page(&mut self, k: usize) -> Option<Page> {
        let off = k.checked_mul(self.blck)?;
        if off >= self.seg {
            return None;
        }
        let ph = page_header(self.bytes, off)?;
        if ph.magic != self.head.magic
            || ph.info & !XLP_ALL_FLAGS != 0
            || ph.page_addr != self.lsn(off)
            || ph.tli < self.tli
        {
            return None;
        }
        let header_size = if ph.info & XLP_LONG_HEADER != 0 {
            let sysid = le_u64(self.bytes, off.checked_add(24)?)?;
            let seg_size = le_u32(self.bytes, off.checked_add(32)?)?;
            let blcksz = le_u32(self.bytes, off.checked_add(36)?)?;
            if sysid != self.head.system_identifier
                || seg_size != self.head.segment_size
                || blcksz != self.head.block_size
            {
                return None;
            }
            LONG_PHD
        } else {
            SHORT_PHD
        };
        self.tli = ph.tli;
        Some(Page {
            cont: ph.info & XLP_FIRST_IS_CONTRECORD != 0,
            rem_len: ph.rem_len,
            header_size,
        })
    }

    /// Where the first record that starts in the segment is: past the first page's header and
    /// past the continuation of a record begun before (`XLogFindNextRecord`).
    fn first_record(&mut self) -> Option<usize> {
        let mut k = 0usize;
        let mut page = self.first_page()?;
        loop {
            let data = k.checked_mul(self.blck)?.checked_add(page.header_size)?;
            if !page.cont {
                return Some(data);
            }
            let skip = align8(usize::try_from(page.rem_len).ok()?)?;
            if skip < self.blck.checked_sub(page.header_size)? {
                return data.checked_add(skip);
            }
            k = k.checked_add(1)?;
            page = self.page(k)?;
        }
    }

    fn walk(&mut self, summary: &mut SegmentSummary) {
        let Some(mut next) = self.first_record() else {
            return;
        };
        let mut prev: Option<u64> = None;
        let mut buf = Vec::new();
        while next < self.seg {
            let mut start = next;
            if start % self.blck == 0 {
                // A record that starts a page: that page may not begin with a continuation.
                let Some(page) = self.page(start / self.blck) else {
                    return;
                };
                if page.cont {
                    return;
                }
                start += page.header_size;
            }
            let Some(end) = self.read_record(start, prev, &mut buf) else {
                return;
            };
            if !crc_holds(&buf) {
                return;
            }
            let Some(main) = main_data(&buf, self.head.magic) else {
                return;
            };
            let Some(end_aligned) = align8(end) else {
                return;
            };
            let switched = self.apply(&buf, main, start, end_aligned, summary);
            summary.records += 1;
            summary.end_lsn = self.lsn(end_aligned);
            if switched {
                summary.switched = true;
                return;
            }
            prev = Some(self.lsn(start));
            next = end_aligned;
        }
    }

    /// Reads the record at `start` (not a page boundary) into `buf`, across pages; returns the
    /// offset just past its last byte, or `None` where the valid WAL ends (see the module doc).
    fn read_record(&mut self, start: usize, prev: Option<u64>, buf: &mut Vec<u8>) -> Option<usize> {
        // xl_tot_len is never split: a record starts 8-aligned and pages end 8-aligned.
        let total = usize::try_from(le_u32(self.bytes, start)?).ok()?;
        if total < RECORD_HEADER {
            return None;
        }
        buf.clear();
        let mut pos = start;
        let mut header_checked = false;
        loop {
            let page_end = (pos / self.blck).checked_add(1)?.checked_mul(self.blck)?;
            let take = (total - buf.len()).min(page_end.checked_sub(pos)?);
            buf.extend_from_slice(self.bytes.get(pos..pos.checked_add(take)?)?);
            pos += take;
            if !header_checked && buf.len() >= RECORD_HEADER {
                let xl_prev = le_u64(buf, 8)?;
                let linked = match prev {
                    Some(p) => xl_prev == p,
                    None => xl_prev < self.lsn(start),
                };
                if !linked {
                    return None;
                }
                header_checked = true;
            }
            if buf.len() == total {
                return Some(pos);
            }
            // The rest is on the next page, which must say so (None past the segment's end:
            // the record continues in the next segment).
            let page = self.page(pos / self.blck)?;
            if !page.cont || usize::try_from(page.rem_len).ok()? != total - buf.len() {
                return None;
            }
            pos = pos.checked_add(page.header_size)?;
        }
    }

    /// Adds what one valid record says to `summary`; true for a switch record.
    fn apply(
        &self,
        rec: &[u8],
        main: &[u8],
        start: usize,
        end_aligned: usize,
        summary: &mut SegmentSummary,
    ) -> bool {
        let (Some(&info), Some(&rmid)) = (rec.get(16), rec.get(17)) else {
            return false;
        };
        match rmid {
            RM_XLOG_ID => match info & !XLR_INFO_MASK {
                XLOG_SWITCH => return true,
                XLOG_RESTORE_POINT => {
                    if let Some(time) = le_i64(main, 0) {
                        let name_bytes = main.get(8..).unwrap_or_default();
                        let name_bytes = &name_bytes[..name_bytes.len().min(RP_NAME_LEN)];
                        let name_len = name_bytes
                            .iter()
                            .position(|&b| b == 0)
                            .unwrap_or(name_bytes.len());
                        summary.restore_points.push(RestorePoint {
                            name: String::from_utf8_lossy(&name_bytes[..name_len]).into_owned(),
                            lsn: self.lsn(start),
                            end_lsn: self.lsn(end_aligned),
                            time_ns: pg_time_to_unix_ns(time),
                        });
                    }
                }
                _ => {}
            },
            RM_XACT_ID => {
                let op = info & XLOG_XACT_OPMASK;
                let xid = match op {
                    XLOG_XACT_COMMIT | XLOG_XACT_ABORT => le_u32(rec, 4),
                    XLOG_XACT_COMMIT_PREPARED | XLOG_XACT_ABORT_PREPARED => {
                        twophase_xid(main, info, op == XLOG_XACT_COMMIT_PREPARED, self.head.magic)
                    }
                    _ => return false,
                };
                let Some(time) = le_i64(main, 0) else {
                    return false;
                };
                let time = pg_time_to_unix_ns(time);
                summary.transactions += 1;
                summary.time_range = Some(match summary.time_range {
                    Some((lo, hi)) => (lo.min(time), hi.max(time)),
                    None => (time, time),
                });
                if let Some(xid) = xid.filter(|&x| x != 0) {
                    summary.xid_range = Some(match summary.xid_range {
                        Some((lo, hi)) => (lo.min(xid), hi.max(xid)),
                        None => (xid, xid),
                    });
                }
            }
            _ => {}
        }
        false
    }
}

/// `xl_crc`: CRC-32C over the record after its header, then over the header up to `xl_crc`
/// (`XLogRecordAssemble`, `ValidXLogRecord`).
fn crc_holds(rec: &[u8]) -> bool {
    let (Some(head), Some(body), Some(stored)) = (
        rec.get(..CRC_OFFSET),
        rec.get(RECORD_HEADER..),
        le_u32(rec, CRC_OFFSET),
    ) else {
        return false;
    };
    // crc32c uses the CPU's CRC32 instruction where there is one (SSE 4.2, ARMv8): the check
    // of every record was 37 % of a push with a byte-at-a-time table.
    crc32c::crc32c_append(crc32c::crc32c(body), head) == stored
}

/// The main data of a whole record: its block and data headers walked as PostgreSQL 15's
/// `DecodeXLogRecord` does (block ids increasing up to 32, `HAS_DATA` iff a data length, image
/// headers with the compression bits of the magic's version, a relation unless `SAME_REL`
/// follows one, the lengths adding up to the record's exactly); the main data comes last.
/// `None` where PostgreSQL would refuse the record. The page-image cross-checks that need the
/// server's `BLCKSZ` are not made (the CRC already vouches for the bytes).
fn main_data(rec: &[u8], magic: u16) -> Option<&[u8]> {
    let mut cur = Cursor {
        bytes: rec,
        pos: RECORD_HEADER,
    };
    let mut datatotal: u64 = 0;
    let mut main_len: usize = 0;
    let mut last_block: Option<u8> = None;
    let mut have_rel = false;
    while (cur.remaining() as u64) > datatotal {
        let id = cur.u8()?;
        match id {
            XLR_BLOCK_ID_DATA_SHORT => {
                main_len = usize::from(cur.u8()?);
                datatotal += main_len as u64;
                break;
            }
            XLR_BLOCK_ID_DATA_LONG => {
                main_len = usize::try_from(cur.u32()?).ok()?;
                datatotal += main_len as u64;
                break;
            }
            XLR_BLOCK_ID_ORIGIN => {
                cur.skip(2)?;
            }
            XLR_BLOCK_ID_TOPLEVEL_XID => {
                cur.skip(4)?;
            }
            0..=XLR_MAX_BLOCK_ID => {
                if last_block.is_some_and(|last| id <= last) {
                    return None;
                }
                last_block = Some(id);
                let fork_flags = cur.u8()?;
                let data_len = cur.u16()?;
                if (fork_flags & BKPBLOCK_HAS_DATA != 0) != (data_len != 0) {
                    return None;
                }
                datatotal += u64::from(data_len);
                if fork_flags & BKPBLOCK_HAS_IMAGE != 0 {
                    let bimg_len = cur.u16()?;
                    let _hole_offset = cur.u16()?;
                    let bimg_info = cur.u8()?;
                    let compressed = if magic >= MAGIC_PG15 {
                        bimg_info & BKPIMAGE_COMPRESSED_PG15 != 0
                    } else {
                        bimg_info & BKPIMAGE_IS_COMPRESSED_PG13 != 0
                    };
                    if compressed && bimg_info & BKPIMAGE_HAS_HOLE != 0 {
                        let _hole_length = cur.u16()?;
                    }
                    datatotal += u64::from(bimg_len);
                }
                if fork_flags & BKPBLOCK_SAME_REL == 0 {
                    cur.skip(RELFILELOCATOR_SIZE)?;
                    have_rel = true;
                } else if !have_rel {
                    return None;
                }
                let _block_number = cur.u32()?;
            }
            _ => return None,
        }
    }
    if cur.remaining() as u64 != datatotal {
        return None;
    }
    rec.get(rec.len().checked_sub(main_len)?..)
}

/// `xl_xact_twophase.xid` of a `COMMIT_PREPARED` or `ABORT_PREPARED` record's main data,
/// walking `ParseCommitRecord` / `ParseAbortRecord`'s optional parts in order (`xinfo`, dbinfo,
/// subxacts, relfilelocators, dropped stats from PG 15, invalidations for a commit, then the
/// two-phase part). `None` when the record has none or is short.
fn twophase_xid(main: &[u8], info: u8, commit: bool, magic: u16) -> Option<u32> {
    let mut cur = Cursor {
        bytes: main,
        pos: 8, // xact_time
    };
    let xinfo = if info & XLOG_XACT_HAS_INFO != 0 {
        cur.u32()?
    } else {
        0
    };
    if xinfo & XACT_XINFO_HAS_DBINFO != 0 {
        cur.skip(8)?;
    }
    if xinfo & XACT_XINFO_HAS_SUBXACTS != 0 {
        cur.skip_array(4)?;
    }
    if xinfo & XACT_XINFO_HAS_RELFILELOCATORS != 0 {
        cur.skip_array(RELFILELOCATOR_SIZE)?;
    }
    if magic >= MAGIC_PG15 && xinfo & XACT_XINFO_HAS_DROPPED_STATS != 0 {
        cur.skip_array(STATS_ITEM_SIZE)?;
    }
    if commit && xinfo & XACT_XINFO_HAS_INVALS != 0 {
        cur.skip_array(INVAL_MSG_SIZE)?;
    }
    if xinfo & XACT_XINFO_HAS_TWOPHASE == 0 {
        return None;
    }
    cur.u32()
}

/// Bounds-checked little-endian reads.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.pos.checked_add(n)?;
        if end > self.bytes.len() {
            return None;
        }
        self.pos = end;
        Some(())
    }

    fn u8(&mut self) -> Option<u8> {
        let v = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(v)
    }

    fn u16(&mut self) -> Option<u16> {
        let v = le_u16(self.bytes, self.pos)?;
        self.pos += 2;
        Some(v)
    }

    fn u32(&mut self) -> Option<u32> {
        let v = le_u32(self.bytes, self.pos)?;
        self.pos += 4;
        Some(v)
    }

    /// An `int` count (never negative) then that many items of `size` bytes.
    fn skip_array(&mut self, size: usize) -> Option<()> {
        let n = i32::from_le_bytes(self.u32()?.to_le_bytes());
        let n = usize::try_from(n).ok()?;
        self.skip(n.checked_mul(size)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYSID: u64 = 0x6A5F_0000_1234_5678;
    const PG15: u16 = 0xD110;
    const PG14: u16 = 0xD10D;
    const MIB: usize = 1 << 20;
    /// 2026-01-01 00:00:00 UTC as a `TimestampTz` (µs since 2000-01-01 UTC).
    const T0: i64 = 820_540_800_000_000;

    fn unix_ns(pg_us: i64) -> i64 {
        (pg_us + 946_684_800_000_000) * 1000
    }

    /// Writes a segment as PostgreSQL does: page headers, 8-aligned records running on over
    /// pages with continuation headers, `xl_prev` links and CRCs.
    struct Builder {
        buf: Vec<u8>,
        blck: usize,
        magic: u16,
        tli: u32,
        page_addr: u64,
        pos: usize,
        prev: u64,
    }

    impl Builder {
        /// A segment of `seg` bytes at `page_addr` whose first `continuation` bytes are the
        /// tail of a record begun in the previous segment.
        fn new(seg: usize, blck: usize, page_addr: u64, continuation: usize) -> Builder {
            let mut b = Builder {
                buf: vec![0; seg],
                blck,
                magic: PG15,
                tli: 1,
                page_addr,
                pos: 0,
                prev: page_addr - 0x1000,
            };
            b.page_header(0, (continuation > 0).then_some(continuation));
            b.pos = LONG_PHD;
            if continuation > 0 {
                b.write(&vec![0xC5; continuation], true);
                b.pos = align8(b.pos).unwrap();
            }
            b
        }

        fn page_header(&mut self, k: usize, rem: Option<usize>) {
            let off = k * self.blck;
            let mut info = if rem.is_some() {
                XLP_FIRST_IS_CONTRECORD
            } else {
                0
            };
            if k == 0 {
                info |= XLP_LONG_HEADER;
            }
            let seg = self.buf.len() as u32;
            let h = &mut self.buf[off..off + LONG_PHD];
            h[0..2].copy_from_slice(&self.magic.to_le_bytes());
            h[2..4].copy_from_slice(&info.to_le_bytes());
            h[4..8].copy_from_slice(&self.tli.to_le_bytes());
            h[8..16].copy_from_slice(&(self.page_addr + off as u64).to_le_bytes());
            h[16..20].copy_from_slice(&(rem.unwrap_or(0) as u32).to_le_bytes());
            if k == 0 {
                h[24..32].copy_from_slice(&SYSID.to_le_bytes());
                h[32..36].copy_from_slice(&seg.to_le_bytes());
                h[36..40].copy_from_slice(&(self.blck as u32).to_le_bytes());
            }
        }

        /// Writes `data` at `pos`, across pages, up to the segment's end; a page begun
        /// mid-`data` (or mid-continuation) gets the continuation flag.
        fn write(&mut self, data: &[u8], continuation: bool) {
            let mut i = 0;
            while i < data.len() && self.pos < self.buf.len() {
                if self.pos % self.blck == 0 {
                    let cont = i > 0 || continuation;
                    self.page_header(self.pos / self.blck, cont.then_some(data.len() - i));
                    self.pos += SHORT_PHD;
                }
                let page_end = (self.pos / self.blck + 1) * self.blck;
                let n = (data.len() - i).min(page_end - self.pos);
                self.buf[self.pos..self.pos + n].copy_from_slice(&data[i..i + n]);
                self.pos += n;
                i += n;
            }
        }

        /// Appends a record (from [`record`]) with its `xl_prev` and CRC; returns its start and
        /// its MAXALIGNed end as WAL positions.
        fn push(&mut self, mut rec: Vec<u8>) -> (u64, u64) {
            if self.pos % self.blck == 0 {
                self.page_header(self.pos / self.blck, None);
                self.pos += SHORT_PHD;
            }
            let start = self.page_addr + self.pos as u64;
            rec[8..16].copy_from_slice(&self.prev.to_le_bytes());
            let crc =
                crc32c::crc32c_append(crc32c::crc32c(&rec[RECORD_HEADER..]), &rec[..CRC_OFFSET]);
            rec[20..24].copy_from_slice(&crc.to_le_bytes());
            self.write(&rec, false);
            self.pos = align8(self.pos).unwrap();
            self.prev = start;
            (start, self.page_addr + self.pos as u64)
        }

        /// Pushes one no-op record that leaves the next record `room` bytes (8 to a page's
        /// data size, a multiple of 8) before the end of this page or the next.
        fn fill_until(&mut self, room: usize) {
            let here = match self.pos % self.blck {
                0 => self.blck - SHORT_PHD,
                off => self.blck - off,
            };
            let mut total = if here >= room {
                here - room
            } else {
                here + self.blck - SHORT_PHD - room
            };
            if total == 0 {
                return;
            }
            if total < 32 && total != 24 {
                total += self.blck - SHORT_PHD;
            }
            self.push(noop_total(total));
        }
    }

    /// A record: header (lengths, xid, info, rmid; `xl_prev` and CRC filled by `push`), block
    /// headers `blocks` as given, the main data header, `block_data`, the main data.
    fn record(
        rmid: u8,
        info: u8,
        xid: u32,
        blocks: &[u8],
        block_data: &[u8],
        main: &[u8],
    ) -> Vec<u8> {
        let mut r = vec![0u8; RECORD_HEADER];
        r.extend_from_slice(blocks);
        if main.len() > 255 {
            r.push(XLR_BLOCK_ID_DATA_LONG);
            r.extend_from_slice(&(main.len() as u32).to_le_bytes());
        } else if !main.is_empty() {
            r.push(XLR_BLOCK_ID_DATA_SHORT);
            r.push(main.len() as u8);
        }
        r.extend_from_slice(block_data);
        r.extend_from_slice(main);
        let total = r.len() as u32;
        r[0..4].copy_from_slice(&total.to_le_bytes());
        r[4..8].copy_from_slice(&xid.to_le_bytes());
        r[16] = info;
        r[17] = rmid;
        r
    }

    fn commit(xid: u32, t: i64) -> Vec<u8> {
        record(
            RM_XACT_ID,
            XLOG_XACT_COMMIT,
            xid,
            &[],
            &[],
            &t.to_le_bytes(),
        )
    }

    fn abort(xid: u32, t: i64) -> Vec<u8> {
        record(RM_XACT_ID, XLOG_XACT_ABORT, xid, &[], &[], &t.to_le_bytes())
    }

    fn noop(len: usize) -> Vec<u8> {
        record(RM_XLOG_ID, 0x20, 0, &[], &[], &vec![0x6E; len])
    }

    /// A no-op record of exactly `total` bytes (24, or 32 and more).
    fn noop_total(total: usize) -> Vec<u8> {
        let rec = match total {
            24 => noop(0),
            32..=281 => noop(total - 26),
            _ => noop(total - 29),
        };
        assert_eq!(rec.len(), total);
        rec
    }

    fn restore_point(name: &str, t: i64) -> Vec<u8> {
        let mut main = t.to_le_bytes().to_vec();
        let mut rp_name = [0u8; RP_NAME_LEN];
        rp_name[..name.len()].copy_from_slice(name.as_bytes());
        main.extend_from_slice(&rp_name);
        record(RM_XLOG_ID, XLOG_RESTORE_POINT, 0, &[], &[], &main)
    }

    fn switch() -> Vec<u8> {
        record(RM_XLOG_ID, XLOG_SWITCH, 0, &[], &[], &[])
    }

    /// `COMMIT_PREPARED` with every optional part before the two-phase one.
    fn commit_prepared(xid: u32, t: i64) -> Vec<u8> {
        let xinfo = XACT_XINFO_HAS_DBINFO
            | XACT_XINFO_HAS_SUBXACTS
            | XACT_XINFO_HAS_RELFILELOCATORS
            | XACT_XINFO_HAS_DROPPED_STATS
            | XACT_XINFO_HAS_INVALS
            | XACT_XINFO_HAS_TWOPHASE
            | (1 << 7); // HAS_GID
        let mut m = t.to_le_bytes().to_vec();
        m.extend_from_slice(&xinfo.to_le_bytes());
        m.extend_from_slice(&[5, 0, 0, 0, 0x7F, 6, 0, 0]); // dbinfo
        m.extend_from_slice(&2i32.to_le_bytes());
        m.extend_from_slice(&(xid + 1).to_le_bytes());
        m.extend_from_slice(&(xid + 2).to_le_bytes());
        m.extend_from_slice(&1i32.to_le_bytes());
        m.extend_from_slice(&[0xAA; RELFILELOCATOR_SIZE]);
        m.extend_from_slice(&1i32.to_le_bytes());
        m.extend_from_slice(&[0xBB; STATS_ITEM_SIZE]);
        m.extend_from_slice(&2i32.to_le_bytes());
        m.extend_from_slice(&[0xCC; 2 * INVAL_MSG_SIZE]);
        m.extend_from_slice(&xid.to_le_bytes());
        m.extend_from_slice(b"gid\0");
        record(
            RM_XACT_ID,
            XLOG_XACT_COMMIT_PREPARED | XLOG_XACT_HAS_INFO,
            0,
            &[],
            &[],
            &m,
        )
    }

    /// `ABORT_PREPARED` with subxacts; its `HAS_INVALS` bit would be ignored (aborts carry none).
    fn abort_prepared(xid: u32, t: i64) -> Vec<u8> {
        let xinfo = XACT_XINFO_HAS_SUBXACTS | XACT_XINFO_HAS_TWOPHASE | XACT_XINFO_HAS_INVALS;
        let mut m = t.to_le_bytes().to_vec();
        m.extend_from_slice(&xinfo.to_le_bytes());
        m.extend_from_slice(&1i32.to_le_bytes());
        m.extend_from_slice(&(xid + 1).to_le_bytes());
        m.extend_from_slice(&xid.to_le_bytes());
        record(
            RM_XACT_ID,
            XLOG_XACT_ABORT_PREPARED | XLOG_XACT_HAS_INFO,
            0,
            &[],
            &[],
            &m,
        )
    }

    const PAGE_ADDR: u64 = 0x5_0000_0000;

    /// A segment with one of everything, and the values it should yield.
    fn sample() -> (Vec<u8>, Vec<(u64, u64)>) {
        let mut b = Builder::new(MIB, 8192, PAGE_ADDR, 0);
        let spans = vec![
            b.push(commit(100, T0)),
            b.push(abort(101, T0 + 5)),
            b.push(restore_point("before-upgrade", T0 + 6)),
            b.push(commit_prepared(90, T0 + 3)),
            b.push(abort_prepared(95, T0 + 7)),
            b.push(switch()),
        ];
        (b.buf, spans)
    }

    #[test]
    fn header_fields() {
        let (seg, _) = sample();
        let h = segment_header(&seg).unwrap();
        assert_eq!(
            h,
            SegmentHeader {
                magic: PG15,
                timeline: 1,
                page_addr: PAGE_ADDR,
                system_identifier: SYSID,
                segment_size: MIB as u32,
                block_size: 8192,
            }
        );
        assert_eq!(h.major_version(), 15);
        // Only the 40 header bytes are needed.
        assert_eq!(segment_header(&seg[..LONG_PHD]), Ok(h));
    }

    #[test]
    fn header_accepts_each_supported_magic() {
        for (magic, version) in MAGICS {
            let mut seg = sample().0;
            seg[0..2].copy_from_slice(&magic.to_le_bytes());
            assert_eq!(segment_header(&seg).unwrap().major_version(), version);
        }
    }

    #[test]
    fn header_refusals() {
        let (seg, _) = sample();
        let with = |at: usize, bytes: &[u8]| {
            let mut s = seg[..LONG_PHD].to_vec();
            s[at..at + bytes.len()].copy_from_slice(bytes);
            segment_header(&s)
        };
        assert!(segment_header(&seg[..LONG_PHD - 1]).is_err());
        assert!(segment_header(&[]).is_err());
        for magic in [0u16, 0xD101, 0xD118, 0x10D1] {
            assert!(with(0, &magic.to_le_bytes()).is_err(), "magic {magic:#x}");
        }
        assert!(with(2, &0u16.to_le_bytes()).is_err(), "no long header");
        assert!(with(2, &0x0012u16.to_le_bytes()).is_err(), "unknown flag");
        assert!(with(4, &0u32.to_le_bytes()).is_err(), "timeline 0");
        for size in [0u32, 512 << 10, (1 << 20) + 8192, 2 << 30, 3 << 20] {
            assert!(
                with(32, &size.to_le_bytes()).is_err(),
                "segment size {size}"
            );
        }
        for size in [0u32, 512, 3 << 10, 128 << 10] {
            assert!(with(36, &size.to_le_bytes()).is_err(), "block size {size}");
        }
        assert!(
            with(8, &(PAGE_ADDR + 8192).to_le_bytes()).is_err(),
            "unaligned"
        );
        // The segment must end below 2^64 (its end is a WAL position too).
        let last = u64::MAX - (MIB as u64) + 1;
        assert!(with(8, &last.to_le_bytes()).is_err());
        assert!(with(8, &(last - MIB as u64).to_le_bytes()).is_ok());
        assert!(
            with(32, &(1u32 << 30).to_le_bytes()).is_ok(),
            "1 GiB segments"
        );
        assert!(
            with(36, &(64u32 << 10).to_le_bytes()).is_ok(),
            "64 KiB blocks"
        );
    }

    #[test]
    fn summary_of_each_record_kind() {
        let (seg, spans) = sample();
        let (_, s) = summarize(&seg).unwrap();
        assert_eq!(
            s,
            SegmentSummary {
                records: 6,
                transactions: 4,
                time_range: Some((unix_ns(T0), unix_ns(T0 + 7))),
                xid_range: Some((90, 101)),
                restore_points: vec![RestorePoint {
                    name: "before-upgrade".into(),
                    lsn: spans[2].0,
                    end_lsn: spans[2].1,
                    time_ns: unix_ns(T0 + 6),
                }],
                end_lsn: spans[5].1,
                switched: true,
            }
        );
        assert_eq!(s.restore_points[0].end_lsn, spans[2].0 + 104); // 24 + 2 + 72 → 98 → 104
    }

    #[test]
    fn records_after_a_switch_are_not_read() {
        let mut b = Builder::new(MIB, 8192, PAGE_ADDR, 0);
        b.push(commit(7, T0));
        let (_, end) = b.push(switch());
        b.push(commit(8, T0 + 1));
        let (_, s) = summarize(&b.buf).unwrap();
        assert_eq!((s.records, s.xid_range, s.end_lsn), (2, Some((7, 7)), end));
        assert!(s.switched);
    }

    #[test]
    fn empty_segment() {
        let b = Builder::new(MIB, 8192, PAGE_ADDR, 0);
        let (_, s) = summarize(&b.buf).unwrap();
        assert_eq!(
            s,
            SegmentSummary {
                end_lsn: PAGE_ADDR,
                ..SegmentSummary::default()
            }
        );
    }

    #[test]
    fn records_spanning_pages_and_split_headers() {
        let mut b = Builder::new(MIB, 8192, PAGE_ADDR, 0);
        // A 20 KB record over three pages.
        let big = b.push(noop(20_000));
        assert!(big.1 - big.0 > 20_000 + 2 * SHORT_PHD as u64);
        // A commit whose 24-byte header is split 8/16 across a page boundary.
        b.fill_until(8);
        let split = b.push(commit(200, T0 + 10));
        assert_eq!((split.0 - PAGE_ADDR) % 8192, 8192 - 8);
        // A restore point whose main data straddles the next boundary.
        b.fill_until(40);
        let rp = b.push(restore_point("spans", T0 + 11));
        // A record ending exactly at a page's end, then one starting the next page.
        b.fill_until(32);
        let exact = b.push(noop(6));
        assert_eq!((exact.1 - PAGE_ADDR) % 8192, 0);
        let after = b.push(commit(201, T0 + 12));
        assert_eq!((after.0 - PAGE_ADDR) % 8192, SHORT_PHD as u64);
        let (_, s) = summarize(&b.buf).unwrap();
        assert_eq!(s.transactions, 2);
        assert_eq!(s.xid_range, Some((200, 201)));
        assert_eq!(s.restore_points.len(), 1);
        assert_eq!((s.restore_points[0].lsn, s.restore_points[0].end_lsn), rp);
        assert_eq!(s.end_lsn, after.1);
        assert!(!s.switched);
    }

    #[test]
    fn continuation_at_the_segment_start_is_skipped() {
        for cont in [1, 8, 100, 8192 - LONG_PHD - 8, 8192 - LONG_PHD, 20_000] {
            let mut b = Builder::new(MIB, 8192, PAGE_ADDR, cont);
            let first = b.push(commit(300, T0));
            let (_, s) = summarize(&b.buf).unwrap();
            assert_eq!(s.records, 1, "continuation {cont}");
            assert_eq!(s.xid_range, Some((300, 300)));
            assert_eq!(s.end_lsn, first.1);
        }
    }

    #[test]
    fn a_continuation_longer_than_the_segment_leaves_no_record() {
        let b = Builder::new(MIB, 8192, PAGE_ADDR, 2 * MIB);
        let (_, s) = summarize(&b.buf).unwrap();
        assert_eq!((s.records, s.end_lsn), (0, PAGE_ADDR));
    }

    #[test]
    fn a_bad_crc_ends_the_walk() {
        let mut b = Builder::new(MIB, 8192, PAGE_ADDR, 0);
        let first = b.push(commit(1, T0));
        let second = b.push(commit(2, T0 + 1));
        b.push(commit(3, T0 + 2));
        let mut seg = b.buf;
        // The last byte of the second's time (34 bytes; its 6 bytes of padding are not its own).
        seg[(second.0 - PAGE_ADDR) as usize + 33] ^= 1;
        let (_, s) = summarize(&seg).unwrap();
        assert_eq!(
            (s.records, s.xid_range, s.end_lsn),
            (1, Some((1, 1)), first.1)
        );
    }

    #[test]
    fn a_broken_prev_link_ends_the_walk() {
        let mut b = Builder::new(MIB, 8192, PAGE_ADDR, 0);
        let first = b.push(commit(1, T0));
        b.prev += 8;
        b.push(commit(2, T0 + 1));
        let (_, s) = summarize(&b.buf).unwrap();
        assert_eq!((s.records, s.end_lsn), (1, first.1));
        // The first record's xl_prev must lie before it.
        let mut b = Builder::new(MIB, 8192, PAGE_ADDR, 0);
        b.prev = PAGE_ADDR + 0x28;
        b.push(commit(1, T0));
        assert_eq!(summarize(&b.buf).unwrap().1.records, 0);
    }

    #[test]
    fn a_recycled_tail_with_old_page_addresses_ends_the_walk() {
        // The file held an older segment: valid WAL of its own, at older addresses.
        let mut old = Builder::new(MIB, 8192, PAGE_ADDR - MIB as u64, 0);
        while old.pos < 8 * 8192 {
            old.push(commit(50, T0 - 100));
        }
        // Case 1: the new WAL ends exactly at page 2's start; page 2 is still the old one.
        let mut b = Builder::new(MIB, 8192, PAGE_ADDR, 0);
        b.buf.copy_from_slice(&old.buf);
        b.page_header(0, None);
        b.buf[LONG_PHD..8192].fill(0);
        b.buf[8192..2 * 8192].fill(0);
        while b.pos < 2 * 8192 - 200 {
            b.push(commit(60, T0));
        }
        b.fill_until(32);
        let last = b.push(noop(6));
        assert_eq!(last.1, PAGE_ADDR + 2 * 8192);
        let (_, s) = summarize(&b.buf).unwrap();
        assert_eq!(s.xid_range, Some((60, 60)));
        assert_eq!(s.end_lsn, last.1);
        // Case 2: a record runs on into page 2, whose header is the old one: not counted.
        let mut b = Builder::new(MIB, 8192, PAGE_ADDR, 0);
        while b.pos < 8192 + 100 {
            b.push(commit(61, T0));
        }
        b.fill_until(16);
        let before_end = PAGE_ADDR + b.pos as u64;
        let crossing = b.push(commit(63, T0));
        assert!(crossing.1 > PAGE_ADDR + 2 * 8192);
        let mut seg = b.buf.clone();
        seg[2 * 8192..].copy_from_slice(&old.buf[2 * 8192..]);
        let (_, s) = summarize(&seg).unwrap();
        assert_eq!((s.xid_range, s.end_lsn), (Some((61, 61)), before_end));
        // Unchanged, the same segment reads through.
        assert_eq!(summarize(&b.buf).unwrap().1.xid_range, Some((61, 63)));
    }

    #[test]
    fn a_record_running_into_the_next_segment_is_not_counted() {
        let mut b = Builder::new(MIB, 8192, PAGE_ADDR, 0);
        while b.pos < MIB - 3 * 8192 {
            b.push(noop(4000));
        }
        b.fill_until(16);
        // A record of a page's data size moves on by exactly one page.
        while b.pos < MIB - 16 {
            b.push(noop_total(8192 - SHORT_PHD));
        }
        assert_eq!(b.pos, MIB - 16);
        let before = b.prev;
        // Write the commit's first 16 bytes only: the rest would be in the next segment.
        let mut rec = commit(400, T0);
        rec[8..16].copy_from_slice(&before.to_le_bytes());
        let at = b.pos;
        b.buf[at..at + 16].copy_from_slice(&rec[..16]);
        let (_, s) = summarize(&b.buf).unwrap();
        assert_eq!(s.transactions, 0);
        assert_eq!(s.end_lsn, PAGE_ADDR + at as u64);
    }

    #[test]
    fn truncated_input_is_summarized_as_far_as_it_goes() {
        let (seg, spans) = sample();
        for len in (LONG_PHD..2048).chain([8191, 8192, 8193, 20_000, MIB]) {
            let (_, s) = summarize(&seg[..len]).unwrap();
            let cut = PAGE_ADDR + len as u64;
            let whole = spans.iter().filter(|(_, end)| *end <= cut).count() as u64;
            let begun = spans.iter().filter(|(start, _)| *start < cut).count() as u64;
            assert!(whole <= s.records && s.records <= begun, "len {len}");
            assert!(s.end_lsn <= PAGE_ADDR + align8(len).unwrap() as u64);
        }
        // Cut right after the abort: two records.
        let cut = (spans[1].1 - PAGE_ADDR) as usize;
        let (_, s) = summarize(&seg[..cut]).unwrap();
        assert_eq!((s.records, s.transactions, s.end_lsn), (2, 2, spans[1].1));
        // Cut one byte short of the abort's end: one record.
        let abort_end = (spans[1].0 - PAGE_ADDR) as usize + 34;
        let (_, s) = summarize(&seg[..abort_end - 1]).unwrap();
        assert_eq!(s.records, 1);
    }

    #[test]
    fn input_longer_than_the_segment_is_refused() {
        let (mut seg, _) = sample();
        seg.push(0);
        assert!(summarize(&seg).is_err());
    }

    /// A small xorshift generator: reproducible garbage.
    fn garbage(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn garbage_never_panics() {
        for seed in 0..200u64 {
            let len = (seed as usize * 7919) % 20_000;
            let g = garbage(seed, len);
            let _ = summarize(&g);
            // A valid long header over garbage pages and records.
            let (mut seg, _) = sample();
            let from = LONG_PHD + (seed as usize % 64);
            let g = garbage(seed + 1000, 3 * 8192);
            seg[from..from + g.len()].copy_from_slice(&g);
            let (_, s) = summarize(&seg).unwrap();
            assert!(s.end_lsn >= PAGE_ADDR && s.end_lsn <= PAGE_ADDR + MIB as u64);
        }
    }

    #[test]
    fn flipping_any_byte_of_a_sample_never_panics() {
        let (seg, _) = sample();
        let end = 2048;
        for i in 0..end {
            for bit in [0x01u8, 0x80] {
                let mut s = seg.clone();
                s[i] ^= bit;
                if let Ok((_, sum)) = summarize(&s) {
                    assert!(sum.records <= 6);
                }
            }
        }
    }

    #[test]
    fn absurd_lengths_allocate_nothing_unbounded() {
        let mut b = Builder::new(MIB, 8192, PAGE_ADDR, 0);
        let mut rec = commit(1, T0);
        rec[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        b.push(rec);
        let (_, s) = summarize(&b.buf).unwrap();
        assert_eq!(s.records, 0);
    }

    /// Block header bytes: id, fork flags, data length, optional image header, optional
    /// relation, block number.
    fn block(id: u8, flags: u8, data_len: u16, image: Option<(u16, u8, Option<u16>)>) -> Vec<u8> {
        let mut v = vec![id, flags];
        v.extend_from_slice(&data_len.to_le_bytes());
        if let Some((len, info, hole)) = image {
            v.extend_from_slice(&len.to_le_bytes());
            v.extend_from_slice(&(if hole.is_some() { 100u16 } else { 0 }).to_le_bytes());
            v.push(info);
            if let Some(h) = hole {
                v.extend_from_slice(&h.to_le_bytes());
            }
        }
        if flags & BKPBLOCK_SAME_REL == 0 {
            v.extend_from_slice(&[0x11; RELFILELOCATOR_SIZE]);
        }
        v.extend_from_slice(&7u32.to_le_bytes());
        v
    }

    #[test]
    fn main_data_after_block_references() {
        let main = T0.to_le_bytes();
        let mut blocks = vec![
            XLR_BLOCK_ID_ORIGIN,
            1,
            0,
            XLR_BLOCK_ID_TOPLEVEL_XID,
            9,
            0,
            0,
            0,
        ];
        // Block 0: an uncompressed full-page image; block 3: same relation, 10 data bytes.
        blocks.extend(block(0, BKPBLOCK_HAS_IMAGE, 0, Some((8192, 0x02, None))));
        blocks.extend(block(3, BKPBLOCK_SAME_REL | BKPBLOCK_HAS_DATA, 10, None));
        let data = vec![0xD0; 8192 + 10];
        let rec = record(RM_XACT_ID, XLOG_XACT_COMMIT, 42, &blocks, &data, &main);
        assert_eq!(main_data(&rec, PG15), Some(&main[..]));
        // In a segment: the record spans two pages and counts.
        let mut b = Builder::new(MIB, 8192, PAGE_ADDR, 0);
        b.push(rec.clone());
        assert_eq!(summarize(&b.buf).unwrap().1.xid_range, Some((42, 42)));

        // Out-of-order block ids, SAME_REL first, HAS_DATA without length, unknown ids,
        // lengths that do not add up: refused.
        let bad = [
            [block(2, 0, 0, None), block(2, 0, 0, None)].concat(),
            block(0, BKPBLOCK_SAME_REL, 0, None),
            block(0, BKPBLOCK_HAS_DATA, 0, None),
            block(0, 0, 5, None),
            vec![40, 0, 0, 0],
        ];
        for blocks in bad {
            let rec = record(RM_XACT_ID, 0, 1, &blocks, &[], &main);
            assert_eq!(main_data(&rec, PG15), None, "{blocks:?}");
        }
        let mut short = record(RM_XACT_ID, 0, 1, &[], &[], &main);
        short.push(0);
        assert_eq!(main_data(&short, PG15), None, "a byte too many");
        // No main data at all.
        let rec = record(RM_XLOG_ID, XLOG_SWITCH, 0, &[], &[], &[]);
        assert_eq!(main_data(&rec, PG15), Some(&[][..]));
    }

    #[test]
    fn compressed_image_headers_follow_the_version() {
        let main = T0.to_le_bytes();
        // PG 14: bit 0x02 is "compressed": with a hole, a hole length follows.
        let pg14 = block(0, BKPBLOCK_HAS_IMAGE, 0, Some((300, 0x03, Some(50))));
        let rec = record(RM_XACT_ID, 0, 1, &pg14, &[0; 300], &main);
        assert_eq!(main_data(&rec, PG14), Some(&main[..]));
        assert_eq!(
            main_data(&rec, PG15),
            None,
            "0x02 is BKPIMAGE_APPLY in PG 15"
        );
        // PG 15: 0x04/0x08/0x10 name the method.
        for method in [0x04u8, 0x08, 0x10] {
            let pg15 = block(
                0,
                BKPBLOCK_HAS_IMAGE,
                0,
                Some((300, method | 0x01, Some(50))),
            );
            let rec = record(RM_XACT_ID, 0, 1, &pg15, &[0; 300], &main);
            assert_eq!(main_data(&rec, PG15), Some(&main[..]));
        }
        // PG 15, applied image with a hole, uncompressed: no hole length.
        let pg15 = block(0, BKPBLOCK_HAS_IMAGE, 0, Some((8000, 0x03, None)));
        let rec = record(RM_XACT_ID, 0, 1, &pg15, &[0; 8000], &main);
        assert_eq!(main_data(&rec, PG15), Some(&main[..]));
    }

    #[test]
    fn prepared_without_a_twophase_part_counts_time_only() {
        let m = T0.to_le_bytes();
        let rec = record(RM_XACT_ID, XLOG_XACT_COMMIT_PREPARED, 0, &[], &[], &m);
        let mut b = Builder::new(MIB, 8192, PAGE_ADDR, 0);
        b.push(rec);
        let (_, s) = summarize(&b.buf).unwrap();
        assert_eq!((s.transactions, s.xid_range), (1, None));
        assert_eq!(s.time_range, Some((unix_ns(T0), unix_ns(T0))));
        // A negative subxact count is refused, not a huge skip.
        let mut m = T0.to_le_bytes().to_vec();
        m.extend_from_slice(&(XACT_XINFO_HAS_SUBXACTS | XACT_XINFO_HAS_TWOPHASE).to_le_bytes());
        m.extend_from_slice(&(-1i32).to_le_bytes());
        m.extend_from_slice(&77u32.to_le_bytes());
        assert_eq!(twophase_xid(&m, XLOG_XACT_HAS_INFO, true, PG15), None);
    }

    #[test]
    fn dropped_stats_exist_from_pg15_only() {
        let mut m = T0.to_le_bytes().to_vec();
        m.extend_from_slice(
            &(XACT_XINFO_HAS_DROPPED_STATS | XACT_XINFO_HAS_TWOPHASE).to_le_bytes(),
        );
        m.extend_from_slice(&1i32.to_le_bytes());
        m.extend_from_slice(&[0; STATS_ITEM_SIZE]);
        m.extend_from_slice(&77u32.to_le_bytes());
        assert_eq!(twophase_xid(&m, XLOG_XACT_HAS_INFO, true, PG15), Some(77));
        assert_eq!(twophase_xid(&m, XLOG_XACT_HAS_INFO, true, PG14), Some(1));
    }

    #[test]
    fn times_convert_and_saturate() {
        assert_eq!(pg_time_to_unix_ns(0), 946_684_800_000_000_000);
        assert_eq!(pg_time_to_unix_ns(-946_684_800_000_000), 0);
        assert_eq!(pg_time_to_unix_ns(i64::MAX), i64::MAX);
        assert_eq!(pg_time_to_unix_ns(i64::MIN), i64::MIN);
    }

    #[test]
    fn timeline_may_grow_but_not_shrink_across_pages() {
        let mut b = Builder::new(MIB, 8192, PAGE_ADDR, 0);
        b.tli = 2;
        b.page_header(0, None);
        b.tli = 3;
        b.fill_until(16);
        b.push(commit(1, T0));
        b.push(commit(2, T0));
        assert_eq!(summarize(&b.buf).unwrap().1.xid_range, Some((1, 2)));
        // Page 1 on timeline 1 after page 0 on timeline 2.
        b.buf[8192 + 4..8192 + 8].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(summarize(&b.buf).unwrap().1.transactions, 0);
    }

    /// The seed of the `pg_wal` fuzz target: 1 KiB pages (the smallest WAL block size), a
    /// continuation, records over page boundaries, each record kind; truncated at 5 KiB.
    fn fuzz_seed() -> Vec<u8> {
        let mut b = Builder::new(MIB, 1024, 0x1_0000_0000, 1500);
        b.push(commit(10, T0));
        b.push(abort(11, T0 + 1));
        b.push(noop(1200));
        b.push(restore_point("seed", T0 + 2));
        b.fill_until(16);
        b.push(commit_prepared(12, T0 + 3));
        b.push(abort_prepared(14, T0 + 4));
        b.push(switch());
        b.buf.truncate(5 * 1024);
        b.buf
    }

    #[test]
    fn fuzz_seed_is_current_and_decodes() {
        let seed = include_bytes!("../../fuzz/seeds/pg_wal/synthetic-1k-pages");
        assert!(
            seed[..] == fuzz_seed()[..],
            "regenerate: see write_fuzz_seed"
        );
        let (h, s) = summarize(seed).unwrap();
        assert_eq!(h.block_size, 1024);
        assert_eq!((s.transactions, s.restore_points.len()), (4, 1));
        assert!(s.switched);
    }

    /// `PG_WAL_SEED=fuzz/seeds/pg_wal/synthetic-1k-pages cargo test --release --lib
    /// write_fuzz_seed -- --ignored` rewrites the fuzz seed.
    #[test]
    #[ignore]
    fn write_fuzz_seed() {
        if let Ok(path) = std::env::var("PG_WAL_SEED") {
            std::fs::write(path, fuzz_seed()).unwrap();
        }
    }

    /// A real segment from PostgreSQL 15.x (`tests/data/README.md` says how it was made).
    #[test]
    fn real_pg15_segment() {
        let seg =
            zstd::decode_all(&include_bytes!("../../tests/data/pg15-wal-segment.zst")[..]).unwrap();
        assert_eq!(seg.len(), 16 * MIB);
        let (h, s) = summarize(&seg).unwrap();
        assert_eq!(
            h,
            SegmentHeader {
                magic: PG15,
                timeline: 1,
                page_addr: 0x0200_0000,
                system_identifier: 7_716_714_325_863_315_373,
                segment_size: 16 * MIB as u32,
                block_size: 8192,
            }
        );
        // pg_waldump lists 196 records (19 of them cross a page boundary).
        assert_eq!(s.records, 196);
        // CREATE TABLE ×2 (724, 725), two commits (726, 727), the rollback (728),
        // COMMIT PREPARED 729 (with a subtransaction 730), ROLLBACK PREPARED 731.
        assert_eq!(s.transactions, 7);
        assert_eq!(s.xid_range, Some((724, 731)));
        // 2026-12-07 23:52:54.640269 and .663862 UTC (pg_waldump).
        assert_eq!(
            s.time_range,
            Some((1_796_687_574_640_269_000, 1_796_687_574_663_862_000))
        );
        assert_eq!(s.restore_points.len(), 1);
        let rp = &s.restore_points[0];
        assert_eq!(rp.name, "fixture-rp");
        assert_eq!(rp.lsn, 0x0202_58B0);
        // pg_create_restore_point('fixture-rp') returned 0/2025918.
        assert_eq!(rp.end_lsn, 0x0202_5918);
        // Between the abort (.661051) and the first prepare (.662436).
        assert!((1_796_687_574_661_051_000..=1_796_687_574_662_436_000).contains(&rp.time_ns));
        // The second pg_switch_wal() returned 0/2026510.
        assert!(s.switched);
        assert_eq!(s.end_lsn, 0x0202_6510);
        // Truncated after its first page or mid-way it still reads, as far as it goes.
        let (_, part) = summarize(&seg[..8192]).unwrap();
        assert!(part.records > 0 && part.records < 196);
        let (_, part) = summarize(&seg[..0x2_5900]).unwrap();
        assert_eq!(part.restore_points.len(), 0);
        assert_eq!(part.transactions, 5);
    }
}
