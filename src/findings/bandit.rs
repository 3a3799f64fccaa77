//! bandit's JSON report (`bandit -f json`): `results[]`, one per issue, and `errors[]`,
//! files bandit could not scan.
//!
//! Bandit's issue severity maps to finding severity: `HIGH` is an error, `MEDIUM` a
//! warning, `LOW` a notice (see [`Level`]). A scan error is an error finding without a
//! line. The issue's confidence is kept in [`Issue::confidence`] by [`parse_issues`].

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use super::{Finding, ParseError, Severity, Tool};

/// Bandit's severity and confidence scale, lowest first.
/// Pipeline files write it lowercase (`bandit_severity: medium`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// `LOW`.
    Low,
    /// `MEDIUM`.
    Medium,
    /// `HIGH`.
    High,
}

impl Level {
    /// The finding severity an issue of this bandit severity gets.
    pub fn severity(self) -> Severity {
        match self {
            Level::Low => Severity::Notice,
            Level::Medium => Severity::Warning,
            Level::High => Severity::Error,
        }
    }

    /// The lowercase name (`low`, `medium`, `high`), as thresholds are written.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A level name that is not `low`, `medium` or `high` (in any case).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown bandit level {given:?}; expected low, medium or high")]
pub struct UnknownLevel {
    /// The name as given.
    pub given: String,
}

impl FromStr for Level {
    type Err = UnknownLevel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Ok(Level::Low),
            "medium" => Ok(Level::Medium),
            "high" => Ok(Level::High),
            _ => Err(UnknownLevel {
                given: s.to_owned(),
            }),
        }
    }
}

/// One bandit result with its bandit severity and confidence next to the finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The finding: path, line, 1-based column, test id as code, issue text as message.
    pub finding: Finding,
    /// Bandit's `issue_severity`.
    pub severity: Level,
    /// Bandit's `issue_confidence`.
    pub confidence: Level,
}

#[derive(Deserialize)]
struct RawReport {
    #[serde(default)]
    errors: Vec<RawError>,
    results: Vec<RawResult>,
}

#[derive(Deserialize)]
struct RawError {
    filename: String,
    reason: String,
}

#[derive(Deserialize)]
struct RawResult {
    filename: String,
    line_number: u32,
    /// 0-based; older bandit versions leave it out.
    col_offset: Option<u32>,
    test_id: String,
    issue_severity: String,
    issue_confidence: String,
    issue_text: String,
}

/// Parses bandit's JSON report into findings: scan errors first, then results in report
/// order.
pub fn parse(text: &str) -> Result<Vec<Finding>, ParseError> {
    let (errors, issues) = parse_all(text)?;
    Ok(errors
        .into_iter()
        .chain(issues.into_iter().map(|issue| issue.finding))
        .collect())
}

/// Parses only the results of bandit's JSON report, keeping bandit's severity and
/// confidence; scan errors are left out (use [`parse`] for them).
pub fn parse_issues(text: &str) -> Result<Vec<Issue>, ParseError> {
    parse_all(text).map(|(_, issues)| issues)
}

fn parse_all(text: &str) -> Result<(Vec<Finding>, Vec<Issue>), ParseError> {
    super::check_size("bandit", text)?;
    let raw: RawReport = super::from_json("bandit", text)?;
    let errors = raw
        .errors
        .into_iter()
        .map(|error| Finding {
            tool: Tool::Bandit,
            path: error.filename,
            line: None,
            column: None,
            code: None,
            severity: Severity::Error,
            message: error.reason,
        })
        .collect();
    let issues = raw
        .results
        .into_iter()
        .map(issue)
        .collect::<Result<_, _>>()?;
    Ok((errors, issues))
}

fn issue(raw: RawResult) -> Result<Issue, ParseError> {
    let level = |field: &str, value: &str| {
        value.parse::<Level>().map_err(|_| ParseError::Content {
            what: "bandit",
            reason: format!(
                "result {} at {}:{} has {field} {value:?}, expected LOW, MEDIUM or HIGH",
                raw.test_id, raw.filename, raw.line_number
            ),
        })
    };
    let severity = level("issue_severity", &raw.issue_severity)?;
    let confidence = level("issue_confidence", &raw.issue_confidence)?;
    Ok(Issue {
        finding: Finding {
            tool: Tool::Bandit,
            path: raw.filename,
            line: Some(raw.line_number),
            column: raw.col_offset.and_then(|offset| offset.checked_add(1)),
            code: Some(raw.test_id),
            severity: severity.severity(),
            message: raw.issue_text,
        },
        severity,
        confidence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{
      "errors": [{"filename": "pkg/bad.py", "reason": "syntax error while parsing AST from file"}],
      "generated_at": "2026-01-01T00:00:00Z",
      "metrics": {},
      "results": [
        {"filename": "pkg/r.py", "line_number": 6, "col_offset": 11, "test_id": "B602",
         "issue_severity": "HIGH", "issue_confidence": "MEDIUM",
         "issue_text": "subprocess call with shell=True identified, security issue."},
        {"filename": "pkg/r.py", "line_number": 5, "test_id": "B101",
         "issue_severity": "LOW", "issue_confidence": "HIGH", "issue_text": "Use of assert detected."}
      ]
    }"#;

    #[test]
    fn results_and_errors() {
        let findings = parse(REPORT).unwrap();
        assert_eq!(findings.len(), 3);
        assert_eq!(findings[0].path, "pkg/bad.py");
        assert_eq!(findings[0].severity, Severity::Error);
        assert_eq!(findings[0].line, None);
        assert_eq!(findings[1].code.as_deref(), Some("B602"));
        assert_eq!((findings[1].line, findings[1].column), (Some(6), Some(12)));
        assert_eq!(findings[1].severity, Severity::Error);
        assert_eq!(findings[2].column, None);
        assert_eq!(findings[2].severity, Severity::Notice);

        let issues = parse_issues(REPORT).unwrap();
        assert_eq!(issues.len(), 2);
        assert_eq!(
            (issues[0].severity, issues[0].confidence),
            (Level::High, Level::Medium)
        );
    }

    #[test]
    fn malformed_reports_are_errors() {
        for bad in [
            "",
            "not json",
            "{}",
            r#"{"results": [{"filename": "a.py"}]}"#,
            r#"{"results": [{"filename": "a.py", "line_number": -1, "test_id": "B1", "issue_severity": "LOW", "issue_confidence": "LOW", "issue_text": "t"}]}"#,
            r#"{"results": []} trailing"#,
        ] {
            assert!(matches!(parse(bad), Err(ParseError::Json { .. })), "{bad}");
        }
        let odd_level = r#"{"results": [{"filename": "a.py", "line_number": 1, "test_id": "B1", "issue_severity": "UNDEFINED", "issue_confidence": "LOW", "issue_text": "t"}]}"#;
        let error = parse(odd_level).unwrap_err();
        assert!(error.to_string().contains("\"UNDEFINED\""), "{error}");
    }

    #[test]
    fn levels_parse_in_any_case() {
        assert_eq!("High".parse::<Level>(), Ok(Level::High));
        assert!("critical".parse::<Level>().is_err());
        assert!(Level::Low < Level::Medium && Level::Medium < Level::High);
    }
}
