//! pip-audit's JSON report (`pip-audit -f json`): `dependencies[]`, each with its `vulns[]`.
//!
//! Each known vulnerability is an error finding: the path is the package as
//! `name==version` (pip-audit reports packages, not files), the code the advisory id, the
//! message the advisory's description (or the id when descriptions were turned off) and,
//! when there are fixes, ` (fixed in 2.20.0, 3.0.1)` after it. A dependency pip-audit
//! could not audit is a notice whose message is its `skip_reason`.

use serde::Deserialize;

use super::{Finding, ParseError, Severity, Tool};

#[derive(Deserialize)]
struct RawReport {
    dependencies: Vec<RawDependency>,
}

#[derive(Deserialize)]
struct RawDependency {
    name: String,
    version: Option<String>,
    #[serde(default)]
    vulns: Vec<RawVuln>,
    skip_reason: Option<String>,
}

#[derive(Deserialize)]
struct RawVuln {
    id: String,
    #[serde(default)]
    fix_versions: Vec<String>,
    description: Option<String>,
}

/// Parses pip-audit's JSON report into findings, in report order.
pub fn parse(text: &str) -> Result<Vec<Finding>, ParseError> {
    super::check_size("pip-audit", text)?;
    let raw: RawReport = super::from_json("pip-audit", text)?;
    let mut findings = Vec::new();
    for dependency in raw.dependencies {
        if let Some(reason) = dependency.skip_reason {
            findings.push(Finding {
                tool: Tool::PipAudit,
                path: dependency.name,
                line: None,
                column: None,
                code: None,
                severity: Severity::Notice,
                message: reason,
            });
            continue;
        }
        let Some(version) = dependency.version else {
            return Err(ParseError::Content {
                what: "pip-audit",
                reason: format!(
                    "dependency {:?} has neither a version nor a skip_reason",
                    dependency.name
                ),
            });
        };
        let package = format!("{}=={}", dependency.name, version);
        for vuln in dependency.vulns {
            let mut message = vuln.description.unwrap_or_else(|| vuln.id.clone());
            if !vuln.fix_versions.is_empty() {
                message.push_str(&format!(" (fixed in {})", vuln.fix_versions.join(", ")));
            }
            findings.push(Finding {
                tool: Tool::PipAudit,
                path: package.clone(),
                line: None,
                column: None,
                code: Some(vuln.id),
                severity: Severity::Error,
                message,
            });
        }
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vulnerabilities_and_skipped_dependencies() {
        let text = r#"{"dependencies": [
            {"name": "requests", "version": "2.19.0", "vulns": [
                {"id": "PYSEC-2018-28", "fix_versions": ["2.20.0"], "description": "Leaks auth."},
                {"id": "GHSA-x", "fix_versions": []}
            ]},
            {"name": "six", "version": "1.16.0", "vulns": []},
            {"name": "private-lib", "skip_reason": "Dependency not found on PyPI"}
        ], "fixes": []}"#;
        let findings = parse(text).unwrap();
        assert_eq!(findings.len(), 3);
        assert_eq!(findings[0].path, "requests==2.19.0");
        assert_eq!(findings[0].code.as_deref(), Some("PYSEC-2018-28"));
        assert_eq!(findings[0].message, "Leaks auth. (fixed in 2.20.0)");
        assert_eq!(findings[0].severity, Severity::Error);
        assert_eq!(findings[1].message, "GHSA-x");
        assert_eq!(findings[2].severity, Severity::Notice);
        assert_eq!(findings[2].message, "Dependency not found on PyPI");
    }

    #[test]
    fn malformed_reports_are_errors() {
        assert!(matches!(parse("[]"), Err(ParseError::Json { .. })));
        assert!(matches!(
            parse(r#"{"dependencies": [{"name": "x", "vulns": []}]}"#),
            Err(ParseError::Content { .. })
        ));
    }
}
