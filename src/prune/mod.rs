//! Removing snapshots and, later, the data only they used.
//!
//! - [`policy`]: which snapshots of a group a retention policy keeps (`forget --keep-*`), with
//!   restic's semantics and reason strings. Pure: no repository access.
//!
//! Deleting the snapshots a policy does not keep is `Repository::delete_snapshot`; freeing the
//! packs they alone referenced is prune's job (docs/design.md §10, not built yet).

pub mod policy;
