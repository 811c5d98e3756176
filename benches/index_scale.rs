//! Synthetic scale test of the blob index (a benchmark, not a CI test): fill the RocksDB cache
//! with N blob locations in steps, and after each step measure random lookups per second (hits
//! and misses) and the process's peak RSS. RSS must stay flat as N grows: the index lives on
//! disk, not in memory (restic and borg hold it all in RAM).
//!
//! Run: `cargo bench --bench index_scale` (CAIRN_SCALE_BLOBS=10000000 by default).

use cairn::cache::{BlobLocation, Cache};
use cairn::format::pack::BlobKind;
use cairn::id::Id;
use std::time::Instant;

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn id(i: u64) -> Id {
    Id(*blake3::hash(&i.to_le_bytes()).as_bytes())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("index_scale: benchmark");
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let total: u64 = std::env::var("CAIRN_SCALE_BLOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = tempfile::tempdir_in(
        std::env::var("CAIRN_SCALE_DIR").unwrap_or_else(|_| "/var/tmp".into()),
    )
    .expect("tmp");
    let cache = Cache::open(dir.path(), &Id::of_stored(b"scale")).expect("cache");
    let loc = BlobLocation {
        pack: id(u64::MAX),
        offset: 1,
        length: 2,
        raw_length: 3,
        kind: BlobKind::Data,
        marked: false,
    };
    let steps = [total / 100, total / 10, total / 4, total / 2, total];
    let mut filled = 0u64;
    let mut file = 0u64;
    println!(
        "{:>12} {:>10} {:>10} {:>14} {:>14} {:>12}",
        "blobs", "fill_s", "compact_s", "hits/s", "misses/s", "peak_rss_MiB"
    );
    for &step in &steps {
        let t = Instant::now();
        while filled < step {
            let n = (step - filled).min(50_000);
            let batch: Vec<(Id, BlobLocation)> =
                (filled..filled + n).map(|i| (id(i), loc)).collect();
            cache
                .add_index_file(&id(1 << 62 | file), &batch)
                .expect("add");
            file += 1;
            filled += n;
        }
        cache.flush().expect("flush");
        let fill = t.elapsed().as_secs_f64();
        let t = Instant::now();
        cache.compact_blobs().expect("compact");
        let compact = t.elapsed().as_secs_f64();
        let probes = 200_000u64;
        let mut x = 0x9e3779b97f4a7c15u64;
        let t = Instant::now();
        for _ in 0..probes {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            assert!(cache.blob(&id(x % filled)).expect("get").is_some());
        }
        let hits = probes as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        for i in 0..probes {
            assert!(cache.blob(&id((1 << 61) + i)).expect("get").is_none());
        }
        let misses = probes as f64 / t.elapsed().as_secs_f64();
        println!(
            "{filled:>12} {fill:>10.1} {compact:>10.1} {hits:>14.0} {misses:>14.0} {:>12.1}",
            rss_kib("VmHWM:") as f64 / 1024.0
        );
    }
}
