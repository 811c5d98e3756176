//! The `cairn` command: parse, run, map errors to exit codes (docs/design.md §11): 0 ok, 1 error,
//! 2 bad command line, 3 partial (a backup that skipped unreadable files, or any command that
//! skipped damaged repository objects), 10 no repository, 11 locked, 12 wrong password.

mod cli;

fn main() {
    // One malloc arena: the pipeline's threads hand buffers to each other, and with per-thread
    // arenas glibc keeps freed chunk buffers around in every arena (peak RSS +30% measured).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: called first thing, before any other thread exists; mallopt only sets a tunable.
    unsafe {
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
    let code = match cli::run() {
        Ok(code) => code,
        Err(e) => {
            let (msg, code) = match e.downcast_ref::<cairn::Error>() {
                Some(ce) => (ce.to_string(), exit_code(ce.kind())),
                None => (format!("{e:#}"), 1),
            };
            // One line, and nothing an untrusted name could use to drive the terminal.
            eprintln!("error: {}", cli::escape::text(&msg.replace('\n', " ")));
            code
        }
    };
    std::process::exit(code);
}

/// The exit code of a failed command, by the kind of its error (restic's codes where it has
/// them).
fn exit_code(kind: cairn::ErrorKind) -> i32 {
    use cairn::ErrorKind;
    match kind {
        ErrorKind::NoRepository => 10,
        ErrorKind::Locked => 11,
        ErrorKind::Crypto => 12,
        _ => 1,
    }
}
