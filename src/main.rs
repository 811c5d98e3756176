//! The `cairn` command: parse, run, map errors to exit codes (docs/design.md §11): 0 ok, 1 error,
//! 2 bad command line, 3 partial (a backup that skipped unreadable files, or any command that
//! skipped damaged repository objects), 10 no repository, 11 locked, 12 wrong password.

#![deny(unsafe_code)]

mod cli;

fn main() {
    // One malloc arena, fixed mmap and trim thresholds (see the function), before any thread.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    cairn::sys::process::tune_malloc();
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
