//! The workflow policy, checked on every workflow this repository ships (reusable ones,
//! caller templates, the release): every action and reusable workflow from another
//! repository is pinned by commit sha, every image by digest, no `write-all`, no
//! expression expanded inside a script (a branch name or an input would become shell
//! code), and each job's token gets exactly what its steps use. What a step uses is read off the step: a
//! checkout reads the repository, `jisu-deploy run` needs what its plan jobs' kind needs
//! (`JobKind::permissions`, the product's own table), a caller of a reusable workflow
//! needs what the called jobs ask for, `gh release` writes contents, a registry push
//! writes packages.

use std::collections::BTreeMap;
use std::path::Path;

use jisu_deploy::plan::JobKind;
use serde_yaml::Value;

use crate::support::repo_root;

/// This action: its own workflows and setup action are referenced by release tag, since a
/// reusable workflow cannot name the commit it was called at.
const OWN_REPOSITORY: &str = "jisu/deploy-action";

/// Scope → `read` or `write`.
type Permissions = BTreeMap<String, String>;

fn grant(into: &mut Permissions, scope: &str, level: &str) {
    let current = into
        .entry(scope.to_owned())
        .or_insert_with(|| level.to_owned());
    if level == "write" {
        *current = "write".to_owned();
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => serde_yaml::to_string(other).unwrap(),
    }
}

fn is_sha(reference: &str) -> bool {
    reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit())
}

fn pinned_image(image: &str) -> bool {
    image.split_once("@sha256:").is_some_and(|(_, digest)| {
        digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// `owner/repo[/path]@ref` from another repository, not pinned by commit sha.
fn unpinned(uses: &str) -> Option<String> {
    if uses.starts_with("./") || uses.starts_with("docker://") {
        return None;
    }
    let (path, reference) = uses.split_once('@').unwrap_or((uses, ""));
    let repository: Vec<&str> = path.splitn(3, '/').take(2).collect();
    if repository.join("/") == OWN_REPOSITORY || is_sha(reference) {
        return None;
    }
    Some(format!("`{uses}` is not pinned by commit sha"))
}

fn kind_named(name: &str) -> Option<JobKind> {
    JobKind::ALL.into_iter().find(|kind| kind.as_str() == name)
}

/// The plan job kinds a `jisu-deploy run` step carries out: named in `INPUT_JOBS`
/// (literally, or as the matrix the job expands over the plan's `matrix.<kind>`), or the
/// dispatch operation it passes.
fn run_kinds(job: &Value, step: &Value) -> Vec<JobKind> {
    let jobs = text(&step["env"]["INPUT_JOBS"]);
    if jobs.contains("matrix.") {
        let include = text(&job["strategy"]["matrix"]["include"]);
        let kind = include
            .rsplit_once("outputs.matrix).")
            .map(|(_, kind)| kind.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()));
        return kind.and_then(kind_named).into_iter().collect();
    }
    if !jobs.is_empty() {
        return jobs
            .split(',')
            .filter_map(|id| {
                let prefix = id.trim().split('-').next().unwrap_or_default();
                match prefix {
                    "lint" | "security" | "test" => Some(JobKind::Gate),
                    other => kind_named(other),
                }
            })
            .collect();
    }
    let run = text(&step["run"]);
    ["rollback", "switch"]
        .into_iter()
        .filter(|op| run.contains(&format!("operation={op}")))
        .filter_map(kind_named)
        .collect()
}

/// What a job's steps use; `None` for a call of another repository's reusable workflow,
/// whose jobs are not known here.
fn needed(job: &Value, workflows: &BTreeMap<String, Value>) -> Option<Permissions> {
    let mut needs = Permissions::new();
    if let Some(called) = job["uses"].as_str() {
        // A caller grants what the called workflow's jobs ask for.
        let own = called.starts_with(&format!("{OWN_REPOSITORY}/")) || called.starts_with("./");
        let file = called
            .split_once(".github/workflows/")
            .map(|(_, rest)| rest.split('@').next().unwrap_or_default())
            .unwrap_or_default();
        if !own {
            return None;
        }
        let workflow = workflows
            .get(file)
            .unwrap_or_else(|| panic!("{called}: no such reusable workflow here"));
        for called_job in workflow["jobs"].as_mapping().unwrap().values() {
            for (scope, level) in declared(called_job, workflow) {
                grant(&mut needs, &scope, &level);
            }
        }
        return Some(needs);
    }
    for step in job["steps"].as_sequence().into_iter().flatten() {
        let uses = text(&step["uses"]);
        if uses.starts_with("actions/checkout@") {
            grant(&mut needs, "contents", "read");
        }
        let run = text(&step["run"]);
        if run.contains("jisu-deploy run") {
            for kind in run_kinds(job, step) {
                for permission in kind.permissions() {
                    let (scope, level) = permission.as_yaml().split_once(": ").unwrap();
                    grant(&mut needs, scope, level);
                }
            }
        }
        if run.contains(" image retag ") || run.contains("--push") {
            grant(&mut needs, "packages", "write");
        }
        if run.contains("gh release create") || run.contains("git push") {
            grant(&mut needs, "contents", "write");
        }
    }
    Some(needs)
}

/// The job's `permissions:`, else the workflow's.
fn declared(job: &Value, workflow: &Value) -> Permissions {
    let block = match &job["permissions"] {
        Value::Null => &workflow["permissions"],
        own => own,
    };
    block
        .as_mapping()
        .into_iter()
        .flatten()
        .map(|(scope, level)| (text(scope), text(level)))
        .collect()
}

/// Every breach of the policy in one workflow, each naming the job.
fn violations(workflow: &Value, workflows: &BTreeMap<String, Value>) -> Vec<String> {
    let mut found = Vec::new();
    if workflow["permissions"].is_null() {
        found.push("no top-level `permissions:`: the token gets the repository default".into());
    }
    if text(&workflow["permissions"]).contains("write-all") {
        found.push("`permissions: write-all`".into());
    }
    for (name, job) in workflow["jobs"].as_mapping().into_iter().flatten() {
        let name = text(name);
        let mut breach = |what: String| found.push(format!("job `{name}`: {what}"));
        if text(&job["permissions"]).contains("write-all") {
            breach("`permissions: write-all`".into());
        }
        if let Some(uses) = job["uses"].as_str().and_then(unpinned) {
            breach(uses);
        }
        let mut images: Vec<String> = Vec::new();
        match &job["container"] {
            Value::String(image) => images.push(image.clone()),
            Value::Mapping(_) => images.push(text(&job["container"]["image"])),
            _ => {}
        }
        for service in job["services"].as_mapping().into_iter().flatten() {
            images.push(text(&service.1["image"]));
        }
        for step in job["steps"].as_sequence().into_iter().flatten() {
            if text(&step["run"]).contains("${{") {
                breach(format!(
                    "step `{}` expands an expression inside its script; pass it through `env`",
                    text(&step["name"])
                ));
            }
            let uses = text(&step["uses"]);
            if let Some(image) = uses.strip_prefix("docker://") {
                images.push(image.to_owned());
            } else if let Some(problem) = unpinned(&uses).filter(|_| !uses.is_empty()) {
                breach(problem);
            }
        }
        for image in images {
            if !pinned_image(&image) {
                breach(format!(
                    "image `{image}` is a mutable tag; pin it by digest"
                ));
            }
        }
        let declared = declared(job, workflow);
        let Some(needed) = needed(job, workflows) else {
            continue;
        };
        for (scope, level) in &declared {
            match needed.get(scope) {
                None => breach(format!(
                    "more permissions than its steps use: `{scope}: {level}`"
                )),
                Some(need) if need == "read" && level == "write" => breach(format!(
                    "more permissions than its steps use: `{scope}: write` where they read"
                )),
                _ => {}
            }
        }
        for (scope, level) in &needed {
            let enough = declared
                .get(scope)
                .is_some_and(|have| have == "write" || have == level);
            if !enough {
                breach(format!("its steps need `{scope}: {level}`"));
            }
        }
    }
    found
}

fn load(dir: &Path) -> BTreeMap<String, Value> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yml"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, serde_yaml::from_str(&text).unwrap())
        })
        .collect()
}

fn reusable() -> BTreeMap<String, Value> {
    load(&repo_root().join(".github/workflows"))
}

fn check(yaml: &str) -> Vec<String> {
    violations(&serde_yaml::from_str(yaml).unwrap(), &reusable())
}

#[test]
fn every_shipped_workflow_keeps_the_policy() {
    let reusable = reusable();
    let templates = load(&repo_root().join("workflows"));
    assert!(reusable.len() >= 5 && templates.len() >= 4);
    let mut breaches = Vec::new();
    for (dir, workflows) in [(".github/workflows", &reusable), ("workflows", &templates)] {
        for (name, workflow) in workflows {
            for breach in violations(workflow, &reusable) {
                breaches.push(format!("{dir}/{name}: {breach}"));
            }
        }
    }
    assert!(breaches.is_empty(), "{}", breaches.join("\n"));
}

const GOOD_JOB: &str = "
permissions: {}
jobs:
  build:
    runs-on: ubuntu-latest
    permissions: {contents: read, packages: write}
    steps:
      - uses: actions/checkout@34e114876b0b11c390a56381ad16ebd13914f8d5
      - env: {INPUT_JOBS: build}
        run: jisu-deploy run
";

#[test]
fn the_policy_passes_a_least_privilege_pinned_job() {
    assert_eq!(check(GOOD_JOB), Vec::<String>::new());
}

#[test]
fn an_action_not_pinned_by_sha_is_caught() {
    let found = check(&GOOD_JOB.replace(
        "actions/checkout@34e114876b0b11c390a56381ad16ebd13914f8d5",
        "actions/checkout@v4",
    ));
    assert_eq!(
        found,
        ["job `build`: `actions/checkout@v4` is not pinned by commit sha"]
    );
    let reusable = check(
        "permissions: {}\njobs:\n  ci:\n    uses: acme/workflows/.github/workflows/ci.yml@main\n",
    );
    assert!(
        reusable
            .iter()
            .any(|v| v.contains("is not pinned by commit sha")),
        "{reusable:?}"
    );
}

#[test]
fn a_mutable_image_tag_is_caught_in_services_containers_and_docker_steps() {
    for (yaml, image) in [
        (
            "    services:\n      db:\n        image: postgres:16\n",
            "postgres:16",
        ),
        ("    container: node:20\n", "node:20"),
        (
            "    container:\n      image: ghcr.io/acme/ci:latest\n",
            "ghcr.io/acme/ci:latest",
        ),
    ] {
        let found = check(&GOOD_JOB.replace("    steps:\n", &format!("{yaml}    steps:\n")));
        assert_eq!(
            found,
            [format!(
                "job `build`: image `{image}` is a mutable tag; pin it by digest"
            )]
        );
    }
    let docker_step = check(&format!("{GOOD_JOB}      - uses: docker://alpine:3.20\n"));
    assert_eq!(
        docker_step,
        ["job `build`: image `alpine:3.20` is a mutable tag; pin it by digest"]
    );
    let pinned = format!(
        "{GOOD_JOB}      - uses: docker://alpine@sha256:{}\n",
        "a".repeat(64)
    );
    assert_eq!(check(&pinned), Vec::<String>::new());
}

#[test]
fn write_all_is_caught() {
    let found = check(&GOOD_JOB.replace("permissions: {}", "permissions: write-all"));
    assert!(
        found.contains(&"`permissions: write-all`".to_owned()),
        "{found:?}"
    );
    let job = check(&GOOD_JOB.replace(
        "permissions: {contents: read, packages: write}",
        "permissions: write-all",
    ));
    assert!(
        job.contains(&"job `build`: `permissions: write-all`".to_owned()),
        "{job:?}"
    );
}

#[test]
fn a_job_with_more_permissions_than_its_steps_use_is_caught() {
    let found = check(&GOOD_JOB.replace(
        "permissions: {contents: read, packages: write}",
        "permissions: {contents: read, packages: write, deployments: write}",
    ));
    assert_eq!(
        found,
        ["job `build`: more permissions than its steps use: `deployments: write`"]
    );
    // A plan job reads the repository and nothing else.
    let plan_only = check(
        &GOOD_JOB
            .replace("env: {INPUT_JOBS: build}", "name: plan")
            .replace("jisu-deploy run", "jisu-deploy plan"),
    );
    assert_eq!(
        plan_only,
        ["job `build`: more permissions than its steps use: `packages: write`"]
    );
    // And too little is caught too: a deploy needs its deployment record.
    let deploy = check(&GOOD_JOB.replace("INPUT_JOBS: build", "INPUT_JOBS: deploy-staging"));
    assert_eq!(
        deploy,
        [
            "job `build`: more permissions than its steps use: `packages: write` where they read",
            "job `build`: its steps need `deployments: write`",
        ]
    );
}

#[test]
fn an_expression_inside_a_script_is_caught() {
    let found = check(&GOOD_JOB.replace(
        "run: jisu-deploy run",
        "name: build\n        run: jisu-deploy run --ref ${{ github.head_ref }}",
    ));
    assert_eq!(
        found,
        [
            "job `build`: step `build` expands an expression inside its script; pass it through `env`"
        ]
    );
}

#[test]
fn a_caller_grants_exactly_what_the_called_workflow_asks_for() {
    let caller = "
permissions: {}
jobs:
  rollback:
    uses: jisu/deploy-action/.github/workflows/rollback.yml@v1
    permissions: {contents: read, deployments: write, packages: write}
";
    assert_eq!(
        check(caller),
        ["job `rollback`: more permissions than its steps use: `packages: write`"]
    );
}
