//! Runs `image prune`: validates the inputs, lists every repository the pipeline pushes to
//! (GitHub Packages API on ghcr.io, the registry's tag list elsewhere), reads every listed
//! manifest, reads the order of the commits the tags name ([`super::commit_history`]),
//! decides with [`super::prune::decide`] for all repositories, and only then deletes. A
//! dry run prints the decisions and deletes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::Context as _;
use tracing::info;

use super::commit_history::{self, HistoryAccess};
use super::credentials::client_from_env;
use super::prune::{
    CommitTagRule, Listing, ManifestFacts, Rules, Verdict, Version, VersionId, decide,
    manifest_facts,
};
use super::tags;
use crate::config::pipeline::{Pipeline, ShaLength};
use crate::error::InputError;
use crate::github::packages::{PackageOwner, PackagesClient};
use crate::oci::auth::Secret;
use crate::oci::client::RegistryClient;
use crate::oci::digest::Digest;
use crate::oci::error::RegistryError;
use crate::oci::reference::Reference;

/// Where versions are listed and deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PruneBackend {
    /// GitHub Packages for ghcr.io, the registry API elsewhere.
    #[default]
    Auto,
    /// The GitHub Packages REST API (lists untagged versions too).
    GithubPackages,
    /// The registry API: tag list, and DELETE of manifests by digest.
    Oci,
}

/// Whether the package owner is an organization or a user account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OwnerKind {
    /// `/orgs/{org}/packages/...`.
    #[default]
    Org,
    /// `/users/{username}/packages/...`.
    User,
}

/// How a prune reaches the registry and what it keeps besides the rules (plain values
/// the command line fills in).
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Digests deployed somewhere, kept whatever the rules say (`sha256:...` or
    /// `registry/repository@sha256:...`).
    pub keep_digests: Vec<String>,
    /// A file of deployed digests, one per line.
    pub keep_digests_file: Option<PathBuf>,
    /// Where versions are listed and deleted.
    pub backend: PruneBackend,
    /// GitHub REST API base URL.
    pub github_api_url: String,
    /// Whether the images' owner is an organization or a user.
    pub owner_kind: OwnerKind,
    /// Read no cluster for deployed digests.
    pub no_cluster: bool,
    /// Registry user and plain-HTTP permission.
    pub registry: super::credentials::RegistryAccess,
}

/// What the plan's `PruneImages` step prunes, and by which numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneTarget {
    /// Repositories (`registry/path`).
    pub repositories: Vec<String>,
    /// Commit tags kept per component.
    pub keep_sha_tags: u32,
    /// Untagged versions older than this go.
    pub delete_untagged_after: std::time::Duration,
}

/// The digests running in the environments: from flags ([`GivenDigests`]), joined in
/// `run.rs` by those `kube::deployed` reads from the cluster; another source reads the
/// Deployments' pod templates of every environment.
pub trait DeployedDigests {
    /// Every digest deployed anywhere. An error stops the prune (fail closed).
    fn deployed(&self) -> impl Future<Output = anyhow::Result<BTreeSet<Digest>>> + Send;
}

/// Deployed digests given on the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GivenDigests(pub BTreeSet<Digest>);

impl DeployedDigests for GivenDigests {
    async fn deployed(&self) -> anyhow::Result<BTreeSet<Digest>> {
        Ok(self.0.clone())
    }
}

impl GivenDigests {
    /// From `--keep-digest` values and the `--keep-digests-file` contents (with its name).
    pub fn parse(flags: &[String], file: Option<(&str, &str)>) -> Result<Self, InputError> {
        let mut digests = BTreeSet::new();
        let mut entries: Vec<(String, &str)> = flags
            .iter()
            .map(|f| ("--keep-digest".to_owned(), f.as_str()))
            .collect();
        if let Some((name, text)) = file {
            for (n, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or_default().trim();
                if !line.is_empty() {
                    entries.push((format!("{name}:{}", n + 1), line));
                }
            }
        }
        for (source, value) in entries {
            let digest_text = value.rsplit_once('@').map_or(value, |(_, d)| d);
            let digest: Digest = digest_text.parse().map_err(|err| {
                InputError::new(source, None, format!("`{value}` is not a digest: {err}"))
            })?;
            digests.insert(digest);
        }
        Ok(GivenDigests(digests))
    }
}

/// The pipeline's retention rules for `repository` (`registry/path`), at `now`.
pub fn rules_for(
    pipeline: &Pipeline,
    target: &PruneTarget,
    repository: &str,
    deployed: &BTreeSet<Digest>,
    now: jiff::Timestamp,
) -> Result<Rules, InputError> {
    let sha_len = match pipeline.images.sha {
        ShaLength::Long => 40,
        ShaLength::Short => 7,
    };
    let mut commit_tags = Vec::new();
    let mut protected_tags = BTreeSet::from(["latest".to_owned()]);
    for component in pipeline.components.keys() {
        if tags::repository(pipeline, component) != repository {
            continue;
        }
        let example = tags::sha_tag(pipeline, component, &"0".repeat(40));
        commit_tags.push(CommitTagRule {
            component: component.clone(),
            prefix: example[..example.len() - sha_len].to_owned(),
            sha_len,
        });
        protected_tags.insert(tags::scheme_tag(pipeline, component, "latest"));
        for environment in pipeline.environments.keys() {
            protected_tags.insert(tags::environment_tag(pipeline, component, environment));
        }
    }
    Ok(Rules {
        commit_tags,
        protected_tags,
        keep_commit_tags: target.keep_sha_tags,
        delete_untagged_after: target.delete_untagged_after,
        now,
        deployed: deployed.clone(),
    })
}

/// The decisions for one repository, and what was deleted.
#[derive(Debug, Clone)]
pub struct RepositoryPrune {
    /// `registry/path`.
    pub repository: String,
    /// Every version's verdict.
    pub verdicts: Vec<Verdict>,
    /// Digests deleted (empty in a dry run).
    pub deleted: Vec<Digest>,
}

/// Everything a prune run needs besides the pipeline.
pub struct PruneInputs<'a, D: DeployedDigests> {
    /// What the plan prunes.
    pub target: &'a PruneTarget,
    /// How.
    pub args: &'a PruneOptions,
    /// The deployed-digest source.
    pub deployed: &'a D,
    /// GitHub token for the Packages API (from GITHUB_TOKEN); never logged.
    pub github_token: Option<Secret>,
    /// Print only.
    pub dry_run: bool,
    /// Now.
    pub now: jiff::Timestamp,
    /// Where the order of the commits is read.
    pub history: &'a HistoryAccess,
}

/// Runs the prune over every repository of the pipeline.
pub async fn run_prune<D: DeployedDigests>(
    pipeline: &Pipeline,
    inputs: PruneInputs<'_, D>,
) -> anyhow::Result<Vec<RepositoryPrune>> {
    let args = inputs.args;
    let mut repositories = inputs.target.repositories.clone();
    repositories.sort();
    repositories.dedup();
    let registry = pipeline.images.registry.clone();
    let use_packages = match args.backend {
        PruneBackend::Auto => registry == "ghcr.io",
        PruneBackend::GithubPackages => true,
        PruneBackend::Oci => false,
    };
    // Validate everything before the first request.
    let mut parsed = Vec::new();
    for repository in &repositories {
        let reference = Reference::parse(&format!("{repository}:probe"))
            .context("repository computed from the pipeline")?;
        let rules = rules_for(
            pipeline,
            inputs.target,
            repository,
            &BTreeSet::new(),
            inputs.now,
        )?;
        parsed.push((reference, rules));
    }
    let packages = if use_packages {
        let Some(token) = &inputs.github_token else {
            return Err(InputError::new(
                "GITHUB_TOKEN",
                None,
                "the GitHub Packages API needs a token with read:packages and delete:packages; set GITHUB_TOKEN",
            )
            .into());
        };
        let owner_of = |reference: &Reference| -> Result<(PackageOwner, String), InputError> {
            let (owner, package) = reference.repository().split_once('/').ok_or_else(|| {
                InputError::new(
                    "pipeline file",
                    Some("images"),
                    format!("{} has no owner segment (owner/package)", reference.name()),
                )
            })?;
            let owner = match args.owner_kind {
                OwnerKind::Org => PackageOwner::Org(owner.to_owned()),
                OwnerKind::User => PackageOwner::User(owner.to_owned()),
            };
            Ok((owner, package.to_owned()))
        };
        let mut clients = Vec::new();
        for (reference, _) in &parsed {
            let (owner, package) = owner_of(reference)?;
            clients.push((
                PackagesClient::new(&args.github_api_url, token, owner)?,
                package,
            ));
        }
        Some(clients)
    } else {
        None
    };
    let client = client_from_env(&registry, &args.registry)?;
    let deployed = inputs
        .deployed
        .deployed()
        .await
        .context("reading the deployed digests")?;

    // List every repository, then read the commits' order once, then decide for every
    // repository before deleting anything anywhere.
    let mut listed = Vec::new();
    for (i, (reference, mut rules)) in parsed.into_iter().enumerate() {
        rules.deployed = deployed.clone();
        // A token service grants manifest deletes only for the `delete` action.
        let scope = if inputs.dry_run || packages.is_some() {
            crate::oci::auth::repository_scope(reference.repository(), false)
        } else {
            format!("repository:{}:pull,delete", reference.repository())
        };
        client.request_scopes([scope]).await;
        let (listing, facts) = match &packages {
            Some(clients) => {
                let (packages_client, package) = &clients[i];
                let versions = packages_client.list_versions(package).await?;
                let facts = read_facts(&client, &reference, &versions).await?;
                (
                    Listing {
                        versions,
                        includes_untagged: true,
                    },
                    facts,
                )
            }
            None => list_by_tags(&client, &reference).await?,
        };
        listed.push((reference, rules, listing, facts));
    }
    let shas: BTreeSet<String> = listed
        .iter()
        .flat_map(|(_, rules, listing, _)| commit_shas(rules, listing))
        .collect();
    let history = commit_history::read(inputs.history, &history_branches(pipeline), &shas).await;
    let mut plans = Vec::new();
    for (reference, rules, listing, facts) in listed {
        let mut verdicts = decide(&listing, &facts, &rules, &history)
            .with_context(|| format!("pruning {}", reference.name()))?;
        // Indexes go before their children, so no moment leaves an index whose child is
        // already gone.
        verdicts.sort_by_key(|v| {
            !matches!(
                facts.get(&v.version.digest),
                Some(ManifestFacts::Index { .. })
            )
        });
        plans.push((reference, verdicts));
    }

    let mut results = Vec::new();
    for (i, (reference, verdicts)) in plans.into_iter().enumerate() {
        let mut deleted = Vec::new();
        if !inputs.dry_run {
            for verdict in verdicts.iter().filter(|v| v.delete) {
                let version = &verdict.version;
                match (&version.id, &packages) {
                    (VersionId::Package(id), Some(clients)) => {
                        clients[i].0.delete_version(&clients[i].1, *id).await?;
                    }
                    _ => {
                        client
                            .delete_manifest(reference.repository(), &version.digest)
                            .await?;
                    }
                }
                info!(repository = %reference.name(), digest = %version.digest, reason = %verdict.reason, "deleted");
                deleted.push(version.digest.clone());
            }
        }
        results.push(RepositoryPrune {
            repository: reference.name(),
            verdicts,
            deleted,
        });
    }
    Ok(results)
}

/// The branches whose history orders commit builds: the default branch, then each
/// environment's, once each.
pub fn history_branches(pipeline: &Pipeline) -> Vec<String> {
    let mut branches = vec![pipeline.default_branch.clone()];
    for environment in pipeline.environments.values() {
        if !branches.contains(&environment.branch) {
            branches.push(environment.branch.clone());
        }
    }
    branches
}

/// The shas the commit tags of `listing` carry.
fn commit_shas<'a>(rules: &'a Rules, listing: &'a Listing) -> impl Iterator<Item = String> + 'a {
    listing.versions.iter().flat_map(move |version| {
        version
            .tags
            .iter()
            .filter_map(move |tag| rules.commit_tags.iter().find_map(|rule| rule.sha(tag)))
    })
}

/// Reads every listed version's manifest. A version whose manifest is gone is left out of
/// the facts, which makes [`decide`] refuse.
async fn read_facts(
    client: &RegistryClient,
    reference: &Reference,
    versions: &[Version],
) -> anyhow::Result<BTreeMap<Digest, ManifestFacts>> {
    let mut facts = BTreeMap::new();
    for version in versions {
        let pinned = reference.with_digest(version.digest.clone());
        match client.get_manifest(&pinned).await {
            Ok(manifest) => {
                facts.insert(
                    version.digest.clone(),
                    manifest_facts(manifest.content_type.as_deref(), &manifest.bytes),
                );
            }
            Err(RegistryError::ManifestNotFound { .. }) => {}
            Err(other) => return Err(other).context(format!("reading {pinned}")),
        }
    }
    Ok(facts)
}

/// Lists a repository through the registry API: every tag, grouped by the digest it names,
/// with creation times from the image configs.
async fn list_by_tags(
    client: &RegistryClient,
    reference: &Reference,
) -> anyhow::Result<(Listing, BTreeMap<Digest, ManifestFacts>)> {
    let repository = reference.repository();
    let tags = client
        .list_tags(repository)
        .await
        .with_context(|| format!("listing tags of {}", reference.name()))?;
    let mut by_digest: BTreeMap<Digest, Version> = BTreeMap::new();
    let mut facts = BTreeMap::new();
    for tag in tags {
        let tagged = reference.with_tag(&tag)?;
        let manifest = client
            .get_manifest(&tagged)
            .await
            .with_context(|| format!("reading {tagged}"))?;
        let entry = by_digest
            .entry(manifest.digest.clone())
            .or_insert_with(|| Version {
                id: VersionId::Manifest,
                digest: manifest.digest.clone(),
                tags: Vec::new(),
                created: None,
                pushed: None,
            });
        entry.tags.push(tag);
        if !facts.contains_key(&manifest.digest) {
            let fact = manifest_facts(manifest.content_type.as_deref(), &manifest.bytes);
            entry.created = created_of(client, reference, &fact, &manifest.bytes).await?;
            facts.insert(manifest.digest.clone(), fact);
        }
    }
    Ok((
        Listing {
            versions: by_digest.into_values().collect(),
            includes_untagged: false,
        },
        facts,
    ))
}

/// When an image was built: the config's `created`; for an index, its own
/// `org.opencontainers.image.created` annotation, else its first non-attestation child's.
async fn created_of(
    client: &RegistryClient,
    reference: &Reference,
    facts: &ManifestFacts,
    bytes: &[u8],
) -> anyhow::Result<Option<jiff::Timestamp>> {
    let json: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    let parse = |text: Option<&str>| text.and_then(|t| t.parse::<jiff::Timestamp>().ok());
    match facts {
        ManifestFacts::Image { .. } => {
            let Some(Ok(config)) = json["config"]["digest"].as_str().map(str::parse::<Digest>)
            else {
                return Ok(None);
            };
            let config = client
                .get_json_blob(reference.repository(), &config)
                .await?;
            Ok(parse(config["created"].as_str()))
        }
        ManifestFacts::Index { children, .. } => {
            if let Some(created) =
                parse(json["annotations"]["org.opencontainers.image.created"].as_str())
            {
                return Ok(Some(created));
            }
            let Some(child) = children.iter().find(|c| !c.attestation) else {
                return Ok(None);
            };
            let manifest = client
                .get_manifest(&reference.with_digest(child.digest.clone()))
                .await?;
            let child_facts = manifest_facts(manifest.content_type.as_deref(), &manifest.bytes);
            if !matches!(child_facts, ManifestFacts::Image { .. }) {
                return Ok(None);
            }
            Box::pin(created_of(client, reference, &child_facts, &manifest.bytes)).await
        }
        ManifestFacts::Unknown { .. } => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pipeline(scheme: &str) -> Pipeline {
        serde_yaml::from_str(&format!(
            "
version: 1
images: {scheme}
components:
  backend: {{context: b, dockerfile: b/D, port: 8000}}
  frontend: {{context: f, dockerfile: f/D, port: 80}}
environments:
  staging: {{branch: develop, namespace: s, url: 'https://s', strategy: rolling, manifests: k}}
  production: {{branch: main, namespace: p, url: 'https://p', strategy: rolling, manifests: k}}
retention: {{schedule: '0 3 * * *', keep_sha_tags: 5, delete_untagged_after: 14d}}
"
        ))
        .unwrap()
    }

    fn target() -> PruneTarget {
        PruneTarget {
            repositories: Vec::new(),
            keep_sha_tags: 5,
            delete_untagged_after: Duration::from_secs(14 * 86_400),
        }
    }

    #[test]
    fn rules_for_a_shared_repository_cover_every_component() {
        let p = pipeline("{scheme: component-prefix, repository: jisu/platform}");
        let rules = rules_for(
            &p,
            &target(),
            "ghcr.io/jisu/platform",
            &BTreeSet::new(),
            jiff::Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        let prefixes: Vec<&str> = rules
            .commit_tags
            .iter()
            .map(|r| r.prefix.as_str())
            .collect();
        assert_eq!(prefixes, ["backend-", "frontend-"]);
        assert!(rules.commit_tags.iter().all(|r| r.sha_len == 40));
        for tag in [
            "latest",
            "backend-latest",
            "backend-production",
            "frontend-staging",
        ] {
            assert!(rules.protected_tags.contains(tag), "{tag}");
        }
        assert_eq!(rules.keep_commit_tags, 5);
        assert_eq!(
            rules.delete_untagged_after,
            Duration::from_secs(14 * 86_400)
        );
    }

    #[test]
    fn rules_for_per_component_repositories_use_short_sha_tags() {
        let p = pipeline("{scheme: per-component, owner: jisu, sha: short}");
        let rules = rules_for(
            &p,
            &target(),
            "ghcr.io/jisu/backend",
            &BTreeSet::new(),
            jiff::Timestamp::UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(
            rules.commit_tags,
            vec![CommitTagRule {
                component: "backend".into(),
                prefix: "sha-".into(),
                sha_len: 7
            }]
        );
        assert!(rules.protected_tags.contains("production"));
    }

    #[test]
    fn deployed_digests_from_flags_and_file() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let given = GivenDigests::parse(
            &[format!("ghcr.io/jisu/backend@{a}")],
            Some(("deployed.txt", &format!("# production\n{b}\n\n"))),
        )
        .unwrap();
        assert_eq!(given.0, BTreeSet::from([a, b]));
        let err = GivenDigests::parse(&[], Some(("deployed.txt", "\nnope\n"))).unwrap_err();
        assert!(err.to_string().starts_with("deployed.txt:2"), "{err}");
    }
}
