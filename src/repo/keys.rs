//! Key files: one per password, each sealing the same master key. Adding, removing or changing
//! a password writes or deletes one small object and never touches data.
//!
//! Key files are read before anything is authenticated, so unlocking bounds what a hostile one
//! can cost: files larger than [`MAX_KEY_FILE_SIZE`] are skipped by their listed size without
//! being fetched, KDF parameters outside [`KdfParams::validate`] are never run, unreadable or
//! corrupt files are skipped, the key that opened last time on this machine is tried first
//! ([`KeyHint`]), and the others in order of cost, cheapest first.

use crate::backend::{Backend, FileType};
use crate::crypto::kdf::{self, KdfParams};
use crate::crypto::{MasterKey, Sealer, label, random_bytes};
use crate::error::{Error, ErrorKind, Result};
use crate::format::keyfile::{
    KEY_FILE_VERSION, KeyFile, MAX_KEY_FILE_SIZE, MasterKeyPayload, clip_name,
};
use crate::id::Id;
use bytes::Bytes;
use std::path::{Path, PathBuf};

/// A key file as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    /// Its id.
    pub id: Id,
    /// Creation time, ns. Unauthenticated.
    pub created_ns: i64,
    /// Host that made it. Unauthenticated, untrusted text: escape it before printing.
    pub host: String,
    /// User that made it. Unauthenticated, untrusted text: escape it before printing.
    pub user: String,
    /// Why the file cannot be used (too large, unreadable, corrupt, old format); `None` for a
    /// key file that decodes. The other fields are empty then.
    pub problem: Option<String>,
}

/// Current user name, best effort.
pub fn current_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            let uid = crate::sys::user::uid();
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

/// Check what a new key needs before anything is written: KDF parameters every reader accepts
/// (plus the floor for new keys), and a non-empty password.
pub fn check_new_key(password: &[u8], kdf_params: &KdfParams) -> Result<()> {
    kdf_params.validate_new()?;
    if password.is_empty() {
        return Err(Error::usage("empty password refused"));
    }
    Ok(())
}

/// Seal `master` (of repository `repo_id`) under `password` and store it as a new key file.
/// Refuses (before writing) parameters or a password [`check_new_key`] refuses.
pub fn write_key(
    backend: &Backend,
    repo_id: &Id,
    master: &MasterKey,
    password: &[u8],
    kdf_params: KdfParams,
) -> Result<Id> {
    check_new_key(password, &kdf_params)?;
    let mut salt = [0u8; 16];
    random_bytes(&mut salt)?;
    let kek = kdf::derive(password, &salt, &kdf_params)?;
    let plain = {
        let payload = MasterKeyPayload {
            version: KEY_FILE_VERSION,
            repository_id: *repo_id,
            encryption: master.encryption,
            id: master.id,
            chunker: master.chunker,
        };
        payload.encode()?
    };
    let sealed_master = Sealer::new(&kek).seal(label::KEY, &plain)?;
    let kf = KeyFile {
        version: KEY_FILE_VERSION,
        kdf: kdf_params,
        salt,
        created_ns: now_ns(),
        host: clip_name(&current_host()),
        user: clip_name(&current_user()),
        sealed_master,
    };
    let bytes = kf.encode()?;
    let id = Id::of_stored(&bytes);
    backend.create(FileType::Key, &id.to_hex(), Bytes::from(bytes))?;
    Ok(id)
}

/// Read and decode a key file, checking its size and name.
pub fn read_key_file(backend: &Backend, id: &Id) -> Result<KeyFile> {
    let size = backend.size(FileType::Key, &id.to_hex())?;
    read_key_file_sized(backend, id, size)
}

/// Read and decode a key file whose listed size is `size`: a file larger than
/// [`MAX_KEY_FILE_SIZE`] is refused as corrupt without being fetched.
pub fn read_key_file_sized(backend: &Backend, id: &Id, size: u64) -> Result<KeyFile> {
    let bytes = get_checked(backend, id, size)?;
    KeyFile::decode(&bytes, &format!("key {}", id.short()))
}

/// The bytes of a key file, bounded in size and checked against its name.
fn get_checked(backend: &Backend, id: &Id, size: u64) -> Result<Bytes> {
    let what = format!("key {}", id.short());
    if size > MAX_KEY_FILE_SIZE {
        return Err(too_large(&what, size));
    }
    let bytes = backend.get(FileType::Key, &id.to_hex())?;
    if bytes.len() as u64 > MAX_KEY_FILE_SIZE {
        return Err(too_large(&what, bytes.len() as u64));
    }
    if Id::of_stored(&bytes) != *id {
        return Err(Error::corrupt(format!(
            "{what} is corrupt: content does not match its name"
        )));
    }
    Ok(bytes)
}

fn too_large(what: &str, size: u64) -> Error {
    Error::corrupt(format!(
        "{what} is corrupt: {size} bytes, more than a key file may have ({MAX_KEY_FILE_SIZE})"
    ))
}

/// Try `password` on one key file: `None` if it does not open. Returns the repository id and
/// master key it seals.
pub fn try_key(kf: &KeyFile, password: &[u8]) -> Result<Option<(Id, MasterKey)>> {
    let kek = kdf::derive(password, &kf.salt, &kf.kdf)?;
    let plain = match Sealer::new(&kek).open(label::KEY, &kf.sealed_master, &"key") {
        Ok(p) => zeroize::Zeroizing::new(p),
        Err(_) => return Ok(None),
    };
    let p = MasterKeyPayload::decode(&plain)?;
    let mut mk = MasterKey {
        encryption: [0; 32],
        id: [0; 32],
        chunker: [0; 32],
    };
    mk.encryption.copy_from_slice(&p.encryption);
    mk.id.copy_from_slice(&p.id);
    mk.chunker.copy_from_slice(&p.chunker);
    Ok(Some((p.repository_id, mk)))
}

/// Why a listed key file was not tried.
struct Skipped {
    id: Id,
    reason: String,
    /// A key file of the withdrawn version 1.
    legacy: bool,
    /// Skipped for a reason other than its content (storage error).
    backend: Option<Error>,
}

/// Fetch and decode one listed key file, or say why it is skipped.
fn fetch(backend: &Backend, id: Id, size: u64) -> std::result::Result<KeyFile, Skipped> {
    let skip = |reason: String, legacy, backend| Skipped {
        id,
        reason,
        legacy,
        backend,
    };
    if size > MAX_KEY_FILE_SIZE {
        return Err(skip(format!("{size} bytes"), false, None));
    }
    let bytes = match get_checked(backend, &id, size) {
        Ok(b) => b,
        Err(e) => {
            return Err(match e.kind() {
                ErrorKind::NotFound => skip("not found".into(), false, None),
                ErrorKind::Corrupt => skip("corrupt".into(), false, None),
                _ => skip("unreadable".into(), false, Some(e)),
            });
        }
    };
    if KeyFile::is_legacy(&bytes) {
        return Err(skip("format version 1".into(), true, None));
    }
    KeyFile::decode(&bytes, &format!("key {}", id.short()))
        .map_err(|_| skip("corrupt".into(), false, None))
}

/// Find the key file `password` opens and whose master key `accept`s (opens this repository's
/// config: a key left by an interrupted `init` of another repository is skipped). `first` is
/// tried first when it is listed (the key that opened last time: [`KeyHint`]); then the other
/// key files, cheapest KDF first. Returns (key id, repository id, master key).
pub fn unlock(
    backend: &Backend,
    password: &[u8],
    first: Option<Id>,
    accept: &dyn Fn(&Id, &MasterKey) -> bool,
) -> Result<(Id, Id, MasterKey)> {
    let mut listed = backend.list(FileType::Key)?;
    if listed.is_empty() {
        return Err(Error::not_found(format!(
            "{} is not a cairn repository (no keys)",
            backend.location()
        )));
    }
    // The hint first, on its own: in the usual case no other key file is even fetched.
    let hinted = first
        .and_then(|h| listed.iter().position(|(id, _)| *id == h))
        .map(|pos| listed.remove(pos));
    let mut skipped: Vec<Skipped> = Vec::new();
    let mut opened = false;
    let mut tried = 0usize;
    let mut attempt =
        |id: Id, kf: &KeyFile, skipped: &mut Vec<Skipped>| -> Option<(Id, MasterKey)> {
            tried += 1;
            match try_key(kf, password) {
                Ok(Some((repo, mk))) => {
                    if accept(&repo, &mk) {
                        return Some((repo, mk));
                    }
                    opened = true;
                    None
                }
                Ok(None) => None,
                Err(e) => {
                    skipped.push(Skipped {
                        id,
                        reason: e.to_string(),
                        legacy: false,
                        backend: None,
                    });
                    None
                }
            }
        };
    if let Some((id, size)) = hinted {
        match fetch(backend, id, size) {
            Ok(kf) => {
                if let Some((repo, mk)) = attempt(id, &kf, &mut skipped) {
                    return Ok((id, repo, mk));
                }
            }
            Err(s) => skipped.push(s),
        }
    }
    let mut files: Vec<(Id, KeyFile)> = Vec::with_capacity(listed.len());
    for (id, size) in listed {
        match fetch(backend, id, size) {
            Ok(kf) => files.push((id, kf)),
            Err(s) => skipped.push(s),
        }
    }
    files.sort_by_key(|(id, kf)| (kf.kdf.cost(), *id));
    for (id, kf) in &files {
        if let Some((repo, mk)) = attempt(*id, kf, &mut skipped) {
            return Ok((*id, repo, mk));
        }
    }
    if opened {
        return Err(Error::corrupt(
            "config is corrupt: the password opens a key, but no key opens the config",
        ));
    }
    if tried == 0 {
        if let Some(e) = skipped.iter_mut().find_map(|s| s.backend.take()) {
            return Err(e);
        }
        if let Some(s) = skipped.iter().find(|s| s.legacy) {
            return Err(Error::crypto(format!(
                "key {} has format version 1 (a development build's 64-bit chunker seed); this \
                 cairn reads version {KEY_FILE_VERSION} only: re-create the repository",
                s.id.short()
            )));
        }
    }
    if !skipped.is_empty() {
        const SHOWN: usize = 5;
        let mut list: Vec<String> = skipped
            .iter()
            .take(SHOWN)
            .map(|s| format!("key {} ({})", s.id.short(), s.reason))
            .collect();
        if skipped.len() > SHOWN {
            list.push(format!("{} more", skipped.len() - SHOWN));
        }
        return Err(Error::crypto(format!(
            "wrong password, or its key file is corrupt: no intact key opens with it (skipped: {})",
            list.join(", ")
        )));
    }
    Err(Error::crypto(
        "wrong password: no key in the repository opens with it",
    ))
}

/// All key files, sorted by creation time; the ones that cannot be read are listed with their
/// [`problem`](KeyInfo::problem) (and not fetched at all when they are too large).
pub fn list(backend: &Backend) -> Result<Vec<KeyInfo>> {
    let mut out = Vec::new();
    for (id, size) in backend.list(FileType::Key)? {
        out.push(match fetch(backend, id, size) {
            Ok(kf) => KeyInfo {
                id,
                created_ns: kf.created_ns,
                host: kf.host,
                user: kf.user,
                problem: None,
            },
            Err(s) => KeyInfo {
                id,
                created_ns: 0,
                host: String::new(),
                user: String::new(),
                problem: Some(s.reason),
            },
        });
    }
    out.sort_by_key(|k| k.created_ns);
    Ok(out)
}

/// The key id that opened a repository last time on this machine: a small file under the cache
/// folder, named by a hash of the repository's location (the repository id, which names the
/// cache proper, is unknown before unlocking). Only an ordering hint: it is never trusted for
/// anything but which key file to try first, and every error reading or writing it is ignored.
#[derive(Debug, Clone)]
pub struct KeyHint {
    path: PathBuf,
}

impl KeyHint {
    /// The hint for the repository at `location` under the cache folder `cache_dir`.
    pub fn new(cache_dir: &Path, location: &str) -> KeyHint {
        // A local path is hashed in its canonical form, so `repo` and `./repo` share a hint.
        let canonical = if location.contains("://") {
            None
        } else {
            std::fs::canonicalize(location).ok()
        };
        let mut h = blake3::Hasher::new_derive_key("cairn 2026-11 key hint location v1");
        match &canonical {
            Some(p) => h.update(p.as_os_str().as_encoded_bytes()),
            None => h.update(location.as_bytes()),
        };
        let name = hex::encode(&h.finalize().as_bytes()[..16]);
        KeyHint {
            path: cache_dir.join("key-hints").join(name),
        }
    }

    /// The remembered key id, if any.
    pub fn get(&self) -> Option<Id> {
        let text = std::fs::read(&self.path).ok()?;
        if text.len() > 128 {
            return None;
        }
        Id::from_hex(std::str::from_utf8(&text).ok()?.trim()).ok()
    }

    /// Remember `id` (best effort; nothing is written when it is already remembered).
    pub fn set(&self, id: &Id) {
        if self.get() == Some(*id) {
            return;
        }
        let _ = self.write(id);
    }

    fn write(&self, id: &Id) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let tmp = self
            .path
            .with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, format!("{}\n", id.to_hex()))?;
        std::fs::rename(&tmp, &self.path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_round_trip_and_garbage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let h = KeyHint::new(dir.path(), "file:///nowhere/repo");
        assert_eq!(h.get(), None);
        let id = Id([0x42; 32]);
        h.set(&id);
        assert_eq!(h.get(), Some(id));
        assert_eq!(
            KeyHint::new(dir.path(), "file:///nowhere/repo").get(),
            Some(id)
        );
        assert_eq!(KeyHint::new(dir.path(), "file:///other").get(), None);
        std::fs::write(&h.path, b"not hex").unwrap();
        assert_eq!(h.get(), None);
        std::fs::write(&h.path, vec![b'a'; 4096]).unwrap();
        assert_eq!(h.get(), None);
    }

    #[test]
    fn new_keys_are_checked_before_anything_else() {
        let ok = KdfParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 4,
        };
        assert!(check_new_key(b"pw", &ok).is_ok());
        assert!(check_new_key(b"", &ok).is_err());
        for bad in [
            KdfParams {
                iterations: 65,
                ..ok
            },
            KdfParams {
                memory_kib: (1 << 20) + 1,
                ..ok
            },
            KdfParams {
                memory_kib: 512,
                ..ok
            },
        ] {
            assert_eq!(
                check_new_key(b"pw", &bad).unwrap_err().kind(),
                ErrorKind::Usage
            );
        }
    }
}
