//! The operating system, behind small safe functions: every `unsafe` block and `libc` call of
//! the library is here (the crate root denies `unsafe_code` everywhere else), each with its
//! `SAFETY` comment next to it, and each failure an [`std::io::Result`]. The callers decide
//! policy (what to open, in which order, what a failure means); these only make the calls.
//!
//! - [`fs`]: files and folders through descriptors (`*at` calls that never follow a symlink,
//!   `O_PATH` handles, `fstat`, times, owners, modes, extended attributes, locks, unmounting);
//! - [`process`]: signals, the boot clock, resource limits, the allocator's tunables;
//! - [`user`]: user and group ids, and names from the password and group databases.

pub mod fs;
pub mod process;
pub mod user;

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// A C call's `0` or `-1` as a result.
fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A C call's new descriptor or `-1` as a result.
fn check_fd(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY: a fresh descriptor returned by the kernel, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// Whether every byte of `b` is zero (read a word at a time where `b` is aligned).
pub fn is_zero(b: &[u8]) -> bool {
    let (pre, mid, post) = {
        // SAFETY: u64 has no invalid bit patterns; align_to gives correctly aligned middles.
        unsafe { b.align_to::<u64>() }
    };
    pre.iter().all(|&x| x == 0) && mid.iter().all(|&x| x == 0) && post.iter().all(|&x| x == 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn is_zero_looks_at_every_byte() {
        let mut b = vec![0u8; 100];
        for start in 0..9 {
            assert!(super::is_zero(&b[start..]));
        }
        for i in 0..100 {
            b[i] = 1;
            assert!(!super::is_zero(&b), "{i}");
            assert!(super::is_zero(&b[i + 1..]));
            b[i] = 0;
        }
    }
}
