//! The job summary of a run: snapshots of its Markdown, hostile text shown as text, GitHub's
//! size limit, and its Mermaid diagrams checked by Mermaid's own parser (`ci/mermaid-parse.mjs`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use jisu_deploy::config::Checkout;
use jisu_deploy::config::context::{ContextSources, RunContext};
use jisu_deploy::execute::report::{
    FindingLine, GateFindings, JobReport, REPORT_SCHEMA_VERSION, RunReport, Status, StepReport,
};
use jisu_deploy::plan::Plan;
use jisu_deploy::plan::render::View;
use jisu_deploy::report::summary::{SUMMARY_LIMIT_BYTES, plan_markdown, run_markdown};

use crate::support::{example_config, example_event, repo_root};

/// When the example runs start: 2025-03-04T05:06:07.890Z.
const T0: i64 = 1_741_064_767_890;

const SHA: &str = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d";

const HOSTILE: &str =
    "<img src=x onerror=alert(1)> a|b `tick` [x](http://evil) ](http://evil)\nline2 @everyone";

/// A step that ran from `at` ms after [`T0`] for `ms`.
fn ran(id: &str, kind: &str, status: Status, at: i64, ms: u64) -> StepReport {
    let started = jiff::Timestamp::from_millisecond(T0 + at).unwrap();
    StepReport {
        id: id.to_owned(),
        kind: kind.to_owned(),
        status,
        reason: None,
        started: Some(started.to_string()),
        duration_ms: Some(ms),
        outputs: BTreeMap::new(),
        error: None,
        failure: None,
        findings: None,
    }
}

/// A step that did not run, and why.
fn not_run(id: &str, status: Status, reason: &str) -> StepReport {
    StepReport {
        reason: Some(reason.to_owned()),
        started: None,
        duration_ms: None,
        ..ran(id, "run_command", status, 0, 0)
    }
}

fn job(id: &str, status: Status, steps: Vec<StepReport>) -> JobReport {
    let start = steps.iter().filter_map(|s| s.started.clone()).next();
    let duration = steps.iter().filter_map(|s| s.duration_ms).sum::<u64>();
    JobReport {
        id: id.to_owned(),
        environment: id.strip_prefix("deploy-").map(str::to_owned),
        status,
        reason: None,
        duration_ms: start.as_ref().map(|_| duration),
        started: start,
        steps,
    }
}

fn finding(
    tool: &str,
    severity: &str,
    path: &str,
    line: Option<u32>,
    message: &str,
) -> FindingLine {
    FindingLine {
        tool: tool.to_owned(),
        severity: severity.to_owned(),
        path: path.to_owned(),
        line,
        code: Some(format!("{}001", tool[..1].to_ascii_uppercase())),
        message: message.to_owned(),
    }
}

fn findings(errors: usize, warnings: usize, first: Vec<FindingLine>) -> GateFindings {
    GateFindings {
        errors,
        warnings,
        notices: 0,
        coverage_percent: None,
        verdicts: vec![format!("{errors} errors, at most 0 allowed")],
        first,
    }
}

fn report(event: &str, result: Status, jobs: Vec<JobReport>) -> RunReport {
    RunReport {
        schema_version: REPORT_SCHEMA_VERSION,
        event: event.to_owned(),
        sha: Some(SHA.to_owned()),
        result,
        digests: BTreeMap::new(),
        environment_url: None,
        jobs,
        duration_ms: 95_000,
    }
}

/// A push to `develop`: clean gates with a few warnings and coverage, two builds, a deploy.
fn succeeded_run() -> RunReport {
    let mut flake8 = ran("flake8", "run_command", Status::Succeeded, 0, 1_200);
    flake8.findings = Some(GateFindings {
        verdicts: vec![
            "0 errors, at most 0 allowed".into(),
            "2 warnings are reported, not gated".into(),
        ],
        ..findings(
            0,
            2,
            vec![
                finding(
                    "flake8",
                    "warning",
                    "app/api.py",
                    Some(12),
                    "W291 trailing whitespace",
                ),
                finding(
                    "flake8",
                    "warning",
                    "app/models/fund_nav.py",
                    Some(3),
                    "W605 invalid escape sequence '\\d'",
                ),
            ],
        )
    });
    let mut pytest = ran("pytest", "run_command", Status::Succeeded, 1_300, 20_500);
    pytest.findings = Some(GateFindings {
        coverage_percent: Some(87.25),
        verdicts: vec!["coverage 87.2% is at least 80%".into()],
        ..findings(0, 0, Vec::new())
    });
    let mut deploy = ran("apply", "apply", Status::Succeeded, 60_000, 4_000);
    deploy.outputs.insert("applied".into(), "7".into());
    let mut run = report(
        "push to branch `develop` at 9e8d7c6",
        Status::Succeeded,
        vec![
            job("lint", Status::Succeeded, vec![flake8]),
            job("test", Status::Succeeded, vec![pytest]),
            job(
                "build",
                Status::Succeeded,
                vec![
                    ran("backend", "build_image", Status::Succeeded, 22_000, 31_000),
                    ran("frontend", "build_image", Status::Succeeded, 22_000, 18_500),
                ],
            ),
            job(
                "deploy-staging",
                Status::Succeeded,
                vec![
                    ran("lock", "acquire_lock", Status::Succeeded, 59_000, 300),
                    deploy,
                    ran("wait", "wait_rollout", Status::Succeeded, 64_000, 25_000),
                    ran("checks", "http_checks", Status::Succeeded, 89_000, 850),
                ],
            ),
        ],
    );
    for component in ["backend", "frontend"] {
        run.digests.insert(
            component.into(),
            format!("ghcr.io/jisu/platform@sha256:{}", "ab12".repeat(16)),
        );
    }
    run.environment_url = Some("https://staging.jisu.example".into());
    run
}

/// A push to `main` whose bandit gate fails: the jobs after it are not reached.
fn failed_run() -> RunReport {
    let mut bandit = ran("bandit", "run_command", Status::Failed, 0, 2_400);
    bandit.error = Some("gate bandit: 1 error, at most 0 allowed".into());
    bandit.findings = Some(findings(1, 23, {
        let mut first = vec![finding(
            "bandit",
            "error",
            "app/db.py",
            Some(40),
            "B608 possible SQL injection through string-based query construction",
        )];
        first.extend((1..20).map(|n| {
            finding(
                "bandit",
                "warning",
                "app/util.py",
                Some(n),
                "B101 use of assert detected",
            )
        }));
        first
    }));
    let mut audit = ran("pip-audit", "run_command", Status::Succeeded, 2_500, 3_100);
    audit.findings = Some(findings(0, 0, Vec::new()));
    let mut deploy = job(
        "deploy-production",
        Status::NotReached,
        vec![
            not_run(
                "lock",
                Status::NotReached,
                "needs `build`, which was not reached",
            ),
            not_run(
                "deploy-idle",
                Status::NotReached,
                "needs `build`, which was not reached",
            ),
        ],
    );
    deploy.reason = Some("needs `build`, which was not reached".into());
    let mut build = job(
        "build",
        Status::NotReached,
        vec![not_run(
            "backend",
            Status::NotReached,
            "needs `security`, which failed",
        )],
    );
    build.reason = Some("needs `security`, which failed".into());
    let mut staging = job("deploy-staging", Status::Skipped, Vec::new());
    staging.reason = Some("deploys branch `develop`, not `main`".into());
    report(
        "push to branch `main` at 9e8d7c6",
        Status::Failed,
        vec![
            job(
                "lint",
                Status::Succeeded,
                vec![ran("flake8", "run_command", Status::Succeeded, 0, 900)],
            ),
            job("security", Status::Failed, vec![bandit, audit]),
            build,
            deploy,
            staging,
        ],
    )
}

/// Attacker-shaped text everywhere a tool, a branch, a path or an error reaches.
fn hostile_run() -> RunReport {
    let mut gate = ran(
        &format!("gate: x # y; {HOSTILE}"),
        "run_command",
        Status::Failed,
        0,
        1_000,
    );
    gate.error = Some(HOSTILE.into());
    gate.findings = Some(GateFindings {
        verdicts: vec![HOSTILE.into()],
        ..findings(
            1,
            0,
            vec![FindingLine {
                tool: "flake8<script>".into(),
                severity: "error".into(),
                path: "app/`x`.py|<b>".into(),
                line: Some(1),
                code: Some("E1|`".into()),
                message: HOSTILE.into(),
            }],
        )
    });
    let steps = vec![
        gate,
        ran("click me", "run_command", Status::Succeeded, 1_000, 10),
        ran("title oops", "run_command", Status::Succeeded, 1_010, 10),
        ran("section: evil", "run_command", Status::Succeeded, 1_020, 10),
        ran(
            "%%{init: {}}%% 2024-01-01",
            "run_command",
            Status::Succeeded,
            1_030,
            10,
        ),
        ran(
            "gantt-x\nexcludes weekends",
            "run_command",
            Status::Succeeded,
            1_040,
            10,
        ),
        ran("", "run_command", Status::Succeeded, 1_050, 10),
    ];
    let mut run = report(
        &format!("push to branch `{HOSTILE}` at 9e8d7c6"),
        Status::Failed,
        vec![job(&format!("end: {HOSTILE}"), Status::Failed, steps)],
    );
    run.digests
        .insert(HOSTILE.into(), format!("repo@sha256:{HOSTILE}"));
    run.environment_url = Some(format!("javascript:alert(1)//{HOSTILE}"));
    run
}

#[test]
fn a_successful_run_with_findings_builds_and_a_deploy() {
    let run = succeeded_run();
    let plan = example_plan("push-develop.json");
    let md = run_markdown(&run, Some(&plan));
    // The plan's flowchart follows the page run_markdown gives.
    assert!(md.starts_with(&run_markdown(&run, None)), "{md}");
    insta::assert_snapshot!("run-succeeded", md);
}

#[test]
fn a_failed_gate_and_the_jobs_it_kept_from_running() {
    let md = run_markdown(&failed_run(), None);
    // Steps that did not run are rows, but not bars of the timeline.
    let timeline = &md[md.find("```mermaid\ngantt").unwrap()..];
    assert!(!timeline.contains("deploy"), "{timeline}");
    insta::assert_snapshot!("run-failed", md);
}

#[test]
fn hostile_text_is_shown_as_text() {
    let md = run_markdown(&hostile_run(), None);
    // Outside the diagrams, with the escaped brackets taken out: no HTML, link or mention.
    let outside_diagrams = md
        .split("```")
        .step_by(2)
        .collect::<String>()
        .replace("\\]", "");
    for raw in [
        "<img",
        "<script",
        "<b>",
        "](",
        "@everyone",
        "javascript:alert(1)//<",
    ] {
        assert!(
            !outside_diagrams.contains(raw),
            "`{raw}` reached the Markdown:\n{md}"
        );
    }
    // Every table row keeps its column count: no `|` got through unescaped.
    for row in md.lines().filter(|l| l.starts_with('|')) {
        let columns = row.replace("\\|", "").matches('|').count();
        assert!(columns == 6 || columns == 8 || columns == 3, "{row}");
    }
    insta::assert_snapshot!("run-hostile", md);
}

#[test]
fn the_summary_stays_under_githubs_limit() {
    let long = "x".repeat(3_000);
    let gates: Vec<StepReport> = (0..100)
        .map(|n| {
            let mut step = ran(&format!("gate-{n}"), "run_command", Status::Failed, n, 5);
            let first = (0..20)
                .map(|line| finding("flake8", "error", &long, Some(line), &long))
                .collect();
            step.findings = Some(findings(500, 0, first));
            step
        })
        .collect();
    let mut run = report(
        "push",
        Status::Failed,
        vec![job("lint", Status::Failed, gates)],
    );
    let md = run_markdown(&run, None);
    assert!(md.len() <= SUMMARY_LIMIT_BYTES, "{} bytes", md.len());
    assert!(
        md.contains("Left out: the findings tables (their counts are shown)."),
        "{}",
        &md[..2000]
    );
    assert_eq!(
        md.matches("| lint / gate-").count(),
        100,
        "every gate keeps its counts"
    );

    let many: Vec<StepReport> = (0..3_000)
        .map(|n| {
            let mut step = ran(&format!("step-{n}"), "run_command", Status::Failed, n, 5);
            step.error = Some(long.clone());
            step
        })
        .collect();
    run.jobs.push(job("many", Status::Failed, many));
    let md = run_markdown(&run, None);
    assert!(md.len() <= SUMMARY_LIMIT_BYTES, "{} bytes", md.len());
    let note = md
        .lines()
        .find(|l| l.contains("Shortened to fit"))
        .expect("a note");
    assert!(
        note.contains("the findings tables") && note.contains(" of 3100 steps"),
        "{note}"
    );
    assert!(md.ends_with("```\n"), "the timeline is whole");
    assert!(
        md.len() > SUMMARY_LIMIT_BYTES / 2,
        "as much as fits is shown: {}",
        md.len()
    );
}

/// The example pipeline's plan for one bundled event.
fn example_plan(event: &str) -> Plan {
    let root = repo_root();
    let pipeline = jisu_deploy::config::load(&root.join(example_config()), &Checkout::new(&root))
        .unwrap_or_else(|err| panic!("{err}"));
    let path = root.join(example_event(event));
    let context = RunContext::resolve(&ContextSources {
        event_path: Some(path.display().to_string()),
        event_payload: Some(std::fs::read_to_string(&path).unwrap()),
        ..ContextSources::default()
    })
    .unwrap_or_else(|err| panic!("{err}"));
    jisu_deploy::plan::build(&pipeline, &context, false, "jisu-deploy.yml")
        .unwrap_or_else(|err| panic!("{err}"))
}

/// The plan for a push to `main` with job ids Mermaid could misread.
fn hostile_plan() -> Plan {
    let mut plan = example_plan("push-main.json");
    let renames: BTreeMap<String, String> = plan
        .jobs
        .iter()
        .zip(["end", "a-b", "a_b", "class \"x\" #1; <b>`", "9lives"])
        .map(|(job, name)| (job.id.clone(), name.to_owned()))
        .collect();
    for job in &mut plan.jobs {
        if let Some(name) = renames.get(&job.id) {
            job.id = name.clone();
        }
        for need in &mut job.needs {
            if let Some(name) = renames.get(need) {
                *need = name.clone();
            }
        }
    }
    plan
}

/// Every ```mermaid block of `markdown`.
fn mermaid_blocks(markdown: &str) -> Vec<String> {
    markdown
        .split("```mermaid\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap().to_owned())
        .collect()
}

/// Runs `ci/mermaid-parse.mjs` on `diagrams`; its exit status and output.
fn mermaid_parse(diagrams: &[(String, String)]) -> (bool, String) {
    let root = repo_root();
    assert!(
        root.join("node_modules/mermaid").is_dir() && root.join("node_modules/jsdom").is_dir(),
        "node_modules/mermaid or jsdom is missing: run `npm ci` in the repository root \
         (ci/install-test-deps.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = diagrams
        .iter()
        .map(|(name, text)| {
            let file = dir.path().join(format!("{name}.mmd"));
            std::fs::write(&file, text).unwrap();
            file
        })
        .collect();
    let out = Command::new("node")
        .arg("ci/mermaid-parse.mjs")
        .args(&files)
        .current_dir(&root)
        .output()
        .expect("node runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn mermaid_parses_every_diagram_of_the_summaries() {
    let events = [
        "push-main.json",
        "push-develop.json",
        "pull-request.json",
        "dispatch-promote.json",
        "dispatch-rollback.json",
        "schedule-prune.json",
        "schedule-backup.json",
    ];
    let mut diagrams = Vec::new();
    let mut add = |name: &str, markdown: &str, expected: usize| {
        let blocks = mermaid_blocks(markdown);
        assert_eq!(blocks.len(), expected, "{name}:\n{markdown}");
        for (n, block) in blocks.into_iter().enumerate() {
            diagrams.push((format!("{name}-{n}"), block));
        }
    };
    for event in events {
        add(
            &format!("plan-{event}"),
            &plan_markdown(&example_plan(event), View::Plan),
            1,
        );
    }
    let hostile = hostile_plan();
    let chart = jisu_deploy::report::summary::mermaid(&hostile);
    for node in [
        "job_end[\"end\"]",
        "a_b[\"a-b\"]",
        "a_b_2[\"a_b\"]",
        "job_9lives",
    ] {
        assert!(chart.contains(node), "no {node} in\n{chart}");
    }
    assert!(
        chart.contains("[\"class #34;x#34; #35;1; #60;b#62;#96;\"]"),
        "{chart}"
    );
    add("plan-hostile", &plan_markdown(&hostile, View::Plan), 1);
    add(
        "run-succeeded",
        &run_markdown(&succeeded_run(), Some(&example_plan("push-develop.json"))),
        2,
    );
    add(
        "run-failed",
        &run_markdown(&failed_run(), Some(&example_plan("push-main.json"))),
        2,
    );
    add(
        "run-hostile",
        &run_markdown(&hostile_run(), Some(&hostile)),
        2,
    );

    let (ok, out) = mermaid_parse(&diagrams);
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains(": ok ")).count(),
        diagrams.len(),
        "{out}"
    );
    // Each step that ran is a task: none was read as a statement or lost to a comment.
    assert!(
        out.contains("run-hostile-0.mmd: ok gantt, 7 tasks"),
        "{out}"
    );
    assert!(
        out.contains("run-succeeded-0.mmd: ok gantt, 8 tasks"),
        "{out}"
    );
    assert!(out.contains("run-failed-0.mmd: ok gantt, 3 tasks"), "{out}");
}

#[test]
fn the_mermaid_check_catches_a_syntax_error() {
    let good = mermaid_blocks(&run_markdown(&succeeded_run(), None)).remove(0);
    let broken = good
        .replacen(" :done, ", " :done ", 1)
        .replacen("section", "section\n  :", 1);
    let flowchart = "flowchart LR\n  a[\"x\"] --> end\n".to_owned();
    let (ok, out) = mermaid_parse(&[
        ("good".into(), good),
        ("broken-gantt".into(), broken),
        ("broken-flowchart".into(), flowchart),
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("good.mmd: ok gantt"), "{out}");
    assert!(out.contains("broken-gantt.mmd: ERROR"), "{out}");
    assert!(out.contains("broken-flowchart.mmd: ERROR"), "{out}");
}
