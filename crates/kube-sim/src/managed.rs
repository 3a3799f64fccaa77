//! Field ownership: `managedFields` entries, server-side apply (merge, removal of fields
//! a manager stopped applying, conflicts between managers) and the ownership an
//! ordinary update or patch takes.
//!
//! Everything here is pure: it works on the "tracked view" of an object (see
//! [`crate::objects::tracked_view`]) and never touches storage or HTTP.

use serde_json::{Map, Value, json};

use crate::fieldset::{self, FieldSet, Path, PathElement, path_string, set_from_object, value_at};
use crate::schema::{self, ListType};

/// The operation an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Create, update or patch.
    Update,
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Field manager name.
    pub manager: String,
    /// Apply or Update.
    pub operation: Operation,
    /// The API version the manager wrote with.
    pub api_version: String,
    /// Subresource written (`""` for the main resource, `status`, `scale`).
    pub subresource: String,
    /// RFC 3339 time of the manager's last write.
    pub time: String,
    /// Fields owned.
    pub fields: FieldSet,
}

impl Entry {
    fn is(&self, manager: &str, op: Operation, subresource: &str) -> bool {
        self.manager == manager && self.operation == op && self.subresource == subresource
    }

    /// The manager as conflict messages print it (`"kubectl"`, `"ctl" using apps/v1`).
    pub fn describe(&self) -> String {
        let mut s = Value::String(self.manager.clone()).to_string();
        if !self.subresource.is_empty() {
            s.push_str(&format!(
                " with subresource {}",
                Value::String(self.subresource.clone())
            ));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

/// Reads `metadata.managedFields`; malformed entries are dropped.
pub fn read_entries(obj: &Value) -> Vec<Entry> {
    let Some(list) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|e| {
            Some(Entry {
                manager: e.get("manager")?.as_str()?.to_string(),
                operation: match e.get("operation")?.as_str()? {
                    "Apply" => Operation::Apply,
                    _ => Operation::Update,
                },
                api_version: e
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                subresource: e
                    .get("subresource")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                time: e
                    .get("time")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                fields: FieldSet::from_json(e.get("fieldsV1").unwrap_or(&Value::Null)),
            })
        })
        .collect()
}

/// Writes `entries` as `metadata.managedFields` (removing it when empty).
pub fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": match e.operation { Operation::Apply => "Apply", Operation::Update => "Update" },
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": e.fields.to_json(),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = Value::String(e.subresource.clone());
            }
            v
        })
        .collect();
    if !obj.get("metadata").is_some_and(Value::is_object) && !list.is_empty() {
        obj["metadata"] = json!({});
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Who is writing, and how.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    /// Kind of the object (selects the schema).
    pub kind: &'a str,
    /// apiVersion written with.
    pub api_version: &'a str,
    /// Field manager.
    pub manager: &'a str,
    /// Subresource (`""` for the main resource).
    pub subresource: &'a str,
    /// Timestamp for the entry.
    pub now: &'a str,
}

/// A field another manager owns that an apply would change.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The owning manager, described as in messages.
    pub manager: String,
    /// The contested field.
    pub path: Path,
}

/// The `Status` message for a set of conflicts, word for word as the API server builds it.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager,
            path_string(&c.path)
        );
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort_unstable();
    managers.dedup();
    let mut lines = Vec::new();
    for m in managers {
        lines.push(format!("conflicts with {m}:"));
        for c in conflicts.iter().filter(|c| c.manager == m) {
            lines.push(format!("- {}", path_string(&c.path)));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Server-side apply of `config` (a tracked view) onto `base` (the live object, or a
/// skeleton for a create). Returns the merged object and updates `entries`.
pub fn apply(
    w: Writer<'_>,
    base: &Value,
    config: &Value,
    force: bool,
    entries: &mut Vec<Entry>,
) -> Result<Value, Vec<Conflict>> {
    let applied = set_from_object(w.kind, config);
    let mut merged = merge(w.kind, &mut Vec::new(), Some(base), config);

    let mine = |e: &Entry| e.is(w.manager, Operation::Apply, w.subresource);
    let mut conflicts = Vec::new();
    for (path, leaf) in applied.paths() {
        if !leaf || value_at(base, &path) == value_at(&merged, &path) {
            continue;
        }
        for e in entries.iter().filter(|e| !mine(e)) {
            if e.fields.covers(&path) || e.fields.contains_under(&path) {
                conflicts.push(Conflict {
                    manager: e.describe(),
                    path: path.clone(),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    // A forced apply takes the contested fields away from their previous owners.
    for c in &conflicts {
        for e in entries
            .iter_mut()
            .filter(|e| e.describe() == c.manager && !mine(e))
        {
            e.fields.remove_subtree(&c.path);
            for anc in 1..c.path.len() {
                if e.fields.contains(&c.path[..anc]) && !e.fields.contains_under(&c.path[..anc + 1])
                {
                    e.fields.remove(&c.path[..anc]);
                }
            }
        }
    }

    // Fields this manager applied before and no longer applies are removed, unless
    // someone else still owns them.
    let previous = entries
        .iter()
        .find(|e| mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut dropped: Vec<Path> = previous
        .paths()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| !applied.contains_under(p) && !applied.covers(p))
        .filter(|p| {
            !entries
                .iter()
                .filter(|e| !mine(e))
                .any(|e| e.fields.covers(p) || e.fields.contains_under(p))
        })
        .collect();
    // Shallowest first: removing a list item first keeps its key fields intact until
    // the item itself is gone, and deeper removals then find nothing to do.
    dropped.sort_by_key(Vec::len);
    for p in &dropped {
        fieldset::remove_at(&mut merged, p);
    }

    match entries.iter_mut().find(|e| mine(e)) {
        Some(e) => {
            e.fields = applied;
            e.time = w.now.to_string();
            e.api_version = w.api_version.to_string();
        }
        None => entries.push(Entry {
            manager: w.manager.to_string(),
            operation: Operation::Apply,
            api_version: w.api_version.to_string(),
            subresource: w.subresource.to_string(),
            time: w.now.to_string(),
            fields: applied,
        }),
    }
    entries.retain(|e| !e.fields.is_empty());
    Ok(merged)
}

/// Records a create, update or patch: the writer takes every field whose value it
/// changed (from anyone, without conflict, as the real server does for updates), and
/// fields it removed are dropped from every entry.
pub fn record_update(w: Writer<'_>, old: &Value, new: &Value, entries: &mut Vec<Entry>) {
    let new_set = set_from_object(w.kind, new);
    let old_set = set_from_object(w.kind, old);
    let mut changed = FieldSet::default();
    for (path, leaf) in new_set.paths() {
        let before = value_at(old, &path);
        let differs = if leaf {
            before != value_at(new, &path)
        } else {
            before.is_none()
        };
        if differs {
            changed.insert(&path);
        }
    }
    let removed: Vec<Path> = old_set
        .paths()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| value_at(new, p).is_none())
        .collect();
    if changed.is_empty() && removed.is_empty() {
        return;
    }
    let changed_paths: Vec<Path> = changed.paths().into_iter().map(|(p, _)| p).collect();
    for e in entries.iter_mut() {
        for p in &changed_paths {
            e.fields.remove(p);
        }
        for p in &removed {
            e.fields.remove_subtree(p);
        }
    }
    let pos = entries
        .iter()
        .position(|e| e.is(w.manager, Operation::Update, w.subresource));
    let entry = match pos {
        Some(i) => &mut entries[i],
        None => {
            entries.push(Entry {
                manager: w.manager.to_string(),
                operation: Operation::Update,
                api_version: w.api_version.to_string(),
                subresource: w.subresource.to_string(),
                time: String::new(),
                fields: FieldSet::default(),
            });
            entries.last_mut().expect("just pushed")
        }
    };
    for p in &changed_paths {
        entry.fields.insert(p);
    }
    entry.time = w.now.to_string();
    entry.api_version = w.api_version.to_string();
    entries.retain(|e| !e.fields.is_empty());
}

/// The apply merge: maps merge recursively, keyed lists merge item by item, sets union,
/// everything else (atomic lists and maps, scalars) is replaced. `null` removes a field.
fn merge(kind: &str, names: &mut Vec<String>, live: Option<&Value>, cfg: &Value) -> Value {
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    match (live, cfg) {
        (Some(Value::Object(l)), Value::Object(c)) if !schema::is_atomic_map(kind, &refs) => {
            let mut out = l.clone();
            for (k, cv) in c {
                if cv.is_null() {
                    out.remove(k);
                    continue;
                }
                names.push(k.clone());
                let mv = merge(kind, names, l.get(k), cv);
                names.pop();
                out.insert(k.clone(), mv);
            }
            Value::Object(out)
        }
        (Some(Value::Array(l)), Value::Array(c)) => match schema::list_type(kind, &refs) {
            ListType::Map(keys) => {
                let key = |i: &Value| fieldset::item_key(i, keys);
                let mut out: Vec<Value> = l
                    .iter()
                    .map(|li| match c.iter().find(|ci| key(ci) == key(li)) {
                        Some(ci) => merge(kind, names, Some(li), ci),
                        None => li.clone(),
                    })
                    .collect();
                for ci in c {
                    if !l.iter().any(|li| key(li) == key(ci)) {
                        out.push(strip_nulls(ci));
                    }
                }
                Value::Array(out)
            }
            ListType::Set => {
                let mut out = l.clone();
                out.extend(c.iter().filter(|ci| !l.contains(ci)).cloned());
                Value::Array(out)
            }
            ListType::Atomic => cfg.clone(),
        },
        _ => strip_nulls(cfg),
    }
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), strip_nulls(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// Shorthand for a `Field` path element, used by callers building paths by hand.
pub fn field(name: &str) -> PathElement {
    PathElement::Field(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w<'a>(manager: &'a str) -> Writer<'a> {
        Writer {
            kind: "Deployment",
            api_version: "apps/v1",
            manager,
            subresource: "",
            now: "2025-01-01T00:00:00Z",
        }
    }

    fn deploy(replicas: i64, image: &str) -> Value {
        json!({"spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "web", "image": image}]}}}})
    }

    #[test]
    fn second_manager_conflicts_only_where_values_differ() {
        let mut entries = Vec::new();
        let live = apply(
            w("alice"),
            &json!({}),
            &deploy(2, "nginx:1"),
            false,
            &mut entries,
        )
        .unwrap();
        // Same values: no conflict, shared ownership.
        let live = apply(w("bob"), &live, &deploy(2, "nginx:1"), false, &mut entries).unwrap();
        assert_eq!(entries.len(), 2);
        // Bob changes the image alice also owns: conflict naming the keyed path.
        let err = apply(w("bob"), &live, &deploy(2, "nginx:2"), false, &mut entries).unwrap_err();
        assert_eq!(
            conflict_message(&err),
            "Apply failed with 1 conflict: conflict with \"alice\": .spec.template.spec.containers[name=\"web\"].image"
        );
        // Forced, bob takes the image and alice keeps the rest.
        let live = apply(w("bob"), &live, &deploy(2, "nginx:2"), true, &mut entries).unwrap();
        assert_eq!(
            live["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:2"
        );
        let alice = entries.iter().find(|e| e.manager == "alice").unwrap();
        assert!(!alice.fields.to_json().to_string().contains("f:image"));
        assert!(alice.fields.to_json().to_string().contains("f:replicas"));
    }

    #[test]
    fn fields_a_manager_stops_applying_are_removed_unless_shared() {
        let mut entries = Vec::new();
        let cfg = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 3}});
        let live = apply(w("m"), &json!({}), &cfg, false, &mut entries).unwrap();
        let live = apply(
            w("other"),
            &live,
            &json!({"metadata": {"labels": {"b": "2"}}}),
            false,
            &mut entries,
        )
        .unwrap();
        let live = apply(
            w("m"),
            &live,
            &json!({"spec": {"replicas": 3}}),
            false,
            &mut entries,
        )
        .unwrap();
        assert_eq!(live["metadata"]["labels"], json!({"b": "2"}));
    }

    #[test]
    fn updates_take_ownership_and_then_conflict_with_apply() {
        let mut entries = Vec::new();
        let live = apply(
            w("kubectl"),
            &json!({}),
            &deploy(2, "nginx:1"),
            false,
            &mut entries,
        )
        .unwrap();
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update(w("hpa"), &live, &scaled, &mut entries);
        let err = apply(
            w("kubectl"),
            &scaled,
            &deploy(2, "nginx:1"),
            false,
            &mut entries,
        )
        .unwrap_err();
        assert_eq!(
            conflict_message(&err),
            "Apply failed with 1 conflict: conflict with \"hpa\" using apps/v1: .spec.replicas"
        );
        let mut out = scaled.clone();
        write_entries(&mut out, &entries);
        assert_eq!(read_entries(&out), entries);
    }

    #[test]
    fn keyed_lists_merge_per_item() {
        let mut entries = Vec::new();
        let two = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}}});
        let live = apply(w("m"), &json!({}), &two, false, &mut entries).unwrap();
        let sidecar =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "z"}]}}}});
        let live = apply(w("n"), &live, &sidecar, false, &mut entries).unwrap();
        assert_eq!(
            live["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        let one =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
        let live = apply(w("m"), &live, &one, false, &mut entries).unwrap();
        let names: Vec<&str> = live["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "c"]);
    }

    #[test]
    fn multiple_conflicts_are_grouped_by_manager() {
        let c = |m: &str, f: &str| Conflict {
            manager: m.into(),
            path: vec![field("spec"), field(f)],
        };
        let msg = conflict_message(&[c("\"b\"", "x"), c("\"a\"", "y"), c("\"b\"", "z")]);
        assert_eq!(
            msg,
            "Apply failed with 3 conflicts: conflicts with \"a\":\n- .spec.y\nconflicts with \"b\":\n- .spec.x\n- .spec.z"
        );
    }
}
