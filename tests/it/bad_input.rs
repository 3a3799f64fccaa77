//! Malformed pipeline files, event payloads and flags: each exits 2 with a message naming
//! what to fix, never panics, and writes no outputs.

use std::path::{Path, PathBuf};

use crate::support::{example_config, example_event, jisu};

/// How a case breaks the example.
enum Break {
    /// Replace text in the example pipeline file (must occur).
    Config(&'static str, &'static str),
    /// Use this text as the whole pipeline file.
    WholeConfig(&'static str),
    /// Use this text as the event payload, with extra flags.
    Event(&'static str, &'static [&'static str]),
    /// Use the push-main payload with these flags instead of a payload.
    Flags(&'static [&'static str]),
}

struct Case {
    name: &'static str,
    broken: Break,
    /// Text the error must contain (the field or flag to fix).
    expect: &'static str,
}

fn cases() -> Vec<Case> {
    use Break::*;
    let case = |name, broken, expect| Case {
        name,
        broken,
        expect,
    };
    vec![
        // Pipeline files.
        case("empty file", WholeConfig(""), "the pipeline file is empty"),
        case(
            "only comments",
            WholeConfig("# nothing yet\n"),
            "the pipeline file is empty",
        ),
        case(
            "invalid yaml",
            WholeConfig("version: 1\nimages: {registry: ghcr.io\n"),
            "pipeline.yml:3:1: ",
        ),
        case(
            "tab indentation",
            WholeConfig("version: 1\nimages:\n\tscheme: x\n"),
            ":3:1: ",
        ),
        case(
            "two documents",
            WholeConfig("version: 1\n---\nversion: 1\n"),
            "holds several YAML documents",
        ),
        case(
            "not a mapping",
            WholeConfig("- 1\n- 2\n"),
            "expected struct Pipeline",
        ),
        case(
            "missing version",
            Config("version: 1\n", ""),
            "missing field `version`",
        ),
        case(
            "version wrong type",
            Config("version: 1\n", "version: one\n"),
            "field `version`",
        ),
        case(
            "unsupported version",
            Config("version: 1\n", "version: 2\n"),
            "field `version`: version 2 is not supported",
        ),
        case(
            "unknown top-level key",
            Config("default_branch: main", "default_brnach: main"),
            "unknown field `default_brnach`",
        ),
        case(
            "unknown environment key",
            Config("    namespace: jisu-staging", "    namspace: jisu-staging"),
            "unknown field `namspace`",
        ),
        case(
            "missing images",
            Config(
                "images:\n  registry: ghcr.io\n",
                "imagez:\n  registry: ghcr.io\n",
            ),
            "unknown field `imagez`",
        ),
        case(
            "unknown scheme",
            Config("scheme: component-prefix", "scheme: by-folder"),
            "field `images.scheme`",
        ),
        case(
            "version prefix that cannot start a tag",
            Config(
                "scheme: component-prefix",
                "scheme: component-prefix\n  version_prefix: \"-v\"",
            ),
            "field `images.version_prefix`: `-v` cannot start an image tag",
        ),
        case(
            "prefix scheme without repository",
            Config("  repository: jisu/platform\n", ""),
            "field `images.repository`",
        ),
        case(
            "uppercase repository",
            Config("repository: jisu/platform", "repository: Jisu/Platform"),
            "field `images.repository`",
        ),
        case(
            "no components",
            Config(
                "components:\n  frontend:",
                "components: {}\nunused:\n  frontend:",
            ),
            "unknown field `unused`",
        ),
        case(
            "port zero",
            Config("port: 8000", "port: 0"),
            "field `components.backend.port`: port must be between 1 and 65535",
        ),
        case(
            "port wrong type",
            Config("port: 8000", "port: http"),
            "field `components.backend.port`",
        ),
        case(
            "port out of range",
            Config("port: 8000", "port: 70000"),
            "field `components.backend.port`",
        ),
        case(
            "missing context",
            Config(
                "context: examples/jisu/frontend",
                "context: examples/jisu/nope",
            ),
            "field `components.frontend.context`: `examples/jisu/nope` is not a directory",
        ),
        case(
            "context outside the repository",
            Config("context: examples/jisu/frontend", "context: ../.."),
            "field `components.frontend.context`",
        ),
        case(
            "dockerfile is a folder",
            Config(
                "dockerfile: examples/jisu/backend/Dockerfile",
                "dockerfile: examples/jisu/backend",
            ),
            "field `components.backend.dockerfile`",
        ),
        case(
            "bad build arg name",
            Config("PYTHON_VERSION:", "PYTHON-VERSION:"),
            "field `components.backend.build_args.PYTHON-VERSION`",
        ),
        case(
            "environment without branch",
            Config("    branch: develop\n", ""),
            "missing field `branch`",
        ),
        case(
            "bad namespace",
            Config("namespace: jisu-prod", "namespace: Jisu_Prod"),
            "field `environments.production.namespace`",
        ),
        case(
            "bad url",
            Config(
                "url: https://staging.jisu.example",
                "url: ftp://staging.jisu.example",
            ),
            "field `environments.staging.url`",
        ),
        case(
            "unknown strategy",
            Config("strategy: rolling", "strategy: canary"),
            "field `environments.staging.strategy`",
        ),
        case(
            "blue_green on a rolling environment",
            Config(
                "    strategy: rolling\n",
                "    strategy: rolling\n    blue_green: {}\n",
            ),
            "field `environments.staging.blue_green`",
        ),
        case(
            "two environments on one branch",
            Config("branch: develop", "branch: main"),
            "field `environments.staging.branch`: branch `main` already deploys",
        ),
        case(
            "replicas of an unknown component",
            Config("      frontend: 1\n", "      worker: 1\n"),
            "field `environments.staging.replicas.worker`",
        ),
        case(
            "duration without unit",
            Config("rollout_timeout: 5m", "rollout_timeout: 5"),
            "field `environments.staging.rollout_timeout`",
        ),
        case(
            "impossible status",
            Config(
                "        retries: 10\n",
                "        retries: 10\n        expect_status: 700\n",
            ),
            "field `environments.production.checks[0].expect_status`",
        ),
        case(
            "check url without slash",
            Config("url: /ready", "url: ready"),
            "field `environments.staging.checks[1].url`",
        ),
        case(
            "command as a string",
            Config("run: [flake8, app, tests]", "run: flake8 app tests"),
            "field `gates.lint[0].run`",
        ),
        case(
            "empty command",
            Config("run: [flake8, app, tests]", "run: []"),
            "field `gates.lint[0].run`",
        ),
        case(
            "bad cron",
            Config("schedule: \"0 3 * * 0\"", "schedule: \"0 3 * *\""),
            "field `retention.schedule`",
        ),
        case(
            "backup of an unknown environment",
            Config(
                "environment: production\n  targets",
                "environment: prod\n  targets",
            ),
            "field `backup.environment`",
        ),
        case(
            "unknown backup target",
            Config("[postgres, redis, kubernetes]", "[postgres, mysql]"),
            "field `backup.targets[1]`",
        ),
        case(
            "backup destination not s3",
            Config("s3://jisu-backups/production", "/var/backups"),
            "field `backup.destination`",
        ),
        case(
            "backup secrets recipient that is not an age key",
            Config(
                "  monthly: 12\n",
                "  monthly: 12\n  kubernetes: {secrets_recipient: ssh-ed25519 AAAA}\n",
            ),
            "field `backup.kubernetes.secrets_recipient`: not an age recipient",
        ),
        case(
            "postgres target without its database",
            Config(
                "  postgres: {host: postgres.jisu-prod.svc, user: jisu, database: jisu}\n",
                "",
            ),
            "field `backup.postgres`: the `postgres` target needs",
        ),
        // Events and flags.
        case(
            "payload not json",
            Event("{\"ref\": ", &[]),
            "not a valid JSON payload",
        ),
        case(
            "payload is a list",
            Event("[1, 2]", &[]),
            "an event payload is a JSON object",
        ),
        case(
            "payload of unknown shape",
            Event("{\"zen\": \"hi\"}", &[]),
            "cannot tell which event",
        ),
        case(
            "push ref wrong type",
            Event("{\"ref\": 123, \"after\": \"x\"}", &[]),
            "field `ref`",
        ),
        case(
            "push without after",
            Event("{\"ref\": \"refs/heads/main\", \"commits\": []}", &[]),
            "missing field `after`",
        ),
        case(
            "push with a short sha",
            Event(
                "{\"ref\": \"refs/heads/main\", \"after\": \"abc1234\"}",
                &[],
            ),
            "after: `abc1234` is not a full commit sha",
        ),
        case(
            "pull request without head",
            Event(
                "{\"action\": \"opened\", \"number\": 1, \"pull_request\": {}}",
                &["--event-name", "pull_request"],
            ),
            "field `pull_request`: not a valid pull_request payload: missing field `head`",
        ),
        case(
            "dispatch without operation",
            Event(
                "{\"ref\": \"refs/heads/main\", \"inputs\": {\"environment\": \"production\"}}",
                &[],
            ),
            "field `operation`",
        ),
        case(
            "promote without sha",
            Event(
                "{\"ref\": \"refs/heads/main\", \"inputs\": {\"operation\": \"promote\", \"environment\": \"production\"}}",
                &[],
            ),
            "field `sha`",
        ),
        case(
            "promote to an unknown environment",
            Event(
                "{\"ref\": \"refs/heads/main\", \"inputs\": {\"operation\": \"rollback\", \"environment\": \"qa\"}}",
                &[],
            ),
            "field `environment`: `qa` is not an environment",
        ),
        case(
            "schedule nobody configured",
            Event("{\"schedule\": \"5 4 * * *\"}", &[]),
            "matches neither `retention.schedule` nor `backup.schedule`",
        ),
        case(
            "unknown event name",
            Flags(&["--event-name", "issues", "--ref", "refs/heads/main"]),
            "event `issues` is not one jisu-deploy runs on",
        ),
        case(
            "short sha flag",
            Flags(&[
                "--event-name",
                "push",
                "--ref",
                "refs/heads/main",
                "--sha",
                "abc",
            ]),
            "--sha: `abc` is not a full commit sha",
        ),
        case(
            "input without equals",
            Flags(&[
                "--event-name",
                "workflow_dispatch",
                "--ref",
                "refs/heads/main",
                "--input",
                "operation",
            ]),
            "`operation` is not KEY=VALUE",
        ),
        case("no event at all", Flags(&[]), "no event given"),
        case(
            "unknown output format",
            Flags(&["--event-name", "schedule", "--output", "yaml"]),
            "invalid value 'yaml'",
        ),
        case(
            "missing pipeline file",
            Flags(&["--config", "no/such/file.yml", "--event-name", "schedule"]),
            "cannot read the pipeline file",
        ),
        case(
            "missing event file",
            Flags(&["--event", "no/such/event.json"]),
            "cannot read the event payload",
        ),
    ]
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn every_malformed_input_exits_2_naming_what_to_fix() {
    let example = std::fs::read_to_string(example_config()).unwrap();
    let cases = cases();
    assert!(cases.len() >= 30, "the issue asks for at least 30 cases");
    let mut failures = Vec::new();
    for case in &cases {
        let dir = tempfile::tempdir().unwrap();
        let mut config = example_config();
        let mut event = example_event("push-main.json");
        let mut flags: Vec<&str> = Vec::new();
        match &case.broken {
            Break::Config(from, to) => {
                assert!(
                    example.contains(from),
                    "{}: `{from}` not in the example",
                    case.name
                );
                config = write(dir.path(), "pipeline.yml", &example.replacen(from, to, 1));
            }
            Break::WholeConfig(text) => config = write(dir.path(), "pipeline.yml", text),
            Break::Event(text, extra) => {
                event = write(dir.path(), "event.json", text);
                flags.extend_from_slice(extra);
            }
            Break::Flags(extra) => flags.extend_from_slice(extra),
        }
        let (config, event) = (config.display().to_string(), event.display().to_string());
        let mut args = vec!["plan"];
        if !flags.contains(&"--config") {
            args.extend(["--config", &config]);
        }
        if !matches!(case.broken, Break::Flags(_)) {
            args.extend(["--event", &event]);
        }
        args.extend(flags);
        let output = dir.path().join("github_output");
        let run = jisu(&args, &[("GITHUB_OUTPUT", output.to_str().unwrap())]);
        let problem = if run.stderr.contains("panicked") {
            Some("panicked")
        } else if run.code != 2 {
            Some("exit code is not 2")
        } else if !run.stderr.contains(case.expect) {
            Some("message does not name what to fix")
        } else if output.exists() {
            Some("wrote step outputs despite bad input")
        } else {
            None
        };
        if let Some(problem) = problem {
            failures.push(format!(
                "{}: {problem} (exit {})\n  expected: {}\n  stderr: {}",
                case.name,
                run.code,
                case.expect,
                run.stderr.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
