// All integration tests compile into this one binary (as in ripgrep): one link of the test
// harness instead of one per file. Each module is one area; helpers live in util.

// The tests inject faults, kill the binary after N writes and shorten lock refreshes through
// hooks only a build with the `test-hooks` feature has.
#[cfg(not(feature = "test-hooks"))]
compile_error!(
    "the integration tests need the test hooks: run `cargo test --release --features test-hooks` \
     (README, .ci/run)"
);

mod util;

mod at;
mod backup_race;
mod cache;
mod concurrent;
mod copy_verify;
mod damaged;
mod dedup;
mod dump_names;
mod errors;
mod everyday;
mod excludes;
mod explore;
mod forget;
mod hostile_trees;
mod incremental;
mod interrupted;
mod key_hardening;
mod keys;
mod local_files;
mod mount;
mod pg_cluster;
mod pg_pitr;
mod pipes;
mod postgres;
mod prune;
mod prune_clock;
mod repair;
mod repair_safety;
mod restore_safety;
mod roundtrip;
mod selection;
mod servers;
mod stdin;
mod stores;
mod threads;
