//! The three patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and
//! Kubernetes strategic merge patch (keyed list merging and `$patch` directives for
//! the lists the schema names; other lists are replaced).

use serde_json::{Map, Value};

use crate::schema;

/// RFC 7386 merge patch.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    match patch {
        Value::Object(p) => {
            let mut out = target.as_object().cloned().unwrap_or_default();
            for (k, v) in p {
                if v.is_null() {
                    out.remove(k);
                } else {
                    let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// RFC 6902 JSON patch. Errors are messages for a 422/400 answer.
pub fn json_patch(target: &Value, ops: &Value) -> Result<Value, String> {
    let ops = ops
        .as_array()
        .ok_or("json patch must be an array of operations")?;
    let mut doc = target.clone();
    for op in ops {
        let kind = op
            .get("op")
            .and_then(Value::as_str)
            .ok_or("json patch operation has no \"op\"")?;
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or("json patch operation has no \"path\"")?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or(format!("{kind} operation at {path} has no value"))
        };
        match kind {
            "add" => add(&mut doc, path, value()?)?,
            "remove" => {
                remove(&mut doc, path)?;
            }
            "replace" => {
                remove(&mut doc, path)?;
                add(&mut doc, path, value()?)?;
            }
            "move" | "copy" => {
                let from = op
                    .get("from")
                    .and_then(Value::as_str)
                    .ok_or("move/copy needs \"from\"")?;
                let v = if kind == "move" {
                    remove(&mut doc, from)?
                } else {
                    doc.pointer(from)
                        .cloned()
                        .ok_or(format!("copy from {from}: path does not exist"))?
                };
                add(&mut doc, path, v)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("Unexpected kind: {other}")),
        }
    }
    Ok(doc)
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or(format!("invalid JSON pointer {path:?}"))?;
    Ok((
        parent.to_string(),
        last.replace("~1", "/").replace("~0", "~"),
    ))
}

fn add(doc: &mut Value, path: &str, v: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = v;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(&parent) {
        Some(Value::Object(m)) => {
            m.insert(last, v);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let idx = if last == "-" {
                a.len()
            } else {
                last.parse()
                    .map_err(|_| format!("invalid index {last:?}"))?
            };
            if idx > a.len() {
                return Err(format!(
                    "add operation does not apply: index {idx} out of bounds"
                ));
            }
            a.insert(idx, v);
            Ok(())
        }
        _ => Err(format!(
            "add operation does not apply: doc is missing path: \"{path}\""
        )),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let missing = || format!("remove operation does not apply: doc is missing path: \"{path}\"");
    match doc.pointer_mut(&parent) {
        Some(Value::Object(m)) => m.remove(&last).ok_or_else(missing),
        Some(Value::Array(a)) => {
            let idx: usize = last.parse().map_err(|_| missing())?;
            (idx < a.len()).then(|| a.remove(idx)).ok_or_else(missing)
        }
        _ => Err(missing()),
    }
}

/// Strategic merge patch of `patch` onto `target`, an object of `kind`.
pub fn strategic_merge_patch(kind: &str, target: &Value, patch: &Value) -> Result<Value, String> {
    smp(kind, &mut Vec::new(), target, patch)
}

fn smp(
    kind: &str,
    names: &mut Vec<String>,
    target: &Value,
    patch: &Value,
) -> Result<Value, String> {
    let Value::Object(p) = patch else {
        return Ok(patch.clone());
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut out = p.clone();
        out.remove("$patch");
        return Ok(Value::Object(out));
    }
    let mut out = target.as_object().cloned().unwrap_or_default();
    for (k, v) in p {
        if k.starts_with("$setElementOrder/") || k == "$patch" || k == "$retainKeys" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(cur)), Value::Array(del)) = (out.get_mut(field), v) {
                cur.retain(|x| !del.contains(x));
            }
            continue;
        }
        if v.is_null() {
            out.remove(k);
            continue;
        }
        names.push(k.clone());
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let merged = match (out.get(k), v) {
            (Some(Value::Array(cur)), Value::Array(items)) => {
                if let Some(key) = schema::smp_merge_key(kind, &refs) {
                    merge_keyed(kind, names, cur, items, key)?
                } else if schema::smp_is_union(kind, &refs) {
                    let mut u = cur.clone();
                    u.extend(items.iter().filter(|i| !cur.contains(i)).cloned());
                    Value::Array(u)
                } else {
                    Value::Array(items.iter().filter(|i| !is_directive(i)).cloned().collect())
                }
            }
            (Some(cur @ Value::Object(_)), Value::Object(_)) => smp(kind, names, cur, v)?,
            (_, Value::Object(_)) => smp(kind, names, &Value::Object(Map::new()), v)?,
            (_, Value::Array(items)) => Value::Array(
                items
                    .iter()
                    .filter(|i| !is_directive(i))
                    .map(strip_directives)
                    .collect(),
            ),
            _ => v.clone(),
        };
        names.pop();
        out.insert(k.clone(), merged);
    }
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        out.retain(|k, _| keep.iter().any(|x| x.as_str() == Some(k)));
    }
    Ok(Value::Object(out))
}

fn is_directive(item: &Value) -> bool {
    item.get("$patch").is_some()
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn merge_keyed(
    kind: &str,
    names: &mut Vec<String>,
    cur: &[Value],
    items: &[Value],
    key: &str,
) -> Result<Value, String> {
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(Value::Array(
            items.iter().filter(|i| !is_directive(i)).cloned().collect(),
        ));
    }
    let mut out: Vec<Value> = cur.to_vec();
    for item in items {
        let id = item
            .get(key)
            .ok_or_else(|| format!("map: {item} does not contain declared merge key: {key}"))?;
        let pos = out.iter().position(|c| c.get(key) == Some(id));
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(i) = pos {
                out.remove(i);
            }
            continue;
        }
        match pos {
            Some(i) => out[i] = smp(kind, names, &out[i], item)?,
            None => out.push(strip_directives(item)),
        }
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_sets_and_removes() {
        let t = json!({"spec": {"selector": {"app": "web", "color": "blue"}}, "x": 1});
        let p = json!({"spec": {"selector": {"color": "green"}}, "x": null});
        assert_eq!(
            merge_patch(&t, &p),
            json!({"spec": {"selector": {"app": "web", "color": "green"}}})
        );
    }

    #[test]
    fn json_patch_applies_each_operation() {
        let t = json!({"spec": {"replicas": 1, "ports": [{"port": 80}]}});
        let ops = json!([
            {"op": "test", "path": "/spec/replicas", "value": 1},
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/spec/ports/-", "value": {"port": 443}},
            {"op": "copy", "from": "/spec/replicas", "path": "/copied"},
            {"op": "remove", "path": "/spec/ports/0"}
        ]);
        assert_eq!(
            json_patch(&t, &ops).unwrap(),
            json!({"spec": {"replicas": 3, "ports": [{"port": 443}]}, "copied": 3})
        );
        let bad = json!([{"op": "remove", "path": "/nope"}]);
        assert!(json_patch(&t, &bad).unwrap_err().contains("missing path"));
    }

    #[test]
    fn strategic_merge_merges_containers_by_name_and_honours_delete() {
        let t = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "side", "image": "s:1"}
        ]}}}});
        let p = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "a:2", "env": [{"name": "Y", "value": "2"}]},
            {"name": "side", "$patch": "delete"}
        ], "$setElementOrder/containers": [{"name": "web"}]}}}});
        let out = strategic_merge_patch("Deployment", &t, &p).unwrap();
        assert_eq!(
            out,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "a:2", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}
            ]}}}})
        );
    }

    #[test]
    fn strategic_merge_service_ports_merge_on_port_and_unknown_lists_replace() {
        let t = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}], "externalIPs": ["1.1.1.1"]}});
        let p = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}], "externalIPs": ["2.2.2.2"]}});
        let out = strategic_merge_patch("Service", &t, &p).unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}])
        );
        assert_eq!(out["spec"]["externalIPs"], json!(["2.2.2.2"]));
    }
}
