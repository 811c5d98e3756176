//! Key files: one per password, each sealing the same master key. Adding, removing or changing
//! a password writes or deletes one small object and never touches data.

use crate::backend::{Backend, FileType};
use crate::crypto::kdf::{self, KdfParams};
use crate::crypto::{MasterKey, Sealer, label, random_bytes};
use crate::error::{Error, ErrorKind, Result};
use crate::format::keyfile::{KeyFile, MasterKeyPayload};
use crate::format::{self, VERSION};
use crate::id::Id;
use bytes::Bytes;

/// A key file as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    /// Its id.
    pub id: Id,
    /// Creation time, ns.
    pub created_ns: i64,
    /// Host that made it.
    pub host: String,
    /// User that made it.
    pub user: String,
}

/// Current user name, best effort.
pub fn current_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            // SAFETY: getuid has no preconditions.
            let uid = unsafe { libc::getuid() };
            uid.to_string()
        })
}

/// This machine's host name, best effort.
pub fn current_host() -> String {
    hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// Now, ns since the epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Seal `master` (of repository `repo_id`) under `password` and store it as a new key file.
pub fn write_key(
    backend: &Backend,
    repo_id: &Id,
    master: &MasterKey,
    password: &[u8],
    kdf_params: KdfParams,
) -> Result<Id> {
    let mut salt = [0u8; 16];
    random_bytes(&mut salt)?;
    let kek = kdf::derive(password, &salt, &kdf_params)?;
    let payload = MasterKeyPayload {
        version: VERSION,
        repository_id: *repo_id,
        encryption: master.encryption,
        id: master.id,
        chunker_seed: master.chunker_seed,
    };
    let plain = zeroize::Zeroizing::new(format::encode(&payload)?);
    let sealed_master = Sealer::new(&kek).seal(label::KEY, &plain)?;
    let kf = KeyFile {
        version: VERSION,
        kdf: kdf_params,
        salt,
        created_ns: now_ns(),
        host: current_host(),
        user: current_user(),
        sealed_master,
    };
    let bytes = format::encode(&kf)?;
    let id = Id::of_stored(&bytes);
    backend.create(FileType::Key, &id.to_hex(), Bytes::from(bytes))?;
    Ok(id)
}

/// Read and decode a key file, checking its name.
pub fn read_key_file(backend: &Backend, id: &Id) -> Result<KeyFile> {
    let what = format!("key {}", id.short());
    let bytes = backend.get(FileType::Key, &id.to_hex())?;
    if Id::of_stored(&bytes) != *id {
        return Err(Error::corrupt(format!(
            "{what} is corrupt: content does not match its name"
        )));
    }
    KeyFile::decode(&bytes, &what)
}

/// Try `password` on one key file.
pub fn try_key(kf: &KeyFile, password: &[u8]) -> Result<Option<(Id, MasterKey)>> {
    let kek = kdf::derive(password, &kf.salt, &kf.kdf)?;
    let plain = match Sealer::new(&kek).open(label::KEY, &kf.sealed_master, &"key") {
        Ok(p) => zeroize::Zeroizing::new(p),
        Err(_) => return Ok(None),
    };
    let p: MasterKeyPayload = format::decode(&plain, &"key payload")?;
    Ok(Some((
        p.repository_id,
        MasterKey {
            encryption: p.encryption,
            id: p.id,
            chunker_seed: p.chunker_seed,
        },
    )))
}

/// Find the key file `password` opens and whose master key `accept`s (opens this repository's
/// config: a key left by an interrupted `init` of another repository is skipped). Returns
/// (key id, repository id, master key).
pub fn unlock(
    backend: &Backend,
    password: &[u8],
    accept: &dyn Fn(&Id, &MasterKey) -> bool,
) -> Result<(Id, Id, MasterKey)> {
    let keys = backend.list(FileType::Key)?;
    if keys.is_empty() {
        return Err(Error::not_found(format!(
            "{} is not a cairn repository (no keys)",
            backend.location()
        )));
    }
    let mut opened = false;
    let mut corrupt: Vec<String> = Vec::new();
    for (id, _) in keys {
        let kf = match read_key_file(backend, &id) {
            Ok(k) => k,
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                corrupt.push(id.short());
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some((repo, mk)) = try_key(&kf, password)? {
            if accept(&repo, &mk) {
                return Ok((id, repo, mk));
            }
            opened = true;
        }
    }
    if opened {
        return Err(Error::corrupt(
            "config is corrupt: the password opens a key, but no key opens the config",
        ));
    }
    if !corrupt.is_empty() {
        return Err(Error::crypto(format!(
            "wrong password, or its key file is corrupt: no intact key opens with it (corrupt: key {})",
            corrupt.join(", key ")
        )));
    }
    Err(Error::crypto(
        "wrong password: no key in the repository opens with it",
    ))
}

/// All key files.
pub fn list(backend: &Backend) -> Result<Vec<KeyInfo>> {
    let mut out = Vec::new();
    for (id, _) in backend.list(FileType::Key)? {
        let kf = read_key_file(backend, &id)?;
        out.push(KeyInfo {
            id,
            created_ns: kf.created_ns,
            host: kf.host,
            user: kf.user,
        });
    }
    out.sort_by_key(|k| k.created_ns);
    Ok(out)
}
