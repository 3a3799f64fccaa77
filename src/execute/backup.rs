//! The plan's `backup` step: the pipeline file's `backup:` section turned into a backup
//! request (passwords from `PGPASSWORD` and `REDISCLI_AUTH`, storage credentials from the
//! `AWS_*` variables), taken, verified, shipped and expired by [`crate::backup::take`].
//! A dry run dumps nothing: it lists the store and says what retention would delete.

use std::collections::BTreeMap;

use anyhow::Context as _;
use jiff::Timestamp;
use tracing::{info, warn};

use super::Done;
use crate::backup::retention::{Policy, Verdict};
use crate::backup::store::{Store, StoreSettings};
use crate::backup::take::{self, Request};
use crate::backup::{notify, postgres, redis};
use crate::config::pipeline::{Backup, BackupTarget};
use crate::kube::client::ClusterAccess;
use crate::oci::client::is_loopback_registry;
use crate::session::Session;

/// The pipeline file's `backup:` section and the store it names, credentials from the
/// environment; a loopback `http://` endpoint is allowed without TLS.
pub fn open_store(session: &Session) -> anyhow::Result<(&Backup, Store)> {
    let pipeline = session.pipeline()?;
    let backup = pipeline
        .backup
        .as_ref()
        .context("the pipeline file has no `backup:` section")?;
    let endpoint = session.env("AWS_ENDPOINT_URL");
    let store = Store::open(
        &backup.destination,
        StoreSettings {
            allow_http: endpoint.as_deref().is_some_and(is_loopback_http),
            ..StoreSettings::default()
        },
    )?;
    Ok((backup, store))
}

/// The database `backup.postgres` names, its password from `PGPASSWORD`, else from the
/// pgpass file `PGPASSFILE` names (or `~/.pgpass`), read with a size limit. A password
/// found in the file is masked like the environment's secrets before anything uses it.
pub fn database(session: &Session, backup: &Backup) -> Option<postgres::Database> {
    backup.postgres.as_ref().map(|pg| {
        let mut db = postgres::Database {
            host: pg.host.clone(),
            port: pg.port,
            user: pg.user.clone(),
            name: pg.database.clone(),
            password: session.env("PGPASSWORD"),
        };
        if db.password.is_none() {
            let file = session
                .env("PGPASSFILE")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    session
                        .env("HOME")
                        .map(|home| std::path::Path::new(&home).join(".pgpass"))
                });
            db.password = file
                .and_then(|file| crate::config::read_input(&file, "the pgpass file").ok())
                .and_then(|text| postgres::password_from_pgpass(&text, &db));
            if let Some(password) = &db.password {
                session.runner.mask(password);
            }
        }
        db
    })
}

/// Runs the backup the pipeline file describes; `cluster` reaches the environment's
/// namespace for the `kubernetes` target.
pub async fn run(
    session: &Session,
    cluster: &ClusterAccess,
    preview: bool,
) -> anyhow::Result<Done> {
    let (backup, store) = open_store(session)?;
    let policy = Policy {
        retain_for: backup.retain_for.0,
        monthly: backup.monthly,
    };
    let now = Timestamp::now();
    if preview {
        let verdicts = take::expire(&store, now, &policy, true).await?;
        log_verdicts(&verdicts, "would");
        return Ok(Done::Skipped(format!(
            "dry run: nothing dumped; {} of {} stored backup(s) would be deleted",
            verdicts.iter().filter(|v| !v.keep).count(),
            verdicts.len()
        )));
    }
    let namespace = pipeline_namespace(session, &backup.environment)?;
    let request = Request {
        environment: backup.environment.clone(),
        namespace,
        targets: backup.targets.clone(),
        postgres: database(session, backup),
        redis: backup.redis.as_ref().map(|r| redis::Server {
            host: r.host.clone(),
            port: r.port,
            password: session.env("REDISCLI_AUTH"),
        }),
        secrets_recipient: backup.kubernetes.secrets_recipient.clone(),
        timeout: backup.timeout.0,
    };
    let webhook = session.env(notify::WEBHOOK_ENV);
    let manifest = match take_verified(&request, cluster, now).await {
        Ok((manifest, work)) => {
            let shipped = take::ship(&store, &manifest, work.path()).await;
            if let Err(err) = shipped {
                tell(
                    webhook.as_deref(),
                    &notify::failed(&backup.environment, &err.to_string()),
                )
                .await;
                return Err(err.into());
            }
            manifest
        }
        Err(err) => {
            tell(
                webhook.as_deref(),
                &notify::failed(&backup.environment, &format!("{err:#}")),
            )
            .await;
            return Err(err);
        }
    };
    for check in &manifest.checks {
        let verdict = if check.passed { "passed" } else { "FAILED" };
        info!("{} {verdict}: {}", check.name, check.detail);
    }
    let size: u64 = manifest.files.iter().map(|f| f.size).sum();
    info!(
        "backup {} uploaded to {store}: {} file(s), {size} bytes",
        manifest.id,
        manifest.files.len()
    );
    if !manifest.verified {
        tell(webhook.as_deref(), &notify::taken(&manifest, None)).await;
        let failed: Vec<String> = manifest
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        anyhow::bail!(
            "backup {} failed verification ({}); it was uploaded for inspection and does not count as a kept backup",
            manifest.id,
            failed.join("; ")
        );
    }
    let verdicts = take::expire(&store, now, &policy, false).await?;
    log_verdicts(&verdicts, "");
    let expired = verdicts.iter().filter(|v| !v.keep).count();
    tell(webhook.as_deref(), &notify::taken(&manifest, Some(expired))).await;
    Ok(Done::Ran(BTreeMap::from([
        ("backup".to_owned(), manifest.id.clone()),
        ("bytes".to_owned(), size.to_string()),
        (
            "expired".to_owned(),
            verdicts.iter().filter(|v| !v.keep).count().to_string(),
        ),
    ])))
}

/// Dumps and verifies into a new work directory, which lives as long as the caller keeps it.
async fn take_verified(
    request: &Request,
    cluster: &ClusterAccess,
    now: Timestamp,
) -> anyhow::Result<(crate::backup::manifest::Manifest, tempfile::TempDir)> {
    let work = tempfile::tempdir().context("cannot create the backup's work directory")?;
    let client = if request.targets.contains(&BackupTarget::Kubernetes) {
        Some(cluster.connect().await?.0)
    } else {
        None
    };
    let manifest = take::take(request, client.as_ref(), work.path(), now).await?;
    Ok((manifest, work))
}

/// Sends the webhook message, when a webhook is set; a failure is only logged.
async fn tell(webhook: Option<&str>, text: &str) {
    if let Some(url) = webhook
        && let Err(why) = notify::send(url, text).await
    {
        warn!("backup message not sent: {why}");
    }
}

fn pipeline_namespace(session: &Session, environment: &str) -> anyhow::Result<String> {
    let pipeline = session.pipeline()?;
    let env = pipeline
        .environments
        .get(environment)
        .with_context(|| format!("`backup.environment` `{environment}` is not an environment"))?;
    Ok(env.namespace.clone())
}

fn log_verdicts(verdicts: &[Verdict], mode: &str) {
    for verdict in verdicts {
        let word = match (verdict.keep, mode) {
            (true, _) => "keep".to_owned(),
            (false, "") => "deleted".to_owned(),
            (false, mode) => format!("{mode} delete"),
        };
        if verdict.keep {
            info!("{word} {}: {}", verdict.id, verdict.reason);
        } else {
            warn!("{word} {}: {}", verdict.id, verdict.reason);
        }
    }
}

/// `http://` to a loopback host: a local S3-compatible server, spoken to without TLS by
/// the same rule as registries on loopback ([`is_loopback_registry`]).
fn is_loopback_http(endpoint: &str) -> bool {
    endpoint
        .strip_prefix("http://")
        .is_some_and(|rest| is_loopback_registry(rest.split('/').next().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_endpoints_may_be_plain_http() {
        assert!(is_loopback_http("http://127.0.0.1:9000"));
        assert!(is_loopback_http("http://localhost:9000/"));
        assert!(is_loopback_http("http://[::1]:9000"));
        assert!(!is_loopback_http("http://minio.internal:9000"));
        assert!(!is_loopback_http("https://127.0.0.1:9000"));
        assert!(!is_loopback_http("http://127.evil.example"));
    }
}
