//! The few facts cairn reads from a data directory's `global/pg_control` without a server:
//! the system identifier (its first eight bytes, in the machine's byte order).

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The system identifier of the cluster in `pgdata`.
pub fn system_identifier(pgdata: &Path) -> Result<u64> {
    let path = pgdata.join("global").join("pg_control");
    let bytes = std::fs::read(&path).map_err(|e| {
        Error::io(
            format!(
                "cannot read {} (is {} a PostgreSQL data directory?)",
                path.display(),
                pgdata.display()
            ),
            e,
        )
    })?;
    let first: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::corrupt(format!("{} is truncated", path.display())))?;
    Ok(u64::from_ne_bytes(first))
}

/// The data directory a WAL file path given by PostgreSQL belongs to: `pg_wal/NAME` relative
/// to the working directory (which PostgreSQL sets to the data directory), or an absolute path
/// whose folder is a `pg_wal`.
pub fn data_dir_of(wal_path: &Path) -> PathBuf {
    let dir = wal_path.parent().unwrap_or(Path::new(""));
    if dir.file_name().is_some_and(|n| n == "pg_wal") {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => return p.to_path_buf(),
            _ => {}
        }
    }
    PathBuf::from(".")
}
