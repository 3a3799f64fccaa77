//! pytest's JUnit XML report (`pytest --junitxml=report.xml`): one error finding per
//! `<testcase>` with a `<failure>` or `<error>`.
//!
//! The code is the test id `classname::name`, the message the failure's `message`
//! attribute (or, without one, the first line of its text). The location is the last
//! `path.py:line: ExceptionName` line of pytest's traceback text, the innermost frame; when the
//! text has none, the testcase's `file` and `line` attributes (written with
//! `junit_family=xunit1`; pytest's `line` is 0-based, the finding's 1-based). Without
//! either, the path is the classname turned into a module path (`tests/test_x.py`).

use super::{Finding, ParseError, Severity, Tool};

const WHAT: &str = "pytest JUnit";

/// Parses a JUnit XML report from pytest into findings, in document order.
pub fn parse(text: &str) -> Result<Vec<Finding>, ParseError> {
    super::check_size("pytest-junit", text)?;
    let document = super::xml::document(WHAT, text)?;
    let root = document.root_element();
    if !matches!(root.tag_name().name(), "testsuites" | "testsuite") {
        return Err(ParseError::Content {
            what: WHAT,
            reason: format!(
                "the root element is <{}>, not <testsuites> or <testsuite>",
                root.tag_name().name()
            ),
        });
    }
    let mut findings = Vec::new();
    for testcase in root
        .descendants()
        .filter(|node| node.has_tag_name("testcase"))
    {
        let classname = testcase.attribute("classname").unwrap_or("");
        let name = super::xml::required(WHAT, testcase, "name")?;
        for problem in testcase
            .children()
            .filter(|node| node.has_tag_name("failure") || node.has_tag_name("error"))
        {
            findings.push(finding(testcase, classname, name, problem)?);
        }
    }
    Ok(findings)
}

fn finding(
    testcase: roxmltree::Node<'_, '_>,
    classname: &str,
    name: &str,
    problem: roxmltree::Node<'_, '_>,
) -> Result<Finding, ParseError> {
    let text = problem.text().unwrap_or("");
    let message = match problem.attribute("message") {
        Some(message) => message.to_owned(),
        None => text.lines().next().unwrap_or("").to_owned(),
    };
    let (path, line) = match traceback_location(text) {
        Some((path, line)) => (path.to_owned(), Some(line)),
        None => attribute_location(testcase, classname)?,
    };
    let code = if classname.is_empty() {
        name.to_owned()
    } else {
        format!("{classname}::{name}")
    };
    Ok(Finding {
        tool: Tool::PytestJunit,
        path,
        line,
        column: None,
        code: Some(code),
        severity: Severity::Error,
        message,
    })
}

/// The last `path.py:line: Word` line of a pytest traceback (`tests/test_a.py:16:
/// AssertionError`).
fn traceback_location(text: &str) -> Option<(&str, u32)> {
    text.lines().rev().find_map(|line| {
        let (location, exception) = line.split_once(": ")?;
        if exception.is_empty() || exception.starts_with(char::is_whitespace) {
            return None;
        }
        let (path, number) = location.rsplit_once(':')?;
        // Only Python files: an assertion's text (`E   assert {'a:1: b': 2}`) has the
        // same shape otherwise.
        if !path.ends_with(".py") || path.starts_with(char::is_whitespace) {
            return None;
        }
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((path, number.parse().ok()?))
    })
}

fn attribute_location(
    testcase: roxmltree::Node<'_, '_>,
    classname: &str,
) -> Result<(String, Option<u32>), ParseError> {
    let line = match testcase.attribute("line") {
        None => None,
        Some(line) => {
            let zero_based: u32 = line.parse().map_err(|_| ParseError::Content {
                what: WHAT,
                reason: format!("testcase line attribute {line:?} is not a line number"),
            })?;
            zero_based.checked_add(1)
        }
    };
    let path = match testcase.attribute("file") {
        Some(file) => file.to_owned(),
        None if classname.is_empty() => String::new(),
        None => module_path(classname),
    };
    Ok((path, line))
}

/// `tests.test_calc` → `tests/test_calc.py`; `tests.test_calc.TestClass` →
/// `tests/test_calc.py` (a trailing capitalised part is a class).
fn module_path(classname: &str) -> String {
    let mut parts: Vec<&str> = classname.split('.').collect();
    while parts.len() > 1
        && parts
            .last()
            .is_some_and(|part| part.starts_with(|c: char| c.is_ascii_uppercase()))
    {
        parts.pop();
    }
    format!("{}.py", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_and_errors_from_traceback_text() {
        let text = r#"<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="1" failures="1">
<testcase classname="tests.test_a" name="test_ok" time="0.001" />
<testcase classname="tests.test_a" name="test_bad"><failure message="assert 1 == 2&#10; + where">def test_bad():
&gt;       assert helper() == 2

pkg/helper.py:3: in helper
    return 1
tests/test_a.py:5: AssertionError</failure></testcase>
<testcase classname="tests.test_a" name="test_skip"><skipped message="later" /></testcase>
<testcase classname="" name="tests.test_b"><error message="collection failure">tests/test_b.py:1: in &lt;module&gt;
    import nope
E   ModuleNotFoundError: No module named 'nope'</error></testcase>
</testsuite></testsuites>"#;
        let findings = parse(text).unwrap();
        assert_eq!(findings.len(), 2);
        assert_eq!(findings[0].path, "tests/test_a.py");
        assert_eq!(findings[0].line, Some(5));
        assert_eq!(findings[0].code.as_deref(), Some("tests.test_a::test_bad"));
        assert_eq!(findings[0].message, "assert 1 == 2\n + where");
        assert_eq!(findings[0].severity, Severity::Error);
        // `tests/test_b.py:1: in <module>` is a frame line, the last location in the text.
        assert_eq!(findings[1].path, "tests/test_b.py");
        assert_eq!(findings[1].line, Some(1));
        assert_eq!(findings[1].code.as_deref(), Some("tests.test_b"));
    }

    #[test]
    fn attributes_when_the_text_has_no_location() {
        let text = r#"<testsuite><testcase classname="tests.test_a.TestX" name="test_y" file="tests/test_a.py" line="9"><failure message="boom">no location here</failure></testcase>
<testcase classname="tests.test_c.TestX" name="test_z"><error>first line
second
E   assert {'a:1: b': 2} == {}</error></testcase></testsuite>"#;
        let findings = parse(text).unwrap();
        assert_eq!(findings[0].path, "tests/test_a.py");
        assert_eq!(findings[0].line, Some(10));
        assert_eq!(findings[1].path, "tests/test_c.py");
        assert_eq!(findings[1].line, None);
        assert_eq!(findings[1].message, "first line");
    }

    #[test]
    fn malformed_reports_are_errors() {
        for bad in [
            "",
            "<testsuites>",
            "<coverage/>",
            "<testsuite><testcase/></testsuite>",
            r#"<testsuite><testcase name="t" line="x"><failure/></testcase></testsuite>"#,
            r#"<!DOCTYPE x [<!ENTITY a "aaaa">]><testsuite/>"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
