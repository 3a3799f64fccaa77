//! `promote`: moves an environment's tag onto the images built for one commit, all or none.
//!
//! Every source is resolved to a digest and every target's current digest recorded before
//! the first write, so a missing image changes nothing; when a later write fails, the tags
//! already moved are put back on the digests recorded, and the error says what happened.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::Context as _;
use tracing::{info, warn};

use super::credentials::{RegistryAccess, client_from_env};
use crate::oci::auth::repository_scope;
use crate::oci::client::RegistryClient;
use crate::oci::digest::Digest;
use crate::oci::error::RegistryError;
use crate::oci::reference::Reference;
use crate::oci::retag::{RetagOptions, retag};
use crate::plan::Promotion;

/// One component's promotion, resolved before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The component.
    pub component: String,
    /// The sha-tagged source.
    pub source: Reference,
    /// The environment tag.
    pub target: Reference,
    /// The digest the source names now.
    pub digest: Digest,
    /// What the environment tag named before, if it existed.
    pub previous: Option<Digest>,
}

impl Resolved {
    /// Whether promoting changes the environment tag.
    pub fn changes(&self) -> bool {
        self.previous.as_ref() != Some(&self.digest)
    }

    /// `registry/repository@digest`: what `deploy` pins.
    pub fn pinned(&self) -> String {
        self.source.with_digest(self.digest.clone()).to_string()
    }
}

/// Why a promotion stopped.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// Some component has no image for the commit; nothing was written.
    #[error(
        "no image for commit {sha}: {}; nothing was retagged (build and push that commit first)",
        .missing.join(", ")
    )]
    Missing {
        /// The commit.
        sha: String,
        /// Source references that do not exist.
        missing: Vec<String>,
    },
    /// A write failed after others succeeded; says which tags moved back and which could not.
    #[error(
        "moving {failed} failed: {cause}; {}",
        rollback_summary(.restored, .left_moved)
    )]
    Partial {
        /// The environment tag whose write failed.
        failed: String,
        /// The failure.
        cause: RegistryError,
        /// Tags that had moved and were put back on their previous digest.
        restored: Vec<String>,
        /// Tags that moved and could not be put back (with why).
        left_moved: Vec<String>,
    },
}

fn rollback_summary(restored: &[String], left_moved: &[String]) -> String {
    let mut parts = Vec::new();
    if restored.is_empty() && left_moved.is_empty() {
        parts.push("no other tag had moved".to_owned());
    }
    if !restored.is_empty() {
        parts.push(format!("put back: {}", restored.join(", ")));
    }
    if !left_moved.is_empty() {
        parts.push(format!("STILL MOVED: {}", left_moved.join(", ")));
    }
    parts.join("; ")
}

/// The result of a promotion (or of its dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromoteOutcome {
    /// The environment.
    pub environment: String,
    /// The commit.
    pub sha: String,
    /// Every component, in plan order.
    pub images: Vec<Resolved>,
    /// True when nothing was written.
    pub dry_run: bool,
}

impl PromoteOutcome {
    /// The `digests` output: component -> `registry/repository@sha256:...`.
    pub fn digests(&self) -> BTreeMap<String, String> {
        self.images
            .iter()
            .map(|r| (r.component.clone(), r.pinned()))
            .collect()
    }
}

impl fmt::Display for PromoteOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run { "would move" } else { "moved" };
        for image in &self.images {
            let what = if !image.changes() {
                "already at".to_owned()
            } else {
                match &image.previous {
                    Some(previous) => format!("{verb} from {previous} to"),
                    None => format!("{verb} (new tag) to"),
                }
            };
            writeln!(
                f,
                "{}: {} {what} {}",
                image.component, image.target, image.digest
            )?;
        }
        Ok(())
    }
}

/// Promotes `wanted` (the plan's `PromoteImages` step): resolves every source, then, unless
/// `dry_run`, moves every environment tag, all or none.
pub async fn promote(
    wanted: &[Promotion],
    environment: &str,
    sha: &str,
    access: &RegistryAccess,
    dry_run: bool,
) -> anyhow::Result<PromoteOutcome> {
    let first = wanted
        .first()
        .context("the pipeline has no components to promote")?;
    let registry = Reference::parse(&first.source)?.registry().to_owned();
    let client = client_from_env(&registry, access)?;
    let images = resolve_all(&client, wanted, sha).await?;
    if !dry_run {
        write_all(&client, &images).await?;
    }
    Ok(PromoteOutcome {
        environment: environment.to_owned(),
        sha: sha.to_owned(),
        images,
        dry_run,
    })
}

/// Reads every source's digest and every target's current digest; writes nothing. All
/// missing sources are reported together.
pub async fn resolve_all(
    client: &RegistryClient,
    wanted: &[Promotion],
    sha: &str,
) -> anyhow::Result<Vec<Resolved>> {
    let mut pairs = Vec::new();
    for promotion in wanted {
        let source =
            Reference::parse(&promotion.source).context("source computed from the pipeline")?;
        let target =
            Reference::parse(&promotion.target).context("target computed from the pipeline")?;
        pairs.push((promotion.component.clone(), source, target));
    }
    let mut scopes: Vec<String> = pairs
        .iter()
        .map(|(_, s, _)| repository_scope(s.repository(), true))
        .collect();
    scopes.dedup();
    client.request_scopes(scopes).await;
    let mut resolved = Vec::new();
    let mut missing = Vec::new();
    for (component, source, target) in pairs {
        match client.get_manifest(&source).await {
            Ok(manifest) => {
                let previous = client.head_manifest(&target).await?;
                resolved.push(Resolved {
                    component,
                    source,
                    target,
                    digest: manifest.digest,
                    previous,
                });
            }
            Err(RegistryError::ManifestNotFound { reference }) => missing.push(reference),
            Err(other) => return Err(other).context(format!("resolving {source}")),
        }
    }
    if !missing.is_empty() {
        return Err(PromoteError::Missing {
            sha: sha.to_owned(),
            missing,
        }
        .into());
    }
    Ok(resolved)
}

/// Moves every tag that needs it; on a failure puts back the ones already moved.
pub async fn write_all(client: &RegistryClient, images: &[Resolved]) -> Result<(), PromoteError> {
    let mut moved: Vec<&Resolved> = Vec::new();
    for image in images.iter().filter(|i| i.changes()) {
        let pinned = image.source.with_digest(image.digest.clone());
        match retag(client, &pinned, &image.target, &RetagOptions::default()).await {
            Ok(_) => {
                info!(target = %image.target, digest = %image.digest, "environment tag moved");
                moved.push(image);
            }
            Err(cause) => {
                let (restored, left_moved) = restore(client, &moved).await;
                return Err(PromoteError::Partial {
                    failed: image.target.to_string(),
                    cause,
                    restored,
                    left_moved,
                });
            }
        }
    }
    Ok(())
}

/// Points each moved tag back at its recorded digest. A tag that did not exist before cannot
/// be removed through the registry API (deleting by digest would delete the image), so it is
/// reported as still moved.
async fn restore(client: &RegistryClient, moved: &[&Resolved]) -> (Vec<String>, Vec<String>) {
    let mut restored = Vec::new();
    let mut left_moved = Vec::new();
    for image in moved {
        let Some(previous) = &image.previous else {
            left_moved.push(format!("{} (it did not exist before)", image.target));
            continue;
        };
        let back = image.target.with_digest(previous.clone());
        match retag(client, &back, &image.target, &RetagOptions::default()).await {
            Ok(_) => restored.push(format!("{} -> {previous}", image.target)),
            Err(err) => {
                warn!(target = %image.target, error = %err, "could not put the tag back");
                left_moved.push(format!("{} ({err})", image.target));
            }
        }
    }
    (restored, left_moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(previous: Option<&[u8]>) -> Resolved {
        Resolved {
            component: "backend".into(),
            source: Reference::parse("ghcr.io/jisu/platform:backend-abc").unwrap(),
            target: Reference::parse("ghcr.io/jisu/platform:backend-production").unwrap(),
            digest: Digest::of(b"new"),
            previous: previous.map(Digest::of),
        }
    }

    #[test]
    fn a_tag_already_on_the_digest_is_not_rewritten() {
        assert!(resolved(None).changes());
        assert!(resolved(Some(b"old")).changes());
        assert!(!resolved(Some(b"new")).changes());
    }

    #[test]
    fn outputs_pin_the_source_repository_by_digest() {
        let outcome = PromoteOutcome {
            environment: "production".into(),
            sha: "abc".into(),
            images: vec![resolved(Some(b"old"))],
            dry_run: true,
        };
        let digests = outcome.digests();
        assert_eq!(
            digests["backend"],
            format!("ghcr.io/jisu/platform@{}", Digest::of(b"new"))
        );
        let text = outcome.to_string();
        assert!(
            text.starts_with("backend: ghcr.io/jisu/platform:backend-production would move from"),
            "{text}"
        );
    }

    #[test]
    fn errors_say_what_moved_and_what_did_not() {
        let missing = PromoteError::Missing {
            sha: "abc".into(),
            missing: vec!["r:a".into(), "r:b".into()],
        };
        assert!(
            missing
                .to_string()
                .contains("r:a, r:b; nothing was retagged")
        );
        assert_eq!(rollback_summary(&[], &[]), "no other tag had moved");
        assert_eq!(
            rollback_summary(
                &["t1 -> d".into()],
                &["t2 (it did not exist before)".into()]
            ),
            "put back: t1 -> d; STILL MOVED: t2 (it did not exist before)"
        );
    }
}
