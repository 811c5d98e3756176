//! The repository's exclusive lock: only prune and `repair index` take it, so two of them never
//! run at once. Backups, restores, checks and mounts take no lock (design.md §10): they only add
//! immutable objects, and prune's two phases keep them safe.
//!
//! A lock is a sealed object `locks/<id>` ([`Lock`]) naming host, pid and times. The holder
//! refreshes it every [`LockTiming::refresh`] by writing a new object and deleting the old one.
//! A lock is *stale*, and ignored, when it was not refreshed for [`LockTiming::stale`], or at
//! once when its holder is a process of this host that no longer exists. Taking the lock: no
//! other live lock may exist; then ours is written and the listing read again, and if another
//! live lock has appeared we back off (of two written at the same time at least the later one
//! sees the other, so two never both proceed).

use super::Repository;
use super::keys::{current_host, current_user, now_ns};
use crate::backend::FileType;
use crate::crypto::label;
use crate::error::{Error, ErrorKind, Result};
use crate::format::{self, VERSION, lock::Lock};
use crate::id::Id;
use crossbeam_channel::{Sender, bounded};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often a lock is refreshed and when it counts as stale.
#[derive(Debug, Clone, Copy)]
pub struct LockTiming {
    /// Interval between refreshes.
    pub refresh: Duration,
    /// Age (since the last refresh) after which a lock is stale.
    pub stale: Duration,
}

impl Default for LockTiming {
    /// restic's values: refresh every 5 minutes, stale after 30.
    fn default() -> Self {
        LockTiming {
            refresh: Duration::from_secs(5 * 60),
            stale: Duration::from_secs(30 * 60),
        }
    }
}

/// A lock found in the repository.
#[derive(Debug, Clone)]
pub struct LockInfo {
    /// Its object id.
    pub id: Id,
    /// Its content; `None` when it cannot be read (such a lock is treated as stale).
    pub lock: Option<Lock>,
    /// Why it is stale, if it is.
    pub stale: Option<String>,
}

impl LockInfo {
    /// One line describing the holder (host and command are untrusted text).
    pub fn describe(&self) -> String {
        match &self.lock {
            Some(l) => format!(
                "{} (pid {} on {}, user {}, since {})",
                l.command,
                l.pid,
                l.host,
                l.user,
                crate::snapshot::select::format_time(l.created_ns)
            ),
            None => format!("unreadable lock {}", self.id.short()),
        }
    }
}

/// Whether `pid` is a live process of this host (`kill(pid, 0)`: only "no such process" counts
/// as dead; no permission to signal it means it exists).
pub fn process_alive(pid: u32) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if p <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists; no signal is sent.
    let r = unsafe { libc::kill(p, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Why a lock is stale at time `now_ns` on host `host`, or `None` when it is live.
pub fn stale_reason(l: &Lock, now_ns: i64, host: &str, timing: &LockTiming) -> Option<String> {
    let age = now_ns.saturating_sub(l.refreshed_ns);
    if age > i64::try_from(timing.stale.as_nanos()).unwrap_or(i64::MAX) {
        return Some(format!("not refreshed for {} s", age / 1_000_000_000));
    }
    if l.host == host && !process_alive(l.pid) {
        return Some(format!("process {} no longer exists", l.pid));
    }
    None
}

struct State {
    current: Id,
    last_ok: Instant,
    error: Option<String>,
}

/// The exclusive lock, held until dropped (or [`LockGuard::release`]d). A thread refreshes it.
pub struct LockGuard {
    repo: Arc<Repository>,
    state: Arc<Mutex<State>>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    timing: LockTiming,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockGuard")
    }
}

fn lost(why: &str) -> Error {
    Error::new(
        ErrorKind::Locked,
        format!("the repository lock was lost ({why}); stopping before anything is deleted"),
    )
}

impl LockGuard {
    /// Fail unless the lock is still certainly ours: its last refresh succeeded less than half
    /// the stale time ago, and it is still in the repository. Called before every step that
    /// deletes or replaces something.
    pub fn check(&self) -> Result<()> {
        let (current, fresh) = {
            let s = self
                .state
                .lock()
                .map_err(|_| lost("the refresh thread panicked"))?;
            if let Some(e) = &s.error {
                return Err(lost(e));
            }
            (s.current, s.last_ok.elapsed() < self.timing.stale / 2)
        };
        if !fresh {
            return Err(lost("it could not be refreshed in time"));
        }
        if !self
            .repo
            .backend()
            .exists(FileType::Lock, &current.to_hex())?
        {
            return Err(lost("it was removed, by `cairn unlock`?"));
        }
        Ok(())
    }

    /// The id of the lock object written last (it changes at every refresh). Prune reads the
    /// store's clock from its last-modified time (`prune::clock`).
    pub fn current_id(&self) -> Result<Id> {
        self.state
            .lock()
            .map(|s| s.current)
            .map_err(|_| lost("the refresh thread panicked"))
    }

    /// Stop refreshing and remove the lock.
    pub fn release(mut self) -> Result<()> {
        self.stop_and_remove()
    }

    fn stop_and_remove(&mut self) -> Result<()> {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let current = self
            .state
            .lock()
            .map(|s| s.current)
            .map_err(|_| lost("the refresh thread panicked"))?;
        self.repo
            .backend()
            .delete(FileType::Lock, &current.to_hex())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.stop_and_remove();
    }
}

impl Repository {
    fn write_lock(&self, l: &Lock) -> Result<Id> {
        let plain = format::encode(l)?;
        self.save_sealed(FileType::Lock, label::LOCK, &plain)
    }

    /// Every lock in the repository, with whether it is stale.
    pub fn locks(&self, timing: &LockTiming) -> Result<Vec<LockInfo>> {
        let (now, host) = (now_ns(), current_host());
        let mut out = Vec::new();
        for (id, size) in self.backend().list(FileType::Lock)? {
            let read = self
                .load_sealed(FileType::Lock, &id, label::LOCK, Some(size))
                .and_then(|p| Lock::decode(&p, &format!("lock {}", id.short())));
            match read {
                Ok(l) => {
                    let stale = stale_reason(&l, now, &host, timing);
                    out.push(LockInfo {
                        id,
                        lock: Some(l),
                        stale,
                    });
                }
                // Gone between listing and reading: released.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) if e.kind() == ErrorKind::Corrupt => out.push(LockInfo {
                    id,
                    lock: None,
                    stale: Some(e.to_string()),
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Take the exclusive lock for `command`, or fail with [`ErrorKind::Locked`] naming the
    /// holder.
    pub fn lock_exclusive(
        self: &Arc<Self>,
        command: &str,
        timing: LockTiming,
    ) -> Result<LockGuard> {
        let held = |info: &LockInfo| {
            Error::new(
                ErrorKind::Locked,
                format!(
                    "the repository is locked by {}; if that is not running any more, \
                     `cairn unlock` removes the lock (it goes stale by itself {} min after its last refresh)",
                    info.describe(),
                    timing.stale.as_secs() / 60
                ),
            )
        };
        if let Some(l) = self.locks(&timing)?.iter().find(|l| l.stale.is_none()) {
            return Err(held(l));
        }
        let now = now_ns();
        let lock = Lock {
            version: VERSION,
            host: current_host(),
            user: current_user(),
            pid: std::process::id(),
            command: command.to_string(),
            created_ns: now,
            refreshed_ns: now,
        };
        let id = self.write_lock(&lock)?;
        // Two that looked at the same moment: whoever sees another live lock after writing its
        // own backs off. At least the second writer sees the first, so two never both go on;
        // both may back off (each then says the repository is locked, and a retry succeeds).
        let others = self.locks(&timing)?;
        if let Some(r) = others.iter().find(|o| o.id != id && o.stale.is_none()) {
            let _ = self.backend().delete(FileType::Lock, &id.to_hex());
            return Err(held(r));
        }
        let state = Arc::new(Mutex::new(State {
            current: id,
            last_ok: Instant::now(),
            error: None,
        }));
        let (stop, stopped) = bounded::<()>(0);
        let thread = {
            let (repo, state) = (self.clone(), state.clone());
            std::thread::Builder::new()
                .name("cairn-lock".into())
                .spawn(move || {
                    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                        stopped.recv_timeout(timing.refresh)
                    {
                        let Ok(old) = state.lock().map(|s| s.current) else {
                            return;
                        };
                        let fresh = Lock {
                            refreshed_ns: now_ns(),
                            ..lock.clone()
                        };
                        let result = repo.write_lock(&fresh).and_then(|new| {
                            repo.backend().delete(FileType::Lock, &old.to_hex())?;
                            Ok(new)
                        });
                        let Ok(mut s) = state.lock() else { return };
                        match result {
                            Ok(new) => {
                                s.current = new;
                                s.last_ok = Instant::now();
                            }
                            Err(e) => s.error = Some(e.to_string()),
                        }
                    }
                })
                .map_err(|e| Error::io("cannot start the lock refresh thread", e))?
        };
        Ok(LockGuard {
            repo: self.clone(),
            state,
            stop: Some(stop),
            thread: Some(thread),
            timing,
        })
    }

    /// Remove stale locks (all locks with `all`). Returns the locks removed.
    pub fn unlock(&self, all: bool, timing: &LockTiming) -> Result<Vec<LockInfo>> {
        let mut removed = Vec::new();
        for l in self.locks(timing)? {
            if all || l.stale.is_some() {
                self.backend().delete(FileType::Lock, &l.id.to_hex())?;
                removed.push(l);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(host: &str, pid: u32, refreshed_ns: i64) -> Lock {
        Lock {
            version: VERSION,
            host: host.into(),
            user: "u".into(),
            pid,
            command: "prune".into(),
            created_ns: 0,
            refreshed_ns,
        }
    }

    #[test]
    fn staleness_by_age_and_by_dead_process() {
        let t = LockTiming::default();
        let min = 60_000_000_000i64;
        let me = std::process::id();
        // Fresh, live process here: live.
        assert_eq!(
            stale_reason(&lock("here", me, 0), 29 * min, "here", &t),
            None
        );
        // Too old: stale wherever it is.
        assert!(stale_reason(&lock("there", me, 0), 31 * min, "here", &t).is_some());
        // A process of this host that does not exist: stale at once.
        let dead = u32::try_from(libc::pid_t::MAX).unwrap();
        assert!(stale_reason(&lock("here", dead, 0), 1, "here", &t).is_some());
        // The same pid on another host says nothing: live until it ages.
        assert_eq!(stale_reason(&lock("there", dead, 0), 1, "here", &t), None);
        assert!(process_alive(me));
        assert!(!process_alive(0));
    }
}
