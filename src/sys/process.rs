//! This process and others: signals, clocks, resource limits and the allocator's tunables.

use std::time::Duration;

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

/// Kill this process at once with `SIGKILL` (no unwinding, no destructors: a crash).
pub fn kill_self() {
    // SAFETY: kill and getpid have no preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
}

/// Time since boot, *including* time the machine was suspended: `CLOCK_BOOTTIME` on Linux
/// (elsewhere `CLOCK_MONOTONIC`, which counts sleep on macOS). `None` if the clock cannot be
/// read.
pub fn boot_clock() -> Option<Duration> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const CLOCK: libc::clockid_t = libc::CLOCK_BOOTTIME;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime writes only into it.
    let r = unsafe { libc::clock_gettime(CLOCK, &mut ts) };
    match (u64::try_from(ts.tv_sec), u32::try_from(ts.tv_nsec)) {
        (Ok(s), Ok(n)) if r == 0 => Some(Duration::new(s, n)),
        _ => None,
    }
}

/// Make `signals` call `handler` instead of their default action, whichever thread gets them
/// (`sigaction` with an empty mask and no flags). The handler must be async-signal-safe (an
/// atomic store, say).
pub fn on_signals(
    signals: &[libc::c_int],
    handler: extern "C" fn(libc::c_int),
) -> std::io::Result<()> {
    for &sig in signals {
        // SAFETY: a zeroed sigaction is valid; the handler is a plain `extern "C"` function,
        // async-signal-safe by this function's contract.
        let r = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Raise the soft limit of open descriptors to the hard limit (a restore keeps one per file in
/// flight and one per open folder); returns the soft limit in force.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: `lim` is a valid out pointer; setrlimit takes a valid struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = lim.rlim_max.min(1 << 20);
            let mut new = lim;
            new.rlim_cur = want;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &new) == 0 {
                return want;
            }
        }
        lim.rlim_cur
    }
}

/// glibc's allocator tuned for the pipeline. Call first thing in `main`, before any other
/// thread exists.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn tune_malloc() {
    // SAFETY: called first thing, before any other thread exists; mallopt only sets a tunable.
    unsafe {
        // One malloc arena: the pipeline's threads hand buffers to each other, and with
        // per-thread arenas glibc keeps freed chunk buffers around in every arena (peak RSS
        // +30% measured).
        libc::mallopt(libc::M_ARENA_MAX, 1);
        // A fixed mmap threshold: pack buffers (16 MiB) and large stream buffers always come
        // from mmap and go back to the system when freed. With glibc's sliding threshold, the
        // first freed pack raises it, later packs land in the heap, and fragmentation kept
        // peak RSS 20-30 MB higher from run to run.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        // Fixing the mmap threshold also fixes the trim threshold at its 128 KiB default, so
        // the heap gave freed chunk buffers back and faulted them in again: 240-290k page
        // faults per first backup of the benchmark set. Keeping up to 16 MiB free at the top
        // cuts that to ~190k and the kernel time by a quarter, for ~5 MB more peak RSS.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 16 << 20);
    }
}

/// Whether standard output is a pipe or socket whose reader has gone (`poll` reports
/// `POLLERR`/`POLLHUP` on its write end): `cairn … | head -1` after `head` exited.
pub fn stdout_reader_gone() -> bool {
    let mut fds = [libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    }];
    // SAFETY: one valid pollfd for the duration of the call; a zero timeout never blocks.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) };
    r > 0 && fds[0].revents & (libc::POLLERR | libc::POLLHUP) != 0
}
