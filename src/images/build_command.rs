//! Runs `image build`: picks the plan's `BuildImage` steps, validates everything, then
//! builds, pushes and reads each pushed digest back from the registry.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, bail};
use tracing::info;

use super::build::{
    BuildOptions, BuildSpec, Builder, BuilderSettings, Built, auth_file_json, buildah_build_argv,
    buildah_push_argv, digest_from_digest_file, digest_from_docker_metadata, docker_build_argv,
    resolve_builder, run_argv,
};
use super::credentials::resolve_credentials;
use crate::error::InputError;
use crate::oci::client::{ClientOptions, RegistryClient};
use crate::oci::reference::Reference;
use crate::oci::retag::{RetagOptions, retag};
use crate::plan::{Action, Plan};

/// The label recording when the image was built; set at run time so plans stay stable.
pub const CREATED_LABEL: &str = "org.opencontainers.image.created";

/// The builds `plan` asks for, narrowed to `components` (all when empty). `push` is the
/// `--push` flag: a build is pushed only when the flag asks and the plan allows it (pull
/// requests never push). `created` is the build time, RFC 3339.
pub fn build_specs(
    plan: &Plan,
    components: &[String],
    push: bool,
    created: &str,
) -> Result<Vec<BuildSpec>, InputError> {
    let all: Vec<BuildSpec> = plan
        .jobs
        .iter()
        .filter(|job| job.decision.runs)
        .flat_map(|job| &job.steps)
        .filter_map(|step| build_spec(&step.action, push, created))
        .collect();
    let unknown: Vec<&String> = components
        .iter()
        .filter(|c| !all.iter().any(|s| &s.component == *c))
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = all.iter().map(|s| s.component.as_str()).collect();
        return Err(InputError::new(
            "--component",
            None,
            format!(
                "{} not built by this event; it builds: {}",
                unknown
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if known.is_empty() {
                    "nothing".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        ));
    }
    Ok(all
        .into_iter()
        .filter(|s| components.is_empty() || components.contains(&s.component))
        .collect())
}

/// The build a `BuildImage` action asks for; `push` is whether this run may push (a build
/// is pushed only when the run may and the plan allows it). `None` for other actions.
pub fn build_spec(action: &Action, push: bool, created: &str) -> Option<BuildSpec> {
    let Action::BuildImage {
        component,
        context,
        dockerfile,
        build_args,
        tags,
        labels,
        push: allowed,
    } = action
    else {
        return None;
    };
    let mut labels = labels.clone();
    labels.insert(CREATED_LABEL.to_owned(), created.to_owned());
    Some(BuildSpec {
        component: component.clone(),
        context: context.clone(),
        dockerfile: dockerfile.clone(),
        build_args: build_args.clone(),
        tags: tags.clone(),
        labels,
        push: push && *allowed,
    })
}

/// Builds (and pushes) `specs` with paths relative to `workspace`. In a dry run prints the
/// command lines and touches nothing.
pub async fn run_build(
    specs: &[BuildSpec],
    workspace: &Path,
    args: &BuildOptions,
    dry_run: bool,
) -> anyhow::Result<Vec<Built>> {
    // Validate every reference and the credentials before anything runs.
    let mut registries: Vec<String> = Vec::new();
    for spec in specs {
        for tag in &spec.tags {
            let reference = Reference::parse(tag).context("tag computed from the pipeline")?;
            if !registries.iter().any(|r| r == reference.registry()) {
                registries.push(reference.registry().to_owned());
            }
        }
    }
    if let Some(cache) = &args.cache_repository {
        Reference::parse(&format!("{cache}:probe")).context("--cache-repository")?;
    }
    let Some(registry) = registries.first().cloned() else {
        return Ok(Vec::new());
    };
    if registries.len() > 1 {
        bail!(
            "images go to more than one registry ({})",
            registries.join(", ")
        );
    }
    let pushing = specs.iter().any(|s| s.push);
    let (credentials, source) = if pushing {
        resolve_credentials(args.registry.username.as_deref(), &registry, |k| {
            std::env::var(k).ok()
        })
        .with_context(|| format!("credentials for {registry}"))?
    } else {
        (None, super::credentials::CredentialSource::Anonymous)
    };
    info!(%registry, credentials = ?source, "resolved registry credentials");
    // Probing (`docker info`, `buildah --version`) changes nothing, so a dry run shows the
    // command lines the real run would use.
    let builder = resolve_builder(args.builder)?;
    // Only this user may enter it: it holds the registry credentials while builds run, and
    // it is removed when the build ends, fails or is cancelled.
    let private = tempfile::Builder::new()
        .prefix("jisu-build-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .context("cannot create a private temporary directory")?;
    let auth_file = match &credentials {
        Some(creds) => {
            let path = private.path().join("auth.json");
            write_private(&path, &auth_file_json(&registry, creds))?;
            Some(path)
        }
        None => None,
    };
    let settings = BuilderSettings {
        storage_root: args.storage_root.clone(),
        insecure_registry: args.registry.allow_http
            || crate::oci::client::is_loopback_registry(&registry),
        auth_file,
        cache_repository: args.cache_repository.clone(),
    };
    let client = RegistryClient::new(
        &registry,
        ClientOptions {
            allow_http: args.registry.allow_http,
            credentials,
            trusted_token_realms: args.registry.token_realms.clone(),
            ..ClientOptions::default()
        },
    )?;
    let mut built = Vec::new();
    for spec in specs {
        let first = spec.tags.first().context("a build without tags")?;
        let digest_file = private.path().join(format!("{}.digest", spec.component));
        let metadata_file = private.path().join(format!("{}.json", spec.component));
        let docker_config = settings.auth_file.as_ref().map(|_| private.path());
        let mut commands = Vec::new();
        match builder {
            Builder::Docker => {
                commands.push(docker_build_argv(spec, &settings, &metadata_file));
            }
            Builder::Buildah | Builder::Auto => {
                commands.push(buildah_build_argv(spec, &settings));
                if spec.push {
                    commands.push(buildah_push_argv(first, &digest_file, &settings));
                }
            }
        }
        if dry_run {
            for argv in &commands {
                let shown: Vec<_> = argv.iter().map(|a| crate::output::escape(a)).collect();
                crate::output::out_line(&format!("would run: {}", shown.join(" ")));
            }
            if spec.push && builder != Builder::Docker && spec.tags.len() > 1 {
                crate::output::out_line(&format!(
                    "would then point {} at the pushed digest (byte-exact retag)",
                    spec.tags[1..].join(", ")
                ));
            }
            continue;
        }
        for argv in &commands {
            run_with_config(argv, workspace, docker_config, &spec.component).await?;
        }
        let digest = if !spec.push {
            None
        } else {
            let digest = match builder {
                Builder::Docker => digest_from_docker_metadata(
                    &std::fs::read_to_string(&metadata_file).context("buildx metadata file")?,
                )?,
                Builder::Buildah | Builder::Auto => digest_from_digest_file(
                    &std::fs::read_to_string(&digest_file).context("buildah digest file")?,
                )?,
            };
            let first_ref = Reference::parse(first)?;
            // buildah pushes one tag; the others get the identical manifest bytes.
            if builder != Builder::Docker {
                for tag in &spec.tags[1..] {
                    let dst = Reference::parse(tag)?;
                    retag(
                        &client,
                        &first_ref.with_digest(digest.clone()),
                        &dst,
                        &RetagOptions::default(),
                    )
                    .await
                    .with_context(|| format!("tag {tag}"))?;
                }
            }
            // Read it back: what deploy pins must be what the registry serves.
            let served = client.head_manifest(&first_ref).await?;
            if served.as_ref() != Some(&digest) {
                bail!(
                    "{first} serves {} but the builder reported pushing {digest}",
                    served.map_or("nothing".to_owned(), |d| d.to_string())
                );
            }
            Some(digest)
        };
        built.push(Built {
            component: spec.component.clone(),
            reference: first.clone(),
            digest,
        });
    }
    Ok(built)
}

/// Runs a builder command. docker reads credentials from the directory `DOCKER_CONFIG`
/// names, so when there are credentials it is pointed at the private one.
async fn run_with_config(
    argv: &[String],
    workspace: &Path,
    docker_config: Option<&Path>,
    component: &str,
) -> anyhow::Result<()> {
    let what = format!("build of {component}");
    match (argv.first().map(String::as_str), docker_config) {
        (Some("docker"), Some(dir)) => {
            std::fs::copy(dir.join("auth.json"), dir.join("config.json"))
                .context("docker config")?;
            run_argv(argv, workspace, &what, Some(("DOCKER_CONFIG", dir))).await
        }
        _ => run_argv(argv, workspace, &what, None).await,
    }
}

/// Writes a file only its owner can read: it holds registry credentials.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

/// The `digests` output: component -> `registry/repository@sha256:...` for pushed images.
pub fn digests_output(built: &[Built]) -> BTreeMap<String, String> {
    built
        .iter()
        .filter_map(|b| Some((b.component.clone(), b.pinned()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::context::{Event, GitRef, RunContext};

    fn plan(git_ref: &str, pr: bool) -> Plan {
        let pipeline: crate::config::Pipeline = serde_yaml::from_str(
            "
version: 1
images: {scheme: component-prefix, repository: jisu/platform}
components:
  backend: {context: backend, dockerfile: backend/Dockerfile, port: 8000}
  frontend: {context: frontend, dockerfile: frontend/Dockerfile, port: 80}
environments:
  production: {branch: main, namespace: p, url: 'https://x', strategy: rolling, manifests: k8s}
",
        )
        .unwrap();
        let event = if pr {
            Event::PullRequest {
                number: 3,
                action: None,
                base_branch: None,
                from_fork: false,
            }
        } else {
            Event::Push {
                git_ref: GitRef::parse(git_ref),
                deleted: false,
            }
        };
        let ctx = RunContext {
            event,
            sha: Some("0123456789abcdef0123456789abcdef01234567".into()),
            repository: Some("jisu/platform".into()),
            default_branch: None,
        };
        crate::plan::build(&pipeline, &ctx, false, "p.yml").unwrap()
    }

    #[test]
    fn specs_come_from_the_plan_with_a_created_label() {
        let specs = build_specs(
            &plan("refs/heads/main", false),
            &[],
            true,
            "2026-01-01T00:00:00Z",
        )
        .unwrap();
        assert_eq!(specs.len(), 2);
        let backend = &specs[0];
        assert_eq!(backend.component, "backend");
        assert!(backend.push);
        assert_eq!(
            backend.tags[0],
            "ghcr.io/jisu/platform:backend-0123456789abcdef0123456789abcdef01234567"
        );
        assert_eq!(backend.labels[CREATED_LABEL], "2026-01-01T00:00:00Z");
        assert_eq!(
            backend.labels["org.opencontainers.image.revision"],
            "0123456789abcdef0123456789abcdef01234567"
        );
    }

    #[test]
    fn pull_requests_never_push_even_when_asked() {
        let specs = build_specs(&plan("", true), &["frontend".into()], true, "t").unwrap();
        assert_eq!(specs.len(), 1);
        assert!(!specs[0].push);
    }

    #[test]
    fn unknown_components_are_input_errors() {
        let err =
            build_specs(&plan("refs/heads/main", false), &["db".into()], true, "t").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("`db`") && text.contains("backend, frontend"),
            "{text}"
        );
    }

    #[test]
    fn digests_output_lists_only_pushed_images() {
        let d = crate::oci::digest::Digest::of(b"x");
        let out = digests_output(&[
            Built {
                component: "a".into(),
                reference: "ghcr.io/o/a:sha-1".into(),
                digest: Some(d.clone()),
            },
            Built {
                component: "b".into(),
                reference: "ghcr.io/o/b:pr-1".into(),
                digest: None,
            },
        ]);
        assert_eq!(out.len(), 1);
        assert_eq!(out["a"], format!("ghcr.io/o/a@{d}"));
    }
}
