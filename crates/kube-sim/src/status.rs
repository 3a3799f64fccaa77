//! API errors and the `Status` bodies the real API server answers them with.

use serde_json::{Value, json};

/// An error answered as a `metav1.Status` with the real reason and HTTP code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `StatusReason`, e.g. `NotFound`, `Conflict`, `Invalid`.
    pub reason: &'static str,
    /// Human-readable message, as kubectl prints it.
    pub message: String,
    /// `details`, if any.
    pub details: Option<Value>,
    /// `Retry-After` seconds to send with the response (429 and some 5xx).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 404: `deployments.apps "web" not found`.
    pub fn not_found(qualified: &str, name: &str) -> Self {
        let (kind, group) = split_qualified(qualified);
        Self::new(404, "NotFound", format!("{qualified} \"{name}\" not found"))
            .with_details(json!({"name": name, "group": group, "kind": kind}))
    }

    /// 409: `deployments.apps "web" already exists`.
    pub fn already_exists(qualified: &str, name: &str) -> Self {
        let (kind, group) = split_qualified(qualified);
        Self::new(
            409,
            "AlreadyExists",
            format!("{qualified} \"{name}\" already exists"),
        )
        .with_details(json!({"name": name, "group": group, "kind": kind}))
    }

    /// 409 for a stale `resourceVersion` (optimistic concurrency).
    pub fn conflict(qualified: &str, name: &str) -> Self {
        let (kind, group) = split_qualified(qualified);
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {qualified} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .with_details(json!({"name": name, "group": group, "kind": kind}))
    }

    /// 409 for server-side apply conflicts; `causes` are `(manager text, field path)`.
    pub fn apply_conflict(message: String, causes: &[(String, String)]) -> Self {
        let causes: Vec<Value> = causes
            .iter()
            .map(|(m, f)| {
                json!({"reason": "FieldManagerConflict", "message": format!("conflict with {m}"), "field": f})
            })
            .collect();
        Self::new(409, "Conflict", message).with_details(json!({"causes": causes}))
    }

    /// 422: `Deployment.apps "web" is invalid: spec.selector: Required value`.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: &[(String, String, &str)]) -> Self {
        let qualified_kind = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let text: Vec<String> = causes.iter().map(|(f, m, _)| format!("{f}: {m}")).collect();
        let message = if text.len() == 1 {
            format!("{qualified_kind} \"{name}\" is invalid: {}", text[0])
        } else {
            format!(
                "{qualified_kind} \"{name}\" is invalid: [{}]",
                text.join(", ")
            )
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|(f, m, r)| json!({"reason": r, "message": m, "field": f}))
            .collect();
        Self::new(422, "Invalid", message)
            .with_details(json!({"name": name, "group": group, "kind": kind, "causes": causes}))
    }

    /// 409 with a message (delete preconditions).
    pub fn conflict_with(message: impl Into<String>) -> Self {
        Self::new(409, "Conflict", message)
    }

    /// 422 for a patch that cannot be applied.
    pub fn invalid_patch(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// An error the real server answers without a reason (a plain Go error inside the
    /// server: `reason` is left out of the `Status`, and kubectl prints `Error from
    /// server: MESSAGE`).
    pub fn unreasoned(code: u16, message: impl Into<String>) -> Self {
        Self::new(code, "", message)
    }

    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 405 for a verb the resource does not support.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// 410 for a watch or continue token older than the retained history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 415 for a patch content type the server does not know.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {content_type:?}"
            ),
        )
    }

    /// An injected fault: 500, 503, 429 or 409 with the reasons the real server uses.
    pub fn injected(code: u16, retry_after: Option<u64>) -> Self {
        let (reason, message) = match code {
            429 => (
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            ),
            503 => (
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
            409 => (
                "Conflict",
                "Operation cannot be fulfilled: the object has been modified; please apply your changes to the latest version and try again",
            ),
            504 => (
                "Timeout",
                "the server was unable to return a response in the time allotted, but may still be processing the request",
            ),
            _ => ("InternalError", "Internal error occurred: injected fault"),
        };
        let mut e = Self::new(code, reason, message);
        e.retry_after = retry_after;
        if let Some(secs) = retry_after {
            e.details = Some(json!({"retryAfterSeconds": secs}));
        }
        e
    }

    /// The `Status` body.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.reason.is_empty() {
            s.as_object_mut().map(|m| m.remove("reason"));
        }
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

/// A `Status` with `status: Success`, as a delete answers when it does not return the object.
pub fn success_status(qualified: &str, name: &str, uid: &str) -> Value {
    let (kind, group) = split_qualified(qualified);
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "group": group, "kind": kind, "uid": uid}
    })
}

fn split_qualified(q: &str) -> (&str, &str) {
    q.split_once('.').unwrap_or((q, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_matches_the_real_body() {
        let s = ApiError::not_found("deployments.apps", "web").to_status();
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["group"], "apps");
        assert_eq!(s["details"]["kind"], "deployments");
    }

    #[test]
    fn invalid_lists_several_causes_in_brackets() {
        let e = ApiError::invalid(
            "Deployment",
            "apps",
            "web",
            &[
                (
                    "spec.selector".into(),
                    "Required value".into(),
                    "FieldValueRequired",
                ),
                (
                    "spec.template.spec.containers".into(),
                    "Required value".into(),
                    "FieldValueRequired",
                ),
            ],
        );
        assert!(
            e.message.starts_with(
                "Deployment.apps \"web\" is invalid: [spec.selector: Required value, "
            )
        );
        assert_eq!(e.code, 422);
    }

    #[test]
    fn injected_429_carries_retry_after() {
        let e = ApiError::injected(429, Some(3));
        assert_eq!(e.reason, "TooManyRequests");
        assert_eq!(e.to_status()["details"]["retryAfterSeconds"], 3);
    }
}
