//! Gate tool output turned into findings: one parser per tool, all pure functions.
//!
//! A gate runs a tool (flake8, black, isort, bandit, pip-audit, pytest) and gets text back;
//! [`parse`] turns that text into [`Finding`]s, one per problem, each naming the file and,
//! where the tool says, the line, column and rule code. Coverage is not a list of problems
//! but a number, so [`coverage::parse`] returns a [`coverage::Coverage`] instead.
//! [`thresholds`] decides whether findings and coverage pass a gate's limits.
//!
//! Parsers keep every message and path exactly as the tool wrote it: escaping for the
//! terminal or for workflow commands happens where findings are printed, through
//! [`crate::output::escape`]. Input larger than [`MAX_INPUT_BYTES`] is refused, and
//! malformed input is a [`ParseError`], never a panic.

pub mod bandit;
pub mod black;
pub mod coverage;
pub mod flake8;
pub mod isort;
pub mod junit;
pub mod pip_audit;
pub mod thresholds;
pub mod verdict;
mod xml;

use std::fmt;
use std::str::FromStr;

/// The largest tool output the parsers accept: 16 MiB. Real reports are far smaller;
/// anything bigger is refused rather than held in memory and walked.
pub const MAX_INPUT_BYTES: usize = 16 * 1024 * 1024;

/// How much a finding matters, least to most: `Notice < Warning < Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth knowing, not a problem by itself (a dependency pip-audit could not check).
    Notice,
    /// A problem that style and low-severity rules report (formatting, lint, low bandit).
    Warning,
    /// A problem that breaks or endangers the code (failing tests, vulnerabilities).
    Error,
}

impl Severity {
    /// The lowercase name, as GitHub's annotation commands spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A gate tool whose output [`parse`] understands, with the output format it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    /// flake8's default format on stdout: `path:line:col: CODE message`.
    Flake8,
    /// `black --check` on stderr: `would reformat path` lines and a summary.
    Black,
    /// `isort --check-only` on stderr: `ERROR: path Imports are incorrectly sorted ...`.
    Isort,
    /// `bandit -f json` on stdout.
    Bandit,
    /// `pip-audit -f json` on stdout.
    PipAudit,
    /// The JUnit XML file pytest writes with `--junitxml`.
    PytestJunit,
}

impl Tool {
    /// Every tool, in a stable order.
    pub const ALL: [Tool; 6] = [
        Tool::Flake8,
        Tool::Black,
        Tool::Isort,
        Tool::Bandit,
        Tool::PipAudit,
        Tool::PytestJunit,
    ];

    /// The tool's name as findings and pipeline files spell it (`pytest-junit` for pytest's
    /// JUnit XML).
    pub fn name(self) -> &'static str {
        match self {
            Tool::Flake8 => "flake8",
            Tool::Black => "black",
            Tool::Isort => "isort",
            Tool::Bandit => "bandit",
            Tool::PipAudit => "pip-audit",
            Tool::PytestJunit => "pytest-junit",
        }
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tool name [`Tool::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown findings format {given:?}; known: flake8, black, isort, bandit, pip-audit, pytest-junit"
)]
pub struct UnknownTool {
    /// The name as given.
    pub given: String,
}

impl FromStr for Tool {
    type Err = UnknownTool;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tool::ALL
            .into_iter()
            .find(|tool| tool.name() == s)
            .ok_or_else(|| UnknownTool {
                given: s.to_owned(),
            })
    }
}

/// One problem a tool reported, located as precisely as the tool located it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The tool that reported it.
    pub tool: Tool,
    /// The file, as the tool wrote it (relative or absolute). For pip-audit, which reports
    /// on packages rather than files, `name==version` of the package.
    pub path: String,
    /// 1-based line, when the tool gives one.
    pub line: Option<u32>,
    /// 1-based column, when the tool gives one.
    pub column: Option<u32>,
    /// The tool's rule or advisory id (`F401`, `B602`, `PYSEC-2018-28`), or for pytest the
    /// test id `classname::name`.
    pub code: Option<String>,
    /// How much it matters.
    pub severity: Severity,
    /// The tool's message, unchanged (not escaped).
    pub message: String,
}

/// How many findings of each severity a list holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Findings of severity [`Severity::Error`].
    pub errors: usize,
    /// Findings of severity [`Severity::Warning`].
    pub warnings: usize,
    /// Findings of severity [`Severity::Notice`].
    pub notices: usize,
}

impl Summary {
    /// Counts `findings` by severity.
    pub fn of(findings: &[Finding]) -> Summary {
        let mut summary = Summary::default();
        for finding in findings {
            match finding.severity {
                Severity::Error => summary.errors += 1,
                Severity::Warning => summary.warnings += 1,
                Severity::Notice => summary.notices += 1,
            }
        }
        summary
    }

    /// All findings counted.
    pub fn total(&self) -> usize {
        self.errors + self.warnings + self.notices
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} error(s), {} warning(s), {} notice(s)",
            self.errors, self.warnings, self.notices
        )
    }
}

/// One tool's findings with their [`Summary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The findings, in the order the tool reported them.
    pub findings: Vec<Finding>,
    /// Their counts by severity.
    pub summary: Summary,
}

impl Report {
    /// A report of `findings`, counted.
    pub fn new(findings: Vec<Finding>) -> Report {
        let summary = Summary::of(&findings);
        Report { findings, summary }
    }
}

/// Why a tool's output could not be turned into findings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The output is larger than [`MAX_INPUT_BYTES`].
    #[error("{what} output is {bytes} bytes, more than the {limit}-byte limit")]
    TooLarge {
        /// Which output (a tool name, or `coverage`).
        what: &'static str,
        /// Its size.
        bytes: usize,
        /// [`MAX_INPUT_BYTES`].
        limit: usize,
    },
    /// A line of a line-based format has an unexpected shape.
    #[error(
        "{what} output line {line_number} is not in the expected format ({expected}): {line:?}"
    )]
    Line {
        /// Which output.
        what: &'static str,
        /// 1-based line number within the output.
        line_number: usize,
        /// The line (debug-quoted when shown).
        line: String,
        /// The shape that was expected.
        expected: &'static str,
    },
    /// A JSON report is not valid JSON or not the expected structure.
    #[error("{what} JSON report is invalid: {reason}")]
    Json {
        /// Which output.
        what: &'static str,
        /// serde_json's explanation, with the path to the bad value.
        reason: String,
    },
    /// An XML report is not well-formed XML.
    #[error("{what} XML report is invalid: {reason}")]
    Xml {
        /// Which output.
        what: &'static str,
        /// The XML parser's explanation, with the position.
        reason: String,
    },
    /// Well-formed data with a value or element the format does not allow.
    #[error("{what} report: {reason}")]
    Content {
        /// Which output.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Parses `text`, the output of `tool` in the format [`Tool`] describes, into findings in
/// the order the tool reported them. Empty output (a clean run of a line-based tool) is no
/// findings.
pub fn parse(tool: Tool, text: &str) -> Result<Vec<Finding>, ParseError> {
    check_size(tool.name(), text)?;
    match tool {
        Tool::Flake8 => flake8::parse(text),
        Tool::Black => black::parse(text),
        Tool::Isort => isort::parse(text),
        Tool::Bandit => bandit::parse(text),
        Tool::PipAudit => pip_audit::parse(text),
        Tool::PytestJunit => junit::parse(text),
    }
}

/// Refuses `text` when it is larger than [`MAX_INPUT_BYTES`].
pub(crate) fn check_size(what: &'static str, text: &str) -> Result<(), ParseError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(ParseError::TooLarge {
            what,
            bytes: text.len(),
            limit: MAX_INPUT_BYTES,
        });
    }
    Ok(())
}

/// Deserializes a JSON report, with the path to a bad value in the error.
pub(crate) fn from_json<'a, T: serde::Deserialize<'a>>(
    what: &'static str,
    text: &'a str,
) -> Result<T, ParseError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| ParseError::Json {
            what,
            reason: error.to_string(),
        })?;
    deserializer.end().map_err(|error| ParseError::Json {
        what,
        reason: error.to_string(),
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_round_trip() {
        for tool in Tool::ALL {
            assert_eq!(tool.name().parse::<Tool>(), Ok(tool));
        }
        assert!("pytest".parse::<Tool>().is_err());
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let text = "x".repeat(MAX_INPUT_BYTES + 1);
        for tool in Tool::ALL {
            let error = parse(tool, &text).unwrap_err();
            assert!(
                matches!(error, ParseError::TooLarge { bytes, .. } if bytes == MAX_INPUT_BYTES + 1),
                "{tool}: {error}"
            );
        }
    }

    #[test]
    fn severities_order_and_count() {
        assert!(Severity::Notice < Severity::Warning && Severity::Warning < Severity::Error);
        let finding = |severity| Finding {
            tool: Tool::Flake8,
            path: "a.py".into(),
            line: None,
            column: None,
            code: None,
            severity,
            message: "m".into(),
        };
        let report = Report::new(vec![
            finding(Severity::Error),
            finding(Severity::Warning),
            finding(Severity::Warning),
        ]);
        assert_eq!(
            report.summary,
            Summary {
                errors: 1,
                warnings: 2,
                notices: 0
            }
        );
        assert_eq!(report.summary.total(), 3);
        assert_eq!(
            report.summary.to_string(),
            "1 error(s), 2 warning(s), 0 notice(s)"
        );
    }
}
