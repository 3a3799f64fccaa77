//! Support for the integration tests: running the real `jisu-deploy` binary with a clean
//! environment, and services the tests start for themselves.

pub mod counting_proxy;
pub mod databases;
pub mod fake_github;
pub mod netpol;
pub mod prism_proxy;
pub mod registry_server;
pub mod s3_server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A port on 127.0.0.1 nothing listens on now, for a server a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("no free port on 127.0.0.1")
}

/// Every non-empty document of a YAML text (a multi-document manifest), as JSON.
pub fn yaml_documents(text: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize as _;
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .map(|doc| serde_json::to_value(doc).unwrap())
        .collect()
}

/// The repository root (tests run the binary from here, as a user would).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The bundled example's pipeline file, relative to the repository root (the working
/// directory of both the tests and the binary), so outputs never show a machine's paths.
pub fn example_config() -> PathBuf {
    PathBuf::from("examples/jisu/jisu-deploy.yml")
}

/// A bundled example event payload, relative to the repository root.
pub fn example_event(name: &str) -> PathBuf {
    Path::new("examples/jisu/events").join(name)
}

/// What one run of the binary gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            // A signal (no code) counts as a crash.
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// The binary with no inherited GITHUB_*/INPUT_*/ACT variables, run from the repo root.
pub fn jisu(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jisu-deploy"));
    cmd.env_clear().current_dir(repo_root()).args(args);
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().expect("the jisu-deploy binary runs").into()
}

/// `plan` on a pipeline file and an event payload.
pub fn plan(config: &Path, event: &Path, extra: &[&str]) -> Run {
    let config = config.to_str().unwrap();
    let event = event.to_str().unwrap();
    let mut args = vec!["plan", "--config", config, "--event", event];
    args.extend_from_slice(extra);
    jisu(&args, &[])
}

/// The webhook examples from the npm package `@octokit/webhooks-examples`.
pub fn webhook_examples(event: &str) -> Vec<serde_json::Value> {
    let path =
        repo_root().join("node_modules/@octokit/webhooks-examples/api.github.com/index.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "{}: {err}; run `npm ci` in the repository root (ci/test.sh does)",
            path.display()
        )
    });
    let all: Vec<serde_json::Value> = serde_json::from_str(&text).expect("index.json is JSON");
    let entry = all
        .into_iter()
        .find(|w| w["name"] == event)
        .unwrap_or_else(|| panic!("no `{event}` in the webhook examples"));
    entry["examples"]
        .as_array()
        .expect("examples is a list")
        .clone()
}
