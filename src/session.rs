//! Once per process: the runner's files, every secret masked, the workspace, the pipeline
//! file, the dry-run setting and one Tokio runtime. Every command opens one [`Session`]
//! first, so no command can forget a mask or read the pipeline file its own way.

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
pub const SECRET_ENV: &[&str] = &["REGISTRY_PASSWORD", "GITHUB_TOKEN", "INPUT_GITHUB-TOKEN"];

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
}

/// The resolved, once-per-process state every command works in.
pub struct Session {
    /// The Actions runner's files and workflow commands.
    pub runner: Runner,
    /// The repository checkout.
    pub workspace: PathBuf,
    /// The pipeline file's path.
    pub config_path: PathBuf,
    /// Whether this run only shows what it would do (ACT=true defaults it on).
    pub dry_run: bool,
    runtime: tokio::runtime::Runtime,
    pipeline: OnceLock<Pipeline>,
}

impl Session {
    /// Masks every secret this process can see, then sets the rest up. Nothing is printed
    /// before the masks.
    pub fn open(request: SessionRequest, runner: Runner) -> anyhow::Result<Self> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
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
        let loaded = config::load(&self.config_path, &Checkout::new(&self.workspace))?;
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
/// `kubeconfig` action input (YAML or base64), in the kubeconfig files named by the flag or
/// `KUBECONFIG`, and in the Docker config. Read from the raw text, so a file that will later
/// fail to parse is masked before its parser can quote it.
pub fn secrets_in_environment(
    env: &dyn Fn(&str) -> Option<String>,
    kubeconfig_flag: Option<&Path>,
) -> Vec<String> {
    let mut secrets: Vec<String> = SECRET_ENV.iter().filter_map(|name| env(name)).collect();
    if let (Some(user), Some(password)) = (env("REGISTRY_USERNAME"), env("REGISTRY_PASSWORD")) {
        // What a basic Authorization header would carry.
        secrets
            .push(base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
    }
    if let Some(input) = env(crate::kube::client::INPUT_KUBECONFIG) {
        secrets.extend(credential_values(&input));
        let compact: String = input.split_whitespace().collect();
        if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(&compact) {
            // The base64 form is the whole kubeconfig, secrets included.
            secrets.push(compact);
            secrets.extend(credential_values(&String::from_utf8_lossy(&decoded)));
        }
    }
    let mut files: Vec<PathBuf> = kubeconfig_flag.into_iter().map(Path::to_owned).collect();
    if let Some(list) = env("KUBECONFIG") {
        files.extend(std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()));
    }
    if let Some(path) = crate::oci::auth::docker_config_path(|k: &str| env(k)) {
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

/// Values of credential keys in YAML or JSON text, found line by line so that text which
/// does not parse is still covered. A Docker `auth` value also yields the password inside.
pub fn credential_values(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    // JSON on one line holds several `"key": "value"` pairs; split them apart first.
    let pieces = text
        .lines()
        .flat_map(|line| line.split([',', '{', '}']))
        .map(str::trim);
    for piece in pieces {
        let piece = piece.trim_start_matches("- ").trim();
        let Some((key, value)) = piece.split_once(':') else {
            continue;
        };
        let key = key.trim().trim_matches(['"', '\'']).to_ascii_lowercase();
        if !CREDENTIAL_KEYS.contains(&key.as_str()) {
            continue;
        }
        let value = value.trim().trim_matches(['"', '\'']).trim();
        if value.is_empty() {
            continue;
        }
        found.push(value.to_owned());
        if key == "auth"
            && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(value)
            && let Ok(decoded) = String::from_utf8(decoded)
            && let Some((_, password)) = decoded.split_once(':')
        {
            found.push(password.to_owned());
        }
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
            "GITHUB_TOKEN" => Some("ghp_abcdef".to_owned()),
            "INPUT_KUBECONFIG" => Some(encoded.clone()),
            _ => None,
        };
        let found = secrets_in_environment(&env, None);
        assert!(found.contains(&"ghp_abcdef".to_owned()));
        assert!(found.contains(&"sekrit-token".to_owned()), "{found:?}");
    }
}
