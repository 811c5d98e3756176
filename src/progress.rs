//! Progress counters shared by the pipeline's threads, and a reporter that shows them: an
//! indicatif bar on a terminal, JSON lines with `--json`, nothing with `-q`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counters updated by workers (relaxed atomics: cheap, approximate while running).
#[derive(Debug, Default)]
pub struct Progress {
    files: AtomicU64,
    bytes: AtomicU64,
    total_files: AtomicU64,
    total_bytes: AtomicU64,
}

impl Progress {
    /// Fresh counters.
    pub fn new() -> Progress {
        Progress::default()
    }
    /// One more file done.
    pub fn add_file(&self) {
        self.files.fetch_add(1, Ordering::Relaxed);
    }
    /// More bytes processed.
    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }
    /// Known totals (restore knows them up front), enabling percentages and ETA.
    pub fn set_totals(&self, files: u64, bytes: u64) {
        self.total_files.store(files, Ordering::Relaxed);
        self.total_bytes.store(bytes, Ordering::Relaxed);
    }
    /// (files, bytes, total files, total bytes).
    pub fn read(&self) -> (u64, u64, u64, u64) {
        (
            self.files.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.total_files.load(Ordering::Relaxed),
            self.total_bytes.load(Ordering::Relaxed),
        )
    }
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
            println!(
                "{}",
                serde_json::json!({"message_type": "status", "action": verb, "seconds_elapsed": secs, "files_done": files,
                    "bytes_done": bytes, "total_files": tf, "total_bytes": tb})
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
