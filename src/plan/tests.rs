//! The planner on small inline pipelines: which jobs and steps each event gives, and why.

use std::collections::BTreeMap;

use super::*;
use crate::config::context::ContextSources;
use crate::config::validate::Workspace;

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// Every path exists: the planner never looks at the disk.
struct Everything;
impl Workspace for Everything {
    fn is_dir(&self, _: &str) -> bool {
        true
    }
    fn is_file(&self, _: &str) -> bool {
        true
    }
}

/// One component, a rolling `staging` from `develop` with a check and a command, a
/// blue-green `production` from `main`; only the `lint` and `test` gates.
const PIPELINE: &str = "
version: 1
images: {scheme: component-prefix, repository: acme/app}
components:
  api: {context: api, dockerfile: api/Dockerfile, port: 8000}
environments:
  staging:
    branch: develop
    namespace: app-staging
    url: https://staging.acme.example
    strategy: rolling
    manifests: k8s
    checks:
      - {name: health, url: /health}
    command: {name: smoke, run: [./smoke.sh], env: {LEVEL: quick}}
  production:
    branch: main
    namespace: app-prod
    url: https://acme.example
    strategy: blue-green
    manifests: k8s
    checks:
      - {name: health, url: /health}
    blue_green: {preview_url: https://preview.acme.example}
gates:
  lint:
    - {name: fmt, run: [cargo, fmt, --check]}
  test:
    - {name: unit, run: [cargo, test]}
retention:
  schedule: '0 3 * * 0'
  keep_sha_tags: 5
  delete_untagged_after: 7d
backup:
  schedule: '0 2 * * *'
  environment: production
  targets: [postgres]
  postgres: {host: postgres, user: acme, database: acme}
  destination: s3://acme-backups/prod
  retain_for: 30d
";

fn pipeline(yaml: &str) -> Pipeline {
    crate::config::parse(yaml, "test.yml", &Everything).unwrap_or_else(|err| panic!("{err}"))
}

fn context(event_name: &str, git_ref: &str, inputs: &[(&str, &str)]) -> RunContext {
    RunContext::resolve(&ContextSources {
        event_name: Some(event_name.to_owned()),
        git_ref: Some(git_ref.to_owned()),
        sha_flag: Some(SHA.to_owned()),
        inputs: inputs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    })
    .unwrap_or_else(|err| panic!("{err}"))
}

/// A scheduled run whose payload says which cron fired.
fn schedule(cron: &str) -> RunContext {
    RunContext::resolve(&ContextSources {
        event_name: Some("schedule".to_owned()),
        event_payload: Some(format!(r#"{{"schedule":"{cron}"}}"#)),
        ..Default::default()
    })
    .unwrap_or_else(|err| panic!("{err}"))
}

fn plan(yaml: &str, ctx: &RunContext) -> Plan {
    build(&pipeline(yaml), ctx, false, "test.yml").unwrap_or_else(|err| panic!("{err}"))
}

fn job<'a>(plan: &'a Plan, id: &str) -> &'a Job {
    plan.jobs
        .iter()
        .find(|job| job.id == id)
        .unwrap_or_else(|| panic!("no job `{id}` in {:?}", job_ids(plan)))
}

fn step<'a>(job: &'a Job, id: &str) -> &'a Step {
    job.steps
        .iter()
        .find(|step| step.id == id)
        .unwrap_or_else(|| panic!("no step `{id}` in job `{}`", job.id))
}

fn job_ids(plan: &Plan) -> Vec<&str> {
    plan.jobs.iter().map(|job| job.id.as_str()).collect()
}

fn step_ids(job: &Job) -> Vec<&str> {
    job.steps.iter().map(|step| step.id.as_str()).collect()
}

#[track_caller]
fn assert_skipped(job: &Job, reason: &str) {
    assert!(!job.decision.runs, "`{}` should be skipped", job.id);
    assert!(
        job.decision.reason.contains(reason),
        "`{}`: {:?} does not mention {reason:?}",
        job.id,
        job.decision.reason
    );
    assert!(job.steps.is_empty(), "a skipped job lists no steps");
}

fn build_steps(plan: &Plan) -> Vec<(&Vec<String>, bool)> {
    job(plan, "build")
        .steps
        .iter()
        .map(|step| match &step.action {
            Action::BuildImage { tags, push, .. } => (tags, *push),
            other => panic!("unexpected build action {other:?}"),
        })
        .collect()
}

#[test]
fn push_to_a_rolling_environments_branch_builds_pushes_and_deploys() {
    let plan = plan(PIPELINE, &context("push", "refs/heads/develop", &[]));
    assert!(plan.notes.is_empty(), "{:?}", plan.notes);
    assert_eq!(
        job_ids(&plan),
        [
            "lint",
            "security",
            "test",
            "build",
            "deploy-production",
            "deploy-staging"
        ]
    );

    let lint = job(&plan, "lint");
    assert!(lint.decision.runs);
    assert_eq!(step_ids(lint), ["fmt"]);
    assert!(
        matches!(&lint.steps[0].action, Action::RunGate { gate } if gate.run == ["cargo", "fmt", "--check"])
    );
    assert!(job(&plan, "test").decision.runs);
    assert_skipped(job(&plan, "security"), "gates.security");

    let build = job(&plan, "build");
    assert!(build.decision.runs);
    assert_eq!(build.needs, ["lint", "test"]);
    let sha_ref = format!("ghcr.io/acme/app:api-{SHA}");
    assert_eq!(
        build_steps(&plan),
        [(
            &vec![sha_ref.clone(), "ghcr.io/acme/app:api-develop".into()],
            true
        )]
    );

    let deploy = job(&plan, "deploy-staging");
    assert!(deploy.decision.runs, "{:?}", deploy.decision);
    assert_eq!(deploy.needs, ["build"]);
    assert_eq!(deploy.environment.as_deref(), Some("staging"));
    assert_eq!(
        step_ids(deploy),
        [
            "lock", "apply", "wait", "checks", "command", "record", "unlock"
        ]
    );
    for step in &deploy.steps {
        let expected = match step.id.as_str() {
            "record" | "unlock" => When::Always,
            _ => When::OnSuccess,
        };
        assert_eq!(step.when, expected, "step `{}`", step.id);
        assert!(
            step.decision.runs,
            "step `{}`: {:?}",
            step.id, step.decision
        );
    }
    assert_eq!(
        step(deploy, "lock").action,
        Action::AcquireLock {
            namespace: "app-staging".into(),
            lease: "jisu-deploy-staging".into()
        }
    );
    assert_eq!(
        step(deploy, "apply").action,
        Action::Apply {
            namespace: "app-staging".into(),
            manifests: "k8s".into(),
            images: vec![ImageSource::Build {
                component: "api".into(),
                reference: sha_ref
            }],
            replicas: BTreeMap::new(),
            color: None,
            url: "https://staging.acme.example".into(),
            preview_url: None,
        }
    );
    match &step(deploy, "command").action {
        Action::RunCommand { command } => {
            assert_eq!(command.run, ["./smoke.sh"]);
            assert_eq!(
                command.env.get("JISU_ENV_URL").map(String::as_str),
                Some("https://staging.acme.example")
            );
            assert_eq!(command.env.get("LEVEL").map(String::as_str), Some("quick"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        &step(deploy, "record").action,
        Action::RecordDeployment { environment, production: false, .. } if environment == "staging"
    ));
    assert_eq!(
        step(deploy, "unlock").action,
        Action::ReleaseLock {
            namespace: "app-staging".into(),
            lease: "jisu-deploy-staging".into()
        }
    );

    assert_skipped(job(&plan, "deploy-production"), "`main`");
}

#[test]
fn a_rolling_environment_without_checks_or_command_skips_checks_and_has_no_command() {
    let yaml = PIPELINE
        .replace(
            "    checks:\n      - {name: health, url: /health}\n    command: {name: smoke, run: [./smoke.sh], env: {LEVEL: quick}}\n",
            "",
        );
    let plan = plan(&yaml, &context("push", "refs/heads/develop", &[]));
    let deploy = job(&plan, "deploy-staging");
    assert_eq!(
        step_ids(deploy),
        ["lock", "apply", "wait", "checks", "record", "unlock"]
    );
    let checks = step(deploy, "checks");
    assert!(!checks.decision.runs);
    assert!(
        checks
            .decision
            .reason
            .contains("environments.staging.checks"),
        "{:?}",
        checks.decision
    );
}

#[test]
fn a_branch_no_environment_deploys_from_builds_without_pushing() {
    let plan = plan(PIPELINE, &context("push", "refs/heads/feature/x", &[]));
    assert_eq!(plan.notes.len(), 1);
    assert!(
        plan.notes[0].contains("no environment deploys from branch `feature/x`"),
        "{:?}",
        plan.notes
    );
    assert!(job(&plan, "lint").decision.runs);
    assert!(job(&plan, "test").decision.runs);
    assert!(job(&plan, "build").decision.runs);
    let builds = build_steps(&plan);
    assert!(!builds.is_empty());
    assert!(builds.iter().all(|(_, push)| !push), "{builds:?}");
    assert_skipped(job(&plan, "deploy-staging"), "`develop`");
    assert_skipped(job(&plan, "deploy-production"), "`main`");
}

#[test]
fn a_semver_tag_pushes_version_tags_and_deploys_nothing() {
    let plan = plan(PIPELINE, &context("push", "refs/tags/v1.2.3", &[]));
    let tags: Vec<String> = ["1.2.3", "1.2", "1"]
        .iter()
        .map(|v| format!("ghcr.io/acme/app:api-{v}"))
        .collect();
    let builds = build_steps(&plan);
    assert_eq!(builds.len(), 1);
    let (built, push) = builds[0];
    assert!(push);
    assert_eq!(built[0], format!("ghcr.io/acme/app:api-{SHA}"));
    assert_eq!(built[1..], tags);
    assert!(!built.iter().any(|t| t.ends_with("latest")));
    assert_skipped(job(&plan, "deploy-staging"), "promote");
    assert_skipped(job(&plan, "deploy-production"), "promote");
}

#[test]
fn a_pull_request_builds_without_pushing_and_never_deploys() {
    let plan = plan(PIPELINE, &context("pull_request", "refs/pull/7/merge", &[]));
    assert_eq!(
        build_steps(&plan),
        [(&vec!["ghcr.io/acme/app:api-pr-7".to_owned()], false)]
    );
    assert_skipped(job(&plan, "deploy-staging"), "pull requests never deploy");
    assert_skipped(
        job(&plan, "deploy-production"),
        "pull requests never deploy",
    );
}

#[test]
fn a_dispatched_promotion_retags_then_deploys_the_promoted_images() {
    let ctx = context(
        "workflow_dispatch",
        "refs/heads/main",
        &[
            ("operation", "promote"),
            ("environment", "staging"),
            ("sha", SHA),
        ],
    );
    let plan = plan(PIPELINE, &ctx);
    assert_eq!(job_ids(&plan), ["promote", "deploy-staging"]);

    let promote = job(&plan, "promote");
    assert!(promote.decision.runs);
    assert_eq!(step_ids(promote), ["retag"]);
    let source = format!("ghcr.io/acme/app:api-{SHA}");
    assert_eq!(
        step(promote, "retag").action,
        Action::PromoteImages {
            sha: SHA.into(),
            environment: "staging".into(),
            images: vec![Promotion {
                component: "api".into(),
                source: source.clone(),
                target: "ghcr.io/acme/app:api-staging".into(),
            }],
        }
    );

    let deploy = job(&plan, "deploy-staging");
    assert!(deploy.decision.runs);
    assert_eq!(deploy.needs, ["promote"]);
    match &step(deploy, "apply").action {
        Action::Apply { images, .. } => assert_eq!(
            images,
            &[ImageSource::Promotion {
                component: "api".into(),
                reference: source
            }]
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_dispatch_to_an_unknown_environment_names_the_known_ones() {
    let ctx = context(
        "workflow_dispatch",
        "refs/heads/main",
        &[
            ("operation", "promote"),
            ("environment", "qa"),
            ("sha", SHA),
        ],
    );
    let err = build(&pipeline(PIPELINE), &ctx, false, "test.yml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`qa` is not an environment in test.yml"),
        "{err}"
    );
    assert!(err.contains("production, staging"), "{err}");
}

#[test]
fn a_dispatched_rollback_of_a_rolling_environment_redeploys_the_previous_revision() {
    let ctx = context(
        "workflow_dispatch",
        "refs/heads/develop",
        &[("operation", "rollback"), ("environment", "staging")],
    );
    let plan = plan(PIPELINE, &ctx);
    assert_eq!(job_ids(&plan), ["rollback-staging"]);
    let rollback = job(&plan, "rollback-staging");
    assert!(rollback.decision.runs);
    assert_eq!(
        step_ids(rollback),
        [
            "lock",
            "redeploy-previous",
            "wait",
            "checks",
            "record",
            "unlock"
        ]
    );
    assert_eq!(
        step(rollback, "redeploy-previous").action,
        Action::RedeployPrevious {
            namespace: "app-staging".into(),
            workloads: vec!["api".into()]
        }
    );
    assert_eq!(step(rollback, "redeploy-previous").when, When::OnSuccess);
    assert_eq!(step(rollback, "record").when, When::Always);
    assert_eq!(step(rollback, "unlock").when, When::Always);
}

#[test]
fn a_dispatched_switch_moves_a_blue_green_environment_and_skips_a_rolling_one() {
    let switch = |environment: &str| {
        let ctx = context(
            "workflow_dispatch",
            "refs/heads/main",
            &[("operation", "switch"), ("environment", environment)],
        );
        plan(PIPELINE, &ctx)
    };
    let production = switch("production");
    assert_eq!(job_ids(&production), ["switch-production"]);
    let job_ = job(&production, "switch-production");
    assert!(job_.decision.runs);
    assert_eq!(
        step_ids(job_),
        [
            "lock",
            "live-color",
            "switch",
            "verify",
            "keep-previous",
            "record",
            "unlock"
        ]
    );
    let staging = switch("staging");
    let skipped = job(&staging, "switch-staging");
    assert!(!skipped.decision.runs);
    assert!(skipped.decision.reason.contains("deploys rolling"));
}

#[test]
fn a_blue_green_deploy_switches_between_colors() {
    let plan = plan(PIPELINE, &context("push", "refs/heads/main", &[]));
    let deploy = job(&plan, "deploy-production");
    assert!(deploy.decision.runs);
    assert_eq!(
        step_ids(deploy),
        [
            "lock",
            "live-color",
            "deploy-idle",
            "wait",
            "preview-checks",
            "switch",
            "verify",
            "keep-previous",
            "record",
            "unlock"
        ]
    );
    assert!(matches!(
        &step(deploy, "deploy-idle").action,
        Action::Apply { color: Some(ColorRole::Idle), namespace, .. } if namespace == "app-prod"
    ));
    assert!(matches!(
        &step(deploy, "preview-checks").action,
        Action::HttpChecks { base_url, .. } if base_url == "https://preview.acme.example"
    ));
    assert!(step(deploy, "preview-checks").decision.runs);
    assert!(matches!(
        &step(deploy, "switch").action,
        Action::SwitchTraffic { to: ColorRole::Idle, services, .. } if services == &["api"]
    ));
    assert!(matches!(
        &step(deploy, "record").action,
        Action::RecordDeployment {
            production: true,
            ..
        }
    ));
    assert_eq!(step(deploy, "record").when, When::Always);
    assert_eq!(step(deploy, "unlock").when, When::Always);
    assert_skipped(job(&plan, "deploy-staging"), "`develop`");
}

#[test]
fn a_schedule_runs_the_job_whose_cron_fired() {
    let plan = plan(PIPELINE, &schedule("0 3 * * 0"));
    assert_eq!(job_ids(&plan), ["prune", "cleanup-production", "backup"]);
    // Cleanup of the blue-green environment rides on the retention schedule.
    let cleanup = job(&plan, "cleanup-production");
    assert!(cleanup.decision.runs, "{:?}", cleanup.decision);
    assert_eq!(
        step_ids(cleanup),
        ["lock", "live-color", "cleanup", "unlock"]
    );
    let backup_day = build(
        &pipeline(PIPELINE),
        &schedule("0 2 * * *"),
        false,
        "test.yml",
    )
    .unwrap();
    assert_skipped(job(&backup_day, "cleanup-production"), "0 3 * * 0");
    let prune = job(&plan, "prune");
    assert!(prune.decision.runs, "{:?}", prune.decision);
    assert!(matches!(
        &step(prune, "prune").action,
        Action::PruneImages { repositories, keep_sha_tags: 5, .. } if repositories == &["ghcr.io/acme/app"]
    ));
    assert_skipped(job(&plan, "backup"), "0 2 * * *");
}

#[test]
fn a_schedule_matching_no_cron_is_bad_input() {
    let err = build(
        &pipeline(PIPELINE),
        &schedule("5 4 * * *"),
        false,
        "test.yml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`5 4 * * *`"), "{err}");
    assert!(err.contains("retention.schedule"), "{err}");
}

#[test]
fn a_components_workload_names_the_deployment_waited_for() {
    let yaml = PIPELINE.replace("port: 8000}", "port: 8000, workload: api-server}");
    let plan = plan(&yaml, &context("push", "refs/heads/develop", &[]));
    match &step(job(&plan, "deploy-staging"), "wait").action {
        Action::WaitRollout {
            workloads, color, ..
        } => {
            assert_eq!(workloads, &["api-server"]);
            assert_eq!(*color, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_dispatch_form_with_a_confirmation_needs_a_production_environments_name_typed() {
    let promote = |environment: &str, typed: Option<&str>| {
        let mut inputs = vec![
            ("operation", "promote"),
            ("environment", environment),
            ("sha", SHA),
        ];
        inputs.extend(typed.map(|typed| ("confirm", typed)));
        build(
            &pipeline(PIPELINE),
            &context("workflow_dispatch", "refs/heads/main", &inputs),
            false,
            "test.yml",
        )
    };
    for typed in ["", "prod", "staging", "Production"] {
        let err = promote("production", Some(typed)).unwrap_err().to_string();
        assert!(
            err.contains("confirm") && err.contains("type its name, `production`"),
            "{typed:?}: {err}"
        );
    }
    let confirmed = promote("production", Some(" production ")).unwrap();
    assert_eq!(job_ids(&confirmed), ["promote", "deploy-production"]);
    // Staging is not a production environment; the terminal's `promote` has no form.
    assert!(promote("staging", Some("")).is_ok());
    assert!(promote("production", None).is_ok());
}

#[test]
fn every_job_says_its_kind() {
    let plan = plan(PIPELINE, &context("push", "refs/heads/main", &[]));
    let kinds: Vec<(&str, &str)> = plan
        .jobs
        .iter()
        .map(|job| (job.id.as_str(), job.kind.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("lint", "gate"),
            ("security", "gate"),
            ("test", "gate"),
            ("build", "build"),
            ("deploy-production", "deploy"),
            ("deploy-staging", "deploy"),
        ]
    );
}
