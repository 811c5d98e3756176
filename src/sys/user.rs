//! Who we are, and the names of users and groups: `get*id` and the password and group databases
//! (`getpwuid_r`, `getgrgid_r`).

use std::ffi::CStr;
use std::path::PathBuf;

/// Real user id.
pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Real group id.
pub fn gid() -> u32 {
    // SAFETY: getgid has no preconditions and cannot fail.
    unsafe { libc::getgid() }
}

/// Effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Effective group id.
pub fn egid() -> u32 {
    // SAFETY: getegid has no preconditions and cannot fail.
    unsafe { libc::getegid() }
}

/// The effective user's home folder from the password database (`getpwuid_r`).
pub fn passwd_home() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    // SAFETY: zeroed passwd is a valid out value; getpwuid_r writes into `pw` and `buf` only.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf.len()` is its real size.
    let r = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        )
    };
    if r != 0 || out.is_null() || pw.pw_dir.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so pw_dir points to a NUL-terminated string inside `buf`.
    let dir = unsafe { CStr::from_ptr(pw.pw_dir) };
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(dir.to_bytes())))
}

/// The name of user `id` (`group`: of group `id`) from the password (group) database; empty
/// when it has none.
pub fn name_of(id: u32, group: bool) -> String {
    let mut buf = vec![0u8; 16384];
    // SAFETY: the *_r functions write only into the buffers we pass, sized as we say; the
    // returned pointers are checked for null and point into those buffers.
    unsafe {
        if group {
            let mut g: libc::group = std::mem::zeroed();
            let mut res: *mut libc::group = std::ptr::null_mut();
            if libc::getgrgid_r(id, &mut g, buf.as_mut_ptr().cast(), buf.len(), &mut res) == 0
                && !res.is_null()
                && !g.gr_name.is_null()
            {
                return CStr::from_ptr(g.gr_name).to_string_lossy().into_owned();
            }
        } else {
            let mut p: libc::passwd = std::mem::zeroed();
            let mut res: *mut libc::passwd = std::ptr::null_mut();
            if libc::getpwuid_r(id, &mut p, buf.as_mut_ptr().cast(), buf.len(), &mut res) == 0
                && !res.is_null()
                && !p.pw_name.is_null()
            {
                return CStr::from_ptr(p.pw_name).to_string_lossy().into_owned();
            }
        }
    }
    String::new()
}
