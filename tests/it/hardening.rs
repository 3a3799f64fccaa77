//! The binary as an attacker would try it: files in the checkout that link outside it,
//! inputs with no end, nesting without bound, and a cancelled workflow (SIGTERM) in the
//! middle of a gate or an image build.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::images::jisu_in;
use crate::support::{Run, repo_root};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// What a file outside the checkout holds; it must never be read or shown.
const OUTSIDE_SECRET: &str = "outside-S3CRET-content";

/// A checkout with one component, rolling staging from `develop` with manifests in `k8s/`,
/// and the given lint gate.
fn checkout(dir: &Path, gate: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(dir.join("app/Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::create_dir_all(dir.join("k8s")).unwrap();
    std::fs::write(
        dir.join("k8s/app.yaml"),
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: app, labels: {app: app}}
spec:
  replicas: 1
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      containers:
        - {name: app, image: '127.0.0.1:5999/acme/app:app'}
",
    )
    .unwrap();
    let config = dir.join("pipeline.yml");
    std::fs::write(
        &config,
        format!(
            "version: 1
images: {{registry: '127.0.0.1:5999', scheme: per-component, owner: acme}}
components:
  app: {{context: app, dockerfile: app/Dockerfile, port: 8080}}
environments:
  staging: {{branch: develop, namespace: app-staging, url: 'http://127.0.0.1:9', strategy: rolling, manifests: k8s}}
gates:
  lint:
    - {{name: slow, run: {gate}}}
"
        ),
    )
    .unwrap();
    config
}

/// A file outside every checkout, holding [`OUTSIDE_SECRET`].
fn outside_file(dir: &Path) -> PathBuf {
    let path = dir.join("outside.yml");
    std::fs::write(&path, format!("token: {OUTSIDE_SECRET}\nkind: Secret\n")).unwrap();
    path
}

fn assert_bad_input(run: &Run, expected: &str) {
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains(expected), "{}", run.stderr);
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains(OUTSIDE_SECRET), "{text}");
    }
}

#[test]
fn a_pipeline_file_that_links_outside_the_checkout_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    checkout(dir.path(), "[true]");
    std::fs::create_dir_all(dir.path().join(".github")).unwrap();
    std::os::unix::fs::symlink(
        outside_file(outside.path()),
        dir.path().join(".github/jisu-deploy.yml"),
    )
    .unwrap();
    // The default location, and the same file named with --config.
    for extra in [&[][..], &["--config", ".github/jisu-deploy.yml"][..]] {
        let mut args = vec![
            "plan",
            "--workspace",
            dir.path().to_str().unwrap(),
            "--event-name",
            "schedule",
        ];
        args.extend_from_slice(extra);
        let run = jisu_in_dir(dir.path(), &args, &[]);
        assert_bad_input(&run, "symbolic link to a file outside the checkout");
    }
}

#[test]
fn a_manifest_that_links_outside_the_checkout_is_never_read() {
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = checkout(dir.path(), "[true]");
    std::os::unix::fs::symlink(
        outside_file(outside.path()),
        dir.path().join("k8s/secret.yaml"),
    )
    .unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {}}]\n",
    )
    .unwrap();
    let run = jisu_in(
        &[
            "deploy",
            "--workspace",
            dir.path().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--environment",
            "staging",
            "--sha",
            SHA,
            "--digests",
            &format!("app=127.0.0.1:5999/acme/app@sha256:{}", "a".repeat(64)),
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
        &[],
    );
    assert_bad_input(&run, "k8s/secret.yaml");
    assert!(
        run.stderr.contains("outside the checkout"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_component_context_that_links_outside_is_not_a_directory_in_the_repository() {
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = checkout(dir.path(), "[true]");
    std::fs::remove_dir_all(dir.path().join("app")).unwrap();
    std::fs::create_dir_all(outside.path().join("app")).unwrap();
    std::fs::write(outside.path().join("app/Dockerfile"), "FROM scratch\n").unwrap();
    std::os::unix::fs::symlink(outside.path().join("app"), dir.path().join("app")).unwrap();
    let run = jisu_in(
        &[
            "plan",
            "--workspace",
            dir.path().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--event-name",
            "schedule",
        ],
        &[],
    );
    assert_bad_input(&run, "is not a directory in the repository");
}

#[test]
fn endless_input_files_are_cut_off_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = checkout(dir.path(), "[true]");
    let config = config.to_str().unwrap();
    let cases: [(&[&str], &str); 3] = [
        (
            &["plan", "--config", "/dev/zero", "--event-name", "schedule"],
            "larger than 8 MiB",
        ),
        (
            &["plan", "--config", config, "--event", "/dev/zero"],
            "larger than 8 MiB",
        ),
        (
            &[
                "run",
                "--config",
                config,
                "--event-name",
                "push",
                "--ref",
                "refs/heads/develop",
                "--sha",
                SHA,
                "--digests",
                "/dev/zero",
            ],
            "larger than 8 MiB",
        ),
    ];
    for (args, expected) in cases {
        let mut args = args.to_vec();
        args.extend(["--workspace", dir.path().to_str().unwrap()]);
        let run = jisu_in(&args, &[]);
        assert_bad_input(&run, expected);
    }
    // A kubeconfig is a regular file, so a huge one (sparse: no disk used) stands in.
    let huge = dir.path().join("kubeconfig");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let digest = format!("app=127.0.0.1:5999/acme/app@sha256:{}", "a".repeat(64));
    let run = jisu_in(
        &[
            "deploy",
            "--workspace",
            dir.path().to_str().unwrap(),
            "--config",
            config,
            "--environment",
            "staging",
            "--sha",
            SHA,
            "--digests",
            &digest,
            "--kubeconfig",
            huge.to_str().unwrap(),
        ],
        &[],
    );
    assert_bad_input(&run, "larger than 8 MiB");
}

#[test]
fn deeply_nested_yaml_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    checkout(dir.path(), "[true]");
    let depth = 100_000;
    let deep = dir.path().join("deep.yml");
    std::fs::write(
        &deep,
        format!(
            "version: 1\nx: {}{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        ),
    )
    .unwrap();
    let run = jisu_in(
        &[
            "plan",
            "--workspace",
            dir.path().to_str().unwrap(),
            "--config",
            deep.to_str().unwrap(),
            "--event-name",
            "schedule",
        ],
        &[],
    );
    assert_bad_input(&run, "deep.yml:2:");
    assert!(
        run.stderr.contains("nests deeper than 64 levels"),
        "{}",
        run.stderr
    );
}

/// The binary started in `dir`, with PATH and HOME only.
fn jisu_in_dir(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jisu-deploy"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .current_dir(dir)
        .args(args);
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.output().expect("the jisu-deploy binary runs").into()
}

/// Waits (bounded) until `ready` holds; panics with `what` otherwise.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `pid` is still running (a zombie has exited and counts as stopped).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !state.is_some_and(|s| s.starts_with('Z') || s.starts_with('X'))
        }
        Err(_) => false,
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Starts the binary in the background with PATH (optionally prefixed) and HOME.
fn spawn(args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jisu-deploy"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .current_dir(repo_root())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        cmd.env(key, value);
    }
    cmd.spawn().expect("the jisu-deploy binary starts")
}

fn terminate(child: &std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sigterm_during_a_gate_stops_the_gate_and_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    // The gate starts a grandchild and waits for it, as test runners do with workers.
    let config = checkout(
        dir.path(),
        "[sh, -c, 'sleep 120 & echo $! > grandchild.pid; echo $$ > gate.pid; wait']",
    );
    let child = spawn(
        &[
            "run",
            "--workspace",
            dir.path().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--job",
            "lint",
            "--event-name",
            "push",
            "--ref",
            "refs/heads/develop",
            "--sha",
            SHA,
        ],
        &[],
    );
    let (gate_pid, grandchild_pid) = (
        dir.path().join("gate.pid"),
        dir.path().join("grandchild.pid"),
    );
    wait_for("the gate to start", || {
        read_pid(&gate_pid).is_some() && read_pid(&grandchild_pid).is_some()
    });
    terminate(&child);
    let run: Run = child.wait_with_output().unwrap().into();
    assert_eq!(run.code, 143, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("stopped by SIGTERM"), "{}", run.stderr);
    for pid in [&gate_pid, &grandchild_pid].map(|p| read_pid(p).unwrap()) {
        wait_for("the gate's processes to stop", || !running(pid));
    }
}

/// A stand-in `buildah` first on PATH: it answers `--version`, and `build` records its
/// environment, arguments and pid, and hangs, so the test can cancel a build that is certainly running. (A real build
/// FROM scratch finishes too fast to cancel, and nothing else can be pulled here.)
fn hanging_builder(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("buildah");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in\n  --version) echo 'buildah version 1.0 (stand-in)';;\n  *) env > {env}; echo \"$@\" > {argv}; echo $$ > {pid}; sleep 120 & wait;;\nesac\n",
            env = dir.join("builder-env.txt").display(),
            argv = dir.join("builder-argv.txt").display(),
            pid = dir.join("builder.pid").display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn sigterm_during_image_build_stops_the_builder_and_removes_the_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let config = checkout(dir.path(), "[true]");
    let bin = hanging_builder(dir.path());
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let child = spawn(
        &[
            "image",
            "build",
            "--workspace",
            dir.path().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--event-name",
            "push",
            "--ref",
            "refs/heads/develop",
            "--sha",
            SHA,
            "--builder",
            "buildah",
            "--push",
        ],
        &[
            ("PATH", &path),
            ("TMPDIR", tmp.to_str().unwrap()),
            ("REGISTRY_USERNAME", "ci"),
            ("REGISTRY_PASSWORD", "regpass-S3CRET"),
        ],
    );
    let builder_pid = dir.path().join("builder.pid");
    wait_for("the builder to start", || read_pid(&builder_pid).is_some());
    let private: Vec<PathBuf> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(private.len(), 1, "{private:?}");
    assert!(private[0].join("auth.json").is_file());
    let mode = std::fs::metadata(&private[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "the credentials' directory is private");
    terminate(&child);
    let run: Run = child.wait_with_output().unwrap().into();
    assert_eq!(run.code, 143, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("stopped by SIGTERM"), "{}", run.stderr);
    assert!(
        std::fs::read_dir(&tmp).unwrap().next().is_none(),
        "the private directory with auth.json is removed"
    );
    let pid = read_pid(&builder_pid).unwrap();
    wait_for("the builder to stop", || !running(pid));
    // Credentials reach the builder only in the private auth file (push), never in its
    // environment or command line.
    let env = std::fs::read_to_string(dir.path().join("builder-env.txt")).unwrap();
    let argv = std::fs::read_to_string(dir.path().join("builder-argv.txt")).unwrap();
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    for seen in [&env, &argv] {
        assert!(!seen.contains("regpass-S3CRET"), "{seen}");
        assert!(!seen.contains("REGISTRY_PASSWORD"), "{seen}");
    }
}

/// Values an outsider can choose, each trying to start a workflow command of its own.
const INJECTIONS: &[&str] = &[
    "\n::warning::PWNED",
    "%0A::warning::PWNED",
    "\r::warning::PWNED",
    "\r\n::stop-commands::PWNED",
    "::set-output name=x::PWNED",
    " ##[warning]PWNED",
    "\u{2028}::warning::PWNED",
];

/// Workflow commands the tool itself writes; any other command line was injected.
const OWN_COMMANDS: &[&str] = &["add-mask", "group", "endgroup", "error"];

/// Fails when a line of `text` would make the runner act on something the tool did not
/// mean to send: a `::command` it never writes, or a legacy `##[` anywhere.
fn assert_no_injected_commands(text: &str, what: &str) {
    for line in text.lines() {
        // The runner tries the `::` form first; only when that fails does it look for `##[`
        // anywhere, so a `##[` inside one of the tool's own commands is plain data.
        let Some(command) = line.trim_start().strip_prefix("::") else {
            assert!(!line.contains("##["), "{what}: legacy command in {line:?}");
            continue;
        };
        let name = command.split([' ', ':']).next().unwrap_or_default();
        assert!(
            OWN_COMMANDS.contains(&name),
            "{what}: injected `::{name}` in {line:?}"
        );
    }
}

/// A checkout whose pipeline file carries `value` in a gate's name and arguments, a check
/// name, a build argument and an environment variable. The gate is `true`: what a gate
/// prints itself is the gate's own business (linters write annotations on purpose).
fn injected_checkout(dir: &Path, value: &str) -> PathBuf {
    let config = checkout(dir, "[true]");
    let quoted = serde_json::to_string(value).unwrap();
    std::fs::write(
        &config,
        format!(
            "version: 1
images: {{registry: '127.0.0.1:5999', scheme: per-component, owner: acme}}
components:
  app: {{context: app, dockerfile: app/Dockerfile, port: 8080, build_args: {{NOTE: {quoted}}}}}
environments:
  staging:
    branch: develop
    namespace: app-staging
    url: 'http://127.0.0.1:9'
    strategy: rolling
    manifests: k8s
    checks: [{{name: {quoted}, url: /health}}]
gates:
  lint:
    - {{name: {quoted}, run: ['true', {quoted}], env: {{NOTE: {quoted}}}}}
"
        ),
    )
    .unwrap();
    config
}

#[test]
fn injected_workflow_commands_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let workspace = dir.path().to_str().unwrap().to_owned();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {}}]\n",
    )
    .unwrap();
    let kubeconfig = kubeconfig.to_str().unwrap().to_owned();
    let actions = [("GITHUB_ACTIONS", "true")];
    let mut runs = 0;
    for value in INJECTIONS {
        let config = injected_checkout(dir.path(), value);
        let config = config.to_str().unwrap().to_owned();
        let branch = format!("refs/heads/feature{value}");
        let event = dir.path().join("event.json");
        std::fs::write(
            &event,
            serde_json::json!({
                "ref": format!("refs/heads/develop{value}"),
                "after": SHA,
                "repository": {"full_name": format!("acme/app{value}"), "default_branch": "main"},
            })
            .to_string(),
        )
        .unwrap();
        let event = event.to_str().unwrap().to_owned();
        let base = ["--workspace", &workspace, "--config", &config];
        let push = ["--event-name", "push", "--sha", SHA];
        let commands: Vec<Vec<&str>> = vec![
            // A hostile ref from a flag and from the payload, and a clean ref with hostile
            // pipeline values, in each output format.
            [&["plan"][..], &base, &push, &["--ref", &branch]].concat(),
            [&["plan"][..], &base, &["--event", &event]].concat(),
            [
                &["plan"][..],
                &base,
                &push,
                &["--ref", "refs/heads/develop"],
            ]
            .concat(),
            [
                &["plan", "--output", "json"][..],
                &base,
                &push,
                &["--ref", "refs/heads/develop"],
            ]
            .concat(),
            [
                &["image", "build", "--dry-run", "--builder", "buildah"][..],
                &base,
                &push,
                &["--ref", "refs/heads/develop"],
            ]
            .concat(),
            [
                &["image", "build", "--dry-run", "--builder", "buildah"][..],
                &base,
                &push,
                &["--ref", &branch],
            ]
            .concat(),
            [
                &["run", "--dry-run"][..],
                &base,
                &push,
                &["--ref", "refs/heads/develop"],
            ]
            .concat(),
            [
                &["run", "--job", "lint"][..],
                &base,
                &push,
                &["--ref", "refs/heads/develop"],
            ]
            .concat(),
            [
                &["deploy", "--environment", "staging", "--sha", SHA][..],
                &base,
                &["--kubeconfig", &kubeconfig],
            ]
            .concat(),
        ];
        for args in commands {
            let run = jisu_in(&args, &actions);
            assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
            let what = format!("{args:?} with {value:?}");
            assert_no_injected_commands(&run.stdout, &format!("stdout of {what}"));
            assert_no_injected_commands(&run.stderr, &format!("stderr of {what}"));
            runs += 1;
        }
    }
    assert_eq!(runs, INJECTIONS.len() * 9);
}

#[tokio::test(flavor = "multi_thread")]
async fn injected_registry_errors_never_reach_the_log() {
    use wiremock::matchers::any;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    for value in INJECTIONS {
        let registry = MockServer::start().await;
        let body = serde_json::json!({
            "errors": [{"code": "MANIFEST_UNKNOWN", "message": format!("no such manifest{value}"), "detail": value}]
        });
        Mock::given(any())
            .respond_with(
                ResponseTemplate::new(400)
                    .insert_header("content-type", "application/json")
                    .set_body_json(body),
            )
            .mount(&registry)
            .await;
        let host = registry.address().to_string();
        let (src, dst) = (format!("{host}/acme/app:v1"), format!("{host}/acme/app:v2"));
        let run = tokio::task::spawn_blocking(move || {
            jisu_in(
                &["image", "retag", &src, &dst],
                &[("GITHUB_ACTIONS", "true")],
            )
        })
        .await
        .unwrap();
        assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("PWNED"),
            "the registry's message is shown: {}",
            run.stderr
        );
        assert_no_injected_commands(&run.stdout, &format!("stdout with {value:?}"));
        assert_no_injected_commands(&run.stderr, &format!("stderr with {value:?}"));
    }
}
