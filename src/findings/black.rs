//! `black --check` on stderr: a `would reformat <path>` line per file, `error: cannot
//! format <path>: <reason>` for a file black could not parse, and summary lines.
//!
//! A file to reformat is a warning; a file black cannot format is an error. The summary
//! (`Oh no! ...`, `All done! ...`, `1 file would be reformatted, ...`) says nothing the
//! findings do not, and is skipped.

use super::{Finding, ParseError, Severity, Tool};

const EXPECTED: &str =
    "`would reformat <path>`, `error: cannot format <path>: <reason>` or a summary line";

/// Parses black's stderr from `black --check` (without `--verbose`).
pub fn parse(text: &str) -> Result<Vec<Finding>, ParseError> {
    super::check_size("black", text)?;
    let mut findings = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() || is_summary(line) {
            continue;
        }
        if let Some(path) = line.strip_prefix("would reformat ") {
            findings.push(Finding {
                tool: Tool::Black,
                path: path.to_owned(),
                line: None,
                column: None,
                code: None,
                severity: Severity::Warning,
                message: "would reformat".to_owned(),
            });
        } else if let Some((path, reason)) = line
            .strip_prefix("error: cannot format ")
            .and_then(|rest| rest.split_once(": "))
        {
            findings.push(Finding {
                tool: Tool::Black,
                path: path.to_owned(),
                line: None,
                column: None,
                code: None,
                severity: Severity::Error,
                message: reason.to_owned(),
            });
        } else {
            return Err(ParseError::Line {
                what: "black",
                line_number: index + 1,
                line: line.to_owned(),
                expected: EXPECTED,
            });
        }
    }
    Ok(findings)
}

/// `Oh no! 💥 💔 💥`, `All done! ✨ 🍰 ✨` and the counts line
/// (`1 file would be reformatted, 7 files would be left unchanged.`, `... 1 file would fail
/// to reformat.`).
fn is_summary(line: &str) -> bool {
    line.starts_with("Oh no!")
        || line.starts_with("All done!")
        || (line.starts_with(|c: char| c.is_ascii_digit())
            && (line.contains(" would be reformatted")
                || line.contains(" would be left unchanged")
                || line.contains(" would fail to reformat")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_finding_per_file_and_summary_skipped() {
        let text = "would reformat /w/pkg/ugly.py\n\
                    error: cannot format /w/pkg/broken.py: Cannot parse for target version Python 3.13: 1:7: def f(:\n\
                    \n\
                    Oh no! 💥 💔 💥\n\
                    1 file would be reformatted, 6 files would be left unchanged, 1 file would fail to reformat.\n";
        let findings = parse(text).unwrap();
        assert_eq!(findings.len(), 2);
        assert_eq!(findings[0].path, "/w/pkg/ugly.py");
        assert_eq!(findings[0].severity, Severity::Warning);
        assert_eq!(findings[0].message, "would reformat");
        assert_eq!(findings[1].path, "/w/pkg/broken.py");
        assert_eq!(findings[1].severity, Severity::Error);
        assert_eq!(
            findings[1].message,
            "Cannot parse for target version Python 3.13: 1:7: def f(:"
        );
    }

    #[test]
    fn clean_run_is_no_findings() {
        let text = "All done! ✨ 🍰 ✨\n7 files would be left unchanged.\n";
        assert_eq!(parse(text).unwrap(), vec![]);
    }

    #[test]
    fn unknown_lines_are_errors() {
        let error = parse("All done!\nreformatted pkg/a.py\n").unwrap_err();
        assert!(
            matches!(&error, ParseError::Line { line_number: 2, .. }),
            "{error}"
        );
        assert!(parse("error: cannot format without reason\n").is_err());
    }
}
