//! Reading response bodies with a size limit. A registry (or anything pretending to be one)
//! chooses how much it sends; every body is read in chunks and abandoned as soon as it
//! passes the limit for its kind, and a `Content-Length` over the limit is refused before
//! anything is read.

use bytes::{Bytes, BytesMut};
use reqwest::Response;

use super::error::RegistryError;

/// Largest manifest accepted: registries themselves refuse to store larger ones
/// (distribution and ghcr.io cap manifests at 4 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
/// Largest token service reply accepted (tokens are a few kilobytes).
pub const MAX_TOKEN_REPLY_BYTES: u64 = 1024 * 1024;
/// Largest page of a tag list accepted (a registry that ignores `n` may send every tag).
pub const MAX_TAG_PAGE_BYTES: u64 = 8 * 1024 * 1024;
/// Largest image config accepted (configs are small; a larger "config" is not one).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// How much of an error body is read; the rest is dropped unread (only a short summary
/// of it is ever shown).
pub const MAX_ERROR_BODY_BYTES: u64 = 64 * 1024;

/// Reads `response`'s body, failing with [`RegistryError::BodyTooLarge`] once it is over
/// `limit` bytes (or when its `Content-Length` says it will be); `what` names the body in
/// that error and `operation` names the request in transport errors.
pub async fn read_capped(
    mut response: Response,
    limit: u64,
    what: &str,
    operation: &str,
) -> Result<Bytes, RegistryError> {
    let too_large = || RegistryError::BodyTooLarge {
        operation: operation.to_owned(),
        what: what.to_owned(),
        limit,
    };
    if response.content_length().is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| RegistryError::Transport {
            operation: operation.to_owned(),
            source,
        })?
    {
        if body.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads at most [`MAX_ERROR_BODY_BYTES`] of an error response's body, for a summary;
/// a body that breaks off or is longer is cut, never an error of its own.
pub async fn read_error_body(mut response: Response) -> Bytes {
    let mut body = BytesMut::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_ERROR_BODY_BYTES as usize - body.len();
        if chunk.len() >= room {
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    body.freeze()
}
