//! Retention and space reclaiming: which snapshots to keep (`policy`), and prune: what the
//! remaining snapshots reach, what every pack becomes (`plan`), and carrying it out safely
//! (`run`).

pub mod plan;
pub mod run;

pub use plan::{MaxUnused, PackAction, PruneOptions, PrunePlan, plan};
pub use run::{PruneOutcome, execute};
