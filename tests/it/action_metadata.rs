//! `action.yml` matches the binary: every input is read, every declared output is written,
//! and every command the action offers runs.
//!
//! actionlint checks workflows, not action metadata, so this is the check that fails when
//! the two drift apart.

use std::collections::BTreeSet;

use clap::CommandFactory;
use jisu_deploy::cli::Cli;

use crate::support::{example_config, example_event, jisu};

fn action() -> serde_yaml::Value {
    let text = std::fs::read_to_string("action.yml").expect("action.yml at the repository root");
    serde_yaml::from_str(&text).expect("action.yml is YAML")
}

fn keys(value: &serde_yaml::Value) -> BTreeSet<String> {
    value
        .as_mapping()
        .expect("a mapping")
        .keys()
        .map(|k| k.as_str().expect("string keys").to_owned())
        .collect()
}

/// Every `INPUT_*` variable some flag of some subcommand reads.
fn input_vars() -> BTreeSet<String> {
    fn walk(cmd: &clap::Command, out: &mut BTreeSet<String>) {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env().and_then(|e| e.to_str())
                && env.starts_with("INPUT_")
            {
                out.insert(env.to_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = BTreeSet::new();
    walk(&Cli::command(), &mut out);
    out
}

#[test]
fn every_input_reaches_the_binary() {
    let action = action();
    let vars = input_vars();
    let passed_as_env: Vec<String> = action["runs"]["env"]
        .as_mapping()
        .map(|env| {
            env.values()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for input in keys(&action["inputs"]) {
        if input == "command" {
            continue; // the container's argument, checked below
        }
        let var = jisu_deploy::github::actions::input_var(&input);
        // The kubeconfig input holds a file's content, which the Kubernetes client reads.
        let read_directly = var == jisu_deploy::kube::client::INPUT_KUBECONFIG;
        let mapped = passed_as_env.contains(&format!("${{{{ inputs.{input} }}}}"));
        assert!(
            vars.contains(&var) || read_directly || mapped,
            "action input `{input}` is read by no flag (env = \"{var}\") and not passed in runs.env"
        );
        let description = action["inputs"][input.as_str()]["description"].as_str();
        assert!(
            description.is_some_and(|d| !d.is_empty()),
            "input `{input}` needs a description"
        );
    }
}

#[test]
fn every_offered_command_runs() {
    let action = action();
    assert_eq!(action["runs"]["using"], "docker");
    let image = action["runs"]["image"].as_str().unwrap();
    assert!(
        image.starts_with("docker://ghcr.io/"),
        "a prebuilt image, not a build per run: {image}"
    );
    assert_eq!(action["runs"]["args"][0], "${{ inputs.command }}");
    let default = action["inputs"]["command"]["default"].as_str().unwrap();
    let exists = Cli::command()
        .get_subcommands()
        .any(|s| s.get_name() == default);
    assert!(exists, "default command `{default}` is not a subcommand");
    // Each command the description offers, passed as the container passes it: one
    // argument, which the binary splits into words.
    let description = action["inputs"]["command"]["description"].as_str().unwrap();
    let offered: Vec<&str> = description.split('`').skip(1).step_by(2).collect();
    assert_eq!(
        offered,
        [
            "plan",
            "run",
            "image build",
            "promote",
            "deploy",
            "rollback",
            "switch",
            "cleanup",
            "status",
            "image prune"
        ]
    );
    for command in offered {
        let run = jisu(&[command, "--help"], &[]);
        assert_eq!(
            run.code, 0,
            "command input `{command}` does not run: {}",
            run.stderr
        );
    }
}

#[test]
fn every_declared_output_is_written_by_some_command() {
    // The names handed to `Runner::set_outputs`, read from the source.
    let mut written = BTreeSet::new();
    let mut dirs = vec![std::path::PathBuf::from("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for call in text.split("set_outputs(").skip(1) {
                let call = &call[..call.find(");").unwrap_or(call.len())];
                for name in call.split("(\"").skip(1) {
                    written.insert(name[..name.find('"').unwrap()].to_owned());
                }
            }
        }
    }
    for name in keys(&action()["outputs"]) {
        assert!(
            written.contains(&name),
            "action.yml declares output `{name}` that no command writes ({written:?})"
        );
    }
}

#[test]
fn plan_writes_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("output");
    let config = example_config();
    let event = example_event("push-develop.json");
    let run = jisu(
        &[
            "plan",
            "--config",
            config.to_str().unwrap(),
            "--event",
            event.to_str().unwrap(),
        ],
        &[("GITHUB_OUTPUT", output.to_str().unwrap())],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let written = output_names(&std::fs::read_to_string(&output).unwrap());
    for name in ["jobs", "environment", "dry-run", "plan"] {
        assert!(
            written.contains(name),
            "plan does not write output `{name}` ({written:?})"
        );
    }
}

/// Output names in a `GITHUB_OUTPUT` file: `name=value` lines and `name<<DELIM` heredocs.
fn output_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some((name, delimiter)) = line.split_once("<<") {
            names.insert(name.to_owned());
            for body in lines.by_ref() {
                if body == delimiter {
                    break;
                }
            }
        } else if let Some((name, _)) = line.split_once('=') {
            names.insert(name.to_owned());
        }
    }
    names
}
