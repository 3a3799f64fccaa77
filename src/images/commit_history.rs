//! What the repository knows about the order of its commits, for retention
//! ([`super::build_order`]):
//!
//! - the first-parent chains of the default branch and of the environments' branches, read
//!   from the checkout with `git rev-list` (`origin/<branch>`, else the local branch), at
//!   most [`MAX_CHAIN`] commits each;
//! - the committer times of the other commits the tags name that the checkout has;
//! - when the checkout is shallow (`actions/checkout` fetches one commit by default) or
//!   missing, the GitHub API's commit dates for the commits still unknown, at most
//!   [`MAX_API_LOOKUPS`] requests (`GITHUB_TOKEN` and `GITHUB_REPOSITORY` needed).
//!
//! `git` runs through [`crate::process::query`] (no shell, scrubbed environment, deadline,
//! bounded output) and never looks above the checkout for a repository. Anything that
//! cannot be read only leaves commits unknown, which keeps their builds: less evidence
//! never deletes more.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use tracing::{info, warn};

use super::build_order::{CommitSource, History};
use crate::github::RepositoryApi;
use crate::process::{Child, query};

/// Most commits read from one branch's first-parent chain; older ones are found by their
/// committer time only.
pub const MAX_CHAIN: usize = 10_000;

/// Most commits one `git rev-list --no-walk` is asked about at once.
const LOOKUP_CHUNK: usize = 1_000;

/// Most GitHub API requests for commit dates in one prune.
pub const MAX_API_LOOKUPS: usize = 100;

/// How long one `git` command may run.
const GIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Bytes of one `git rev-list --timestamp` line: seconds, a space, a sha, a newline.
const LINE: usize = 20 + 1 + 64 + 1;

/// Where the history is read from.
pub struct HistoryAccess {
    /// The repository checkout (`--workspace`).
    pub checkout: PathBuf,
    /// The GitHub API of the run's repository, when a token and the repository are known.
    pub api: Option<RepositoryApi>,
}

impl std::fmt::Debug for HistoryAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryAccess")
            .field("checkout", &self.checkout)
            .field("api", &self.api.as_ref().map(|a| &a.repository))
            .finish()
    }
}

/// Reads the history of `branches` and what is known of `shas` (hex, full or abbreviated,
/// as commit tags carry them).
pub async fn read(access: &HistoryAccess, branches: &[String], shas: &BTreeSet<String>) -> History {
    let shas: BTreeSet<&String> = shas
        .iter()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    // What the reasons call the history: `git history of `main` (a shallow clone; ...)`.
    let mut base = "history".to_owned();
    let mut notes = Vec::new();
    let mut history = History::default();
    let git = Git::of(&access.checkout);
    let mut shallow = true;
    match &git {
        Some(git) => {
            shallow = git.is_shallow().await;
            let mut read = Vec::new();
            for branch in branches {
                if let Some(chain) = git.chain(branch).await {
                    history.add_chain(branch, &chain);
                    read.push(format!("`{branch}`"));
                }
            }
            let unknown: Vec<&String> = shas
                .iter()
                .copied()
                .filter(|s| history.find(s).is_none())
                .collect();
            for chunk in unknown.chunks(LOOKUP_CHUNK) {
                for (sha, time) in git.times(chunk).await {
                    history.add_time(&sha, time, CommitSource::Git);
                }
            }
            if read.is_empty() {
                base = "git history".to_owned();
                notes.push("none of the branches is in the checkout".to_owned());
            } else {
                base = format!("git history of {}", read.join(", "));
            }
            if shallow {
                notes.push("a shallow clone".to_owned());
            }
        }
        None => notes.push("no git checkout".to_owned()),
    }
    if shallow {
        let unknown: Vec<&String> = shas
            .iter()
            .copied()
            .filter(|s| history.find(s).is_none())
            .collect();
        match &access.api {
            Some(api) if !unknown.is_empty() => {
                let asked = api_dates(api, &unknown, &mut history).await;
                notes.push(format!("GitHub API commit dates, {asked} asked"));
            }
            Some(_) => {}
            None => notes.push("no GitHub API: GITHUB_TOKEN or GITHUB_REPOSITORY unset".to_owned()),
        }
    }
    history.described = match notes.is_empty() {
        true => base,
        false => format!("{base} ({})", notes.join("; ")),
    };
    info!("commit order from the {}", history.described);
    history
}

/// `git` in one checkout.
struct Git {
    checkout: PathBuf,
    env: std::collections::BTreeMap<String, String>,
}

impl Git {
    /// The checkout's git, when it has a `.git` (a directory, or a file for worktrees).
    fn of(checkout: &Path) -> Option<Git> {
        let root = checkout.canonicalize().ok()?;
        if !root.join(".git").exists() {
            return None;
        }
        let mut env = std::collections::BTreeMap::from([
            ("GIT_TERMINAL_PROMPT".to_owned(), "0".to_owned()),
            ("GIT_OPTIONAL_LOCKS".to_owned(), "0".to_owned()),
            // A partial clone (`filter: tree:0`) would fetch an unknown sha from the remote.
            ("GIT_NO_LAZY_FETCH".to_owned(), "1".to_owned()),
            ("LC_ALL".to_owned(), "C".to_owned()),
        ]);
        // Never a repository above the checkout.
        if let Some(parent) = root.parent() {
            env.insert(
                "GIT_CEILING_DIRECTORIES".to_owned(),
                parent.display().to_string(),
            );
        }
        Some(Git {
            checkout: root,
            env,
        })
    }

    /// Runs `git args`; its standard output (at most `keep` bytes) when it succeeds. A
    /// failure is logged, except for a `rev-parse --verify --quiet` (a missing ref).
    async fn run(&self, args: &[&str], keep: usize) -> Option<Vec<u8>> {
        let argv: Vec<String> = std::iter::once("git")
            .chain(args.iter().copied())
            .map(str::to_owned)
            .collect();
        let child = Child {
            name: "git",
            argv: &argv,
            workdir: ".",
            checkout: &self.checkout,
            env: &self.env,
            timeout: GIT_TIMEOUT,
        };
        let (result, output) = query(&child, keep + 1).await;
        match result {
            Ok(()) if output.stdout.len() <= keep => Some(output.stdout),
            Ok(()) => {
                warn!("`git {}` wrote more than {keep} bytes; not used", args[0]);
                None
            }
            Err(_) if args.contains(&"--verify") => None,
            Err(err) => {
                warn!("{err}: `git {}`; its commits stay unknown", args[0]);
                None
            }
        }
    }

    async fn is_shallow(&self) -> bool {
        let answer = self
            .run(&["rev-parse", "--is-shallow-repository"], 64)
            .await;
        // Unknown counts as shallow: the API may then fill in.
        answer.is_none_or(|out| out.trim_ascii() != b"false")
    }

    /// `branch`'s first-parent chain, tip first, from `origin/<branch>` or else the local
    /// branch; `None` when the checkout has neither.
    async fn chain(&self, branch: &str) -> Option<Vec<(String, Timestamp)>> {
        for candidate in [
            format!("refs/remotes/origin/{branch}"),
            format!("refs/heads/{branch}"),
        ] {
            let verify = format!("{candidate}^{{commit}}");
            if self
                .run(&["rev-parse", "--verify", "--quiet", &verify], 128)
                .await
                .is_none()
            {
                continue;
            }
            let count = format!("--max-count={MAX_CHAIN}");
            let out = self
                .run(
                    &[
                        "rev-list",
                        "--first-parent",
                        "--timestamp",
                        &count,
                        &candidate,
                        "--",
                    ],
                    MAX_CHAIN * LINE,
                )
                .await?;
            return Some(parse_timestamped(&out));
        }
        info!("branch `{branch}` is not in the checkout");
        None
    }

    /// The committer times of those of `shas` the checkout has.
    async fn times(&self, shas: &[&String]) -> Vec<(String, Timestamp)> {
        let mut args = vec!["rev-list", "--no-walk", "--timestamp", "--ignore-missing"];
        args.extend(shas.iter().map(|s| s.as_str()));
        args.push("--");
        match self.run(&args, shas.len() * LINE).await {
            Some(out) => parse_timestamped(&out),
            None => Vec::new(),
        }
    }
}

/// `git rev-list --timestamp` lines (`<seconds> <sha>`); other lines are skipped.
fn parse_timestamped(out: &[u8]) -> Vec<(String, Timestamp)> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|line| {
            let (seconds, sha) = line.split_once(' ')?;
            let time = Timestamp::from_second(seconds.parse().ok()?).ok()?;
            let hex = matches!(sha.len(), 40 | 64) && sha.bytes().all(|b| b.is_ascii_hexdigit());
            hex.then(|| (sha.to_ascii_lowercase(), time))
        })
        .collect()
}

/// What `GET /repos/{owner}/{repo}/commits/{ref}` answers that is used here.
#[derive(Debug, serde::Deserialize)]
struct CommitAnswer {
    sha: String,
    commit: CommitBody,
}

#[derive(Debug, serde::Deserialize)]
struct CommitBody {
    committer: Option<Signature>,
}

#[derive(Debug, serde::Deserialize)]
struct Signature {
    date: Option<String>,
}

/// Asks the GitHub API for the committer dates of `shas`, at most [`MAX_API_LOOKUPS`];
/// returns how many were asked. `per_page=1` keeps the answer's file list to one entry. A
/// commit GitHub does not have (404, 422) stays unknown; any other failure ends the
/// lookups with a warning.
async fn api_dates(api: &RepositoryApi, shas: &[&String], history: &mut History) -> usize {
    let client = match crate::github::rest::Client::new(&api.base, &api.token) {
        Ok(client) => client,
        Err(err) => {
            warn!("no GitHub API for commit dates: {err:#}");
            return 0;
        }
    };
    if shas.len() > MAX_API_LOOKUPS {
        warn!(
            "{} commits are unknown to the checkout; the GitHub API is asked about {MAX_API_LOOKUPS}",
            shas.len()
        );
    }
    let mut asked = 0;
    for sha in shas.iter().take(MAX_API_LOOKUPS) {
        asked += 1;
        let route = format!("/repos/{}/commits/{sha}", api.repository);
        let answer: Result<CommitAnswer, _> = client.get(&route, Some(&[("per_page", "1")])).await;
        match answer {
            Ok(answer) => {
                let full = answer.sha.to_ascii_lowercase();
                let date = answer
                    .commit
                    .committer
                    .and_then(|c| c.date)
                    .and_then(|d| d.parse::<Timestamp>().ok());
                let matches = matches!(full.len(), 40 | 64)
                    && full.bytes().all(|b| b.is_ascii_hexdigit())
                    && full.starts_with(sha.as_str());
                if let (true, Some(date)) = (matches, date) {
                    history.add_time(&full, date, CommitSource::GitHubApi);
                }
            }
            Err(err) if matches!(err.status(), Some(404 | 422)) => {}
            Err(err) => {
                warn!("commit dates from the GitHub API stopped: {err}");
                break;
            }
        }
    }
    asked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rev_list_lines_are_parsed_and_anything_else_skipped() {
        let sha = "a".repeat(40);
        let out = format!("1700000000 {sha}\ngarbage\n1700000001 nothex\n");
        assert_eq!(
            parse_timestamped(out.as_bytes()),
            vec![(sha, Timestamp::from_second(1_700_000_000).unwrap())]
        );
    }

    /// Runs `git args` in `dir` with a fixed identity and both commit dates `date`.
    fn git(dir: &Path, args: &[&str], date: &str) -> String {
        let out = std::process::Command::new("git")
            .current_dir(dir)
            .args(["-c", "user.name=T", "-c", "user.email=t@example.invalid"])
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .env("GIT_AUTHOR_DATE", date)
            .env("GIT_COMMITTER_DATE", date)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    #[tokio::test]
    async fn chains_and_commits_off_them_come_from_the_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let commit = |message: &str, date: &str| {
            git(d, &["commit", "-q", "--allow-empty", "-m", message], date);
            git(d, &["rev-parse", "HEAD"], date)
        };
        git(d, &["init", "-q", "-b", "main"], "2026-11-01T00:00:00Z");
        let first = commit("one", "2026-11-01T00:00:00Z");
        git(
            d,
            &["checkout", "-q", "-b", "feature"],
            "2026-11-01T00:00:00Z",
        );
        let side = commit("side", "2026-11-02T00:00:00Z");
        git(d, &["checkout", "-q", "main"], "2026-11-01T00:00:00Z");
        let tip = commit("two", "2026-11-03T00:00:00Z");
        let access = HistoryAccess {
            checkout: d.to_owned(),
            api: None,
        };
        let shas = BTreeSet::from([side[..7].to_owned(), "c".repeat(40)]);
        let branches = ["main".to_owned(), "develop".to_owned()];
        let history = read(&access, &branches, &shas).await;
        assert_eq!(history.branches(), ["main"]);
        assert_eq!(history.described, "git history of `main`");
        let (_, tip_facts) = history.find(&tip).unwrap();
        assert_eq!(tip_facts.chains, [(0, 0)]);
        assert_eq!(history.find(&first).unwrap().1.chains, [(0, 1)]);
        // The side commit is on no chain read, but the checkout dates it.
        let (full, facts) = history.find(&side[..7]).unwrap();
        assert_eq!(full, side);
        assert!(facts.chains.is_empty());
        assert_eq!(
            facts.time,
            Some(("2026-11-02T00:00:00Z".parse().unwrap(), CommitSource::Git))
        );
        assert!(history.find(&"c".repeat(40)).is_none());
    }

    #[tokio::test]
    async fn a_directory_without_git_has_no_history_but_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let access = HistoryAccess {
            checkout: dir.path().to_owned(),
            api: None,
        };
        let shas = BTreeSet::from(["b".repeat(40)]);
        let history = read(&access, &["main".to_owned()], &shas).await;
        assert!(history.branches().is_empty());
        assert!(history.find(&"b".repeat(40)).is_none());
        assert_eq!(
            history.described,
            "history (no git checkout; no GitHub API: GITHUB_TOKEN or GITHUB_REPOSITORY unset)"
        );
    }
}
