//! Which image tags a run produces: pure rules from the run context and the pipeline file.
//!
//! The rules, and the complaints about other tools that shaped them:
//! - every pushed build carries its commit sha, so a deploy can name an exact build;
//! - `latest` comes only from a push to the default branch: never from a git tag (a
//!   backport release `v1.4.9` must not become `latest` after `v2.0.0`), a pull request or
//!   a prerelease;
//! - a git tag that is semver gives `1.2.3`, `1.2` and `1`; a prerelease gives only its
//!   full version;
//! - pull requests build `pr-N` from the head commit (not the merge commit) and never push;
//! - environment tags (`staging`, `production`) are set only by promotion.

use serde::Serialize;

use crate::config::context::{Event, GitRef, RunContext};
use crate::config::pipeline::{Pipeline, ShaLength, TagScheme};
use crate::oci::reference::MAX_TAG_LEN;

/// The tags one component's image gets in this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageTags {
    /// The component.
    pub component: String,
    /// `registry/repository`, without a tag.
    pub repository: String,
    /// Tags, most specific first (the sha tag, when there is one, comes first).
    pub tags: Vec<String>,
    /// Whether the tags are pushed; pull request builds are not.
    pub push: bool,
}

impl ImageTags {
    /// Full references, `registry/repository:tag`.
    pub fn references(&self) -> Vec<String> {
        self.tags
            .iter()
            .map(|tag| format!("{}:{tag}", self.repository))
            .collect()
    }
}

/// `registry/repository` of a component's image.
pub fn repository(pipeline: &Pipeline, component: &str) -> String {
    let images = &pipeline.images;
    let path = match images.scheme {
        TagScheme::ComponentPrefix => images.repository.clone().unwrap_or_default(),
        TagScheme::PerComponent => pipeline
            .components
            .get(component)
            .and_then(|c| c.repository.clone())
            .unwrap_or_else(|| {
                format!(
                    "{}/{component}",
                    images.owner.as_deref().unwrap_or_default()
                )
            }),
    };
    format!("{}/{path}", images.registry)
}

/// A tag in the pipeline's scheme: `backend-<name>` in a shared repository, `<name>` in the
/// component's own.
pub fn scheme_tag(pipeline: &Pipeline, component: &str, name: &str) -> String {
    let full = match pipeline.images.scheme {
        TagScheme::ComponentPrefix => format!("{component}-{name}"),
        TagScheme::PerComponent => name.to_owned(),
    };
    sanitize(&full)
}

/// The tag naming the build of commit `sha`: `backend-<sha>` or `sha-<sha>`.
pub fn sha_tag(pipeline: &Pipeline, component: &str, sha: &str) -> String {
    let sha = match pipeline.images.sha {
        ShaLength::Long => sha,
        ShaLength::Short => &sha[..sha.len().min(7)],
    };
    match pipeline.images.scheme {
        TagScheme::ComponentPrefix => scheme_tag(pipeline, component, sha),
        TagScheme::PerComponent => scheme_tag(pipeline, component, &format!("sha-{sha}")),
    }
}

/// The tag promotion moves to mark what runs in `environment`.
pub fn environment_tag(pipeline: &Pipeline, component: &str, environment: &str) -> String {
    scheme_tag(pipeline, component, environment)
}

/// The tags this run gives `component`; `None` when the event builds nothing.
pub fn compute(pipeline: &Pipeline, ctx: &RunContext, component: &str) -> Option<ImageTags> {
    let sha_tag = ctx
        .sha
        .as_deref()
        .map(|sha| sha_tag(pipeline, component, sha));
    let mut names: Vec<String> = Vec::new();
    let push = match &ctx.event {
        Event::Push { deleted: true, .. } => return None,
        Event::Push {
            git_ref: GitRef::Branch(branch),
            ..
        } => {
            names.push(branch.clone());
            let default_branch = ctx
                .default_branch
                .as_deref()
                .unwrap_or(&pipeline.default_branch);
            if branch == default_branch {
                names.push("latest".to_owned());
            }
            true
        }
        Event::Push {
            git_ref: GitRef::Tag(tag),
            ..
        } => {
            names.extend(version_tags(tag, &pipeline.images.version_prefix));
            true
        }
        Event::PullRequest { number, .. } => {
            names.push(format!("pr-{number}"));
            false
        }
        Event::Push {
            git_ref: GitRef::Other(_),
            ..
        }
        | Event::WorkflowDispatch { .. }
        | Event::Schedule { .. } => {
            return None;
        }
    };
    let mut tags: Vec<String> = Vec::new();
    // Pull request images are local only, named by number; pushed builds lead with the sha.
    if push && let Some(sha_tag) = sha_tag {
        tags.push(sha_tag);
    }
    for name in names {
        let tag = scheme_tag(pipeline, component, &name);
        if !tag.is_empty() && !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Some(ImageTags {
        component: component.to_owned(),
        repository: repository(pipeline, component),
        tags,
        push,
    })
}

/// Tags for a pushed git tag: semver gives `1.2.3`, `1.2`, `1` (a prerelease only its full
/// version), each after `prefix` (`images.version_prefix`, e.g. `v`); anything else is used
/// as it is, sanitized.
pub fn version_tags(git_tag: &str, prefix: &str) -> Vec<String> {
    match Semver::parse(git_tag) {
        Some(v) if v.pre.is_some() => vec![format!("{prefix}{}", v.full())],
        Some(v) => vec![
            format!("{prefix}{}", v.full()),
            format!("{prefix}{}.{}", v.major, v.minor),
            format!("{prefix}{}", v.major),
        ],
        None => vec![git_tag.to_owned()],
    }
}

/// A semantic version, as far as tags need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Semver {
    /// Major version.
    pub major: u64,
    /// Minor version.
    pub minor: u64,
    /// Patch version.
    pub patch: u64,
    /// Prerelease part after `-`, e.g. `rc.1`.
    pub pre: Option<String>,
}

impl Semver {
    /// Parses `1.2.3`, `v1.2.3`, `v1.2.3-rc.1` and `1.2.3+build` (build metadata dropped).
    pub fn parse(text: &str) -> Option<Semver> {
        let text = text.strip_prefix('v').unwrap_or(text);
        let text = text
            .split_once('+')
            .map_or(text, |(version, _build)| version);
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let numbers: Vec<u64> = core
            .split('.')
            .map(|n| {
                let leading_zero = n.len() > 1 && n.starts_with('0');
                if n.is_empty() || leading_zero || !n.bytes().all(|b| b.is_ascii_digit()) {
                    None
                } else {
                    n.parse().ok()
                }
            })
            .collect::<Option<_>>()?;
        let [major, minor, patch] = numbers[..] else {
            return None;
        };
        if let Some(pre) = pre {
            let valid = !pre.is_empty()
                && pre.split('.').all(|part| {
                    !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                return None;
            }
        }
        Some(Semver {
            major,
            minor,
            patch,
            pre: pre.map(str::to_owned),
        })
    }

    /// `1.2.3` or `1.2.3-rc.1`.
    pub fn full(&self) -> String {
        match &self.pre {
            Some(pre) => format!("{}.{}.{}-{pre}", self.major, self.minor, self.patch),
            None => format!("{}.{}.{}", self.major, self.minor, self.patch),
        }
    }
}

/// Makes `text` a valid OCI tag (`[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`): other characters
/// become `-`, leading `.` and `-` are dropped, and the result is cut to 128 characters.
pub fn sanitize(text: &str) -> String {
    let replaced: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = replaced.trim_start_matches(['.', '-']);
    trimmed.chars().take(MAX_TAG_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::context::DispatchRequest;
    use crate::oci::reference::is_valid_tag;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn pipeline(scheme: &str) -> Pipeline {
        let images = match scheme {
            "component-prefix" => "{scheme: component-prefix, repository: jisu/platform}",
            _ => "{scheme: per-component, owner: jisu, sha: short}",
        };
        serde_yaml::from_str(&format!(
            "
version: 1
images: {images}
components:
  backend: {{context: backend, dockerfile: backend/Dockerfile, port: 8000}}
environments:
  production: {{branch: main, namespace: p, url: 'https://x', strategy: blue-green, manifests: k8s}}
"
        ))
        .unwrap()
    }

    fn ctx(event: Event) -> RunContext {
        RunContext {
            event,
            sha: Some(SHA.into()),
            repository: None,
            default_branch: None,
        }
    }

    fn push(git_ref: &str) -> RunContext {
        ctx(Event::Push {
            git_ref: GitRef::parse(git_ref),
            deleted: false,
        })
    }

    fn tags(scheme: &str, ctx: &RunContext) -> Option<(Vec<String>, bool)> {
        compute(&pipeline(scheme), ctx, "backend").map(|t| (t.tags, t.push))
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    type Case<'a> = (&'a str, RunContext, Option<(&'a [&'a str], bool)>);

    #[test]
    fn table_of_events() {
        let pr = ctx(Event::PullRequest {
            number: 12,
            action: None,
            base_branch: None,
            from_fork: false,
        });
        let dispatch = ctx(Event::WorkflowDispatch {
            git_ref: GitRef::Branch("main".into()),
            request: DispatchRequest::Rollback {
                environment: "production".into(),
            },
            confirmation: None,
        });
        let cases: Vec<Case> = vec![
            (
                "default branch",
                push("refs/heads/main"),
                Some((&["backend-", "backend-main", "backend-latest"], true)),
            ),
            (
                "other branch",
                push("refs/heads/develop"),
                Some((&["backend-", "backend-develop"], true)),
            ),
            (
                "slash branch",
                push("refs/heads/feature/Login_2"),
                Some((&["backend-", "backend-feature-Login_2"], true)),
            ),
            (
                "semver tag",
                push("refs/tags/v1.2.3"),
                Some((
                    &["backend-", "backend-1.2.3", "backend-1.2", "backend-1"],
                    true,
                )),
            ),
            (
                "backport tag is never latest",
                push("refs/tags/v1.4.9"),
                Some((
                    &["backend-", "backend-1.4.9", "backend-1.4", "backend-1"],
                    true,
                )),
            ),
            (
                "prerelease",
                push("refs/tags/v2.0.0-rc.1"),
                Some((&["backend-", "backend-2.0.0-rc.1"], true)),
            ),
            (
                "build metadata",
                push("refs/tags/1.0.0+exp.sha"),
                Some((
                    &["backend-", "backend-1.0.0", "backend-1.0", "backend-1"],
                    true,
                )),
            ),
            (
                "plain tag",
                push("refs/tags/nightly"),
                Some((&["backend-", "backend-nightly"], true)),
            ),
            (
                "pull request builds from head, never pushes",
                pr,
                Some((&["backend-pr-12"], false)),
            ),
            ("dispatch builds nothing", dispatch, None),
            (
                "schedule builds nothing",
                ctx(Event::Schedule { cron: None }),
                None,
            ),
            (
                "deleted branch",
                ctx(Event::Push {
                    git_ref: GitRef::Branch("x".into()),
                    deleted: true,
                }),
                None,
            ),
        ];
        for (name, ctx, want) in cases {
            let want = want.map(|(tags, push)| {
                let tags = tags
                    .iter()
                    .map(|t| {
                        if *t == "backend-" {
                            format!("backend-{SHA}")
                        } else {
                            t.to_string()
                        }
                    })
                    .collect();
                (tags, push)
            });
            assert_eq!(tags("component-prefix", &ctx), want, "{name}");
        }
    }

    #[test]
    fn per_component_scheme_uses_sha_prefix_and_short_shas() {
        let got = compute(
            &pipeline("per-component"),
            &push("refs/heads/main"),
            "backend",
        )
        .unwrap();
        assert_eq!(got.repository, "ghcr.io/jisu/backend");
        assert_eq!(got.tags, strings(&["sha-0123456", "main", "latest"]));
        assert_eq!(got.references()[0], "ghcr.io/jisu/backend:sha-0123456");
    }

    #[test]
    fn the_payload_default_branch_wins() {
        let mut ctx = push("refs/heads/master");
        ctx.default_branch = Some("master".into());
        let (tags, _) = tags("per-component", &ctx).unwrap();
        assert!(tags.contains(&"latest".to_owned()), "{tags:?}");
    }

    #[test]
    fn environment_tags_follow_the_scheme() {
        assert_eq!(
            environment_tag(&pipeline("component-prefix"), "backend", "production"),
            "backend-production"
        );
        assert_eq!(
            environment_tag(&pipeline("per-component"), "backend", "staging"),
            "staging"
        );
    }

    #[test]
    fn sanitizing_gives_valid_tags() {
        for raw in [
            "feature/a b",
            "..x",
            "-y",
            "ü-branch",
            &"z".repeat(300),
            "dependabot/npm_and_yarn/x-1.2",
        ] {
            let tag = sanitize(raw);
            assert!(is_valid_tag(&tag), "{raw} -> {tag}");
        }
        assert_eq!(sanitize("feature/x"), "feature-x");
        assert!(!is_valid_tag("") && !is_valid_tag("-a") && !is_valid_tag("a+b"));
    }

    #[test]
    fn a_version_prefix_leads_every_version_tag_but_not_other_git_tags() {
        assert_eq!(version_tags("v1.4.2", "v"), ["v1.4.2", "v1.4", "v1"]);
        assert_eq!(version_tags("1.4.2", "v"), ["v1.4.2", "v1.4", "v1"]);
        assert_eq!(version_tags("v2.0.0-rc.1", "v"), ["v2.0.0-rc.1"]);
        assert_eq!(version_tags("v1.4.2", ""), ["1.4.2", "1.4", "1"]);
        assert_eq!(version_tags("nightly", "v"), ["nightly"]);
    }

    #[test]
    fn semver_parsing() {
        assert_eq!(Semver::parse("v1.2.3").unwrap().full(), "1.2.3");
        assert_eq!(
            Semver::parse("1.2.3-beta.2").unwrap().pre.as_deref(),
            Some("beta.2")
        );
        for bad in [
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "v1.x.3",
            "1.2.3-",
            "1.2.3-a..b",
            "release",
        ] {
            assert_eq!(Semver::parse(bad), None, "{bad}");
        }
    }
}
