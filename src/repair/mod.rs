//! Repairs: rebuilding the index from the packs (`index`), rewriting snapshots that lost
//! blobs (`snapshots`).

pub mod index;
pub mod snapshots;

pub use index::{RepairIndexOutcome, repair_index};
pub use snapshots::{RepairSnapshotsOptions, RepairSnapshotsOutcome, repair_snapshots};
