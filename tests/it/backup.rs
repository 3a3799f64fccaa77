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

/// A checkout whose pipeline file backs up `pg` and `redis` to `bucket` on moto, with a
/// short timeout.
fn backup_checkout(
    pg: &Postgres,
    redis: &Redis,
    destination: &str,
    timeout: &str,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("app")).unwrap();
    std::fs::write(dir.path().join("app/Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(
        dir.path().join("pipeline.yml"),
        format!(
            "version: 1
images: {{scheme: per-component, owner: acme}}
components:
  app: {{context: app, dockerfile: app/Dockerfile}}
environments:
  production: {{branch: main, namespace: prod, url: 'https://acme.example', strategy: rolling, manifests: app}}
backup:
  schedule: '0 2 * * *'
  environment: production
  targets: [postgres, redis]
  destination: {destination}
  retain_for: 7d
  monthly: 3
  timeout: {timeout}
  postgres: {{host: 127.0.0.1, port: {}, user: jisu, database: app}}
  redis: {{host: 127.0.0.1, port: {}}}
",
            pg.port, redis.port
        ),
    )
    .unwrap();
    dir
}

/// `jisu-deploy backup`, the checkout's pipeline file and the servers' credentials.
fn run_backup(
    checkout: &std::path::Path,
    pg: &Postgres,
    redis: &Redis,
    moto: &str,
) -> crate::support::Run {
    run_backup_command(checkout, pg, redis, moto, &["backup"])
}

/// The binary with `args`, the checkout's pipeline file and the servers' credentials.
fn backup_command(
    checkout: &std::path::Path,
    pg: &Postgres,
    redis: &Redis,
    moto: &str,
    args: &[&str],
) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_jisu-deploy"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", checkout)
        .current_dir(checkout)
        .args(args)
        .args(["--config", "pipeline.yml"])
        .env("PGPASSWORD", &pg.password)
        .env("REDISCLI_AUTH", &redis.password)
        .env("AWS_ACCESS_KEY_ID", "testing-key-id")
        .env("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
        .env("AWS_ENDPOINT_URL", moto);
    command
}

/// The binary with `args`, the checkout's pipeline file and the servers' credentials.
fn run_backup_command(
    checkout: &std::path::Path,
    pg: &Postgres,
    redis: &Redis,
    moto: &str,
    args: &[&str],
) -> crate::support::Run {
    backup_command(checkout, pg, redis, moto, args)
        .output()
        .unwrap()
        .into()
}

/// `jisu-deploy backup` with a webhook to tell.
fn run_backup_telling(
    checkout: &std::path::Path,
    pg: &Postgres,
    redis: &Redis,
    moto: &str,
    webhook: &str,
) -> crate::support::Run {
    let mut command = backup_command(checkout, pg, redis, moto, &["backup"]);
    command.env("BACKUP_WEBHOOK_URL", webhook);
    command.output().unwrap().into()
}

fn store(moto: &str, destination: &str) -> jisu_deploy::backup::store::Store {
    use jisu_deploy::backup::store::{Credentials, Store, StoreSettings};
    Store::open(
        destination,
        StoreSettings {
            endpoint: Some(moto.to_owned()),
            region: None,
            allow_http: true,
            credentials: Some(Credentials {
                access_key_id: "testing-key-id".into(),
                secret_access_key: "testing-secret-key".into(),
                session_token: None,
            }),
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn jisu_deploy_backup_dumps_verifies_uploads_and_expires_without_printing_a_secret() {
    use jisu_deploy::backup::manifest::Manifest;

    let pg = Postgres::start();
    seed(&pg, 30_000);
    let redis = Redis::start();
    redis.cli(&["SET", "fund:1", "nav"]).unwrap();
    let moto = crate::support::s3_server::MotoServer::start().await;
    moto.create_bucket("backups").await;
    let destination = "s3://backups/production";
    let bucket = store(&moto.endpoint(), destination);
    // Two old backups: a verified one from 40 days ago (past retain_for, but this month's
    // or last month's only copy) and one from 300 days ago (past everything).
    for (id, taken) in [
        ("20250101T020000Z", "2025-01-01T02:00:00Z"),
        ("20240101T020000Z", "2024-01-01T02:00:00Z"),
    ] {
        let old = Manifest {
            schema_version: 1,
            id: id.into(),
            taken: taken.into(),
            environment: "production".into(),
            files: vec![],
            contents: Default::default(),
            checks: vec![],
            verified: true,
        };
        bucket
            .put_bytes(
                &format!("{id}/manifest.json"),
                serde_json::to_vec(&old).unwrap(),
            )
            .await
            .unwrap();
    }
    let checkout = backup_checkout(&pg, &redis, destination, "2m");
    let hook = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&hook)
        .await;
    let webhook = format!("{}/services/T000/B000/s3cret-hook", hook.uri());
    let run = tokio::task::block_in_place(|| {
        run_backup_telling(checkout.path(), &pg, &redis, &moto.endpoint(), &webhook)
    });
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let messages = hook.received_requests().await.unwrap();
    assert_eq!(messages.len(), 1);
    let message: serde_json::Value = serde_json::from_slice(&messages[0].body).unwrap();
    let text = message["text"].as_str().unwrap();
    assert!(text.contains("verified, 2 file(s)"), "{text}");
    assert!(
        text.contains("retention deleted 2 older backup(s)"),
        "{text}"
    );
    for secret in [
        &pg.password,
        &redis.password,
        &"testing-secret-key".to_owned(),
        &webhook,
    ] {
        assert!(!text.contains(secret.as_str()), "{text}");
        assert!(!run.stdout.contains(secret.as_str()) && !run.stderr.contains(secret.as_str()));
    }
    assert!(
        run.stderr.contains("postgres restore passed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("redis-check-rdb passed"),
        "{}",
        run.stderr
    );

    let listed: Vec<String> = bucket
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    let new: Vec<&String> = listed
        .iter()
        .filter(|k| k.ends_with("/manifest.json") && !k.starts_with("202"))
        .collect();
    assert!(new.is_empty(), "{listed:?}");
    let manifests: Vec<&String> = listed
        .iter()
        .filter(|k| k.ends_with("/manifest.json"))
        .collect();
    // The new backup, and neither old one: both are past retain_for and no month of the
    // last three holds them; the new one is now the newest verified backup.
    assert_eq!(manifests.len(), 1, "{listed:?}");
    let id = manifests[0].trim_end_matches("/manifest.json");
    let manifest: Manifest =
        serde_json::from_slice(&bucket.get_bytes(manifests[0], 1 << 20).await.unwrap()).unwrap();
    assert!(manifest.verified, "{manifest:?}");
    assert_eq!(
        manifest.contents.postgres_rows.as_ref().unwrap()["public.funds"],
        30_000
    );
    let names: Vec<&str> = manifest.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["postgres.dump", "redis.rdb"]);
    // What was uploaded is what the manifest says, byte for byte.
    let work = tempfile::tempdir().unwrap();
    for file in &manifest.files {
        bucket
            .download(
                &format!("{id}/{}", file.name),
                &work.path().join(&file.name),
                &file.sha256,
                1 << 30,
            )
            .await
            .unwrap();
    }
    assert!(
        run.stderr.contains("deleted 20240101T020000Z"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("deleted 20250101T020000Z"),
        "{}",
        run.stderr
    );

    // The drill: the newest verified backup, restored into a new database, compared.
    pg.psql(
        "app",
        "INSERT INTO funds VALUES (999999, 'after the backup', 1)",
    )
    .unwrap();
    let restore = |into: &str| {
        tokio::task::block_in_place(|| {
            run_backup_command(
                checkout.path(),
                &pg,
                &redis,
                &moto.endpoint(),
                &["restore", "--into", into],
            )
        })
    };
    let drill = restore("app_drill");
    assert_eq!(drill.code, 0, "{}\n{}", drill.stdout, drill.stderr);
    assert!(
        drill.stdout.contains(&format!("restored backup {id}")),
        "{}",
        drill.stdout
    );
    assert!(
        drill.stdout.contains("every count equal to the manifest"),
        "{}",
        drill.stdout
    );
    assert_eq!(
        pg.psql("app_drill", "SELECT count(*) FROM funds"),
        Ok("30000".into())
    );
    assert_eq!(
        pg.psql("app_drill", "SELECT count(*) FROM audit.\"Log\""),
        Ok("2".into())
    );
    // A drill never writes over a database, and takes only a plain new name.
    let again = restore("app_drill");
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert_eq!(restore("App; DROP").code, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_whose_redis_save_never_finishes_exits_1_and_uploads_nothing() {
    let pg = Postgres::start();
    seed(&pg, 10);
    let redis = Redis::start();
    for i in 0..20 {
        redis.cli(&["SET", &format!("k{i}"), "v"]).unwrap();
    }
    redis
        .cli(&["CONFIG", "SET", "rdb-key-save-delay", "10000000"])
        .unwrap();
    let moto = crate::support::s3_server::MotoServer::start().await;
    moto.create_bucket("backups").await;
    let destination = "s3://backups/production";
    let checkout = backup_checkout(&pg, &redis, destination, "3s");
    let run =
        tokio::task::block_in_place(|| run_backup(checkout.path(), &pg, &redis, &moto.endpoint()));
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("did not finish within"),
        "{}",
        run.stderr
    );
    let listed = store(&moto.endpoint(), destination).list("").await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_namespaces_objects_are_backed_up_clean_and_pass_a_dry_run_apply() {
    use jisu_deploy::backup::manifest::Manifest;
    use kube::api::{Api, DynamicObject, Patch, PatchParams};

    let cluster = crate::deploy::cluster(kube_sim::SimOptions::default()).await;
    let ns = crate::deploy::NS;
    let objects = [
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "app-config", "namespace": ns}, "data": {"LOG_LEVEL": "info"}}),
        serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "backend", "namespace": ns, "labels": {"app": "backend"}},
            "spec": {"selector": {"app": "backend"}, "ports": [{"port": 80, "targetPort": 8000}]}}),
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "backend", "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "backend"}},
                "template": {"metadata": {"labels": {"app": "backend"}},
                    "spec": {"containers": [{"name": "backend", "image": "ghcr.io/jisu/platform@sha256:1111111111111111111111111111111111111111111111111111111111111111"}]}}}}),
        serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "app-secrets", "namespace": ns}, "stringData": {"DATABASE_URL": "postgresql://x:hunter2@db/app"}}),
    ];
    for object in objects {
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        let gvk = kube::core::GroupVersionKind::try_from(object.types.as_ref().unwrap()).unwrap();
        let plural = match gvk.kind.as_str() {
            "ConfigMap" => "configmaps",
            "Service" => "services",
            "Deployment" => "deployments",
            _ => "secrets",
        };
        let api: Api<DynamicObject> = Api::namespaced_with(
            cluster.client.clone(),
            ns,
            &kube::api::ApiResource::from_gvk_with_plural(&gvk, plural),
        );
        api.patch(
            object.metadata.name.as_deref().unwrap(),
            &PatchParams::apply("test"),
            &Patch::Apply(&object),
        )
        .await
        .unwrap();
    }
    let moto = crate::support::s3_server::MotoServer::start().await;
    moto.create_bucket("backups").await;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let checkout = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(checkout.path().join("app")).unwrap();
    std::fs::write(checkout.path().join("app/Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(
        checkout.path().join("pipeline.yml"),
        format!(
            "version: 1
images: {{scheme: per-component, owner: acme}}
components:
  app: {{context: app, dockerfile: app/Dockerfile}}
environments:
  staging: {{branch: develop, namespace: {ns}, url: 'https://staging.acme.example', strategy: rolling, manifests: app}}
backup:
  schedule: '0 2 * * *'
  environment: staging
  targets: [kubernetes]
  destination: s3://backups/staging
  retain_for: 7d
  kubernetes: {{secrets_recipient: {recipient}}}
"
        ),
    )
    .unwrap();
    let run = tokio::task::block_in_place(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_jisu-deploy"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("HOME", checkout.path())
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env("AWS_ACCESS_KEY_ID", "testing-key-id")
            .env("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
            .env("AWS_ENDPOINT_URL", moto.endpoint())
            .current_dir(checkout.path())
            .args(["backup", "--config", "pipeline.yml"])
            .output()
            .unwrap()
    });
    let run: crate::support::Run = run.into();
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("kubernetes dry-run apply passed"),
        "{}",
        run.stderr
    );

    let bucket = store(&moto.endpoint(), "s3://backups/staging");
    let listed = bucket.list("").await.unwrap();
    let manifest_key = &listed
        .iter()
        .find(|o| o.key.ends_with("/manifest.json"))
        .unwrap()
        .key;
    let manifest: Manifest =
        serde_json::from_slice(&bucket.get_bytes(manifest_key, 1 << 20).await.unwrap()).unwrap();
    assert!(manifest.verified, "{manifest:?}");
    let counts = manifest.contents.kubernetes_objects.clone().unwrap();
    assert_eq!(counts.get("ConfigMap"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("Service"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("Deployment"), Some(&1), "{counts:?}");
    let file = manifest
        .files
        .iter()
        .find(|f| f.name == "kubernetes.yaml")
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("kubernetes.yaml");
    let id = manifest_key.trim_end_matches("/manifest.json");
    bucket
        .download(
            &format!("{id}/{}", file.name),
            &local,
            &file.sha256,
            1 << 30,
        )
        .await
        .unwrap();
    let yaml = std::fs::read_to_string(local).unwrap();
    for server_set in [
        "resourceVersion",
        "uid:",
        "managedFields",
        "creationTimestamp",
        "clusterIP",
        "status:",
    ] {
        assert!(!yaml.contains(server_set), "{server_set} in\n{yaml}");
    }
    assert!(
        !yaml.contains("hunter2") && !yaml.contains("kind: Secret"),
        "{yaml}"
    );
    assert!(yaml.contains("LOG_LEVEL: info"), "{yaml}");
    // The Secret went only into the file encrypted to the recipient.
    assert_eq!(counts.get("Secret"), Some(&1), "{counts:?}");
    let secrets = manifest
        .files
        .iter()
        .find(|f| f.name == "kubernetes-secrets.yaml.age")
        .unwrap();
    let sealed = work.path().join(&secrets.name);
    bucket
        .download(
            &format!("{id}/{}", secrets.name),
            &sealed,
            &secrets.sha256,
            1 << 20,
        )
        .await
        .unwrap();
    let encrypted = std::fs::read(&sealed).unwrap();
    assert!(!String::from_utf8_lossy(&encrypted).contains("hunter2"));
    let decryptor = age::Decryptor::new(&encrypted[..]).unwrap();
    let mut plain = String::new();
    std::io::Read::read_to_string(
        &mut decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .unwrap(),
        &mut plain,
    )
    .unwrap();
    assert!(
        plain.contains("kind: Secret") && plain.contains("app-secrets"),
        "{plain}"
    );
    assert!(!plain.contains("resourceVersion"), "{plain}");
}

/// Figures, not a timed assertion: dump + verify through jisu-deploy next to a plain
/// `pg_dump -Fc` and `pg_restore` of the same database, printed (`--nocapture`). 100,000
/// rows by default; `JISU_BENCH_ROWS=1000000` for more.
#[tokio::test(flavor = "multi_thread")]
async fn backup_figures_next_to_plain_pg_dump_and_pg_restore() {
    use std::time::Instant;
    let rows: u32 = std::env::var("JISU_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let pg = Postgres::start();
    seed(&pg, rows);
    let db = pg.database();
    let work = tempfile::tempdir().unwrap();

    let started = Instant::now();
    let dump = postgres::dump(&db, work.path(), MINUTE * 30).await.unwrap();
    let dumped = started.elapsed();
    let started = Instant::now();
    postgres::verify(&db, &dump, work.path(), "app_verify", MINUTE * 30)
        .await
        .unwrap();
    let verified = started.elapsed();
    let size = std::fs::metadata(&dump.file).unwrap().len();

    let by_hand = |program: &str, args: &[&str]| {
        let started = Instant::now();
        let out = std::process::Command::new(program)
            .args(["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", "jisu"])
            .args(args)
            .env("PGPASSWORD", &pg.password)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        started.elapsed()
    };
    let plain = work.path().join("plain.dump");
    let plain_dump = by_hand(
        "pg_dump",
        &["-Fc", "-d", "app", "-f", plain.to_str().unwrap()],
    );
    pg.psql("postgres", "CREATE DATABASE plain_restore")
        .unwrap();
    let plain_restore = by_hand(
        "pg_restore",
        &["--no-owner", "-d", "plain_restore", plain.to_str().unwrap()],
    );
    let plain_size = std::fs::metadata(&plain).unwrap().len();
    assert_eq!(
        pg.psql("plain_restore", "SELECT count(*) FROM funds"),
        Ok(rows.to_string())
    );
    println!(
        "backup figures, {rows} rows: jisu-deploy dump {dumped:.2?} ({size} bytes, counts from the same snapshot), verify {verified:.2?} (restore into a scratch database + compare every table); plain pg_dump -Fc {plain_dump:.2?} ({plain_size} bytes), plain pg_restore {plain_restore:.2?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_truncated_on_the_way_exits_1_and_leaves_no_backup_counted() {
    use crate::support::s3_server::{MotoServer, Tamper, TamperingProxy};

    let pg = Postgres::start();
    seed(&pg, 5_000);
    let redis = Redis::start();
    let moto = MotoServer::start().await;
    moto.create_bucket("backups").await;
    // The first upload (the dump) loses its last 1000 bytes between jisu-deploy and the
    // server, which stores the rest and answers 200.
    let proxy = TamperingProxy::start(moto.addr(), Tamper::Truncate(1000)).await;
    let destination = "s3://backups/production";
    let checkout = backup_checkout(&pg, &redis, destination, "2m");
    let summary = checkout.path().join("summary.md");
    let run = tokio::task::block_in_place(|| {
        let mut command = backup_command(checkout.path(), &pg, &redis, &proxy.url, &["backup"]);
        command.env("GITHUB_STEP_SUMMARY", &summary);
        let run: crate::support::Run = command.output().unwrap().into();
        run
    });
    assert!(proxy.tampered());
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("postgres.dump"), "{}", run.stderr);
    // The damaged object was deleted, and no manifest made it a backup.
    let listed = store(&moto.endpoint(), destination).list("").await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    // The failure is in the job summary, and no secret is.
    let summary = std::fs::read_to_string(summary).unwrap();
    assert!(summary.contains("backup"), "{summary}");
    for secret in [
        &pg.password,
        &redis.password,
        &"testing-secret-key".to_owned(),
    ] {
        assert!(!summary.contains(secret.as_str()), "{summary}");
    }
}

/// A pipeline file with nothing beside it, as the CronJob mounts it, that backs up
/// `production` to `s3://backups/production`; `sources` ends its `backup:` section
/// (targets, timeout, servers).
fn pipeline_file_alone(dir: &std::path::Path, sources: &str) -> std::path::PathBuf {
    let config = dir.join("jisu-deploy.yml");
    std::fs::write(
        &config,
        format!(
            "version: 1
images: {{scheme: per-component, owner: acme}}
components:
  app: {{context: app, dockerfile: app/Dockerfile}}
environments:
  production: {{branch: main, namespace: prod, url: 'https://acme.example', strategy: rolling, manifests: k8s}}
backup:
  schedule: '0 2 * * *'
  environment: production
  destination: s3://backups/production
  retain_for: 7d
{sources}"
        ),
    )
    .unwrap();
    config
}

/// The binary with `args` on the pipeline file `config` and `workspace`, the object
/// store's credentials and `env`, and nothing else in its environment.
fn run_alone(
    config: &std::path::Path,
    workspace: &std::path::Path,
    moto: &str,
    args: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
) -> crate::support::Run {
    tokio::task::block_in_place(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_jisu-deploy"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("AWS_ACCESS_KEY_ID", "testing-key-id")
            .env("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
            .env("AWS_ENDPOINT_URL", moto)
            .envs(env.iter().copied())
            .args(args)
            .arg("--config")
            .arg(config)
            .arg("--workspace")
            .arg(workspace)
            .output()
            .unwrap()
            .into()
    })
}

/// A password that only the pgpass file holds is masked like an environment secret
/// before the backup uses it, and appears nowhere else, even when the database is gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_password_from_the_pgpass_file_is_masked_before_use() {
    let moto = crate::support::s3_server::MotoServer::start().await;
    moto.create_bucket("backups").await;
    let dir = tempfile::tempdir().unwrap();
    let secret = "pgpass-only-s3cret";
    // Port 1: nothing listens, so the backup fails after reading the password.
    let pgpass = dir.path().join("pgpass");
    std::fs::write(&pgpass, format!("127.0.0.1:1:app:jisu:{secret}\n")).unwrap();
    let config = pipeline_file_alone(
        dir.path(),
        "  targets: [postgres]
  timeout: 5s
  postgres: {host: 127.0.0.1, port: 1, user: jisu, database: app}
",
    );
    let summary = dir.path().join("summary.md");
    std::fs::write(&summary, "").unwrap();
    let run = run_alone(
        &config,
        dir.path(),
        &moto.endpoint(),
        &["backup"],
        &[
            ("GITHUB_ACTIONS", "true".as_ref()),
            ("GITHUB_STEP_SUMMARY", summary.as_os_str()),
            ("PGPASSFILE", pgpass.as_os_str()),
        ],
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let masks: Vec<&str> = run
        .stdout
        .lines()
        .filter(|line| line.contains(secret))
        .collect();
    assert_eq!(masks, [format!("::add-mask::{secret}")], "{}", run.stdout);
    assert!(!run.stderr.contains(secret), "{}", run.stderr);
    let written = std::fs::read_to_string(&summary).unwrap();
    assert!(!written.contains(secret), "{written}");
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_needs_only_the_pipeline_file_where_plan_needs_the_checkout() {
    // As in the CronJob: the pipeline file mounted alone, no repository beside it.
    let moto = crate::support::s3_server::MotoServer::start().await;
    moto.create_bucket("backups").await;
    let dir = tempfile::tempdir().unwrap();
    let config = pipeline_file_alone(
        dir.path(),
        "  targets: [redis]
  redis: {host: 127.0.0.1}
",
    );
    let empty = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| run_alone(&config, empty.path(), &moto.endpoint(), args, &[]);
    let backup = run(&["backup", "--dry-run"]);
    assert_eq!(backup.code, 0, "{}\n{}", backup.stdout, backup.stderr);
    let plan = run(&["plan", "--event-name", "schedule"]);
    assert_eq!(plan.code, 2, "{}", plan.stderr);
    assert!(
        plan.stderr.contains("is not a directory in the repository"),
        "{}",
        plan.stderr
    );
}
