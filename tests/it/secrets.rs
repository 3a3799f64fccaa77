//! No secret reaches a log, an output or the summary: every command that reads a secret,
//! run as in GitHub Actions with recognisable values, masks each one before printing
//! anything else and never prints it otherwise; gate commands do not even see them. Each
//! command runs with the kubeconfig input in four forms: YAML and base64, well-formed and
//! malformed (a tab after `token:`, an unclosed quote), its server URL carrying a password.

use std::path::{Path, PathBuf};

use crate::support::{Run, example_config, example_event, jisu};

const SHA: &str = "3f2c1e0d9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e";
const REGISTRY_PASSWORD: &str = "regpass-S3CRET-1";
const GITHUB_TOKEN: &str = "ghtoken-S3CRET-2";
const KUBE_TOKEN: &str = "kubetoken-S3CRET-3";
const DOCKER_PASSWORD: &str = "dockerpass-S3CRET-4";
const URL_PASSWORD: &str = "urlpass-S3CRET-5";
/// The values the process can see, each of which must be masked.
const SECRETS: [&str; 5] = [
    REGISTRY_PASSWORD,
    GITHUB_TOKEN,
    KUBE_TOKEN,
    DOCKER_PASSWORD,
    URL_PASSWORD,
];
/// base64 of `ci:dockerpass-S3CRET-4`, the Docker config's `auth`.
const DOCKER_AUTH: &str = "Y2k6ZG9ja2VycGFzcy1TM0NSRVQtNA==";
/// base64 of `ci:regpass-S3CRET-1`, what a basic Authorization header carries.
const REGISTRY_BASIC: &str = "Y2k6cmVncGFzcy1TM0NSRVQtMQ==";

/// Pinned images, so deploys go straight to the (unreachable) cluster.
const DIGESTS: [&str; 2] = [
    "frontend=ghcr.io/jisu/platform@sha256:1111111111111111111111111111111111111111111111111111111111111111",
    "backend=ghcr.io/jisu/platform@sha256:2222222222222222222222222222222222222222222222222222222222222222",
];

/// A kubeconfig whose server has nothing listening, with a password in its URL.
fn kubeconfig() -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster:
    server: http://ci:{URL_PASSWORD}@127.0.0.1:9
users:
- name: ci
  user:
    token: {KUBE_TOKEN}
contexts:
- name: nowhere
  context:
    cluster: nowhere
    user: ci
current-context: nowhere
"
    )
}

/// The kubeconfig input in each form a user might hand over: YAML, base64, and both
/// broken so that the parser fails (a tab after `token:`, an unclosed quote).
fn kubeconfig_inputs() -> [(&'static str, String); 4] {
    use base64::Engine as _;
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let broken = kubeconfig()
        .replace("token: ", "token:\t")
        .replace("current-context: nowhere", "current-context: \"nowhere");
    [
        ("YAML", kubeconfig()),
        ("base64", encode(&kubeconfig())),
        ("malformed YAML", broken.clone()),
        ("malformed base64", encode(&broken)),
    ]
}

/// The runner's files and a Docker config, in a temp dir of their own.
struct Runner {
    dir: tempfile::TempDir,
}

impl Runner {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("docker");
        std::fs::create_dir(&docker).unwrap();
        std::fs::write(
            docker.join("config.json"),
            format!(r#"{{"auths":{{"ghcr.io":{{"auth":"{DOCKER_AUTH}"}}}}}}"#),
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        Runner { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs the binary as inside GitHub Actions, with every secret in reach and the
    /// kubeconfig input `kubeconfig`; the runner's files start empty.
    fn run(&self, args: &[&str], kubeconfig: &str) -> Run {
        let output = self.path("output");
        let summary = self.path("summary");
        let _ = std::fs::remove_file(&output);
        let _ = std::fs::remove_file(&summary);
        let docker = self.path("docker");
        let home = self.path("home");
        let path = std::env::var("PATH").unwrap_or_default();
        jisu(
            args,
            &[
                ("PATH", &path),
                ("HOME", home.to_str().unwrap()),
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_OUTPUT", output.to_str().unwrap()),
                ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
                ("REGISTRY_USERNAME", "ci"),
                ("REGISTRY_PASSWORD", REGISTRY_PASSWORD),
                ("GITHUB_TOKEN", GITHUB_TOKEN),
                ("INPUT_KUBECONFIG", kubeconfig),
                ("DOCKER_CONFIG", docker.to_str().unwrap()),
            ],
        )
    }

    /// Runs `args` once per kubeconfig form and checks what it printed and wrote: every
    /// secret masked first, and none shown anywhere else. Returns the run with the
    /// well-formed YAML kubeconfig.
    #[track_caller]
    fn check(&self, args: &[&str]) -> Run {
        let mut first = None;
        for (form, kubeconfig) in kubeconfig_inputs() {
            let run = self.run(args, &kubeconfig);
            self.check_run(
                &run,
                &format!("{} (kubeconfig input: {form})", args.join(" ")),
            );
            first.get_or_insert(run);
        }
        first.expect("at least one form")
    }

    #[track_caller]
    fn check_run(&self, run: &Run, what: &str) {
        let context = format!(
            "`{what}` exited {}\n--- stdout\n{}\n--- stderr\n{}",
            run.code, run.stdout, run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{context}");
        let masks: Vec<&str> = run
            .stdout
            .lines()
            .take_while(|line| line.starts_with("::add-mask::"))
            .collect();
        for secret in SECRETS {
            assert!(
                masks.iter().any(|mask| mask.contains(secret)),
                "{secret} is not masked before the first other line\n{context}"
            );
        }
        // A later mask may only repeat one from the top: anything new would mean output
        // was printed before that secret was masked.
        let late_new_mask = run
            .stdout
            .lines()
            .skip(masks.len())
            .find(|line| line.starts_with("::add-mask::") && !masks.contains(line));
        assert!(
            late_new_mask.is_none(),
            "a secret first masked after other output: {late_new_mask:?}\n{context}"
        );
        let unmasked_stdout: String = run
            .stdout
            .lines()
            .filter(|line| !line.starts_with("::add-mask::"))
            .collect::<Vec<_>>()
            .join("\n");
        let read = |name: &str| std::fs::read_to_string(self.path(name)).unwrap_or_default();
        let places = [
            ("stdout", unmasked_stdout),
            ("stderr", run.stderr.clone()),
            ("GITHUB_OUTPUT", read("output")),
            ("GITHUB_STEP_SUMMARY", read("summary")),
        ];
        for secret in SECRETS.into_iter().chain([DOCKER_AUTH, REGISTRY_BASIC]) {
            for (place, text) in &places {
                assert!(
                    !text.contains(secret),
                    "{secret} leaks into {place}:\n{text}\n{context}"
                );
            }
        }
    }
}

fn config() -> String {
    example_config().to_str().unwrap().to_owned()
}

fn event(name: &str) -> String {
    example_event(name).to_str().unwrap().to_owned()
}

#[test]
fn plan_masks_and_never_shows_secrets() {
    let run = Runner::new().check(&[
        "plan",
        "--config",
        &config(),
        "--event",
        &event("push-develop.json"),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn a_dry_run_masks_and_never_shows_secrets() {
    let run = Runner::new().check(&[
        "run",
        "--dry-run",
        "--config",
        &config(),
        "--event",
        &event("push-main.json"),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn a_real_run_that_fails_on_the_registry_never_shows_secrets() {
    // No digests: the deploy resolves sha tags on ghcr.io with the credentials, and fails.
    let run = Runner::new().check(&[
        "run",
        "--config",
        &config(),
        "--event",
        &event("push-develop.json"),
        "--job",
        "deploy-staging",
    ]);
    assert_ne!(run.code, 0, "{}", run.stdout);
}

#[test]
fn a_real_run_that_fails_on_the_cluster_never_shows_secrets() {
    let run = Runner::new().check(&[
        "run",
        "--config",
        &config(),
        "--event",
        &event("push-develop.json"),
        "--job",
        "deploy-staging",
        "--digests",
        DIGESTS[0],
        "--digests",
        DIGESTS[1],
    ]);
    assert_ne!(run.code, 0, "{}", run.stdout);
}

#[test]
fn deploy_masks_and_never_shows_secrets() {
    let run = Runner::new().check(&[
        "deploy",
        "--config",
        &config(),
        "--environment",
        "staging",
        "--sha",
        SHA,
        "--digests",
        DIGESTS[0],
        "--digests",
        DIGESTS[1],
    ]);
    assert_ne!(run.code, 0, "{}", run.stdout);
}

#[test]
fn promote_masks_and_never_shows_secrets() {
    let run = Runner::new().check(&[
        "promote",
        "--config",
        &config(),
        "--environment",
        "staging",
        "--sha",
        SHA,
    ]);
    assert_ne!(run.code, 0, "{}", run.stdout);
}

#[test]
fn image_build_dry_run_masks_and_never_shows_secrets() {
    let run = Runner::new().check(&[
        "image",
        "build",
        "--dry-run",
        "--push",
        "--builder",
        "buildah",
        "--config",
        &config(),
        "--event",
        &event("push-main.json"),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn image_retag_masks_and_never_shows_secrets() {
    let run = Runner::new().check(&[
        "image",
        "retag",
        "127.0.0.1:9/jisu/platform:backend-a",
        "127.0.0.1:9/jisu/platform:backend-b",
    ]);
    assert_ne!(run.code, 0, "{}", run.stdout);
}

#[test]
fn image_prune_masks_and_never_shows_secrets() {
    let run = Runner::new().check(&["image", "prune", "--config", &config()]);
    assert_ne!(run.code, 0, "{}", run.stdout);
}

/// A workspace of its own: one component, one rolling environment, and a lint gate that
/// writes the environment it was given to `seen-env.txt`.
fn gate_workspace(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(dir.join("app/Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::create_dir_all(dir.join("k8s")).unwrap();
    let config = dir.join("pipeline.yml");
    std::fs::write(
        &config,
        "version: 1
images: {registry: ghcr.io, scheme: component-prefix, repository: acme/app}
components:
  app: {context: app, dockerfile: app/Dockerfile, port: 8080}
environments:
  staging: {branch: develop, namespace: app-staging, url: 'https://staging.acme.example', strategy: rolling, manifests: k8s}
gates:
  lint:
    - {name: env, run: [sh, -c, 'env > seen-env.txt']}
",
    )
    .unwrap();
    config
}

#[test]
fn gate_commands_never_see_secrets() {
    let runner = Runner::new();
    let workspace = tempfile::tempdir().unwrap();
    let config = gate_workspace(workspace.path());
    let run = runner.check(&[
        "run",
        "--workspace",
        workspace.path().to_str().unwrap(),
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
    ]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let seen = std::fs::read_to_string(workspace.path().join("seen-env.txt"))
        .expect("the gate wrote seen-env.txt");
    assert!(seen.lines().any(|line| line.starts_with("PATH=")), "{seen}");
    for secret in SECRETS.into_iter().chain([DOCKER_AUTH, REGISTRY_BASIC]) {
        assert!(!seen.contains(secret), "the gate saw {secret}:\n{seen}");
    }
    for name in [
        "REGISTRY_PASSWORD",
        "GITHUB_TOKEN",
        "INPUT_KUBECONFIG",
        "DOCKER_CONFIG",
    ] {
        assert!(
            !seen
                .lines()
                .any(|line| line.starts_with(&format!("{name}="))),
            "the gate saw {name}:\n{seen}"
        );
    }
}
