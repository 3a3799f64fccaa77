//! flake8's default output format: one `path:line:col: CODE message` line per problem.
//!
//! Codes starting with `E9` (syntax errors and files flake8 could not read) are errors;
//! everything else is a warning.

use super::{Finding, ParseError, Severity, Tool};

const EXPECTED: &str = "path:line:col: CODE message";

/// Parses flake8's stdout. Blank lines are skipped; any other line that is not
/// `path:line:col: CODE message` is an error (another `--format`, or `--show-source`).
pub fn parse(text: &str) -> Result<Vec<Finding>, ParseError> {
    super::check_size("flake8", text)?;
    let mut findings = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let finding = parse_line(line).ok_or_else(|| ParseError::Line {
            what: "flake8",
            line_number: index + 1,
            line: line.to_owned(),
            expected: EXPECTED,
        })?;
        findings.push(finding);
    }
    Ok(findings)
}

/// One line; the location is the first `:<digits>:<digits>: ` so that a path holding a
/// colon (`C:\src\a.py`) still parses.
fn parse_line(line: &str) -> Option<Finding> {
    let (path, line_number, column, rest) = split_location(line)?;
    let (code, message) = rest.split_once(' ')?;
    if code.is_empty() || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let severity = if code.starts_with("E9") {
        Severity::Error
    } else {
        Severity::Warning
    };
    Some(Finding {
        tool: Tool::Flake8,
        path: path.to_owned(),
        line: Some(line_number),
        column: Some(column),
        code: Some(code.to_owned()),
        severity,
        message: message.to_owned(),
    })
}

fn split_location(line: &str) -> Option<(&str, u32, u32, &str)> {
    let mut search_from = 0;
    while let Some(offset) = line[search_from..].find(':') {
        let colon = search_from + offset;
        if colon > 0
            && let Some(found) = location_at(line, colon)
        {
            return Some(found);
        }
        search_from = colon + 1;
    }
    None
}

/// `line[colon..]` as `:<line>:<col>: rest`, with the path before it.
fn location_at(line: &str, colon: usize) -> Option<(&str, u32, u32, &str)> {
    let after = &line[colon + 1..];
    let (line_number, after) = after.split_once(':')?;
    let (column, rest) = after.split_once(": ")?;
    Some((
        &line[..colon],
        parse_number(line_number)?,
        parse_number(column)?,
        rest,
    ))
}

fn parse_number(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_format_lines() {
        let text = "pkg/a.py:1:1: F401 'os' imported but unused\n\
                    C:\\src\\b.py:12:80: E501 line too long (82 > 79 characters)\n\
                    \n\
                    pkg/c.py:3:5: E999 SyntaxError: invalid syntax\n";
        let findings = parse(text).unwrap();
        assert_eq!(findings.len(), 3);
        assert_eq!(findings[0].path, "pkg/a.py");
        assert_eq!((findings[0].line, findings[0].column), (Some(1), Some(1)));
        assert_eq!(findings[0].code.as_deref(), Some("F401"));
        assert_eq!(findings[0].message, "'os' imported but unused");
        assert_eq!(findings[0].severity, Severity::Warning);
        assert_eq!(findings[1].path, "C:\\src\\b.py");
        assert_eq!((findings[1].line, findings[1].column), (Some(12), Some(80)));
        assert_eq!(findings[2].severity, Severity::Error);
        assert_eq!(findings[2].message, "SyntaxError: invalid syntax");
    }

    #[test]
    fn clean_run_is_no_findings() {
        assert_eq!(parse("").unwrap(), vec![]);
    }

    #[test]
    fn other_shapes_are_errors_naming_the_line() {
        for bad in [
            "pkg/a.py:1: F401 no column",
            "pkg/a.py:x:1: F401 not a number",
            "pkg/a.py:1:1:F401 no space",
            "pkg/a.py:99999999999:1: F401 overflow",
            "    import os",
            "pkg/a.py:1:1: F4-01 odd code",
        ] {
            let error = parse(&format!("pkg/ok.py:1:1: W291 fine\n{bad}\n")).unwrap_err();
            assert!(
                matches!(&error, ParseError::Line { line_number: 2, line, .. } if line == bad),
                "{bad}: {error}"
            );
        }
    }
}
