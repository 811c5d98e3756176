//! WAL file names and WAL positions (LSNs) as PostgreSQL writes them.
//!
//! A segment is `TTTTTTTTXXXXXXXXYYYYYYYY` (timeline, then the segment number split in a "log"
//! and a "segment within the log" part of 2^32 / segment size each); a timeline history file is
//! `TTTTTTTT.history`; the last, incomplete segment of a timeline left behind by a promotion is
//! `<segment>.partial`; a backup history file is `<segment>.XXXXXXXX.backup`.

use std::fmt;

/// A WAL position (`XLogRecPtr`), written `X/Y` in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl std::str::FromStr for Lsn {
    type Err = String;
    fn from_str(s: &str) -> Result<Lsn, String> {
        let bad = || format!("{s:?} is not an LSN (expected X/Y in hex, as 0/16B3748)");
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

/// What kind of WAL file a name denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WalFile {
    /// A complete segment.
    Segment {
        /// Timeline.
        timeline: u32,
        /// Segment number (LSN / segment size).
        segno: u64,
    },
    /// The incomplete last segment of a timeline that was left by a promotion.
    Partial {
        /// Timeline.
        timeline: u32,
        /// Segment number.
        segno: u64,
    },
    /// A timeline history file.
    History {
        /// The timeline it introduces.
        timeline: u32,
    },
    /// A backup history file (`pg_backup_stop` writes one).
    Backup {
        /// Timeline.
        timeline: u32,
        /// Segment number of the backup's start.
        segno: u64,
        /// Offset of the start in that segment.
        offset: u32,
    },
}

fn hex8(s: &str) -> Option<u32> {
    (s.len() == 8
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()))
    .then(|| u32::from_str_radix(s, 16).ok())
    .flatten()
}

/// Segments per "log" (the middle eight hex digits count logs of 4 GiB).
pub fn segments_per_log(segment_size: u32) -> u64 {
    0x1_0000_0000 / u64::from(segment_size.max(1))
}

/// The name of segment `segno` of `timeline`.
pub fn segment_name(timeline: u32, segno: u64, segment_size: u32) -> String {
    let per = segments_per_log(segment_size);
    format!("{timeline:08X}{:08X}{:08X}", segno / per, segno % per)
}

/// The segment holding `lsn`.
pub fn segno_of(lsn: Lsn, segment_size: u32) -> u64 {
    lsn.0 / u64::from(segment_size.max(1))
}

impl WalFile {
    /// Parse a file name; `None` for anything PostgreSQL would not archive.
    pub fn parse(name: &str, segment_size: u32) -> Option<WalFile> {
        let per = segments_per_log(segment_size);
        let seg = |s: &str| -> Option<(u32, u64)> {
            if s.len() != 24 {
                return None;
            }
            let (t, l, n) = (hex8(&s[..8])?, hex8(&s[8..16])?, hex8(&s[16..])?);
            (u64::from(n) < per).then_some((t, u64::from(l) * per + u64::from(n)))
        };
        if let Some(t) = name.strip_suffix(".history") {
            return Some(WalFile::History { timeline: hex8(t)? });
        }
        if let Some(s) = name.strip_suffix(".partial") {
            let (timeline, segno) = seg(s)?;
            return Some(WalFile::Partial { timeline, segno });
        }
        if let Some(s) = name.strip_suffix(".backup") {
            let (s, off) = s.split_once('.')?;
            let (timeline, segno) = seg(s)?;
            return Some(WalFile::Backup {
                timeline,
                segno,
                offset: hex8(off)?,
            });
        }
        let (timeline, segno) = seg(name)?;
        Some(WalFile::Segment { timeline, segno })
    }

    /// Timeline of the file.
    pub fn timeline(&self) -> u32 {
        match *self {
            WalFile::Segment { timeline, .. }
            | WalFile::Partial { timeline, .. }
            | WalFile::History { timeline }
            | WalFile::Backup { timeline, .. } => timeline,
        }
    }

    /// Segment number, for the kinds that have one.
    pub fn segno(&self) -> Option<u64> {
        match *self {
            WalFile::Segment { segno, .. }
            | WalFile::Partial { segno, .. }
            | WalFile::Backup { segno, .. } => Some(segno),
            WalFile::History { .. } => None,
        }
    }

    /// Whether the file holds WAL records (segments and `.partial` files).
    pub fn holds_records(&self) -> bool {
        matches!(self, WalFile::Segment { .. } | WalFile::Partial { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB16: u32 = 16 << 20;

    #[test]
    fn lsn_text() {
        let l: Lsn = "0/16B3748".parse().unwrap();
        assert_eq!(l, Lsn(0x16B3748));
        assert_eq!(l.to_string(), "0/16B3748");
        assert_eq!("1F/0".parse::<Lsn>().unwrap(), Lsn(0x1F_0000_0000));
        assert!("16B3748".parse::<Lsn>().is_err());
        assert!("x/1".parse::<Lsn>().is_err());
    }

    #[test]
    fn names() {
        assert_eq!(segment_name(1, 3, MB16), "000000010000000000000003");
        assert_eq!(segment_name(2, 256 + 5, MB16), "000000020000000100000005");
        assert_eq!(segno_of(Lsn(0x1_0500_0028), MB16), 256 + 5);
        assert_eq!(
            WalFile::parse("000000020000000100000005", MB16),
            Some(WalFile::Segment {
                timeline: 2,
                segno: 261
            })
        );
        assert_eq!(
            WalFile::parse("00000002.history", MB16),
            Some(WalFile::History { timeline: 2 })
        );
        assert_eq!(
            WalFile::parse("000000010000000000000003.partial", MB16),
            Some(WalFile::Partial {
                timeline: 1,
                segno: 3
            })
        );
        assert_eq!(
            WalFile::parse("000000010000000000000003.00000028.backup", MB16),
            Some(WalFile::Backup {
                timeline: 1,
                segno: 3,
                offset: 0x28
            })
        );
        for bad in [
            "",
            "00000001000000000000003",
            "0000000100000000000001000",
            "000000010000000000000100",
            "00000001000000000000000a",
            "x.history",
            "000000010000000000000003.backup",
            "../000000010000000000000003",
        ] {
            assert_eq!(WalFile::parse(bad, MB16), None, "{bad}");
        }
    }
}
