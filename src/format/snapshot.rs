//! Snapshots `snapshots/<id>`: one backup's root tree and its description.

use crate::error::Result;
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
        }
    }

    /// Decode a snapshot's plaintext.
    pub fn decode(bytes: &[u8], what: &dyn std::fmt::Display) -> Result<Snapshot> {
        super::decode(bytes, what)
    }
    /// Paths as display strings.
    pub fn path_strings(&self) -> Vec<String> {
        self.paths
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }
}
