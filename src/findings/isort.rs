//! `isort --check-only` on stderr: `ERROR: <path> Imports are incorrectly sorted and/or
//! formatted.` per file, each a warning. `Skipped N files` lines are skipped.

use super::{Finding, ParseError, Severity, Tool};

const SUFFIX: &str = " Imports are incorrectly sorted and/or formatted.";
const EXPECTED: &str =
    "`ERROR: <path> Imports are incorrectly sorted and/or formatted.` or `Skipped N files`";

/// Parses isort's output from `--check-only` (without `--diff`).
pub fn parse(text: &str) -> Result<Vec<Finding>, ParseError> {
    super::check_size("isort", text)?;
    let mut findings = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() || is_skipped_count(line) {
            continue;
        }
        let path = line
            .strip_prefix("ERROR: ")
            .and_then(|rest| rest.strip_suffix(SUFFIX))
            .filter(|path| !path.is_empty())
            .ok_or_else(|| ParseError::Line {
                what: "isort",
                line_number: index + 1,
                line: line.to_owned(),
                expected: EXPECTED,
            })?;
        findings.push(Finding {
            tool: Tool::Isort,
            path: path.to_owned(),
            line: None,
            column: None,
            code: None,
            severity: Severity::Warning,
            message: SUFFIX.trim_start().to_owned(),
        });
    }
    Ok(findings)
}

/// `Skipped 2 files`, which isort prints when its configuration skips files.
fn is_skipped_count(line: &str) -> bool {
    line.strip_prefix("Skipped ")
        .and_then(|rest| rest.split_once(' '))
        .is_some_and(|(count, noun)| {
            count.bytes().all(|b| b.is_ascii_digit()) && (noun == "files" || noun == "file")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_finding_per_file() {
        let text = "ERROR: /w/pkg/unsorted.py Imports are incorrectly sorted and/or formatted.\n\
                    ERROR: /w/pkg/with space.py Imports are incorrectly sorted and/or formatted.\n\
                    Skipped 2 files\n";
        let findings = parse(text).unwrap();
        let paths: Vec<_> = findings.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["/w/pkg/unsorted.py", "/w/pkg/with space.py"]);
        assert_eq!(
            findings[0].message,
            "Imports are incorrectly sorted and/or formatted."
        );
        assert_eq!(findings[0].severity, Severity::Warning);
    }

    #[test]
    fn other_lines_are_errors() {
        for bad in [
            "ERROR: Imports are incorrectly sorted and/or formatted.",
            "--- a.py:before",
            "Skipped many files",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse("").unwrap(), vec![]);
    }
}
