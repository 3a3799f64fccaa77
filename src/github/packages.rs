//! GitHub Packages REST API for container images (ghcr.io), through octocrab: listing every
//! version of a package (following `Link` pagination) and deleting one by id. Server errors
//! and rate limits are retried by [`super::rest::retrying`] (its wait capped); a refusal
//! names the permission to add (`packages: read` or `packages: write`).

use super::permissions::{Permission, refused};
use super::rest::{Repeat, retrying};
use anyhow::{Context as _, bail};
use octocrab::models::packages::{PackageType, PackageVersion};

use crate::images::prune::{Version, VersionId};
use crate::oci::auth::Secret;

/// Versions asked for per page (the API's maximum).
const PER_PAGE: u8 = 100;

/// Most pages of one package's versions followed (100,000 versions at full pages).
pub const MAX_PAGES: usize = 1_000;

/// Most versions one package may list; past it the listing fails rather than be cut.
pub const MAX_VERSIONS: usize = 100_000;

/// Why a listing of package versions was abandoned: it is not known to be complete, and
/// an incomplete listing must never drive deletions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListingError {
    /// The API still linked a next page after [`MAX_PAGES`].
    #[error(
        "package {package}: the API still links a next page after {MAX_PAGES} pages; refusing to treat a partial listing as complete"
    )]
    TooManyPages {
        /// The package.
        package: String,
    },
    /// More than [`MAX_VERSIONS`] versions.
    #[error(
        "package {package}: more than {MAX_VERSIONS} versions listed; refusing to treat a partial listing as complete"
    )]
    TooManyVersions {
        /// The package.
        package: String,
    },
    /// A `next` link named a page already fetched, or a page listed a version again.
    #[error(
        "package {package}: the listing repeats itself ({what}); refusing to treat it as complete"
    )]
    Repeats {
        /// The package.
        package: String,
        /// What repeated.
        what: String,
    },
}

/// Bookkeeping of one paginated listing: pages and versions seen so far.
#[derive(Debug, Default)]
struct Pagination {
    pages: usize,
    links: std::collections::HashSet<String>,
    ids: std::collections::HashSet<u64>,
}

impl Pagination {
    /// Records a fetched page with version `ids`; `Err` when a bound is passed or an id
    /// was listed before.
    fn page(&mut self, package: &str, ids: &[u64]) -> Result<(), ListingError> {
        self.pages += 1;
        for id in ids {
            if !self.ids.insert(*id) {
                return Err(ListingError::Repeats {
                    package: package.to_owned(),
                    what: format!("version {id} listed twice"),
                });
            }
        }
        if self.ids.len() > MAX_VERSIONS {
            return Err(ListingError::TooManyVersions {
                package: package.to_owned(),
            });
        }
        Ok(())
    }

    /// Records that the page just read links `next`; `Err` when that page was already
    /// fetched or one more page would pass [`MAX_PAGES`].
    fn next(&mut self, package: &str, next: &str) -> Result<(), ListingError> {
        if self.pages >= MAX_PAGES {
            return Err(ListingError::TooManyPages {
                package: package.to_owned(),
            });
        }
        if !self.links.insert(next.to_owned()) {
            return Err(ListingError::Repeats {
                package: package.to_owned(),
                what: format!(
                    "next page link {} was already fetched",
                    crate::oci::server_text::shown(next)
                ),
            });
        }
        Ok(())
    }
}

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
    crab: super::rest::Client,
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
        let crab = super::rest::Client::new(api_base, token)?;
        Ok(PackagesClient { crab, owner })
    }

    /// Every active version of container package `package`. Any failed page fails the
    /// whole listing, and so does passing [`MAX_PAGES`] or [`MAX_VERSIONS`] or a listing
    /// that repeats a page or a version ([`ListingError`]): a partial listing must never
    /// drive deletions.
    pub async fn list_versions(&self, package: &str) -> anyhow::Result<Vec<Version>> {
        let first = retrying(Repeat::Safe, || async {
            self.handler()
                .list_versions(PackageType::Container, package)
                .per_page(PER_PAGE)
                .send()
                .await
        })
        .await
        .map_err(|e| {
            refused(
                e,
                &format!("to list versions of package {package}"),
                Permission::PackagesRead,
            )
        })
        .with_context(|| format!("listing versions of package {package}"))?;
        let mut versions = Vec::new();
        let mut seen = Pagination::default();
        let mut page = first;
        loop {
            let ids: Vec<u64> = page.items.iter().map(|i| i.id.into_inner()).collect();
            seen.page(package, &ids)?;
            for item in &page.items {
                versions.push(version(item)?);
            }
            let Some(link) = &page.next else {
                return Ok(versions);
            };
            seen.next(package, &link.to_string())?;
            let next = retrying(Repeat::Safe, || {
                self.crab.octocrab().get_page::<PackageVersion>(&page.next)
            })
            .await
            .map_err(|e| {
                refused(
                    e,
                    &format!("to list versions of package {package} (next page)"),
                    Permission::PackagesRead,
                )
            })
            .with_context(|| format!("listing versions of package {package} (next page)"))?;
            let Some(next) = next else {
                return Ok(versions);
            };
            page = next;
        }
    }

    /// Deletes version `id` of container package `package`.
    pub async fn delete_version(&self, package: &str, id: u64) -> anyhow::Result<()> {
        retrying(Repeat::Safe, || async {
            self.handler()
                .delete_version(PackageType::Container, package, id)
                .await
        })
        .await
        .map_err(|e| {
            refused(
                e,
                &format!("to delete version {id} of package {package}"),
                Permission::PackagesWrite,
            )
        })
        .with_context(|| format!("deleting version {id} of package {package}"))
    }

    /// The packages API of the owner.
    fn handler(&self) -> octocrab::packages::PackagesHandler<'_> {
        let packages = self.crab.octocrab().packages();
        match &self.owner {
            PackageOwner::Org(org) => packages.org(org),
            PackageOwner::User(user) => packages.user(user),
        }
    }
}

/// A listed version as retention sees it; a version without container metadata or with a
/// name that is not a digest is an error (fail closed).
fn version(item: &PackageVersion) -> anyhow::Result<Version> {
    let shown_name = crate::oci::server_text::shown(&item.name);
    let Ok(digest) = item.name.parse() else {
        bail!(
            "package version {} is named {shown_name:?}, not a sha256 digest",
            item.id
        );
    };
    let Some(container) = item.metadata.as_ref().and_then(|m| m.container.as_ref()) else {
        bail!(
            "package version {} ({shown_name}) has no container metadata, so its tags are unknown",
            item.id
        );
    };
    // `created_at` is when the version was pushed (the image's own `created` is in its
    // config, and reproducible builds set it to one fixed instant).
    let pushed = jiff::Timestamp::from_second(item.created_at.timestamp())
        .context("push time (created_at) out of range")?;
    Ok(Version {
        id: VersionId::Package(item.id.into_inner()),
        digest,
        tags: container.tags.clone(),
        created: None,
        pushed: Some(pushed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination_stops_at_the_page_bound() {
        let mut seen = Pagination::default();
        for n in 0..MAX_PAGES as u64 {
            seen.page("api", &[n]).unwrap();
            let link = format!("https://api/x?page={}", n + 2);
            let result = seen.next("api", &link);
            if n + 1 < MAX_PAGES as u64 {
                result.unwrap();
            } else {
                assert_eq!(
                    result,
                    Err(ListingError::TooManyPages {
                        package: "api".into()
                    })
                );
            }
        }
    }

    #[test]
    fn pagination_detects_repeats_and_too_many_versions() {
        let mut seen = Pagination::default();
        seen.page("api", &[1, 2]).unwrap();
        seen.next("api", "https://api/x?page=2").unwrap();
        assert!(matches!(
            seen.next("api", "https://api/x?page=2"),
            Err(ListingError::Repeats { .. })
        ));
        assert!(matches!(
            seen.page("api", &[3, 1]),
            Err(ListingError::Repeats { what, .. }) if what.contains("version 1")
        ));
        let mut big = Pagination::default();
        let ids: Vec<u64> = (0..=MAX_VERSIONS as u64).collect();
        assert_eq!(
            big.page("api", &ids),
            Err(ListingError::TooManyVersions {
                package: "api".into()
            })
        );
    }
}
