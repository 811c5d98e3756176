//! `forget`: the snapshots a retention policy removes, group by group, and their deletion. The
//! CLI only parses and prints; `forget --prune` is prune's business.

use super::group::{GroupBy, GroupKey, group};
use super::policy::{self, Applied, KeepPolicy};
use super::select::{Filter, find};
use crate::error::Result;
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::repo::Repository;

/// The snapshots passing `filter`, grouped by `by`, each group with what `policy` keeps (and
/// why) and removes, in the local calendar ([`policy::apply`]). Nothing is deleted: see
/// [`removals`] and [`delete`].
pub fn plan(
    repo: &Repository,
    filter: &Filter,
    by: GroupBy,
    policy: &KeepPolicy,
) -> Result<Vec<(GroupKey, Applied)>> {
    let list: Vec<(Id, Snapshot)> = repo
        .snapshots()?
        .into_iter()
        .filter(|(_, s)| filter.matches(s))
        .collect();
    Ok(group(list, by)
        .into_iter()
        .map(|(k, v)| (k, policy::apply(policy, v)))
        .collect())
}

/// The snapshots every group of a [`plan`] removes, group by group.
pub fn removals(plan: &[(GroupKey, Applied)]) -> Vec<(Id, Snapshot)> {
    plan.iter()
        .flat_map(|(_, r)| r.remove.iter().cloned())
        .collect()
}

/// The snapshots named by `specs` (ids, unique prefixes or `latest`, as [`find`] resolves
/// them against `filter`), each once, in the order first named.
pub fn named(repo: &Repository, specs: &[String], filter: &Filter) -> Result<Vec<(Id, Snapshot)>> {
    let mut named: Vec<(Id, Snapshot)> = Vec::new();
    for spec in specs {
        let (id, s) = find(repo, spec, filter, None)?;
        if !named.iter().any(|(i, _)| *i == id) {
            named.push((id, s));
        }
    }
    Ok(named)
}

/// Delete `snapshots` from the repository, in order; the first failure stops.
pub fn delete(repo: &Repository, snapshots: &[(Id, Snapshot)]) -> Result<()> {
    for (id, _) in snapshots {
        repo.delete_snapshot(id)?;
    }
    Ok(())
}
