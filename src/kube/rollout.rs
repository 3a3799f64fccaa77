//! Pure rollout decisions: is a Deployment complete by kubectl's rules, and is a Pod failing
//! in a way that waiting will not fix. The watcher (`watch.rs`) feeds these every object it
//! sees; they never do I/O, so they are tested on real status JSON below.

use std::fmt;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// Where a Deployment's rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Complete: every replica updated and available, nothing old left.
    Complete,
    /// Still going; the text is what kubectl would print.
    Waiting(String),
    /// The controller gave up (`ProgressDeadlineExceeded`); waiting longer will not help.
    DeadlineExceeded(String),
}

/// Judges a Deployment as `kubectl rollout status` does. Unlike kube-runtime's
/// `is_deployment_completed`, a status the controller computed for an older generation
/// (`observedGeneration < generation`) never counts: right after an apply, the old
/// ReplicaSet's fully-available status would otherwise read as "done".
pub fn deployment_progress(deployment: &Deployment) -> Progress {
    let name = deployment.metadata.name.as_deref().unwrap_or("?");
    let generation = deployment.metadata.generation.unwrap_or(0);
    let Some(status) = &deployment.status else {
        return Progress::Waiting("waiting for the deployment's first status".to_owned());
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return Progress::Waiting(
            "waiting for the deployment spec update to be observed".to_owned(),
        );
    }
    let timed_out = status.conditions.iter().flatten().find(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if let Some(condition) = timed_out {
        return Progress::DeadlineExceeded(format!(
            "deployment \"{name}\" exceeded its progress deadline: {}",
            condition.message.as_deref().unwrap_or("no message")
        ));
    }
    // The API server defaults spec.replicas to 1; an HPA sets it explicitly.
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < wanted {
        return Progress::Waiting(format!(
            "{updated} out of {wanted} new replicas have been updated"
        ));
    }
    if replicas > updated {
        return Progress::Waiting(format!(
            "{} old replicas are pending termination",
            replicas - updated
        ));
    }
    if available < updated {
        return Progress::Waiting(format!(
            "{available} of {updated} updated replicas are available"
        ));
    }
    Progress::Complete
}

/// Container states that mean the rollout cannot finish by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// The container keeps exiting and the kubelet backs off restarting it.
    CrashLoopBackOff,
    /// The image cannot be pulled and the kubelet backs off retrying.
    ImagePullBackOff,
    /// The image pull failed (wrong name, no such digest, no access).
    ErrImagePull,
    /// The container's configuration refers to something missing (a Secret or ConfigMap key).
    CreateContainerConfigError,
    /// The image reference is malformed.
    InvalidImageName,
}

impl FailureReason {
    fn from_waiting(reason: &str) -> Option<Self> {
        Some(match reason {
            "CrashLoopBackOff" => Self::CrashLoopBackOff,
            "ImagePullBackOff" => Self::ImagePullBackOff,
            "ErrImagePull" => Self::ErrImagePull,
            "CreateContainerConfigError" => Self::CreateContainerConfigError,
            "InvalidImageName" => Self::InvalidImageName,
            _ => return None,
        })
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::CrashLoopBackOff => "CrashLoopBackOff",
            Self::ImagePullBackOff => "ImagePullBackOff",
            Self::ErrImagePull => "ErrImagePull",
            Self::CreateContainerConfigError => "CreateContainerConfigError",
            Self::InvalidImageName => "InvalidImageName",
        })
    }
}

/// A Pod failing for good, with the Pod's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFailure {
    /// The Pod.
    pub pod: String,
    /// The failing container.
    pub container: String,
    /// Why.
    pub reason: FailureReason,
    /// The kubelet's message, plus the last exit for a crash loop.
    pub message: String,
}

/// The first container (init containers first) of `pod` that is failing for good.
pub fn pod_failure(pod: &Pod) -> Option<PodFailure> {
    let status = pod.status.as_ref()?;
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    containers.filter_map(|c| container_failure(pod, c)).next()
}

fn container_failure(pod: &Pod, container: &ContainerStatus) -> Option<PodFailure> {
    let waiting = container.state.as_ref()?.waiting.as_ref()?;
    let reason = FailureReason::from_waiting(waiting.reason.as_deref()?)?;
    let mut message = waiting.message.clone().unwrap_or_default();
    let last_exit = container
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    if let Some(exit) = last_exit {
        let mut last = format!("last exit code {}", exit.exit_code);
        if let Some(why) = &exit.reason {
            last.push_str(&format!(" ({why})"));
        }
        if let Some(text) = exit.message.as_deref().filter(|m| !m.is_empty()) {
            last.push_str(&format!(": {}", text.trim()));
        }
        last.push_str(&format!(", {} restarts", container.restart_count));
        message = if message.is_empty() {
            last
        } else {
            format!("{message}; {last}")
        };
    }
    Some(PodFailure {
        pod: pod.metadata.name.clone().unwrap_or_default(),
        container: container.name.clone(),
        reason,
        message,
    })
}

/// How many replicas to show in a progress line: `(available, wanted)`.
pub fn availability(deployment: &Deployment) -> (i32, i32) {
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let available = deployment
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    (available, wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(json: &str) -> Deployment {
        serde_json::from_str(json).expect("valid Deployment JSON")
    }

    /// A real status right after `kubectl apply` changed the image: the controller has
    /// not yet seen generation 3, and the numbers still describe the old, complete rollout.
    const JUST_APPLIED: &str = r#"{
      "apiVersion": "apps/v1", "kind": "Deployment",
      "metadata": {"name": "backend", "namespace": "jisu-staging", "generation": 3,
                   "annotations": {"deployment.kubernetes.io/revision": "2"}},
      "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "backend"}},
               "template": {"metadata": {"labels": {"app": "backend"}},
                            "spec": {"containers": [{"name": "backend", "image": "b"}]}}},
      "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3,
                 "readyReplicas": 3, "availableReplicas": 3,
                 "conditions": [
                   {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                    "message": "Deployment has minimum availability."},
                   {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                    "message": "ReplicaSet \"backend-6d4cf56db6\" has successfully progressed."}]}
    }"#;

    #[test]
    fn a_status_for_an_older_generation_is_not_complete() {
        let d = deployment(JUST_APPLIED);
        assert_eq!(
            deployment_progress(&d),
            Progress::Waiting("waiting for the deployment spec update to be observed".into())
        );
        // kube-runtime's condition looks only at the replica counts and says "done" here.
        let status = d.status.as_ref().unwrap();
        assert_eq!(status.updated_replicas, status.replicas);
        assert_eq!(status.available_replicas, status.replicas);
    }

    #[test]
    fn the_same_status_once_observed_is_complete() {
        let d = deployment(
            &JUST_APPLIED.replace(r#""observedGeneration": 2"#, r#""observedGeneration": 3"#),
        );
        assert_eq!(deployment_progress(&d), Progress::Complete);
    }

    #[test]
    fn mid_rollout_states_wait_with_kubectls_reasons() {
        let base = JUST_APPLIED.replace(r#""observedGeneration": 2"#, r#""observedGeneration": 3"#);
        let cases = [
            (
                r#""updatedReplicas": 1"#,
                r#""updatedReplicas": 3"#,
                "1 out of 3 new replicas have been updated",
            ),
            (
                r#""replicas": 4, "updatedReplicas": 3"#,
                r#""replicas": 3, "updatedReplicas": 3"#,
                "1 old replicas are pending termination",
            ),
            (
                r#""availableReplicas": 2"#,
                r#""availableReplicas": 3"#,
                "2 of 3 updated replicas are available",
            ),
        ];
        for (new, old, expected) in cases {
            let d = deployment(&base.replace(old, new));
            assert_eq!(
                deployment_progress(&d),
                Progress::Waiting(expected.into()),
                "{new}"
            );
        }
    }

    #[test]
    fn missing_spec_replicas_means_one() {
        let d = deployment(
            r#"{"metadata": {"name": "web", "generation": 1},
            "spec": {"selector": {}, "template": {}},
            "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}}"#,
        );
        assert_eq!(deployment_progress(&d), Progress::Complete);
        let fresh = deployment(
            r#"{"metadata": {"name": "web", "generation": 1},
            "spec": {"selector": {}, "template": {}}, "status": {"observedGeneration": 1}}"#,
        );
        assert_eq!(
            deployment_progress(&fresh),
            Progress::Waiting("0 out of 1 new replicas have been updated".into())
        );
        let no_status = deployment(
            r#"{"metadata": {"name": "web", "generation": 1}, "spec": {"selector": {}, "template": {}}}"#,
        );
        assert!(matches!(
            deployment_progress(&no_status),
            Progress::Waiting(_)
        ));
    }

    #[test]
    fn progress_deadline_exceeded_fails() {
        let d = deployment(
            r#"{"metadata": {"name": "backend", "generation": 4},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": 4, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2,
              "unavailableReplicas": 1,
              "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                "message": "ReplicaSet \"backend-7b9f\" has timed out progressing."}]}}"#,
        );
        match deployment_progress(&d) {
            Progress::DeadlineExceeded(text) => {
                assert!(text.contains("exceeded its progress deadline"), "{text}");
                assert!(text.contains("has timed out progressing"), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }

    fn pod(json: &str) -> Pod {
        serde_json::from_str(json).expect("valid Pod JSON")
    }

    #[test]
    fn crash_loop_reports_the_kubelets_message_and_last_exit() {
        let p = pod(r#"{"metadata": {"name": "backend-6d4cf56db6-x7k2p"},
          "status": {"phase": "Running", "containerStatuses": [{
            "name": "backend", "image": "ghcr.io/jisu/platform@sha256:00", "imageID": "", "ready": false,
            "restartCount": 4, "started": false,
            "state": {"waiting": {"reason": "CrashLoopBackOff",
              "message": "back-off 1m20s restarting failed container=backend pod=backend-6d4cf56db6-x7k2p_jisu-staging(1f0e)"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "message": "ModuleNotFoundError: No module named 'app'\n",
              "startedAt": "2026-01-01T10:00:00Z", "finishedAt": "2026-01-01T10:00:03Z"}}}]}}"#);
        let failure = pod_failure(&p).unwrap();
        assert_eq!(failure.reason, FailureReason::CrashLoopBackOff);
        assert_eq!(failure.container, "backend");
        assert_eq!(failure.pod, "backend-6d4cf56db6-x7k2p");
        assert!(
            failure
                .message
                .starts_with("back-off 1m20s restarting failed container=backend"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.ends_with(
                "last exit code 1 (Error): ModuleNotFoundError: No module named 'app', 4 restarts"
            ),
            "{}",
            failure.message
        );
    }

    #[test]
    fn image_pull_and_config_errors_fail_and_init_containers_come_first() {
        let p = pod(
            r#"{"metadata": {"name": "web-1"}, "status": {"phase": "Pending",
          "initContainerStatuses": [{"name": "migrate", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"backend-secrets\" not found"}}}],
          "containerStatuses": [{"name": "web", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""}}}]}}"#,
        );
        let failure = pod_failure(&p).unwrap();
        assert_eq!(failure.reason, FailureReason::CreateContainerConfigError);
        assert_eq!(failure.message, "secret \"backend-secrets\" not found");
        let pull = pod(
            r#"{"metadata": {"name": "web-1"}, "status": {"containerStatuses": [
          {"name": "web", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
           "state": {"waiting": {"reason": "ErrImagePull", "message": "manifest unknown"}}}]}}"#,
        );
        assert_eq!(
            pod_failure(&pull).unwrap().reason,
            FailureReason::ErrImagePull
        );
    }

    #[test]
    fn starting_and_unready_pods_are_not_failures() {
        for state in [
            r#"{"waiting": {"reason": "ContainerCreating"}}"#,
            r#"{"waiting": {"reason": "PodInitializing"}}"#,
            r#"{"running": {"startedAt": "2026-01-01T10:00:00Z"}}"#,
        ] {
            let p = pod(&format!(
                r#"{{"metadata": {{"name": "p"}}, "status": {{"containerStatuses": [
              {{"name": "c", "image": "x", "imageID": "", "ready": false, "restartCount": 0, "state": {state}}}]}}}}"#
            ));
            assert_eq!(pod_failure(&p), None, "{state}");
        }
        assert_eq!(pod_failure(&pod(r#"{"metadata": {"name": "p"}}"#)), None);
    }
}
