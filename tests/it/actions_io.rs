//! Behaviour inside GitHub Actions and `act`: outputs, summary, annotations, dry-run default.

use crate::support::{example_config, example_event, jisu};

fn plan_args(event: &str) -> Vec<String> {
    vec![
        "plan".into(),
        "--config".into(),
        example_config().display().to_string(),
        "--event".into(),
        example_event(event).display().to_string(),
    ]
}

#[test]
fn outputs_and_summary_are_written_in_actions() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("output");
    let summary = dir.path().join("summary");
    let args = plan_args("push-main.json");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = jisu(
        &args,
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_OUTPUT", output.to_str().unwrap()),
            ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let group = "::group::jisu-deploy plan: push to branch `main` at 9e8d7c6 [plan only: a run would change things]\n";
    assert!(run.stdout.starts_with(group), "{}", run.stdout);
    assert!(run.stdout.ends_with("::endgroup::\n"), "{}", run.stdout);

    let outputs = std::fs::read_to_string(&output).unwrap();
    assert!(
        outputs.contains("jobs=lint,security,test,build,deploy-production\n"),
        "{outputs}"
    );
    assert!(outputs.contains("environment=production\n"), "{outputs}");
    assert!(outputs.contains("dry-run=false\n"), "{outputs}");
    // The plan is multi-line JSON in heredoc form: name<<DELIM ... DELIM.
    let start = outputs.find("plan<<").expect("plan output in heredoc form");
    let rest = &outputs[start + "plan<<".len()..];
    let (delimiter, body) = rest.split_once('\n').unwrap();
    let json = &body[..body
        .find(&format!("\n{delimiter}\n"))
        .expect("closing delimiter")];
    let plan: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(plan["jobs"][4]["id"], "deploy-production");

    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains("| **deploy-production** | | yes |"), "{md}");
    assert!(md.contains("```mermaid\nflowchart LR\n"), "{md}");
    assert!(md.contains("  build --> deploy_production\n"), "{md}");
    assert!(md.contains("class deploy_staging skipped"), "{md}");
}

#[test]
fn act_means_dry_run_unless_the_input_says_otherwise() {
    let args = plan_args("push-develop.json");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--output", "json"]);
    let dry = |env: &[(&str, &str)]| -> bool {
        let run = jisu(&args, env);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let plan: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        plan["dry_run"].as_bool().unwrap()
    };
    assert!(!dry(&[]));
    assert!(dry(&[("ACT", "true")]));
    assert!(!dry(&[("ACT", "true"), ("INPUT_DRY-RUN", "false")]));
    assert!(dry(&[("INPUT_DRY-RUN", "true")]));
    // An empty input (an unset action input) is no input.
    assert!(dry(&[("ACT", "true"), ("INPUT_DRY-RUN", "")]));
}

#[test]
fn the_runner_variables_select_the_event() {
    let event = example_event("pull-request.json");
    let run = jisu(
        &["plan", "--config", example_config().to_str().unwrap()],
        &[
            ("GITHUB_EVENT_NAME", "pull_request"),
            ("GITHUB_EVENT_PATH", event.to_str().unwrap()),
            // The merge commit: must lose to the payload's head sha.
            ("GITHUB_SHA", "dddddddddddddddddddddddddddddddddddddddd"),
            ("INPUT_CONFIG", "ignored-because-the-flag-wins.yml"),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("Plan for pull request #42 into `main` at c0ffee0"),
        "{}",
        run.stdout
    );
}

#[test]
fn bad_input_in_actions_is_an_error_annotation_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.yml");
    let text = std::fs::read_to_string(example_config())
        .unwrap()
        .replace("namespace: jisu-prod", "namespace: Jisu_Prod");
    let line = text.lines().position(|l| l.contains("Jisu_Prod")).unwrap() + 1;
    std::fs::write(&config, text).unwrap();
    let run = jisu(
        &[
            "plan",
            "--config",
            config.to_str().unwrap(),
            "--event",
            example_event("push-main.json").to_str().unwrap(),
        ],
        &[("GITHUB_ACTIONS", "true")],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    let file = config
        .display()
        .to_string()
        .replace(':', "%3A")
        .replace(',', "%2C");
    let expected =
        format!("::error file={file},line={line},col=5,title=jisu-deploy%3A bad input::");
    assert!(run.stdout.contains(&expected), "stdout:\n{}", run.stdout);
    assert!(
        run.stdout
            .contains("field `environments.production.namespace`"),
        "{}",
        run.stdout
    );
}

#[test]
fn help_explains_each_command() {
    let run = jisu(&["--help"], &[]);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.contains("plan") && run.stdout.contains("Exit codes"),
        "{}",
        run.stdout
    );
    let run = jisu(&["plan", "--help"], &[]);
    assert!(
        run.stdout.contains("--event <FILE>") && run.stdout.contains("GITHUB_EVENT_PATH"),
        "{}",
        run.stdout
    );
}

#[test]
fn image_tags_prints_text_and_json() {
    let event = example_event("push-main.json");
    let args = [
        "image",
        "tags",
        "--config",
        "examples/jisu/jisu-deploy.yml",
        "--event",
        event.to_str().unwrap(),
    ];
    let run = jisu(&args, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("backend (push):\n  ghcr.io/jisu/platform:backend-9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a291807\n"), "{}", run.stdout);
    let mut json_args = args.to_vec();
    json_args.extend(["--output", "json"]);
    let run = jisu(&json_args, &[]);
    let images: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        images[1]["tags"],
        serde_json::json!([
            "frontend-9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a291807",
            "frontend-main",
            "frontend-latest"
        ])
    );
}

#[test]
fn registry_passwords_are_masked_before_anything_runs() {
    let run = jisu(
        &[
            "image",
            "retag",
            "localhost:5000/a:b",
            "localhost:5000/Bad:c",
            "--registry-username",
            "ci",
        ],
        &[
            ("GITHUB_ACTIONS", "true"),
            ("REGISTRY_PASSWORD", "s3cret-value"),
        ],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("::add-mask::s3cret-value\n"),
        "{}",
        run.stdout
    );
    assert!(!run.stderr.contains("s3cret-value"), "{}", run.stderr);
}
