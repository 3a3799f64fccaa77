//! Check runs through octocrab: one per gate, on the commit that was built. It is created
//! `in_progress` when the gate starts; its findings then go up as annotations, at most
//! [`ANNOTATIONS_PER_REQUEST`] per request (GitHub's limit), the last request carrying the
//! conclusion, so N findings take `max(1, ceil(N / 50)) + 1` requests in all. Title,
//! summary and text are cut to GitHub's limits with a note that says so.
//!
//! A 403 (a pull request from a fork, a token without `checks: write`) is
//! [`ChecksError::Forbidden`], so the caller can fall back to workflow commands.

use serde::Serialize;
use serde_json::{Value, json};

use super::rest::{self, ApiError};
use crate::findings::{Finding, Severity};
use crate::oci::auth::Secret;

/// Annotations GitHub accepts in one create or update request.
pub const ANNOTATIONS_PER_REQUEST: usize = 50;
/// Longest `output.title`.
const MAX_TITLE: usize = 255;
/// Longest `output.summary` and `output.text` (characters).
const MAX_TEXT: usize = 65_535;
/// Longest annotation message.
const MAX_MESSAGE: usize = 64 * 1024;

/// Why a check run could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ChecksError {
    /// The token may not create check runs: fall back to workflow commands.
    #[error(
        "GitHub refused to write a check run (403): give the workflow's token \
         `permissions: checks: write` (a pull request from a fork never gets it)"
    )]
    Forbidden,
    /// Any other API failure (after retries).
    #[error("check run request failed")]
    Api(#[from] ApiError),
}

/// How a gate ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    /// Passed.
    Success,
    /// Failed.
    Failure,
    /// Did not run to the end.
    Cancelled,
}

/// What the finished check run says besides its annotations.
#[derive(Debug, Clone)]
pub struct CheckOutput {
    /// One line (`flake8: 3 errors`).
    pub title: String,
    /// Markdown summary.
    pub summary: String,
    /// Longer Markdown text (the first findings, the threshold that failed).
    pub text: String,
}

/// `text` cut to `max` characters; when cut, a note says how much was left out.
pub fn cut(text: &str, max: usize) -> String {
    let total = text.chars().count();
    if total <= max {
        return text.to_owned();
    }
    let note = format!(
        "\n\n… cut to GitHub's limit: {} of {total} characters left out",
        total - max
    );
    let keep = max.saturating_sub(note.chars().count());
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(&note);
    out
}

/// One finding as a check-run annotation.
pub fn annotation(finding: &Finding) -> Value {
    let line = finding.line.unwrap_or(1).max(1);
    let level = match finding.severity {
        Severity::Error => "failure",
        Severity::Warning => "warning",
        Severity::Notice => "notice",
    };
    let title = match &finding.code {
        Some(code) => format!("{}: {code}", finding.tool.name()),
        None => finding.tool.name().to_owned(),
    };
    let mut annotation = json!({
        "path": finding.path,
        "start_line": line,
        "end_line": line,
        "annotation_level": level,
        "message": cut(&finding.message, MAX_MESSAGE),
        "title": cut(&title, MAX_TITLE),
    });
    // Columns are allowed only within one line, which is all a finding spans.
    if let Some(column) = finding.column.filter(|c| *c > 0) {
        annotation["start_column"] = json!(column);
        annotation["end_column"] = json!(column);
    }
    annotation
}

/// The annotations in request-sized batches; always at least one (possibly empty) batch,
/// since the last request carries the conclusion.
pub fn batches(findings: &[Finding]) -> Vec<Vec<Value>> {
    let mut batches: Vec<Vec<Value>> = findings
        .chunks(ANNOTATIONS_PER_REQUEST)
        .map(|chunk| chunk.iter().map(annotation).collect())
        .collect();
    if batches.is_empty() {
        batches.push(Vec::new());
    }
    batches
}

/// Check runs of one repository.
pub struct CheckRunsClient {
    crab: rest::Client,
    repository: String,
}

impl CheckRunsClient {
    /// A client for `repository` (`owner/name`) at `api_base` (`GITHUB_API_URL`).
    pub fn new(api_base: &str, token: &Secret, repository: &str) -> anyhow::Result<Self> {
        let crab = rest::Client::new(api_base, token)?;
        Ok(CheckRunsClient {
            crab,
            repository: repository.to_owned(),
        })
    }

    /// Creates check run `name` on `head_sha`, `in_progress`; its id.
    pub async fn start(
        &self,
        name: &str,
        head_sha: &str,
        details_url: Option<&str>,
    ) -> Result<u64, ChecksError> {
        let route = format!("/repos/{}/check-runs", self.repository);
        let mut body = json!({"name": name, "head_sha": head_sha, "status": "in_progress"});
        if let Some(url) = details_url {
            body["details_url"] = json!(url);
        }
        let created: Value = self
            .crab
            .post(route, Some(&body))
            .await
            .map_err(forbidden)?;
        Ok(created["id"].as_u64().unwrap_or_default())
    }

    /// Sends the findings of check run `id` in batches and concludes it with the last one.
    /// Returns the number of requests sent.
    pub async fn finish(
        &self,
        id: u64,
        conclusion: Conclusion,
        output: &CheckOutput,
        findings: &[Finding],
    ) -> Result<usize, ChecksError> {
        let route = format!("/repos/{}/check-runs/{id}", self.repository);
        let batches = batches(findings);
        let last = batches.len() - 1;
        for (index, annotations) in batches.into_iter().enumerate() {
            let mut body = json!({"output": {
                "title": cut(&output.title, MAX_TITLE),
                "summary": cut(&output.summary, MAX_TEXT),
                "text": cut(&output.text, MAX_TEXT),
                "annotations": annotations,
            }});
            if index == last {
                body["status"] = json!("completed");
                body["conclusion"] = json!(conclusion);
            }
            let _: Value = self
                .crab
                .patch(route.clone(), Some(&body))
                .await
                .map_err(forbidden)?;
        }
        Ok(last + 1)
    }
}

fn forbidden(error: ApiError) -> ChecksError {
    match &error {
        ApiError::Status { status: 403, .. } => ChecksError::Forbidden,
        _ => ChecksError::Api(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::findings::Tool;

    fn finding(n: u32) -> Finding {
        Finding {
            tool: Tool::Flake8,
            path: "app/main.py".into(),
            line: Some(n),
            column: Some(5),
            code: Some("F401".into()),
            severity: Severity::Warning,
            message: format!("'os' imported but unused ({n})"),
        }
    }

    #[test]
    fn findings_go_up_fifty_at_a_time_and_the_conclusion_needs_one_batch() {
        assert_eq!(batches(&[]).len(), 1);
        let thousand: Vec<Finding> = (1..=1000).map(finding).collect();
        let sent = batches(&thousand);
        assert_eq!(sent.len(), 20);
        assert!(sent.iter().all(|b| b.len() == ANNOTATIONS_PER_REQUEST));
        let odd: Vec<Finding> = (1..=51).map(finding).collect();
        assert_eq!(
            batches(&odd).iter().map(Vec::len).collect::<Vec<_>>(),
            [50, 1]
        );
    }

    #[test]
    fn an_annotation_carries_place_level_and_rule() {
        let a = annotation(&finding(7));
        assert_eq!(a["path"], "app/main.py");
        assert_eq!(a["start_line"], 7);
        assert_eq!(a["end_line"], 7);
        assert_eq!(a["start_column"], 5);
        assert_eq!(a["annotation_level"], "warning");
        assert_eq!(a["title"], "flake8: F401");
    }

    #[test]
    fn long_text_is_cut_with_a_note() {
        let long = "x".repeat(70_000);
        let cut = cut(&long, MAX_TEXT);
        assert_eq!(cut.chars().count(), MAX_TEXT);
        assert!(
            cut.ends_with("characters left out"),
            "{}",
            &cut[cut.len() - 80..]
        );
        assert_eq!(super::cut("short", MAX_TEXT), "short");
    }
}
