//! Once per process: the runner's files, every secret masked, the workspace, the pipeline
//! file, the dry-run setting and one Tokio runtime. Every command opens one [`Session`]
//! first, so no command can forget a mask or read the pipeline file its own way.

use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Context as _;
use base64::Engine as _;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::config::{self, Checkout, DEFAULT_PIPELINE_PATH, Pipeline};
use crate::error::InputError;
use crate::github::actions::Runner;

/// Variables that hold a secret as they are.
pub const SECRET_ENV: &[&str] = &[
    "REGISTRY_PASSWORD",
    "GITHUB_TOKEN",
    "INPUT_GITHUB-TOKEN",
    // Backups: the database and Redis passwords, the object storage credentials.
    "PGPASSWORD",
    "REDISCLI_AUTH",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "BACKUP_WEBHOOK_URL",
];

/// Keys whose values in a kubeconfig or Docker config are credentials.
const CREDENTIAL_KEYS: &[&str] = &[
    "token",
    "password",
    "client-key-data",
    "id-token",
    "refresh-token",
    "access-token",
    "client-secret",
    "auth",
    "identitytoken",
    "registrytoken",
];

/// Largest file read for secrets to mask (kubeconfig, Docker config).
const MAX_SECRET_FILE: u64 = 4 << 20;

/// What a command line says about the session (plain values, no clap types).
#[derive(Debug, Clone, Default)]
pub struct SessionRequest {
    /// The repository checkout.
    pub workspace: PathBuf,
    /// `--config`, else the default inside the workspace.
    pub config: Option<PathBuf>,
    /// `--dry-run`, when given with a value.
    pub dry_run: Option<bool>,
    /// `--kubeconfig`, when the command has one: its credentials are masked too.
    pub kubeconfig: Option<PathBuf>,
    /// Whether the command reads the repository's files; when not (`backup`, `restore`),
    /// the pipeline file's paths are not checked against a checkout.
    pub reads_checkout: bool,
}

/// The resolved, once-per-process state every command works in.
pub struct Session {
    /// The Actions runner's files and workflow commands.
    pub runner: Runner,
    /// The repository checkout.
    pub workspace: PathBuf,
    /// The pipeline file's path.
    pub config_path: PathBuf,
    /// Whether the command reads the repository's files (see [`SessionRequest`]).
    pub reads_checkout: bool,
    /// Whether this run only shows what it would do (ACT=true defaults it on).
    pub dry_run: bool,
    runtime: tokio::runtime::Runtime,
    pipeline: OnceLock<Pipeline>,
}

impl Session {
    /// Masks every secret this process can see, then sets the rest up. Nothing is printed
    /// before the masks.
    pub fn open(request: SessionRequest, runner: Runner) -> anyhow::Result<Self> {
        // As the OS holds them: a kubeconfig input that is not UTF-8 is still scanned.
        let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        for secret in secrets_in_environment(&env, request.kubeconfig.as_deref()) {
            runner.mask(&secret);
        }
        let config_path = request
            .config
            .clone()
            .unwrap_or_else(|| request.workspace.join(DEFAULT_PIPELINE_PATH));
        // ACT=true is a local act run: dry run unless the flag or input says otherwise.
        let dry_run = request.dry_run.unwrap_or(runner.in_act);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        Ok(Session {
            runner,
            workspace: request.workspace,
            reads_checkout: request.reads_checkout,
            config_path,
            dry_run,
            runtime,
            pipeline: OnceLock::new(),
        })
    }

    /// The pipeline file, loaded and validated on first use.
    pub fn pipeline(&self) -> Result<&Pipeline, InputError> {
        if let Some(pipeline) = self.pipeline.get() {
            return Ok(pipeline);
        }
        let checkout = if self.reads_checkout {
            Checkout::new(&self.workspace)
        } else {
            Checkout::without_files(&self.workspace)
        };
        let loaded = config::load(&self.config_path, &checkout)?;
        Ok(self.pipeline.get_or_init(|| loaded))
    }

    /// How errors name the pipeline file.
    pub fn config_source(&self) -> String {
        self.config_path.display().to_string()
    }

    /// Runs async work on the session's runtime. A SIGTERM or SIGINT (what a cancelled
    /// workflow sends) stops it: the work is dropped, which stops running child processes
    /// (their whole process group) and removes temporary credential files, and the process
    /// exits with 128 + the signal number after saying so. Before exiting it runs the
    /// cleanups still registered in [`crate::cleanup::on_signal`], for up to 5 seconds.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let stopped_by = self.runtime.block_on(async {
            let mut terminate = listen(SignalKind::terminate());
            let mut interrupt = listen(SignalKind::interrupt());
            tokio::select! {
                output = future => Ok(output),
                _ = recv(&mut terminate) => Err(("SIGTERM", libc::SIGTERM)),
                _ = recv(&mut interrupt) => Err(("SIGINT", libc::SIGINT)),
            }
        });
        // The work's future has been dropped here, with everything it held.
        match stopped_by {
            Ok(output) => output,
            Err((name, number)) => {
                // What must outlive the dropped work (giving back the deploy lock) runs now,
                // briefly: the runner kills the process soon after a cancellation.
                const CLEANUP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);
                let cleanups = crate::cleanup::on_signal();
                if !cleanups.is_empty() {
                    for said in self.runtime.block_on(cleanups.run_all(CLEANUP_DEADLINE)) {
                        crate::output::err_line(&crate::output::escape(&said));
                    }
                }
                let message = format!(
                    "stopped by {name} (was the workflow cancelled?): running commands were stopped and temporary credential files removed; steps not yet finished did not complete"
                );
                crate::output::err_line(&format!("error: {message}"));
                self.runner
                    .error_annotation(&crate::github::actions::AnnotationAt::default(), &message);
                std::process::exit(128 + number);
            }
        }
    }

    /// A non-empty environment variable of this process.
    pub fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

/// A signal listener; `None` when one cannot be installed (then that signal keeps its
/// default action).
fn listen(kind: SignalKind) -> Option<Signal> {
    signal(kind).ok()
}

/// Waits for the signal, or forever when there is no listener.
async fn recv(listener: &mut Option<Signal>) {
    match listener {
        Some(listener) => {
            listener.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Every secret visible to this process: the secret variables, the credentials in the
/// `kubeconfig` action input (YAML or base64), in the kubeconfig files named by the flag,
/// `KUBECONFIG` and `~/.kube/config`, and in the Docker config. Read from the raw text, so
/// a file that will later fail to parse is masked before anything could quote it; text
/// that is not UTF-8 is scanned as far as it reads. `env` gives variables as the OS holds
/// them.
pub fn secrets_in_environment(
    env: &dyn Fn(&str) -> Option<OsString>,
    kubeconfig_flag: Option<&Path>,
) -> Vec<String> {
    let text = |name: &str| {
        env(name)
            .filter(|v| !v.is_empty())
            .map(|v| v.to_string_lossy().into_owned())
    };
    let mut secrets: Vec<String> = SECRET_ENV.iter().filter_map(|name| text(name)).collect();
    if let (Some(user), Some(password)) = (text("REGISTRY_USERNAME"), text("REGISTRY_PASSWORD")) {
        // What a basic Authorization header would carry.
        secrets
            .push(base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
    }
    if let Some(input) = text(crate::kube::client::INPUT_KUBECONFIG) {
        secrets.extend(credential_values(&input));
        let compact: String = input.split_whitespace().collect();
        if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(&compact) {
            // The base64 form is the whole kubeconfig, secrets included.
            secrets.push(compact);
            secrets.extend(credential_values(&String::from_utf8_lossy(&decoded)));
        }
    }
    let mut files: Vec<PathBuf> = kubeconfig_flag.into_iter().map(Path::to_owned).collect();
    if let Some(list) = env("KUBECONFIG").filter(|v| !v.is_empty()) {
        files.extend(std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()));
    }
    if let Some(home) = env("HOME").filter(|h| !h.is_empty()) {
        files.push(Path::new(&home).join(".kube/config"));
    }
    if let Some(path) = crate::oci::auth::docker_config_path(|k: &str| text(k)) {
        files.push(path);
    }
    for file in files {
        if let Some(text) = read_bounded(&file) {
            secrets.extend(credential_values(&text));
        }
    }
    secrets.retain(|s| s.len() >= 4);
    secrets.sort();
    secrets.dedup();
    secrets
}

fn read_bounded(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Values of credential keys in YAML or JSON text, plus the passwords in URLs
/// (`http://user:password@host`). Text that parses is walked as a tree, so flow mappings,
/// quoted and escaped strings, block scalars and values of an unexpected type (a list, a
/// mapping, a number) are all found; every line is also scanned on its own, so text that
/// does not parse is covered too. A Docker `auth` value also yields the password inside.
/// Finding too much is harmless (a mask of a value never printed); too little is a leak.
pub fn credential_values(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    values_in_tree(text, &mut found);
    values_in_lines(text, &mut found);
    found.extend(url_passwords(text));
    let docker: Vec<String> = found
        .iter()
        .filter_map(|value| {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value)
                .ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            Some(decoded.split_once(':')?.1.to_owned())
        })
        .collect();
    found.extend(docker);
    found.retain(|v| !v.is_empty());
    found
}

fn is_credential_key(key: &str) -> bool {
    let key = key.trim().trim_matches(['"', '\'']).to_ascii_lowercase();
    CREDENTIAL_KEYS.contains(&key.as_str())
}

/// Every document of `text` that parses as YAML (JSON included): the scalars under a
/// credential key, at any depth, keys of nested mappings included.
fn values_in_tree(text: &str, found: &mut Vec<String>) {
    use serde::Deserialize as _;
    for document in serde_yaml::Deserializer::from_str(text) {
        let Ok(value) = serde_yaml::Value::deserialize(document) else {
            return;
        };
        walk(&value, false, found);
    }
}

fn walk(value: &serde_yaml::Value, secret: bool, found: &mut Vec<String>) {
    use serde_yaml::Value;
    match value {
        Value::Mapping(map) => {
            for (key, value) in map {
                if secret {
                    walk(key, true, found);
                }
                let key_is_credential = key.as_str().is_some_and(is_credential_key);
                walk(value, secret || key_is_credential, found);
            }
        }
        Value::Sequence(items) => items.iter().for_each(|item| walk(item, secret, found)),
        Value::Tagged(tagged) => walk(&tagged.value, secret, found),
        Value::String(text) if secret => {
            found.push(text.clone());
            // A multi-line value is printed line by line; mask each.
            found.extend(text.lines().map(|l| l.trim().to_owned()));
        }
        Value::Number(n) if secret => found.push(n.to_string()),
        Value::Bool(_) | Value::Null | Value::Number(_) | Value::String(_) => {}
    }
}

/// The line-by-line scan for text that may not parse: `key: value` pairs, several per line
/// in flow style or JSON, and for a key with nothing after it (a block scalar, a value on
/// the next line, a block list) the more indented lines that follow.
fn values_in_lines(text: &str, found: &mut Vec<String>) {
    let lines: Vec<&str> = text.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        // The whole rest of a line: a value with commas or braces in it.
        let item = line.trim().trim_start_matches("- ").trim();
        if let Some((key, rest)) = item.split_once(':')
            && is_credential_key(key)
        {
            push_value(rest, found);
        }
        let pieces = line.split([',', '{', '}']).map(str::trim);
        for piece in pieces {
            let piece = piece.trim_start_matches("- ").trim();
            let Some((key, value)) = piece.split_once(':') else {
                continue;
            };
            if !is_credential_key(key) {
                continue;
            }
            push_value(value, found);
            let value = value.trim();
            let opens_block = value.is_empty()
                || value.starts_with(['|', '>'])
                || (value.starts_with(['[', '{']) && !line.contains([']', '}']));
            if opens_block {
                let indent = indentation(line);
                for next in lines[index + 1..]
                    .iter()
                    .filter(|l| !l.trim().is_empty())
                    .take_while(|l| {
                        indentation(l) > indent
                            || (indentation(l) == indent && l.trim_start().starts_with("- "))
                    })
                {
                    push_value(next.trim().trim_start_matches("- "), found);
                }
            }
        }
    }
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '\t']).len()
}

/// A raw value: as a whole without quotes and brackets, and each word inside a flow
/// list or mapping.
fn push_value(raw: &str, found: &mut Vec<String>) {
    let trimmed = |s: &str| {
        s.trim()
            .trim_matches(['"', '\'', '[', ']', '{', '}'])
            .trim()
            .to_owned()
    };
    let whole = trimmed(raw);
    if whole.is_empty() || (whole.starts_with(['|', '>']) && whole.len() <= 3) {
        return;
    }
    found.push(whole);
    if raw.contains([',', '[', '{', ':', ' ', '\t']) {
        found.extend(
            raw.split([',', '[', ']', '{', '}', ':', ' ', '\t'])
                .map(trimmed)
                .filter(|w| !w.is_empty()),
        );
    }
}

/// The password and whole userinfo of every `scheme://user:password@host` in `text`.
fn url_passwords(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        rest = &rest[at + 3..];
        let end = rest
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | ',' | '}' | ']') || c.is_whitespace()
            })
            .unwrap_or(rest.len());
        if let Some((userinfo, _)) = rest[..end].rsplit_once('@') {
            found.push(userinfo.to_owned());
            if let Some((_, password)) = userinfo.split_once(':') {
                found.push(password.to_owned());
            }
        }
        rest = &rest[end..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_found_in_yaml_that_does_not_parse() {
        let text = "users:\n- name: u\n  user:\n    token:\tabc.def.ghi\n    client-key-data: \"S0VZ\n- name: v\n  user: {auth-provider: {config: {id-token: eyJ.x.y, refresh-token: 'r3fresh'}}}\n";
        let found = credential_values(text);
        for secret in ["abc.def.ghi", "S0VZ", "eyJ.x.y", "r3fresh"] {
            assert!(found.iter().any(|f| f == secret), "{secret} in {found:?}");
        }
    }

    #[test]
    fn docker_auth_yields_the_password_inside() {
        let text = r#"{"auths":{"ghcr.io":{"auth":"dXNlcjpzM2NyZXQ="}}}"#;
        let found = credential_values(text);
        assert!(found.contains(&"dXNlcjpzM2NyZXQ=".to_owned()), "{found:?}");
        assert!(found.contains(&"s3cret".to_owned()), "{found:?}");
    }

    #[test]
    fn the_environment_and_base64_inputs_are_covered() {
        let kubeconfig = "users:\n- name: u\n  user: {token: sekrit-token}\n";
        let encoded = base64::engine::general_purpose::STANDARD.encode(kubeconfig);
        let env = move |name: &str| match name {
            "GITHUB_TOKEN" => Some(OsString::from("ghp_abcdef")),
            "INPUT_KUBECONFIG" => Some(OsString::from(&encoded)),
            _ => None,
        };
        let found = secrets_in_environment(&env, None);
        assert!(found.contains(&"ghp_abcdef".to_owned()));
        assert!(found.contains(&"sekrit-token".to_owned()), "{found:?}");
    }

    #[test]
    fn every_way_of_writing_a_credential_is_found() {
        let cases: &[(&str, &[&str])] = &[
            // Flow style, several on a line, quoted, unexpected types.
            (
                "users:\n- {name: u, user: {token: \"tok-flow\", password: 'pw-flow'}}\n",
                &["tok-flow", "pw-flow"],
            ),
            (
                "users:\n- name: u\n  user: {auth-provider: {name: oidc, config: {id-token: {idtok-key: 1}, refresh-token: [refr-list]}}}\n",
                &["idtok-key", "refr-list"],
            ),
            // On the next line, a block scalar, a block list.
            (
                "users:\n- name: u\n  user:\n    token:\n      tok-next-line\n    password: |\n      pw-block\n    client-key-data: >-\n      key-folded\n    id-token:\n    - idtok-item\n",
                &["tok-next-line", "pw-block", "key-folded", "idtok-item"],
            ),
            // JSON, pretty and on one line, with an escape.
            (
                "{\n  \"users\": [{\"name\": \"u\", \"user\": {\"token\": \"tok\\/json\"}}]\n}\n",
                &["tok/json", "tok\\/json"],
            ),
            // Values with commas; URLs with userinfo.
            (
                "users:\n- name: u\n  user:\n    password: pw,with,commas\nclusters:\n- name: c\n  cluster: {server: 'https://admin:srv-pass@k8s:6443', proxy-url: http://p:proxy-pass@proxy:3128}\n",
                &["pw,with,commas", "srv-pass", "admin:srv-pass", "proxy-pass"],
            ),
            // Does not parse at all: unclosed flow, tab, unclosed quote, on the next line.
            (
                "users:\n- name: u\n  user: {token: [tok-broken\n    password:\t\"pw-unclosed\n    refresh-token:\n      refr-broken\n  - [\n",
                &["tok-broken", "pw-unclosed", "refr-broken"],
            ),
        ];
        for (text, secrets) in cases {
            let found = credential_values(text);
            for secret in *secrets {
                assert!(
                    found.iter().any(|f| f == secret),
                    "{secret} not found in {text:?}: {found:?}"
                );
            }
        }
    }

    #[test]
    fn a_non_utf8_input_and_the_home_kubeconfig_are_scanned() {
        use std::os::unix::ffi::OsStringExt as _;
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".kube")).unwrap();
        std::fs::write(
            home.path().join(".kube/config"),
            "users:\n- name: u\n  user:\n    token: home-token\n",
        )
        .unwrap();
        let home_path = home.path().as_os_str().to_owned();
        let env = move |name: &str| match name {
            "INPUT_KUBECONFIG" => Some(OsString::from_vec(
                b"users:\n- name: u\n  user:\n    token: input-token\n\xff\n".to_vec(),
            )),
            "HOME" => Some(home_path.clone()),
            _ => None,
        };
        let found = secrets_in_environment(&env, None);
        assert!(found.contains(&"input-token".to_owned()), "{found:?}");
        assert!(found.contains(&"home-token".to_owned()), "{found:?}");
    }
}
