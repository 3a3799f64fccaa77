//! A gate's limits held against findings and coverage: pure pass/fail decisions with a
//! message that names the limit.
//!
//! Three limits, each optional in [`Thresholds`]: a minimum bandit severity (any bandit
//! issue at or above it fails), a number of allowed known vulnerabilities (more pip-audit
//! vulnerabilities fail) and a minimum coverage percentage.

use super::bandit::Level;
use super::coverage::Coverage;
use super::{Finding, Severity, Tool};

/// Whether one limit was met, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `true` when the limit was met.
    pub passed: bool,
    /// What was measured against which limit, e.g. `coverage 71.4% is below the minimum
    /// 80%`.
    pub message: String,
}

/// A gate's limits; `None` means the limit is not checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    /// Bandit issues of this severity or higher fail the gate.
    pub bandit_min_severity: Option<Level>,
    /// More known vulnerabilities than this fail the gate.
    pub allowed_vulnerabilities: Option<usize>,
    /// Coverage below this percentage (0 to 100) fails the gate.
    pub coverage_min_percent: Option<f64>,
}

impl Thresholds {
    /// One verdict per limit that is set, in field order. The bandit and vulnerability
    /// limits look at the findings of their tool only; the coverage limit fails when it is
    /// set and `coverage` is `None` (no report to check).
    pub fn evaluate(&self, findings: &[Finding], coverage: Option<&Coverage>) -> Vec<Verdict> {
        let mut verdicts = Vec::new();
        if let Some(minimum) = self.bandit_min_severity {
            verdicts.push(bandit(findings, minimum));
        }
        if let Some(allowed) = self.allowed_vulnerabilities {
            verdicts.push(vulnerabilities(findings, allowed));
        }
        if let Some(minimum) = self.coverage_min_percent {
            verdicts.push(match coverage {
                Some(coverage) => self::coverage(coverage, minimum),
                None => Verdict {
                    passed: false,
                    message: format!(
                        "no coverage report to hold against the minimum {}%",
                        percent(minimum)
                    ),
                },
            });
        }
        verdicts
    }
}

/// Fails when any bandit finding has severity `minimum` or higher (bandit `LOW`, `MEDIUM`,
/// `HIGH` map to notice, warning, error; see [`Level::severity`]).
pub fn bandit(findings: &[Finding], minimum: Level) -> Verdict {
    let floor = minimum.severity();
    let at_or_above: Vec<&Finding> = findings
        .iter()
        .filter(|finding| finding.tool == Tool::Bandit && finding.code.is_some())
        .filter(|finding| finding.severity >= floor)
        .collect();
    let Some(first) = at_or_above.first() else {
        return Verdict {
            passed: true,
            message: format!("no bandit issue at or above the minimum severity {minimum}"),
        };
    };
    let location = match first.line {
        Some(line) => format!("{}:{line}", first.path),
        None => first.path.clone(),
    };
    Verdict {
        passed: false,
        message: format!(
            "{} bandit issue(s) at or above the minimum severity {minimum}, the first {} ({}) at {location}",
            at_or_above.len(),
            first.code.as_deref().unwrap_or(""),
            level_name(first.severity),
        ),
    }
}

fn level_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Notice => "low",
        Severity::Warning => "medium",
        Severity::Error => "high",
    }
}

/// Fails when pip-audit found more than `allowed` known vulnerabilities (dependencies it
/// could not audit are not counted).
pub fn vulnerabilities(findings: &[Finding], allowed: usize) -> Verdict {
    let known = findings
        .iter()
        .filter(|finding| finding.tool == Tool::PipAudit && finding.code.is_some())
        .count();
    if known > allowed {
        Verdict {
            passed: false,
            message: format!("{known} known vulnerabilities exceed the allowed {allowed}"),
        }
    } else {
        Verdict {
            passed: true,
            message: format!("{known} known vulnerabilities, within the allowed {allowed}"),
        }
    }
}

/// Fails when total coverage is below `minimum_percent`.
pub fn coverage(coverage: &Coverage, minimum_percent: f64) -> Verdict {
    let total = coverage.total_percent;
    if total < minimum_percent {
        Verdict {
            passed: false,
            message: format!(
                "coverage {}% is below the minimum {}%",
                percent_below(total),
                percent(minimum_percent)
            ),
        }
    } else {
        Verdict {
            passed: true,
            message: format!(
                "coverage {}% meets the minimum {}%",
                percent(total),
                percent(minimum_percent)
            ),
        }
    }
}

/// One decimal, without a trailing `.0`: `80`, `71.4`.
fn percent(value: f64) -> String {
    trim((value * 10.0).round() / 10.0)
}

/// Like [`percent`] but rounded down, so a value just under the minimum never prints as the
/// minimum itself (79.96 is `79.9`, not `80`).
fn percent_below(value: f64) -> String {
    trim((value * 10.0).floor() / 10.0)
}

fn trim(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::coverage::FileCoverage;

    fn finding(tool: Tool, code: Option<&str>, severity: Severity) -> Finding {
        Finding {
            tool,
            path: "pkg/a.py".into(),
            line: Some(6),
            column: None,
            code: code.map(str::to_owned),
            severity,
            message: "m".into(),
        }
    }

    fn total(total_percent: f64) -> Coverage {
        Coverage {
            total_percent,
            lines_valid: None,
            lines_covered: None,
            files: vec![FileCoverage {
                path: "a.py".into(),
                percent: total_percent,
            }],
        }
    }

    #[test]
    fn bandit_minimum_severity() {
        let findings = [
            finding(Tool::Bandit, Some("B101"), Severity::Notice),
            finding(Tool::Bandit, Some("B602"), Severity::Error),
            finding(Tool::Flake8, Some("E501"), Severity::Error),
        ];
        let high = bandit(&findings, Level::High);
        assert!(!high.passed);
        assert_eq!(
            high.message,
            "1 bandit issue(s) at or above the minimum severity high, the first B602 (high) at pkg/a.py:6"
        );
        assert!(!bandit(&findings, Level::Low).passed);
        assert!(bandit(&findings[..1], Level::Medium).passed);
        assert_eq!(
            bandit(&findings[..1], Level::Medium).message,
            "no bandit issue at or above the minimum severity medium"
        );
    }

    #[test]
    fn allowed_vulnerabilities() {
        let findings = [
            finding(Tool::PipAudit, Some("PYSEC-1"), Severity::Error),
            finding(Tool::PipAudit, None, Severity::Notice),
        ];
        let none_allowed = vulnerabilities(&findings, 0);
        assert!(!none_allowed.passed);
        assert_eq!(
            none_allowed.message,
            "1 known vulnerabilities exceed the allowed 0"
        );
        assert!(vulnerabilities(&findings, 1).passed);
    }

    #[test]
    fn coverage_minimum() {
        let low = coverage(&total(71.43), 80.0);
        assert!(!low.passed);
        assert_eq!(low.message, "coverage 71.4% is below the minimum 80%");
        let just_under = coverage(&total(79.96), 80.0);
        assert_eq!(
            just_under.message,
            "coverage 79.9% is below the minimum 80%"
        );
        let met = coverage(&total(80.0), 80.0);
        assert!(met.passed);
        assert_eq!(met.message, "coverage 80% meets the minimum 80%");
    }

    #[test]
    fn evaluate_checks_only_the_limits_set() {
        assert_eq!(Thresholds::default().evaluate(&[], None), vec![]);
        let thresholds = Thresholds {
            bandit_min_severity: Some(Level::Medium),
            allowed_vulnerabilities: Some(0),
            coverage_min_percent: Some(90.0),
        };
        let verdicts = thresholds.evaluate(&[], None);
        let passed: Vec<bool> = verdicts.iter().map(|v| v.passed).collect();
        assert_eq!(passed, [true, true, false]);
        assert_eq!(
            verdicts[2].message,
            "no coverage report to hold against the minimum 90%"
        );
        let verdicts = thresholds.evaluate(&[], Some(&total(95.0)));
        assert!(verdicts.iter().all(|v| v.passed));
    }
}
