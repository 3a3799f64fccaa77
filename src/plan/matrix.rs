//! The plan as a workflow reads it: the running jobs grouped by [`JobKind`](super::JobKind), each with the
//! GitHub environment it deploys to and that environment's URL. A reusable workflow has one
//! runner job per kind (each with the tools and token permissions that kind needs) and
//! expands it over this list with `strategy.matrix.include`, so a pipeline with
//! environments named anything gets one runner job per environment, protected by that
//! environment's rules.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Plan;
use crate::config::pipeline::Pipeline;

/// One running job of the plan, as a matrix entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The plan's job id, passed back to `jisu-deploy run --job`.
    pub job: String,
    /// The environment it acts on; empty when none.
    pub environment: String,
    /// That environment's URL; empty when none.
    pub url: String,
}

/// Running jobs by kind (`{"gate": [...], "deploy": [...]}`); kinds with no running job
/// are left out, so `fromJSON(matrix).deploy` is null exactly when no deploy runs.
pub fn by_kind(plan: &Plan, pipeline: &Pipeline) -> BTreeMap<&'static str, Vec<Entry>> {
    let mut kinds: BTreeMap<&'static str, Vec<Entry>> = BTreeMap::new();
    for job in plan.jobs.iter().filter(|j| j.decision.runs) {
        let environment = job.environment.clone().unwrap_or_default();
        let url = pipeline
            .environments
            .get(&environment)
            .map(|env| env.url.clone())
            .unwrap_or_default();
        kinds.entry(job.kind.as_str()).or_default().push(Entry {
            job: job.id.clone(),
            environment,
            url,
        });
    }
    kinds
}
