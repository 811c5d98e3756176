//! cairn: content-addressed, deduplicating, encrypted backups to any object store.
//!
//! # Architecture (outer layers call inner ones, never the reverse)
//!
//! ```text
//! cli ─▶ check, copy, dump, repair, prune, mount, pg ─▶ backup, restore ─▶ snapshot, pg::catalog ─▶ repo ─▶ index ─▶ cache, backend, crypto, format, chunker ─▶ id, error, time, patterns, progress, warning, sys
//! ```
//!
//! - [`format`]: the versioned on-disk structures (pure, no I/O); `docs/format.md` specifies them.
//! - [`crypto`]: master keys, sealing (AES-256-GCM-SIV), argon2id.
//! - [`chunker`]: FastCDC over a key-derived gear table.
//! - [`backend`]: the object store, with the repository's layout of names.
//! - [`cache`]: the local RocksDB database: the index's rows, trees and snapshots (rebuildable).
//! - [`index`]: the blob index (where every blob lives, packs, index files); `Index` is the
//!   synced view only `Repository::index()` hands out.
//! - [`repo`]: opening a repository, keys, the blob writer pipeline, the verified reader, tree
//!   loading, index files; the only module that holds keys or touches the backend and cache.
//! - [`snapshot`]: building and reading trees; choosing and grouping snapshots; retention
//!   policies and `forget`.
//! - [`backup`], [`restore`]: the two pipelines.
//! - [`mount`]: the read-only FUSE mount (a file system over the snapshots, testable without
//!   FUSE, and a thin fuser adapter).
//! - [`prune`]: prune's plan, its execution, and the session around them.
//! - [`pg`]: PostgreSQL point-in-time recovery: base backups (a backup with an amendment), the
//!   WAL archive's push and fetch, restore to a target, what the repository holds for it; its
//!   pure half (WAL names, the WAL segment decoder) builds without the engine.
//! - [`commands`]: the commands of one file each (check, copy, dump).
//! - [`patterns`]: restic-style include/exclude globs over paths (backup's sources, restore's
//!   and find's snapshot paths).
//! - [`time`]: times as people read them (below every layer that shows one).
//! - [`progress`], [`warning`]: what running work tells a front end (counters, the `Observer`
//!   trait, entry warnings). The library never prints; the CLI draws and prints.
//! - [`sys`]: the operating system behind small safe functions; the only module with `unsafe`
//!   code (denied everywhere else) or `libc` calls.
//!
//! # Glossary
//! - **chunk**: a content-defined piece of a file (FastCDC).
//! - **blob**: a chunk (data blob) or a directory listing (tree blob), compressed then sealed;
//!   its id is the keyed BLAKE3 of its plaintext.
//! - **pack**: an object holding many blobs followed by a sealed header listing them.
//! - **index file**: a sealed list of packs and their blobs; the cache merges them.
//! - **tree**: a directory's name-sorted nodes; **snapshot**: a root tree plus metadata.
//! - **sealed**: `nonce || AES-256-GCM-SIV(plaintext)` with associated data naming the object.

#![deny(unsafe_code)]

#[cfg(feature = "engine")]
pub mod backend;
#[cfg(feature = "engine")]
pub mod backup;
#[cfg(feature = "engine")]
pub mod cache;
pub mod chunker;
#[cfg(feature = "engine")]
pub mod commands;
pub mod crypto;
pub mod error;
pub mod format;
pub mod id;
#[cfg(feature = "engine")]
pub mod index;
#[cfg(feature = "engine")]
pub mod mount;
#[cfg(feature = "engine")]
pub mod patterns;
pub mod pg;
#[cfg(feature = "engine")]
pub mod progress;
#[cfg(feature = "engine")]
pub mod prune;
#[cfg(feature = "engine")]
pub mod repair;
#[cfg(feature = "engine")]
pub mod repo;
#[cfg(feature = "engine")]
pub mod restore;
pub mod snapshot;
#[cfg(feature = "engine")]
#[allow(unsafe_code)]
pub mod sys;
#[cfg(feature = "engine")]
pub mod time;
#[cfg(feature = "engine")]
pub mod warning;

pub use error::{Error, ErrorKind, Result};
pub use id::Id;
