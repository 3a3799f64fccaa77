//! What runs in an environment now, read from the cluster: which color the routed Services
//! select and since when, each Deployment's images, commit and ready Pods, the previous
//! color and until when it is kept, and who holds the deploy lock. Reads only.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde::Serialize;

use super::color::{Color, SCALE_DOWN_AFTER, ServiceColors, SwitchMarks, live_color};
use super::lock;
use super::render::VERSION;
use super::traffic;
use crate::output;

/// One Deployment as it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkloadStatus {
    /// Deployment name.
    pub name: String,
    /// The commit it was deployed from (its version label).
    pub sha: Option<String>,
    /// Container images, in order.
    pub images: Vec<String>,
    /// Desired replicas.
    pub replicas: i32,
    /// Ready replicas.
    pub ready: i32,
    /// When it may be scaled down, for a kept previous color.
    pub scale_down_after: Option<String>,
}

/// Who holds the deploy lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockStatus {
    /// `holderIdentity`.
    pub holder: String,
    /// The holder's run, when known.
    pub run_url: Option<String>,
    /// When the claim runs out unless renewed.
    pub expires: String,
}

/// An environment's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvironmentStatus {
    /// Environment name.
    pub environment: String,
    /// Namespace.
    pub namespace: String,
    /// `blue-green` or `rolling`.
    pub strategy: String,
    /// The live color (blue-green; `None` before the first deploy or when the Services
    /// disagree).
    pub live: Option<Color>,
    /// Since when, from the last switch's mark.
    pub live_since: Option<String>,
    /// What each routed Service selects.
    pub services: BTreeMap<String, Option<Color>>,
    /// The live Deployments (the live color's, or the rolling ones).
    pub workloads: Vec<WorkloadStatus>,
    /// The other color, kept for rollback (blue-green).
    pub previous: Option<Color>,
    /// Its Deployments.
    pub previous_workloads: Vec<WorkloadStatus>,
    /// The deploy lock, when held.
    pub lock: Option<LockStatus>,
    /// Something to fix, when the state is not one a deploy can start from.
    pub problem: Option<String>,
    /// The environment's newest GitHub deployment record, when GitHub was asked.
    pub record: Option<crate::github::deployments::LastRecord>,
}

/// What to read: the environment, and the names the pipeline file gives.
#[derive(Debug, Clone)]
pub struct StatusRequest {
    /// Environment name.
    pub environment: String,
    /// Namespace.
    pub namespace: String,
    /// Whether it deploys blue-green.
    pub blue_green: bool,
    /// Deployment (and routed Service) names of the components.
    pub workloads: Vec<String>,
    /// The deploy lock's Lease name.
    pub lease: String,
}

/// Reads the environment's state.
pub async fn read(
    client: &kube::Client,
    request: &StatusRequest,
) -> anyhow::Result<EnvironmentStatus> {
    let namespace = request.namespace.as_str();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let lock = lock::current_claim(client, namespace, &request.lease)
        .await?
        .map(|claim| LockStatus {
            holder: claim.holder,
            run_url: claim.run_url,
            expires: claim.expires.to_string(),
        });
    let mut status = EnvironmentStatus {
        environment: request.environment.clone(),
        namespace: namespace.to_owned(),
        strategy: if request.blue_green {
            "blue-green"
        } else {
            "rolling"
        }
        .to_owned(),
        live: None,
        live_since: None,
        services: BTreeMap::new(),
        workloads: Vec::new(),
        previous: None,
        previous_workloads: Vec::new(),
        lock,
        problem: None,
        record: None,
    };
    if !request.blue_green {
        status.workloads = workloads(&deployments, &request.workloads, None).await?;
        return Ok(status);
    }
    let (colors, marks) = traffic::read_colors(client, namespace, &request.workloads).await?;
    status.services = colors.clone();
    match live_color(&colors) {
        Ok(live) => {
            status.live = live;
            status.live_since = since(&colors, &marks, live);
        }
        Err(error) => status.problem = Some(error.to_string()),
    }
    if let Some(live) = status.live {
        status.workloads = workloads(&deployments, &request.workloads, Some(live)).await?;
        let previous = live.other();
        let kept = workloads(&deployments, &request.workloads, Some(previous)).await?;
        if !kept.is_empty() {
            status.previous = Some(previous);
            status.previous_workloads = kept;
        }
    }
    Ok(status)
}

/// When the live color became live: the time in the last switch's mark, if every Service
/// carries the same one.
fn since(colors: &ServiceColors, marks: &SwitchMarks, live: Option<Color>) -> Option<String> {
    let mut ids = colors.keys().map(|service| {
        marks
            .get(service)
            .filter(|m| m.to == live)
            .map(|m| m.id.clone())
    });
    let first = ids.next()??;
    if !ids.all(|id| id.as_deref() == Some(first.as_str())) {
        return None;
    }
    let millis: i64 = first.split('-').next()?.parse().ok()?;
    jiff::Timestamp::from_millisecond(millis)
        .ok()
        .map(|t| t.to_string())
}

async fn workloads(
    api: &Api<Deployment>,
    bases: &[String],
    color: Option<Color>,
) -> anyhow::Result<Vec<WorkloadStatus>> {
    let mut found = Vec::new();
    for base in bases {
        let name = color.map_or_else(|| base.clone(), |c| c.name(base));
        let Some(deployment) = api.get_opt(&name).await? else {
            continue;
        };
        let labels = deployment.metadata.labels.clone().unwrap_or_default();
        let annotations = deployment.metadata.annotations.clone().unwrap_or_default();
        let spec = deployment.spec.clone().unwrap_or_default();
        let images = spec
            .template
            .spec
            .map(|pod| pod.containers.into_iter().filter_map(|c| c.image).collect())
            .unwrap_or_default();
        found.push(WorkloadStatus {
            name,
            sha: labels.get(VERSION).cloned(),
            images,
            replicas: spec.replicas.unwrap_or(1),
            ready: deployment
                .status
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0),
            scale_down_after: annotations.get(SCALE_DOWN_AFTER).cloned(),
        });
    }
    Ok(found)
}

/// The status for a terminal or log; every value from the cluster is escaped.
pub fn text(status: &EnvironmentStatus) -> String {
    let mut out = String::new();
    let line = |out: &mut String, text: String| output::push_line(out, &text);
    line(
        &mut out,
        format!(
            "{} ({}, namespace {})",
            status.environment, status.strategy, status.namespace
        ),
    );
    if let Some(problem) = &status.problem {
        line(&mut out, format!("  problem: {problem}"));
    }
    if status.strategy == "blue-green" {
        let live = status.live.map_or("none yet", Color::as_str);
        let since = status
            .live_since
            .as_ref()
            .map(|s| format!(" since {s}"))
            .unwrap_or_default();
        line(&mut out, format!("  live color: {live}{since}"));
    }
    for workload in &status.workloads {
        line(&mut out, format!("    {}", describe(workload)));
    }
    if let Some(previous) = status.previous {
        line(
            &mut out,
            format!("  previous color: {previous} (kept for rollback)"),
        );
        for workload in &status.previous_workloads {
            line(&mut out, format!("    {}", describe(workload)));
        }
    }
    match &status.lock {
        Some(lock) => line(
            &mut out,
            format!(
                "  lock: held by {}{} until {}",
                lock.holder,
                lock.run_url
                    .as_ref()
                    .map(|u| format!(" ({u})"))
                    .unwrap_or_default(),
                lock.expires
            ),
        ),
        None => line(&mut out, "  lock: free".to_owned()),
    }
    if let Some(record) = &status.record {
        line(
            &mut out,
            format!(
                "  last GitHub deployment: #{} of {} at {}: {}{}",
                record.id,
                &record.sha[..record.sha.len().min(7)],
                record.created_at,
                record.state.as_deref().unwrap_or("no status"),
                record
                    .description
                    .as_ref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
        );
    }
    out
}

fn describe(workload: &WorkloadStatus) -> String {
    let sha = workload
        .sha
        .as_deref()
        .map(|s| format!(" at {}", &s[..s.len().min(7)]))
        .unwrap_or_default();
    let kept = workload
        .scale_down_after
        .as_ref()
        .map(|t| format!(", scale down after {t}"))
        .unwrap_or_default();
    format!(
        "{}{sha}: {}/{} ready, {}{kept}",
        workload.name,
        workload.ready,
        workload.replicas,
        workload.images.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::color::SwitchMark;

    #[test]
    fn live_since_comes_from_the_last_switch_every_service_carries() {
        let colors: ServiceColors = [
            ("a".to_owned(), Some(Color::Green)),
            ("b".to_owned(), Some(Color::Green)),
        ]
        .into();
        let mark = |id: &str| SwitchMark {
            from: Some(Color::Blue),
            to: Some(Color::Green),
            id: id.to_owned(),
        };
        let marks: SwitchMarks = [
            ("a".to_owned(), mark("1700000000000-7")),
            ("b".to_owned(), mark("1700000000000-7")),
        ]
        .into();
        assert_eq!(
            since(&colors, &marks, Some(Color::Green)).as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        let mixed: SwitchMarks = [
            ("a".to_owned(), mark("1700000000000-7")),
            ("b".to_owned(), mark("1600000000000-7")),
        ]
        .into();
        assert_eq!(since(&colors, &mixed, Some(Color::Green)), None);
    }

    #[test]
    fn the_text_shows_colors_workloads_and_the_lock() {
        let workload = |name: &str| WorkloadStatus {
            name: name.to_owned(),
            sha: Some("3f2c1e0d9b8a".to_owned()),
            images: vec!["r/b@sha256:1".to_owned()],
            replicas: 3,
            ready: 3,
            scale_down_after: None,
        };
        let status = EnvironmentStatus {
            environment: "production".into(),
            namespace: "jisu-prod".into(),
            strategy: "blue-green".into(),
            live: Some(Color::Green),
            live_since: None,
            services: BTreeMap::new(),
            workloads: vec![workload("backend-green")],
            previous: Some(Color::Blue),
            previous_workloads: vec![WorkloadStatus {
                scale_down_after: Some("2026-12-01T13:00:00Z".into()),
                ..workload("backend-blue")
            }],
            lock: None,
            problem: None,
            record: None,
        };
        assert_eq!(
            text(&status),
            "production (blue-green, namespace jisu-prod)\n  live color: green\n    backend-green at 3f2c1e0: 3/3 ready, r/b@sha256:1\n  previous color: blue (kept for rollback)\n    backend-blue at 3f2c1e0: 3/3 ready, r/b@sha256:1, scale down after 2026-12-01T13:00:00Z\n  lock: free\n"
        );
    }
}
