//! Typed decoding: every object a client writes must decode into its kind's
//! `k8s-openapi` type, as the real server decodes request bodies into Go structs. A
//! mistyped field (`replicas: "three"`) fails the write; unknown fields are found by a
//! round trip (decode, encode, compare: what the input has and the typed value lost)
//! and are refused, reported or dropped as `fieldValidation` asks.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::schema::{self, ListType};

/// The `fieldValidation` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Unknown fields are dropped silently.
    Ignore,
    /// Unknown fields are dropped and reported in `Warning` headers (the default).
    #[default]
    Warn,
    /// Unknown fields fail the request.
    Strict,
}

impl FieldValidation {
    /// Parses the query value; absent or empty means `Warn`, as on the real server.
    pub fn parse(v: Option<&str>) -> Result<Self, String> {
        match v.unwrap_or_default() {
            "" | "Warn" => Ok(Self::Warn),
            "Ignore" => Ok(Self::Ignore),
            "Strict" => Ok(Self::Strict),
            other => Err(format!(
                "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
            )),
        }
    }
}

/// One step of a path into an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A field.
    Key(String),
    /// A list position.
    Index(usize),
}

/// A path from the object root.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    /// The form strict JSON decoding reports: `spec.template.spec.containers[0].imagee`.
    pub fn dotted(&self) -> String {
        let mut out = String::new();
        for s in &self.0 {
            match s {
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    /// Field names only, list positions left out (Go's struct field paths, and the
    /// schema lookups of [`crate::schema`]).
    pub fn names(&self) -> Vec<&str> {
        self.0
            .iter()
            .filter_map(|s| match s {
                Seg::Key(k) => Some(k.as_str()),
                Seg::Index(_) => None,
            })
            .collect()
    }

    /// The form server-side apply's typed conversion reports, with list items named by
    /// their keys: `.spec.template.spec.containers[name="web"].imagee`.
    pub fn smd(&self, kind: &str, obj: &Value) -> String {
        let mut out = String::new();
        let mut names: Vec<&str> = Vec::new();
        let mut cur = Some(obj);
        for s in &self.0 {
            match s {
                Seg::Key(k) => {
                    out.push('.');
                    out.push_str(k);
                    names.push(k);
                    cur = cur.and_then(|v| v.get(k));
                }
                Seg::Index(i) => {
                    let item = cur.and_then(|v| v.get(*i));
                    match (schema::list_type(kind, &names), item) {
                        (ListType::Map(keys), Some(item)) => {
                            let parts: Vec<String> = keys
                                .iter()
                                .filter_map(|k| {
                                    let v =
                                        item.get(*k).cloned().or_else(|| schema::key_default(k))?;
                                    Some(format!("{k}={v}"))
                                })
                                .collect();
                            out.push_str(&format!("[{}]", parts.join(",")));
                        }
                        (ListType::Set, Some(item)) => out.push_str(&format!("[={item}]")),
                        _ => out.push_str(&format!("[{i}]")),
                    }
                    cur = item;
                }
            }
        }
        out
    }
}

/// Why an object does not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Where.
    pub path: FieldPath,
    /// What went wrong.
    pub problem: Problem,
}

/// The kinds of decoding failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A value of the wrong JSON type.
    Mistyped {
        /// JSON type found, as Go names it: `string`, `number`, `bool`, `object`, `array`.
        found: &'static str,
        /// Go type wanted: `int32`, `string`, `v1.DeploymentSpec`, ...
        want: String,
        /// The Go struct holding the field (`DeploymentSpec`).
        parent: String,
        /// The struct field's path as Go names it: field names only, without list
        /// positions or map keys (`spec.template.spec.containers.image`).
        field: String,
    },
    /// Anything else (bad base64, an unparsable time, ...).
    Other(String),
}

impl DecodeError {
    /// The message Go's JSON decoder gives (create and update bodies, patch results):
    /// `json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32`.
    pub fn go_message(&self) -> String {
        match &self.problem {
            Problem::Mistyped {
                found,
                want,
                parent,
                field,
            } => format!(
                "json: cannot unmarshal {found} into Go struct field {parent}.{field} of type {want}"
            ),
            Problem::Other(m) => format!("{m} (at {})", self.path.dotted()),
        }
    }

    /// The message server-side apply's typed conversion gives:
    /// `.spec.replicas: expected numeric (int or float), got string`.
    pub fn smd_message(&self, kind: &str, obj: &Value) -> String {
        let path = self.path.smd(kind, obj);
        match &self.problem {
            Problem::Mistyped { found, want, .. } => {
                let expected = match want.as_str() {
                    "int32" | "int64" | "float64" => "numeric (int or float)",
                    "string" => "string",
                    "bool" => "boolean",
                    w if w.starts_with("[]") => "list",
                    _ => "map",
                };
                let got = match *found {
                    "number" => "int64",
                    "object" => "map[string]interface {}",
                    "array" => "[]interface {}",
                    other => other,
                };
                format!("{path}: expected {expected}, got {got}")
            }
            Problem::Other(m) => format!("{path}: {m}"),
        }
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(v: Value) -> Result<Value, (FieldPath, String)> {
    let typed: T = serde_path_to_error::deserialize(v).map_err(|e| {
        let path = FieldPath(
            e.path()
                .iter()
                .filter_map(|s| match s {
                    serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
                    serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
                    _ => None,
                })
                .collect(),
        );
        (path, e.into_inner().to_string())
    })?;
    // Serialising a k8s-openapi value cannot fail.
    Ok(serde_json::to_value(typed).unwrap_or(Value::Null))
}

/// Decodes `obj` as `kind` and encodes it back; `None` if the kind has no typed model.
fn typed_round_trip(kind: &str, obj: Value) -> Option<Result<Value, (FieldPath, String)>> {
    use k8s_openapi::api::{
        apps, autoscaling, batch, coordination, core, discovery, networking, policy, rbac,
        scheduling, storage,
    };
    macro_rules! kinds {
        ($($name:literal => $ty:ty),* $(,)?) => {
            match kind {
                $($name => Some(round_trip::<$ty>(obj)),)*
                _ => None,
            }
        };
    }
    kinds! {
        "Namespace" => core::v1::Namespace,
        "Pod" => core::v1::Pod,
        "Service" => core::v1::Service,
        "Endpoints" => core::v1::Endpoints,
        "ConfigMap" => core::v1::ConfigMap,
        "Secret" => core::v1::Secret,
        "Event" => core::v1::Event,
        "ServiceAccount" => core::v1::ServiceAccount,
        "PersistentVolumeClaim" => core::v1::PersistentVolumeClaim,
        "PersistentVolume" => core::v1::PersistentVolume,
        "LimitRange" => core::v1::LimitRange,
        "ResourceQuota" => core::v1::ResourceQuota,
        "Deployment" => apps::v1::Deployment,
        "ReplicaSet" => apps::v1::ReplicaSet,
        "StatefulSet" => apps::v1::StatefulSet,
        "DaemonSet" => apps::v1::DaemonSet,
        "Job" => batch::v1::Job,
        "CronJob" => batch::v1::CronJob,
        "EndpointSlice" => discovery::v1::EndpointSlice,
        "HorizontalPodAutoscaler" => autoscaling::v2::HorizontalPodAutoscaler,
        "Lease" => coordination::v1::Lease,
        "NetworkPolicy" => networking::v1::NetworkPolicy,
        "Ingress" => networking::v1::Ingress,
        "IngressClass" => networking::v1::IngressClass,
        "PodDisruptionBudget" => policy::v1::PodDisruptionBudget,
        "Role" => rbac::v1::Role,
        "RoleBinding" => rbac::v1::RoleBinding,
        "ClusterRole" => rbac::v1::ClusterRole,
        "ClusterRoleBinding" => rbac::v1::ClusterRoleBinding,
        "StorageClass" => storage::v1::StorageClass,
        "PriorityClass" => scheduling::v1::PriorityClass,
    }
}

/// Whether the simulator decodes `kind` into a typed model.
pub fn is_typed(kind: &str) -> bool {
    typed_round_trip(kind, Value::Null).is_some()
}

/// Go leaves a field whose JSON value is `null` at its zero value; the typed models
/// want the field absent instead.
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Checks that `obj` (with `apiVersion` and `kind` set) decodes into its kind's type.
/// Returns the unknown fields: present in `obj`, lost by the typed round trip.
pub fn check(kind: &str, obj: &Value) -> Result<Vec<FieldPath>, DecodeError> {
    let mut input = obj.clone();
    strip_nulls(&mut input);
    let output = match typed_round_trip(kind, input.clone()) {
        None => return Ok(Vec::new()),
        Some(Ok(out)) => out,
        Some(Err((path, message))) => return Err(explain(kind, &input, path, &message)),
    };
    let mut unknown = Vec::new();
    lost_fields(&input, &output, &mut Vec::new(), &mut unknown);
    Ok(unknown)
}

fn lost_fields(input: &Value, output: &Value, at: &mut Vec<Seg>, out: &mut Vec<FieldPath>) {
    match (input, output) {
        (Value::Object(i), Value::Object(o)) => {
            for (k, v) in i {
                at.push(Seg::Key(k.clone()));
                match o.get(k) {
                    None => out.push(FieldPath(at.clone())),
                    Some(ov) => lost_fields(v, ov, at, out),
                }
                at.pop();
            }
        }
        (Value::Array(i), Value::Array(o)) => {
            for (n, (iv, ov)) in i.iter().zip(o).enumerate() {
                at.push(Seg::Index(n));
                lost_fields(iv, ov, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

/// Removes the field at `path`, if there.
pub fn remove(obj: &mut Value, path: &FieldPath) {
    let Some((last, parents)) = path.0.split_last() else {
        return;
    };
    let mut cur = obj;
    for s in parents {
        let next = match s {
            Seg::Key(k) => cur.get_mut(k.as_str()),
            Seg::Index(i) => cur.get_mut(*i),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let (Seg::Key(k), Some(m)) = (last, cur.as_object_mut()) {
        m.remove(k);
    }
}

// Turns serde's "invalid type: string \"three\", expected i32" into Go's terms.
fn explain(kind: &str, input: &Value, path: FieldPath, message: &str) -> DecodeError {
    let Some((found, want)) = message
        .strip_prefix("invalid type: ")
        .and_then(|m| m.rsplit_once(", expected "))
    else {
        return DecodeError {
            path,
            problem: Problem::Other(message.to_string()),
        };
    };
    let found = match found.split(' ').next().unwrap_or_default() {
        "string" => "string",
        "integer" | "floating" => "number",
        "boolean" => "bool",
        "map" => "object",
        "sequence" => "array",
        _ => "null",
    };
    let want = go_type(want);
    // Map keys are not struct fields: walk up to the struct holding the map.
    let mut holder = path.clone();
    let parent = loop {
        let p = parent_struct(kind, input, &holder);
        if p != "a map" {
            break p;
        }
        match holder.0.iter().rposition(|s| matches!(s, Seg::Key(_))) {
            Some(i) => holder.0.truncate(i),
            None => break kind.to_string(),
        }
    };
    let field = holder.names().join(".");
    DecodeError {
        path,
        problem: Problem::Mistyped {
            found,
            want,
            parent,
            field,
        },
    }
}

fn go_type(serde_expected: &str) -> String {
    let t = match serde_expected {
        "i32" => "int32",
        "i64" => "int64",
        "f64" => "float64",
        "a boolean" => "bool",
        "a string" => "string",
        "a sequence" => "[]interface {}",
        "a map" => "map[string]string",
        "Quantity" => "resource.Quantity",
        "IntOrString" => "intstr.IntOrString",
        other => return format!("v1.{other}"),
    };
    t.to_string()
}

// The Go struct holding the field at `path`: found by putting a number where that struct
// is and reading what the decoder expected there.
fn parent_struct(kind: &str, input: &Value, path: &FieldPath) -> String {
    let Some(last_key) = path.0.iter().rposition(|s| matches!(s, Seg::Key(_))) else {
        return kind.to_string();
    };
    if last_key == 0 {
        return kind.to_string();
    }
    let mut probe = input.clone();
    let mut cur = &mut probe;
    for s in &path.0[..last_key] {
        let next = match s {
            Seg::Key(k) => cur.get_mut(k.as_str()),
            Seg::Index(i) => cur.get_mut(*i),
        };
        match next {
            Some(n) => cur = n,
            None => return kind.to_string(),
        }
    }
    *cur = Value::from(0);
    match typed_round_trip(kind, probe) {
        Some(Err((_, m))) => m
            .rsplit_once(", expected ")
            .map(|(_, t)| t.to_string())
            .unwrap_or_else(|| kind.to_string()),
        _ => kind.to_string(),
    }
}

/// Renders a value as Go's `%+v` prints a decoded JSON map (`map[spec:map[replicas:3]]`),
/// as the real server quotes a strategic merge patch in its errors.
pub fn go_map_text(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_map_text).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_map_text(&m[k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(spec: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"a": "b"}, "annotations": {"x/y": "z"}, "creationTimestamp": null}, "spec": spec})
    }

    fn template() -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}],
            "resources": {"limits": {"cpu": 1, "memory": "64Mi"}}, "readinessProbe": {"httpGet": {"port": "http", "path": "/"}}}]}})
    }

    #[test]
    fn known_fields_free_form_maps_quantities_and_nulls_pass() {
        let d = deployment(
            json!({"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}, "template": template()}),
        );
        assert_eq!(check("Deployment", &d), Ok(vec![]));
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"anything.yaml": "x"}});
        assert_eq!(check("ConfigMap", &cm), Ok(vec![]));
        assert!(is_typed("Lease") && !is_typed("Scale"));
    }

    #[test]
    fn unknown_fields_are_found_with_their_paths() {
        let mut t = template();
        t["spec"]["containers"][0]["imagee"] = json!("x");
        let d = deployment(json!({"replicass": 2, "selector": {}, "template": t}));
        let unknown = check("Deployment", &d).unwrap();
        let dotted: Vec<String> = unknown.iter().map(FieldPath::dotted).collect();
        assert_eq!(
            dotted,
            ["spec.replicass", "spec.template.spec.containers[0].imagee"]
        );
        assert_eq!(
            unknown[1].smd("Deployment", &d),
            ".spec.template.spec.containers[name=\"web\"].imagee"
        );
        let mut stripped = d.clone();
        for p in &unknown {
            remove(&mut stripped, p);
        }
        assert_eq!(check("Deployment", &stripped), Ok(vec![]));
        assert_eq!(
            stripped["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx"
        );
    }

    #[test]
    fn mistyped_fields_are_explained_in_go_and_apply_terms() {
        let d = deployment(json!({"replicas": "three", "selector": {}, "template": template()}));
        let e = check("Deployment", &d).unwrap_err();
        assert_eq!(
            e.go_message(),
            "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"
        );
        assert_eq!(
            e.smd_message("Deployment", &d),
            ".spec.replicas: expected numeric (int or float), got string"
        );
        let mut t = template();
        t["spec"]["containers"][0]["image"] = json!(5);
        let e = check(
            "Deployment",
            &deployment(json!({"selector": {}, "template": t})),
        )
        .unwrap_err();
        assert_eq!(
            e.go_message(),
            "json: cannot unmarshal number into Go struct field Container.spec.template.spec.containers.image of type string"
        );
    }

    #[test]
    fn go_map_text_matches_go_formatting() {
        assert_eq!(
            go_map_text(&json!({"spec": {"replicas": 3, "b": [1, "x"]}})),
            "map[spec:map[b:[1 x] replicas:3]]"
        );
    }
}
