//! The cross-check: real kubectl against the simulator. If kubectl is not on PATH these
//! tests fail with a message saying so (CI has it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kube_sim::{ImageBehavior, KubeSim, SimOptions};

const PLATFORM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/platform.yaml");

/// A simulator plus a kubectl configured for it, in a private HOME (kubectl caches
/// discovery and OpenAPI documents there).
struct Bed {
    sim: KubeSim,
    dir: tempfile::TempDir,
}

impl Bed {
    fn new(opts: SimOptions) -> Self {
        let out = Command::new("kubectl")
            .args(["version", "--client"])
            .output();
        assert!(
            out.as_ref().is_ok_and(|o| o.status.success()),
            "kubectl is required for the kube-sim cross-check but is not runnable from PATH: {out:?}"
        );
        let sim = KubeSim::start_blocking(opts.time_scale(100.0)).expect("simulator starts");
        let dir = tempfile::tempdir().unwrap();
        sim.write_kubeconfig(dir.path().join("kubeconfig")).unwrap();
        Self { sim, dir }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .args(args);
        c.env("HOME", self.dir.path()).env_remove("KUBECONFIG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("kubectl runs")
    }

    fn run_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl, asserts success, returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        check(args, self.run(args))
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

fn check(args: &[&str], out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {stderr}\n{stdout}"
    );
    stdout
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn repo_k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../k8s")
}

#[test]
fn server_side_apply_of_platform_manifests_and_yaml_round_trip() {
    let bed = Bed::new(SimOptions::default());
    let out = bed.ok(&["apply", "--server-side", "-f", PLATFORM]);
    for line in [
        "namespace/jisu-staging serverside-applied",
        "deployment.apps/backend-blue serverside-applied",
        "service/frontend serverside-applied",
        "horizontalpodautoscaler.autoscaling/backend-blue serverside-applied",
    ] {
        assert!(out.contains(line), "missing {line:?} in {out}");
    }
    // Applying the same manifests again changes nothing.
    let before = bed.ok(&[
        "-n",
        "jisu-staging",
        "get",
        "svc",
        "backend",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    bed.ok(&["apply", "--server-side", "-f", PLATFORM]);
    let after = bed.ok(&[
        "-n",
        "jisu-staging",
        "get",
        "svc",
        "backend",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    assert_eq!(before, after);

    // get -o yaml shows what was applied plus server defaults, and feeds back unchanged.
    let yaml = bed.ok(&[
        "-n",
        "jisu-staging",
        "get",
        "deploy",
        "backend-blue",
        "-o",
        "yaml",
    ]);
    let doc: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
    let c = &doc["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"].as_str(), Some("ghcr.io/jisu/backend:3f2a9c1"));
    assert_eq!(c["imagePullPolicy"].as_str(), Some("IfNotPresent"));
    assert_eq!(c["readinessProbe"]["timeoutSeconds"].as_i64(), Some(1));
    assert_eq!(
        doc["spec"]["strategy"]["rollingUpdate"]["maxSurge"].as_i64(),
        Some(1)
    );
    let replaced = check(&["replace"], bed.run_stdin(&["replace", "-f", "-"], &yaml));
    assert!(replaced.contains("deployment.apps/backend-blue replaced"));
    let again = bed.ok(&[
        "-n",
        "jisu-staging",
        "get",
        "deploy",
        "backend-blue",
        "-o",
        "yaml",
    ]);
    let again: serde_yaml::Value = serde_yaml::from_str(&again).unwrap();
    assert_eq!(again["spec"], doc["spec"]);

    // Managed fields are there, keyed per list item like a real server's.
    let mf = bed.ok(&[
        "-n",
        "jisu-staging",
        "get",
        "deploy",
        "backend-blue",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    assert!(
        mf.contains("manager: kubectl") && mf.contains("operation: Apply"),
        "{mf}"
    );
    assert!(
        mf.contains(r#"k:{"name":"backend"}"#) && mf.contains(r#"k:{"name":"LOG_LEVEL"}"#),
        "{mf}"
    );
}

#[test]
fn server_side_apply_conflicts_and_dry_run_through_kubectl() {
    let bed = Bed::new(SimOptions::default());
    bed.ok(&["apply", "--server-side", "-f", PLATFORM]);
    let scaled =
        std::fs::read_to_string(PLATFORM)
            .unwrap()
            .replacen("replicas: 2", "replicas: 5", 1);
    let out = bed.run_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=hotfix",
            "-f",
            "-",
        ],
        &scaled,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"),
        "{stderr}"
    );
    check(
        &["apply --force-conflicts"],
        bed.run_stdin(
            &[
                "apply",
                "--server-side",
                "--field-manager=hotfix",
                "--force-conflicts",
                "-f",
                "-",
            ],
            &scaled,
        ),
    );
    assert_eq!(
        bed.ok(&[
            "-n",
            "jisu-staging",
            "get",
            "deploy",
            "backend-blue",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "5"
    );

    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dry\n  namespace: jisu-staging\ndata:\n  a: b\n";
    let out = check(
        &["apply --dry-run=server"],
        bed.run_stdin(
            &["apply", "--server-side", "--dry-run=server", "-f", "-"],
            cm,
        ),
    );
    assert!(
        out.contains("configmap/dry serverside-applied (server dry run)"),
        "{out}"
    );
    let missing = bed.run(&["-n", "jisu-staging", "get", "cm", "dry"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("configmaps \"dry\" not found"));
}

#[test]
fn rollout_status_succeeds_when_healthy_and_reports_the_deadline_when_crash_looping() {
    let bed = Bed::new(SimOptions::default().image(
        "ghcr.io/jisu/backend:broken",
        ImageBehavior::CrashLoop {
            run_for: Duration::from_secs(2),
        },
    ));
    bed.ok(&["apply", "--server-side", "-f", PLATFORM]);
    let out = bed.ok(&[
        "-n",
        "jisu-staging",
        "rollout",
        "status",
        "deploy/backend-blue",
        "--timeout=60s",
    ]);
    assert!(
        out.contains("deployment \"backend-blue\" successfully rolled out"),
        "{out}"
    );

    bed.ok(&[
        "-n",
        "jisu-staging",
        "patch",
        "deploy",
        "backend-blue",
        "-p",
        r#"{"spec":{"progressDeadlineSeconds":60}}"#,
    ]);
    bed.ok(&[
        "-n",
        "jisu-staging",
        "set",
        "image",
        "deploy/backend-blue",
        "backend=ghcr.io/jisu/backend:broken",
    ]);
    let out = bed.run(&[
        "-n",
        "jisu-staging",
        "rollout",
        "status",
        "deploy/backend-blue",
        "--timeout=60s",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: deployment \"backend-blue\" exceeded its progress deadline"),
        "{stderr}"
    );
    // The old pods still serve: maxUnavailable 0 kept them.
    assert_eq!(
        bed.ok(&[
            "-n",
            "jisu-staging",
            "get",
            "deploy",
            "backend-blue",
            "-o",
            "jsonpath={.status.availableReplicas}"
        ]),
        "2"
    );
    let reasons = bed.ok(&[
        "-n",
        "jisu-staging",
        "get",
        "pods",
        "-o",
        "jsonpath={.items[*].status.containerStatuses[0].lastState.terminated.reason}",
    ]);
    // The crashing pod is either backing off or in one of its short runs right now;
    // either way its last run ended in an error.
    assert!(reasons.contains("Error"), "{reasons}");

    // Rolling back finishes again.
    bed.ok(&[
        "-n",
        "jisu-staging",
        "rollout",
        "undo",
        "deploy/backend-blue",
    ]);
    let out = bed.ok(&[
        "-n",
        "jisu-staging",
        "rollout",
        "status",
        "deploy/backend-blue",
        "--timeout=60s",
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");
}

#[test]
fn patch_service_selector_scale_and_delete() {
    let bed = Bed::new(SimOptions::default());
    bed.ok(&["apply", "--server-side", "-f", PLATFORM]);
    fn with_ns<'a>(args: &[&'a str]) -> Vec<&'a str> {
        [&["-n", "jisu-staging"][..], args].concat()
    }
    bed.ok(&with_ns(&[
        "patch",
        "svc",
        "backend",
        "-p",
        r#"{"spec":{"selector":{"color":"green"}}}"#,
    ]));
    assert_eq!(
        bed.ok(&with_ns(&[
            "get",
            "svc",
            "backend",
            "-o",
            "jsonpath={.spec.selector.color}"
        ])),
        "green"
    );
    bed.ok(&with_ns(&[
        "patch",
        "svc",
        "backend",
        "--type=merge",
        "-p",
        r#"{"spec":{"selector":{"color":"blue"}}}"#,
    ]));
    bed.ok(&with_ns(&[
        "patch",
        "svc",
        "backend",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/selector/color","value":"green"}]"#,
    ]));
    assert_eq!(
        bed.ok(&with_ns(&[
            "get",
            "svc",
            "backend",
            "-o",
            "jsonpath={.spec.selector.color}"
        ])),
        "green"
    );
    // Endpoints follow: nothing is green, so no addresses.
    wait_until("backend endpoints to empty", || {
        bed.ok(&with_ns(&[
            "get",
            "endpoints",
            "backend",
            "-o",
            "jsonpath={.subsets}",
        ]))
        .is_empty()
    });

    bed.ok(&with_ns(&[
        "scale",
        "deploy",
        "frontend-blue",
        "--replicas=3",
    ]));
    let out = bed.ok(&with_ns(&[
        "rollout",
        "status",
        "deploy/frontend-blue",
        "--timeout=60s",
    ]));
    assert!(out.contains("successfully rolled out"));
    assert_eq!(
        bed.ok(&with_ns(&[
            "get",
            "pods",
            "-l",
            "app=frontend",
            "-o",
            "name"
        ]))
        .lines()
        .count(),
        3
    );

    let out = bed.ok(&with_ns(&["delete", "deploy", "frontend-blue"]));
    assert!(
        out.contains("deployment.apps \"frontend-blue\" deleted"),
        "{out}"
    );
    let gone = bed.run(&with_ns(&["get", "deploy", "frontend-blue"]));
    assert!(
        String::from_utf8_lossy(&gone.stderr)
            .contains("Error from server (NotFound): deployments.apps \"frontend-blue\" not found")
    );
    wait_until("frontend pods collected", || {
        bed.ok(&with_ns(&[
            "get",
            "pods",
            "-l",
            "app=frontend",
            "-o",
            "name",
        ]))
        .is_empty()
    });
    assert!(
        bed.sim
            .object("Deployment", "jisu-staging", "backend-blue")
            .is_some()
    );
}

#[test]
fn get_watch_sees_added_modified_deleted() {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    let bed = Bed::new(SimOptions::default());
    let seed = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: seed\n";
    check(
        &["apply"],
        bed.run_stdin(&["apply", "--server-side", "-f", "-"], seed),
    );
    let mut watcher = bed.spawn(&[
        "get",
        "configmaps",
        "--watch",
        "--output-watch-events",
        "-o",
        "json",
    ]);
    let seen = Arc::new(Mutex::new(String::new()));
    let mut stdout = watcher.stdout.take().unwrap();
    let sink = seen.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let output = || seen.lock().unwrap().clone();
    // The initial list prints the seed; after that the watch is open.
    wait_until("kubectl to list", || output().contains("\"seed\""));
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\ndata:\n  a: \"1\"\n";
    check(
        &["apply"],
        bed.run_stdin(&["apply", "--server-side", "-f", "-"], cm),
    );
    bed.ok(&["patch", "cm", "watched", "-p", r#"{"data":{"a":"2"}}"#]);
    bed.ok(&["delete", "cm", "watched"]);
    wait_until("the DELETED event", || output().contains("\"DELETED\""));
    watcher.kill().unwrap();
    watcher.wait().unwrap();
    reader.join().unwrap();
    let out = output();
    for ty in ["\"ADDED\"", "\"MODIFIED\"", "\"DELETED\""] {
        assert!(out.contains(ty), "{ty} missing from watch output: {out}");
    }
    assert_eq!(
        out.matches("\"ADDED\"").count(),
        2,
        "seed from the list, watched from the watch: {out}"
    );
    assert!(out.find("\"MODIFIED\"") < out.find("\"DELETED\""));
}

#[test]
fn whole_k8s_directory_applies_and_rolls_out() {
    let dir = repo_k8s_dir();
    let has_manifests =
        std::fs::read_dir(&dir).is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.path().is_dir())));
    if !has_manifests {
        eprintln!("skipping: no manifests under {}", dir.display());
        return;
    }
    let bed = Bed::new(SimOptions::default());
    let dir = dir.to_string_lossy().into_owned();
    bed.ok(&["apply", "--server-side", "-R", "-f", &dir]);
    let deploys = bed.ok(&[
        "get",
        "deploy",
        "-A",
        "-o",
        "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {end}",
    ]);
    for d in deploys.split_whitespace() {
        let (ns, name) = d.split_once('/').unwrap();
        let out = bed.ok(&[
            "-n",
            ns,
            "rollout",
            "status",
            &format!("deploy/{name}"),
            "--timeout=60s",
        ]);
        assert!(out.contains("successfully rolled out"), "{d}: {out}");
    }
}

#[test]
fn typed_create_commands_and_human_get_output() {
    let bed = Bed::new(SimOptions::default());
    // These generators send protobuf bodies.
    bed.ok(&["create", "namespace", "scratch"]);
    bed.ok(&[
        "-n",
        "scratch",
        "create",
        "configmap",
        "settings",
        "--from-literal=LOG_LEVEL=debug",
    ]);
    bed.ok(&[
        "-n",
        "scratch",
        "create",
        "secret",
        "generic",
        "db",
        "--from-literal=password=s3cret",
    ]);
    assert_eq!(
        bed.ok(&[
            "-n",
            "scratch",
            "get",
            "cm",
            "settings",
            "-o",
            "jsonpath={.data.LOG_LEVEL}"
        ]),
        "debug"
    );
    assert_eq!(
        bed.ok(&[
            "-n",
            "scratch",
            "get",
            "secret",
            "db",
            "-o",
            "jsonpath={.data.password}"
        ]),
        "czNjcmV0"
    );

    bed.ok(&["apply", "--server-side", "-f", PLATFORM]);
    bed.ok(&[
        "-n",
        "jisu-staging",
        "rollout",
        "status",
        "deploy/backend-blue",
        "--timeout=60s",
    ]);
    let table = bed.ok(&["-n", "jisu-staging", "get", "deploy", "backend-blue"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..4], ["backend-blue", "2/2", "2", "2"]);
    let pods = bed.ok(&["-n", "jisu-staging", "get", "pods", "-l", "app=backend"]);
    assert!(
        pods.lines().next().unwrap().starts_with("NAME") && pods.contains("Running"),
        "{pods}"
    );
    let svc = bed.ok(&["-n", "jisu-staging", "get", "svc", "backend"]);
    assert!(
        svc.contains("ClusterIP") && svc.contains("8000/TCP"),
        "{svc}"
    );
}

#[test]
fn the_binary_serves_kubectl_and_writes_its_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args(["--port", "0", "--time-scale", "100", "--kubeconfig"])
        .arg(&kubeconfig)
        .stderr(Stdio::piped())
        .spawn()
        .expect("kube-sim binary starts");
    wait_until("the kubeconfig to be written", || kubeconfig.exists());
    let kubectl = |args: &[&str]| {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .env("HOME", dir.path())
            .output()
            .expect("kubectl runs")
    };
    let version = kubectl(&["version", "-o", "json"]);
    let version: serde_json::Value =
        serde_json::from_slice(&version.stdout).expect("kubectl version prints JSON");
    assert_eq!(version["serverVersion"]["gitVersion"], "v1.33.0-kube-sim");
    let out = kubectl(&["get", "namespaces", "-o", "name"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("namespace/default"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let applied = {
        use std::io::Write;
        let mut c = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["apply", "--server-side", "-f", "-"])
            .env("HOME", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(std::fs::read_to_string(PLATFORM).unwrap().as_bytes())
            .unwrap();
        c.wait_with_output().unwrap()
    };
    assert!(applied.status.success());
    let out = kubectl(&[
        "-n",
        "jisu-staging",
        "rollout",
        "status",
        "deploy/frontend-blue",
        "--timeout=60s",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn client_side_apply_then_upgrade_to_server_side_apply() {
    let bed = Bed::new(SimOptions::default());
    let out = bed.ok(&["apply", "-f", PLATFORM]);
    assert!(
        out.contains("deployment.apps/backend-blue created"),
        "{out}"
    );
    assert!(
        bed.ok(&["apply", "-f", PLATFORM])
            .contains("deployment.apps/backend-blue unchanged")
    );
    // Changing a value client-side apply owns: kubectl's upgrade path takes it over.
    let scaled =
        std::fs::read_to_string(PLATFORM)
            .unwrap()
            .replacen("replicas: 2", "replicas: 3", 1);
    check(
        &["apply --server-side"],
        bed.run_stdin(&["apply", "--server-side", "-f", "-"], &scaled),
    );
    assert_eq!(
        bed.ok(&[
            "-n",
            "jisu-staging",
            "get",
            "deploy",
            "backend-blue",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "3"
    );
    let managers = bed.ok(&[
        "-n",
        "jisu-staging",
        "get",
        "deploy",
        "backend-blue",
        "--show-managed-fields",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(
        !managers.contains("kubectl-client-side-apply"),
        "ownership migrated: {managers}"
    );
    // A different manager changing the same field still conflicts with kubectl.
    let rescaled = scaled.replacen("replicas: 3", "replicas: 4", 1);
    let out = bed.run_stdin(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        &rescaled,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("conflict with \"kubectl\": .spec.replicas")
    );
    // wait and describe work as against a cluster.
    bed.ok(&[
        "-n",
        "jisu-staging",
        "wait",
        "--for=condition=available",
        "deploy/backend-blue",
        "--timeout=30s",
    ]);
    let described = bed.ok(&["-n", "jisu-staging", "describe", "deploy", "backend-blue"]);
    assert!(
        described.contains("NewReplicaSetAvailable") || described.contains("ReplicaSetUpdated"),
        "{described}"
    );
}

const TYPO_DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicass: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unknown_fields_are_refused_strictly_and_dropped_with_a_warning() {
    let bed = Bed::new(SimOptions::default());
    // kubectl sends fieldValidation=Strict by default.
    let out = bed.run_stdin(&["create", "-f", "-"], TYPO_DEPLOYMENT);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            r#"Error from server (BadRequest): error when creating "STDIN": Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field "spec.replicass""#
        ),
        "{}",
        stderr(&out)
    );
    // Server-side apply converts the applied configuration to its typed form and refuses
    // unknown fields whatever the validation level, with the real server's 500.
    for validate in ["--validate=strict", "--validate=warn"] {
        let out = bed.run_stdin(
            &["apply", "--server-side", validate, "-f", "-"],
            TYPO_DEPLOYMENT,
        );
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains(
                "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec.replicass: field not declared in schema"
            ),
            "{validate}: {}",
            stderr(&out)
        );
    }
    assert!(!bed.run(&["get", "deploy", "web"]).status.success());

    // Warn: created, the field dropped, kubectl prints the server's warning.
    let out = bed.run_stdin(&["create", "--validate=warn", "-f", "-"], TYPO_DEPLOYMENT);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(r#"Warning: unknown field "spec.replicass""#),
        "{}",
        stderr(&out)
    );
    let spec = bed.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec}"]);
    assert!(
        !spec.contains("replicass") && spec.contains(r#""replicas":1"#),
        "{spec}"
    );

    // kubectl patch sends no fieldValidation: the server's default, Warn, applies.
    let out = bed.run(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"replicass":3}}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(r#"Warning: unknown field "spec.replicass""#),
        "{}",
        stderr(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deployment.apps/web patched (no change)")
    );
    // Ignore: silently dropped.
    let other = TYPO_DEPLOYMENT.replace("name: web\n", "name: web2\n");
    let out = bed.run_stdin(&["create", "--validate=ignore", "-f", "-"], &other);
    assert!(
        out.status.success() && stderr(&out).is_empty(),
        "{}",
        stderr(&out)
    );
    let spec = bed.ok(&["get", "deploy", "web2", "-o", "jsonpath={.spec}"]);
    assert!(!spec.contains("replicass"), "{spec}");
}

#[test]
fn mistyped_fields_fail_to_decode() {
    let bed = Bed::new(SimOptions::default());
    let mistyped = TYPO_DEPLOYMENT.replace("replicass: 2", "replicas: three");
    let out = bed.run_stdin(&["create", "-f", "-"], &mistyped);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            r#"Error from server (BadRequest): error when creating "STDIN": Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"#
        ),
        "{}",
        stderr(&out)
    );
    let out = bed.run_stdin(&["apply", "--server-side", "-f", "-"], &mistyped);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(".spec.replicas: expected numeric (int or float), got string"),
        "{}",
        stderr(&out)
    );
    // A JSON patch that breaks the type is refused too, and nothing changes.
    bed.run_stdin(
        &["create", "-f", "-"],
        &mistyped.replace("replicas: three", "replicas: 1"),
    );
    let out = bed.run(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":5}]"#,
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "json: cannot unmarshal number into Go struct field Container.spec.template.spec.containers.image of type string"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        bed.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}"
        ]),
        "nginx:1.27"
    );
}

#[test]
fn describe_and_get_events_show_the_kubelets_failures() {
    let bed = Bed::new(SimOptions::default());
    let pods = "apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers: [{name: app, image: 'ghcr.io/x/app:crashloop'}]
---
apiVersion: v1
kind: Pod
metadata: {name: unpullable}
spec:
  containers: [{name: app, image: 'ghcr.io/x/no-such-image:1'}]
---
apiVersion: v1
kind: Pod
metadata: {name: unready}
spec:
  containers:
  - name: app
    image: 'ghcr.io/x/app:neverready'
    readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
";
    check(&["apply"], bed.run_stdin(&["apply", "-f", "-"], pods));
    // Crash loops back off again and again: one Event, its count growing.
    wait_until("the crash loop's BackOff event to repeat", || {
        let count = bed.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=crasher,reason=BackOff",
            "-o",
            "jsonpath={.items[*].count}",
        ]);
        count.trim().parse::<u64>().is_ok_and(|c| c >= 2)
    });
    let describe = bed.ok(&["describe", "pod", "crasher"]);
    for line in [
        "Normal   Scheduled",
        "Successfully assigned default/crasher to kube-sim-node",
        "Started container app",
        "Warning  BackOff",
        "Back-off restarting failed container app in pod crasher_default(",
    ] {
        assert!(describe.contains(line), "missing {line:?} in\n{describe}");
    }
    wait_until("the pull back-off", || {
        bed.ok(&["describe", "pod", "unpullable"])
            .contains("Error: ImagePullBackOff")
    });
    let describe = bed.ok(&["describe", "pod", "unpullable"]);
    assert!(
        describe.contains(r#"Failed to pull image "ghcr.io/x/no-such-image:1": "#)
            && describe.contains("Warning  Failed"),
        "{describe}"
    );
    assert!(!describe.contains("Started container"), "{describe}");
    wait_until("readiness probe failures", || {
        bed.ok(&["describe", "pod", "unready"])
            .contains("Readiness probe failed: HTTP probe failed with statuscode: 503")
    });
    // kubectl get events lists them all, by involved object.
    let all = bed.ok(&[
        "get",
        "events",
        "-o",
        "jsonpath={range .items[*]}{.involvedObject.name} {.type} {.reason}{\"\\n\"}{end}",
    ]);
    for line in [
        "crasher Warning BackOff",
        "unpullable Warning Failed",
        "unready Warning Unhealthy",
        "unready Normal Scheduled",
    ] {
        assert!(all.contains(line), "missing {line:?} in\n{all}");
    }
}
