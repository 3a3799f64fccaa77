//! Registry API reads and deletes that retention needs: the paginated tag list, small JSON
//! blobs (image configs, for creation times) and manifest deletion by digest.

use reqwest::StatusCode;
use reqwest::header::LINK;

use super::body::{MAX_CONFIG_BYTES, MAX_TAG_PAGE_BYTES, read_capped};
use super::client::RegistryClient;
use super::counter::RequestKind;
use super::digest::Digest;
use super::error::RegistryError;
use super::server_text::shown;

/// Tags asked for per page.
const TAGS_PER_PAGE: usize = 100;

/// Most pages of one tag list followed (100,000 tags at the page size asked for).
pub const MAX_TAG_PAGES: usize = 1_000;

/// Most tags one repository may list; past it the listing fails rather than be cut.
pub const MAX_TAGS: usize = 100_000;

/// The target of a `Link: <...>; rel="next"` header, if any.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_owned())
    })
}

impl RegistryClient {
    /// Every tag of `repository`, following `Link` pagination. An error on any page is an
    /// error: a partial list must never drive deletions.
    pub async fn list_tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let incomplete = |reason: String| RegistryError::ListingIncomplete {
            operation: format!("listing tags of {repository}"),
            reason,
        };
        let mut tags = Vec::new();
        let mut path = format!("v2/{repository}/tags/list?n={TAGS_PER_PAGE}");
        let mut fetched = std::collections::HashSet::new();
        let mut pages = 0;
        loop {
            pages += 1;
            if pages > MAX_TAG_PAGES {
                return Err(incomplete(format!(
                    "the registry still links a next page after {MAX_TAG_PAGES} pages"
                )));
            }
            let url = self.url(path.trim_start_matches('/'))?;
            let operation = format!("GET tag list of {repository}");
            // Credentials go only to the registry itself, never to a host a Link names.
            if url.origin() != self.url("")?.origin() {
                return Err(RegistryError::Protocol {
                    operation,
                    problem: format!(
                        "next page link points at another host: {}",
                        shown(url.as_str())
                    ),
                });
            }
            if !fetched.insert(url.to_string()) {
                return Err(incomplete(format!(
                    "the next page link repeats a page already fetched ({})",
                    shown(url.as_str())
                )));
            }
            let response = self
                .send(RequestKind::TagList, &operation, |http| {
                    http.get(url.clone())
                })
                .await?;
            match response.status() {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND if pages == 1 => return Ok(Vec::new()),
                _ => return Err(self.failure(&operation, response).await),
            }
            let next = response
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let body =
                read_capped(response, MAX_TAG_PAGE_BYTES, "tag list page", &operation).await?;
            let page: Page =
                serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                    operation: operation.clone(),
                    problem: format!("tag list is not JSON: {}", shown(&e.to_string())),
                })?;
            tags.extend(page.tags.unwrap_or_default());
            if tags.len() > MAX_TAGS {
                return Err(incomplete(format!("more than {MAX_TAGS} tags")));
            }
            match next {
                Some(target) => path = target,
                None => return Ok(tags),
            }
        }
    }

    /// A small JSON blob (an image config), verified against its digest.
    pub async fn get_json_blob(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<serde_json::Value, RegistryError> {
        let url = self.url(&format!("v2/{repository}/blobs/{digest}"))?;
        let operation = format!("GET blob {digest} in {repository}");
        let response = self
            .send(RequestKind::BlobGet, &operation, |http| {
                http.get(url.clone())
            })
            .await?;
        if response.status() != StatusCode::OK {
            return Err(self.failure(&operation, response).await);
        }
        let body = read_capped(response, MAX_CONFIG_BYTES, "image config", &operation).await?;
        let actual = Digest::of(&body);
        if actual != *digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("blob in {repository}"),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
            operation,
            problem: format!("not JSON: {}", shown(&e.to_string())),
        })
    }

    /// Deletes the manifest `digest` from `repository` (and with it every tag naming it).
    pub async fn delete_manifest(
        &self,
        repository: &str,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let url = self.url(&format!("v2/{repository}/manifests/{digest}"))?;
        let operation = format!("DELETE manifest {digest} in {repository}");
        let response = self
            .send(RequestKind::ManifestDelete, &operation, |http| {
                http.delete(url.clone())
            })
            .await?;
        match response.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => Ok(()),
            _ => Err(self.failure(&operation, response).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_are_found_among_others() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=x&n=100>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?last=x&n=100")
        );
        assert_eq!(
            next_link(r#"<https://h/x?page=1>; rel="prev", <https://h/x?page=3>; rel="next""#)
                .as_deref(),
            Some("https://h/x?page=3")
        );
        assert_eq!(next_link(r#"<https://h/x?page=1>; rel="last""#), None);
    }
}
