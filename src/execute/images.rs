//! The image steps of a plan: `BuildImage` (build, push, read the digest back) and
//! `PruneImages` (retention, fail closed). Promotion needs nothing beyond
//! [`crate::images::promote::promote`] and is called directly.

use std::collections::BTreeMap;

use super::{Done, Settings};
use crate::error::InputError;
use crate::images::build::Built;
use crate::images::build_command::{build_spec, run_build};
use crate::images::commit_history::HistoryAccess;
use crate::images::promote::PromoteOutcome;
use crate::images::prune_command::{
    GivenDigests, PruneInputs, PruneTarget, RepositoryPrune, run_prune,
};
use crate::oci::Secret;
use crate::plan::Action;
use crate::session::Session;

/// What the image steps of a run did, for commands that print it.
#[derive(Debug, Default)]
pub struct ImageResults {
    /// One line per built image (`component: repo@sha256:...` or `built ... (not pushed)`).
    pub built: Vec<String>,
    /// The promotion, if one ran.
    pub promoted: Option<PromoteOutcome>,
    /// The prune's verdicts per repository.
    pub pruned: Vec<RepositoryPrune>,
}

/// Builds one component's image (and pushes it when the plan and the run allow).
pub async fn build(
    session: &Session,
    settings: &Settings,
    action: &Action,
    preview: bool,
) -> anyhow::Result<Done> {
    let Action::BuildImage { component, .. } = action else {
        anyhow::bail!("not a build step");
    };
    if !settings.components.is_empty() && !settings.components.contains(component) {
        return Ok(Done::Skipped(format!(
            "only {} asked for",
            settings.components.join(", ")
        )));
    }
    let created = jiff::Timestamp::now()
        .round(jiff::Unit::Second)?
        .to_string();
    let spec = build_spec(action, settings.push, &created).expect("a build action");
    let mut options = settings.build.clone();
    // The flag wins over the pipeline file's cache repository.
    options.cache_repository = options
        .cache_repository
        .or_else(|| session.pipeline().ok()?.images.cache_reference());
    let built = run_build(&[spec], &session.workspace, &options, preview).await?;
    let mut outputs = BTreeMap::new();
    for image in &built {
        outputs.insert("built".to_owned(), describe(image));
        if let Some(pinned) = image.pinned() {
            outputs.insert("digest".to_owned(), pinned);
        }
    }
    Ok(Done::Ran(outputs))
}

fn describe(image: &Built) -> String {
    match image.pinned() {
        Some(pinned) => format!("{}: {pinned}", image.component),
        None => format!(
            "{}: built {} (not pushed)",
            image.component, image.reference
        ),
    }
}

/// Prunes the repositories the plan's `PruneImages` step names. Deployed digests come
/// from the options and, unless told not to, from the cluster (fail closed).
pub async fn prune(
    session: &Session,
    settings: &Settings,
    action: &Action,
    preview: bool,
) -> anyhow::Result<Vec<RepositoryPrune>> {
    let Action::PruneImages {
        repositories,
        keep_sha_tags,
        delete_untagged_after,
        ..
    } = action
    else {
        anyhow::bail!("not a prune step");
    };
    let pipeline = session.pipeline()?;
    let options = &settings.prune;
    let target = PruneTarget {
        repositories: repositories.clone(),
        keep_sha_tags: *keep_sha_tags,
        delete_untagged_after: crate::config::duration::HumanDuration::parse(delete_untagged_after)
            .map_err(|e| {
                InputError::new("pipeline file", Some("retention.delete_untagged_after"), e)
            })?
            .0,
    };
    let file = match &options.keep_digests_file {
        Some(file) => Some((
            file.display().to_string(),
            crate::config::read_input(file, "the deployed digests")?,
        )),
        None => None,
    };
    let mut deployed = GivenDigests::parse(
        &options.keep_digests,
        file.as_ref()
            .map(|(name, text)| (name.as_str(), text.as_str())),
    )?;
    let github_token = session.env("GITHUB_TOKEN").map(Secret::new);
    // Commit dates from the API of the run's repository, where the checkout lacks them.
    let repository = session.env("GITHUB_REPOSITORY");
    if let Some(repository) = &repository
        && !crate::github::is_repository_name(repository)
    {
        let shown = crate::output::escape_capped(repository, 100);
        let problem = format!("`{shown}` is not owner/name");
        return Err(InputError::new("GITHUB_REPOSITORY", None, problem).into());
    }
    let history = HistoryAccess {
        checkout: session.workspace.clone(),
        api: github_token
            .clone()
            .zip(repository)
            .map(|(token, repository)| crate::github::RepositoryApi {
                base: options.github_api_url.clone(),
                token,
                repository,
            }),
    };
    if !options.no_cluster {
        // Fail closed: pruning without knowing what runs could delete a live image.
        let namespaces: Vec<String> = pipeline
            .environments
            .values()
            .map(|e| e.namespace.clone())
            .collect();
        let (client, _) = settings.cluster.connect().await?;
        let in_cluster = crate::kube::deployed::read(&client, &namespaces).await?;
        tracing::info!(
            "{} digest(s) deployed in {}",
            in_cluster.len(),
            namespaces.join(", ")
        );
        deployed.0.extend(in_cluster);
    }
    let inputs = PruneInputs {
        target: &target,
        args: options,
        deployed: &deployed,
        github_token,
        dry_run: preview,
        now: jiff::Timestamp::now(),
        history: &history,
    };
    run_prune(pipeline, inputs).await
}
