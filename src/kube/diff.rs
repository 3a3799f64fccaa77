//! A readable diff between a live object and what a server-side dry run says it would
//! become: one line per changed field path, fields the server owns left out. Pure.

use serde_json::Value;

/// What applying one object would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The object does not exist yet.
    Create,
    /// Nothing would change.
    Unchanged,
    /// These fields would change (`path: old -> new`).
    Update(Vec<String>),
}

/// Fields that change on every write or belong to the server, so they are never shown.
const NOISE: &[&str] = &[
    "/metadata/managedFields",
    "/metadata/resourceVersion",
    "/metadata/generation",
    "/metadata/uid",
    "/metadata/creationTimestamp",
    "/metadata/annotations/deployment.kubernetes.io~1revision",
    "/status",
];

/// Compares `live` (absent: the object would be created) with the dry-run result.
/// Secret values are never printed, only that a key changed.
pub fn diff(live: Option<&Value>, desired: &Value) -> Change {
    let Some(live) = live else {
        return Change::Create;
    };
    let secret = desired.get("kind").and_then(Value::as_str) == Some("Secret");
    let mut lines = Vec::new();
    walk("", &clean(live), &clean(desired), secret, &mut lines);
    if lines.is_empty() {
        Change::Unchanged
    } else {
        Change::Update(lines)
    }
}

fn clean(object: &Value) -> Value {
    let mut copy = object.clone();
    for path in NOISE {
        let (parent, key) = path.rsplit_once('/').expect("paths start with /");
        if let Some(Value::Object(map)) = copy.pointer_mut(parent) {
            map.remove(&key.replace("~1", "/"));
        }
    }
    copy
}

fn walk(path: &str, old: &Value, new: &Value, secret: bool, out: &mut Vec<String>) {
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let here = format!("{path}.{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => walk(&here, x, y, secret, out),
                    (None, Some(y)) => {
                        out.push(format!("{here}: added {}", show(y, secret, &here)))
                    }
                    (Some(x), None) => {
                        out.push(format!("{here}: removed (was {})", show(x, secret, &here)))
                    }
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                walk(&format!("{path}[{i}]"), x, y, secret, out);
            }
        }
        _ => out.push(format!(
            "{}: {} -> {}",
            if path.is_empty() { "." } else { path },
            show(old, secret, path),
            show(new, secret, path)
        )),
    }
}

fn show(value: &Value, secret: bool, path: &str) -> String {
    if secret && (path.starts_with(".data") || path.starts_with(".stringData")) {
        return "(secret value hidden)".to_owned();
    }
    let text = value.to_string();
    // Whole pod templates are unreadable on one line; their size says enough.
    if text.len() > 120 {
        format!(
            "{}... ({} characters)",
            &text[..char_boundary(&text, 100)],
            text.len()
        )
    } else {
        text
    }
}

/// The largest char boundary at or below `at` (`str::floor_char_boundary` needs Rust 1.91).
fn char_boundary(text: &str, at: usize) -> usize {
    (0..=at.min(text.len()))
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changed_fields_are_listed_by_path_and_server_fields_ignored() {
        let live = json!({"kind": "Deployment", "metadata": {"name": "b", "resourceVersion": "7", "generation": 2,
            "labels": {"v": "1"}}, "spec": {"template": {"spec": {"containers": [{"name": "b", "image": "old"}]}}},
            "status": {"replicas": 1}});
        let desired = json!({"kind": "Deployment", "metadata": {"name": "b", "resourceVersion": "8", "generation": 3,
            "labels": {"v": "2", "new": "x"}}, "spec": {"template": {"spec": {"containers": [{"name": "b", "image": "new"}]}}},
            "status": {"replicas": 3}});
        assert_eq!(
            diff(Some(&live), &desired),
            Change::Update(vec![
                r#".metadata.labels.new: added "x""#.to_owned(),
                r#".metadata.labels.v: "1" -> "2""#.to_owned(),
                r#".spec.template.spec.containers[0].image: "old" -> "new""#.to_owned(),
            ])
        );
        assert_eq!(diff(Some(&live), &live), Change::Unchanged);
        assert_eq!(diff(None, &desired), Change::Create);
    }

    #[test]
    fn secret_values_never_show() {
        let live = json!({"kind": "Secret", "data": {"password": "c2VjcmV0"}});
        let desired = json!({"kind": "Secret", "data": {"password": "bmV3c2VjcmV0"}});
        let Change::Update(lines) = diff(Some(&live), &desired) else {
            panic!()
        };
        assert_eq!(
            lines,
            [".data.password: (secret value hidden) -> (secret value hidden)"]
        );
    }
}
