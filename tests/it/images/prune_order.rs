//! `image prune` orders commit builds by the repository's history, on the real registry: a
//! git fixture whose commits are in a known order (fixed dates), real buildah builds (at
//! `--timestamp 0`, so every image is created at the same instant, or with normal
//! timestamps and an old commit rebuilt last) pushed in another order, and an index that
//! carries no creation time at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use jisu_deploy::oci::manifest::{OCI_INDEX, OCI_MANIFEST};
use jisu_deploy::oci::{Digest, Reference, RegistryClient};
use serde_json::json;

use super::prune::{client, prune, unique};
use super::workspace;
use crate::support::prism_proxy::PrismProxy;
use crate::support::registry_server::RegistryServer;

/// Runs `git args` in `dir` with a fixed identity; `date` sets both commit dates.
fn git(dir: &Path, args: &[&str], date: Option<&str>) -> String {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .args([
            "-c",
            "user.name=Fixture",
            "-c",
            "user.email=fixture@example.invalid",
        ])
        .args(["-c", "commit.gpgsign=false"])
        .args(args);
    if let Some(date) = date {
        cmd.env("GIT_AUTHOR_DATE", date)
            .env("GIT_COMMITTER_DATE", date);
    }
    let out = cmd.output().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Makes `dir` a repository with `count` commits on `main`, a day apart; their shas,
/// oldest first.
fn commits(dir: &Path, count: usize) -> Vec<String> {
    git(dir, &["init", "-q", "-b", "main"], None);
    // A clone gets the (empty) manifests directory too.
    std::fs::write(dir.join("k8s/.keep"), "").unwrap();
    (0..count)
        .map(|n| {
            std::fs::write(dir.join("CHANGES"), format!("change {n}\n")).unwrap();
            let date = format!("2026-11-{:02}T12:00:00Z", n + 1);
            git(dir, &["add", "-A"], None);
            git(
                dir,
                &["commit", "-q", "-m", &format!("change {n}")],
                Some(&date),
            );
            git(dir, &["rev-parse", "HEAD"], None)
        })
        .collect()
}

/// buildah with its own storage, the way the project's builds run it (vfs, chroot).
struct Buildah {
    root: tempfile::TempDir,
}

impl Buildah {
    fn new() -> Self {
        Buildah {
            root: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) {
        let root = self.root.path();
        let out = Command::new("buildah")
            .args(["--storage-driver", "vfs", "--root"])
            .arg(root.join("storage"))
            .arg("--runroot")
            .arg(root.join("run"))
            .args(args)
            .output()
            .expect("buildah runs (ci/install-test-deps.sh)");
        assert!(
            out.status.success(),
            "buildah {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Builds `reference` from a context whose one file says `content`; `reproducible`
    /// sets every timestamp to the epoch (`--timestamp 0`).
    fn build(&self, reference: &str, content: &str, reproducible: bool) {
        let name = String::from_utf8(unique("context").to_vec()).unwrap();
        let context: PathBuf = self.root.path().join(name);
        std::fs::create_dir_all(&context).unwrap();
        std::fs::write(context.join("hello.txt"), content).unwrap();
        std::fs::write(
            context.join("Dockerfile"),
            "FROM scratch\nCOPY hello.txt /hello.txt\n",
        )
        .unwrap();
        let dockerfile = context.join("Dockerfile");
        let mut args = vec!["bud", "--isolation", "chroot", "--format", "oci", "-q"];
        if reproducible {
            args.extend(["--timestamp", "0"]);
        }
        args.extend([
            "-f",
            dockerfile.to_str().unwrap(),
            "-t",
            reference,
            context.to_str().unwrap(),
        ]);
        self.run(&args);
    }

    /// Pushes `reference` over plain HTTP; the digest the registry stored.
    fn push(&self, reference: &str) -> Digest {
        let file = self.root.path().join("digest");
        self.run(&[
            "push",
            "--tls-verify=false",
            "--digestfile",
            file.to_str().unwrap(),
            reference,
        ]);
        std::fs::read_to_string(file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

/// An index tagged `tag` whose one child's config has no `created`, and which has no
/// `org.opencontainers.image.created` annotation: no creation time anywhere.
async fn push_timeless_index(c: &RegistryClient, repo: &Reference, tag: &str) -> Digest {
    let layer = unique("timeless layer");
    let config = Bytes::from(
        serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer).to_string()]},
        }))
        .unwrap(),
    );
    for blob in [&config, &layer] {
        c.push_blob(repo.repository(), blob.clone()).await.unwrap();
    }
    let child = Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of(&config).to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": Digest::of(&layer).to_string(), "size": layer.len()}],
        }))
        .unwrap(),
    );
    let child_digest = Digest::of(&child);
    c.put_manifest(
        &repo.with_digest(child_digest.clone()),
        child.clone(),
        OCI_MANIFEST,
    )
    .await
    .unwrap();
    let index = Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": child_digest.to_string(), "size": child.len(),
                           "platform": {"architecture": "amd64", "os": "linux"}}],
        }))
        .unwrap(),
    );
    c.put_manifest(&repo.with_tag(tag).unwrap(), index.clone(), OCI_INDEX)
        .await
        .unwrap();
    Digest::of(&index)
}

/// The verdict line of `digest` in a prune's output.
fn line_of<'a>(stdout: &'a str, digest: &Digest) -> &'a str {
    stdout
        .lines()
        .find(|l| l.contains(digest.as_str()))
        .unwrap_or_else(|| panic!("no line for {digest}:\n{stdout}"))
        .trim_start()
}

fn short(sha: &str) -> String {
    format!("{}…", &sha[..12])
}

/// A registry, a checkout whose `main` has four commits (keep_sha_tags: 2; the only
/// environment deploys `main`), and a builder.
struct Fixture {
    server: RegistryServer,
    dir: tempfile::TempDir,
    config: PathBuf,
    /// Oldest first.
    shas: Vec<String>,
    /// `host/jisu/api`.
    repo: String,
    buildah: Buildah,
}

impl Fixture {
    fn new() -> Self {
        let server = RegistryServer::start();
        let dir = tempfile::tempdir().unwrap();
        let config = workspace(dir.path(), &server.host());
        let shas = commits(dir.path(), 4);
        let repo = format!("{}/jisu/api", server.host());
        Fixture {
            server,
            dir,
            config,
            shas,
            repo,
            buildah: Buildah::new(),
        }
    }
}

/// Prunes for real and checks which of `builds` (commit index -> digest) are still served.
async fn prune_and_check(
    server: &RegistryServer,
    dir: &Path,
    config: &Path,
    builds: &BTreeMap<usize, Digest>,
    kept: &[usize],
) {
    let run = prune(dir, config, &[], &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let c = client(server);
    let repo = Reference::parse(&format!("{}/jisu/api:x", server.host())).unwrap();
    for (n, digest) in builds {
        let served = c
            .head_manifest(&repo.with_digest(digest.clone()))
            .await
            .unwrap();
        assert_eq!(
            served.is_some(),
            kept.contains(n),
            "build of commit {n}:\n{}",
            run.stdout
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reproducible_builds_are_kept_by_commit_order_and_a_timeless_index_blocks_nothing() {
    let f = Fixture::new();
    let tag = |n: usize| format!("{}:sha-{}", f.repo, f.shas[n]);
    for n in 0..4 {
        f.buildah.build(&tag(n), &format!("change {n}\n"), true);
    }
    // Pushed out of commit order: by push time the newest is commit 1, and the tag names
    // sort however the shas fall.
    let mut builds = BTreeMap::new();
    for n in [2, 0, 3, 1] {
        builds.insert(n, f.buildah.push(&tag(n)));
    }
    let c = client(&f.server);
    let reference = Reference::parse(&format!("{}:x", f.repo)).unwrap();
    // Its commit was force-pushed away, and nothing in it says when it was created.
    let orphan = "0123456789abcdef0123456789abcdef01234567";
    let index = push_timeless_index(&c, &reference, &format!("sha-{orphan}")).await;

    let run = prune(f.dir.path(), &f.config, &["--dry-run"], &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let stdout = &run.stdout;
    let line = |n: usize| line_of(stdout, &builds[&n]);
    assert!(
        line(3).starts_with("keep ")
            && line(3).contains("is among the newest 2 `api` commit builds: 0 provably newer;"),
        "{stdout}"
    );
    assert!(
        line(2).starts_with("keep ")
            && line(2).contains(&format!(
                "1 provably newer (commit {} is 1 commit newer on `main` (git history)); 1 not ordered against it (no evidence both have); kept",
                short(&f.shas[3])
            )),
        "{stdout}"
    );
    for (n, newer, nearest) in [(1, 2, 2), (0, 3, 1)] {
        assert!(
            line(n).starts_with("would delete ")
                && line(n).ends_with(&format!(
                    "{newer} `api` commit builds are provably newer (keeping 2): commit {} is 1 commit newer on `main` (git history)",
                    short(&f.shas[nearest])
                )),
            "{stdout}"
        );
    }
    let index_line = line_of(stdout, &index);
    assert!(
        index_line.starts_with("keep ")
            && index_line.contains(
                "0 provably newer; 4 not ordered against it (no evidence both have); kept; commit 0123456789ab… is not in the git history of `main`"
            ),
        "{stdout}"
    );
    assert!(
        run.stderr
            .contains("commit order from the git history of `main`"),
        "{}",
        run.stderr
    );

    prune_and_check(&f.server, f.dir.path(), &f.config, &builds, &[2, 3]).await;
    assert!(
        c.head_manifest(&reference.with_digest(index.clone()))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_of_an_old_commit_pushed_last_is_ordered_by_its_commit() {
    let f = Fixture::new();
    let tag = |n: usize| format!("{}:sha-{}", f.repo, f.shas[n]);
    let mut builds = BTreeMap::new();
    for n in [1, 2, 3] {
        f.buildah.build(&tag(n), &format!("change {n}\n"), false);
        builds.insert(n, f.buildah.push(&tag(n)));
    }
    // Commit 0 rebuilt a second later: its image is the newest by `created`.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    f.buildah.build(&tag(0), "change 0, rebuilt\n", false);
    builds.insert(0, f.buildah.push(&tag(0)));
    let c = client(&f.server);
    let reference = Reference::parse(&format!("{}:x", f.repo)).unwrap();
    let mut created = BTreeMap::new();
    for (n, digest) in &builds {
        let manifest = c
            .get_manifest(&reference.with_digest(digest.clone()))
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
        let config_digest: Digest = body["config"]["digest"].as_str().unwrap().parse().unwrap();
        let config = c
            .get_json_blob(reference.repository(), &config_digest)
            .await
            .unwrap();
        let at: jiff::Timestamp = config["created"].as_str().unwrap().parse().unwrap();
        created.insert(*n, at);
    }
    assert!(
        created.values().all(|at| *at <= created[&0]),
        "the rebuild is the newest image: {created:?}"
    );

    prune_and_check(&f.server, f.dir.path(), &f.config, &builds, &[2, 3]).await;
}

/// A fake `GET /repos/jisu/platform/commits/{ref}` that knows `dates` (sha -> committer
/// date) and answers 404 for anything else, with bodies of the shape GitHub's OpenAPI
/// description requires; it counts what it was asked.
struct FakeCommits {
    server: wiremock::MockServer,
    asked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

struct AnswerCommit {
    dates: BTreeMap<String, String>,
    asked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl wiremock::Respond for AnswerCommit {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let asked = request.url.path().rsplit('/').next().unwrap().to_owned();
        self.asked.lock().unwrap().push(asked.clone());
        let Some((sha, date)) = self.dates.iter().find(|(sha, _)| sha.starts_with(&asked)) else {
            return wiremock::ResponseTemplate::new(404).set_body_json(json!({
                "message": format!("No commit found for SHA: {asked}"),
                "documentation_url": "https://docs.github.com/rest/commits/commits#get-a-commit",
            }));
        };
        let api = "https://api.github.com/repos/jisu/platform";
        let person = json!({"name": "Fixture", "email": "fixture@example.invalid", "date": date});
        wiremock::ResponseTemplate::new(200).set_body_json(json!({
            "url": format!("{api}/commits/{sha}"),
            "sha": sha,
            "node_id": "C_kwDOAAAAAdoAKDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA",
            "html_url": format!("https://github.com/jisu/platform/commit/{sha}"),
            "comments_url": format!("{api}/commits/{sha}/comments"),
            "commit": {
                "url": format!("{api}/git/commits/{sha}"),
                "author": person,
                "committer": person,
                "message": "change",
                "comment_count": 0,
                "tree": {"sha": "4b825dc642cb6eb9a060e54bf8d69288fbee4904", "url": format!("{api}/git/trees/4b825dc642cb6eb9a060e54bf8d69288fbee4904")},
            },
            "author": null,
            "committer": null,
            "parents": [],
            "stats": {"additions": 1, "deletions": 1, "total": 2},
            "files": [],
        }))
    }
}

impl FakeCommits {
    async fn start(dates: BTreeMap<String, String>) -> Self {
        let server = wiremock::MockServer::start().await;
        let asked = std::sync::Arc::default();
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .and(wiremock::matchers::path_regex(
                r"^/repos/jisu/platform/commits/[0-9a-f]+$",
            ))
            .respond_with(AnswerCommit {
                dates,
                asked: std::sync::Arc::clone(&asked),
            })
            .mount(&server)
            .await;
        FakeCommits { server, asked }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shallow_clone_orders_builds_by_the_github_api_commit_dates_through_prism() {
    let f = Fixture::new();
    let tag = |sha: &str| format!("{}:sha-{sha}", f.repo);
    let orphan = "0123456789abcdef0123456789abcdef01234567";
    let mut builds = BTreeMap::new();
    for (n, sha) in f.shas.iter().enumerate() {
        f.buildah.build(&tag(sha), &format!("change {n}\n"), true);
    }
    f.buildah.build(&tag(orphan), "gone\n", true);
    for n in [2, 0, 3, 1] {
        builds.insert(n, f.buildah.push(&tag(&f.shas[n])));
    }
    let gone = f.buildah.push(&tag(orphan));
    // What actions/checkout fetches by default: the tip of the branch only.
    let clones = tempfile::tempdir().unwrap();
    let source = format!("file://{}", f.dir.path().display());
    git(
        clones.path(),
        &["clone", "-q", "--depth", "1", &source, "checkout"],
        None,
    );
    let checkout = clones.path().join("checkout");
    let dates: BTreeMap<String, String> = f
        .shas
        .iter()
        .enumerate()
        .map(|(n, sha)| (sha.clone(), format!("2026-11-{:02}T12:00:00Z", n + 1)))
        .collect();
    let fake = FakeCommits::start(dates).await;
    let prism = PrismProxy::start(&fake.server.uri());
    let api = prism.url();
    let env = [
        ("GITHUB_TOKEN", "ghp_commit_dates_token"),
        ("GITHUB_REPOSITORY", "jisu/platform"),
    ];
    let run = tokio::task::block_in_place(|| {
        prune(
            &checkout,
            &f.config,
            &["--dry-run", "--github-api-url", &api],
            &env,
        )
    });
    assert_eq!(
        run.code,
        0,
        "{}\n{}\n{}",
        run.stdout,
        run.stderr,
        prism.log()
    );
    let stdout = &run.stdout;
    let line = |n: usize| line_of(stdout, &builds[&n]);
    // The tip's date comes from the clone, the older commits' from the API.
    let expect = [
        (3, "keep ", "0 provably newer".to_owned()),
        (
            2,
            "keep ",
            format!(
                "commit {} was committed later, 2026-11-04 12:00:00Z (git history)",
                short(&f.shas[3])
            ),
        ),
        (
            1,
            "would delete ",
            format!(
                "2 `api` commit builds are provably newer (keeping 2): commit {} was committed later, 2026-11-03 12:00:00Z (GitHub API)",
                short(&f.shas[2])
            ),
        ),
        (
            0,
            "would delete ",
            format!(
                "3 `api` commit builds are provably newer (keeping 2): commit {} was committed later, 2026-11-02 12:00:00Z (GitHub API)",
                short(&f.shas[1])
            ),
        ),
    ];
    for (n, verb, reason) in expect {
        assert!(
            line(n).starts_with(verb) && line(n).contains(&reason),
            "{n}: {reason}\n{stdout}"
        );
    }
    // The API does not know the force-pushed commit: its build ties with the others on
    // `created` and is kept.
    let gone_line = line_of(stdout, &gone);
    assert!(
        gone_line.starts_with("keep ")
            && gone_line.contains("0 provably newer; 4 not ordered against it (created times tie); kept; commit 0123456789ab… is not in the git history of `main` (a shallow clone; GitHub API commit dates, 4 asked)"),
        "{stdout}"
    );
    let mut asked = fake.asked.lock().unwrap().clone();
    asked.sort();
    let mut expected: Vec<String> = vec![
        orphan.to_owned(),
        f.shas[0].clone(),
        f.shas[1].clone(),
        f.shas[2].clone(),
    ];
    expected.sort();
    assert_eq!(
        asked, expected,
        "only the commits the clone lacks are asked about"
    );
    let log = prism.log();
    let violations: Vec<&str> = log.lines().filter(|l| l.contains("Violation")).collect();
    // The 404 for the unknown commit is in the description; nothing else may be off.
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(
        !run.stdout.contains("ghp_commit_dates_token")
            && !run.stderr.contains("ghp_commit_dates_token")
    );
}
