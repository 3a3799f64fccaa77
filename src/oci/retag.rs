//! Retag and copy images inside one registry without re-serializing manifests.
//!
//! Inside one repository a retag is one manifest GET, one HEAD of the destination and, when
//! the destination differs, one PUT of the identical bytes. Across repositories every blob
//! is mounted (no data moves), child manifests are PUT by digest, then the top one by tag,
//! so multi-platform indexes and attestation manifests arrive byte-identical.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::auth::repository_scope;
use super::blobs::MountOutcome;
use super::client::RegistryClient;
use super::counter::RequestCounts;
use super::digest::Digest;
use super::error::RegistryError;
use super::manifest::{ManifestKind, manifest_kind, manifest_refs};
use super::reference::Reference;

/// How a retag may behave.
#[derive(Debug, Clone, Default)]
pub struct RetagOptions {
    /// When the registry refuses a cross-repository mount, stream the blob through this
    /// process instead of failing. Off by default: on ghcr a refused mount usually means a
    /// permission problem that copying would hide, and copying costs bandwidth.
    pub allow_blob_copy: bool,
}

/// What a retag did.
#[derive(Debug, Clone)]
pub struct RetagOutcome {
    /// The source as given.
    pub source: Reference,
    /// The destination as given.
    pub destination: Reference,
    /// Digest of the top manifest (the same at source and destination).
    pub digest: Digest,
    /// Its media type as the registry sent it.
    pub media_type: Option<String>,
    /// Whether the destination tag was written (false when it already had this digest).
    pub written: bool,
    /// Manifests PUT, the top one included.
    pub manifests_written: usize,
    /// Child manifests the destination repository already had.
    pub manifests_present: usize,
    /// Blobs mounted from the source repository (no data moved).
    pub blobs_mounted: usize,
    /// Blobs streamed through this process after a refused mount.
    pub blobs_copied: usize,
    /// Bytes of blob data moved by those copies.
    pub blob_bytes_copied: u64,
    /// Requests this retag made.
    pub requests: RequestCounts,
}

impl std::fmt::Display for RetagOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let action = if self.written {
            "tagged"
        } else {
            "already tagged"
        };
        write!(
            f,
            "{} -> {} {action} {}",
            self.source, self.destination, self.digest
        )?;
        if self.manifests_written > 1 || self.blobs_mounted > 0 || self.blobs_copied > 0 {
            write!(
                f,
                "; {} manifests written, {} blobs mounted, {} blobs copied ({} bytes)",
                self.manifests_written,
                self.blobs_mounted,
                self.blobs_copied,
                self.blob_bytes_copied
            )?;
        }
        write!(f, "; {}", self.requests)
    }
}

/// Points `dst` (a tag) at the manifest `src` (tag or digest) names, on the same registry.
pub async fn retag(
    client: &RegistryClient,
    src: &Reference,
    dst: &Reference,
    options: &RetagOptions,
) -> Result<RetagOutcome, RegistryError> {
    if src.registry() != dst.registry() {
        return Err(RegistryError::CrossRegistry {
            src: src.to_string(),
            dst: dst.to_string(),
        });
    }
    if src.manifest_target().is_none() {
        return Err(RegistryError::SourceNeedsTagOrDigest(src.to_string()));
    }
    if dst.tag().is_none() || dst.digest().is_some() {
        return Err(RegistryError::DestinationNeedsTag(dst.to_string()));
    }
    let before = client.requests();
    let same_repository = src.repository() == dst.repository();
    let mut scopes = vec![repository_scope(dst.repository(), true)];
    if !same_repository {
        scopes.push(repository_scope(src.repository(), false));
    }
    client.request_scopes(scopes).await;

    let manifest = client.get_manifest(src).await?;
    let mut outcome = RetagOutcome {
        source: src.clone(),
        destination: dst.clone(),
        digest: manifest.digest.clone(),
        media_type: manifest.content_type.clone(),
        written: false,
        manifests_written: 0,
        manifests_present: 0,
        blobs_mounted: 0,
        blobs_copied: 0,
        blob_bytes_copied: 0,
        requests: RequestCounts::default(),
    };
    if client.head_manifest(dst).await?.as_ref() == Some(&manifest.digest) {
        info!(%src, %dst, digest = %manifest.digest, "destination already points at this digest; nothing written");
        outcome.requests = client.requests().since(&before);
        return Ok(outcome);
    }
    let content_type =
        content_type_for_put(src, manifest.content_type.as_deref(), &manifest.bytes)?;
    if !same_repository {
        let mut copy = TreeCopy {
            client,
            src,
            dst,
            options,
            outcome: &mut outcome,
        };
        copy.copy_references(src, &manifest.bytes, &content_type)
            .await?;
    }
    let stored = client
        .put_manifest(dst, manifest.bytes.clone(), &content_type)
        .await?;
    verify_stored(dst, &manifest.digest, stored)?;
    outcome.written = true;
    outcome.manifests_written += 1;
    outcome.requests = client.requests().since(&before);
    info!(
        %src, %dst, digest = %outcome.digest,
        mounted = outcome.blobs_mounted, copied = outcome.blobs_copied,
        bytes = outcome.blob_bytes_copied, requests = %outcome.requests,
        "retagged"
    );
    Ok(outcome)
}

/// The Content-Type to PUT: exactly the one received. When the registry sent none (or
/// generic JSON) the body's own media type is used, because a PUT needs a specific one.
fn content_type_for_put(
    reference: &Reference,
    received: Option<&str>,
    body: &[u8],
) -> Result<String, RegistryError> {
    let manifest_error = |source| RegistryError::Manifest {
        reference: reference.to_string(),
        source,
    };
    let kind = manifest_kind(received, body).map_err(manifest_error)?;
    match received {
        Some(ct) if !ct.trim().is_empty() && !ct.starts_with("application/json") => {
            Ok(ct.to_owned())
        }
        _ => {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct MediaTypeOnly {
                media_type: Option<String>,
            }
            let declared = serde_json::from_slice::<MediaTypeOnly>(body)
                .ok()
                .and_then(|m| m.media_type);
            Ok(declared.unwrap_or_else(|| {
                match kind {
                    ManifestKind::Index => super::manifest::OCI_INDEX,
                    ManifestKind::Image => super::manifest::OCI_MANIFEST,
                }
                .to_owned()
            }))
        }
    }
}

/// Checks the digest a PUT response reports against the bytes sent.
fn verify_stored(
    reference: &Reference,
    expected: &Digest,
    stored: Option<Digest>,
) -> Result<(), RegistryError> {
    match stored {
        Some(stored) if stored != *expected => Err(RegistryError::DigestMismatch {
            what: format!("manifest stored as {reference}"),
            expected: expected.to_string(),
            actual: stored.to_string(),
        }),
        Some(_) => Ok(()),
        None => {
            // Not proof of corruption: some registries omit the header. The bytes sent are
            // the verified source bytes, so the stored digest can only be this one.
            warn!(%reference, "registry did not report the stored digest");
            Ok(())
        }
    }
}

/// State of one cross-repository copy.
struct TreeCopy<'a> {
    client: &'a RegistryClient,
    src: &'a Reference,
    dst: &'a Reference,
    options: &'a RetagOptions,
    outcome: &'a mut RetagOutcome,
}

type BoxedCopy<'f> = Pin<Box<dyn Future<Output = Result<(), RegistryError>> + Send + 'f>>;

impl TreeCopy<'_> {
    /// Makes everything `body` refers to present in the destination repository: blobs for
    /// an image manifest, child manifests (recursively) for an index.
    fn copy_references<'f>(
        &'f mut self,
        reference: &'f Reference,
        body: &'f [u8],
        content_type: &'f str,
    ) -> BoxedCopy<'f> {
        Box::pin(async move {
            let manifest_error = |source| RegistryError::Manifest {
                reference: reference.to_string(),
                source,
            };
            let kind = manifest_kind(Some(content_type), body).map_err(manifest_error)?;
            let refs = manifest_refs(kind, body).map_err(manifest_error)?;
            for blob in &refs.blobs {
                self.copy_blob(blob).await?;
            }
            for child in &refs.manifests {
                let dst_child = self.dst.with_digest(child.digest.clone());
                if self.client.head_manifest(&dst_child).await?.as_ref() == Some(&child.digest) {
                    debug!(%dst_child, "child manifest already present");
                    self.outcome.manifests_present += 1;
                    continue;
                }
                let src_child = self.src.with_digest(child.digest.clone());
                let fetched = self.client.get_manifest(&src_child).await?;
                let child_type = content_type_for_put(
                    &src_child,
                    fetched.content_type.as_deref(),
                    &fetched.bytes,
                )?;
                self.copy_references(&src_child, &fetched.bytes, &child_type)
                    .await?;
                let bytes: Bytes = fetched.bytes.clone();
                let stored = self
                    .client
                    .put_manifest(&dst_child, bytes, &child_type)
                    .await?;
                verify_stored(&dst_child, &child.digest, stored)?;
                self.outcome.manifests_written += 1;
            }
            Ok(())
        })
    }

    async fn copy_blob(&mut self, blob: &super::manifest::Descriptor) -> Result<(), RegistryError> {
        let (from, to) = (self.src.repository(), self.dst.repository());
        match self.client.mount_blob(to, from, &blob.digest).await? {
            MountOutcome::Mounted => {
                self.outcome.blobs_mounted += 1;
                Ok(())
            }
            MountOutcome::Refused { upload } if self.options.allow_blob_copy => {
                warn!(digest = %blob.digest, from, to, size = blob.size, "mount refused; streaming the blob");
                let moved = self.client.copy_blob(from, blob, upload).await?;
                self.outcome.blobs_copied += 1;
                self.outcome.blob_bytes_copied += moved;
                Ok(())
            }
            MountOutcome::Refused { upload } => {
                // Leave no dangling upload session behind; the refusal is the error to report.
                if let Err(e) = self.client.cancel_upload(&upload).await {
                    warn!(error = %e, "could not cancel the upload session a refused mount opened");
                }
                Err(RegistryError::MountRefused {
                    digest: blob.digest.clone(),
                    from: from.to_owned(),
                    to: to.to_owned(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::manifest::{DOCKER_MANIFEST, OCI_INDEX};

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn put_content_type_is_the_received_one_verbatim() {
        let ct = content_type_for_put(
            &r("ghcr.io/a/b:v1"),
            Some(DOCKER_MANIFEST),
            br#"{"config":{}}"#,
        )
        .unwrap();
        assert_eq!(ct, DOCKER_MANIFEST);
        let with_param = format!("{OCI_INDEX}; charset=utf-8");
        assert_eq!(
            content_type_for_put(&r("ghcr.io/a/b:v1"), Some(&with_param), b"{}").unwrap(),
            with_param
        );
    }

    #[test]
    fn put_content_type_falls_back_to_the_body_media_type() {
        let body = format!(r#"{{"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert_eq!(
            content_type_for_put(
                &r("ghcr.io/a/b:v1"),
                Some("application/json"),
                body.as_bytes()
            )
            .unwrap(),
            OCI_INDEX
        );
    }

    #[test]
    fn unsupported_manifest_names_the_reference() {
        let err = content_type_for_put(
            &r("ghcr.io/a/b:old"),
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
            b"{}",
        )
        .unwrap_err();
        assert!(err.to_string().contains("ghcr.io/a/b:old"), "{err}");
    }

    #[test]
    fn stored_digest_mismatch_is_an_error() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        assert!(verify_stored(&r("ghcr.io/a/b:v1"), &a, Some(a.clone())).is_ok());
        assert!(verify_stored(&r("ghcr.io/a/b:v1"), &a, None).is_ok());
        assert!(matches!(
            verify_stored(&r("ghcr.io/a/b:v1"), &a, Some(b)),
            Err(RegistryError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn outcome_summary_reads_as_one_line() {
        let digest = Digest::of(b"m");
        let mut outcome = RetagOutcome {
            source: r("ghcr.io/jisu/build:sha-1"),
            destination: r("ghcr.io/jisu/backend:sha-1"),
            digest: digest.clone(),
            media_type: None,
            written: true,
            manifests_written: 1,
            manifests_present: 0,
            blobs_mounted: 4,
            blobs_copied: 0,
            blob_bytes_copied: 0,
            requests: RequestCounts::default(),
        };
        assert_eq!(
            outcome.to_string(),
            format!(
                "ghcr.io/jisu/build:sha-1 -> ghcr.io/jisu/backend:sha-1 tagged {digest}; 1 manifests written, 4 blobs mounted, 0 blobs copied (0 bytes); 0 requests"
            )
        );
        outcome.written = false;
        outcome.blobs_mounted = 0;
        assert!(outcome.to_string().contains("already tagged"));
        assert!(!outcome.to_string().contains("mounted"));
    }

    #[tokio::test]
    async fn argument_errors_come_before_any_request() {
        let client = RegistryClient::new("ghcr.io", Default::default()).unwrap();
        let opts = RetagOptions::default();
        let err = retag(&client, &r("ghcr.io/a/b:v1"), &r("quay.io/a/b:v1"), &opts)
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::CrossRegistry { .. }));
        let err = retag(&client, &r("ghcr.io/a/b"), &r("ghcr.io/a/b:v1"), &opts)
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::SourceNeedsTagOrDigest(_)));
        let err = retag(&client, &r("ghcr.io/a/b:v1"), &r("ghcr.io/a/b"), &opts)
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::DestinationNeedsTag(_)));
        assert_eq!(client.requests().total(), 0);
    }
}
