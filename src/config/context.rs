//! The run context: which event happened, on which ref and commit, with which inputs.
//!
//! Inside GitHub Actions it comes from `GITHUB_*` variables and the payload at
//! `GITHUB_EVENT_PATH`; outside, flags give the same (`--event`, `--event-name`, `--ref`,
//! `--sha`, `--input`). Flags win over the environment.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::event::{
    self, DispatchPayload, EventName, PullRequestPayload, PushPayload, SchedulePayload,
};
use crate::error::InputError;

/// A git ref, split into its kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum GitRef {
    /// `refs/heads/<name>`.
    Branch(String),
    /// `refs/tags/<name>`.
    Tag(String),
    /// `refs/pull/<n>/merge` and anything else.
    Other(String),
}

impl GitRef {
    /// Splits a full ref; a bare name is taken as a branch.
    pub fn parse(full: &str) -> Self {
        if let Some(branch) = full.strip_prefix("refs/heads/") {
            GitRef::Branch(branch.to_owned())
        } else if let Some(tag) = full.strip_prefix("refs/tags/") {
            GitRef::Tag(tag.to_owned())
        } else if full.starts_with("refs/") {
            GitRef::Other(full.to_owned())
        } else {
            GitRef::Branch(full.to_owned())
        }
    }

    /// The branch name, if this is a branch.
    pub fn branch(&self) -> Option<&str> {
        match self {
            GitRef::Branch(name) => Some(name),
            _ => None,
        }
    }
}

/// What a `workflow_dispatch` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "operation", rename_all = "snake_case")]
pub enum DispatchRequest {
    /// Deploy the images built for `sha` to `environment`.
    Promote {
        /// Target environment.
        environment: String,
        /// Full commit sha whose images are promoted.
        sha: String,
    },
    /// Return `environment` to what ran before the last deploy.
    Rollback {
        /// Target environment.
        environment: String,
    },
    /// Move a blue-green `environment`'s traffic to the color a `deploy --no-switch`
    /// left beside the live one (the manual gate).
    Switch {
        /// Target environment.
        environment: String,
    },
}

/// The event, with what each kind needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Event {
    /// A push of a branch or tag.
    Push {
        /// What was pushed.
        git_ref: GitRef,
        /// The push deleted the ref: nothing to build.
        deleted: bool,
    },
    /// A pull request event.
    PullRequest {
        /// Pull request number.
        number: u64,
        /// `opened`, `synchronize`, ... (`None` when given by flags).
        action: Option<String>,
        /// Branch it merges into, when known.
        base_branch: Option<String>,
        /// Whether the head lives in another repository: its token cannot write checks.
        from_fork: bool,
    },
    /// A manual run.
    WorkflowDispatch {
        /// The ref the workflow ran on.
        git_ref: GitRef,
        /// What the person asked for.
        request: DispatchRequest,
        /// The `confirm` input, when the form has one (the reusable workflows' forms do):
        /// a production environment's name must be typed there.
        #[serde(skip_serializing_if = "Option::is_none")]
        confirmation: Option<String>,
    },
    /// A scheduled run.
    Schedule {
        /// The cron expression that fired, when known.
        cron: Option<String>,
    },
}

/// Everything the plan needs to know about this run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunContext {
    /// The event.
    pub event: Event,
    /// The commit the run is about: for pull requests the head commit, never the merge commit.
    pub sha: Option<String>,
    /// `owner/name`, when known.
    pub repository: Option<String>,
    /// The repository's default branch, when the payload says.
    pub default_branch: Option<String>,
}

/// The raw material a run context is made from: environment variables and flags.
#[derive(Debug, Clone, Default)]
pub struct ContextSources {
    /// `--event-name` or `GITHUB_EVENT_NAME`.
    pub event_name: Option<String>,
    /// Path of the payload: `--event` or `GITHUB_EVENT_PATH`, for error messages.
    pub event_path: Option<String>,
    /// The payload's text.
    pub event_payload: Option<String>,
    /// `--ref` or `GITHUB_REF`.
    pub git_ref: Option<String>,
    /// `--sha` (wins over the payload) .
    pub sha_flag: Option<String>,
    /// `GITHUB_SHA` (loses to the payload: for pull requests it is the merge commit).
    pub sha_env: Option<String>,
    /// `--input KEY=VALUE` for workflow_dispatch, over the payload's inputs.
    pub inputs: BTreeMap<String, String>,
    /// `GITHUB_REPOSITORY`.
    pub repository: Option<String>,
}

impl RunContext {
    /// Builds the context; every problem is an [`InputError`] naming the flag, variable or
    /// payload field to fix.
    pub fn resolve(sources: &ContextSources) -> Result<Self, InputError> {
        let payload_source = sources
            .event_path
            .clone()
            .unwrap_or_else(|| "event payload".to_owned());
        let payload: Option<Value> = match &sources.event_payload {
            None => None,
            Some(text) => Some(event::decode(text, &payload_source, "JSON")?),
        };
        if let Some(value) = &payload
            && !value.is_object()
        {
            return Err(InputError::new(
                &payload_source,
                None,
                "an event payload is a JSON object",
            ));
        }
        let name = match (&sources.event_name, &payload) {
            (Some(name), _) => EventName::parse(name, "--event-name / GITHUB_EVENT_NAME")?,
            (None, Some(value)) => EventName::infer(value).ok_or_else(|| {
                InputError::new(
                    &payload_source,
                    None,
                    format!(
                        "cannot tell which event this payload is; pass --event-name ({})",
                        EventName::ALL.join(", ")
                    ),
                )
            })?,
            (None, None) => {
                return Err(InputError::new(
                    "--event-name",
                    None,
                    "no event given: pass --event FILE (a webhook payload), or --event-name with --ref and --sha; inside GitHub Actions GITHUB_EVENT_NAME is used",
                ));
            }
        };
        let sha_flag = sources
            .sha_flag
            .as_deref()
            .map(|s| checked_sha(s, "--sha"))
            .transpose()?;
        let sha_env = sources
            .sha_env
            .as_deref()
            .map(|s| checked_sha(s, "GITHUB_SHA"))
            .transpose()?;
        let text = sources.event_payload.as_deref();

        let mut context = match name {
            EventName::Push => push(text, &payload_source, sources)?,
            EventName::PullRequest => pull_request(text, &payload_source, sources)?,
            EventName::WorkflowDispatch => dispatch(text, &payload_source, sources)?,
            EventName::Schedule => schedule(text, &payload_source)?,
        };
        context.sha = sha_flag.or(context.sha).or(sha_env);
        if context.repository.is_none() {
            context.repository = sources.repository.clone();
        }
        Ok(context)
    }
}

fn push(
    text: Option<&str>,
    source: &str,
    sources: &ContextSources,
) -> Result<RunContext, InputError> {
    let (git_ref, deleted, sha, repo) = match text {
        Some(text) => {
            let p: PushPayload = event::decode(text, source, "push")?;
            let sha = if p.deleted {
                None
            } else {
                Some(checked_sha(&p.after, &format!("{source}: after"))?)
            };
            (p.git_ref, p.deleted, sha, p.repository.unwrap_or_default())
        }
        None => (
            required_ref(sources, "push")?,
            false,
            None,
            Default::default(),
        ),
    };
    let git_ref = checked_ref(
        &sources.git_ref.clone().unwrap_or(git_ref),
        ref_source(sources, source, "ref"),
    )?;
    Ok(RunContext {
        event: Event::Push {
            git_ref: GitRef::parse(&git_ref),
            deleted,
        },
        sha,
        repository: repo.full_name,
        default_branch: repo.default_branch,
    })
}

fn pull_request(
    text: Option<&str>,
    source: &str,
    sources: &ContextSources,
) -> Result<RunContext, InputError> {
    match text {
        Some(text) => {
            let p: PullRequestPayload = event::decode(text, source, "pull_request")?;
            let head_sha = checked_sha(
                &p.pull_request.head.sha,
                &format!("{source}: pull_request.head.sha"),
            )?;
            let base_repo = p.repository.clone().unwrap_or_default();
            let head_repo = p
                .pull_request
                .head
                .repo
                .as_ref()
                .and_then(|r| r.full_name.clone());
            let from_fork = match (&head_repo, &base_repo.full_name) {
                (Some(head), Some(base)) => head != base,
                // A deleted fork leaves `head.repo` null: treat it as a fork, the safe side.
                (None, _) => true,
                _ => false,
            };
            Ok(RunContext {
                event: Event::PullRequest {
                    number: p.number,
                    action: Some(p.action),
                    base_branch: Some(checked_ref(
                        &p.pull_request.base.branch,
                        format!("{source}: pull_request.base.ref"),
                    )?),
                    from_fork,
                },
                sha: Some(head_sha),
                repository: base_repo.full_name,
                default_branch: base_repo.default_branch,
            })
        }
        None => {
            let git_ref = checked_ref(&required_ref(sources, "pull_request")?, "--ref")?;
            let number = git_ref
                .strip_prefix("refs/pull/")
                .and_then(|rest| rest.split('/').next())
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| {
                    InputError::new(
                        "--ref",
                        None,
                        format!("`{git_ref}` is not a pull request ref; write refs/pull/<number>/merge, or pass the payload with --event"),
                    )
                })?;
            Ok(RunContext {
                event: Event::PullRequest {
                    number,
                    action: None,
                    base_branch: None,
                    from_fork: false,
                },
                sha: None,
                repository: None,
                default_branch: None,
            })
        }
    }
}

fn dispatch(
    text: Option<&str>,
    source: &str,
    sources: &ContextSources,
) -> Result<RunContext, InputError> {
    let (git_ref, mut inputs, repo) = match text {
        Some(text) => {
            let p: DispatchPayload = event::decode(text, source, "workflow_dispatch")?;
            let inputs = p
                .inputs
                .into_iter()
                .map(|(key, value)| match value {
                    Value::String(s) => (key, s),
                    other => (key, other.to_string()),
                })
                .collect::<BTreeMap<_, _>>();
            (p.git_ref, inputs, p.repository.unwrap_or_default())
        }
        None => (
            required_ref(sources, "workflow_dispatch")?,
            BTreeMap::new(),
            Default::default(),
        ),
    };
    inputs.extend(sources.inputs.clone());
    let git_ref = checked_ref(
        &sources.git_ref.clone().unwrap_or(git_ref),
        ref_source(sources, source, "ref"),
    )?;
    let input = |key: &str| inputs.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    let where_inputs = if text.is_some() {
        format!("{source}: inputs")
    } else {
        "--input".to_owned()
    };
    let environment = input("environment")
        .ok_or_else(|| {
            InputError::new(&where_inputs, Some("environment"), "workflow_dispatch needs input `environment` (the environment to promote to or roll back)")
        })?
        .to_owned();
    let request = match input("operation") {
        Some("promote") => {
            let sha = input("sha").ok_or_else(|| {
                InputError::new(&where_inputs, Some("sha"), "`operation: promote` needs input `sha`, the full commit sha whose images to deploy")
            })?;
            DispatchRequest::Promote {
                environment,
                sha: checked_sha(sha, &format!("{where_inputs}.sha"))?,
            }
        }
        Some("rollback") => DispatchRequest::Rollback { environment },
        Some("switch") => DispatchRequest::Switch { environment },
        Some(other) => {
            return Err(InputError::new(
                &where_inputs,
                Some("operation"),
                format!("operation `{other}` is not known; use `promote`, `rollback` or `switch`"),
            ));
        }
        None => {
            return Err(InputError::new(
                &where_inputs,
                Some("operation"),
                "workflow_dispatch needs input `operation`: `promote`, `rollback` or `switch`",
            ));
        }
    };
    Ok(RunContext {
        event: Event::WorkflowDispatch {
            git_ref: GitRef::parse(&git_ref),
            request,
            confirmation: inputs.get("confirm").map(|typed| typed.trim().to_owned()),
        },
        sha: None,
        repository: repo.full_name,
        default_branch: repo.default_branch,
    })
}

fn schedule(text: Option<&str>, source: &str) -> Result<RunContext, InputError> {
    let p = text
        .map(|text| event::decode::<SchedulePayload>(text, source, "schedule"))
        .transpose()?;
    let (cron, repo) = p
        .map(|p| (p.schedule, p.repository.unwrap_or_default()))
        .unwrap_or_default();
    Ok(RunContext {
        event: Event::Schedule { cron },
        sha: None,
        repository: repo.full_name,
        default_branch: repo.default_branch,
    })
}

fn required_ref(sources: &ContextSources, event: &str) -> Result<String, InputError> {
    sources.git_ref.clone().ok_or_else(|| {
        InputError::new(
            "--ref",
            None,
            format!("a {event} event without a payload needs --ref (e.g. refs/heads/main); or pass the payload with --event"),
        )
    })
}

/// Where the ref came from, for errors: the flag when given, else the payload.
fn ref_source(sources: &ContextSources, payload: &str, field: &str) -> String {
    if sources.git_ref.is_some() {
        "--ref".to_owned()
    } else {
        format!("{payload}: {field}")
    }
}

/// A ref name as `git check-ref-format` accepts it (a bare name is a branch). Refs come
/// from outsiders (a branch pushed to a fork, a pull request), so control characters,
/// spaces and the characters git forbids are refused before the ref is printed or used.
pub fn checked_ref(name: &str, source: impl AsRef<str>) -> Result<String, InputError> {
    match ref_problem(name) {
        None => Ok(name.to_owned()),
        Some(problem) => Err(InputError::new(
            source.as_ref(),
            None,
            format!("`{name}` is not a valid git ref: {problem}"),
        )),
    }
}

/// What makes `name` an invalid ref, following git's `check-ref-format` rules.
fn ref_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name.len() > 1024 {
        return Some("it is longer than 1024 bytes");
    }
    if name.chars().any(|c| c.is_control()) {
        return Some("it contains a control character (a line break, tab or escape)");
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        return Some(match c {
            ' ' => "it contains a space",
            _ => "it contains one of the characters git forbids in refs: ~ ^ : ? * [ \\",
        });
    }
    if name == "@" || name.contains("@{") {
        return Some("`@` alone and `@{` are not allowed");
    }
    if name.contains("..") {
        return Some("it contains `..`");
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return Some("it has an empty path component");
    }
    if name.ends_with('.') {
        return Some("it ends with `.`");
    }
    if name
        .split('/')
        .any(|part| part.starts_with('.') || part.ends_with(".lock"))
    {
        return Some("a component starts with `.` or ends with `.lock`");
    }
    None
}

/// A full commit sha: 40 lowercase hex characters.
fn checked_sha(sha: &str, source: &str) -> Result<String, InputError> {
    let sha = sha.trim();
    if sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(sha.to_ascii_lowercase())
    } else {
        Err(InputError::new(
            source,
            None,
            format!(
                "`{sha}` is not a full commit sha; give all 40 hex characters (`git rev-parse HEAD`)"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn flags(name: &str, git_ref: &str) -> ContextSources {
        ContextSources {
            event_name: Some(name.into()),
            git_ref: Some(git_ref.into()),
            sha_flag: Some(SHA.into()),
            ..Default::default()
        }
    }

    #[test]
    fn refs_follow_the_git_grammar() {
        for good in [
            "refs/heads/main",
            "feature/x-1",
            "refs/tags/v1.2.3",
            "refs/pull/7/merge",
        ] {
            assert_eq!(checked_ref(good, "--ref").unwrap(), good);
        }
        for bad in [
            "",
            "refs/heads/a\n::error::x",
            "a\rb",
            "a\u{1b}[31m",
            "a b",
            "a..b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[b",
            "a\\b",
            "@",
            "a@{1}",
            "/a",
            "a/",
            "a//b",
            "a.",
            "refs/heads/.hidden",
            "x.lock",
        ] {
            assert!(checked_ref(bad, "--ref").is_err(), "{bad:?} accepted");
        }
        let err = RunContext::resolve(&flags("push", "refs/heads/a\n::error::x")).unwrap_err();
        assert!(err.to_string().contains("control character"), "{err}");
    }

    #[test]
    fn push_from_flags() {
        let ctx = RunContext::resolve(&flags("push", "refs/heads/main")).unwrap();
        assert_eq!(
            ctx.event,
            Event::Push {
                git_ref: GitRef::Branch("main".into()),
                deleted: false
            }
        );
        assert_eq!(ctx.sha.as_deref(), Some(SHA));
    }

    #[test]
    fn pull_request_uses_the_head_sha_not_github_sha() {
        let payload = format!(
            r#"{{"action":"opened","number":7,"pull_request":{{"head":{{"ref":"f","sha":"{SHA}","repo":{{"full_name":"a/b"}}}},"base":{{"ref":"main","sha":"{}"}}}},"repository":{{"full_name":"a/b"}}}}"#,
            "f".repeat(40)
        );
        let sources = ContextSources {
            event_name: Some("pull_request".into()),
            event_payload: Some(payload),
            sha_env: Some("e".repeat(40)),
            ..Default::default()
        };
        let ctx = RunContext::resolve(&sources).unwrap();
        assert_eq!(ctx.sha.as_deref(), Some(SHA));
        assert!(matches!(
            ctx.event,
            Event::PullRequest {
                number: 7,
                from_fork: false,
                ..
            }
        ));
    }

    #[test]
    fn pull_request_number_from_the_ref() {
        let ctx = RunContext::resolve(&flags("pull_request", "refs/pull/42/merge")).unwrap();
        assert!(matches!(ctx.event, Event::PullRequest { number: 42, .. }));
        let err = RunContext::resolve(&flags("pull_request", "refs/heads/x")).unwrap_err();
        assert!(err.to_string().contains("not a pull request ref"), "{err}");
    }

    #[test]
    fn dispatch_inputs_from_flags() {
        let mut sources = flags("workflow_dispatch", "refs/heads/main");
        sources.inputs = [
            ("operation", "promote"),
            ("environment", "production"),
            ("sha", SHA),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
        let ctx = RunContext::resolve(&sources).unwrap();
        assert_eq!(
            ctx.event,
            Event::WorkflowDispatch {
                git_ref: GitRef::Branch("main".into()),
                request: DispatchRequest::Promote {
                    environment: "production".into(),
                    sha: SHA.into()
                },
                confirmation: None,
            }
        );
        sources.inputs.insert("operation".into(), "deploy".into());
        let err = RunContext::resolve(&sources).unwrap_err().to_string();
        assert!(
            err.contains("field `operation`") && err.contains("promote"),
            "{err}"
        );
    }

    #[test]
    fn short_or_bad_shas_are_refused() {
        let mut sources = flags("push", "refs/heads/main");
        sources.sha_flag = Some("abc1234".into());
        let err = RunContext::resolve(&sources).unwrap_err().to_string();
        assert!(
            err.starts_with("--sha: `abc1234` is not a full commit sha"),
            "{err}"
        );
    }

    #[test]
    fn unknown_event_names_list_the_known_ones() {
        let err = RunContext::resolve(&flags("issues", "refs/heads/main"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("push, pull_request, workflow_dispatch, schedule"),
            "{err}"
        );
    }

    #[test]
    fn git_refs() {
        assert_eq!(
            GitRef::parse("refs/tags/v1.2.3"),
            GitRef::Tag("v1.2.3".into())
        );
        assert_eq!(GitRef::parse("develop"), GitRef::Branch("develop".into()));
        assert_eq!(
            GitRef::parse("refs/pull/1/merge"),
            GitRef::Other("refs/pull/1/merge".into())
        );
    }
}
