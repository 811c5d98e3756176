//! Synthetic scale test of the blob index (a benchmark, not a CI test): fill the RocksDB cache
//! with N blob locations in steps, and after each step measure random lookups per second (hits
//! and misses) and the process's peak RSS. RSS must stay flat as N grows: the index lives on
//! disk, not in memory (restic and borg hold it all in RAM).
//!
//! At the end, prune's reachability machinery at full size: every blob into an on-disk
//! [`BlobSet`] (the walk's "used" set), then one pass over every location merged with the set
//! in id order (prune's classification), with time and peak RSS.
//!
//! Run: `cargo bench --bench index_scale` (CAIRN_SCALE_BLOBS=10000000 by default).

use cairn::cache::{BlobSet, Cache};
use cairn::format::index::{IndexFile, IndexPack};
use cairn::format::pack::{BlobKind, PackEntry};
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
    let index = cairn::index::IndexStore::open(&cache).expect("index");
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
            // One index file of 50 packs of 1000 blobs (a backup's batch of small-file packs).
            let n = (step - filled).min(50_000);
            let packs = (filled..filled + n)
                .step_by(1000)
                .map(|first| IndexPack {
                    id: id(1 << 63 | first),
                    size: 1 << 30,
                    marked_ns: None,
                    blobs: (first..(first + 1000).min(filled + n))
                        .enumerate()
                        .map(|(k, i)| PackEntry {
                            kind: BlobKind::Data,
                            id: id(i),
                            offset: k as u32 * 100,
                            length: 100,
                            raw_length: 90,
                        })
                        .collect(),
                })
                .collect();
            let f = IndexFile {
                version: 1,
                supersedes: vec![],
                packs,
            };
            index.add_index_file(&id(1 << 62 | file), &f).expect("add");
            file += 1;
            filled += n;
        }
        cache.flush().expect("flush");
        let fill = t.elapsed().as_secs_f64();
        let t = Instant::now();
        index.compact_blobs().expect("compact");
        let compact = t.elapsed().as_secs_f64();
        let probes = 200_000u64;
        let mut x = 0x9e3779b97f4a7c15u64;
        let t = Instant::now();
        for _ in 0..probes {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            assert!(index.blob(&id(x % filled)).expect("get").is_some());
        }
        let hits = probes as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        for i in 0..probes {
            assert!(index.blob(&id((1 << 61) + i)).expect("get").is_none());
        }
        let misses = probes as f64 / t.elapsed().as_secs_f64();
        println!(
            "{filled:>12} {fill:>10.1} {compact:>10.1} {hits:>14.0} {misses:>14.0} {:>12.1}",
            rss_kib("VmHWM:") as f64 / 1024.0
        );
    }
    // Prune's reachability set and classification pass at full size.
    let t = Instant::now();
    let mut used = BlobSet::new(dir.path()).expect("set");
    for i in 0..filled {
        used.insert(&id(i)).expect("insert");
    }
    let fill = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut it = used.iter().peekable();
    let (mut matched, mut locations) = (0u64, 0u64);
    index
        .for_each_location(|blob, _| {
            locations += 1;
            while let Some(Ok(u)) = it.peek() {
                if u < blob {
                    it.next();
                } else {
                    if u == blob {
                        matched += 1;
                    }
                    break;
                }
            }
            Ok(())
        })
        .expect("pass");
    assert_eq!(matched, filled);
    assert_eq!(locations, filled);
    println!(
        "reachability set of {filled} blobs: fill {fill:.1} s, merge pass {:.1} s, peak RSS {:.1} MiB",
        t.elapsed().as_secs_f64(),
        rss_kib("VmHWM:") as f64 / 1024.0
    );
}
