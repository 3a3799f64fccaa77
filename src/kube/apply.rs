//! Server-side apply of rendered objects with field manager `jisu-deploy`.
//!
//! Every object is first applied as a server-side dry run, so a conflict, a schema error or
//! a kind the cluster does not serve fails the deploy before the first real write; the
//! dry-run results also give the diff `--dry-run` prints. Pruning deletes objects this
//! tool applied earlier (by label and field manager) that the manifests no longer hold.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use anyhow::Context as _;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Scope;
use serde_json::Value;
use tracing::info;

use super::diff::{Change, diff};
use super::render::{MANAGED_BY, MANAGER, Rendered};
use super::retry::{CallError, retrying};

/// One field another manager owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldConflict {
    /// The other field manager (`kubectl-edit`, `hpa-controller`, ...).
    pub manager: String,
    /// The field path (`.spec.replicas`).
    pub field: String,
}

/// Apply failures callers report specially.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Fields this apply sets are owned by another manager.
    #[error("{object}: server-side apply conflicts with another field manager:\n{}\nthe other writer changed these fields since jisu-deploy last applied them; make the manifests agree, or rerun with --force-conflicts to take the fields over", list(.conflicts))]
    Conflict {
        /// `Kind/name`.
        object: String,
        /// The conflicting fields.
        conflicts: Vec<FieldConflict>,
    },
    /// The API server refused the object (schema, validation, admission).
    #[error("{object} (from {source_file}) was refused by the API server: {message}")]
    Rejected {
        /// `Kind/name`.
        object: String,
        /// The manifest file.
        source_file: String,
        /// The server's message.
        message: String,
    },
    /// The namespace the objects go to does not exist.
    #[error(
        "namespace `{0}` does not exist; create it first (render and apply k8s/namespace/, see k8s/README.md)"
    )]
    MissingNamespace(String),
}

fn list(conflicts: &[FieldConflict]) -> String {
    conflicts
        .iter()
        .map(|c| format!("  field {} is owned by manager \"{}\"", c.field, c.manager))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads the conflicts out of a 409 `Status` from server-side apply. The real server (and
/// kube-sim) put one cause per field: `{"reason": "FieldManagerConflict", "message":
/// "conflict with \"kubectl\" using apps/v1", "field": ".spec.replicas"}`.
pub fn conflicts_of(status: &kube::core::Status) -> Vec<FieldConflict> {
    let causes = status
        .details
        .as_ref()
        .map(|d| d.causes.as_slice())
        .unwrap_or_default();
    let mut found: Vec<FieldConflict> = causes
        .iter()
        .filter(|c| c.reason == "FieldManagerConflict")
        .map(|c| FieldConflict {
            manager: manager_of(&c.message),
            field: c.field.clone(),
        })
        .collect();
    if found.is_empty() {
        // No causes: keep the whole message rather than lose the detail.
        found.push(FieldConflict {
            manager: manager_of(&status.message),
            field: status.message.clone(),
        });
    }
    found
}

/// `conflict with "kubectl" using apps/v1` -> `kubectl`.
fn manager_of(message: &str) -> String {
    message
        .split_once("conflict with \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or_else(|| "unknown".to_owned(), |(name, _)| name.to_owned())
}

/// How to apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Take over fields other managers own.
    pub force_conflicts: bool,
    /// Stop after the server-side dry run.
    pub dry_run: bool,
    /// Delete objects this tool applied earlier that the manifests no longer hold.
    pub prune: bool,
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `Kind/name`.
    pub object: String,
    /// The change (from the dry run; for a real apply, what was done).
    pub change: Change,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.change {
            Change::Create => write!(f, "+ {} (created)", self.object),
            Change::Unchanged => write!(f, "= {} (unchanged)", self.object),
            Change::Update(lines) => {
                write!(f, "~ {} (configured)", self.object)?;
                for line in lines {
                    write!(f, "\n    {line}")?;
                }
                Ok(())
            }
        }
    }
}

/// Everything applied (or, on a dry run, that would be), and what pruning removed.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One outcome per rendered object, in apply order.
    pub objects: Vec<Outcome>,
    /// `Kind/name` of pruned objects.
    pub pruned: Vec<String>,
}

struct Target<'a> {
    rendered: &'a Rendered,
    api: Api<DynamicObject>,
}

/// Kinds pruning looks at besides those in the manifests: what an app folder holds.
const PRUNE_KINDS: &[(&str, &str, &str)] = &[
    ("apps", "v1", "Deployment"),
    ("", "v1", "Service"),
    ("", "v1", "ConfigMap"),
    ("", "v1", "ServiceAccount"),
    ("autoscaling", "v2", "HorizontalPodAutoscaler"),
    ("policy", "v1", "PodDisruptionBudget"),
];

/// Applies `objects` (already rendered, in order) in `namespace`.
pub async fn apply(
    client: &kube::Client,
    namespace: &str,
    objects: &[Rendered],
    options: ApplyOptions,
) -> anyhow::Result<Report> {
    let mut targets = Vec::new();
    let mut kinds = BTreeMap::new();
    for rendered in objects {
        let (resource, scope) = resolve_kind(client, &rendered.api_version, &rendered.kind).await?;
        let api = match (&scope, &rendered.namespace) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
            _ => Api::all_with(client.clone(), &resource),
        };
        kinds.insert(rendered.kind.clone(), (resource, scope));
        targets.push(Target { rendered, api });
    }
    check_namespace(client, namespace, objects).await?;

    // Phase 1: dry run everything; nothing is written unless every object passes.
    let mut report = Report::default();
    for target in &targets {
        let live = get(&target.api, &target.rendered.name).await?;
        let would_be = ssa(target, options.force_conflicts, true).await?;
        report.objects.push(Outcome {
            object: target.rendered.display_name(),
            change: diff(live.as_ref(), &would_be),
        });
    }
    if !options.dry_run {
        // Phase 2: the real writes, in the same order.
        for (target, outcome) in targets.iter().zip(&report.objects) {
            ssa(target, options.force_conflicts, false).await?;
            info!("{outcome}");
        }
    }
    if options.prune {
        report.pruned = prune(client, namespace, objects, &kinds, options.dry_run).await?;
    }
    Ok(report)
}

async fn resolve_kind(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
) -> anyhow::Result<(ApiResource, Scope)> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, capabilities) = retrying(&format!("discovery of {api_version} {kind}"), || {
        kube::discovery::pinned_kind(client, &gvk)
    })
    .await
    .with_context(|| format!("the cluster does not serve {kind} in {api_version}"))?;
    Ok((resource, capabilities.scope))
}

async fn check_namespace(
    client: &kube::Client,
    namespace: &str,
    objects: &[Rendered],
) -> anyhow::Result<()> {
    let creates_it = objects
        .iter()
        .any(|o| o.kind == "Namespace" && o.name == namespace);
    if creates_it {
        return Ok(());
    }
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let found = retrying("get namespace", || api.get_opt(namespace))
        .await
        .with_context(|| format!("reading namespace {namespace}"))?;
    match found {
        Some(_) => Ok(()),
        None => Err(ApplyError::MissingNamespace(namespace.to_owned()).into()),
    }
}

async fn get(api: &Api<DynamicObject>, name: &str) -> anyhow::Result<Option<Value>> {
    let found = retrying("get", || api.get_opt(name))
        .await
        .with_context(|| format!("reading the live {name}"))?;
    found
        .map(serde_json::to_value)
        .transpose()
        .context("live object as JSON")
}

async fn ssa(target: &Target<'_>, force: bool, dry_run: bool) -> anyhow::Result<Value> {
    let mut params = PatchParams::apply(MANAGER);
    params.force = force;
    params.dry_run = dry_run;
    let rendered = target.rendered;
    let patch = Patch::Apply(&rendered.object);
    let what = format!("apply {}", rendered.display_name());
    match retrying(&what, || target.api.patch(&rendered.name, &params, &patch)).await {
        Ok(object) => serde_json::to_value(object).context("applied object as JSON"),
        Err(error) => Err(explain(error, rendered)),
    }
}

fn explain(error: CallError, rendered: &Rendered) -> anyhow::Error {
    match error.status() {
        Some(status)
            if status.code == 409
                && status.reason == "Conflict"
                && status.message.contains("conflict") =>
        {
            ApplyError::Conflict {
                object: rendered.display_name(),
                conflicts: conflicts_of(status),
            }
            .into()
        }
        Some(status) if matches!(status.code, 400 | 403 | 404 | 409 | 422) => {
            ApplyError::Rejected {
                object: rendered.display_name(),
                source_file: rendered.source.clone(),
                message: format!("{} ({})", status.message, status.reason),
            }
            .into()
        }
        _ => anyhow::Error::from(error).context(format!(
            "applying {} from {}",
            rendered.display_name(),
            rendered.source
        )),
    }
}

/// Deletes what this tool applied before and the manifests dropped: labelled managed-by
/// jisu-deploy *and* with jisu-deploy as an apply manager, so an object someone else
/// labelled by hand is never touched.
async fn prune(
    client: &kube::Client,
    namespace: &str,
    objects: &[Rendered],
    kinds: &BTreeMap<String, (ApiResource, Scope)>,
    dry_run: bool,
) -> anyhow::Result<Vec<String>> {
    let mut resources: BTreeMap<String, ApiResource> = kinds
        .iter()
        .filter(|(_, (_, scope))| matches!(scope, Scope::Namespaced))
        .map(|(kind, (resource, _))| (kind.clone(), resource.clone()))
        .collect();
    for (group, version, kind) in PRUNE_KINDS {
        if !resources.contains_key(*kind) {
            let api_version = if group.is_empty() {
                (*version).to_owned()
            } else {
                format!("{group}/{version}")
            };
            let (resource, _) = resolve_kind(client, &api_version, kind).await?;
            resources.insert((*kind).to_owned(), resource);
        }
    }
    let keep: BTreeSet<(String, String)> = objects
        .iter()
        .map(|o| (o.kind.clone(), o.name.clone()))
        .collect();
    let selector = format!("{MANAGED_BY}={MANAGER}");
    let mut pruned = Vec::new();
    for (kind, resource) in &resources {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
        let params = ListParams::default().labels(&selector);
        let listed = retrying(&format!("list {kind}"), || api.list(&params))
            .await
            .with_context(|| format!("listing {kind} objects to prune"))?;
        for object in listed.items {
            let name = object.metadata.name.clone().unwrap_or_default();
            let applied_by_us = object.metadata.managed_fields.iter().flatten().any(|m| {
                m.manager.as_deref() == Some(MANAGER) && m.operation.as_deref() == Some("Apply")
            });
            if keep.contains(&(kind.clone(), name.clone())) || !applied_by_us {
                continue;
            }
            let params = DeleteParams {
                dry_run,
                ..DeleteParams::background()
            };
            match retrying(&format!("delete {kind}/{name}"), || {
                api.delete(&name, &params)
            })
            .await
            {
                Ok(_) => {}
                Err(error) if error.code() == Some(404) => {}
                Err(error) => {
                    return Err(
                        anyhow::Error::from(error).context(format!("pruning {kind}/{name}"))
                    );
                }
            }
            info!(
                "- {kind}/{name} (pruned{})",
                if dry_run { ", dry run" } else { "" }
            );
            pruned.push(format!("{kind}/{name}"));
        }
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_name_the_field_and_the_manager() {
        let status: kube::core::Status = serde_json::from_str(r#"{
          "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409, "reason": "Conflict",
          "message": "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.template.spec.containers[name=\"backend\"].image",
          "details": {"name": "backend", "group": "apps", "kind": "deployments", "causes": [
            {"reason": "FieldManagerConflict", "message": "conflict with \"kubectl-edit\" using apps/v1",
             "field": ".spec.template.spec.containers[name=\"backend\"].image"}]}}"#).unwrap();
        let conflicts = conflicts_of(&status);
        assert_eq!(
            conflicts,
            [FieldConflict {
                manager: "kubectl-edit".into(),
                field: ".spec.template.spec.containers[name=\"backend\"].image".into(),
            }]
        );
        let error = ApplyError::Conflict {
            object: "Deployment/backend".into(),
            conflicts,
        };
        let text = error.to_string();
        assert!(text.contains("field .spec.template.spec.containers[name=\"backend\"].image is owned by manager \"kubectl-edit\""), "{text}");
        assert!(text.contains("--force-conflicts"), "{text}");
    }

    #[test]
    fn a_conflict_without_causes_keeps_the_message() {
        let status = kube::core::Status {
            code: 409,
            reason: "Conflict".into(),
            message: "Apply failed with 1 conflict: conflict with \"helm\": .data.x".into(),
            ..Default::default()
        };
        assert_eq!(conflicts_of(&status)[0].manager, "helm");
    }
}
