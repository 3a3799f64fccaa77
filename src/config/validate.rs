//! Rules of the pipeline file that its types cannot express.
//!
//! Pure: the file system is reached only through the [`Workspace`] trait, so the rules are
//! unit-tested on inline YAML.

use std::collections::{BTreeMap, BTreeSet};

use super::cron;
use super::pipeline::{BackupTarget, Command, Gate, Pipeline, ReportFormat, Strategy, TagScheme};

/// What validation needs to know about the repository checkout.
pub trait Workspace {
    /// Whether `path` (relative to the repository root) is a directory.
    fn is_dir(&self, path: &str) -> bool;
    /// Whether `path` (relative to the repository root) is a file.
    fn is_file(&self, path: &str) -> bool;
}

/// One broken rule: the field's dotted path and what is wrong.
pub type Violation = (String, String);

/// Checks every rule and returns all violations, in file order where possible.
pub fn validate(pipeline: &Pipeline, workspace: &dyn Workspace) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut bad = |field: String, message: String| out.push((field, message));

    if pipeline.version != 1 {
        bad(
            "version".into(),
            format!(
                "version {} is not supported; write `version: 1`",
                pipeline.version
            ),
        );
    }
    if !is_git_ref_name(&pipeline.default_branch) {
        bad(
            "default_branch".into(),
            format!("`{}` is not a valid branch name", pipeline.default_branch),
        );
    }

    let images = &pipeline.images;
    if !is_registry_host(&images.registry) {
        bad(
            "images.registry".into(),
            format!(
                "`{}` is not a registry host; write a lowercase host with an optional port, e.g. `ghcr.io`",
                images.registry
            ),
        );
    }
    match images.scheme {
        TagScheme::ComponentPrefix => {
            match &images.repository {
                None => bad(
                    "images.repository".into(),
                    "`scheme: component-prefix` needs the shared repository, e.g. `repository: jisu/platform`".into(),
                ),
                Some(repo) if !is_repository(repo) => bad("images.repository".into(), repository_problem(repo)),
                Some(_) => {}
            }
            if images.owner.is_some() {
                bad(
                    "images.owner".into(),
                    "`owner` is for `scheme: per-component`; remove it or change the scheme".into(),
                );
            }
        }
        TagScheme::PerComponent => {
            if images.repository.is_some() {
                bad(
                    "images.repository".into(),
                    "`repository` is for `scheme: component-prefix`; with `per-component` set `owner` (or `repository` on each component)".into(),
                );
            }
            if let Some(owner) = &images.owner
                && !is_repository(owner)
            {
                bad("images.owner".into(), repository_problem(owner));
            }
        }
    }

    if !images.version_prefix.is_empty()
        && !crate::oci::reference::is_valid_tag(&format!("{}0.0.0", images.version_prefix))
    {
        bad(
            "images.version_prefix".into(),
            format!(
                "`{}` cannot start an image tag; use letters, digits, `_`, `.` or `-`, starting with a letter, digit or `_` (e.g. `v`)",
                images.version_prefix
            ),
        );
    }
    if let Some(cache) = &images.cache_repository
        && !is_repository(cache)
    {
        bad("images.cache_repository".into(), repository_problem(cache));
    }

    if pipeline.components.is_empty() {
        bad(
            "components".into(),
            "list at least one component to build and deploy".into(),
        );
    }
    for (name, component) in &pipeline.components {
        let at = |field: &str| format!("components.{name}.{field}");
        if !is_dns_label(name) {
            bad(
                format!("components.{name}"),
                dns_label_problem("component name", name),
            );
        }
        if !workspace.is_dir(&component.context) {
            bad(
                at("context"),
                format!(
                    "`{}` is not a directory in the repository",
                    component.context
                ),
            );
        }
        if !workspace.is_file(&component.dockerfile) {
            bad(
                at("dockerfile"),
                format!("`{}` is not a file in the repository", component.dockerfile),
            );
        }
        match (&component.repository, images.scheme) {
            (Some(_), TagScheme::ComponentPrefix) => bad(
                at("repository"),
                "a component `repository` is for `scheme: per-component`; with `component-prefix` all components share `images.repository`".into(),
            ),
            (Some(repo), TagScheme::PerComponent) if !is_repository(repo) => bad(at("repository"), repository_problem(repo)),
            (None, TagScheme::PerComponent) if images.owner.is_none() => bad(
                at("repository"),
                format!("with `scheme: per-component` set `images.owner`, or `repository` here (e.g. `jisu/{name}`)"),
            ),
            _ => {}
        }
        for key in component.build_args.keys() {
            if !is_env_name(key) {
                bad(
                    at(&format!("build_args.{key}")),
                    format!("`{key}` is not a valid build argument name (letters, digits, `_`)"),
                );
            }
        }
        if component.port == Some(0) {
            bad(at("port"), "port must be between 1 and 65535".into());
        }
        if let Some(workload) = &component.workload
            && !is_dns_label(workload)
        {
            bad(at("workload"), dns_label_problem("workload name", workload));
        }
    }

    let mut branches: BTreeMap<&str, &str> = BTreeMap::new();
    for (name, env) in &pipeline.environments {
        let at = |field: &str| format!("environments.{name}.{field}");
        if !is_dns_label(name) {
            bad(
                format!("environments.{name}"),
                dns_label_problem("environment name", name),
            );
        }
        if !is_git_ref_name(&env.branch) {
            bad(
                at("branch"),
                format!("`{}` is not a valid branch name", env.branch),
            );
        } else if let Some(other) = branches.insert(&env.branch, name) {
            bad(
                at("branch"),
                format!(
                    "branch `{}` already deploys to `{other}`; one branch deploys to one environment",
                    env.branch
                ),
            );
        }
        if !is_dns_label(&env.namespace) {
            bad(
                at("namespace"),
                dns_label_problem("namespace", &env.namespace),
            );
        }
        if !is_http_url(&env.url) {
            bad(
                at("url"),
                format!("`{}` is not an http:// or https:// URL", env.url),
            );
        }
        if !workspace.is_dir(&env.manifests) {
            bad(
                at("manifests"),
                format!("`{}` is not a directory in the repository", env.manifests),
            );
        }
        for component in env.replicas.keys() {
            if !pipeline.components.contains_key(component) {
                bad(
                    at(&format!("replicas.{component}")),
                    unknown_component(pipeline, component),
                );
            }
        }
        if env.rollout_timeout.as_secs() == 0 {
            bad(at("rollout_timeout"), "must be longer than 0s".into());
        }
        for (i, check) in env.checks.iter().enumerate() {
            let at = |field: &str| format!("environments.{name}.checks[{i}].{field}");
            if !(is_http_url(&check.url) || check.url.starts_with('/')) {
                bad(
                    at("url"),
                    format!(
                        "`{}` is neither an http(s) URL nor a path starting with `/`",
                        check.url
                    ),
                );
            }
            if !(100..=599).contains(&check.expect_status) {
                bad(
                    at("expect_status"),
                    format!(
                        "{} is not an HTTP status code (100 to 599)",
                        check.expect_status
                    ),
                );
            }
            if check.retries == 0 {
                bad(at("retries"), "must be at least 1".into());
            }
            if check.timeout.as_secs() == 0 {
                bad(at("timeout"), "must be longer than 0s".into());
            }
        }
        check_names_unique(
            &env.checks
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>(),
            &at("checks"),
            &mut bad,
        );
        if let Some(command) = &env.command {
            check_command(command, &at("command"), workspace, &mut bad);
        }
        match (env.strategy, &env.blue_green) {
            (Strategy::Rolling, Some(_)) => bad(
                at("blue_green"),
                "`blue_green` settings need `strategy: blue-green`; remove them or change the strategy".into(),
            ),
            (Strategy::BlueGreen, Some(bg)) => {
                if let Some(url) = &bg.preview_url
                    && !is_http_url(url)
                {
                    bad(at("blue_green.preview_url"), format!("`{url}` is not an http:// or https:// URL"));
                }
            }
            _ => {}
        }
    }

    for (group, commands) in [
        ("lint", &pipeline.gates.lint),
        ("security", &pipeline.gates.security),
        ("test", &pipeline.gates.test),
    ] {
        for (i, gate) in commands.iter().enumerate() {
            check_gate(gate, &format!("gates.{group}[{i}]"), workspace, &mut bad);
        }
        check_names_unique(
            &commands.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            &format!("gates.{group}"),
            &mut bad,
        );
    }

    if let Some(retention) = &pipeline.retention {
        if let Err(why) = cron::check(&retention.schedule) {
            bad("retention.schedule".into(), why);
        }
        if retention.keep_sha_tags == 0 {
            bad(
                "retention.keep_sha_tags".into(),
                "must be at least 1: the image being deployed must never be pruned".into(),
            );
        }
    }

    if let Some(backup) = &pipeline.backup {
        if let Err(why) = cron::check(&backup.schedule) {
            bad("backup.schedule".into(), why);
        }
        if !pipeline.environments.contains_key(&backup.environment) {
            bad(
                "backup.environment".into(),
                format!(
                    "`{}` is not an environment of this file; known: {}",
                    backup.environment,
                    names(pipeline.environments.keys())
                ),
            );
        }
        if backup.targets.is_empty() {
            bad(
                "backup.targets".into(),
                "list at least one of postgres, redis, kubernetes".into(),
            );
        }
        if backup.targets.iter().collect::<BTreeSet<_>>().len() != backup.targets.len() {
            bad("backup.targets".into(), "a target is listed twice".into());
        }
        if !backup.destination.starts_with("s3://") || backup.destination.len() <= "s3://".len() {
            bad(
                "backup.destination".into(),
                format!("`{}` is not an s3://bucket/prefix URL", backup.destination),
            );
        }
        if backup.retain_for.as_secs() < 86_400 {
            bad(
                "backup.retain_for".into(),
                "keep backups for at least 1d".into(),
            );
        }
        let has = |target| backup.targets.contains(&target);
        if has(BackupTarget::Postgres) && backup.postgres.is_none() {
            bad(
                "backup.postgres".into(),
                "the `postgres` target needs `postgres: {host, user, database}` (the password comes from PGPASSWORD)".into(),
            );
        }
        if has(BackupTarget::Redis) && backup.redis.is_none() {
            bad(
                "backup.redis".into(),
                "the `redis` target needs `redis: {host}` (the password comes from REDISCLI_AUTH)"
                    .into(),
            );
        }
        if let Some(pg) = &backup.postgres {
            for (field, value) in [
                ("host", &pg.host),
                ("user", &pg.user),
                ("database", &pg.database),
            ] {
                if value.is_empty() || value.starts_with('-') || value.chars().any(char::is_control)
                {
                    bad(
                        format!("backup.postgres.{field}"),
                        format!(
                            "`{value}` is not a usable {field}: non-empty, no control characters, not starting with `-`"
                        ),
                    );
                }
            }
        }
        if let Some(recipient) = &backup.kubernetes.secrets_recipient
            && recipient.parse::<age::x25519::Recipient>().is_err()
        {
            bad(
                "backup.kubernetes.secrets_recipient".into(),
                "not an age recipient; write the public key `age-keygen` prints, `age1...`".into(),
            );
        }
        if let Some(redis) = &backup.redis
            && (redis.host.is_empty()
                || redis.host.starts_with('-')
                || redis.host.chars().any(char::is_control))
        {
            bad(
                "backup.redis.host".into(),
                format!("`{}` is not a usable host name", redis.host),
            );
        }
    }
    out
}

fn check_command(
    command: &Command,
    at: &str,
    workspace: &dyn Workspace,
    bad: &mut impl FnMut(String, String),
) {
    if command.name.trim().is_empty() {
        bad(format!("{at}.name"), "must not be empty".into());
    }
    match command.run.first() {
        None => bad(
            format!("{at}.run"),
            "list the program and its arguments, e.g. `[flake8, app]`".into(),
        ),
        Some(program) if program.trim().is_empty() => {
            bad(format!("{at}.run[0]"), "the program name is empty".into())
        }
        Some(_) => {}
    }
    if !workspace.is_dir(&command.workdir) {
        bad(
            format!("{at}.workdir"),
            format!("`{}` is not a directory in the repository", command.workdir),
        );
    }
    for key in command.env.keys() {
        if !is_env_name(key) {
            bad(
                format!("{at}.env.{key}"),
                format!("`{key}` is not a valid environment variable name"),
            );
        }
    }
}

/// A gate runs a command, reads reports, or both; every report can be found and every
/// threshold has a report to look at.
fn check_gate(
    gate: &Gate,
    at: &str,
    workspace: &dyn Workspace,
    bad: &mut impl FnMut(String, String),
) {
    match gate.command() {
        Some(command) => check_command(&command, at, workspace, bad),
        None if gate.reports.is_empty() => bad(
            format!("{at}.run"),
            "list the program and its arguments, e.g. `[flake8, app]`, or name the `reports` an earlier workflow step wrote".into(),
        ),
        None => {
            if gate.name.trim().is_empty() {
                bad(format!("{at}.name"), "must not be empty".into());
            }
            if !workspace.is_dir(&gate.workdir) {
                bad(
                    format!("{at}.workdir"),
                    format!("`{}` is not a directory in the repository", gate.workdir),
                );
            }
        }
    }
    for (i, report) in gate.reports.iter().enumerate() {
        let here = format!("{at}.reports[{i}]");
        match (&report.file, report.stream) {
            (Some(_), Some(_)) => bad(here, "give `file` or `stream`, not both".into()),
            (Some(file), None) => {
                if !is_relative_inside(file) {
                    bad(
                        format!("{here}.file"),
                        format!(
                            "`{file}` must be a relative path inside the checkout (no `..`, not absolute)"
                        ),
                    );
                }
            }
            (None, _) => {
                if gate.run.is_empty() {
                    bad(
                        format!("{at}.run"),
                        format!(
                            "list the program and its arguments, e.g. `[flake8, app]`: `reports[{i}]` reads its output (or name the report `file` an earlier workflow step wrote)"
                        ),
                    );
                } else if report.output_stream().is_none() {
                    bad(
                        format!("{here}.file"),
                        format!(
                            "{} reports are files: name the `file` the tool writes",
                            report.format.name()
                        ),
                    );
                }
            }
        }
    }
    let reads = |format: ReportFormat| gate.reports.iter().any(|r| r.format == format);
    let thresholds = &gate.thresholds;
    if thresholds.bandit_severity.is_some() && !reads(ReportFormat::Bandit) {
        bad(
            format!("{at}.thresholds.bandit_severity"),
            "the gate reads no bandit report: add `reports: [{format: bandit, ...}]`".into(),
        );
    }
    if thresholds.vulnerabilities.is_some() && !reads(ReportFormat::PipAudit) {
        bad(
            format!("{at}.thresholds.vulnerabilities"),
            "the gate reads no pip-audit report: add `reports: [{format: pip-audit, ...}]`".into(),
        );
    }
    if let Some(minimum) = thresholds.coverage {
        if !reads(ReportFormat::Cobertura) {
            bad(
                format!("{at}.thresholds.coverage"),
                "the gate reads no coverage report: add `reports: [{format: cobertura, file: ...}]`".into(),
            );
        }
        if !(0.0..=100.0).contains(&minimum) {
            bad(
                format!("{at}.thresholds.coverage"),
                format!("{minimum} is not a percentage from 0 to 100"),
            );
        }
    }
}

/// A relative path that stays inside the directory it is joined to.
fn is_relative_inside(path: &str) -> bool {
    let path = std::path::Path::new(path);
    !path.as_os_str().is_empty()
        && path.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        })
}

fn check_names_unique(names: &[&str], at: &str, bad: &mut impl FnMut(String, String)) {
    let mut seen = BTreeSet::new();
    for name in names {
        if !seen.insert(*name) {
            bad(
                at.to_owned(),
                format!("name `{name}` is used twice; names must be unique"),
            );
        }
    }
}

fn names<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    keys.map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn unknown_component(pipeline: &Pipeline, component: &str) -> String {
    format!(
        "`{component}` is not a component of this file; known: {}",
        names(pipeline.components.keys())
    )
}

fn dns_label_problem(what: &str, value: &str) -> String {
    format!(
        "{what} `{value}` must be 1-63 lowercase letters, digits or `-`, starting and ending with a letter or digit"
    )
}

fn repository_problem(value: &str) -> String {
    format!(
        "`{value}` is not a repository path: lowercase letters, digits and `._-`, parts separated by `/`, e.g. `jisu/platform`"
    )
}

/// A Kubernetes DNS-1123 label.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// An OCI repository path: lowercase components separated by `/`.
pub fn is_repository(s: &str) -> bool {
    !s.is_empty()
        && s.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && part.as_bytes()[0].is_ascii_alphanumeric()
                && part.as_bytes()[part.len() - 1].is_ascii_alphanumeric()
        })
}

fn is_registry_host(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0))
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}

/// The parts of `git check-ref-format` that matter for branch names.
pub fn is_git_ref_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(['/', '-', '.'])
        && !s.ends_with(['/', '.'])
        && !s.ends_with(".lock")
        && !s.contains("..")
        && !s.contains("//")
        && !s.contains("@{")
        && !s.chars().any(|c| c.is_control() || " ~^:?*[\\".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Everything;
    impl Workspace for Everything {
        fn is_dir(&self, _: &str) -> bool {
            true
        }
        fn is_file(&self, _: &str) -> bool {
            true
        }
    }

    fn parse(yaml: &str) -> Pipeline {
        serde_yaml::from_str(yaml).unwrap()
    }

    const MINIMAL: &str = "
version: 1
images: {scheme: component-prefix, repository: jisu/platform}
components:
  backend: {context: backend, dockerfile: backend/Dockerfile, port: 8000}
environments:
  staging: {branch: develop, namespace: jisu-staging, url: 'https://staging.jisu.example', strategy: rolling, manifests: k8s}
";

    #[test]
    fn a_minimal_file_is_valid() {
        assert_eq!(validate(&parse(MINIMAL), &Everything), vec![]);
    }

    #[test]
    fn reports_every_violation_with_its_field() {
        let yaml = MINIMAL
            .replace("version: 1", "version: 2")
            .replace("jisu-staging", "Jisu_Staging")
            .replace(
                "repository: jisu/platform",
                "repository: Jisu/Platform, owner: jisu",
            );
        let fields: Vec<String> = validate(&parse(&yaml), &Everything)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(
            fields,
            [
                "version",
                "images.repository",
                "images.owner",
                "environments.staging.namespace"
            ]
        );
    }

    #[test]
    fn one_branch_cannot_feed_two_environments() {
        let yaml = format!(
            "{MINIMAL}  other: {{branch: develop, namespace: other, url: 'http://x', strategy: rolling, manifests: k8s}}\n"
        );
        let violations = validate(&parse(&yaml), &Everything);
        assert_eq!(violations.len(), 1);
        assert!(
            violations[0].1.contains("already deploys to `other`"),
            "{violations:?}"
        );
    }

    #[test]
    fn missing_paths_are_named() {
        struct Nothing;
        impl Workspace for Nothing {
            fn is_dir(&self, _: &str) -> bool {
                false
            }
            fn is_file(&self, _: &str) -> bool {
                false
            }
        }
        let fields: Vec<String> = validate(&parse(MINIMAL), &Nothing)
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(
            fields,
            [
                "components.backend.context",
                "components.backend.dockerfile",
                "environments.staging.manifests"
            ]
        );
    }

    #[test]
    fn name_rules() {
        assert!(is_dns_label("jisu-prod"));
        assert!(!is_dns_label("-x") && !is_dns_label("X") && !is_dns_label(&"a".repeat(64)));
        assert!(is_repository("jisu/platform") && is_repository("a.b/c_d-e"));
        assert!(!is_repository("jisu//x") && !is_repository("Jisu") && !is_repository("x/"));
        assert!(is_git_ref_name("feature/x-1") && is_git_ref_name("release-1.2"));
        assert!(!is_git_ref_name("a..b") && !is_git_ref_name("a b") && !is_git_ref_name("x.lock"));
        assert!(is_registry_host("ghcr.io") && is_registry_host("localhost:5000"));
        assert!(
            !is_registry_host("GHCR.io") && !is_registry_host("host:0") && !is_registry_host("h:x")
        );
    }
}
