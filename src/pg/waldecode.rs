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

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

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
    let mut digest = CRC32C.digest();
    digest.update(body);
    digest.update(head);
    digest.finalize() == stored
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
