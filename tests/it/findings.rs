//! Gate tool output parsers (`jisu_deploy::findings`) on real output: the pinned tools of
//! `ci/requirements.txt` run on the fixture project `tests/fixtures/findings` (copied to a
//! temporary directory), and the findings must be exactly the planted problems. pip-audit
//! needs the network, so its reports are recorded under `tests/fixtures/findings/pip-audit`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use jisu_deploy::findings::bandit::Level;
use jisu_deploy::findings::coverage::{self, Coverage};
use jisu_deploy::findings::thresholds::{self, Thresholds};
use jisu_deploy::findings::{self, Finding, Severity, Tool};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/findings");

/// The fixture project copied to a fresh temporary directory, so tool caches, reports and
/// bytecode never land in the source tree.
struct Project {
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().expect("temporary directory");
        copy_tree(Path::new(FIXTURE), dir.path());
        Project {
            dir,
            cache: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// The project directory as the tools see it (symlinks resolved), with a trailing `/`.
    fn prefix(&self) -> String {
        let canonical = self.dir.path().canonicalize().expect("canonical path");
        format!("{}/", canonical.display())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `python3 -m <module> <args>` in the project, after checking that the package
    /// is installed at the version `ci/requirements.txt` pins.
    fn run(&self, package: &str, module: &str, args: &[&str]) -> Output {
        require_pinned(package);
        Command::new("python3")
            .arg("-m")
            .arg(module)
            .args(args)
            .current_dir(self.dir.path())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("BLACK_CACHE_DIR", self.cache.path())
            .env_remove("PYTHONPATH")
            .output()
            .unwrap_or_else(|error| panic!("cannot run python3 -m {module}: {error}"))
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("fixture directory") {
        let entry = entry.expect("fixture entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            std::fs::create_dir_all(&target).expect("create directory");
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy fixture file");
        }
    }
}

/// Panics with what to do when `package` is missing or not at its pinned version.
fn require_pinned(package: &str) {
    let requirements =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/ci/requirements.txt"))
            .expect("ci/requirements.txt");
    let pinned = requirements
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{package}==")))
        .unwrap_or_else(|| panic!("ci/requirements.txt does not pin {package}"));
    let installed = Command::new("python3")
        .args([
            "-c",
            "import importlib.metadata, sys; print(importlib.metadata.version(sys.argv[1]))",
            package,
        ])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned());
    match installed {
        None => panic!(
            "{package} is not installed; install the gate tools with \
             `python3 -m pip install -r ci/requirements.txt` (ci/install-test-deps.sh)"
        ),
        Some(version) if version != pinned => panic!(
            "{package} {version} is installed but ci/requirements.txt pins {pinned}; the exact \
             findings asserted here are those of the pinned version"
        ),
        Some(_) => {}
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("tool output is UTF-8")
}

/// A finding as a comparable tuple: path, line, column, code, severity, message.
type Row = (
    String,
    Option<u32>,
    Option<u32>,
    Option<String>,
    Severity,
    String,
);

fn rows(findings: &[Finding], tool: Tool, strip_prefix: &str) -> Vec<Row> {
    findings
        .iter()
        .map(|finding| {
            assert_eq!(finding.tool, tool);
            (
                finding
                    .path
                    .strip_prefix(strip_prefix)
                    .unwrap_or(&finding.path)
                    .to_owned(),
                finding.line,
                finding.column,
                finding.code.clone(),
                finding.severity,
                finding.message.clone(),
            )
        })
        .collect()
}

fn row(
    path: &str,
    line: Option<u32>,
    column: Option<u32>,
    code: Option<&str>,
    severity: Severity,
    message: &str,
) -> Row {
    (
        path.to_owned(),
        line,
        column,
        code.map(str::to_owned),
        severity,
        message.to_owned(),
    )
}

#[test]
fn flake8_reports_the_unused_import_and_the_long_line() {
    let project = Project::new();
    let output = project.run("flake8", "flake8", &["pkg", "tests"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let findings = findings::parse(Tool::Flake8, &text(&output.stdout)).unwrap();
    assert_eq!(
        rows(&findings, Tool::Flake8, ""),
        [
            row(
                "pkg/lint_me.py",
                Some(1),
                Some(1),
                Some("F401"),
                Severity::Warning,
                "'os' imported but unused"
            ),
            row(
                "pkg/lint_me.py",
                Some(5),
                Some(80),
                Some("E501"),
                Severity::Warning,
                "line too long (82 > 79 characters)"
            ),
        ]
    );
}

#[test]
fn black_check_reports_the_one_badly_formatted_file() {
    let project = Project::new();
    let output = project.run("black", "black", &["--check", "."]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("Oh no!"), "{stderr}");
    let findings = findings::parse(Tool::Black, &stderr).unwrap();
    assert_eq!(
        rows(&findings, Tool::Black, &project.prefix()),
        [row(
            "pkg/ugly.py",
            None,
            None,
            None,
            Severity::Warning,
            "would reformat"
        )]
    );
}

#[test]
fn isort_check_reports_the_unsorted_file() {
    let project = Project::new();
    let output = project.run("isort", "isort", &["--check-only", "."]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let findings = findings::parse(Tool::Isort, &text(&output.stderr)).unwrap();
    assert_eq!(
        rows(&findings, Tool::Isort, &project.prefix()),
        [row(
            "pkg/unsorted.py",
            None,
            None,
            None,
            Severity::Warning,
            "Imports are incorrectly sorted and/or formatted."
        )]
    );
    assert_eq!(
        findings::parse(Tool::Isort, &text(&output.stdout)).unwrap(),
        []
    );
}

#[test]
fn bandit_reports_subprocess_assert_and_shell_true() {
    let project = Project::new();
    let output = project.run("bandit", "bandit", &["-q", "-r", "pkg", "-f", "json"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let report = text(&output.stdout);
    let findings = findings::parse(Tool::Bandit, &report).unwrap();
    assert_eq!(
        rows(&findings, Tool::Bandit, ""),
        [
            row(
                "pkg/risky.py",
                Some(1),
                Some(1),
                Some("B404"),
                Severity::Notice,
                "Consider possible security implications associated with the subprocess module."
            ),
            row(
                "pkg/risky.py",
                Some(5),
                Some(5),
                Some("B101"),
                Severity::Notice,
                "Use of assert detected. The enclosed code will be removed when compiling to optimised byte code."
            ),
            row(
                "pkg/risky.py",
                Some(6),
                Some(12),
                Some("B602"),
                Severity::Error,
                "subprocess call with shell=True identified, security issue."
            ),
        ]
    );
    let levels: Vec<(Level, Level)> = findings::bandit::parse_issues(&report)
        .unwrap()
        .iter()
        .map(|issue| (issue.severity, issue.confidence))
        .collect();
    assert_eq!(
        levels,
        [
            (Level::Low, Level::High),
            (Level::Low, Level::High),
            (Level::High, Level::High)
        ]
    );

    let high = thresholds::bandit(&findings, Level::High);
    assert!(!high.passed);
    assert_eq!(
        high.message,
        "1 bandit issue(s) at or above the minimum severity high, the first B602 (high) at pkg/risky.py:6"
    );
    let low = thresholds::bandit(&findings, Level::Low);
    assert!(!low.passed);
    assert!(
        low.message.starts_with("3 bandit issue(s)"),
        "{}",
        low.message
    );
}

/// The failing and the erroring test, located at the failing line of the traceback.
fn expected_test_failures() -> [Row; 2] {
    [
        row(
            "tests/test_calc.py",
            Some(16),
            None,
            Some("tests.test_calc::test_divide_by_half"),
            Severity::Error,
            "assert 0.5 == 1\n +  where 0.5 = divide(1, 2)",
        ),
        row(
            "tests/test_calc.py",
            Some(8),
            None,
            Some("tests.test_calc::test_uses_service"),
            Severity::Error,
            "failed on setup with \"RuntimeError: service could not start\"",
        ),
    ]
}

#[test]
fn pytest_junit_and_coverage_report_the_failures_and_partial_coverage() {
    let project = Project::new();
    let output = project.run(
        "pytest-cov",
        "pytest",
        &[
            "-q",
            "-p",
            "no:cacheprovider",
            "--junitxml=junit.xml",
            "--cov=pkg",
            "--cov-report=xml:coverage.xml",
        ],
    );
    require_pinned("pytest");
    assert_eq!(output.status.code(), Some(1), "{output:?}");

    let junit = std::fs::read_to_string(project.path("junit.xml")).expect("junit.xml");
    let findings = findings::parse(Tool::PytestJunit, &junit).unwrap();
    assert_eq!(
        rows(&findings, Tool::PytestJunit, ""),
        expected_test_failures()
    );

    let report = std::fs::read_to_string(project.path("coverage.xml")).expect("coverage.xml");
    let coverage = coverage::parse(&report).unwrap();
    assert_eq!(
        (coverage.lines_valid, coverage.lines_covered),
        (Some(21), Some(4))
    );
    assert_eq!(format!("{:.2}", coverage.total_percent), "19.05");
    let files: Vec<(String, String)> = coverage
        .files
        .iter()
        .map(|file| (file.path.clone(), format!("{:.2}", file.percent)))
        .collect();
    let expected = [
        ("__init__.py", "100.00"),
        ("calc.py", "57.14"),
        ("lint_me.py", "0.00"),
        ("risky.py", "0.00"),
        ("ugly.py", "0.00"),
        ("unsorted.py", "0.00"),
    ]
    .map(|(path, percent)| (path.to_owned(), percent.to_owned()));
    assert_eq!(files, expected);

    let verdict = thresholds::coverage(&coverage, 80.0);
    assert!(!verdict.passed);
    assert_eq!(verdict.message, "coverage 19% is below the minimum 80%");
    assert!(thresholds::coverage(&coverage, 19.0).passed);
}

#[test]
fn pytest_junit_xunit1_gives_the_same_findings() {
    let project = Project::new();
    let output = project.run(
        "pytest",
        "pytest",
        &[
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:cov",
            "-o",
            "junit_family=xunit1",
            "--junitxml=junit.xml",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let junit = std::fs::read_to_string(project.path("junit.xml")).expect("junit.xml");
    assert!(
        junit.contains(r#"file="tests/test_calc.py""#),
        "xunit1 writes file attributes: {junit}"
    );
    let findings = findings::parse(Tool::PytestJunit, &junit).unwrap();
    assert_eq!(
        rows(&findings, Tool::PytestJunit, ""),
        expected_test_failures()
    );
}

#[test]
fn pip_audit_recorded_reports() {
    let read = |name: &str| {
        std::fs::read_to_string(format!("{FIXTURE}/pip-audit/{name}"))
            .unwrap_or_else(|error| panic!("{name}: {error}"))
    };
    let vulnerable = findings::parse(Tool::PipAudit, &read("vulnerable-report.json")).unwrap();
    assert_eq!(
        rows(&vulnerable, Tool::PipAudit, ""),
        [row(
            "requests==2.19.0",
            None,
            None,
            Some("PYSEC-2018-28"),
            Severity::Error,
            "The Requests package before 2.20.0 for Python sends an HTTP Authorization header to \
             an http URI upon receiving a same-hostname https-to-http redirect, which makes it \
             easier for remote attackers to discover credentials by sniffing the network. \
             (fixed in 2.20.0)"
        )]
    );
    let offline = findings::parse(Tool::PipAudit, &read("offline-report.json")).unwrap();
    assert_eq!(
        rows(&offline, Tool::PipAudit, ""),
        [row(
            "requests",
            None,
            None,
            None,
            Severity::Notice,
            "Dependency not found on PyPI and could not be audited: requests (2.19.0)"
        )]
    );

    let thresholds = Thresholds {
        allowed_vulnerabilities: Some(0),
        ..Thresholds::default()
    };
    let verdicts = thresholds.evaluate(&vulnerable, None::<&Coverage>);
    assert_eq!(verdicts.len(), 1);
    assert!(!verdicts[0].passed);
    assert_eq!(
        verdicts[0].message,
        "1 known vulnerabilities exceed the allowed 0"
    );
    assert!(thresholds.evaluate(&offline, None)[0].passed);
}
