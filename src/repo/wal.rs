//! The WAL archive's objects (`wal/<system id>/<file name>`, format.md §13a): seal and store a
//! WAL file create-only, read its header alone or the whole file back, list and delete. What
//! the files mean (timelines, base backups, retention) is `pg/`'s business.
//!
//! A [`WalArchive`] needs the store and the keys, not the local cache: the WAL commands that
//! PostgreSQL runs once per file open it without RocksDB ([`KeySession`]), which halves what a
//! call costs; `prune`, `check` and `pg restore` get one from their [`Repository`].

use super::Repository;
use crate::backend::{Backend, FileType};
use crate::crypto::label;
use crate::crypto::{MasterKey, Sealer};
use crate::error::{Error, ErrorKind, Result};
use crate::format::blob;
use crate::format::config::Config;
use crate::format::wal::{self, WAL_VERSION, WalHeader, WalSummary};
use bytes::Bytes;

/// The outcome of storing a WAL file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalStored {
    /// Written now; bytes stored.
    Stored(u64),
    /// The same content was stored already (a retried push).
    AlreadyStored,
}

/// One object of the WAL archive, as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalObject {
    /// The cluster's system identifier.
    pub system_identifier: u64,
    /// The file's name.
    pub name: String,
    /// Stored size.
    pub size: u64,
    /// Last-modified time by the store's clock, ns since the epoch.
    pub modified_ns: i64,
}

/// Whether `name` can be a WAL file name: letters, digits and dots, at most 64 bytes, not
/// starting with a dot (it becomes part of an object's path).
pub fn plausible_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
}

fn object(sysid: u64, name: &str) -> Result<String> {
    if !plausible_name(name) {
        return Err(Error::usage(format!("{name:?} is not a WAL file name")));
    }
    Ok(format!("{sysid}/{name}"))
}

/// The zstd level of WAL files: 1, or the repository's level when that is lower (0 = none).
/// WAL must keep up with the server: on pgbench's WAL level 1 compresses 1.6× faster than 3
/// (723 against 451 MB/s a core) for 25 % more bytes (13.8× against 17.3×), docs/performance.md.
fn wal_level(repository_level: i32) -> i32 {
    repository_level.min(1)
}

/// The WAL archive of a repository: the store and the keys it needs.
pub struct WalArchive<'r> {
    backend: &'r Backend,
    master: &'r MasterKey,
    sealer: &'r Sealer,
    level: i32,
}

/// A repository opened with its keys but without its local cache: enough for the WAL archive.
pub struct KeySession {
    backend: Backend,
    master: MasterKey,
    sealer: Sealer,
    config: Config,
}

impl KeySession {
    /// Open the repository at `backend` with `password` (the key hint in `cache_dir` spares
    /// trying every key file; no database is opened).
    pub fn open(
        backend: Backend,
        password: &[u8],
        cache_dir: &std::path::Path,
    ) -> Result<KeySession> {
        let (_, master, config) = Repository::unlock_config(&backend, password, cache_dir)?;
        let sealer = master.sealer();
        Ok(KeySession {
            backend,
            master,
            sealer,
            config,
        })
    }

    /// The WAL archive.
    pub fn wal(&self) -> WalArchive<'_> {
        WalArchive::over(&self.backend, &self.master, &self.sealer, &self.config)
    }

    /// How many requests the store takes at once.
    pub fn connections(&self) -> usize {
        self.backend.connections()
    }
}

impl Repository {
    /// The WAL archive.
    pub fn wal(&self) -> WalArchive<'_> {
        WalArchive::over(&self.backend, &self.master, &self.sealer, &self.config)
    }
}

impl<'r> WalArchive<'r> {
    fn over(
        backend: &'r Backend,
        master: &'r MasterKey,
        sealer: &'r Sealer,
        config: &Config,
    ) -> WalArchive<'r> {
        WalArchive {
            backend,
            master,
            sealer,
            level: wal_level(config.compression_level),
        }
    }
}

impl WalArchive<'_> {
    fn sealer(&self) -> &Sealer {
        self.sealer
    }

    fn blob_id(&self, plain: &[u8]) -> crate::id::Id {
        self.master.blob_id(plain)
    }

    /// Store WAL file `name` of cluster `sysid` (content `data`, records summarized as
    /// `summary`), create-only. Storing the same content again is [`WalStored::AlreadyStored`];
    /// other content under a stored name is an `AlreadyExists` error, and the stored file stays.
    pub fn store(
        &self,
        sysid: u64,
        name: &str,
        data: &[u8],
        summary: Option<WalSummary>,
    ) -> Result<WalStored> {
        let obj = object(sysid, name)?;
        let header = WalHeader {
            version: WAL_VERSION,
            system_identifier: sysid,
            name: name.to_string(),
            size: data.len() as u64,
            hash: self.blob_id(data),
            summary,
        };
        let plain_header = crate::format::encode(&header)?;
        let sealed_header = self
            .sealer()
            .seal(&wal::aad(label::WAL_HEADER, &obj), &plain_header)?;
        let body = blob::encode(data, self.level)?;
        let sealed_body = self
            .sealer()
            .seal(&wal::aad(label::WAL_BODY, &obj), &body)?;
        let bytes = wal::frame(&sealed_header, &sealed_body)?;
        let len = bytes.len() as u64;
        match self.backend.create(FileType::Wal, &obj, Bytes::from(bytes)) {
            Ok(()) => Ok(WalStored::Stored(len)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let there = self.header(sysid, name)?.ok_or(e)?;
                if there.hash == header.hash && there.size == header.size {
                    Ok(WalStored::AlreadyStored)
                } else {
                    Err(Error::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "WAL file {name} is already archived with different content ({} bytes stored, {} bytes offered): refusing to replace it — is a second cluster with the same system identifier archiving into this repository?",
                            there.size, header.size
                        ),
                    ))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The header of WAL file `name` of cluster `sysid` (one short ranged read), `None` when
    /// it is not stored.
    pub fn header(&self, sysid: u64, name: &str) -> Result<Option<WalHeader>> {
        let obj = object(sysid, name)?;
        let what = format!("WAL file {obj}");
        let first = match self
            .backend
            .get_range(FileType::Wal, &obj, 0..wal::HEADER_PROBE)
        {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            // An object shorter than the probe: read it whole (a short answer is "corrupt").
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                match self.backend.get(FileType::Wal, &obj) {
                    Ok(b) => b,
                    Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let len = u64::from(wal::header_len(&first, &what)?);
        let sealed = if 4 + len <= first.len() as u64 {
            first.slice(4..4 + len as usize)
        } else {
            self.backend.get_range(FileType::Wal, &obj, 4..4 + len)?
        };
        let plain = self
            .sealer()
            .open(&wal::aad(label::WAL_HEADER, &obj), &sealed, &what)?;
        let h = WalHeader::decode(&plain, &what)?;
        if h.name != name || h.system_identifier != sysid {
            return Err(Error::corrupt(format!(
                "{what} is corrupt: it names {}/{}",
                h.system_identifier, h.name
            )));
        }
        Ok(Some(h))
    }

    /// WAL file `name` of cluster `sysid`, checked against its header's size and keyed hash;
    /// `None` when it is not stored.
    pub fn read(&self, sysid: u64, name: &str) -> Result<Option<(WalHeader, Vec<u8>)>> {
        let obj = object(sysid, name)?;
        let what = format!("WAL file {obj}");
        let bytes = match self.backend.get(FileType::Wal, &obj) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let (sh, sb) = wal::split(&bytes, &what)?;
        let plain = self
            .sealer()
            .open(&wal::aad(label::WAL_HEADER, &obj), sh, &what)?;
        let h = WalHeader::decode(&plain, &what)?;
        if h.name != name || h.system_identifier != sysid {
            return Err(Error::corrupt(format!(
                "{what} is corrupt: it names {}/{}",
                h.system_identifier, h.name
            )));
        }
        let size = usize::try_from(h.size)
            .map_err(|_| Error::corrupt(format!("{what} is corrupt: size {}", h.size)))?;
        let body = self
            .sealer()
            .open(&wal::aad(label::WAL_BODY, &obj), sb, &what)?;
        let data = blob::decode(&body, size, &what)?;
        if self.blob_id(&data) != h.hash {
            return Err(Error::corrupt(format!(
                "{what} is corrupt: content does not match its hash"
            )));
        }
        Ok(Some((h, data)))
    }

    /// Every object of the WAL archive, sorted by system identifier and name. Objects whose
    /// path is not `<decimal system id>/<plausible name>` are left out.
    pub fn list(&self) -> Result<Vec<WalObject>> {
        let mut out: Vec<WalObject> = self
            .backend
            .list_names(FileType::Wal)?
            .into_iter()
            .filter_map(|(path, size, modified_ns)| {
                let (sys, name) = path.split_once('/')?;
                let system_identifier: u64 = sys.parse().ok()?;
                (plausible_name(name) && system_identifier.to_string() == sys).then(|| WalObject {
                    system_identifier,
                    name: name.to_string(),
                    size,
                    modified_ns,
                })
            })
            .collect();
        out.sort_by(|a, b| (a.system_identifier, &a.name).cmp(&(b.system_identifier, &b.name)));
        Ok(out)
    }

    /// Delete WAL file `name` of cluster `sysid` (prune, under its lock; missing is fine).
    pub(crate) fn delete(&self, sysid: u64, name: &str) -> Result<()> {
        self.backend.delete(FileType::Wal, &object(sysid, name)?)
    }
}
