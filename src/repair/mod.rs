//! Repairs: rebuilding the index from the packs (`index`), rewriting snapshots that lost
//! blobs (`snapshots`).

pub mod index;

pub use index::{RepairIndexOutcome, repair_index};
