//! Real PostgreSQL and Redis servers for the backup tests, from the Debian packages
//! `postgresql` and `redis-server`: each started on a free loopback port in a temporary
//! directory, with a password, and stopped on drop. PostgreSQL refuses to run as root, so
//! as root it runs as the `postgres` user the package creates.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// A client's answer: its trimmed output, or its error text when it failed.
fn answer(out: &std::process::Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The newest installed PostgreSQL server's `bin` directory.
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (ci/install-test-deps.sh: apt postgresql)")
        .map(|e| e.unwrap().path().join("bin"))
        .filter(|bin| bin.join("postgres").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL server under /usr/lib/postgresql")
}

/// `program` as the user PostgreSQL runs as.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// A PostgreSQL server with a role `jisu` (password, CREATEDB) and a database `app`.
pub struct Postgres {
    server: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The role's password.
    pub password: String,
    _dir: tempfile::TempDir,
}

impl Postgres {
    pub fn start() -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        let bin = postgres_bin();
        let password = "s3cret-pg-Pa55word".to_owned();
        std::fs::write(dir.path().join("pwfile"), format!("{password}\n")).unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        }
        let data = dir.path().join("data");
        let out = as_postgres(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "jisu",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", dir.path().join("pwfile").display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let server = as_postgres(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-k")
            .arg(dir.path())
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            // A group of its own, so the stop reaches the server behind runuser.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pg = Postgres {
            server,
            port,
            password,
            _dir: dir,
        };
        let started = Instant::now();
        while pg.psql("postgres", "SELECT 1").is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "PostgreSQL did not start"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        pg.psql("postgres", "CREATE DATABASE app").unwrap();
        pg
    }

    /// `sql` through psql on `database`; its output, or its error text.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "jisu",
            ])
            .args(["-d", database, "-v", "ON_ERROR_STOP=1", "-Atqc", sql])
            .env("PGPASSWORD", &self.password)
            .output()
            .unwrap();
        answer(&out)
    }

    pub fn database(&self) -> jisu_deploy::backup::postgres::Database {
        jisu_deploy::backup::postgres::Database {
            host: "127.0.0.1".into(),
            port: self.port,
            user: "jisu".into(),
            name: "app".into(),
            password: Some(self.password.clone()),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT to the group: PostgreSQL's fast shutdown, past runuser.
        // SAFETY: kill of a process group this process started.
        unsafe { libc::kill(-(self.server.id() as i32), libc::SIGINT) };
        let _ = self.server.wait();
    }
}

/// A Redis server with a password and no automatic saves.
pub struct Redis {
    server: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `requirepass`.
    pub password: String,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let password = "s3cret-redis-Pa55word".to_owned();
        // The password goes in a config file, not on the server's own command line.
        let config = dir.path().join("redis.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nrequirepass {password}\nsave \"\"\nappendonly no\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let server = Command::new("redis-server")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (ci/install-test-deps.sh)");
        let redis = Redis {
            server,
            port,
            password,
            _dir: dir,
        };
        let started = Instant::now();
        while redis.cli(&["PING"]).as_deref() != Ok("PONG") {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "Redis did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        redis
    }

    /// One redis-cli command's answer.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .env("REDISCLI_AUTH", &self.password)
            .output()
            .unwrap();
        answer(&out)
    }

    pub fn server(&self) -> jisu_deploy::backup::redis::Server {
        jisu_deploy::backup::redis::Server {
            host: "127.0.0.1".into(),
            port: self.port,
            password: Some(self.password.clone()),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // SHUTDOWN NOSAVE also stops a background save's child process.
        let _ = self.cli(&["SHUTDOWN", "NOSAVE"]);
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
