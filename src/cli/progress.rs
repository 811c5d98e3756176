//! What the user sees of running work: the CLI's [`Observer`] (progress as an indicatif bar on
//! a terminal, JSON lines with `--json`, nothing with `-q`; entry warnings on stderr, or as
//! JSON lines on stdout with `--json`).

use super::escape;
use cairn::progress::{Observer, Progress, Shown};
use cairn::warning::EntryWarning;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The terminal's observer of a backup or a restore.
#[derive(Debug)]
pub struct Terminal {
    counters: Arc<Progress>,
    style: Style,
    json: bool,
}

impl Terminal {
    /// Progress shown in `style`; warnings as JSON lines when `json`.
    pub fn new(style: Style, json: bool) -> Terminal {
        Terminal {
            counters: Arc::new(Progress::new()),
            style,
            json,
        }
    }

    /// The counters, for work started before the library's (a backup's count of its totals).
    pub fn counters(&self) -> Arc<Progress> {
        self.counters.clone()
    }

    /// Whether progress is shown at all.
    pub fn shows_progress(&self) -> bool {
        self.style != Style::Quiet
    }
}

impl Observer for Terminal {
    fn counters(&self) -> &Progress {
        &self.counters
    }

    fn show(&self, verb: &'static str) -> Shown {
        Shown::until_dropped(Reporter::start(self.counters.clone(), self.style, verb))
    }

    fn entry_warning(&self, w: &EntryWarning) {
        print_entry_warning(self.json, w);
    }
}

/// Print an entry's problem during a backup or restore: `warning: …` on stderr, or with `--json`
/// a JSON line on stdout in restic's shape (`message_type` "error", `error`, `item`) plus its
/// `kind`.
fn print_entry_warning(json: bool, w: &EntryWarning) {
    use std::os::unix::ffi::OsStrExt;
    if json {
        let line = serde_json::json!({
            "message_type": "error",
            "error": w.message,
            "kind": w.problem,
            "item": String::from_utf8_lossy(w.path.as_os_str().as_bytes()),
        });
        line_while_working(&line.to_string());
    } else {
        eprintln!("warning: {}", escape::text(&w.message));
    }
}

/// A JSON line printed while the work goes on: a reader that went away must not stop a backup
/// or restore half-way (only the final print ends the process quietly, see main.rs), so a
/// failed write is ignored here.
fn line_while_working(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Not at all.
    Quiet,
    /// A bar on stderr.
    Bar,
    /// JSON lines on stdout.
    Json,
}

/// Shows progress from a background thread until dropped.
#[derive(Debug)]
pub struct Reporter {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reporter {
    /// Start showing `p` in `style`; `verb` names the work ("backup", "restore").
    pub fn start(p: Arc<Progress>, style: Style, verb: &'static str) -> Reporter {
        let stop = Arc::new(AtomicBool::new(false));
        if style == Style::Quiet {
            return Reporter { stop, thread: None };
        }
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cairn-progress".into())
            .spawn(move || run(&p, style, verb, &s))
            .ok();
        Reporter { stop, thread }
    }
}

fn run(p: &Progress, style: Style, verb: &str, stop: &AtomicBool) {
    let start = Instant::now();
    let bar = (style == Style::Bar).then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
        if let Ok(st) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {msg} {bytes} {bytes_per_sec}",
        ) {
            b.set_style(st);
        }
        b
    });
    let mut with_totals = false;
    let mut tick = 0u32;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        tick += 1;
        let (files, bytes, tf, tb) = p.read();
        if let Some(b) = &bar {
            // Totals (known to restore) turn the spinner into a bar with an ETA.
            if tb > 0 && !with_totals {
                with_totals = true;
                let tpl = "{spinner} [{elapsed_precise}] {msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}";
                if let Ok(st) = indicatif::ProgressStyle::with_template(tpl) {
                    b.set_style(st);
                }
            }
            b.set_length(tb.max(bytes));
            b.set_position(bytes);
            b.set_message(if tf > 0 {
                format!("{verb} {files}/{tf} files")
            } else {
                format!("{verb} {files} files")
            });
        } else if tick % 10 == 0 {
            let secs = start.elapsed().as_secs_f64();
            line_while_working(
                &serde_json::json!({"message_type": "status", "action": verb, "seconds_elapsed": secs, "files_done": files,
                    "bytes_done": bytes, "total_files": tf, "total_bytes": tb})
                .to_string(),
            );
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
