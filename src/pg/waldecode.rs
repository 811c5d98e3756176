//! What a PostgreSQL WAL segment holds, read from its bytes: the long page header of its first
//! page (system identifier, timeline, segment and block size) and a summary of its records
//! (commit and abort times and transaction ids, restore points, a segment switch), enough to
//! choose the base backup a recovery target needs without replaying anything.
//!
//! The layout is PostgreSQL's `access/xlog_internal.h` and `access/xlogrecord.h` (stable from 13
//! to 17 for everything read here). Every input is untrusted: a decoder error, never a panic.

/// The long page header that starts every WAL segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// `xlp_magic`: the WAL format of the server's major version.
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

/// A named restore point (`pg_create_restore_point`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePoint {
    /// Its name.
    pub name: String,
    /// WAL position of the record's start.
    pub lsn: u64,
    /// Its time, ns since the Unix epoch.
    pub time_ns: i64,
}

/// What the records that start in one segment say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentSummary {
    /// Commit and abort records (top-level transactions, prepared ones included).
    pub transactions: u64,
    /// Earliest and latest commit/abort time, ns since the Unix epoch.
    pub time_range: Option<(i64, i64)>,
    /// Smallest and largest transaction id that committed or aborted here (recovery_target_xid
    /// stops at either).
    pub xid_range: Option<(u32, u32)>,
    /// Named restore points.
    pub restore_points: Vec<RestorePoint>,
    /// WAL position just past the last record that starts here (the segment's start when none).
    pub end_lsn: u64,
    /// The segment ends with a switch record (`pg_switch_wal`, `archive_timeout`).
    pub switched: bool,
}

/// Why a segment could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WalError(pub String);
