//! One backup, start to finish: dump every target into a work directory, verify each dump
//! by restoring or checking it, write the manifest, upload the files and the manifest
//! last, then expire what retention no longer keeps.
//!
//! A dump that fails stops the backup (nothing is uploaded). A verification that fails is
//! recorded in the manifest (`verified: false`) and the backup is still uploaded, for
//! inspection, but it never counts as a kept copy and the step fails.

use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;

use super::manifest::{self, Check, Contents, MANIFEST_FILE, MANIFEST_SCHEMA_VERSION, Manifest};
use super::retention::{self, Policy, Stored, Verdict};
use super::store::{Store, StoreError};
use super::{kubernetes, postgres, redis};
use crate::config::pipeline::BackupTarget;

/// Largest manifest read back from the store.
const MANIFEST_LIMIT: u64 = 1 << 20;

/// What one backup covers.
#[derive(Debug, Clone)]
pub struct Request {
    /// The environment backed up.
    pub environment: String,
    /// Its namespace, for `kubernetes`.
    pub namespace: String,
    /// What is dumped.
    pub targets: Vec<BackupTarget>,
    /// The database, for `postgres`.
    pub postgres: Option<postgres::Database>,
    /// The Redis server, for `redis`.
    pub redis: Option<redis::Server>,
    /// An age recipient the namespace's Secrets are encrypted to; without one they are
    /// left out.
    pub secrets_recipient: Option<String>,
    /// Longest a dump, fetch or restore may take; also the deadline of a Redis save.
    pub timeout: Duration,
}

/// The id of a backup started at `at`: `20261201T020000Z`, which sorts by time.
pub fn backup_id(at: Timestamp) -> String {
    at.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Dumps and verifies every target into `work`; the manifest says what passed. `cluster`
/// reaches the namespace for the `kubernetes` target.
pub async fn take(
    request: &Request,
    cluster: Option<&kube::Client>,
    work: &Path,
    at: Timestamp,
) -> anyhow::Result<Manifest> {
    let mut files = Vec::new();
    let mut checks = Vec::new();
    let mut contents = Contents::default();
    for target in &request.targets {
        match target {
            BackupTarget::Postgres => {
                let db = request.postgres.as_ref().ok_or_else(|| {
                    anyhow::anyhow!("the postgres target has no `backup.postgres`")
                })?;
                let dump = postgres::dump(db, work, request.timeout).await?;
                let scratch = format!("{}_verify_{}", db.name, backup_id(at).to_lowercase());
                let verified = postgres::verify(db, &dump, work, &scratch, request.timeout).await;
                let rows: u64 = dump.rows.values().sum();
                checks.push(match verified {
                    Ok(()) => Check {
                        name: "postgres restore".into(),
                        passed: true,
                        detail: format!(
                            "restored into a scratch database: {} tables, {rows} rows, every count equal to the source at dump time",
                            dump.rows.len()
                        ),
                    },
                    Err(err) => Check {
                        name: "postgres restore".into(),
                        passed: false,
                        detail: err.to_string(),
                    },
                });
                files.push(manifest::entry(work, "postgres.dump")?);
                contents.postgres_rows = Some(dump.rows);
            }
            BackupTarget::Redis => {
                let server = request
                    .redis
                    .as_ref()
                    .ok_or_else(|| anyhow::anyhow!("the redis target has no `backup.redis`"))?;
                redis::save(server, work, request.timeout, Duration::from_millis(250)).await?;
                let file = redis::fetch(server, work, request.timeout).await?;
                checks.push(match redis::check(&file, work).await {
                    Ok(()) => Check {
                        name: "redis-check-rdb".into(),
                        passed: true,
                        detail: "the snapshot reads to its end".into(),
                    },
                    Err(err) => Check {
                        name: "redis-check-rdb".into(),
                        passed: false,
                        detail: err.to_string(),
                    },
                });
                files.push(manifest::entry(work, "redis.rdb")?);
            }
            BackupTarget::Kubernetes => {
                let client = cluster
                    .ok_or_else(|| anyhow::anyhow!("the kubernetes target needs a cluster"))?;
                let namespace = &request.namespace;
                let exported = kubernetes::export(
                    client,
                    namespace,
                    work,
                    request.secrets_recipient.as_deref(),
                )
                .await?;
                checks.push(match kubernetes::verify(client, namespace, &exported.file).await {
                    Ok(objects) => Check {
                        name: "kubernetes dry-run apply".into(),
                        passed: true,
                        detail: match exported.counts.get("Secret") {
                            Some(secrets) => format!(
                                "{objects} object(s) parse and pass a server-side dry-run apply; {secrets} Secret(s) encrypted to the recipient"
                            ),
                            None => format!(
                                "{objects} object(s) parse and pass a server-side dry-run apply; Secrets are not backed up"
                            ),
                        },
                    },
                    Err(err) => Check {
                        name: "kubernetes dry-run apply".into(),
                        passed: false,
                        detail: err.to_string(),
                    },
                });
                files.push(manifest::entry(work, kubernetes::FILE)?);
                if exported.secrets_file.is_some() {
                    files.push(manifest::entry(work, kubernetes::SECRETS_FILE)?);
                }
                contents.kubernetes_objects = Some(exported.counts);
            }
        }
    }
    let verified = !checks.is_empty() && checks.iter().all(|c| c.passed);
    Ok(Manifest {
        schema_version: MANIFEST_SCHEMA_VERSION,
        id: backup_id(at),
        taken: at.to_string(),
        environment: request.environment.clone(),
        files,
        contents,
        checks,
        verified,
    })
}

/// Uploads every file of `manifest` from `work` under `<id>/`, each read back and checked
/// against its sha256, then the manifest itself: a backup without its manifest in the
/// store is an incomplete one.
pub async fn ship(store: &Store, manifest: &Manifest, work: &Path) -> Result<(), StoreError> {
    for file in &manifest.files {
        store
            .upload(
                &format!("{}/{}", manifest.id, file.name),
                &work.join(&file.name),
                &file.sha256,
            )
            .await?;
    }
    let json = serde_json::to_vec_pretty(manifest).expect("a manifest serializes");
    store
        .put_bytes(&format!("{}/{MANIFEST_FILE}", manifest.id), json)
        .await?;
    Ok(())
}

/// Every backup in the store as retention sees it: those with a manifest by what it says,
/// folders without one (an upload that stopped half way) as unverified, dated by their
/// newest object.
pub async fn stored(store: &Store) -> anyhow::Result<Vec<Stored>> {
    let listed = store.list("").await?;
    let mut folders: std::collections::BTreeMap<String, Timestamp> = Default::default();
    for object in &listed {
        if let Some((id, _)) = object.key.split_once('/') {
            let newest = folders.entry(id.to_owned()).or_insert(object.last_modified);
            *newest = (*newest).max(object.last_modified);
        }
    }
    let mut backups = Vec::new();
    for (id, last_modified) in folders {
        let key = format!("{id}/{MANIFEST_FILE}");
        let manifest = if listed.iter().any(|o| o.key == key) {
            let bytes = store.get_bytes(&key, MANIFEST_LIMIT).await?;
            serde_json::from_slice::<Manifest>(&bytes).ok()
        } else {
            None
        };
        backups.push(match manifest {
            Some(m) => Stored {
                id,
                taken: m.taken.parse().unwrap_or(last_modified),
                verified: m.verified,
            },
            None => Stored {
                id,
                taken: last_modified,
                verified: false,
            },
        });
    }
    Ok(backups)
}

/// Decides what retention keeps and, unless `dry_run`, deletes the rest.
pub async fn expire(
    store: &Store,
    now: Timestamp,
    policy: &Policy,
    dry_run: bool,
) -> anyhow::Result<Vec<Verdict>> {
    let backups = stored(store).await?;
    let verdicts = retention::decide(&backups, now, policy);
    if !dry_run {
        for verdict in verdicts.iter().filter(|v| !v.keep) {
            let keys: Vec<String> = store
                .list(&verdict.id)
                .await?
                .into_iter()
                .map(|o| o.key)
                .collect();
            store.delete(&keys).await?;
        }
    }
    Ok(verdicts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time() {
        let at: Timestamp = "2026-12-01T02:00:07Z".parse().unwrap();
        assert_eq!(backup_id(at), "20261201T020007Z");
        let later: Timestamp = "2026-12-11T01:00:00Z".parse().unwrap();
        assert!(backup_id(later) > backup_id(at));
    }
}
