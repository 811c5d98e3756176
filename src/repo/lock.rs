//! The repository's exclusive lock: only prune and the repairs take it, so two of them never
//! run at once. Backups, restores, checks and mounts take no lock (design.md §10): they only add
//! immutable objects, and prune's two phases keep them safe.
//!
//! A lock is a sealed object `locks/<id>` ([`Lock`]) naming host, pid and times. The holder
//! refreshes it every [`LockTiming::refresh`] by writing a new object and deleting the old one.
//! A lock is *stale*, and ignored, when it was not refreshed for [`LockTiming::stale`] both by
//! the time written in it and by the store's last-modified time of its object, or at once when
//! its holder is a process of this host that no longer exists. Taking the lock: no other live
//! lock may exist; then ours is written and the listing read again, and if another live lock
//! has appeared we back off (of two written at the same time at least the later one sees the
//! other, so two never both proceed).
//!
//! Holding it: the lock can be lost (`cairn unlock --remove-all`, or another host taking it
//! for stale after this machine was suspended). The holder notices, and never writes it again:
//! each refresh and each [`LockGuard::check`] first looks at its own age (by a clock that counts
//! suspend, [`boot_time`]), then at whether its object is still there, then at whether another
//! live lock exists. Once lost, every later check fails.

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
use std::time::Duration;

/// How often a lock is refreshed and when it counts as stale.
#[derive(Debug, Clone, Copy)]
pub struct LockTiming {
    /// Interval between refreshes.
    pub refresh: Duration,
    /// Age (since the last refresh) after which a lock is stale.
    pub stale: Duration,
}

impl Default for LockTiming {
    /// restic's values: refresh every 5 minutes, stale after 30. Tests of the binary shorten
    /// the refresh interval with `CAIRN_TEST_LOCK_REFRESH_MS` (read only with the `test-hooks`
    /// feature).
    fn default() -> Self {
        let refresh = Duration::from_secs(5 * 60);
        #[cfg(feature = "test-hooks")]
        let refresh = std::env::var("CAIRN_TEST_LOCK_REFRESH_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|ms| *ms > 0)
            .map_or(refresh, Duration::from_millis);
        LockTiming {
            refresh,
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
                crate::time::format_time(l.created_ns)
            ),
            None => format!("unreadable lock {}", self.id.short()),
        }
    }
}

/// Whether `pid` is a live process of this host (`kill(pid, 0)`: only "no such process" counts
/// as dead; no permission to signal it means it exists).
pub fn process_alive(pid: u32) -> bool {
    crate::sys::process::process_alive(pid)
}

/// Time since boot, *including* time the machine was suspended: `CLOCK_BOOTTIME` on Linux
/// (elsewhere `CLOCK_MONOTONIC`, which counts sleep on macOS). `Instant` is `CLOCK_MONOTONIC`,
/// which on Linux stops during suspend: a laptop that slept 40 minutes mid-prune would wake
/// believing its lock fresh while other hosts, going by the clock on the wall, took it for
/// stale.
pub fn boot_time() -> Duration {
    match crate::sys::process::boot_clock() {
        Some(d) => d,
        // Cannot happen for these clocks; a frozen clock would only make checks stricter
        // nowhere, so count from the first call instead.
        _ => {
            static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            START.get_or_init(std::time::Instant::now).elapsed()
        }
    }
}

/// The two clocks a lock's age is read against: this host's wall clock (for the time written
/// in the lock) and the store's (for its object's last-modified time), both ns since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// This host's wall clock.
    pub local_ns: i64,
    /// The store's clock: estimated from the last-modified time of an object we just wrote,
    /// or this host's wall clock when there is none.
    pub store_ns: i64,
}

impl Now {
    /// Both clocks read from this host's wall clock.
    pub fn local() -> Now {
        let t = now_ns();
        Now {
            local_ns: t,
            store_ns: t,
        }
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Why lock `l`, whose object the store last modified at `modified_ns`, is stale at `now` on
/// host `host`, or `None` when it is live. Stale by age only when it is old by *both* clocks:
/// the time written in it against ours, and its object's time against the store's. So neither
/// a holder whose clock is behind nor a judge whose clock is ahead takes a live lock for stale
/// (a store that gives no time, `modified_ns` 0, leaves only the written time).
pub fn stale_reason(
    l: &Lock,
    modified_ns: i64,
    now: Now,
    host: &str,
    timing: &LockTiming,
) -> Option<String> {
    let stale = nanos(timing.stale);
    let age = now.local_ns.saturating_sub(l.refreshed_ns);
    let stored_age = now.store_ns.saturating_sub(modified_ns);
    if age > stale && stored_age > stale {
        return Some(format!(
            "not refreshed for {} s, and its object is {} s old",
            age / 1_000_000_000,
            stored_age / 1_000_000_000
        ));
    }
    if l.host == host && !process_alive(l.pid) {
        return Some(format!("process {} no longer exists", l.pid));
    }
    None
}

/// Why the holder's own lock may no longer be its own by age: its last refresh began at boot
/// time `written`, and at boot time `now` half the stale time or more has passed (time asleep
/// included), so another host may already take it for stale. `None` while it is fresh.
pub fn overdue(written: Duration, now: Duration, timing: &LockTiming) -> Option<String> {
    let since = now.saturating_sub(written);
    (since >= timing.stale / 2).then(|| {
        format!(
            "it was not refreshed for {} s (was this machine suspended?), and another process may \
             have taken it for stale",
            since.as_secs()
        )
    })
}

/// The store's clock, learnt from one of our own lock objects: its last-modified time and the
/// boot time when its write had completed (so the estimate is never ahead of the store).
#[derive(Debug, Clone, Copy)]
struct StoreClock {
    modified_ns: i64,
    boot: Duration,
}

impl StoreClock {
    /// From a listing: the last-modified time of our object `id`, written by boot time `boot`
    /// (`None` when it is not listed or the store gives no time).
    fn from_listing(listing: &[(Id, u64, i64)], id: &Id, boot: Duration) -> Option<StoreClock> {
        listing
            .iter()
            .find(|(i, _, m)| i == id && *m > 0)
            .map(|(_, _, m)| StoreClock {
                modified_ns: *m,
                boot,
            })
    }

    /// Both clocks now, the store's estimated from this one.
    fn now(this: Option<StoreClock>) -> Now {
        let local = Now::local();
        match this {
            Some(c) => Now {
                store_ns: c
                    .modified_ns
                    .saturating_add(nanos(boot_time().saturating_sub(c.boot))),
                ..local
            },
            None => local,
        }
    }
}

/// Listings `unlock` reads at most.
const UNLOCK_ROUNDS: usize = 10;

/// Why the lock was lost when its object is gone.
const REMOVED: &str = "its object was removed by someone else (`cairn unlock --remove-all`?)";

struct State {
    /// Our lock objects that may still be in the repository; the last is the current one.
    mine: Vec<Id>,
    /// Boot time when the write of the current object began.
    written: Duration,
    /// The store's clock, from the current object.
    store: Option<StoreClock>,
    /// Why the lock is lost. Once set, the lock is never refreshed again and every check fails.
    error: Option<String>,
}

impl State {
    fn current(&self) -> Option<Id> {
        self.mine.last().copied()
    }
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
        format!(
            "the repository lock was lost: {why}; stopped before changing anything more \
             (running the command again finishes the job)"
        ),
    )
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> Error {
    lost("the lock's refresh thread panicked")
}

impl LockGuard {
    /// Fail unless the lock is still certainly ours: its last refresh began less than half the
    /// stale time ago (by [`boot_time`], so time asleep counts), its object is still in the
    /// repository (one `head`), and no other live lock exists (one listing of `locks/`; other
    /// holders' objects are read only when there are any). Called before every step that
    /// deletes or replaces something, and between batches of deletes. A loss found here is
    /// remembered: later checks fail too, and the refresh thread stops.
    pub fn check(&self) -> Result<()> {
        let mut s = self.state.lock().map_err(poisoned)?;
        if let Some(e) = &s.error {
            return Err(lost(e));
        }
        let why = match verify(&self.repo, &s, &self.timing)? {
            None => return Ok(()),
            Some(why) => why,
        };
        s.error = Some(why.clone());
        abandon(&self.repo, &mut s);
        Err(lost(&why))
    }

    /// Both clocks now, the store's estimated from the last-modified time of the lock object
    /// written last (advanced by the boot time since): `None` when the store gives no time.
    /// Prune judges ages by it (`prune::clock`). `Err` when the lock is lost.
    pub fn store_now(&self) -> Result<Option<Now>> {
        let s = self
            .state
            .lock()
            .map_err(|_| lost("the refresh thread panicked"))?;
        if let Some(why) = &s.error {
            return Err(lost(why));
        }
        Ok(s.store.map(|c| StoreClock::now(Some(c))))
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
        // Only our own objects: after a loss, whoever holds the lock now keeps theirs.
        let mut s = self.state.lock().map_err(poisoned)?;
        while let Some(id) = s.mine.first().copied() {
            self.repo.backend().delete(FileType::Lock, &id.to_hex())?;
            s.mine.remove(0);
        }
        Ok(())
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.stop_and_remove();
    }
}

/// After a loss: our objects no longer hold the lock, and left there they would keep others
/// out; delete them now (what cannot be deleted is tried again on release).
fn abandon(repo: &Repository, s: &mut State) {
    s.mine
        .retain(|id| repo.backend().delete(FileType::Lock, &id.to_hex()).is_err());
}

/// Whether the lock in `s` is still ours (`None`) or why not: not overdue, its current object
/// still there, and no other live lock.
fn verify(repo: &Repository, s: &State, timing: &LockTiming) -> Result<Option<String>> {
    if let Some(why) = verify_own(repo, s, timing)? {
        return Ok(Some(why));
    }
    let listing = repo.backend().list_meta(FileType::Lock)?;
    rival(repo, &listing, s, timing)
}

/// Another live lock in `listing` (which holds our latest object), described, if there is one.
/// Its holder either took the lock while ours looked stale or absent to it, or is taking it this
/// very moment and will back off on seeing ours; either way we stop (at worst both stop, and a
/// retry succeeds), as a starter does in [`Repository::lock_exclusive`].
fn rival(
    repo: &Repository,
    listing: &[(Id, u64, i64)],
    s: &State,
    timing: &LockTiming,
) -> Result<Option<String>> {
    let now = StoreClock::now(s.store);
    Ok(repo
        .judge_locks(listing, now, timing, &s.mine)?
        .into_iter()
        .find(|o| o.stale.is_none())
        .map(|o| {
            format!(
                "another live lock appeared beside ours: {} holds lock {}",
                o.describe(),
                o.id.short()
            )
        }))
}

/// One refresh: `Err` with why the lock is lost (then it is never written again). A lock that
/// is overdue or whose object is gone is not re-created; after writing the new object, another
/// live lock means the lock was lost too. The old objects are deleted last.
fn refresh(
    repo: &Repository,
    lock: &Lock,
    s: &mut State,
    timing: &LockTiming,
) -> std::result::Result<(), Refresh> {
    match verify_own(repo, s, timing) {
        Ok(None) => {}
        Ok(Some(why)) => return Err(Refresh::Lost(why)),
        Err(e) => return Err(Refresh::Failed(format!("it could not be checked: {e}"))),
    }
    let Some(previous) = s.current() else {
        return Err(Refresh::Lost("it was released".into()));
    };
    let began = boot_time();
    let fresh = Lock {
        refreshed_ns: now_ns(),
        ..lock.clone()
    };
    let new = repo
        .write_lock(&fresh)
        .map_err(|e| Refresh::Failed(format!("it could not be refreshed: {e}")))?;
    let done = boot_time();
    s.mine.push(new);
    s.written = began;
    // Removed while we wrote (by an `unlock` that listed before our write and so missed the
    // new object)? Then the new one must not carry the lock on.
    match repo.backend().exists(FileType::Lock, &previous.to_hex()) {
        Ok(true) => {}
        Ok(false) => return Err(Refresh::Lost(REMOVED.into())),
        Err(e) => return Err(Refresh::Failed(format!("it could not be checked: {e}"))),
    }
    let listing = repo
        .backend()
        .list_meta(FileType::Lock)
        .map_err(|e| Refresh::Failed(format!("it could not be checked: {e}")))?;
    s.store = StoreClock::from_listing(&listing, &new, done);
    match rival(repo, &listing, s, timing) {
        Ok(None) => {}
        Ok(Some(why)) => return Err(Refresh::Lost(why)),
        Err(e) => return Err(Refresh::Failed(format!("it could not be checked: {e}"))),
    }
    let old: Vec<Id> = s.mine.iter().copied().filter(|i| *i != new).collect();
    for id in old {
        repo.backend()
            .delete(FileType::Lock, &id.to_hex())
            .map_err(|e| Refresh::Failed(format!("its old object could not be deleted: {e}")))?;
        s.mine.retain(|m| *m != id);
    }
    Ok(())
}

/// Why a refresh did not complete.
enum Refresh {
    /// The lock is lost (removed, taken over, overdue): it is never written again.
    Lost(String),
    /// The store failed (after its own retries): tried again soon, until the lock is overdue.
    Failed(String),
}

/// What a refresh checks before it writes anything: the lock is not overdue, and its current
/// object is still there.
fn verify_own(repo: &Repository, s: &State, timing: &LockTiming) -> Result<Option<String>> {
    if let Some(why) = overdue(s.written, boot_time(), timing) {
        return Ok(Some(why));
    }
    let Some(current) = s.current() else {
        return Ok(Some("it was released".into()));
    };
    if !repo.backend().exists(FileType::Lock, &current.to_hex())? {
        return Ok(Some(REMOVED.into()));
    }
    Ok(None)
}

/// The refresh thread: every `timing.refresh` until `stopped` fires or the lock is lost.
fn refresh_loop(
    repo: &Repository,
    lock: &Lock,
    state: &Mutex<State>,
    stopped: &crossbeam_channel::Receiver<()>,
    timing: &LockTiming,
) {
    // After a failed refresh the next attempt comes sooner; a lock that could not be
    // refreshed for so long that it is overdue is lost (`verify_own`).
    let mut wait = timing.refresh;
    let mut failure: Option<String> = None;
    while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
        // Held throughout, so a check never sees our new object before it is ours.
        let Ok(mut s) = state.lock() else { return };
        if s.error.is_some() {
            return;
        }
        match refresh(repo, lock, &mut s, timing) {
            Ok(()) => {
                wait = timing.refresh;
                failure = None;
            }
            Err(Refresh::Failed(why)) => {
                wait = (timing.refresh / 10).max(Duration::from_millis(100));
                failure = Some(why);
            }
            Err(Refresh::Lost(why)) => {
                s.error = Some(match failure.take() {
                    Some(f) => format!("{why} (the last refresh failed: {f})"),
                    None => why,
                });
                abandon(repo, &mut s);
                return;
            }
        }
    }
}

impl Repository {
    fn write_lock(&self, l: &Lock) -> Result<Id> {
        let plain = format::encode(l)?;
        self.save_sealed(FileType::Lock, label::LOCK, &plain)
    }

    /// The locks in `listing` other than those in `skip`, read and judged at `now`.
    fn judge_locks(
        &self,
        listing: &[(Id, u64, i64)],
        now: Now,
        timing: &LockTiming,
        skip: &[Id],
    ) -> Result<Vec<LockInfo>> {
        let host = current_host();
        let mut out = Vec::new();
        for (id, size, modified) in listing {
            if skip.contains(id) {
                continue;
            }
            let read = self
                .load_sealed(FileType::Lock, id, label::LOCK, Some(*size))
                .and_then(|p| Lock::decode(&p, &format!("lock {}", id.short())));
            match read {
                Ok(l) => {
                    let stale = stale_reason(&l, *modified, now, &host, timing);
                    out.push(LockInfo {
                        id: *id,
                        lock: Some(l),
                        stale,
                    });
                }
                // Gone between listing and reading: released.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) if e.kind() == ErrorKind::Corrupt => out.push(LockInfo {
                    id: *id,
                    lock: None,
                    stale: Some(e.to_string()),
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Every lock in the repository, with whether it is stale (judged by this host's clock
    /// against both the time in the lock and its object's last-modified time).
    pub fn locks(&self, timing: &LockTiming) -> Result<Vec<LockInfo>> {
        let listing = self.backend().list_meta(FileType::Lock)?;
        self.judge_locks(&listing, Now::local(), timing, &[])
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
        let began = boot_time();
        let id = self.write_lock(&lock)?;
        let done = boot_time();
        // Two that looked at the same moment: whoever sees another live lock after writing its
        // own backs off. At least the second writer sees the first, so two never both go on;
        // both may back off (each then says the repository is locked, and a retry succeeds).
        // Ages are read against the store's clock now, from our own object: a skewed clock
        // here cannot make a live lock look stale.
        let state = State {
            mine: vec![id],
            written: began,
            store: None,
            error: None,
        };
        let checked = self
            .backend()
            .list_meta(FileType::Lock)
            .and_then(|listing| {
                let store = StoreClock::from_listing(&listing, &id, done);
                let others = self.judge_locks(&listing, StoreClock::now(store), &timing, &[id])?;
                Ok((store, others))
            });
        let (store, others) = match checked {
            Ok(c) => c,
            Err(e) => {
                let _ = self.backend().delete(FileType::Lock, &id.to_hex());
                return Err(e);
            }
        };
        if let Some(r) = others.iter().find(|o| o.stale.is_none()) {
            let _ = self.backend().delete(FileType::Lock, &id.to_hex());
            return Err(held(r));
        }
        let state = Arc::new(Mutex::new(State { store, ..state }));
        let (stop, stopped) = bounded::<()>(0);
        let thread = {
            let (repo, state) = (self.clone(), state.clone());
            std::thread::Builder::new()
                .name("cairn-lock".into())
                .spawn(move || refresh_loop(&repo, &lock, &state, &stopped, &timing))
        };
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                let _ = self.backend().delete(FileType::Lock, &id.to_hex());
                return Err(Error::io("cannot start the lock refresh thread", e));
            }
        };
        Ok(LockGuard {
            repo: self.clone(),
            state,
            stop: Some(stop),
            thread: Some(thread),
            timing,
        })
    }

    /// The store's clock, from the last-modified time of a probe lock object written and
    /// deleted at once (`None` when the store gives no time). A prune starting at this moment
    /// may see the probe as a live lock and back off; a retry succeeds.
    fn probe_store_clock(&self) -> Result<Option<StoreClock>> {
        let now = now_ns();
        let probe = Lock {
            version: VERSION,
            host: current_host(),
            user: current_user(),
            pid: std::process::id(),
            command: "unlock (reading the store's clock)".to_string(),
            created_ns: now,
            refreshed_ns: now,
        };
        let id = self.write_lock(&probe)?;
        let done = boot_time();
        let listing = self.backend().list_meta(FileType::Lock);
        self.backend().delete(FileType::Lock, &id.to_hex())?;
        Ok(StoreClock::from_listing(&listing?, &id, done))
    }

    /// Remove stale locks (all locks with `all`). Returns the locks removed.
    ///
    /// A holder may be refreshing at this moment, its new object written after our listing:
    /// the listing is read again until it shows nothing more to remove. (A holder writes a new
    /// object only while its current one exists, and checks that it still does after writing,
    /// so with `all` it stops at its next check; the rounds are bounded anyway.)
    pub fn unlock(&self, all: bool, timing: &LockTiming) -> Result<Vec<LockInfo>> {
        // Staleness is judged against the store's clock too, learnt from a probe object of our
        // own: a host whose clock is ahead must not take a live lock for stale (second review,
        // N8). `--remove-all` judges nothing.
        let store = if all { None } else { self.probe_store_clock()? };
        let mut removed = Vec::new();
        for _ in 0..UNLOCK_ROUNDS {
            let listing = self.backend().list_meta(FileType::Lock)?;
            let doomed: Vec<LockInfo> = self
                .judge_locks(&listing, StoreClock::now(store), timing, &[])?
                .into_iter()
                .filter(|l| all || l.stale.is_some())
                .collect();
            if doomed.is_empty() {
                break;
            }
            for l in doomed {
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
    use crate::backend::Backend;
    use crate::repo::InitOptions;

    const MIN: i64 = 60_000_000_000;

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

    fn at(local_ns: i64, store_ns: i64) -> Now {
        Now { local_ns, store_ns }
    }

    #[test]
    fn staleness_by_age_and_by_dead_process() {
        let t = LockTiming::default();
        let me = std::process::id();
        // Fresh, live process here: live.
        let l = lock("here", me, 0);
        assert_eq!(
            stale_reason(&l, 0, at(29 * MIN, 29 * MIN), "here", &t),
            None
        );
        // Too old by both clocks: stale wherever it is.
        let there = lock("there", me, 0);
        assert!(stale_reason(&there, 0, at(31 * MIN, 31 * MIN), "here", &t).is_some());
        // A process of this host that does not exist: stale at once.
        let dead = u32::try_from(libc::pid_t::MAX).unwrap();
        assert!(stale_reason(&lock("here", dead, 0), 0, at(1, 1), "here", &t).is_some());
        // The same pid on another host says nothing: live until it ages.
        assert_eq!(
            stale_reason(&lock("there", dead, 0), 0, at(1, 1), "here", &t),
            None
        );
        assert!(process_alive(me));
        assert!(!process_alive(0));
    }

    /// One wrong clock never makes a live lock stale: old by the time written in it (its
    /// holder's clock is behind, or ours ahead) but freshly stored, or the other way round,
    /// is live. A store that gives no time (0) leaves the written time alone to decide.
    #[test]
    fn staleness_needs_both_the_written_time_and_the_stores_time() {
        let t = LockTiming::default();
        let l = lock("there", 1, 0);
        // Written 60 min ago by its clock, stored 1 min ago by the store's.
        assert_eq!(
            stale_reason(&l, 59 * MIN, at(60 * MIN, 60 * MIN), "here", &t),
            None
        );
        // Our clock an hour ahead, the store's right: the object is 1 min old.
        assert_eq!(
            stale_reason(&l, MIN, at(62 * MIN, 2 * MIN), "here", &t),
            None
        );
        // Its holder's clock an hour ahead: written "in the future", stored 40 min ago.
        let ahead = lock("there", 1, 100 * MIN);
        assert_eq!(
            stale_reason(&ahead, 0, at(40 * MIN, 40 * MIN), "here", &t),
            None
        );
        // Old by both: stale.
        assert!(stale_reason(&l, MIN, at(40 * MIN, 40 * MIN), "here", &t).is_some());
        // No time from the store: the written time decides.
        assert!(stale_reason(&l, 0, at(31 * MIN, 31 * MIN), "here", &t).is_some());
    }

    /// The holder's own age counts time asleep: boot time keeps counting through a suspend
    /// (simulated here by the values; `Instant` would have seen no time pass at all).
    #[test]
    fn own_freshness_is_measured_in_boot_time() {
        let t = LockTiming::default();
        let s = Duration::from_secs;
        let written = s(1000);
        assert_eq!(overdue(written, written + s(14 * 60), &t), None);
        // Asleep 40 minutes after the last refresh.
        let why = overdue(written, written + s(40 * 60), &t).unwrap();
        assert!(why.contains("2400 s"), "{why}");
        // Half the stale time is the limit.
        assert!(overdue(written, written + t.stale / 2, &t).is_some());
        // A clock going backwards never makes it fresher than it was.
        assert_eq!(overdue(written, s(10), &t), None);
        // Boot time runs at least as fast as the monotonic clock.
        let (b0, i0) = (boot_time(), std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let (db, di) = (boot_time() - b0, i0.elapsed());
        assert!(db + Duration::from_millis(5) >= di, "{db:?} < {di:?}");
    }

    fn repo() -> (tempfile::TempDir, Arc<Repository>) {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::open(dir.path().join("repo").to_str().unwrap(), true).unwrap();
        let cache = dir.path().join("cache");
        let repo = Repository::init(backend, b"pw", &InitOptions::for_test(), &cache).unwrap();
        (dir, repo)
    }

    fn fast() -> LockTiming {
        LockTiming {
            refresh: Duration::from_millis(20),
            stale: Duration::from_secs(30 * 60),
        }
    }

    fn lock_ids(repo: &Repository) -> Vec<Id> {
        let mut ids: Vec<Id> = repo
            .backend()
            .list(FileType::Lock)
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.sort();
        ids
    }

    /// Waits (bounded) until the refresh thread has recorded a loss.
    fn wait_lost(g: &LockGuard) {
        for _ in 0..500 {
            if g.state.lock().unwrap().error.is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the refresh thread never noticed the loss");
    }

    /// LK1: after `unlock --remove-all` the refresh thread notices its object is gone and never
    /// writes the lock again; every check fails from then on.
    #[test]
    fn a_removed_lock_is_never_recreated_and_checks_fail() {
        let (_dir, repo) = repo();
        let g = repo.lock_exclusive("prune", fast()).unwrap();
        g.check().unwrap();
        // Refreshed a few times: still one object, ours. (Holding the state keeps the refresh
        // thread between two refreshes.)
        std::thread::sleep(Duration::from_millis(150));
        g.check().unwrap();
        {
            let s = g.state.lock().unwrap();
            assert_eq!(lock_ids(&repo), s.mine);
            let removed = repo.unlock(true, &fast()).unwrap();
            assert_eq!(removed.len(), 1);
        }
        wait_lost(&g);
        // Many refresh intervals later, nothing was written again.
        std::thread::sleep(Duration::from_millis(200));
        assert!(lock_ids(&repo).is_empty());
        for _ in 0..2 {
            let e = g.check().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Locked, "{e}");
            assert!(e.to_string().contains("lock was lost"), "{e}");
            assert!(e.to_string().contains("removed by someone else"), "{e}");
        }
        g.release().unwrap();
        assert!(lock_ids(&repo).is_empty());
    }

    /// `check` itself sees a removal, before any refresh ran.
    #[test]
    fn check_sees_a_removal_between_refreshes() {
        let (_dir, repo) = repo();
        let slow = LockTiming {
            refresh: Duration::from_secs(3600),
            ..fast()
        };
        let g = repo.lock_exclusive("prune", slow).unwrap();
        repo.unlock(true, &slow).unwrap();
        let e = g.check().unwrap_err();
        assert!(e.to_string().contains("removed by someone else"), "{e}");
        drop(g);
        assert!(lock_ids(&repo).is_empty());
    }

    /// Another live lock beside ours (taken while ours looked stale, say) is a loss, for
    /// `check` and for the refresh thread; releasing removes only our own objects.
    #[test]
    fn another_live_lock_beside_ours_is_a_loss() {
        for by_check in [true, false] {
            let (_dir, repo) = repo();
            let timing = if by_check {
                LockTiming {
                    refresh: Duration::from_secs(3600),
                    ..fast()
                }
            } else {
                fast()
            };
            let g = repo.lock_exclusive("prune", timing).unwrap();
            let now = now_ns();
            let rival = repo
                .write_lock(&Lock {
                    created_ns: now,
                    ..lock("elsewhere", 1, now)
                })
                .unwrap();
            if !by_check {
                wait_lost(&g);
            }
            let e = g.check().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Locked, "{e}");
            assert!(e.to_string().contains("another live lock"), "{e}");
            assert!(e.to_string().contains("elsewhere"), "{e}");
            g.release().unwrap();
            assert_eq!(lock_ids(&repo), vec![rival]);
        }
    }

    /// Taking the lock judges others' ages against the store's clock too: a live holder whose
    /// clock is an hour behind (its written time an hour old, its object just stored) keeps the
    /// lock; once its object is an hour old as well, it is stale.
    #[test]
    fn a_holder_with_a_clock_behind_keeps_its_lock() {
        let (dir, repo) = repo();
        let hour_ago = now_ns() - 60 * MIN;
        let other = repo
            .write_lock(&Lock {
                created_ns: hour_ago,
                ..lock("elsewhere", 1, hour_ago)
            })
            .unwrap();
        let e = repo.lock_exclusive("prune", fast()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Locked, "{e}");
        assert!(e.to_string().contains("elsewhere"), "{e}");
        assert_eq!(lock_ids(&repo), vec![other], "ours was removed again");
        // Its object an hour old too: stale.
        let path = dir.path().join("repo/locks").join(other.to_hex());
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        let g = repo.lock_exclusive("prune", fast()).unwrap();
        g.check().unwrap();
        g.release().unwrap();
        assert_eq!(lock_ids(&repo), vec![other]);
    }
}
