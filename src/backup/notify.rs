//! The optional message a backup sends when it ends: a Slack-compatible incoming webhook
//! (`{"text": ...}`), its URL from `BACKUP_WEBHOOK_URL` (a secret: masked like the others).
//! The text is built only from the backup's own facts (id, environment, sizes, checks,
//! retention counts), never from the environment, so it cannot carry a password.

use std::time::Duration;

use super::manifest::Manifest;

/// The variable holding the webhook URL.
pub const WEBHOOK_ENV: &str = "BACKUP_WEBHOOK_URL";

/// The message for a backup that was taken (verified or not).
pub fn taken(manifest: &Manifest, expired: Option<usize>) -> String {
    let size: u64 = manifest.files.iter().map(|f| f.size).sum();
    let verdict = if manifest.verified {
        "verified"
    } else {
        "FAILED verification"
    };
    let mut lines = vec![format!(
        "jisu-deploy backup {} of {}: {verdict}, {} file(s), {size} bytes",
        manifest.id,
        manifest.environment,
        manifest.files.len()
    )];
    for check in &manifest.checks {
        let mark = if check.passed { "passed" } else { "failed" };
        lines.push(format!(
            "- {} {mark}: {}",
            check.name,
            first_line(&check.detail)
        ));
    }
    if let Some(expired) = expired {
        lines.push(format!("- retention deleted {expired} older backup(s)"));
    }
    lines.join("\n")
}

/// The message for a backup that could not be taken.
pub fn failed(environment: &str, error: &str) -> String {
    format!(
        "jisu-deploy backup of {environment} FAILED before anything was uploaded: {}",
        first_line(error)
    )
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(300).collect()
}

/// Posts `text` to `url`; a failure is returned for the log, never fails the backup.
pub async fn send(url: &str, text: &str) -> Result<(), String> {
    crate::tls::ensure_provider();
    let client = reqwest::Client::builder()
        .user_agent(concat!("jisu-deploy/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .post(url)
        .json(&serde_json::json!({ "text": text }))
        .send()
        .await
        // The URL is a secret: the error says what failed, not where.
        .map_err(|e| format!("the webhook could not be reached ({})", e.without_url()))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("the webhook answered {}", response.status()))
    }
}
