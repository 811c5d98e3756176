//! PostgreSQL point-in-time recovery: base backups as snapshots tagged `pg-base`, a WAL archive
//! (`wal/`), and restores to a time, transaction id, restore point or LSN.
//!
//! Pure parts (no repository): [`waldecode`] reads what a WAL segment holds (system identifier,
//! commits, restore points) and [`walname`] names WAL files and LSNs.

#[cfg(feature = "engine")]
pub mod base;
#[cfg(feature = "engine")]
pub mod catalog;
#[cfg(feature = "engine")]
pub mod control;
#[cfg(feature = "engine")]
pub mod fetch;
#[cfg(feature = "engine")]
pub mod push;
#[cfg(feature = "engine")]
pub mod restore;
#[cfg(feature = "engine")]
pub mod server;
pub mod waldecode;
pub mod walname;
