//! Backup files in S3-compatible object storage, verified after every transfer.
//!
//! A [`Store`] is one destination, `s3://BUCKET/PREFIX`; keys are relative to the prefix.
//! Every upload is read back and compared (size and sha256) with what was meant to be
//! stored, and an object that differs is deleted, so a truncated or corrupted transfer
//! never passes for a backup. Downloads are verified the same way before the file appears.
//! Transfers stream: memory stays bounded by the part size, whatever the file's size.
//!
//! Credentials come from [`StoreSettings::credentials`] or, when unset, from the process
//! environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`); they
//! never appear in a message, a `Debug` or a `Display`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Files larger than this go through a multipart upload; smaller ones in one request.
pub const MULTIPART_THRESHOLD: u64 = 8 * 1024 * 1024;
/// The size of each part of a multipart upload (the last one may be smaller), unless the
/// file needs larger parts to fit S3's 10,000 parts.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// S3 accepts at most this many parts in one upload.
const MAX_PARTS: u64 = 10_000;
/// The most objects [`Store::list`] returns; past that it fails rather than truncate.
pub const MAX_LISTED: usize = 100_000;

/// How much of a local file is read at a time.
const READ_CHUNK: usize = 1024 * 1024;
/// Parts uploading at once; with the part being filled, memory stays under
/// `(PARTS_IN_FLIGHT + 1)` parts.
const PARTS_IN_FLIGHT: usize = 2;
/// The region when neither the settings nor `AWS_REGION` give one.
const DEFAULT_REGION: &str = "us-east-1";

/// Credentials for signing S3 requests. `Debug` shows none of them.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: String,
    /// The secret access key (`AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: String,
    /// The session token of temporary credentials (`AWS_SESSION_TOKEN`).
    pub session_token: Option<String>,
}

impl Credentials {
    /// The credentials in the process environment, if both keys are set and not empty.
    pub fn from_env() -> Option<Self> {
        Self::from_lookup(&env_var)
    }

    fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Option<Self> {
        Some(Credentials {
            access_key_id: lookup("AWS_ACCESS_KEY_ID")?,
            secret_access_key: lookup("AWS_SECRET_ACCESS_KEY")?,
            session_token: lookup("AWS_SESSION_TOKEN"),
        })
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials { .. }")
    }
}

/// How to reach the storage. Unset fields fall back to the process environment.
#[derive(Debug, Clone, Default)]
pub struct StoreSettings {
    /// An S3-compatible server, e.g. `http://127.0.0.1:9000` (default: `AWS_ENDPOINT_URL`,
    /// else AWS itself). Requests to it use path-style addressing.
    pub endpoint: Option<String>,
    /// The region (default: `AWS_REGION`, else `us-east-1`).
    pub region: Option<String>,
    /// Whether a plain `http://` endpoint is accepted (local test servers only).
    pub allow_http: bool,
    /// The credentials (default: [`Credentials::from_env`]).
    pub credentials: Option<Credentials>,
}

/// Where backups go: a bucket and a key prefix, from `s3://BUCKET/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    bucket: String,
    prefix: String,
}

impl Destination {
    /// Parses and validates `s3://BUCKET/PREFIX` (the prefix may be absent; one trailing
    /// slash is allowed).
    pub fn parse(url: &str) -> Result<Self, DestinationError> {
        let Some(rest) = url.strip_prefix("s3://") else {
            let scheme = url.split_once("://").map(|(scheme, _)| scheme.to_owned());
            return Err(DestinationError::Scheme { scheme });
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.contains(['@', ':']) {
            return Err(DestinationError::Authority);
        }
        if let Err(problem) = check_bucket(bucket) {
            return Err(DestinationError::Bucket {
                bucket: bucket.to_owned(),
                problem,
            });
        }
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        if !prefix.is_empty()
            && let Err(problem) = check_relative(prefix)
        {
            return Err(DestinationError::Prefix {
                prefix: prefix.to_owned(),
                problem,
            });
        }
        Ok(Destination {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix, without slashes at either end (empty: the whole bucket).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if !self.prefix.is_empty() {
            write!(f, "/{}", self.prefix)?;
        }
        Ok(())
    }
}

/// A destination URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    /// Not an `s3://` URL.
    #[error(
        "the backup destination must be an s3:// URL{}: write it as s3://BUCKET/PREFIX, e.g. s3://jisu-backups/production",
        scheme.as_ref().map(|s| format!(", not {s}://")).unwrap_or_default()
    )]
    Scheme {
        /// The scheme given instead, if any.
        scheme: Option<String>,
    },
    /// A user, password or port where the bucket goes (not echoed: it may hold a secret).
    #[error(
        "the backup destination has a user, password or port where the bucket name goes: write it as s3://BUCKET/PREFIX, with credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and a server in AWS_ENDPOINT_URL"
    )]
    Authority,
    /// The bucket name breaks S3's naming rules.
    #[error(
        "the backup destination's bucket name `{bucket}` {problem}: S3 bucket names are 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit"
    )]
    Bucket {
        /// The bucket name given.
        bucket: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The key prefix is not a clean relative path.
    #[error(
        "the backup destination's prefix `{prefix}` {problem}: write it as segments separated by single slashes, none of them `.` or `..`"
    )]
    Prefix {
        /// The prefix given.
        prefix: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// What went wrong with the storage. No message holds a credential.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The destination URL is invalid.
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// Neither the settings nor the environment give credentials.
    #[error(
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN with temporary credentials)"
    )]
    MissingCredentials,
    /// The endpoint URL is invalid.
    #[error("the S3 endpoint `{endpoint}` {problem}")]
    Endpoint {
        /// The endpoint, without any user or password it held.
        endpoint: String,
        /// What is wrong with it and what to write instead.
        problem: &'static str,
    },
    /// The S3 client could not be set up.
    #[error("cannot set up the S3 client for {destination}: {source}")]
    Client {
        /// The destination.
        destination: String,
        /// The client's error.
        source: Box<object_store::Error>,
    },
    /// A key is not a clean relative path.
    #[error(
        "backup key `{key}` {problem}: use a relative path of segments separated by single slashes, none of them `.` or `..`"
    )]
    Key {
        /// The key given.
        key: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// An expected digest is not a sha256.
    #[error(
        "expected sha256 `{value}` is not 64 hexadecimal digits: pass the sha256 the backup recorded for the file"
    )]
    Sha256 {
        /// The value given.
        value: String,
    },
    /// A local file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Local {
        /// What was being done, e.g. "read".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The local file is not the one whose digest was given: nothing was stored.
    #[error(
        "{} has sha256 {found}, not the expected {expected}: the file changed after it was written, or the expected digest is wrong; nothing was stored under `{key}`",
        path.display()
    )]
    LocalMismatch {
        /// The key it was going to.
        key: String,
        /// The local file.
        path: PathBuf,
        /// The digest given.
        expected: String,
        /// The digest of what was read.
        found: String,
    },
    /// The object does not exist.
    #[error("there is no object `{key}` in {store}: check the key and the destination")]
    NotFound {
        /// The key.
        key: String,
        /// The store.
        store: String,
    },
    /// A request failed (after the client's retries).
    #[error(
        "S3 {operation} `{key}` in {store} failed: {source}; check the endpoint, the credentials and that the bucket exists"
    )]
    Request {
        /// What was being done, e.g. "GET".
        operation: &'static str,
        /// The key, or the prefix of a listing.
        key: String,
        /// The store.
        store: String,
        /// The client's error.
        source: Box<object_store::Error>,
    },
    /// An uploaded object read back differently from what was sent.
    #[error(
        "uploaded object `{key}` in {store} did not read back as written: expected {expected_size} bytes with sha256 {expected_sha256}, found {found_size} bytes with sha256 {found_sha256}; {}",
        cleanup_words(delete_failed.as_deref())
    )]
    UploadMismatch {
        /// The key.
        key: String,
        /// The store.
        store: String,
        /// The size sent.
        expected_size: u64,
        /// The sha256 sent.
        expected_sha256: String,
        /// The size read back.
        found_size: u64,
        /// The sha256 read back (or why it is unknown).
        found_sha256: String,
        /// Why deleting the object failed, if it did (it was deleted otherwise).
        delete_failed: Option<Box<object_store::Error>>,
    },
    /// A downloaded object is not the expected backup: nothing was written.
    #[error(
        "object `{key}` in {store} is not the expected backup: expected sha256 {expected_sha256}, found {found_size} bytes with sha256 {found_sha256}; it is truncated or corrupt, and nothing was written to {}",
        local.display()
    )]
    DownloadMismatch {
        /// The key.
        key: String,
        /// The store.
        store: String,
        /// The file that was not written.
        local: Box<Path>,
        /// The sha256 expected.
        expected_sha256: String,
        /// The size downloaded.
        found_size: u64,
        /// The sha256 downloaded.
        found_sha256: String,
    },
    /// An object is larger than the caller's limit.
    #[error(
        "object `{key}` in {store} holds at least {size} bytes, over the limit of {max_bytes}: raise the limit if it is meant to be this large"
    )]
    TooLarge {
        /// The key.
        key: String,
        /// The store.
        store: String,
        /// The size seen so far (or announced).
        size: u64,
        /// The limit.
        max_bytes: u64,
    },
    /// A listing has more objects than [`MAX_LISTED`].
    #[error(
        "more than {limit} objects under `{under}` in {store}: refusing a partial listing; list a narrower prefix or clean up the destination"
    )]
    TooMany {
        /// The prefix listed, relative to the store's.
        under: String,
        /// The store.
        store: String,
        /// The limit.
        limit: usize,
    },
    /// A listing returned something this store cannot use.
    #[error("listing {store} returned {problem}: the server's answer is not usable")]
    Listing {
        /// The store.
        store: String,
        /// What was wrong.
        problem: String,
    },
    /// Deleting failed part-way.
    #[error(
        "deleting {requested} objects from {store} failed after {deleted}: {source}; run the deletion again"
    )]
    Delete {
        /// The store.
        store: String,
        /// Keys asked to delete.
        requested: usize,
        /// Deletions confirmed before the failure.
        deleted: usize,
        /// The client's error.
        source: Box<object_store::Error>,
    },
}

/// A stored and verified object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// The key, relative to the store's prefix.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256, lowercase hex.
    pub sha256: String,
    /// Whether it went through a multipart upload.
    pub multipart: bool,
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The key, relative to the store's prefix.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When the server last wrote it.
    pub last_modified: jiff::Timestamp,
}

/// One backup destination in S3-compatible storage.
pub struct Store {
    s3: AmazonS3,
    destination: Destination,
    /// The destination's prefix as an object path.
    prefix: ObjectPath,
    /// The endpoint URL, or `None` for AWS.
    endpoint: Option<String>,
    region: String,
}

/// Size and digest of bytes that went through.
struct Streamed {
    size: u64,
    sha256: String,
}

/// Where [`Store::read_object`] puts the bytes it reads.
enum Sink<'a> {
    Discard,
    File(&'a mut tokio::fs::File, &'a Path),
    Memory(&'a mut Vec<u8>),
}

impl Store {
    /// Opens `destination` (`s3://BUCKET/PREFIX`); nothing is sent until an operation.
    pub fn open(destination: &str, settings: StoreSettings) -> Result<Self, StoreError> {
        Self::open_with(destination, settings, &env_var)
    }

    /// [`Store::open`], reading defaults through `lookup` instead of the environment.
    fn open_with(
        destination: &str,
        settings: StoreSettings,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, StoreError> {
        let destination = Destination::parse(destination)?;
        let prefix =
            ObjectPath::parse(&destination.prefix).map_err(|_| DestinationError::Prefix {
                prefix: destination.prefix.clone(),
                problem: "is not a valid object path",
            })?;
        let endpoint = settings
            .endpoint
            .or_else(|| lookup("AWS_ENDPOINT_URL"))
            .map(|endpoint| check_endpoint(&endpoint, settings.allow_http))
            .transpose()?;
        let region = settings
            .region
            .or_else(|| lookup("AWS_REGION"))
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let credentials = settings
            .credentials
            .or_else(|| Credentials::from_lookup(lookup))
            .ok_or(StoreError::MissingCredentials)?;

        crate::tls::ensure_provider();
        // No overall request timeout: one GET may stream a backup of many gigabytes. A
        // stalled connection still fails through the read timeout.
        let client = ClientOptions::new()
            .with_timeout_disabled()
            .with_connect_timeout(Duration::from_secs(10))
            .with_read_timeout(Duration::from_secs(60));
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&destination.bucket)
            .with_region(&region)
            .with_access_key_id(credentials.access_key_id)
            .with_secret_access_key(credentials.secret_access_key)
            .with_client_options(client)
            .with_allow_http(settings.allow_http);
        if let Some(token) = credentials.session_token {
            builder = builder.with_token(token);
        }
        if let Some(endpoint) = &endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        let s3 = builder.build().map_err(|source| StoreError::Client {
            destination: destination.to_string(),
            source: Box::new(source),
        })?;
        Ok(Store {
            s3,
            destination,
            prefix,
            endpoint,
            region,
        })
    }

    /// The destination this store writes to.
    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    /// Uploads the file `local` to `key` and verifies the stored object: it is read back
    /// and must have the file's size and the sha256 `sha256`. An object that does not is
    /// deleted and the upload fails. A file whose own digest is not `sha256` is refused
    /// before anything is stored.
    pub async fn upload(
        &self,
        key: &str,
        local: &Path,
        sha256: &str,
    ) -> Result<Uploaded, StoreError> {
        let expected = normalize_sha256(sha256)?;
        let location = self.location(key)?;
        let mut file = tokio::fs::File::open(local)
            .await
            .map_err(|source| local_error("open", local, source))?;
        let length = file
            .metadata()
            .await
            .map_err(|source| local_error("read the size of", local, source))?
            .len();
        let multipart = length > MULTIPART_THRESHOLD;
        let sent = if multipart {
            self.put_large(key, &location, &mut file, local, length, &expected)
                .await?
        } else {
            self.put_small(key, &location, &mut file, local, &expected)
                .await?
        };
        if sent.sha256 != expected {
            return Err(StoreError::LocalMismatch {
                key: key.to_owned(),
                path: local.to_owned(),
                expected,
                found: sent.sha256,
            });
        }
        self.verify_upload(key, &location, &sent).await?;
        Ok(Uploaded {
            key: key.to_owned(),
            size: sent.size,
            sha256: sent.sha256,
            multipart,
        })
    }

    /// Sends `file` (at most [`MULTIPART_THRESHOLD`]) to `location` in one request if it
    /// has the sha256 `expected`, and returns what it read.
    async fn put_small(
        &self,
        key: &str,
        location: &ObjectPath,
        file: &mut tokio::fs::File,
        local: &Path,
        expected: &str,
    ) -> Result<Streamed, StoreError> {
        let mut bytes = Vec::new();
        // Bounded even if the file grew since its size was read.
        file.take(MULTIPART_THRESHOLD + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|source| local_error("read", local, source))?;
        let read = digest(&bytes);
        if read.sha256 == expected {
            self.s3
                .put(location, PutPayload::from(bytes))
                .await
                .map_err(|source| self.request_error("PUT", key, source))?;
        }
        Ok(read)
    }

    /// Streams `file` (`length` bytes) to `location` in parts and returns what was sent. The upload is
    /// completed only when the bytes sent have the sha256 `expected`, and aborted
    /// otherwise or on any failure.
    async fn put_large(
        &self,
        key: &str,
        location: &ObjectPath,
        file: &mut tokio::fs::File,
        local: &Path,
        length: u64,
        expected: &str,
    ) -> Result<Streamed, StoreError> {
        let upload = self
            .s3
            .put_multipart(location)
            .await
            .map_err(|source| self.request_error("start multipart upload of", key, source))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size(length));
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; READ_CHUNK];
        loop {
            let read = match file.read(&mut buffer).await {
                Ok(0) => break,
                Ok(read) => read,
                Err(source) => {
                    self.abort(key, writer).await;
                    return Err(local_error("read", local, source));
                }
            };
            if let Err(source) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                self.abort(key, writer).await;
                return Err(self.request_error("upload a part of", key, source));
            }
            hasher.update(&buffer[..read]);
            size += read as u64;
            writer.write(&buffer[..read]);
        }
        let sent = Streamed {
            size,
            sha256: hex(&hasher.finalize()),
        };
        if sent.sha256 != expected {
            // Not the expected file: nothing may be stored; the caller reports it.
            self.abort(key, writer).await;
            return Ok(sent);
        }
        writer
            .finish()
            .await
            .map_err(|source| self.request_error("complete multipart upload of", key, source))?;
        Ok(sent)
    }

    /// Aborts a multipart upload; a failure only leaves parts for the bucket's lifecycle.
    async fn abort(&self, key: &str, writer: WriteMultipart) {
        if let Err(err) = writer.abort().await {
            tracing::warn!(
                "could not abort the multipart upload of `{key}` in {self}: {err}; its parts stay until the bucket's lifecycle rule removes incomplete uploads"
            );
        }
    }

    /// Reads `location` back and compares it with what was sent; deletes it if it differs.
    async fn verify_upload(
        &self,
        key: &str,
        location: &ObjectPath,
        sent: &Streamed,
    ) -> Result<(), StoreError> {
        let found = match self
            .read_object(key, location, sent.size, Sink::Discard)
            .await
        {
            Ok(found) if found.size == sent.size && found.sha256 == sent.sha256 => return Ok(()),
            Ok(found) => found,
            Err(StoreError::TooLarge { size, .. }) => Streamed {
                size,
                sha256: "unknown (more bytes than were sent)".to_owned(),
            },
            Err(err) => return Err(err),
        };
        let delete_failed = self.s3.delete(location).await.err().map(Box::new);
        Err(StoreError::UploadMismatch {
            key: key.to_owned(),
            store: self.to_string(),
            expected_size: sent.size,
            expected_sha256: sent.sha256.clone(),
            found_size: found.size,
            found_sha256: found.sha256,
            delete_failed,
        })
    }

    /// Downloads `key` to `local`, at most `max_bytes`, and returns its size. The file
    /// appears (or is replaced) only once its sha256 is `sha256`; otherwise nothing is
    /// left behind.
    pub async fn download(
        &self,
        key: &str,
        local: &Path,
        sha256: &str,
        max_bytes: u64,
    ) -> Result<u64, StoreError> {
        let expected = normalize_sha256(sha256)?;
        let location = self.location(key)?;
        let dir = match local.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        // Removed when dropped, on every early return.
        let partial = tempfile::Builder::new()
            .prefix(".jisu-download-")
            .tempfile_in(dir)
            .map_err(|source| local_error("create a temporary file in", dir, source))?;
        let handle = partial
            .reopen()
            .map_err(|source| local_error("open", partial.path(), source))?;
        let mut file = tokio::fs::File::from_std(handle);
        let found = self
            .read_object(
                key,
                &location,
                max_bytes,
                Sink::File(&mut file, partial.path()),
            )
            .await?;
        file.sync_all()
            .await
            .map_err(|source| local_error("write", partial.path(), source))?;
        drop(file);
        if found.sha256 != expected {
            return Err(StoreError::DownloadMismatch {
                key: key.to_owned(),
                store: self.to_string(),
                local: local.into(),
                expected_sha256: expected,
                found_size: found.size,
                found_sha256: found.sha256,
            });
        }
        partial
            .persist(local)
            .map_err(|err| local_error("move the download to", local, err.error))?;
        Ok(found.size)
    }

    /// Stores small `bytes` (a manifest) at `key`, verified like [`Store::upload`].
    pub async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<Uploaded, StoreError> {
        let location = self.location(key)?;
        let sent = digest(&bytes);
        self.s3
            .put(&location, PutPayload::from(bytes))
            .await
            .map_err(|source| self.request_error("PUT", key, source))?;
        self.verify_upload(key, &location, &sent).await?;
        Ok(Uploaded {
            key: key.to_owned(),
            size: sent.size,
            sha256: sent.sha256,
            multipart: false,
        })
    }

    /// Reads the object at `key`, refusing one of more than `max_bytes`.
    pub async fn get_bytes(&self, key: &str, max_bytes: u64) -> Result<Vec<u8>, StoreError> {
        let location = self.location(key)?;
        let mut bytes = Vec::new();
        self.read_object(key, &location, max_bytes, Sink::Memory(&mut bytes))
            .await?;
        Ok(bytes)
    }

    /// The objects under `under` (relative to the prefix; empty for all), sorted by key.
    /// `under` matches whole segments: `2026-10` lists `2026-10/…`, not `2026-10-20/…`.
    /// Fails rather than return a partial list past [`MAX_LISTED`] objects.
    pub async fn list(&self, under: &str) -> Result<Vec<Listed>, StoreError> {
        let base = match under {
            "" if self.destination.prefix.is_empty() => None,
            "" => Some(self.prefix.clone()),
            under => Some(self.location(under)?),
        };
        let mut objects = self.s3.list(base.as_ref());
        let mut listed = Vec::new();
        while let Some(meta) = objects
            .try_next()
            .await
            .map_err(|source| self.request_error("LIST", under, source))?
        {
            if listed.len() == MAX_LISTED {
                return Err(StoreError::TooMany {
                    under: under.to_owned(),
                    store: self.to_string(),
                    limit: MAX_LISTED,
                });
            }
            let key = self.relative(&meta.location)?;
            let modified = &meta.last_modified;
            let last_modified = jiff::Timestamp::new(
                modified.timestamp(),
                modified.timestamp_subsec_nanos() as i32,
            )
            .map_err(|err| StoreError::Listing {
                store: self.to_string(),
                problem: format!("an unusable last-modified time for `{key}`: {err}"),
            })?;
            listed.push(Listed {
                key,
                size: meta.size,
                last_modified,
            });
        }
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listed)
    }

    /// Deletes `keys` and returns how many deletions the server confirmed (S3 confirms a
    /// key that was already absent too).
    pub async fn delete(&self, keys: &[String]) -> Result<usize, StoreError> {
        let locations = keys
            .iter()
            .map(|key| self.location(key).map(Ok))
            .collect::<Result<Vec<_>, _>>()?;
        let mut results = self
            .s3
            .delete_stream(futures::stream::iter(locations).boxed());
        let mut deleted = 0;
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                Err(source) => {
                    return Err(StoreError::Delete {
                        store: self.to_string(),
                        requested: keys.len(),
                        deleted,
                        source: Box::new(source),
                    });
                }
            }
        }
        Ok(deleted)
    }

    /// Streams the object at `location` into `sink`, failing past `max_bytes`.
    async fn read_object(
        &self,
        key: &str,
        location: &ObjectPath,
        max_bytes: u64,
        mut sink: Sink<'_>,
    ) -> Result<Streamed, StoreError> {
        let too_large = |size| StoreError::TooLarge {
            key: key.to_owned(),
            store: self.to_string(),
            size,
            max_bytes,
        };
        let result = self
            .s3
            .get(location)
            .await
            .map_err(|source| self.request_error("GET", key, source))?;
        if result.meta.size > max_bytes {
            return Err(too_large(result.meta.size));
        }
        let mut chunks = result.into_stream();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = chunks
            .try_next()
            .await
            .map_err(|source| self.request_error("GET", key, source))?
        {
            size += chunk.len() as u64;
            if size > max_bytes {
                return Err(too_large(size));
            }
            hasher.update(&chunk);
            match &mut sink {
                Sink::Discard => {}
                Sink::Memory(bytes) => bytes.extend_from_slice(&chunk),
                Sink::File(file, path) => file
                    .write_all(&chunk)
                    .await
                    .map_err(|source| local_error("write", path, source))?,
            }
        }
        Ok(Streamed {
            size,
            sha256: hex(&hasher.finalize()),
        })
    }

    /// The object path of `key`, below the prefix.
    fn location(&self, key: &str) -> Result<ObjectPath, StoreError> {
        check_relative(key).map_err(|problem| StoreError::Key {
            key: key.to_owned(),
            problem,
        })?;
        let full = match self.destination.prefix.as_str() {
            "" => key.to_owned(),
            prefix => format!("{prefix}/{key}"),
        };
        // Taken as written (`ObjectPath::from` would percent-encode some characters).
        ObjectPath::parse(&full).map_err(|_| StoreError::Key {
            key: key.to_owned(),
            problem: "is not a valid object path",
        })
    }

    /// `location` relative to the prefix.
    fn relative(&self, location: &ObjectPath) -> Result<String, StoreError> {
        let full = location.as_ref();
        let prefix = &self.destination.prefix;
        let key = if prefix.is_empty() {
            Some(full)
        } else {
            full.strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
        };
        key.map(str::to_owned).ok_or_else(|| StoreError::Listing {
            store: self.to_string(),
            problem: format!("`{full}`, outside the prefix"),
        })
    }

    fn request_error(
        &self,
        operation: &'static str,
        key: &str,
        source: object_store::Error,
    ) -> StoreError {
        match source {
            object_store::Error::NotFound { .. } => StoreError::NotFound {
                key: key.to_owned(),
                store: self.to_string(),
            },
            source => StoreError::Request {
                operation,
                key: key.to_owned(),
                store: self.to_string(),
                source: Box::new(source),
            },
        }
    }
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.endpoint {
            Some(endpoint) => write!(
                f,
                "{} at {endpoint} (region {})",
                self.destination, self.region
            ),
            None => write!(f, "{} (AWS, region {})", self.destination, self.region),
        }
    }
}

impl fmt::Debug for Store {
    /// Shows where the store is, never the client (whose configuration holds credentials).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Store").field(&self.to_string()).finish()
    }
}

/// The part size for a file of `length` bytes: [`PART_SIZE`], or whole MiB large enough
/// for [`MAX_PARTS`] parts (past 78 GiB).
fn part_size(length: u64) -> usize {
    const MIB: u64 = 1024 * 1024;
    let needed = length.div_ceil(MAX_PARTS).next_multiple_of(MIB);
    usize::try_from(needed).map_or(usize::MAX, |needed| needed.max(PART_SIZE))
}

/// What became of an object that did not read back as written, and what to do.
fn cleanup_words(delete_failed: Option<&object_store::Error>) -> String {
    match delete_failed {
        None => "the object was deleted; upload it again".to_owned(),
        Some(err) => format!("deleting the object failed too ({err}); delete it by hand"),
    }
}

/// A process environment variable, unset when empty.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// Validates an endpoint URL and returns it as `scheme://host[:port]`.
fn check_endpoint(endpoint: &str, allow_http: bool) -> Result<String, StoreError> {
    let invalid = |shown: String, problem| StoreError::Endpoint {
        endpoint: shown,
        problem,
    };
    let Ok(url) = reqwest::Url::parse(endpoint) else {
        return Err(invalid(
            endpoint.to_owned(),
            "is not a URL: write it as https://HOST[:PORT]",
        ));
    };
    if !url.username().is_empty() || url.password().is_some() {
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        return Err(invalid(
            shown.to_string(),
            "holds a user or password: remove it and give credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        ));
    }
    let problem = match url.scheme() {
        "https" => None,
        "http" if allow_http => None,
        "http" => {
            Some("is plain HTTP: use https://, or allow plain HTTP (local test servers only)")
        }
        _ => Some("is neither https:// nor http://: write it as https://HOST[:PORT]"),
    }
    .or_else(|| {
        url.host_str()
            .is_none()
            .then_some("has no host: write it as https://HOST[:PORT]")
    })
    .or_else(|| {
        (url.path() != "/" || url.query().is_some() || url.fragment().is_some())
            .then_some("has a path, query or fragment: give only https://HOST[:PORT]")
    });
    match problem {
        Some(problem) => Err(invalid(endpoint.to_owned(), problem)),
        None => Ok(url.origin().ascii_serialization()),
    }
}

/// Checks a bucket name against S3's rules for general purpose buckets.
fn check_bucket(bucket: &str) -> Result<(), &'static str> {
    let bytes = bucket.as_bytes();
    if !(3..=63).contains(&bytes.len()) {
        return Err("is not 3 to 63 characters long");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-')
    {
        return Err("has a character other than a lowercase letter, digit, dot or hyphen");
    }
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(alphanumeric) || !bytes.last().is_some_and(alphanumeric) {
        return Err("does not start and end with a letter or digit");
    }
    if bucket.contains("..") {
        return Err("has two dots in a row");
    }
    if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err("is an IP address");
    }
    if ["xn--", "sthree-", "amzn-s3-demo-"]
        .iter()
        .any(|reserved| bucket.starts_with(reserved))
        || ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
            .iter()
            .any(|reserved| bucket.ends_with(reserved))
    {
        return Err("uses a prefix or suffix S3 reserves");
    }
    Ok(())
}

/// Checks that `path` is a relative key: segments separated by single slashes, none of
/// them empty, `.` or `..`, and no control characters.
fn check_relative(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("is empty");
    }
    if path.starts_with('/') {
        return Err("starts with `/`");
    }
    if path.chars().any(char::is_control) {
        return Err("has a control character");
    }
    for segment in path.split('/') {
        match segment {
            "" => return Err("has an empty segment (`//` or a trailing `/`)"),
            "." | ".." => return Err("has a `.` or `..` segment"),
            _ => {}
        }
    }
    Ok(())
}

/// `sha256` as lowercase hex, if it is 64 hex digits.
fn normalize_sha256(sha256: &str) -> Result<String, StoreError> {
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(sha256.to_ascii_lowercase())
    } else {
        Err(StoreError::Sha256 {
            value: sha256.to_owned(),
        })
    }
}

fn digest(bytes: &[u8]) -> Streamed {
    Streamed {
        size: bytes.len() as u64,
        sha256: hex(&Sha256::digest(bytes)),
    }
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn local_error(action: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Local {
        action,
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    const ENV: &[(&str, &str)] = &[
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "very-secret-key"),
        ("AWS_SESSION_TOKEN", "session-token-value"),
        ("AWS_ENDPOINT_URL", "https://storage.example.com"),
        ("AWS_REGION", "eu-west-3"),
    ];

    #[test]
    fn destinations_parse_into_bucket_and_prefix() {
        let parsed = Destination::parse("s3://jisu-backups/production/db/").unwrap();
        assert_eq!(parsed.bucket(), "jisu-backups");
        assert_eq!(parsed.prefix(), "production/db");
        assert_eq!(parsed.to_string(), "s3://jisu-backups/production/db");
        let whole = Destination::parse("s3://jisu.backups-2").unwrap();
        assert_eq!((whole.bucket(), whole.prefix()), ("jisu.backups-2", ""));
        assert_eq!(whole.to_string(), "s3://jisu.backups-2");
    }

    #[test]
    fn bad_destinations_say_what_to_fix() {
        let cases = [
            (
                "https://jisu-backups/production",
                "the backup destination must be an s3:// URL, not https://: write it as s3://BUCKET/PREFIX, e.g. s3://jisu-backups/production",
            ),
            (
                "jisu-backups",
                "the backup destination must be an s3:// URL: write it as s3://BUCKET/PREFIX, e.g. s3://jisu-backups/production",
            ),
            (
                "s3://Jisu_Backups/x",
                "the backup destination's bucket name `Jisu_Backups` has a character other than a lowercase letter, digit, dot or hyphen: S3 bucket names are 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit",
            ),
            (
                "s3://production/../other",
                "the backup destination's prefix `../other` has a `.` or `..` segment: write it as segments separated by single slashes, none of them `.` or `..`",
            ),
            (
                "s3://jisu-backups/a//b",
                "the backup destination's prefix `a//b` has an empty segment (`//` or a trailing `/`): write it as segments separated by single slashes, none of them `.` or `..`",
            ),
        ];
        for (url, message) in cases {
            assert_eq!(Destination::parse(url).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        let problems = [
            ("ab", "is not 3 to 63 characters long"),
            ("-jisu", "does not start and end with a letter or digit"),
            ("jisu.", "does not start and end with a letter or digit"),
            ("jisu..backups", "has two dots in a row"),
            ("192.168.1.10", "is an IP address"),
            ("xn--jisu", "uses a prefix or suffix S3 reserves"),
            ("jisu-s3alias", "uses a prefix or suffix S3 reserves"),
        ];
        for (bucket, problem) in problems {
            assert_eq!(check_bucket(bucket), Err(problem), "{bucket}");
        }
        assert_eq!(check_bucket(&"a".repeat(63)), Ok(()));
        assert!(check_bucket(&"a".repeat(64)).is_err());
    }

    #[test]
    fn credentials_in_the_destination_are_refused_without_echoing_them() {
        let err = Destination::parse("s3://AKID:hunter2@jisu-backups/x").unwrap_err();
        assert_eq!(err, DestinationError::Authority);
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn defaults_come_from_the_environment_and_are_never_shown() {
        let store = Store::open_with(
            "s3://jisu-backups/prod",
            StoreSettings::default(),
            &lookup(ENV),
        )
        .unwrap();
        let shown = format!("{store} {store:?}");
        assert_eq!(
            store.to_string(),
            "s3://jisu-backups/prod at https://storage.example.com (region eu-west-3)"
        );
        for secret in ["AKIDEXAMPLE", "very-secret-key", "session-token-value"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let credentials = Credentials::from_lookup(&lookup(ENV)).unwrap();
        assert_eq!(format!("{credentials:?}"), "Credentials { .. }");
        assert_eq!(
            credentials.session_token.as_deref(),
            Some("session-token-value")
        );
    }

    #[test]
    fn settings_win_over_the_environment_and_aws_is_the_default() {
        let only_keys = &[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret-key"),
        ];
        let store = Store::open_with(
            "s3://jisu-backups",
            StoreSettings::default(),
            &lookup(only_keys),
        )
        .unwrap();
        assert_eq!(
            store.to_string(),
            "s3://jisu-backups (AWS, region us-east-1)"
        );
        let settings = StoreSettings {
            endpoint: Some("http://127.0.0.1:9000/".to_owned()),
            region: Some("local".to_owned()),
            allow_http: true,
            credentials: None,
        };
        let store = Store::open_with("s3://jisu-backups/x", settings, &lookup(ENV)).unwrap();
        assert_eq!(
            store.to_string(),
            "s3://jisu-backups/x at http://127.0.0.1:9000 (region local)"
        );
    }

    #[test]
    fn missing_credentials_say_which_variables_to_set() {
        let err = Store::open_with(
            "s3://jisu-backups",
            StoreSettings::default(),
            &lookup(&[("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")]),
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::MissingCredentials));
        assert!(
            err.to_string()
                .contains("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        );
    }

    #[test]
    fn endpoints_are_checked() {
        assert_eq!(
            check_endpoint("https://s3.example.com:8443/", false).unwrap(),
            "https://s3.example.com:8443"
        );
        let problems = [
            ("http://127.0.0.1:9000", false, "is plain HTTP"),
            ("ftp://example.com", true, "is neither https:// nor http://"),
            (
                "https://s3.example.com/bucket",
                false,
                "has a path, query or fragment",
            ),
            ("not a url", false, "is not a URL"),
        ];
        for (endpoint, allow_http, problem) in problems {
            let message = check_endpoint(endpoint, allow_http)
                .unwrap_err()
                .to_string();
            assert!(message.contains(problem), "{endpoint}: {message}");
        }
        let message = check_endpoint("https://AKID:hunter2@s3.example.com", false)
            .unwrap_err()
            .to_string();
        assert!(message.contains("holds a user or password"), "{message}");
        assert!(
            !message.contains("hunter2") && !message.contains("AKID"),
            "{message}"
        );
    }

    #[test]
    fn keys_must_be_clean_relative_paths() {
        assert_eq!(check_relative("2026-10-20/postgres.dump"), Ok(()));
        for key in ["", "/abs", "a//b", "a/", "../up", "a/./b", "tab\there"] {
            assert!(check_relative(key).is_err(), "{key:?}");
        }
        let err = normalize_sha256("abc").unwrap_err().to_string();
        assert!(err.contains("is not 64 hexadecimal digits"), "{err}");
        assert_eq!(normalize_sha256(&"AB".repeat(32)).unwrap(), "ab".repeat(32));
    }

    #[test]
    fn parts_grow_only_when_a_file_needs_more_than_10000() {
        const GIB: u64 = 1024 * 1024 * 1024;
        assert_eq!(part_size(20 * 1024 * 1024), PART_SIZE);
        assert_eq!(part_size(78 * GIB), PART_SIZE);
        let size = part_size(200 * GIB);
        assert_eq!(size, 21 * 1024 * 1024);
        assert!(200 * GIB <= size as u64 * MAX_PARTS);
    }

    #[test]
    fn keys_map_below_the_prefix_and_back() {
        let only_keys = &[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret-key"),
        ];
        let store = Store::open_with(
            "s3://jisu-backups/prod/eu",
            StoreSettings::default(),
            &lookup(only_keys),
        )
        .unwrap();
        let location = store.location("2026/db.dump").unwrap();
        assert_eq!(location.as_ref(), "prod/eu/2026/db.dump");
        let unusual = store.location("2026/db~1 [copy].dump").unwrap();
        assert_eq!(unusual.as_ref(), "prod/eu/2026/db~1 [copy].dump");
        assert_eq!(store.relative(&location).unwrap(), "2026/db.dump");
        let outside = ObjectPath::from("prod/euro/x");
        assert!(store.relative(&outside).is_err());
        let err = store.location("../x").unwrap_err().to_string();
        assert!(
            err.starts_with("backup key `../x` has a `.` or `..` segment"),
            "{err}"
        );
    }
}
