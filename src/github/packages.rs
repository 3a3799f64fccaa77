//! GitHub Packages REST API for container images (ghcr.io), through octocrab: listing every
//! version of a package (following `Link` pagination) and deleting one by id. Rate limits
//! (429/403 with `Retry-After` or `x-ratelimit-reset`) are waited out by octocrab's retry
//! layer, configured here.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use octocrab::Octocrab;
use octocrab::models::packages::{PackageType, PackageVersion};
use octocrab::service::middleware::retry::{NoOpRateLimitMetrics, RetryConfig};

use crate::images::prune::{Version, VersionId};
use crate::oci::auth::Secret;

/// Versions asked for per page (the API's maximum).
const PER_PAGE: u8 = 100;

/// Retries of one request on rate limits and server errors.
const MAX_RETRIES: usize = 4;

/// Whose namespace the package lives in; the API paths differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageOwner {
    /// `/orgs/{org}/packages/...`.
    Org(String),
    /// `/users/{username}/packages/...`.
    User(String),
}

/// A GitHub Packages client for one owner.
pub struct PackagesClient {
    crab: Octocrab,
    owner: PackageOwner,
}

impl std::fmt::Debug for PackagesClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackagesClient")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl PackagesClient {
    /// A client for the API at `api_base` (`https://api.github.com`, or a test server).
    pub fn new(api_base: &str, token: &Secret, owner: PackageOwner) -> anyhow::Result<Self> {
        crate::tls::ensure_provider();
        let crab = Octocrab::builder()
            .base_uri(api_base)
            .with_context(|| format!("GitHub API URL {api_base}"))?
            .personal_token(token.expose().to_owned())
            .add_retry_config(RetryConfig::HandleRateLimits {
                metrics: Arc::new(NoOpRateLimitMetrics),
                max_retries: MAX_RETRIES,
                min_wait_seconds: 1,
                // A 403 without rate-limit headers is a permission problem: report it.
                retry_on_forbidden: false,
            })
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(60)))
            .build()
            .context("building the GitHub client")?;
        Ok(PackagesClient { crab, owner })
    }

    /// Every active version of container package `package`. Any failed page fails the
    /// whole listing: a partial listing must never drive deletions.
    pub async fn list_versions(&self, package: &str) -> anyhow::Result<Vec<Version>> {
        let packages = self.crab.packages();
        let handler = match &self.owner {
            PackageOwner::Org(org) => packages.org(org),
            PackageOwner::User(user) => packages.user(user),
        };
        let first = handler
            .list_versions(PackageType::Container, package)
            .per_page(PER_PAGE)
            .send()
            .await
            .with_context(|| format!("listing versions of package {package}"))?;
        let mut versions = Vec::new();
        let mut page = first;
        loop {
            for item in &page.items {
                versions.push(version(item)?);
            }
            let Some(next) = self
                .crab
                .get_page::<PackageVersion>(&page.next)
                .await
                .with_context(|| format!("listing versions of package {package} (next page)"))?
            else {
                return Ok(versions);
            };
            page = next;
        }
    }

    /// Deletes version `id` of container package `package`.
    pub async fn delete_version(&self, package: &str, id: u64) -> anyhow::Result<()> {
        let packages = self.crab.packages();
        let handler = match &self.owner {
            PackageOwner::Org(org) => packages.org(org),
            PackageOwner::User(user) => packages.user(user),
        };
        handler
            .delete_version(PackageType::Container, package, id)
            .await
            .with_context(|| format!("deleting version {id} of package {package}"))
    }
}

/// A listed version as retention sees it; a version without container metadata or with a
/// name that is not a digest is an error (fail closed).
fn version(item: &PackageVersion) -> anyhow::Result<Version> {
    let digest = item.name.parse().with_context(|| {
        format!(
            "package version {} is named {:?}, not a digest",
            item.id, item.name
        )
    })?;
    let Some(container) = item.metadata.as_ref().and_then(|m| m.container.as_ref()) else {
        bail!(
            "package version {} ({}) has no container metadata, so its tags are unknown",
            item.id,
            item.name
        );
    };
    let created = jiff::Timestamp::from_second(item.created_at.timestamp())
        .context("creation time out of range")?;
    Ok(Version {
        id: VersionId::Package(item.id.into_inner()),
        digest,
        tags: container.tags.clone(),
        created: Some(created),
    })
}
