//! Child processes: no shell, a scrubbed environment, a working directory inside the
//! checkout, a deadline, and output streamed to our stderr (stdout carries results).
//!
//! A child sees only what it needs: the variables in [`PASSED_THROUGH`] (a locale, a
//! `PATH`, a home) plus what the caller gives it. Tokens, registry passwords and the
//! kubeconfig this process holds never reach a gate command or an image builder.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::config::duration::HumanDuration;

/// Variables a child inherits from this process when they are set: what programs need to
/// find themselves and behave (locale, temp dir, home), nothing that carries a secret.
pub const PASSED_THROUGH: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TERM", "CI",
];

/// Why a child process did not succeed. Callers branch on this (a failed gate stops the
/// build; blue-green tells a failed smoke command from a failed rollout).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started (not installed, not executable).
    #[error("`{name}`: cannot start `{program}`: {source}")]
    Start {
        /// The command's name.
        name: String,
        /// The program.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// It ran and exited unsuccessfully.
    #[error("`{name}` failed ({status})")]
    Failed {
        /// The command's name.
        name: String,
        /// The exit status as the OS reports it.
        status: String,
    },
    /// It ran past its deadline and was killed.
    #[error("`{name}` did not finish within {timeout} and was stopped")]
    TimedOut {
        /// The command's name.
        name: String,
        /// The deadline.
        timeout: HumanDuration,
    },
    /// The working directory is not inside the checkout.
    #[error("`{name}`: working directory `{workdir}` is not inside the checkout")]
    OutsideCheckout {
        /// The command's name.
        name: String,
        /// The directory asked for.
        workdir: String,
    },
    /// Waiting for it failed.
    #[error("`{name}`: {source}")]
    Wait {
        /// The command's name.
        name: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// One child process to run.
#[derive(Debug, Clone)]
pub struct Child<'a> {
    /// A name for logs and errors (`flake8`, `build of backend`).
    pub name: &'a str,
    /// Program and arguments; never passed through a shell.
    pub argv: &'a [String],
    /// Working directory, relative to `checkout`.
    pub workdir: &'a str,
    /// The checkout every path is resolved inside.
    pub checkout: &'a Path,
    /// Variables added to the scrubbed environment.
    pub env: &'a BTreeMap<String, String>,
    /// Deadline; the child is killed when it passes.
    pub timeout: Duration,
}

/// `relative` resolved inside `root`, refusing absolute paths and `..` that would leave it.
/// Symbolic links are resolved too, so a link in the checkout cannot point outside it.
pub fn inside(root: &Path, relative: &str) -> Option<PathBuf> {
    let relative = Path::new(relative);
    if relative.components().any(|c| {
        matches!(
            c,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    }) {
        return None;
    }
    let root = root.canonicalize().ok()?;
    let joined = root.join(relative).canonicalize().ok()?;
    joined.starts_with(&root).then_some(joined)
}

/// The environment a child gets: the pass-through variables this process has, then `extra`.
pub fn scrubbed_env(
    lookup: impl Fn(&str) -> Option<String>,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = PASSED_THROUGH
        .iter()
        .filter_map(|name| Some((name.to_string(), lookup(name)?)))
        .collect();
    env.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// Runs `child` to completion: output on our stderr, killed at the deadline.
pub async fn run(child: &Child<'_>) -> Result<(), ProcessError> {
    run_captured(child, 0).await.0
}

/// What a child wrote, kept up to the limit the caller asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Standard output, at most the limit.
    pub stdout: Vec<u8>,
    /// Standard error, at most the limit.
    pub stderr: Vec<u8>,
}

/// Runs `child` like [`run`], and also keeps the first `keep` bytes of each output stream.
/// Every line the child writes reaches our stderr through [`crate::output::guard`], so a
/// child's output cannot issue workflow commands; the output comes back even when the
/// child fails (a linter exits 1 with its findings).
pub async fn run_captured(child: &Child<'_>, keep: usize) -> (Result<(), ProcessError>, Output) {
    run_child(child, keep, true).await
}

/// Runs `child` like [`run_captured`] for a query whose answer is data, not log: its
/// standard output is kept (up to `keep`) and not echoed; its standard error still is.
pub async fn query(child: &Child<'_>, keep: usize) -> (Result<(), ProcessError>, Output) {
    run_child(child, keep, false).await
}

async fn run_child(
    child: &Child<'_>,
    keep: usize,
    echo_stdout: bool,
) -> (Result<(), ProcessError>, Output) {
    let name = child.name.to_owned();
    let Some((program, arguments)) = child.argv.split_first() else {
        let error = ProcessError::Start {
            name,
            program: String::new(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command line"),
        };
        return (Err(error), Output::default());
    };
    let Some(workdir) = inside(child.checkout, child.workdir) else {
        let error = ProcessError::OutsideCheckout {
            name,
            workdir: child.workdir.to_owned(),
        };
        return (Err(error), Output::default());
    };
    let env = scrubbed_env(|k| std::env::var(k).ok(), child.env);
    let spawned = tokio::process::Command::new(program)
        .args(arguments)
        .current_dir(&workdir)
        .env_clear()
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so stopping it stops what it started (a builder's
        // containers, a test runner's workers) too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut process = match spawned {
        Ok(process) => process,
        Err(source) => {
            let error = ProcessError::Start {
                name,
                program: program.clone(),
                source,
            };
            return (Err(error), Output::default());
        }
    };
    // Declared after `process`, so dropped before it: when the run is cancelled (SIGTERM,
    // SIGINT) this future is dropped mid-wait and the group is stopped first.
    let mut group = Group(process.id());
    let stdout = process.stdout.take();
    let stderr = process.stderr.take();
    let finished = async {
        tokio::join!(
            forward(stdout, keep, echo_stdout),
            forward(stderr, keep, true),
            process.wait()
        )
    };
    let (result, output) = match tokio::time::timeout(child.timeout, finished).await {
        Ok((stdout, stderr, status)) => {
            let output = Output { stdout, stderr };
            let result = match status {
                Ok(status) if status.success() => Ok(()),
                Ok(status) => Err(ProcessError::Failed {
                    name,
                    status: status.to_string(),
                }),
                Err(source) => Err(ProcessError::Wait { name, source }),
            };
            (result, output)
        }
        Err(_) => {
            group.signal(libc::SIGKILL);
            process.kill().await.ok();
            let error = ProcessError::TimedOut {
                name,
                timeout: HumanDuration(child.timeout),
            };
            (Err(error), Output::default())
        }
    };
    group.0 = None;
    (result, output)
}

/// The longest line forwarded as one; longer ones are forwarded in pieces.
const MAX_LINE: usize = 64 * 1024;

/// Copies `stream` to our stderr line by line through [`crate::output::guard`], keeping
/// its first `keep` bytes (a caller that asks for one byte more than it accepts can tell
/// a stream that was too long).
async fn forward(
    stream: Option<impl tokio::io::AsyncRead + Unpin>,
    keep: usize,
    echo: bool,
) -> Vec<u8> {
    use tokio::io::AsyncReadExt as _;
    let mut kept = Vec::new();
    let Some(mut stream) = stream else {
        return kept;
    };
    let mut line: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        let read = match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let chunk = &buffer[..read];
        let room = keep.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..room.min(read)]);
        if !echo {
            continue;
        }
        for &byte in chunk {
            line.push(byte);
            if byte == b'\n' || line.len() >= MAX_LINE {
                emit(&line);
                line.clear();
            }
        }
    }
    if !line.is_empty() {
        emit(&line);
    }
    kept
}

fn emit(line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    crate::output::err_line(text.strip_suffix('\n').unwrap_or(&text));
}

/// How long a cancelled child's process group gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running child's process group. Dropped while the child still runs (the run was
/// cancelled), it sends the group SIGTERM, waits up to [`STOP_GRACE`] for the child to
/// exit, then sends SIGKILL to whatever is left.
struct Group(Option<u32>);

impl Group {
    fn signal(&self, signal: libc::c_int) {
        if let Some(pid) = self.0.and_then(|pid| libc::pid_t::try_from(pid).ok()) {
            // SAFETY: kill(2) with a negative pid signals that process group; it reads no
            // memory of ours.
            unsafe { libc::kill(-pid, signal) };
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let Some(pid) = self.0.and_then(|pid| libc::pid_t::try_from(pid).ok()) else {
            return;
        };
        self.signal(libc::SIGTERM);
        let deadline = std::time::Instant::now() + STOP_GRACE;
        while std::time::Instant::now() < deadline {
            let mut status = 0;
            // SAFETY: waitpid(2) on our own child, with a valid pointer to a local.
            let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if reaped != 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal(libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn paths_stay_inside_the_checkout() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("app")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("escape")).unwrap();
        assert!(inside(dir.path(), "app").is_some());
        assert!(inside(dir.path(), ".").is_some());
        assert!(inside(dir.path(), "../app").is_none());
        assert!(inside(dir.path(), "/etc").is_none());
        assert!(
            inside(dir.path(), "escape").is_none(),
            "a link out is refused"
        );
        assert!(inside(dir.path(), "missing").is_none());
    }

    #[test]
    fn children_get_only_the_pass_through_variables_and_their_own() {
        let lookup = |k: &str| match k {
            "PATH" => Some("/bin".to_owned()),
            "GITHUB_TOKEN" | "REGISTRY_PASSWORD" => Some("secret".to_owned()),
            _ => None,
        };
        let extra = BTreeMap::from([("APP_ENV".to_owned(), "test".to_owned())]);
        let env = scrubbed_env(lookup, &extra);
        assert_eq!(
            env.into_iter().collect::<Vec<_>>(),
            vec![
                ("APP_ENV".to_owned(), "test".to_owned()),
                ("PATH".to_owned(), "/bin".to_owned())
            ]
        );
    }

    #[tokio::test]
    async fn exit_status_and_deadline_decide() {
        let dir = tempfile::tempdir().unwrap();
        let env = BTreeMap::new();
        let child = |words: &'static [&'static str], timeout: u64| {
            let argv = argv(words);
            let checkout = dir.path().to_owned();
            let env = env.clone();
            async move {
                run(&Child {
                    name: "t",
                    argv: &argv,
                    workdir: ".",
                    checkout: &checkout,
                    env: &env,
                    timeout: Duration::from_millis(timeout),
                })
                .await
            }
        };
        assert!(child(&["true"], 5_000).await.is_ok());
        assert!(matches!(
            child(&["false"], 5_000).await,
            Err(ProcessError::Failed { .. })
        ));
        assert!(matches!(
            child(&["sleep", "5"], 100).await,
            Err(ProcessError::TimedOut { .. })
        ));
        assert!(matches!(
            child(&["no-such-program-here"], 5_000).await,
            Err(ProcessError::Start { .. })
        ));
    }
}
