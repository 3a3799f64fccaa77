//! Blob operations of the registry client: existence checks, cross-repository mounts,
//! streamed copies after a refused mount, and monolithic uploads.

use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};
use tracing::warn;

use super::client::{RegistryClient, content_digest, header_string};
use super::counter::RequestKind;
use super::digest::{Digest, DigestWriter};
use super::error::RegistryError;
use super::manifest::Descriptor;

/// Size of each PATCH when streaming a blob between repositories: bounded memory, few requests.
const COPY_CHUNK: usize = 8 * 1024 * 1024;

/// Result of a cross-repository mount request.
#[derive(Debug)]
pub enum MountOutcome {
    /// 201: the blob is now in the destination repository; no data moved.
    Mounted,
    /// 202: the registry opened an upload session instead (mount refused).
    Refused {
        /// The upload session the registry opened, to stream into or cancel.
        upload: Url,
    },
}

impl RegistryClient {
    /// Whether `repository` has blob `digest`.
    pub async fn blob_exists(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let url = self.url(&format!("v2/{repository}/blobs/{digest}"))?;
        let operation = format!("HEAD blob {digest} in {repository}");
        let response = self
            .send(RequestKind::BlobHead, &operation, |http| {
                http.head(url.clone())
            })
            .await?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.failure(&operation, response).await),
        }
    }

    /// Asks the registry to mount `digest` from `from` into `to` without moving data.
    pub async fn mount_blob(
        &self,
        to: &str,
        from: &str,
        digest: &Digest,
    ) -> Result<MountOutcome, RegistryError> {
        let mut url = self.url(&format!("v2/{to}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from);
        let operation = format!("mount blob {digest} from {from} into {to}");
        let response = self
            .send(RequestKind::BlobMount, &operation, |http| {
                http.post(url.clone()).header(CONTENT_LENGTH, 0)
            })
            .await?;
        match response.status() {
            StatusCode::CREATED => Ok(MountOutcome::Mounted),
            StatusCode::ACCEPTED => Ok(MountOutcome::Refused {
                upload: self.location(&operation, &response)?,
            }),
            _ => Err(self.failure(&operation, response).await),
        }
    }

    fn location(&self, operation: &str, response: &Response) -> Result<Url, RegistryError> {
        let location = header_string(response.headers(), LOCATION.as_str()).ok_or_else(|| {
            RegistryError::Protocol {
                operation: operation.to_owned(),
                problem: "response has no Location header".into(),
            }
        })?;
        // Location may be absolute or relative to the registry.
        response
            .url()
            .join(&location)
            .map_err(|e| RegistryError::Protocol {
                operation: operation.to_owned(),
                problem: format!(
                    "Location {} is not a URL: {e}",
                    super::server_text::shown(&location)
                ),
            })
    }

    /// Abandons an upload session (after a refused mount that will not be streamed into).
    pub async fn cancel_upload(&self, upload: &Url) -> Result<(), RegistryError> {
        let operation = "cancel blob upload".to_owned();
        let response = self
            .send(RequestKind::BlobUpload, &operation, |http| {
                http.delete(upload.clone())
            })
            .await?;
        if response.status().is_success() || response.status() == StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.failure(&operation, response).await)
        }
    }

    /// Streams blob `blob` from repository `from` into the open upload session `upload`,
    /// in bounded chunks, verifying size and digest; returns the bytes moved. On failure the
    /// upload session is cancelled so the registry keeps no half-written blob.
    pub async fn copy_blob(
        &self,
        from: &str,
        blob: &Descriptor,
        upload: Url,
    ) -> Result<u64, RegistryError> {
        let mut upload = upload;
        match self.stream_blob(from, blob, &mut upload).await {
            Ok(moved) => Ok(moved),
            Err(e) => {
                if let Err(cancel) = self.cancel_upload(&upload).await {
                    warn!(error = %cancel, "could not cancel the failed blob upload");
                }
                Err(e)
            }
        }
    }

    /// The body of [`Self::copy_blob`]; keeps `upload` at the session's latest location.
    async fn stream_blob(
        &self,
        from: &str,
        blob: &Descriptor,
        upload: &mut Url,
    ) -> Result<u64, RegistryError> {
        let url = self.url(&format!("v2/{from}/blobs/{}", blob.digest))?;
        let operation = format!("GET blob {} from {from}", blob.digest);
        let mut source = self
            .send(RequestKind::BlobGet, &operation, |http| {
                http.get(url.clone())
            })
            .await?;
        match source.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(RegistryError::BlobNotFound {
                    repository: from.to_owned(),
                    digest: blob.digest.clone(),
                });
            }
            _ => return Err(self.failure(&operation, source).await),
        }
        let mut hasher = DigestWriter::default();
        let capacity = usize::try_from(blob.size)
            .unwrap_or(COPY_CHUNK)
            .min(COPY_CHUNK);
        let mut pending: Vec<u8> = Vec::with_capacity(capacity);
        let mut offset = 0u64;
        loop {
            let chunk = source
                .chunk()
                .await
                .map_err(|source| RegistryError::Transport {
                    operation: operation.clone(),
                    source,
                })?;
            let done = chunk.is_none();
            if let Some(chunk) = chunk {
                hasher.update(&chunk);
                pending.extend_from_slice(&chunk);
            }
            if !pending.is_empty() && (done || pending.len() >= COPY_CHUNK) {
                let data = Bytes::from(std::mem::take(&mut pending));
                let len = data.len() as u64;
                *upload = self.upload_chunk(upload.clone(), offset, data).await?;
                offset += len;
            }
            if done {
                break;
            }
        }
        let actual = hasher.finish();
        if actual != blob.digest || offset != blob.size {
            return Err(RegistryError::DigestMismatch {
                what: format!(
                    "blob copied from {from} ({offset} bytes, descriptor says {})",
                    blob.size
                ),
                expected: blob.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        self.finish_upload(upload.clone(), &blob.digest, Bytes::new())
            .await?;
        Ok(offset)
    }

    async fn upload_chunk(
        &self,
        upload: Url,
        offset: u64,
        data: Bytes,
    ) -> Result<Url, RegistryError> {
        let operation = format!("PATCH blob upload at offset {offset}");
        let end = offset + data.len() as u64 - 1;
        let response = self
            .send(RequestKind::BlobUpload, &operation, |http| {
                http.patch(upload.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, format!("{offset}-{end}"))
                    .body(data.clone())
            })
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.failure(&operation, response).await);
        }
        self.location(&operation, &response)
    }

    async fn finish_upload(
        &self,
        mut upload: Url,
        digest: &Digest,
        data: Bytes,
    ) -> Result<(), RegistryError> {
        upload
            .query_pairs_mut()
            .append_pair("digest", digest.as_str());
        let operation = format!("finish blob upload {digest}");
        let response = self
            .send(RequestKind::BlobUpload, &operation, |http| {
                http.request(Method::PUT, upload.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(data.clone())
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(self.failure(&operation, response).await);
        }
        if let Some(stored) = content_digest(response.headers())
            && stored != *digest
        {
            return Err(RegistryError::DigestMismatch {
                what: "uploaded blob".into(),
                expected: digest.to_string(),
                actual: stored.to_string(),
            });
        }
        Ok(())
    }

    /// Uploads `data` to `repository` as one blob (POST, then PUT with the body) and
    /// returns its digest. Skips the upload when the blob is already there.
    pub async fn push_blob(&self, repository: &str, data: Bytes) -> Result<Digest, RegistryError> {
        let digest = Digest::of(&data);
        if self.blob_exists(repository, &digest).await? {
            return Ok(digest);
        }
        let url = self.url(&format!("v2/{repository}/blobs/uploads/"))?;
        let operation = format!("start blob upload to {repository}");
        let response = self
            .send(RequestKind::BlobUpload, &operation, |http| {
                http.post(url.clone()).header(CONTENT_LENGTH, 0)
            })
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(self.failure(&operation, response).await);
        }
        let upload = self.location(&operation, &response)?;
        self.finish_upload(upload, &digest, data).await?;
        Ok(digest)
    }
}
