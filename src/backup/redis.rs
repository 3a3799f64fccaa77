//! Redis: `BGSAVE`, then waiting, without sleeping blindly, until `LASTSAVE` moves past its
//! value before the save and `INFO persistence` says no save is running and the last one
//! succeeded, within a deadline; then the snapshot itself through `redis-cli --rdb`, and
//! `redis-check-rdb` on it.
//!
//! The password reaches `redis-cli` through `REDISCLI_AUTH` in its environment, never its
//! arguments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::process::{self, ProcessError};

/// Where Redis is.
#[derive(Debug, Clone)]
pub struct Server {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The `requirepass` / ACL password, if any.
    pub password: Option<String>,
}

/// A Redis step that failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// `redis-cli` or `redis-check-rdb` failed.
    #[error(transparent)]
    Tool(#[from] ProcessError),
    /// Redis answered something this does not understand.
    #[error("Redis {host}:{port} answered `{command}` with `{answer}`")]
    Answer {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// The command.
        command: String,
        /// The first line of the answer.
        answer: String,
    },
    /// The save did not finish in time.
    #[error(
        "Redis {host}:{port}: the background save did not finish within {waited:?} (rdb_bgsave_in_progress stayed 1 or LASTSAVE did not move); nothing was copied"
    )]
    SaveTimedOut {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// How long it was waited for.
        waited: Duration,
    },
    /// The save finished but failed.
    #[error(
        "Redis {host}:{port}: the background save failed (rdb_last_bgsave_status:{status}); see the server's log"
    )]
    SaveFailed {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// What INFO said.
        status: String,
    },
}

/// Longest answer kept from `redis-cli`.
const ANSWER_LIMIT: usize = 1 << 16;

impl Server {
    fn env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        if let Some(password) = &self.password {
            env.insert("REDISCLI_AUTH".into(), password.clone());
        }
        env
    }

    fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut argv = vec![
            "redis-cli".to_owned(),
            "-h".into(),
            self.host.clone(),
            "-p".into(),
            self.port.to_string(),
        ];
        argv.extend(args.iter().map(|s| s.to_string()));
        argv
    }

    /// One command's answer, trimmed.
    async fn ask(&self, dir: &Path, args: &[&str]) -> Result<String, RedisError> {
        let argv = self.argv(args);
        let env = self.env();
        let (result, output) = process::query(
            &super::tool("redis-cli", &argv, dir, &env, Duration::from_secs(30)),
            ANSWER_LIMIT,
        )
        .await;
        result?;
        let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        // redis-cli exits 0 on server errors and prints them.
        if answer.starts_with("ERR")
            || answer.starts_with("NOAUTH")
            || answer.starts_with("WRONGPASS")
        {
            return Err(self.unexpected(args, &answer));
        }
        Ok(answer)
    }

    fn unexpected(&self, args: &[&str], answer: &str) -> RedisError {
        RedisError::Answer {
            host: self.host.clone(),
            port: self.port,
            command: args.join(" "),
            answer: answer.lines().next().unwrap_or_default().to_owned(),
        }
    }

    async fn lastsave(&self, dir: &Path) -> Result<u64, RedisError> {
        let answer = self.ask(dir, &["LASTSAVE"]).await?;
        answer
            .parse()
            .map_err(|_| self.unexpected(&["LASTSAVE"], &answer))
    }
}

/// What `INFO persistence` says about background saves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persistence {
    /// `rdb_bgsave_in_progress:1`.
    pub in_progress: bool,
    /// `rdb_last_bgsave_status`: `ok` or `err`.
    pub last_status: String,
}

/// Reads `INFO persistence` text.
pub fn parse_persistence(info: &str) -> Option<Persistence> {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
            .map(str::to_owned)
    };
    Some(Persistence {
        in_progress: field("rdb_bgsave_in_progress")? == "1",
        last_status: field("rdb_last_bgsave_status")?,
    })
}

/// Asks for a background save and waits, polling every `poll`, until it is done or
/// `deadline` passes.
pub async fn save(
    server: &Server,
    dir: &Path,
    deadline: Duration,
    poll: Duration,
) -> Result<(), RedisError> {
    let before = server.lastsave(dir).await?;
    let answer = server.ask(dir, &["BGSAVE"]).await?;
    // A save already running (a schedule, or replication) counts: it is waited for too.
    if !answer.contains("started")
        && !answer.contains("in progress")
        && !answer.contains("scheduled")
    {
        return Err(server.unexpected(&["BGSAVE"], &answer));
    }
    let started = Instant::now();
    loop {
        let info = server.ask(dir, &["INFO", "persistence"]).await?;
        let state = parse_persistence(&info)
            .ok_or_else(|| server.unexpected(&["INFO", "persistence"], &info))?;
        if !state.in_progress {
            if state.last_status != "ok" {
                return Err(RedisError::SaveFailed {
                    host: server.host.clone(),
                    port: server.port,
                    status: state.last_status,
                });
            }
            if server.lastsave(dir).await? > before {
                return Ok(());
            }
        }
        if started.elapsed() >= deadline {
            return Err(RedisError::SaveTimedOut {
                host: server.host.clone(),
                port: server.port,
                waited: deadline,
            });
        }
        tokio::time::sleep(poll).await;
    }
}

/// The snapshot, to `dir/redis.rdb`, fetched from the server (`redis-cli --rdb`).
pub async fn fetch(server: &Server, dir: &Path, timeout: Duration) -> Result<PathBuf, RedisError> {
    let file = dir.join("redis.rdb");
    let file_arg = file.display().to_string();
    let argv = server.argv(&["--rdb", &file_arg]);
    let env = server.env();
    process::run(&super::tool("redis-cli --rdb", &argv, dir, &env, timeout)).await?;
    Ok(file)
}

/// `redis-check-rdb` on a snapshot: a truncated or corrupted file fails.
pub async fn check(file: &Path, dir: &Path) -> Result<(), RedisError> {
    let argv = vec!["redis-check-rdb".to_owned(), file.display().to_string()];
    process::run(&super::tool(
        "redis-check-rdb",
        &argv,
        dir,
        &BTreeMap::new(),
        Duration::from_secs(600),
    ))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistence_is_read_from_info() {
        let info = "# Persistence\r\nloading:0\r\nrdb_bgsave_in_progress:1\r\nrdb_last_save_time:1700000000\r\nrdb_last_bgsave_status:ok\r\n";
        assert_eq!(
            parse_persistence(info),
            Some(Persistence {
                in_progress: true,
                last_status: "ok".into()
            })
        );
        assert_eq!(parse_persistence("# Persistence\nloading:0\n"), None);
    }
}
