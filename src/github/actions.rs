//! The GitHub Actions runner interface: inputs from `INPUT_<NAME>`, outputs and the job
//! summary through the files the runner names, and `::workflow commands::` on stdout.

use std::collections::hash_map::RandomState;
use std::fs::OpenOptions;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};

/// The environment variable the runner sets for action input `name`: upper-cased, spaces
/// turned into `_`, hyphens kept (`dry-run` -> `INPUT_DRY-RUN`).
pub fn input_var(name: &str) -> String {
    format!("INPUT_{}", name.replace(' ', "_").to_uppercase())
}

/// Escapes the message part of a workflow command.
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a property value of a workflow command (`file=`, `title=`, ...).
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// A workflow command line: `::name key=value,key=value::message`.
pub fn command(name: &str, properties: &[(&str, &str)], message: &str) -> String {
    let props: Vec<String> = properties
        .iter()
        .map(|(key, value)| format!("{key}={}", escape_property(value)))
        .collect();
    let sep = if props.is_empty() { "" } else { " " };
    format!("::{name}{sep}{}::{}", props.join(","), escape_data(message))
}

/// Where an annotation points.
#[derive(Debug, Clone, Default)]
pub struct AnnotationAt {
    /// File, relative to the repository root.
    pub file: Option<String>,
    /// Line, from 1.
    pub line: Option<usize>,
    /// Column, from 1.
    pub column: Option<usize>,
    /// Short title.
    pub title: Option<String>,
}

/// An `::error` (or `warning`, `notice`) annotation line.
pub fn annotation(level: &str, at: &AnnotationAt, message: &str) -> String {
    let line = at.line.map(|n| n.to_string());
    let column = at.column.map(|n| n.to_string());
    let props: Vec<(&str, &str)> = [
        ("file", at.file.as_deref()),
        ("line", line.as_deref()),
        ("col", column.as_deref()),
        ("title", at.title.as_deref()),
    ]
    .into_iter()
    .filter_map(|(key, value)| value.map(|v| (key, v)))
    .collect();
    command(level, &props, message)
}

/// `name=value` for the output file; multi-line values use the heredoc form with a
/// delimiter that does not occur in the value.
pub fn output_entry(name: &str, value: &str) -> String {
    if !value.contains('\n') && !value.contains('\r') {
        return format!("{name}={value}\n");
    }
    let delimiter = loop {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write(name.as_bytes());
        let candidate = format!("ghadelimiter_{:016x}", hasher.finish());
        if !value.contains(&candidate) {
            break candidate;
        }
    };
    format!("{name}<<{delimiter}\n{value}\n{delimiter}\n")
}

/// The runner's files, read once from the environment.
#[derive(Debug, Clone, Default)]
pub struct Runner {
    /// True inside GitHub Actions (`GITHUB_ACTIONS=true`).
    pub in_actions: bool,
    /// True inside a local `act` run (`ACT=true`).
    pub in_act: bool,
    /// `GITHUB_OUTPUT`.
    pub output_file: Option<PathBuf>,
    /// `GITHUB_STEP_SUMMARY`.
    pub summary_file: Option<PathBuf>,
}

impl Runner {
    /// Reads the runner's variables from this process's environment.
    pub fn from_env() -> Self {
        let flag = |name: &str| std::env::var(name).is_ok_and(|v| v == "true");
        let path = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Runner {
            in_actions: flag("GITHUB_ACTIONS"),
            in_act: flag("ACT"),
            output_file: path("GITHUB_OUTPUT"),
            summary_file: path("GITHUB_STEP_SUMMARY"),
        }
    }

    /// Sets step outputs; outside Actions (no `GITHUB_OUTPUT`) this does nothing.
    pub fn set_outputs(&self, outputs: &[(&str, String)]) -> Result<()> {
        let Some(path) = &self.output_file else {
            return Ok(());
        };
        let text: String = outputs
            .iter()
            .map(|(name, value)| output_entry(name, value))
            .collect();
        append(path, &text).context("writing step outputs to GITHUB_OUTPUT")
    }

    /// Appends Markdown to the job summary; outside Actions this does nothing.
    pub fn append_summary(&self, markdown: &str) -> Result<()> {
        let Some(path) = &self.summary_file else {
            return Ok(());
        };
        append(path, markdown).context("writing the job summary to GITHUB_STEP_SUMMARY")
    }

    /// Tells the runner to hide `secret` in all later log lines.
    pub fn mask(&self, secret: &str) {
        if self.in_actions && !secret.is_empty() {
            for line in secret.lines().filter(|l| !l.trim().is_empty()) {
                crate::output::workflow_command(&command("add-mask", &[], line));
            }
        }
    }

    /// Starts a collapsible log group (Actions only).
    pub fn group(&self, title: &str) {
        if self.in_actions {
            crate::output::workflow_command(&command("group", &[], title));
        }
    }

    /// Ends the current log group (Actions only).
    pub fn end_group(&self) {
        if self.in_actions {
            crate::output::workflow_command("::endgroup::");
        }
    }

    /// Prints an error annotation (Actions only; elsewhere the error is on stderr already).
    pub fn error_annotation(&self, at: &AnnotationAt, message: &str) {
        self.annotate("error", at, message);
    }

    /// Prints an annotation of `level` (`error`, `warning`, `notice`; Actions only).
    pub fn annotate(&self, level: &str, at: &AnnotationAt, message: &str) {
        if self.in_actions {
            crate::output::workflow_command(&annotation(level, at, message));
        }
    }
}

fn append(path: &PathBuf, text: &str) -> Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_names_keep_hyphens() {
        assert_eq!(input_var("dry-run"), "INPUT_DRY-RUN");
        assert_eq!(input_var("github token"), "INPUT_GITHUB_TOKEN");
    }

    #[test]
    fn escaping_follows_the_runner() {
        assert_eq!(escape_data("50% done\r\nnext"), "50%25 done%0D%0Anext");
        assert_eq!(escape_property("a:b,c\n"), "a%3Ab%2Cc%0A");
        assert_eq!(
            annotation(
                "error",
                &AnnotationAt {
                    file: Some("a,b.yml".into()),
                    line: Some(3),
                    column: None,
                    title: Some("bad: input".into())
                },
                "line1\nline2"
            ),
            "::error file=a%2Cb.yml,line=3,title=bad%3A input::line1%0Aline2"
        );
        assert_eq!(command("endgroup", &[], ""), "::endgroup::");
    }

    #[test]
    fn multi_line_outputs_use_a_heredoc() {
        assert_eq!(output_entry("jobs", "lint,build"), "jobs=lint,build\n");
        let entry = output_entry("plan", "a\nb");
        let (head, rest) = entry.split_once('\n').unwrap();
        let delimiter = head.strip_prefix("plan<<").unwrap();
        assert!(delimiter.starts_with("ghadelimiter_"));
        assert_eq!(rest, format!("a\nb\n{delimiter}\n"));
    }

    #[test]
    fn outputs_and_summary_append_to_the_runner_files() {
        let dir = tempfile::tempdir().unwrap();
        let runner = Runner {
            output_file: Some(dir.path().join("out")),
            summary_file: Some(dir.path().join("summary")),
            ..Default::default()
        };
        runner.set_outputs(&[("a", "1".into())]).unwrap();
        runner.set_outputs(&[("b", "2".into())]).unwrap();
        runner.append_summary("# hi\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out")).unwrap(),
            "a=1\nb=2\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("summary")).unwrap(),
            "# hi\n"
        );
    }
}
