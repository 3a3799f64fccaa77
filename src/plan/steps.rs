//! The jobs of each kind and their steps, built from the pipeline file.

use std::collections::BTreeMap;

use super::{Action, ColorRole, Decision, ImageSource, Job, JobKind, Promotion, Step, When, short};
use crate::config::context::{Event, RunContext};
use crate::config::duration::HumanDuration;
use crate::config::pipeline::{Command, Environment, Pipeline, Strategy};
use crate::images::tags;

fn step(id: &str, decision: Decision, action: Action) -> Step {
    Step {
        id: id.to_owned(),
        decision,
        when: When::OnSuccess,
        action,
    }
}

/// A step that also runs after an earlier step of its job failed.
fn always(id: &str, decision: Decision, action: Action) -> Step {
    Step {
        when: When::Always,
        ..step(id, decision, action)
    }
}

fn job(
    kind: JobKind,
    id: &str,
    needs: &[&str],
    environment: Option<&str>,
    decision: Decision,
    steps: Vec<Step>,
) -> Job {
    // A skipped job shows why, not the steps it would have had.
    let steps = if decision.runs { steps } else { Vec::new() };
    Job {
        id: id.to_owned(),
        kind,
        needs: needs.iter().map(|s| s.to_string()).collect(),
        environment: environment.map(str::to_owned),
        decision,
        steps,
    }
}

/// `lint`, `security` and `test`: one step per configured command.
pub(super) fn gate_jobs(pipeline: &Pipeline) -> Vec<Job> {
    [
        ("lint", &pipeline.gates.lint),
        ("security", &pipeline.gates.security),
        ("test", &pipeline.gates.test),
    ]
    .into_iter()
    .map(|(id, commands)| {
        let decision = if commands.is_empty() {
            Decision::skip(format!("no `gates.{id}` commands in the pipeline file"))
        } else {
            Decision::run(format!(
                "{} {id} gate(s) must pass before images are pushed",
                commands.len()
            ))
        };
        let steps = commands
            .iter()
            .map(|gate| {
                step(
                    &gate.name,
                    Decision::run(format!("configured in `gates.{id}`")),
                    Action::RunGate { gate: gate.clone() },
                )
            })
            .collect();
        job(JobKind::Gate, id, &[], None, decision, steps)
    })
    .collect()
}

/// `build`: one image per component, pushed only when the tag rules push it and
/// `may_push` (the event deploys somewhere or releases; pull requests and branches no
/// environment deploys from only prove that the images build).
pub(super) fn build_job(pipeline: &Pipeline, ctx: &RunContext, may_push: bool) -> Job {
    let gates: Vec<&str> = [
        ("lint", &pipeline.gates.lint),
        ("security", &pipeline.gates.security),
        ("test", &pipeline.gates.test),
    ]
    .into_iter()
    .filter(|(_, commands)| !commands.is_empty())
    .map(|(id, _)| id)
    .collect();
    let mut steps = Vec::new();
    for (name, component) in &pipeline.components {
        let Some(image) = tags::compute(pipeline, ctx, name) else {
            continue;
        };
        let push = image.push && may_push;
        let decision = if push {
            Decision::run(format!("build and push {} tag(s)", image.tags.len()))
        } else if matches!(ctx.event, Event::PullRequest { .. }) {
            Decision::run("build only: pull request images are never pushed")
        } else {
            Decision::run("build only: no environment deploys from this branch")
        };
        let version = image
            .tags
            .iter()
            .find(|t| t.chars().next().is_some_and(|c| c.is_ascii_digit()));
        steps.push(step(
            name,
            decision,
            Action::BuildImage {
                component: name.clone(),
                context: component.context.clone(),
                dockerfile: component.dockerfile.clone(),
                build_args: component.build_args.clone(),
                tags: image.references(),
                labels: labels(ctx, name, version.map(String::as_str)),
                push,
            },
        ));
    }
    let decision = match &ctx.event {
        Event::PullRequest {
            from_fork: true, ..
        } => Decision::run(
            "build the pull request head to prove the images build (fork: no registry credentials are used)",
        ),
        Event::PullRequest { .. } => {
            Decision::run("build the pull request head to prove the images build")
        }
        _ => Decision::run("images are built once and promoted, never rebuilt"),
    };
    job(JobKind::Build, "build", &gates, None, decision, steps)
}

/// OCI labels that let ghcr link a package to its repository and commit.
fn labels(ctx: &RunContext, component: &str, version: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    labels.insert(
        "org.opencontainers.image.title".to_owned(),
        component.to_owned(),
    );
    if let Some(repo) = &ctx.repository {
        labels.insert(
            "org.opencontainers.image.source".to_owned(),
            format!("https://github.com/{repo}"),
        );
    }
    if let Some(sha) = &ctx.sha {
        labels.insert("org.opencontainers.image.revision".to_owned(), sha.clone());
    }
    if let Some(version) = version {
        labels.insert(
            "org.opencontainers.image.version".to_owned(),
            version.to_owned(),
        );
    }
    labels
}

/// The name of an environment's deploy-lock Lease.
pub fn lease(env_name: &str) -> String {
    format!("jisu-deploy-{env_name}")
}

/// Deployment and Service names; blue-green steps add the color at run time.
fn workloads(pipeline: &Pipeline) -> Vec<String> {
    pipeline
        .components
        .iter()
        .map(|(name, c)| c.workload_name(name).to_owned())
        .collect()
}

/// `deploy-<env>`: rolling or blue-green, between a lock and its release.
pub(super) fn deploy_job(
    pipeline: &Pipeline,
    env_name: &str,
    env: &Environment,
    decision: Decision,
    images: Vec<ImageSource>,
    needs: &str,
) -> Job {
    let ns = env.namespace.clone();
    let mut steps = vec![lock_step(env_name, env)];
    let timeout = env.rollout_timeout.to_string();
    match env.strategy {
        Strategy::Rolling => {
            steps.extend(rolling_steps(
                pipeline,
                env_name,
                env,
                images,
                env.rollout_timeout,
            ));
        }
        Strategy::BlueGreen => {
            let bg = env.blue_green.clone().unwrap_or_else(default_blue_green);
            let services = workloads(pipeline);
            steps.push(step(
                "live-color",
                Decision::run("the live color is read from the Services' selectors, never assumed"),
                Action::ReadLiveColor {
                    namespace: ns.clone(),
                    services: services.clone(),
                },
            ));
            steps.push(step(
                "deploy-idle",
                Decision::run("the idle color is created beside the live one, sized to what the live color runs now"),
                Action::Apply {
                    namespace: ns.clone(),
                    manifests: env.manifests.clone(),
                    images,
                    replicas: env.replicas.clone(),
                    color: Some(ColorRole::Idle),
                    url: env.url.clone(),
                    preview_url: bg.preview_url.clone(),
                },
            ));
            steps.push(step(
                "wait",
                Decision::run(format!(
                    "the idle color's Deployments complete within {timeout}"
                )),
                Action::WaitRollout {
                    namespace: ns.clone(),
                    workloads: workloads(pipeline),
                    color: Some(ColorRole::Idle),
                    timeout,
                },
            ));
            let preview = match &bg.preview_url {
                Some(url) if !env.checks.is_empty() => (
                    Decision::run(format!(
                        "checks against the idle color at {url} before any traffic moves"
                    )),
                    url.clone(),
                ),
                Some(url) => (
                    Decision::skip(format!(
                        "no `environments.{env_name}.checks` to run at {url}"
                    )),
                    url.clone(),
                ),
                None => (
                    Decision::skip(format!(
                        "no `environments.{env_name}.blue_green.preview_url`: the idle color is judged by its readiness probes only"
                    )),
                    String::new(),
                ),
            };
            steps.push(step(
                "preview-checks",
                preview.0,
                Action::HttpChecks {
                    base_url: preview.1,
                    checks: env.checks.clone(),
                },
            ));
            steps.push(step(
                "switch",
                Decision::run("patch only the color key of every routed Service; never to a color with no ready pods"),
                Action::SwitchTraffic { namespace: ns.clone(), services, to: ColorRole::Idle },
            ));
            steps.push(step(
                "verify",
                Decision::run(format!(
                    "watch endpoints and health for {}; switch back automatically on failure",
                    bg.verify_for
                )),
                Action::VerifyAfterSwitch {
                    base_url: env.url.clone(),
                    checks: env.checks.clone(),
                    watch_for: bg.verify_for.to_string(),
                },
            ));
            steps.push(step(
                "keep-previous",
                Decision::run(format!(
                    "the previous color keeps running so a rollback is one selector patch; scaled down after {}",
                    bg.keep_previous_for
                )),
                Action::KeepPreviousColor { namespace: ns.clone(), scale_down_after: bg.keep_previous_for.to_string() },
            ));
        }
    }
    if let Some(command) = &env.command {
        steps.push(command_step(command, env));
    }
    steps.push(record_step(env_name, env));
    steps.push(unlock_step(env_name, env));
    let id = format!("deploy-{env_name}");
    job(
        JobKind::Deploy,
        &id,
        &[needs],
        Some(env_name),
        decision,
        steps,
    )
}

fn default_blue_green() -> crate::config::pipeline::BlueGreen {
    serde_yaml::from_str("{}").expect("every blue_green field has a default")
}

/// The core of a rolling deploy: apply with pinned images, wait within `timeout`, then the
/// environment's HTTP checks.
fn rolling_steps(
    pipeline: &Pipeline,
    env_name: &str,
    env: &Environment,
    images: Vec<ImageSource>,
    timeout: HumanDuration,
) -> Vec<Step> {
    vec![
        step(
            "apply",
            Decision::run("server-side apply with images pinned to digests"),
            Action::Apply {
                namespace: env.namespace.clone(),
                manifests: env.manifests.clone(),
                images,
                replicas: env.replicas.clone(),
                color: None,
                url: env.url.clone(),
                preview_url: None,
            },
        ),
        step(
            "wait",
            Decision::run(format!("every Deployment complete within {timeout}")),
            Action::WaitRollout {
                namespace: env.namespace.clone(),
                workloads: workloads(pipeline),
                color: None,
                timeout: timeout.to_string(),
            },
        ),
        checks_step("checks", env_name, env, &env.url),
    ]
}

/// HTTP checks of `env` against `base_url`, skipped when the environment has none.
fn checks_step(id: &str, env_name: &str, env: &Environment, base_url: &str) -> Step {
    let decision = if env.checks.is_empty() {
        Decision::skip(format!("no `environments.{env_name}.checks`"))
    } else {
        Decision::run(format!(
            "{} HTTP check(s) against {base_url}",
            env.checks.len()
        ))
    };
    step(
        id,
        decision,
        Action::HttpChecks {
            base_url: base_url.to_owned(),
            checks: env.checks.clone(),
        },
    )
}

/// The environment's command (e.g. integration tests), given `JISU_ENV_URL`.
fn command_step(command: &Command, env: &Environment) -> Step {
    let mut command = command.clone();
    command
        .env
        .insert("JISU_ENV_URL".to_owned(), env.url.clone());
    step(
        "command",
        Decision::run(format!("`{}` runs against {}", command.name, env.url)),
        Action::RunCommand { command },
    )
}

fn record_step(env_name: &str, env: &Environment) -> Step {
    let production = env.production();
    always(
        "record",
        Decision::run(
            "GitHub deployment record: in_progress, then success or failure; earlier ones become inactive",
        ),
        Action::RecordDeployment {
            environment: env_name.to_owned(),
            url: env.url.clone(),
            production,
        },
    )
}

fn lock_step(env_name: &str, env: &Environment) -> Step {
    step(
        "lock",
        Decision::run("one deploy per environment at a time"),
        Action::AcquireLock {
            namespace: env.namespace.clone(),
            lease: lease(env_name),
        },
    )
}

fn unlock_step(env_name: &str, env: &Environment) -> Step {
    always(
        "unlock",
        Decision::run("the lock is given back whatever happened before"),
        Action::ReleaseLock {
            namespace: env.namespace.clone(),
            lease: lease(env_name),
        },
    )
}

/// `promote`: find every component's image for `sha` and move the environment tag.
pub(super) fn promote_job(
    pipeline: &Pipeline,
    env_name: &str,
    sha: &str,
) -> (Job, Vec<ImageSource>) {
    let images: Vec<Promotion> = pipeline
        .components
        .keys()
        .map(|component| {
            let repository = tags::repository(pipeline, component);
            Promotion {
                component: component.clone(),
                source: format!("{repository}:{}", tags::sha_tag(pipeline, component, sha)),
                target: format!(
                    "{repository}:{}",
                    tags::environment_tag(pipeline, component, env_name)
                ),
            }
        })
        .collect();
    let sources = images
        .iter()
        .map(|p| ImageSource::Promotion {
            component: p.component.clone(),
            reference: p.source.clone(),
        })
        .collect();
    let steps = vec![step(
        "retag",
        Decision::run(
            "every component's image must exist for this commit; all are retagged or none",
        ),
        Action::PromoteImages {
            sha: sha.to_owned(),
            environment: env_name.to_owned(),
            images,
        },
    )];
    let decision = Decision::run(format!(
        "workflow_dispatch asked to promote {} to {env_name}",
        short(sha)
    ));
    (
        job(
            JobKind::Promote,
            "promote",
            &[],
            Some(env_name),
            decision,
            steps,
        ),
        sources,
    )
}

/// `rollback-<env>`: back to what ran before the last deploy.
pub(super) fn rollback_job(pipeline: &Pipeline, env_name: &str, env: &Environment) -> Job {
    let ns = env.namespace.clone();
    let mut steps = vec![lock_step(env_name, env)];
    match env.strategy {
        Strategy::BlueGreen => {
            let services = workloads(pipeline);
            let bg = env.blue_green.clone().unwrap_or_else(default_blue_green);
            steps.push(step(
                "live-color",
                Decision::run("the live color is read from the Services' selectors"),
                Action::ReadLiveColor {
                    namespace: ns.clone(),
                    services: services.clone(),
                },
            ));
            steps.push(step(
                "switch-back",
                Decision::run("route back to the previous color, which was kept running; refused if it has no ready pods"),
                Action::SwitchTraffic { namespace: ns.clone(), services, to: ColorRole::Idle },
            ));
            steps.push(step(
                "verify",
                Decision::run(format!("watch endpoints and health for {}", bg.verify_for)),
                Action::VerifyAfterSwitch {
                    base_url: env.url.clone(),
                    checks: env.checks.clone(),
                    watch_for: bg.verify_for.to_string(),
                },
            ));
        }
        Strategy::Rolling => {
            steps.push(step(
                "redeploy-previous",
                Decision::run("re-apply the revision recorded before the last deploy"),
                Action::RedeployPrevious {
                    namespace: ns.clone(),
                    workloads: workloads(pipeline),
                },
            ));
            let timeout = env.rollout_timeout.to_string();
            steps.push(step(
                "wait",
                Decision::run(format!("every Deployment complete within {timeout}")),
                Action::WaitRollout {
                    namespace: ns.clone(),
                    workloads: workloads(pipeline),
                    color: None,
                    timeout,
                },
            ));
            steps.push(step(
                "checks",
                Decision::run(format!("{} HTTP check(s)", env.checks.len())),
                Action::HttpChecks {
                    base_url: env.url.clone(),
                    checks: env.checks.clone(),
                },
            ));
        }
    }
    steps.push(record_step(env_name, env));
    steps.push(unlock_step(env_name, env));
    let id = format!("rollback-{env_name}");
    let decision = Decision::run(format!("workflow_dispatch asked to roll {env_name} back"));
    job(JobKind::Rollback, &id, &[], Some(env_name), decision, steps)
}

/// `switch-<env>`: traffic moves to the color a `deploy --no-switch` left ready beside
/// the live one, verified as a deploy's switch is; blue-green environments only.
pub(super) fn switch_job(pipeline: &Pipeline, env_name: &str, env: &Environment) -> Job {
    let ns = env.namespace.clone();
    let id = format!("switch-{env_name}");
    if env.strategy != Strategy::BlueGreen {
        let decision = Decision::skip(format!(
            "`{env_name}` deploys rolling: there is no idle color to switch to"
        ));
        return job(
            JobKind::Switch,
            &id,
            &[],
            Some(env_name),
            decision,
            Vec::new(),
        );
    }
    let bg = env.blue_green.clone().unwrap_or_else(default_blue_green);
    let services = workloads(pipeline);
    let steps = vec![
        lock_step(env_name, env),
        step(
            "live-color",
            Decision::run("the live color is read from the Services' selectors"),
            Action::ReadLiveColor {
                namespace: ns.clone(),
                services: services.clone(),
            },
        ),
        step(
            "switch",
            Decision::run(
                "patch only the color key of every routed Service; refused if the idle color has no ready pods",
            ),
            Action::SwitchTraffic {
                namespace: ns.clone(),
                services,
                to: ColorRole::Idle,
            },
        ),
        step(
            "verify",
            Decision::run(format!(
                "watch endpoints and health for {}; switch back automatically on failure",
                bg.verify_for
            )),
            Action::VerifyAfterSwitch {
                base_url: env.url.clone(),
                checks: env.checks.clone(),
                watch_for: bg.verify_for.to_string(),
            },
        ),
        step(
            "keep-previous",
            Decision::run(format!(
                "the previous color keeps running so a rollback is one selector patch; scaled down after {}",
                bg.keep_previous_for
            )),
            Action::KeepPreviousColor {
                namespace: ns.clone(),
                scale_down_after: bg.keep_previous_for.to_string(),
            },
        ),
        record_step(env_name, env),
        unlock_step(env_name, env),
    ];
    let decision = Decision::run(format!(
        "workflow_dispatch asked to switch {env_name} to its idle color"
    ));
    job(JobKind::Switch, &id, &[], Some(env_name), decision, steps)
}

/// `cleanup-<env>`: a blue-green environment's previous color scaled down once past
/// `keep_previous_for`, between a lock and its release.
pub(super) fn cleanup_job(
    pipeline: &Pipeline,
    env_name: &str,
    env: &Environment,
    decision: Decision,
) -> Job {
    let ns = env.namespace.clone();
    let steps = vec![
        lock_step(env_name, env),
        step(
            "live-color",
            Decision::run("the live color is read from the Services' selectors, never assumed"),
            Action::ReadLiveColor {
                namespace: ns.clone(),
                services: workloads(pipeline),
            },
        ),
        step(
            "cleanup",
            Decision::run("only what is past its keep time and not live; its HPA is lowered first"),
            Action::CleanupColors {
                namespace: ns.clone(),
                workloads: workloads(pipeline),
            },
        ),
        unlock_step(env_name, env),
    ];
    job(
        JobKind::Cleanup,
        &format!("cleanup-{env_name}"),
        &[],
        Some(env_name),
        decision,
        steps,
    )
}

/// `prune` and `backup`, each when its cron fired (or when the cron is not known).
pub(super) fn scheduled_jobs(pipeline: &Pipeline, fired: Option<&str>) -> Vec<Job> {
    let due = |what: &str, schedule: &str| match fired {
        None => Decision::run(format!(
            "scheduled run without a cron expression: every scheduled job runs ({what}: `{schedule}`)"
        )),
        Some(cron) if cron.split_whitespace().eq(schedule.split_whitespace()) => {
            Decision::run(format!("`{cron}` is the {what} schedule"))
        }
        Some(cron) => Decision::skip(format!("`{cron}` is not the {what} schedule `{schedule}`")),
    };
    let mut jobs = Vec::new();
    match &pipeline.retention {
        Some(retention) => {
            let repositories: Vec<String> = {
                let mut all: Vec<String> = pipeline
                    .components
                    .keys()
                    .map(|c| tags::repository(pipeline, c))
                    .collect();
                all.dedup();
                all
            };
            let mut always_keep: Vec<String> = pipeline
                .environments
                .keys()
                .map(|e| format!("`{e}` environment tags"))
                .collect();
            always_keep.push("`latest`".to_owned());
            always_keep.push("every digest deployed in any environment".to_owned());
            always_keep.push("children of kept multi-arch indexes and attestations".to_owned());
            let step = step(
                "prune",
                Decision::run("fails closed: an incomplete listing deletes nothing"),
                Action::PruneImages {
                    repositories,
                    keep_sha_tags: retention.keep_sha_tags,
                    delete_untagged_after: retention.delete_untagged_after.to_string(),
                    always_keep,
                },
            );
            jobs.push(job(
                JobKind::Prune,
                "prune",
                &[],
                None,
                due("retention", &retention.schedule),
                vec![step],
            ));
        }
        None => jobs.push(job(
            JobKind::Prune,
            "prune",
            &[],
            None,
            Decision::skip("no `retention` in the pipeline file"),
            Vec::new(),
        )),
    }
    for (env_name, env) in &pipeline.environments {
        if env.strategy != Strategy::BlueGreen {
            continue;
        }
        let decision = match &pipeline.retention {
            Some(retention) => due("retention", &retention.schedule),
            None => Decision::run("every scheduled run looks for colors past their keep time"),
        };
        jobs.push(cleanup_job(pipeline, env_name, env, decision));
    }
    match &pipeline.backup {
        Some(backup) => {
            let namespace = pipeline
                .environments
                .get(&backup.environment)
                .map(|e| e.namespace.clone())
                .unwrap_or_default();
            let step = step(
                "backup",
                Decision::run("dump, verify, upload; expire archives past the retention"),
                Action::Backup {
                    environment: backup.environment.clone(),
                    namespace,
                    targets: backup.targets.clone(),
                    destination: backup.destination.clone(),
                    retain_for: backup.retain_for.to_string(),
                },
            );
            jobs.push(job(
                JobKind::Backup,
                "backup",
                &[],
                Some(&backup.environment),
                due("backup", &backup.schedule),
                vec![step],
            ));
        }
        None => jobs.push(job(
            JobKind::Backup,
            "backup",
            &[],
            None,
            Decision::skip("no `backup` in the pipeline file"),
            Vec::new(),
        )),
    }
    jobs
}
