// All integration tests compile into this one binary (as in ripgrep): one link of the test
// harness instead of one per file. Each module is one area; helpers live in util.
mod util;

mod at;
mod backup_race;
mod cache;
mod dedup;
mod errors;
mod excludes;
mod incremental;
mod interrupted;
mod keys;
mod postgres;
mod roundtrip;
mod stdin;
mod threads;
