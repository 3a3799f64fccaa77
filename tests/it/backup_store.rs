//! The backup store against a real S3-compatible server (moto): streaming round trips
//! through single and multipart uploads, listing, deleting, and the verification that
//! refuses truncated or corrupted objects on the way up and on the way down.

use std::path::Path;

use jisu_deploy::backup::store::{Credentials, Store, StoreError, StoreSettings};
use sha2::{Digest, Sha256};

use crate::support::s3_server::{MotoServer, Tamper, TamperingProxy};

const BUCKET: &str = "jisu-backups";
const MIB: usize = 1024 * 1024;

/// Settings for a test server: fixed fake credentials passed in, so no test touches the
/// process environment (tests run in parallel threads of one process).
fn settings(endpoint: &str) -> StoreSettings {
    StoreSettings {
        endpoint: Some(endpoint.to_owned()),
        region: Some("us-east-1".to_owned()),
        allow_http: true,
        credentials: Some(Credentials {
            access_key_id: "testing-key-id".to_owned(),
            secret_access_key: "testing-secret".to_owned(),
            session_token: None,
        }),
    }
}

/// A server with the bucket, and a store on `s3://jisu-backups/production`.
async fn setup() -> (MotoServer, Store) {
    let server = MotoServer::start().await;
    server.create_bucket(BUCKET).await;
    let store = Store::open(
        &format!("s3://{BUCKET}/production"),
        settings(&server.endpoint()),
    )
    .unwrap();
    (server, store)
}

/// `len` bytes that do not repeat in any short period (xorshift), so a part swapped or
/// shifted would change the digest.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `bytes` to `dir/name` and returns the path and its sha256.
fn local_file(dir: &Path, name: &str, bytes: &[u8]) -> (std::path::PathBuf, String) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    (path, sha256(bytes))
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

async fn keys(store: &Store) -> Vec<String> {
    store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|listed| listed.key)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_multipart_uploads_round_trip_verified() {
    let (server, store) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let small = data(300 * 1024, 1);
    let large = data(20 * MIB, 2);
    let (small_path, small_sha) = local_file(dir.path(), "redis.rdb", &small);
    let (large_path, large_sha) = local_file(dir.path(), "postgres.dump", &large);

    let up = store
        .upload("2026-10-20/redis.rdb", &small_path, &small_sha)
        .await
        .unwrap();
    assert_eq!((up.size, up.multipart), (small.len() as u64, false));
    assert_eq!(up.sha256, small_sha);
    let up = store
        .upload(
            "2026-10-20/postgres.dump",
            &large_path,
            &large_sha.to_uppercase(),
        )
        .await
        .unwrap();
    assert_eq!((up.size, up.multipart), (large.len() as u64, true));
    assert_eq!(up.sha256, large_sha);
    // 20 MiB in 8 MiB parts: the server saw three part uploads.
    let parts = server.log().matches("partNumber=").count();
    assert_eq!(parts, 3, "{}", server.log());

    let back = dir.path().join("back");
    std::fs::create_dir(&back).unwrap();
    for (key, bytes, sha) in [
        ("2026-10-20/redis.rdb", &small, &small_sha),
        ("2026-10-20/postgres.dump", &large, &large_sha),
    ] {
        let target = back.join(key.replace('/', "_"));
        let size = store
            .download(key, &target, sha, 64 * MIB as u64)
            .await
            .unwrap();
        assert_eq!(size, bytes.len() as u64);
        assert!(std::fs::read(&target).unwrap() == *bytes, "{key} differs");
    }
    assert_eq!(
        entries(&back),
        ["2026-10-20_postgres.dump", "2026-10-20_redis.rdb"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_is_relative_sorted_and_confined_to_the_prefix_and_delete_removes() {
    let (server, store) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let before = jiff::Timestamp::now();
    for (key, len) in [
        ("2026-10-21/postgres~retry 1.dump", 2000),
        ("2026-10-20/redis.rdb", 1000),
        ("2026-10-20/postgres.dump", 3000),
    ] {
        let (path, sha) = local_file(dir.path(), "file", &data(len, len as u64));
        store.upload(key, &path, &sha).await.unwrap();
    }
    let manifest = br#"{"id":"2026-10-20","verified":true}"#.to_vec();
    store
        .put_bytes("2026-10-20/manifest.json", manifest.clone())
        .await
        .unwrap();
    // A neighbour whose name starts like the prefix is not inside it.
    server
        .put_object(BUCKET, "production-old/x.dump", b"other".to_vec())
        .await;

    let listed = store.list("").await.unwrap();
    let summary: Vec<(&str, u64)> = listed.iter().map(|l| (l.key.as_str(), l.size)).collect();
    assert_eq!(
        summary,
        [
            ("2026-10-20/manifest.json", manifest.len() as u64),
            ("2026-10-20/postgres.dump", 3000),
            ("2026-10-20/redis.rdb", 1000),
            ("2026-10-21/postgres~retry 1.dump", 2000),
        ]
    );
    let after = jiff::Timestamp::now();
    for l in &listed {
        // S3 keeps whole seconds.
        assert!(
            l.last_modified
                >= before
                    .checked_sub(jiff::SignedDuration::from_secs(1))
                    .unwrap()
                && l.last_modified <= after,
            "{l:?}"
        );
    }
    let under: Vec<String> = store
        .list("2026-10-21")
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.key)
        .collect();
    assert_eq!(under, ["2026-10-21/postgres~retry 1.dump"]);

    assert_eq!(
        store
            .get_bytes("2026-10-20/manifest.json", 1024)
            .await
            .unwrap(),
        manifest
    );
    let err = store
        .get_bytes("2026-10-20/postgres.dump", 1024)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TooLarge {
                size: 3000,
                max_bytes: 1024,
                ..
            }
        ),
        "{err}"
    );

    let deleted = store
        .delete(&[
            "2026-10-20/postgres.dump".to_owned(),
            "2026-10-20/redis.rdb".to_owned(),
        ])
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    assert_eq!(
        keys(&store).await,
        [
            "2026-10-20/manifest.json",
            "2026-10-21/postgres~retry 1.dump"
        ]
    );
    let err = store
        .get_bytes("2026-10-20/redis.rdb", 1024)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_with_the_wrong_sha256_or_over_the_limit_leaves_no_file() {
    let (_server, store) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(5000, 3);
    let (path, sha) = local_file(dir.path(), "upload", &bytes);
    store.upload("k8s/objects.json", &path, &sha).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("objects.json");

    let wrong = sha256(b"something else");
    let err = store
        .download("k8s/objects.json", &target, &wrong, 1 << 20)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, StoreError::DownloadMismatch { .. }),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "expected sha256 {wrong}, found 5000 bytes with sha256 {sha}"
        )),
        "{message}"
    );
    assert!(entries(out.path()).is_empty(), "{:?}", entries(out.path()));

    let err = store
        .download("k8s/objects.json", &target, &sha, 4096)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TooLarge {
                size: 5000,
                max_bytes: 4096,
                ..
            }
        ),
        "{err}"
    );
    assert!(entries(out.path()).is_empty(), "{:?}", entries(out.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_truncated_on_the_server_is_refused_on_download() {
    let (server, store) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(64 * 1024, 4);
    let (path, sha) = local_file(dir.path(), "upload", &bytes);
    store
        .upload("2026-10-20/redis.rdb", &path, &sha)
        .await
        .unwrap();
    // The server's copy loses its last 4 KiB behind the store's back.
    server
        .put_object(
            BUCKET,
            "production/2026-10-20/redis.rdb",
            bytes[..60 * 1024].to_vec(),
        )
        .await;

    let target = dir.path().join("restored.rdb");
    let err = store
        .download("2026-10-20/redis.rdb", &target, &sha, 1 << 20)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "expected sha256 {sha}, found 61440 bytes with sha256 {}",
            sha256(&bytes[..60 * 1024])
        )),
        "{message}"
    );
    assert!(message.contains("truncated or corrupt"), "{message}");
    assert!(!target.exists());
    assert_eq!(entries(dir.path()), ["upload"]);
}

/// The upload's bytes are damaged between the client and the server: the tampering proxy
/// drops the last 1000 bytes of the PUT body and sends a matching Content-Length, so moto
/// stores the short object and answers 200 like a healthy upload. Only reading the object
/// back can tell; the store must notice, delete the object and fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_truncated_on_the_way_is_detected_and_deleted() {
    let (server, direct) = setup().await;
    let proxy = TamperingProxy::start(server.addr(), Tamper::Truncate(1000)).await;
    let through_proxy =
        Store::open(&format!("s3://{BUCKET}/production"), settings(&proxy.url)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(MIB, 5);
    let (path, sha) = local_file(dir.path(), "postgres.dump", &bytes);

    let err = through_proxy
        .upload("2026-10-20/postgres.dump", &path, &sha)
        .await
        .unwrap_err();
    assert!(proxy.tampered());
    let message = err.to_string();
    assert!(
        matches!(err, StoreError::UploadMismatch { .. }),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "uploaded object `2026-10-20/postgres.dump` in s3://{BUCKET}/production at {} (region us-east-1) did not read back as written: expected 1048576 bytes with sha256 {sha}, found 1047576 bytes with sha256 {}; the object was deleted; upload it again",
            proxy.url,
            sha256(&bytes[..bytes.len() - 1000])
        )),
        "{message}"
    );
    assert!(keys(&direct).await.is_empty());
}

/// As above through a multipart upload, with one byte of a part inverted: the size is
/// right and only the digest can tell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_upload_corrupted_on_the_way_is_detected_and_deleted() {
    let (server, direct) = setup().await;
    let proxy = TamperingProxy::start(server.addr(), Tamper::Flip(4321)).await;
    let through_proxy =
        Store::open(&format!("s3://{BUCKET}/production"), settings(&proxy.url)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(20 * MIB, 6);
    let (path, sha) = local_file(dir.path(), "postgres.dump", &bytes);

    let err = through_proxy
        .upload("2026-10-20/postgres.dump", &path, &sha)
        .await
        .unwrap_err();
    assert!(proxy.tampered());
    match &err {
        StoreError::UploadMismatch {
            expected_size,
            found_size,
            expected_sha256,
            found_sha256,
            ..
        } => {
            assert_eq!(
                (*expected_size, *found_size),
                (20 * MIB as u64, 20 * MIB as u64)
            );
            assert_eq!(expected_sha256, &sha);
            assert_ne!(found_sha256, &sha);
        }
        other => panic!("expected a mismatch, got: {other}"),
    }
    assert!(keys(&direct).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_file_that_is_not_the_expected_one_is_not_stored() {
    let (_server, store) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let expected = sha256(b"the dump as it was written");
    for (name, len) in [("small.dump", 1000), ("large.dump", 9 * MIB)] {
        let (path, found) = local_file(dir.path(), name, &data(len, 7));
        let err = store
            .upload(&format!("2026-10-20/{name}"), &path, &expected)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "has sha256 {found}, not the expected {expected}: the file changed after it was written"
            )),
            "{err}"
        );
    }
    assert!(keys(&store).await.is_empty());
}

#[test]
fn a_bad_destination_url_says_what_to_fix() {
    let message = Store::open(
        "s3://Jisu_Backups/production",
        settings("http://127.0.0.1:1"),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        message,
        "the backup destination's bucket name `Jisu_Backups` has a character other than a lowercase letter, digit, dot or hyphen: S3 bucket names are 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit"
    );
    let message = Store::open("jisu-backups/production", settings("http://127.0.0.1:1"))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("write it as s3://BUCKET/PREFIX"),
        "{message}"
    );
    let message = Store::open(
        "s3://jisu-backups/production/../staging",
        settings("http://127.0.0.1:1"),
    )
    .unwrap_err()
    .to_string();
    assert!(message.contains("has a `.` or `..` segment"), "{message}");
}
