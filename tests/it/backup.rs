//! Backups against real servers: PostgreSQL and Redis from Debian's packages, started on
//! loopback by the tests. A dump is verified by restoring it and comparing every table's
//! rows with the source at dump time; a corrupted dump, and a Redis whose save never
//! finishes, are each caught. No password ever appears in a process's argument list.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jisu_deploy::backup::{postgres, redis};

use crate::support::databases::{Postgres, Redis};

const MINUTE: Duration = Duration::from_secs(60);

fn seed(pg: &Postgres, funds: u32) {
    pg.psql(
        "app",
        &format!(
            "CREATE TABLE funds (id int PRIMARY KEY, name text NOT NULL, nav numeric(12,4));
             INSERT INTO funds SELECT i, 'fund ' || i, i * 1.5 FROM generate_series(1, {funds}) i;
             CREATE SCHEMA audit;
             CREATE TABLE audit.\"Log\" (at timestamptz DEFAULT now(), what text);
             INSERT INTO audit.\"Log\" (what) VALUES ('seeded'), ('again');
             CREATE TABLE empty (x int);"
        ),
    )
    .unwrap();
}

/// Every process's argument list, for as long as `running` is set.
fn sample_process_table(running: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut seen = BTreeSet::new();
        while running.load(Ordering::Relaxed) {
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                if let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) {
                    let line = String::from_utf8_lossy(&bytes).replace('\0', " ");
                    if !line.trim().is_empty() {
                        seen.insert(line);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        seen.into_iter().collect()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_dump_restores_with_every_tables_rows_and_no_password_in_any_argument_list() {
    let pg = Postgres::start();
    seed(&pg, 50_000);
    let db = pg.database();
    let work = tempfile::tempdir().unwrap();

    let running = Arc::new(AtomicBool::new(true));
    let sampler = sample_process_table(running.clone());
    let dump = postgres::dump(&db, work.path(), MINUTE).await.unwrap();
    let verified = postgres::verify(&db, &dump, work.path(), "app_verify", MINUTE).await;
    running.store(false, Ordering::Relaxed);
    let commands = sampler.join().unwrap();
    verified.unwrap();

    assert_eq!(dump.rows["public.funds"], 50_000);
    assert_eq!(dump.rows["audit.Log"], 2);
    assert_eq!(dump.rows["public.empty"], 0);
    // The scratch database is gone again.
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'app_verify'"
        ),
        Ok("0".into())
    );
    let tools: Vec<&String> = commands
        .iter()
        .filter(|c| c.contains("pg_dump") || c.contains("pg_restore"))
        .collect();
    assert!(
        !tools.is_empty(),
        "the sampler saw neither pg_dump nor pg_restore"
    );
    for command in &commands {
        assert!(!command.contains(&pg.password), "password in `{command}`");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_counts_come_from_the_snapshot_the_dump_holds_even_while_rows_are_written() {
    let pg = Postgres::start();
    seed(&pg, 200_000);
    let db = pg.database();
    let work = tempfile::tempdir().unwrap();
    // Writes go on during the dump; the counts and the archive agree anyway.
    let writer = {
        let port = pg.port;
        let password = pg.password.clone();
        std::thread::spawn(move || {
            for i in 0..20 {
                let _ = std::process::Command::new("psql")
                    .args([
                        "-h",
                        "127.0.0.1",
                        "-p",
                        &port.to_string(),
                        "-U",
                        "jisu",
                        "-d",
                        "app",
                        "-qc",
                    ])
                    .arg(format!(
                        "INSERT INTO funds VALUES ({}, 'late', 1)",
                        1_000_000 + i
                    ))
                    .env("PGPASSWORD", &password)
                    .output();
            }
        })
    };
    let dump = postgres::dump(&db, work.path(), MINUTE).await.unwrap();
    writer.join().unwrap();
    postgres::verify(&db, &dump, work.path(), "app_verify", MINUTE)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_dump_fails_verification() {
    let pg = Postgres::start();
    seed(&pg, 20_000);
    let db = pg.database();
    let work = tempfile::tempdir().unwrap();
    let dump = postgres::dump(&db, work.path(), MINUTE).await.unwrap();
    let mut bytes = std::fs::read(&dump.file).unwrap();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 64] {
        *byte ^= 0x5a;
    }
    std::fs::write(&dump.file, bytes).unwrap();
    let err = postgres::verify(&db, &dump, work.path(), "app_verify", MINUTE)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("pg_restore"), "{err}");
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'app_verify'"
        ),
        Ok("0".into()),
        "the scratch database is dropped after a failed restore too"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_snapshot_is_saved_fetched_and_checked() {
    let redis = Redis::start();
    for i in 0..1000 {
        redis.cli(&["SET", &format!("fund:{i}"), "nav"]).unwrap();
    }
    let server = redis.server();
    let work = tempfile::tempdir().unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let sampler = sample_process_table(running.clone());
    redis::save(&server, work.path(), MINUTE, Duration::from_millis(50))
        .await
        .unwrap();
    let file = redis::fetch(&server, work.path(), MINUTE).await.unwrap();
    redis::check(&file, work.path()).await.unwrap();
    running.store(false, Ordering::Relaxed);
    for command in sampler.join().unwrap() {
        assert!(
            !command.contains(&redis.password),
            "password in `{command}`"
        );
    }
    // A truncated snapshot does not pass the check.
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let err = redis::check(&file, work.path())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("redis-check-rdb"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_save_that_never_finishes_is_reported_at_the_deadline() {
    let redis = Redis::start();
    for i in 0..50 {
        redis.cli(&["SET", &format!("k{i}"), "v"]).unwrap();
    }
    // Ten seconds per key: the save will not finish within the deadline.
    redis
        .cli(&["CONFIG", "SET", "rdb-key-save-delay", "10000000"])
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let err = redis::save(
        &redis.server(),
        work.path(),
        Duration::from_secs(2),
        Duration::from_millis(100),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, redis::RedisError::SaveTimedOut { .. }),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(err.to_string().contains("did not finish within"), "{err}");
}
