//! The blue-green steps of a deploy job: read the live color, size and apply the idle
//! color beside it, switch the routed Services, verify and switch back on failure, and
//! mark the previous color with the time it may be scaled down.
//!
//! The rendering rules are in [`crate::kube::color`] and the Service patches in
//! [`crate::kube::traffic`]; this module holds what one job learns as it goes (the live
//! color, what was switched) and the order of the calls.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::Done;
use crate::config::pipeline::HttpCheck;
use crate::error::InputError;
use crate::kube::color::{Color, Layout, SCALE_DOWN_AFTER, interrupted_switch, live_color};
use crate::kube::render::Rendered;
use crate::kube::retry::{CallError, retrying};
use crate::kube::traffic::{self, SWITCH_MANAGER};
use crate::kube::{checks, watch};

/// What a blue-green job has learned so far.
#[derive(Debug, Default)]
pub struct BlueGreen {
    /// Base workloads and routed Services, from the rendered manifests.
    pub layout: Layout,
    /// The live color, once read (`Some(None)`: no color is live yet).
    live: Option<Option<Color>>,
    /// The switch made: namespace, from, to.
    switched: Option<(String, Option<Color>, Color)>,
    /// This job applied the idle color (a deploy); without it, a switch is a rollback to
    /// the color kept from the previous deploy.
    pub applied_idle: bool,
}

/// The switched traffic did not hold up; it was switched back (or could not be).
#[derive(Debug, thiserror::Error)]
#[error("verification after the switch to {to} failed: {reason}; {outcome}")]
pub struct VerifyFailed {
    /// The color traffic had been switched to.
    pub to: Color,
    /// What failed.
    pub reason: String,
    /// Where traffic is now.
    pub outcome: String,
}

fn describe(color: Option<Color>) -> String {
    color.map_or_else(
        || "the un-colored Deployments".to_owned(),
        |c| c.to_string(),
    )
}

impl BlueGreen {
    /// What runs now, for the deployment record: the colors, once known.
    pub fn summary(&self) -> String {
        match (&self.switched, self.live) {
            (Some((_, from, to)), _) => format!("{to} live (was {})", describe(*from)),
            (None, Some(Some(live))) => format!("{live} live"),
            _ => "deployed".to_owned(),
        }
    }

    /// Whether this job has switched traffic.
    pub fn has_switched(&self) -> bool {
        self.switched.is_some()
    }

    /// The live color read by the `live-color` step.
    pub fn live(&self) -> anyhow::Result<Option<Color>> {
        self.live
            .context("the live color was not read: the `live-color` step did not run")
    }

    /// The color this job deploys: the one that is not live (blue for the first deploy).
    pub fn idle(&self) -> anyhow::Result<Color> {
        Ok(self.live()?.map_or(Color::Blue, Color::other))
    }

    /// Reads what every routed Service selects. Services that disagree are bad input: the
    /// error says which select what, and nothing is changed.
    pub async fn read_live(
        &mut self,
        kube: &kube::Client,
        namespace: &str,
    ) -> anyhow::Result<Done> {
        let (colors, marks) = traffic::read_colors(kube, namespace, &self.layout.routed).await?;
        let live = match live_color(&colors) {
            Ok(live) => live,
            Err(error) => match interrupted_switch(&colors, &marks) {
                // A run was killed halfway through a switch: its verification never
                // passed, so the Services it moved go back.
                Some((back_to, moved)) => {
                    let moved_to = moved.first().and_then(|s| colors.get(s).copied().flatten());
                    warn!(
                        services = %moved.join(", "),
                        back_to = %describe(back_to),
                        "an earlier run was stopped halfway through a switch; moving its Services back"
                    );
                    traffic::switch(kube, namespace, &moved, moved_to, back_to).await?;
                    back_to
                }
                None => {
                    return Err(InputError::new(
                        format!("namespace {namespace}"),
                        None,
                        error.to_string(),
                    )
                    .into());
                }
            },
        };
        self.live = Some(live);
        let idle = self.idle()?;
        info!(live = %describe(live), idle = %idle, "live color");
        Ok(Done::Ran(BTreeMap::from([
            (
                "live".to_owned(),
                live.map_or("none", Color::as_str).to_owned(),
            ),
            ("idle".to_owned(), idle.as_str().to_owned()),
            ("services".to_owned(), self.layout.routed.join(",")),
        ])))
    }

    /// Sizes the idle color's Deployments to what the live color runs now: their
    /// `spec.replicas`, and their HPA's `minReplicas` raised to it (an HPA would otherwise
    /// shrink the idle color, which has no traffic, before the switch). Reads the live
    /// colored Deployments, or the un-colored ones on the first deploy.
    pub async fn size(
        &self,
        kube: &kube::Client,
        namespace: &str,
        objects: &mut [Rendered],
    ) -> anyhow::Result<()> {
        let live = self.live()?;
        let idle = self.idle()?;
        let api: Api<Deployment> = Api::namespaced(kube.clone(), namespace);
        let mut counts = BTreeMap::new();
        for base in &self.layout.workloads {
            let name = live.map_or_else(|| base.clone(), |c| c.name(base));
            if let Some(running) = get_deployment(&api, &name).await? {
                let replicas = running.spec.and_then(|s| s.replicas).unwrap_or(1);
                counts.insert(idle.name(base), replicas);
            }
        }
        for object in objects.iter_mut() {
            match object.kind.as_str() {
                "Deployment" => {
                    if let Some(count) = counts.get(&object.name) {
                        object.object["spec"]["replicas"] = json!(count);
                    }
                }
                "HorizontalPodAutoscaler" => {
                    let target = object
                        .object
                        .pointer("/spec/scaleTargetRef/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if let Some(count) = counts.get(target) {
                        let spec = &mut object.object["spec"];
                        let min = spec["minReplicas"].as_i64().unwrap_or(1);
                        let max = spec["maxReplicas"].as_i64().unwrap_or(i64::MAX);
                        spec["minReplicas"] = json!(min.max(i64::from(*count)).min(max));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Points every routed Service at the idle color, never at one without ready Pods. In
    /// a rollback (nothing applied by this job) the idle color is the previous one: it must
    /// exist, and if it was scaled down it is scaled back up to the live color's size and
    /// waited for (`server` and `timeout` are for that wait) before any traffic moves.
    pub async fn switch(
        &mut self,
        kube: &kube::Client,
        server: &str,
        namespace: &str,
        timeout: Duration,
    ) -> anyhow::Result<Done> {
        let (from, to) = (self.live()?, self.idle()?);
        if !self.applied_idle {
            let live = from.ok_or_else(|| {
                InputError::new(
                    format!("namespace {namespace}"),
                    None,
                    "no color is live yet: there is no other color to switch or roll back to",
                )
            })?;
            self.warm_up(kube, server, namespace, live, to, timeout)
                .await?;
        }
        let switched =
            traffic::switch(kube, namespace, &self.layout.routed, from, Some(to)).await?;
        self.switched = Some((namespace.to_owned(), from, to));
        info!(from = %describe(from), %to, window_ms = switched.window.as_millis(), "switched traffic");
        Ok(Done::Ran(BTreeMap::from([
            (
                "from".to_owned(),
                from.map_or("none", Color::as_str).to_owned(),
            ),
            ("to".to_owned(), to.as_str().to_owned()),
            ("services".to_owned(), switched.services.join(",")),
            (
                "switch_window_ms".to_owned(),
                switched.window.as_millis().to_string(),
            ),
        ])))
    }

    /// Makes `target` ready to take traffic from `live` again: each of its Deployments must
    /// exist; one scaled to zero is sized like the live one and waited for.
    async fn warm_up(
        &self,
        kube: &kube::Client,
        server: &str,
        namespace: &str,
        live: Color,
        target: Color,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let api: Api<Deployment> = Api::namespaced(kube.clone(), namespace);
        let mut scaled = Vec::new();
        for base in &self.layout.workloads {
            let name = target.name(base);
            let Some(previous) = get_deployment(&api, &name).await? else {
                return Err(InputError::new(
                    format!("namespace {namespace}"),
                    None,
                    format!("there is no other color to switch or roll back to: Deployment `{name}` does not exist"),
                )
                .into());
            };
            if previous.spec.and_then(|s| s.replicas) == Some(0) {
                let size = get_deployment(&api, &live.name(base))
                    .await?
                    .and_then(|d| d.spec?.replicas)
                    .unwrap_or(1)
                    .max(1);
                merge(&api, &name, json!({"spec": {"replicas": size}})).await?;
                restore_autoscalers(kube, namespace, &name).await?;
                scaled.push(name);
            }
        }
        if !scaled.is_empty() {
            info!(deployments = %scaled.join(", "), "scaled the previous color back up");
            watch::wait_for_rollouts(kube, server, namespace, &scaled, timeout).await?;
        }
        Ok(())
    }

    /// Watches the new color for `watch_for`: every routed Service keeps ready Pods, and the
    /// environment's checks pass at the start and at the end. On failure traffic goes back
    /// to the previous color (if it still has ready Pods) and the step fails.
    pub async fn verify(
        &mut self,
        kube: &kube::Client,
        base_url: &str,
        checks: &[HttpCheck],
        watch_for: Duration,
        interval: Duration,
    ) -> anyhow::Result<Done> {
        let (namespace, from, to) = self
            .switched
            .clone()
            .context("nothing was switched: the `switch` step did not run")?;
        let namespace = namespace.as_str();
        let Err(reason) = self
            .watch(kube, namespace, base_url, checks, watch_for, interval)
            .await
        else {
            return Ok(Done::Ran(BTreeMap::from([
                ("color".to_owned(), to.as_str().to_owned()),
                ("environment_url".to_owned(), base_url.to_owned()),
            ])));
        };
        warn!(%reason, "verification failed; switching back");
        let outcome =
            match traffic::switch(kube, namespace, &self.layout.routed, Some(to), from).await {
                Ok(_) => {
                    self.switched = None;
                    self.live = Some(from);
                    format!("traffic was switched back to {}", describe(from))
                }
                Err(error) => format!("switching back failed ({error}); traffic stays on {to}"),
            };
        Err(VerifyFailed {
            to,
            reason,
            outcome,
        }
        .into())
    }

    async fn watch(
        &self,
        kube: &kube::Client,
        namespace: &str,
        base_url: &str,
        checks: &[HttpCheck],
        watch_for: Duration,
        interval: Duration,
    ) -> Result<(), String> {
        let run_checks = || async {
            if checks.is_empty() {
                return Ok(());
            }
            checks::require_http_checks(base_url, checks, interval)
                .await
                .map_err(|e| format!("{e:#}"))
        };
        run_checks().await?;
        let to = self.switched.as_ref().map(|(_, _, to)| *to);
        let deadline = Instant::now() + watch_for;
        let services: Api<k8s_openapi::api::core::v1::Service> =
            Api::namespaced(kube.clone(), namespace);
        loop {
            for name in &self.layout.routed {
                let service = retrying("read a Service", || services.get(name))
                    .await
                    .map_err(|e| format!("reading Service `{name}`: {e}"))?;
                let value = serde_json::to_value(&service).unwrap_or_default();
                let selector = traffic::selector_of(&value);
                let ready = traffic::ready_pods(kube, namespace, &selector, to)
                    .await
                    .map_err(|e| format!("counting ready Pods of `{name}`: {e}"))?;
                if ready == 0 {
                    return Err(format!("Service `{name}` has no ready Pod"));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            tokio::time::sleep(interval.min(deadline - now)).await;
        }
        run_checks().await
    }

    /// Scales down what has been kept long enough: the previous color's Deployments whose
    /// `scale-down-after` time has passed (their HPAs lowered first, so they do not scale
    /// them back up; the old bounds are kept in annotations for a rollback to restore), and
    /// adopted un-colored Deployments past theirs, deleted with their HPAs. What is live or
    /// still inside its keep time is left alone.
    pub async fn cleanup(&self, kube: &kube::Client, namespace: &str) -> anyhow::Result<Done> {
        let Some(live) = self.live()? else {
            return Ok(Done::Skipped(format!(
                "no color is live in {namespace} yet; nothing to clean up"
            )));
        };
        let api: Api<Deployment> = Api::namespaced(kube.clone(), namespace);
        let now = jiff::Timestamp::now();
        let due = |deployment: &Deployment| -> Option<bool> {
            let at = deployment
                .metadata
                .annotations
                .as_ref()?
                .get(SCALE_DOWN_AFTER)?;
            Some(at.parse::<jiff::Timestamp>().ok()? <= now)
        };
        let (mut scaled, mut deleted, mut kept) = (Vec::new(), Vec::new(), Vec::new());
        for base in &self.layout.workloads {
            let previous = live.other().name(base);
            if let Some(deployment) = get_deployment(&api, &previous).await? {
                let running = deployment.spec.as_ref().and_then(|s| s.replicas) != Some(0);
                match due(&deployment) {
                    Some(true) if running => {
                        lower_autoscalers(kube, namespace, &previous).await?;
                        merge(&api, &previous, json!({"spec": {"replicas": 0}})).await?;
                        scaled.push(previous);
                    }
                    Some(false) if running => kept.push(previous),
                    _ => {}
                }
            }
            // An adopted un-colored Deployment: no Service selects it once a color is live.
            if let Some(deployment) = get_deployment(&api, base).await?
                && due(&deployment) == Some(true)
            {
                delete_autoscalers(kube, namespace, base).await?;
                let params = DeleteParams::default();
                retrying("delete a Deployment", || api.delete(base, &params)).await?;
                deleted.push(base.clone());
            }
        }
        info!(scaled = %scaled.join(", "), deleted = %deleted.join(", "), kept = %kept.join(", "), "cleanup");
        Ok(Done::Ran(BTreeMap::from([
            ("scaled_down".to_owned(), scaled.join(",")),
            ("deleted".to_owned(), deleted.join(",")),
            ("kept".to_owned(), kept.join(",")),
        ])))
    }

    /// Leaves the previous color running and marks its Deployments with the time after
    /// which they may be scaled down.
    pub async fn keep_previous(
        &self,
        kube: &kube::Client,
        namespace: &str,
        keep_for: Duration,
    ) -> anyhow::Result<Done> {
        let from = self
            .switched
            .as_ref()
            .map(|(_, from, _)| *from)
            .context("nothing was switched: the `switch` step did not run")?;
        let until = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::try_from(keep_for)?)
            .context("keep_previous_for is too long")?;
        let api: Api<Deployment> = Api::namespaced(kube.clone(), namespace);
        let mut marked = Vec::new();
        for base in &self.layout.workloads {
            let name = from.map_or_else(|| base.clone(), |c| c.name(base));
            if get_deployment(&api, &name).await?.is_none() {
                continue;
            }
            let patch = json!({"metadata": {"annotations": {SCALE_DOWN_AFTER: until.to_string()}}});
            merge(&api, &name, patch).await?;
            marked.push(name);
        }
        Ok(Done::Ran(BTreeMap::from([
            (
                "previous".to_owned(),
                from.map_or("none", Color::as_str).to_owned(),
            ),
            ("kept".to_owned(), marked.join(",")),
            ("scale_down_after".to_owned(), until.to_string()),
        ])))
    }
}

async fn get_deployment(
    api: &Api<Deployment>,
    name: &str,
) -> Result<Option<Deployment>, CallError> {
    retrying("read a Deployment", || api.get_opt(name)).await
}

/// Annotations keeping an HPA's bounds while it is lowered for a scaled-down color.
const HELD_MIN: &str = "jisu.dev/held-min-replicas";
const HELD_MAX: &str = "jisu.dev/held-max-replicas";

/// The HPAs (in `api`'s namespace) scaling Deployment `target`.
async fn autoscalers_of(
    api: &Api<HorizontalPodAutoscaler>,
    target: &str,
) -> Result<Vec<HorizontalPodAutoscaler>, CallError> {
    let params = ListParams::default();
    let all = retrying("list HPAs", || api.list(&params)).await?;
    Ok(all
        .items
        .into_iter()
        .filter(|hpa| {
            hpa.spec.as_ref().is_some_and(|s| {
                s.scale_target_ref.kind == "Deployment" && s.scale_target_ref.name == target
            })
        })
        .collect())
}

/// Lowers every HPA of `target` to one replica, keeping its bounds in annotations (with
/// the Deployment at zero replicas the HPA then stays idle instead of scaling it back up).
async fn lower_autoscalers(
    kube: &kube::Client,
    namespace: &str,
    target: &str,
) -> Result<(), CallError> {
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(kube.clone(), namespace);
    for hpa in autoscalers_of(&api, target).await? {
        let name = hpa.metadata.name.clone().unwrap_or_default();
        let spec = hpa.spec.unwrap_or_default();
        let held = hpa.metadata.annotations.unwrap_or_default();
        // Lowered already (a re-run): keep the bounds recorded the first time.
        let min = held
            .get(HELD_MIN)
            .cloned()
            .unwrap_or_else(|| spec.min_replicas.unwrap_or(1).to_string());
        let max = held
            .get(HELD_MAX)
            .cloned()
            .unwrap_or_else(|| spec.max_replicas.to_string());
        let patch = json!({
            "metadata": {"annotations": {HELD_MIN: min, HELD_MAX: max}},
            "spec": {"minReplicas": 1, "maxReplicas": 1},
        });
        merge(&api, &name, patch).await?;
    }
    Ok(())
}

/// Gives every lowered HPA of `target` its bounds back.
async fn restore_autoscalers(
    kube: &kube::Client,
    namespace: &str,
    target: &str,
) -> Result<(), CallError> {
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(kube.clone(), namespace);
    for hpa in autoscalers_of(&api, target).await? {
        let name = hpa.metadata.name.clone().unwrap_or_default();
        let held = hpa.metadata.annotations.unwrap_or_default();
        let (Some(min), Some(max)) = (
            held.get(HELD_MIN).and_then(|v| v.parse::<i32>().ok()),
            held.get(HELD_MAX).and_then(|v| v.parse::<i32>().ok()),
        ) else {
            continue;
        };
        let patch = json!({
            "metadata": {"annotations": {HELD_MIN: null, HELD_MAX: null}},
            "spec": {"minReplicas": min, "maxReplicas": max},
        });
        merge(&api, &name, patch).await?;
    }
    Ok(())
}

/// Deletes every HPA of `target`.
async fn delete_autoscalers(
    kube: &kube::Client,
    namespace: &str,
    target: &str,
) -> Result<(), CallError> {
    let api: Api<HorizontalPodAutoscaler> = Api::namespaced(kube.clone(), namespace);
    for hpa in autoscalers_of(&api, target).await? {
        let name = hpa.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams::default();
        retrying("delete an HPA", || api.delete(&name, &params)).await?;
    }
    Ok(())
}

/// A merge patch (idempotent, so retried) by the switch's field manager.
async fn merge<K>(api: &Api<K>, name: &str, patch: Value) -> Result<(), CallError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PatchParams::apply(SWITCH_MANAGER);
    let patch = Patch::Merge(&patch);
    retrying("patch", || api.patch(name, &params, &patch)).await?;
    Ok(())
}
