//! Field sets as server-side apply tracks them: a tree of path elements (`f:` fields,
//! `k:` keyed list items, `v:` set values, `i:` indices), its `FieldsV1` JSON encoding,
//! and the walk from an object to the set of fields it sets.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::schema::{self, ListType};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathElement {
    /// A named field of a struct or map.
    Field(String),
    /// A list item identified by its key fields, as canonical JSON (`{"name":"web"}`).
    Key(String),
    /// A set item identified by its value, as canonical JSON.
    Value(String),
    /// A list item identified by position (atomic lists never need it; kept for decoding).
    Index(usize),
}

impl PathElement {
    fn encode(&self) -> String {
        match self {
            Self::Field(f) => format!("f:{f}"),
            Self::Key(k) => format!("k:{k}"),
            Self::Value(v) => format!("v:{v}"),
            Self::Index(i) => format!("i:{i}"),
        }
    }

    fn decode(s: &str) -> Option<Self> {
        let (tag, rest) = s.split_once(':')?;
        Some(match tag {
            "f" => Self::Field(rest.to_string()),
            "k" => Self::Key(rest.to_string()),
            "v" => Self::Value(rest.to_string()),
            "i" => Self::Index(rest.parse().ok()?),
            _ => return None,
        })
    }
}

/// A path from the object root.
pub type Path = Vec<PathElement>;

/// Renders a path the way conflict messages do: `.spec.template.spec.containers[name="web"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    let mut out = String::new();
    for pe in path {
        match pe {
            PathElement::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            PathElement::Key(k) => {
                let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                    .unwrap_or_default();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            PathElement::Value(v) => out.push_str(&format!("[={v}]")),
            PathElement::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A set of field paths, stored as a tree. `member` marks that the node itself is in
/// the set (`.` in `FieldsV1`, or a leaf).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// Whether the set holds no path.
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    /// Adds `path`.
    pub fn insert(&mut self, path: &[PathElement]) {
        let mut node = self;
        for pe in path {
            node = node.children.entry(pe.clone()).or_default();
        }
        node.member = true;
    }

    fn node(&self, path: &[PathElement]) -> Option<&FieldSet> {
        let mut node = self;
        for pe in path {
            node = node.children.get(pe)?;
        }
        Some(node)
    }

    /// Whether `path` itself is in the set.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        self.node(path).is_some_and(|n| n.member)
    }

    /// Whether `path` or anything below it is in the set.
    pub fn contains_under(&self, path: &[PathElement]) -> bool {
        self.node(path).is_some_and(|n| !n.is_empty())
    }

    /// Whether `path` or any of its ancestors is in the set as a leaf: an owner of an
    /// atomic parent owns everything inside it.
    pub fn covers(&self, path: &[PathElement]) -> bool {
        let mut node = self;
        for pe in path {
            match node.children.get(pe) {
                Some(n) => node = n,
                None => return false,
            }
            if node.member && node.children.is_empty() {
                return true;
            }
        }
        node.member
    }

    /// Removes `path` itself (not what is below it).
    pub fn remove(&mut self, path: &[PathElement]) {
        Self::remove_inner(self, path, false);
    }

    /// Removes `path` and everything below it.
    pub fn remove_subtree(&mut self, path: &[PathElement]) {
        Self::remove_inner(self, path, true);
    }

    fn remove_inner(node: &mut FieldSet, path: &[PathElement], subtree: bool) {
        match path.split_first() {
            None => {
                node.member = false;
                if subtree {
                    node.children.clear();
                }
            }
            Some((first, rest)) => {
                if let Some(child) = node.children.get_mut(first) {
                    Self::remove_inner(child, rest, subtree);
                    if child.is_empty() {
                        node.children.remove(first);
                    }
                }
            }
        }
    }

    /// Every path in the set, each with whether it is a leaf (no children).
    pub fn paths(&self) -> Vec<(Path, bool)> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect(&mut prefix, &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<(Path, bool)>) {
        if self.member && !prefix.is_empty() {
            out.push((prefix.clone(), self.children.is_empty()));
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The `FieldsV1` JSON encoding.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (pe, child) in &self.children {
            if !child.is_empty() {
                m.insert(pe.encode(), child.to_json());
            }
        }
        Value::Object(m)
    }

    /// Decodes `FieldsV1` JSON; unknown element prefixes are skipped.
    pub fn from_json(v: &Value) -> Self {
        let mut set = FieldSet::default();
        if let Some(m) = v.as_object() {
            for (k, child) in m {
                if k == "." {
                    set.member = true;
                } else if let Some(pe) = PathElement::decode(k) {
                    let mut c = FieldSet::from_json(child);
                    if child.as_object().is_some_and(Map::is_empty) {
                        c.member = true;
                    }
                    set.children.insert(pe, c);
                }
            }
        }
        set
    }
}

/// The key element of a keyed list item, with defaults filled in for omitted keys.
pub fn item_key(item: &Value, keys: &[&str]) -> Option<PathElement> {
    let mut sorted: Vec<&str> = keys.to_vec();
    sorted.sort_unstable();
    let mut parts = Vec::new();
    for k in sorted {
        let v = item.get(k).cloned().or_else(|| schema::key_default(k));
        if let Some(v) = v {
            parts.push(format!("{}:{}", Value::String(k.into()), v));
        }
    }
    (!parts.is_empty()).then(|| PathElement::Key(format!("{{{}}}", parts.join(","))))
}

fn key_matches(item: &Value, key_json: &str) -> bool {
    let Ok(want) = serde_json::from_str::<Map<String, Value>>(key_json) else {
        return false;
    };
    want.iter().all(|(k, v)| {
        item.get(k)
            .cloned()
            .or_else(|| schema::key_default(k))
            .as_ref()
            == Some(v)
    })
}

/// The set of fields `obj` sets: leaves, atomic values, and keyed/set list items.
pub fn set_from_object(kind: &str, obj: &Value) -> FieldSet {
    let mut set = FieldSet::default();
    let mut names: Vec<&str> = Vec::new();
    let mut path = Vec::new();
    walk(kind, obj, &mut names, &mut path, &mut set);
    set
}

fn walk<'a>(
    kind: &str,
    v: &'a Value,
    names: &mut Vec<&'a str>,
    path: &mut Path,
    set: &mut FieldSet,
) {
    match v {
        Value::Object(m) if !m.is_empty() && !schema::is_atomic_map(kind, names) => {
            for (k, child) in m {
                names.push(k);
                path.push(PathElement::Field(k.clone()));
                walk(kind, child, names, path, set);
                path.pop();
                names.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => match schema::list_type(kind, names) {
            ListType::Atomic => set.insert(path),
            ListType::Set => {
                for item in items {
                    path.push(PathElement::Value(item.to_string()));
                    set.insert(path);
                    path.pop();
                }
            }
            ListType::Map(keys) => {
                for item in items {
                    let Some(key) = item_key(item, keys) else {
                        continue;
                    };
                    path.push(key);
                    set.insert(path);
                    if let Some(m) = item.as_object() {
                        for (k, child) in m {
                            names.push(k);
                            path.push(PathElement::Field(k.clone()));
                            walk(kind, child, names, path, set);
                            path.pop();
                            names.pop();
                        }
                    }
                    path.pop();
                }
            }
        },
        _ => {
            if !path.is_empty() {
                set.insert(path);
            }
        }
    }
}

/// The value at `path` in `obj`, if present.
pub fn value_at<'a>(obj: &'a Value, path: &[PathElement]) -> Option<&'a Value> {
    let mut cur = obj;
    for pe in path {
        cur = match pe {
            PathElement::Field(f) => cur.get(f)?,
            PathElement::Key(k) => cur.as_array()?.iter().find(|i| key_matches(i, k))?,
            PathElement::Value(v) => {
                let want: Value = serde_json::from_str(v).ok()?;
                cur.as_array()?.iter().find(|i| **i == want)?
            }
            PathElement::Index(i) => cur.as_array()?.get(*i)?,
        };
    }
    Some(cur)
}

/// Removes the field or list item at `path` from `obj`; a no-op if absent.
pub fn remove_at(obj: &mut Value, path: &[PathElement]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let Some(parent) = value_at_mut(obj, parent_path) else {
        return;
    };
    match (last, parent) {
        (PathElement::Field(f), Value::Object(m)) => {
            m.remove(f);
        }
        (PathElement::Key(k), Value::Array(a)) => a.retain(|i| !key_matches(i, k)),
        (PathElement::Value(v), Value::Array(a)) => {
            if let Ok(want) = serde_json::from_str::<Value>(v) {
                a.retain(|i| *i != want);
            }
        }
        (PathElement::Index(i), Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
        }
        _ => {}
    }
}

fn value_at_mut<'a>(obj: &'a mut Value, path: &[PathElement]) -> Option<&'a mut Value> {
    let mut cur = obj;
    for pe in path {
        cur = match pe {
            PathElement::Field(f) => cur.get_mut(f)?,
            PathElement::Key(k) => cur.as_array_mut()?.iter_mut().find(|i| key_matches(i, k))?,
            PathElement::Value(v) => {
                let want: Value = serde_json::from_str(v).ok()?;
                cur.as_array_mut()?.iter_mut().find(|i| **i == want)?
            }
            PathElement::Index(i) => cur.as_array_mut()?.get_mut(*i)?,
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{
                    "name": "web", "image": "nginx:1", "args": ["a", "b"],
                    "ports": [{"containerPort": 80}]
                }]}}
            }
        })
    }

    #[test]
    fn object_sets_encode_like_the_real_fields_v1() {
        let set = set_from_object("Deployment", &deployment());
        let got = set.to_json();
        let want = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                    ".": {}, "f:args": {}, "f:image": {}, "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                }}}}
            }
        });
        assert_eq!(got, want);
        assert_eq!(FieldSet::from_json(&got), set);
    }

    #[test]
    fn paths_resolve_and_print_like_conflict_messages() {
        let obj = deployment();
        let set = set_from_object("Deployment", &obj);
        let image = set
            .paths()
            .into_iter()
            .map(|(p, _)| p)
            .find(|p| path_string(p).ends_with(".image"))
            .unwrap();
        assert_eq!(
            path_string(&image),
            ".spec.template.spec.containers[name=\"web\"].image"
        );
        assert_eq!(value_at(&obj, &image), Some(&json!("nginx:1")));
        let mut obj2 = obj.clone();
        remove_at(&mut obj2, &image);
        assert_eq!(value_at(&obj2, &image), None);
        assert!(set.covers(&[
            PathElement::Field("spec".into()),
            PathElement::Field("selector".into()),
            PathElement::Field("matchLabels".into())
        ]));
    }

    #[test]
    fn removing_prunes_empty_branches() {
        let mut set = FieldSet::default();
        let p = vec![
            PathElement::Field("a".into()),
            PathElement::Field("b".into()),
        ];
        set.insert(&p);
        assert!(set.contains(&p) && set.contains_under(&p[..1]) && !set.contains(&p[..1]));
        set.remove(&p);
        assert!(set.is_empty());
        assert_eq!(set.to_json(), json!({}));
    }
}
