//! The manifest of one backup: every file with its size and sha256, the rows each table
//! held, each verification and whether the backup as a whole is verified. It is written
//! beside the files and uploaded last, so a backup without a manifest is an incomplete one.

use std::io::Read as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The manifest's format version.
pub const MANIFEST_SCHEMA_VERSION: u32 = 1;

/// File name of the manifest, beside the backup's files.
pub const MANIFEST_FILE: &str = "manifest.json";

/// One backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The backup's id: its UTC start time, `20261201T020000Z`.
    pub id: String,
    /// When it started, RFC 3339.
    pub taken: String,
    /// The environment backed up.
    pub environment: String,
    /// Every file, with its size and sha256.
    pub files: Vec<FileEntry>,
    /// What each target held, e.g. rows per PostgreSQL table.
    pub contents: Contents,
    /// Every verification and its result.
    pub checks: Vec<Check>,
    /// True when every check passed: only a verified backup counts as kept.
    pub verified: bool,
}

/// One file of the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its name, relative to the backup.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex sha256.
    pub sha256: String,
}

/// What the backup holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contents {
    /// PostgreSQL: rows per table (`schema.table`) at dump time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres_rows: Option<std::collections::BTreeMap<String, u64>>,
    /// Kubernetes: objects per kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_objects: Option<std::collections::BTreeMap<String, usize>>,
}

/// One verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked (`postgres restore`, `redis-check-rdb`).
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
}

/// Size and lowercase hex sha256 of a file, read in blocks.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut block)?;
        if read == 0 {
            break;
        }
        hasher.update(&block[..read]);
        size += read as u64;
    }
    Ok((size, hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The entry for `dir/name`.
pub fn entry(dir: &Path, name: &str) -> std::io::Result<FileEntry> {
    let (size, sha256) = hash_file(&dir.join(name))?;
    Ok(FileEntry {
        name: name.to_owned(),
        size,
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_hashed_in_blocks() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("empty"), b"").unwrap();
        std::fs::write(dir.path().join("big"), vec![b'a'; 200_000]).unwrap();
        assert_eq!(
            entry(dir.path(), "empty").unwrap().sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let big = entry(dir.path(), "big").unwrap();
        assert_eq!(big.size, 200_000);
        let whole = hex(&Sha256::digest(vec![b'a'; 200_000]));
        assert_eq!(big.sha256, whole);
    }
}
