//! Criterion benchmarks of the hot stages: chunking, keyed hashing, compress+seal, pack
//! writing through the blob writer, cache lookups (hit and miss), and an end-to-end backup of a
//! generated tree. Figures go to docs/performance.md.

use bytes::Bytes;
use cairn::backend::Backend;
use cairn::backup::{BackupOptions, backup};
use cairn::cache::Cache;
use cairn::chunker::Chunker;
use cairn::crypto::MasterKey;
use cairn::crypto::kdf::KdfParams;
use cairn::format::config::ChunkerParams;
use cairn::format::pack::BlobKind;
use cairn::format::snapshot::SnapshotKind;
use cairn::id::Id;
use cairn::patterns::Patterns;
use cairn::progress::Silent;
use cairn::repo::writer::{BlobWriter, WriterOptions};
use cairn::repo::{InitOptions, Repository};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

/// Text-like data that compresses roughly as source code does.
fn texty(n: usize) -> Vec<u8> {
    let words = [
        &b"fn "[..],
        b"let ",
        b"self",
        b"return ",
        b"\n    ",
        b"struct ",
        b"impl ",
        b"{}",
        b"();",
        b"match ",
    ];
    let r = noise(n, 3);
    let mut v = Vec::with_capacity(n + 16);
    let mut i = 0;
    while v.len() < n {
        v.extend_from_slice(words[(r[i % r.len()] % 10) as usize]);
        v.push(b'a' + r[(i * 7) % r.len()] % 26);
        i += 1;
    }
    v.truncate(n);
    v
}

fn bench_chunker(c: &mut Criterion) {
    let data = noise(64 << 20, 1);
    let ch = Chunker::new(ChunkerParams::default(), &[42; 32]);
    let mut g = c.benchmark_group("chunker");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("fastcdc_keyed_gear_64MiB", |b| {
        b.iter(|| {
            ch.stream(&data[..])
                .map(|c| c.map(|c| c.len()).unwrap_or(0))
                .sum::<usize>()
        })
    });
    g.finish();
}

fn bench_hash_seal(c: &mut Criterion) {
    let key = MasterKey::generate().expect("key");
    let sealer = key.sealer();
    let random = noise(1 << 20, 2);
    let text = texty(1 << 20);
    let mut g = c.benchmark_group("blob");
    g.throughput(Throughput::Bytes(1 << 20));
    g.bench_function("keyed_blake3_1MiB", |b| {
        b.iter(|| key.blob_id(black_box(&random)))
    });
    for (name, data) in [("random", &random), ("text", &text)] {
        g.bench_with_input(BenchmarkId::new("zstd3_seal_1MiB", name), data, |b, d| {
            b.iter(|| {
                let plain = cairn::format::blob::encode(d, 3).expect("encode");
                sealer.seal(b"id", &plain).expect("seal")
            })
        });
    }
    g.finish();
}

fn test_repo(dir: &std::path::Path) -> std::sync::Arc<Repository> {
    let backend = Backend::open(dir.join("repo").to_str().expect("utf8"), true).expect("backend");
    let opts = InitOptions {
        kdf: KdfParams {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        },
        ..Default::default()
    };
    Repository::init(backend, b"bench", &opts, &dir.join("cache")).expect("init")
}

fn bench_writer(c: &mut Criterion) {
    let blobs: Vec<Bytes> = (0..64)
        .map(|i| {
            Bytes::from(
                texty(1 << 20)
                    .into_iter()
                    .map(|b| b ^ i as u8)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let mut g = c.benchmark_group("writer");
    g.throughput(Throughput::Bytes(64 << 20));
    g.sample_size(10);
    g.bench_function("dedup_compress_seal_pack_upload_64MiB", |b| {
        b.iter_with_setup(
            || tempfile::tempdir().expect("tmp"),
            |dir| {
                let repo = test_repo(dir.path());
                let w = BlobWriter::new(
                    repo,
                    WriterOptions {
                        threads: 2,
                        dry_run: false,
                    },
                )
                .expect("writer");
                for blob in &blobs {
                    w.add(BlobKind::Data, blob.clone()).expect("add");
                }
                w.finish().expect("finish")
            },
        )
    });
    g.finish();
}

fn bench_cache(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = Cache::open(dir.path(), &Id::of_stored(b"bench")).expect("cache");
    let index = cairn::index::IndexStore::open(&cache).expect("index");
    let n = 200_000u32;
    let ids: Vec<Id> = (0..n).map(|i| Id::of_stored(&i.to_le_bytes())).collect();
    for (k, chunk) in ids.chunks(10_000).enumerate() {
        let f = cairn::format::index::IndexFile {
            version: 1,
            supersedes: vec![],
            packs: vec![cairn::format::index::IndexPack {
                id: Id::of_stored(&(k as u64 | 1 << 32).to_le_bytes()),
                size: 1 << 30,
                marked_ns: None,
                blobs: chunk
                    .iter()
                    .enumerate()
                    .map(|(j, i)| cairn::format::pack::PackEntry {
                        kind: BlobKind::Data,
                        id: *i,
                        offset: j as u32 * 40,
                        length: 40,
                        raw_length: 30,
                    })
                    .collect(),
            }],
        };
        index
            .add_index_file(&Id::of_stored(&(k as u64).to_le_bytes()), &f)
            .expect("add");
    }
    cache.flush().expect("flush");
    let misses: Vec<Id> = (0..n)
        .map(|i| Id::of_stored(&(u64::from(i) + (1 << 40)).to_le_bytes()))
        .collect();
    let mut g = c.benchmark_group("cache_lookup");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("hit_x1000", |b| {
        let mut i = 0usize;
        b.iter(|| {
            for _ in 0..1000 {
                i = (i + 7919) % ids.len();
                black_box(index.blob(&ids[i]).expect("get"));
            }
        })
    });
    g.bench_function("miss_x1000", |b| {
        let mut i = 0usize;
        b.iter(|| {
            for _ in 0..1000 {
                i = (i + 7919) % misses.len();
                black_box(index.blob(&misses[i]).expect("get"));
            }
        })
    });
    g.finish();
}

fn bench_backup(c: &mut Criterion) {
    let src = tempfile::tempdir().expect("tmp");
    let mut total = 0u64;
    for d in 0..20 {
        let dir = src.path().join(format!("d{d}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..50 {
            let size = 1000 + (d * 50 + f) * 1000;
            std::fs::write(dir.join(format!("f{f}.txt")), texty(size)).expect("write");
            total += size as u64;
        }
    }
    let mut g = c.benchmark_group("backup");
    g.throughput(Throughput::Bytes(total));
    g.sample_size(10);
    g.bench_function("first_backup_1000_files", |b| {
        b.iter_with_setup(
            || tempfile::tempdir().expect("tmp"),
            |dir| {
                let repo = test_repo(dir.path());
                let opts = BackupOptions {
                    paths: vec![src.path().to_path_buf()],
                    excludes: Patterns::default(),
                    exclude_if_present: vec![],
                    one_file_system: false,
                    kind: SnapshotKind::Incremental,
                    parent: None,
                    host: "bench".into(),
                    tags: vec![],
                    time_ns: None,
                    dry_run: false,
                    threads: 2,
                    atime: false,
                    vanished_ok: false,
                };
                backup(&repo, &opts, &Silent::default()).expect("backup")
            },
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_chunker,
    bench_hash_seal,
    bench_writer,
    bench_cache,
    bench_backup
);
criterion_main!(benches);
