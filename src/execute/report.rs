//! The run report: what every job and step of a run did, how long it took, what it
//! produced and why it failed. The job summary renders it, the output `report` carries it
//! as JSON, and check runs and deployment records read it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::InputError;
use crate::images::promote::PromoteError;
use crate::kube::apply::ApplyError;
use crate::kube::checks::ChecksFailed;
use crate::kube::lock::LockError;
use crate::kube::watch::RolloutError;
use crate::oci::RegistryError;
use crate::process::ProcessError;

/// Version of the report's JSON form; bumped on any incompatible change.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// How a job or step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// It ran and succeeded.
    Succeeded,
    /// It ran and failed.
    Failed,
    /// The plan skips it, or this version cannot do it (the reason says which).
    Skipped,
    /// It would have run, but something it depends on failed first.
    NotReached,
}

/// What kind of failure ended a step; callers (blue-green's switch-back, check runs)
/// branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// A command (gate, environment command, builder) failed, timed out or did not start.
    Command,
    /// A gate's findings or thresholds failed it.
    Gate,
    /// A rollout did not complete.
    Rollout,
    /// HTTP checks failed.
    Checks,
    /// Server-side apply conflicted with another field manager.
    ApplyConflict,
    /// The API server refused an object.
    ApplyRejected,
    /// A registry request failed or an image is missing.
    Registry,
    /// The deploy lock was held by another run for the whole wait, or was lost.
    Lock,
    /// Something the user gave was wrong.
    Input,
    /// Anything else (network, cluster unreachable, ...).
    Other,
}

impl FailureKind {
    /// Classifies an error by the typed causes in its chain.
    pub fn of(error: &anyhow::Error) -> Self {
        for cause in error.chain() {
            if cause.is::<ProcessError>() {
                return FailureKind::Command;
            }
            if cause.is::<crate::execute::gates::GateFailed>() {
                return FailureKind::Gate;
            }
            if cause.is::<RolloutError>() {
                return FailureKind::Rollout;
            }
            if cause.is::<ChecksFailed>() {
                return FailureKind::Checks;
            }
            if let Some(apply) = cause.downcast_ref::<ApplyError>() {
                return match apply {
                    ApplyError::Conflict { .. } => FailureKind::ApplyConflict,
                    _ => FailureKind::ApplyRejected,
                };
            }
            if cause.is::<RegistryError>() || cause.is::<PromoteError>() {
                return FailureKind::Registry;
            }
            if let Some(lock) = cause.downcast_ref::<LockError>() {
                return match lock {
                    LockError::Held { .. } | LockError::Lost { .. } => FailureKind::Lock,
                    LockError::Api { .. } => FailureKind::Other,
                };
            }
            if cause.is::<InputError>() {
                return FailureKind::Input;
            }
        }
        FailureKind::Other
    }
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    /// [`REPORT_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The event, in words (the plan's headline).
    pub event: String,
    /// The commit the run was for.
    pub sha: Option<String>,
    /// `succeeded` when every step that had to succeed did, else `failed`.
    pub result: Status,
    /// Images this run pushed or promoted, or was given: component -> `repo@sha256:...`.
    pub digests: BTreeMap<String, String>,
    /// The URL of the environment this run deployed, if it deployed one successfully.
    pub environment_url: Option<String>,
    /// Every job of the plan, in plan order.
    pub jobs: Vec<JobReport>,
    /// Wall time of the whole run, milliseconds.
    pub duration_ms: u64,
}

/// One job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobReport {
    /// The plan's job id.
    pub id: String,
    /// The environment it deploys, if any.
    pub environment: Option<String>,
    /// How it ended.
    pub status: Status,
    /// Why it was skipped or not reached.
    pub reason: Option<String>,
    /// When it started (RFC 3339), if it ran.
    pub started: Option<String>,
    /// How long it ran, milliseconds.
    pub duration_ms: Option<u64>,
    /// Its steps.
    pub steps: Vec<StepReport>,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    /// The plan's step id.
    pub id: String,
    /// The action's kind (`run_command`, `build_image`, `apply`, ...).
    pub kind: String,
    /// How it ended.
    pub status: Status,
    /// Why it was skipped or not reached.
    pub reason: Option<String>,
    /// When it started (RFC 3339), if it ran.
    pub started: Option<String>,
    /// How long it ran, milliseconds.
    pub duration_ms: Option<u64>,
    /// What it produced (a digest, an environment URL, counts).
    pub outputs: BTreeMap<String, String>,
    /// Why it failed.
    pub error: Option<String>,
    /// What kind of failure it was.
    pub failure: Option<FailureKind>,
    /// What a gate step's tools found (gate steps that read reports only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub findings: Option<GateFindings>,
}

/// The most findings a step report lists; the counts cover all of them.
pub const FIRST_FINDINGS: usize = 20;

/// What a gate step's tools found, and the gate's verdict on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateFindings {
    /// Findings of severity error.
    pub errors: usize,
    /// Findings of severity warning.
    pub warnings: usize,
    /// Findings of severity notice.
    pub notices: usize,
    /// Total line coverage in percent, when the gate reads a coverage report.
    pub coverage_percent: Option<f64>,
    /// Why the gate passed or failed: one line per threshold or rule applied.
    pub verdicts: Vec<String>,
    /// The first [`FIRST_FINDINGS`] findings, in the order the tools reported them.
    pub first: Vec<FindingLine>,
}

/// One finding as reports and summaries show it (text exactly as the tool wrote it:
/// escape it where it is printed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingLine {
    /// The tool (`flake8`, `bandit`, `pytest-junit`, ...).
    pub tool: String,
    /// `error`, `warning` or `notice`.
    pub severity: String,
    /// The file (for pip-audit, `package==version`).
    pub path: String,
    /// 1-based line, when the tool gave one.
    pub line: Option<u32>,
    /// The rule, advisory or test id.
    pub code: Option<String>,
    /// The tool's message.
    pub message: String,
}

impl FindingLine {
    /// The line for `finding`.
    pub fn of(finding: &crate::findings::Finding) -> Self {
        FindingLine {
            tool: finding.tool.name().to_owned(),
            severity: finding.severity.as_str().to_owned(),
            path: finding.path.clone(),
            line: finding.line,
            code: finding.code.clone(),
            message: finding.message.clone(),
        }
    }
}

impl RunReport {
    /// Whether every step that had to succeed did.
    pub fn succeeded(&self) -> bool {
        self.result == Status::Succeeded
    }

    /// The first failed step, as `job/step: error`.
    pub fn first_failure(&self) -> Option<String> {
        self.jobs.iter().find_map(|job| {
            job.steps
                .iter()
                .find(|s| s.status == Status::Failed)
                .map(|s| {
                    format!(
                        "{}/{}: {}",
                        job.id,
                        s.id,
                        s.error.as_deref().unwrap_or("failed")
                    )
                })
        })
    }

    /// Whether the first failure was bad input and no step that writes (build, promote,
    /// prune, apply) had succeeded before it: then nothing was changed.
    pub fn failed_on_input_before_changes(&self) -> bool {
        const WRITES: &[&str] = &[
            "build_image",
            "promote_images",
            "prune_images",
            "apply",
            "redeploy_previous",
        ];
        for step in self.jobs.iter().flat_map(|j| &j.steps) {
            match step.status {
                Status::Failed => return step.failure == Some(FailureKind::Input),
                Status::Succeeded if WRITES.contains(&step.kind.as_str()) => return false,
                _ => {}
            }
        }
        false
    }

    /// The report as pretty JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes")
    }
}

/// The status word people read.
pub fn status_word(status: Status) -> &'static str {
    match status {
        Status::Succeeded => "succeeded",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
        Status::NotReached => "not reached",
    }
}

/// A duration for people: `850ms`, `12.3s`, `2m05s`.
pub fn human_millis(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified_by_their_typed_cause() {
        let command = anyhow::Error::from(ProcessError::Failed {
            name: "flake8".into(),
            status: "exit status: 1".into(),
        })
        .context("gate");
        assert_eq!(FailureKind::of(&command), FailureKind::Command);
        let checks = anyhow::Error::from(ChecksFailed {
            total: 1,
            failed: Vec::new(),
        });
        assert_eq!(FailureKind::of(&checks), FailureKind::Checks);
        let input = anyhow::Error::from(InputError::new("x", None, "bad"));
        assert_eq!(FailureKind::of(&input), FailureKind::Input);
        assert_eq!(
            FailureKind::of(&anyhow::anyhow!("network")),
            FailureKind::Other
        );
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human_millis(850), "850ms");
        assert_eq!(human_millis(12_345), "12.3s");
        assert_eq!(human_millis(125_000), "2m05s");
    }
}
