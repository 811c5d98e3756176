//! Reclaiming space. (Retention, `forget --keep-*`, is `snapshot::policy` and
//! `snapshot::forget`.)
//!
//! - [`clock`]: the local and the store's clock, by which marks and unindexed packs are aged;
//! - [`plan`]: what the remaining snapshots reach and what every pack becomes;
//! - [`run`]: carrying a plan out in an order that is safe to interrupt;
//! - [`session`]: one prune from the lock to its release, in the order its safety needs.

pub mod clock;
pub mod plan;
pub mod run;
pub mod session;

pub use clock::Clocks;
pub use plan::{MaxUnused, PackAction, PruneOptions, PrunePlan, plan};
pub use run::{PruneOutcome, execute};
pub use session::Session;
