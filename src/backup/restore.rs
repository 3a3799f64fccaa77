//! The restore drill: a stored backup downloaded, each file checked against the sha256 its
//! manifest recorded; its PostgreSQL dump restored into a new database and every table's
//! rows compared with the counts taken at dump time; its Redis snapshot checked with
//! `redis-check-rdb` and left beside the other files for a server to load.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use super::manifest::{MANIFEST_FILE, Manifest};
use super::postgres::{self, Dump, RowCounts};
use super::redis;
use super::store::Store;
use super::take;

/// Largest backup file downloaded.
const FILE_LIMIT: u64 = 1 << 40;

/// What was restored.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The backup's id.
    pub id: String,
    /// The database it was restored into, and its rows.
    pub database: Option<(String, RowCounts)>,
    /// The checked Redis snapshot.
    pub redis_file: Option<PathBuf>,
}

/// The newest verified backup's id, or `wanted` when it is stored.
pub async fn choose(store: &Store, wanted: Option<&str>) -> anyhow::Result<String> {
    let stored = take::stored(store).await?;
    match wanted {
        Some(id) => stored
            .iter()
            .find(|b| b.id == id)
            .map(|b| b.id.clone())
            .with_context(|| {
                let ids: Vec<&str> = stored.iter().map(|b| b.id.as_str()).collect();
                format!("no backup `{id}` in {store}; stored: {}", ids.join(", "))
            }),
        None => stored
            .iter()
            .filter(|b| b.verified)
            .max_by(|a, b| a.taken.cmp(&b.taken).then(a.id.cmp(&b.id)))
            .map(|b| b.id.clone())
            .with_context(|| format!("no verified backup in {store}")),
    }
}

/// Downloads backup `id` into `dir` and restores it: PostgreSQL into the new database
/// `into` (with `db`'s server and role), Redis checked.
pub async fn drill(
    store: &Store,
    id: &str,
    db: Option<&postgres::Database>,
    into: &str,
    dir: &Path,
    timeout: Duration,
) -> anyhow::Result<Restored> {
    let bytes = store
        .get_bytes(&format!("{id}/{MANIFEST_FILE}"), 1 << 20)
        .await?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("the manifest of backup {id} does not parse"))?;
    for file in &manifest.files {
        store
            .download(
                &format!("{id}/{}", file.name),
                &dir.join(&file.name),
                &file.sha256,
                FILE_LIMIT,
            )
            .await?;
    }
    let has = |name: &str| manifest.files.iter().any(|f| f.name == name);
    let mut restored = Restored {
        id: id.to_owned(),
        database: None,
        redis_file: None,
    };
    if has("postgres.dump") {
        let db = db.context(
            "the backup holds a PostgreSQL dump; the pipeline file's `backup.postgres` names the server to restore it on",
        )?;
        let dump = Dump {
            file: dir.join("postgres.dump"),
            rows: manifest.contents.postgres_rows.clone().unwrap_or_default(),
        };
        let counts = postgres::restore(db, &dump, dir, into, timeout).await?;
        restored.database = Some((into.to_owned(), counts));
    }
    if has("redis.rdb") {
        let file = dir.join("redis.rdb");
        redis::check(&file, dir).await?;
        restored.redis_file = Some(file);
    }
    Ok(restored)
}
