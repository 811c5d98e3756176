//! Snapshots `snapshots/<id>`: one backup's root tree and its description.

use crate::error::{Error, Result};
use crate::format::VERSION;
use crate::id::Id;
use serde::{Deserialize, Serialize};

/// How the parent was chosen; all kinds are complete snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotKind {
    /// No parent: every file read.
    Full,
    /// Parent = latest snapshot of the same host and paths.
    Incremental,
    /// Parent = latest full snapshot of the same host and paths.
    Differential,
}

impl SnapshotKind {
    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            SnapshotKind::Full => "full",
            SnapshotKind::Incremental => "incremental",
            SnapshotKind::Differential => "differential",
        }
    }
}

/// Figures of the backup that made the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Files not in the parent.
    pub files_new: u64,
    /// Files read because they changed.
    pub files_changed: u64,
    /// Files reused from the parent without reading.
    pub files_unmodified: u64,
    /// Directories.
    pub dirs: u64,
    /// Other entries (symlinks, fifos, devices).
    pub others: u64,
    /// Entries that could not be read.
    pub errors: u64,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Total size of the files in the snapshot.
    pub bytes_total: u64,
    /// New blobs written.
    pub blobs_added: u64,
    /// Raw bytes of the new blobs.
    pub bytes_added_raw: u64,
    /// Stored bytes of the new blobs (after compression and sealing).
    pub bytes_added_stored: u64,
    /// Backup start, ns since the epoch.
    pub started_ns: i64,
    /// Backup end, ns since the epoch.
    pub finished_ns: i64,
}

/// The plaintext of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Format version.
    pub version: u8,
    /// Time the snapshot stands for, ns since the epoch (UTC).
    pub time_ns: i64,
    /// Host name.
    pub host: String,
    /// User name.
    pub user: String,
    /// Backed-up paths (absolute, raw bytes).
    pub paths: Vec<serde_bytes::ByteBuf>,
    /// Tags.
    pub tags: Vec<String>,
    /// Root tree.
    pub tree: Id,
    /// Parent snapshot used for change detection.
    pub parent: Option<Id>,
    /// Full, incremental or differential.
    pub kind: SnapshotKind,
    /// Backup figures.
    pub summary: Summary,
    /// Program and version that wrote it.
    pub program: String,
    /// For a PostgreSQL base backup (tag `pg-base`): where its WAL starts and stops. Only
    /// version 2 carries it (see [`Snapshot::encode`]).
    pub pg: Option<PgBase>,
}

/// Snapshot version written when [`Snapshot::pg`] is set.
pub const SNAPSHOT_VERSION_PG: u8 = 2;

/// A tablespace of a PostgreSQL base backup: stored in the snapshot under its own path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgTablespace {
    /// Its OID (the link's name in `pg_tblspc/`).
    pub oid: u32,
    /// Where it was (the link's target, absolute, raw bytes).
    pub path: serde_bytes::ByteBuf,
}

/// What a PostgreSQL base backup needs to be restored and recovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PgBase {
    /// The cluster's system identifier.
    pub system_identifier: u64,
    /// Timeline at the backup's start.
    pub timeline: u32,
    /// WAL position of the backup's start (its checkpoint's redo point).
    pub start_lsn: u64,
    /// WAL position of its stop: recovery is consistent from here on.
    pub stop_lsn: u64,
    /// Timeline at the backup's stop.
    pub stop_timeline: u32,
    /// WAL segment size in bytes.
    pub segment_size: u32,
    /// `server_version_num` (150014 for 15.14).
    pub server_version: u32,
    /// Server time at the start, ns since the Unix epoch.
    pub started_ns: i64,
    /// Server time at the stop, ns since the Unix epoch.
    pub stopped_ns: i64,
    /// The first transaction id not yet assigned at the stop (`txid_snapshot_xmax`, 64-bit).
    pub next_xid: u64,
    /// The data directory in the snapshot (one of its paths, raw bytes).
    pub data_dir: serde_bytes::ByteBuf,
    /// Tablespaces, each also one of the snapshot's paths.
    pub tablespaces: Vec<PgTablespace>,
}

impl Snapshot {
    /// A full snapshot for unit tests: `time_ns`, host, paths and tags as given, user `u`,
    /// root `tree`, no parent, empty summary.
    #[cfg(test)]
    pub(crate) fn for_test(
        time_ns: i64,
        host: &str,
        paths: &[&str],
        tags: &[&str],
        tree: Id,
    ) -> Self {
        Snapshot {
            version: crate::format::VERSION,
            time_ns,
            host: host.into(),
            user: "u".into(),
            paths: paths
                .iter()
                .map(|p| serde_bytes::ByteBuf::from(p.as_bytes().to_vec()))
                .collect(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            tree,
            parent: None,
            kind: SnapshotKind::Full,
            summary: Summary::default(),
            program: "test".into(),
            pg: None,
        }
    }

    /// Decode a snapshot's plaintext: version 1, or version 2 (version 1's fields, then
    /// `pg`, always present).
    pub fn decode(bytes: &[u8], what: &dyn std::fmt::Display) -> Result<Snapshot> {
        match bytes.first() {
            Some(&VERSION) => {
                // Version 1 is version 2 without the trailing option: add its "None".
                let mut v = Vec::with_capacity(bytes.len() + 1);
                v.extend_from_slice(bytes);
                v.push(0);
                let s: Snapshot = super::decode_version(&v, what, VERSION)?;
                // The added zero byte can complete a `Some(PgBase)` whose bytes were trailing
                // garbage of a version-1 snapshot: that is not version 1.
                if s.pg.is_some() {
                    return Err(Error::corrupt(format!("{what} is corrupt: trailing bytes")));
                }
                Ok(s)
            }
            Some(&SNAPSHOT_VERSION_PG) => {
                let s: Snapshot = super::decode_version(bytes, what, SNAPSHOT_VERSION_PG)?;
                if s.pg.is_none() {
                    return Err(Error::corrupt(format!(
                        "{what} is corrupt: version 2 without its PostgreSQL part"
                    )));
                }
                Ok(s)
            }
            _ => super::decode(bytes, what),
        }
    }

    /// Encode: version 1 when `pg` is unset (readable by every build), else version 2. The
    /// `version` field is set accordingly.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut s = self.clone();
        s.version = if s.pg.is_some() {
            SNAPSHOT_VERSION_PG
        } else {
            VERSION
        };
        let mut bytes = super::encode(&s)?;
        if s.pg.is_none() {
            // The trailing `None` of version 2's option is not part of version 1.
            bytes.pop();
        }
        Ok(bytes)
    }
    /// Paths as display strings.
    pub fn path_strings(&self) -> Vec<String> {
        self.paths
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg() -> PgBase {
        PgBase {
            system_identifier: 7,
            timeline: 1,
            start_lsn: 0x200_0028,
            stop_lsn: 0x200_0138,
            stop_timeline: 1,
            segment_size: 16 << 20,
            server_version: 150014,
            started_ns: 1,
            stopped_ns: 2,
            next_xid: 740,
            data_dir: serde_bytes::ByteBuf::from(b"/pg".to_vec()),
            tablespaces: vec![],
        }
    }

    #[test]
    fn version_1_without_pg_and_version_2_with_it() {
        let mut s = Snapshot::for_test(5, "h", &["/pg"], &["pg-base"], Id::default());
        let v1 = s.encode().unwrap();
        assert_eq!(v1[0], 1);
        assert_eq!(Snapshot::decode(&v1, &"s").unwrap(), s);
        s.pg = Some(pg());
        let v2 = s.encode().unwrap();
        assert_eq!(v2[0], 2);
        let back = Snapshot::decode(&v2, &"s").unwrap();
        assert_eq!(back.pg, s.pg);
        assert_eq!(back.version, 2);
        // Version 2 without its part, and version 1 followed by one, are refused.
        let v2_none = crate::format::encode(&Snapshot {
            version: 2,
            pg: None,
            ..s.clone()
        })
        .unwrap();
        assert!(Snapshot::decode(&v2_none, &"s").is_err());
        let mut v1_some = v2.clone();
        v1_some[0] = 1;
        v1_some.pop(); // the last byte (an empty tablespace list) is what decoding adds back
        assert!(Snapshot::decode(&v1_some, &"s").is_err());
    }

    #[test]
    fn fuzz_regression_version_1_whose_tail_completes_a_pg_part() {
        // cargo-fuzz `snapshot`, 2026-12-08: decoded as version 1 with a PostgreSQL part.
        let input = [
            1u8, 0, 1, 0, 0, 0, 0, 25, 1, 122, 0, 1, 0, 0, 43, 58, 0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 1,
            0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1,
            1, 0, 0, 1, 172, 0, 0, 0, 3, 0, 1, 0, 0, 1, 0,
        ];
        if let Ok(s) = Snapshot::decode(&input, &"s") {
            let again = s.encode().unwrap();
            assert_eq!(Snapshot::decode(&again, &"s").unwrap(), s);
        }
    }
}
