//! The `cairn` command: parse, run, map errors to exit codes (docs/design.md §11): 0 ok, 1 error,
//! 2 bad command line, 3 partial (a backup that skipped unreadable files, or any command that
//! skipped damaged repository objects), 10 no repository, 11 locked, 12 wrong password.

#![deny(unsafe_code)]

mod cli;

fn main() {
    // One malloc arena, fixed mmap and trim thresholds (see the function), before any thread.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    cairn::sys::process::tune_malloc();
    quiet_on_closed_stdout();
    let code = match cli::run() {
        Ok(code) => code,
        Err(e) if reader_went_away(&e) => 0,
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

/// `cairn … | head -1`: when the reader of standard output goes away, the next `println!`
/// panics with "failed printing to stdout" (Rust ignores SIGPIPE, and SIGPIPE stays ignored:
/// its default would kill the process on a broken network connection too). That panic, and
/// only when standard output really lost its reader, ends the process quietly with 0, as
/// coreutils and restic do.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && cairn::sys::process::stdout_reader_gone()
        {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Whether `e` is a write to standard output whose reader went away (`dump`, `cat`, and
/// anything else that writes with `write_all`): a broken pipe in its chain while standard
/// output has no reader. A broken connection to a store is never taken for this.
fn reader_went_away(e: &anyhow::Error) -> bool {
    let broken = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    broken && cairn::sys::process::stdout_reader_gone()
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
