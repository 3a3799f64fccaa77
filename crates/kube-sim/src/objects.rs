//! Per-kind object rules the API server applies on every write: defaulting, validation,
//! generation bumps, and the "tracked view" that field ownership is computed on.

use serde_json::{Map, Value, json};

use crate::resources::ResourceType;
use crate::selectors::LabelSelector;
use crate::status::ApiError;

/// Metadata fields the server owns; they are never part of anyone's managed fields.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The part of an object whose fields are owned by managers when written through
/// `subresource`: the main resource excludes `.status` for types with a status
/// subresource, the status subresource is `.status` only.
pub fn tracked_view(rt: &ResourceType, obj: &Value, subresource: &str) -> Value {
    let Some(m) = obj.as_object() else {
        return json!({});
    };
    if subresource == "status" {
        return m
            .get("status")
            .map(|s| json!({"status": s}))
            .unwrap_or_else(|| json!({}));
    }
    let mut out = Map::new();
    for (k, v) in m {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "status" if rt.has_status => {}
            "metadata" => {
                let mut meta = v.as_object().cloned().unwrap_or_default();
                meta.retain(|k, _| !SERVER_METADATA.contains(&k.as_str()));
                if !meta.is_empty() {
                    out.insert(k.clone(), Value::Object(meta));
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// Whether anything outside `metadata` and `status` differs: what bumps `generation`.
pub fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.remove("metadata");
        m.remove("status");
        m
    };
    strip(old) != strip(new)
}

/// Fills in the defaults the real API server sets, so `get -o yaml` looks familiar and
/// controllers can rely on them.
pub fn apply_defaults(rt: &ResourceType, obj: &mut Value) {
    match rt.kind {
        "Namespace" => {
            let name = obj
                .pointer("/metadata/name")
                .cloned()
                .unwrap_or(Value::Null);
            set_default(
                obj,
                &["metadata", "labels", "kubernetes.io/metadata.name"],
                name,
            );
            set_default(obj, &["spec", "finalizers"], json!(["kubernetes"]));
        }
        "Deployment" => {
            set_default(obj, &["spec", "replicas"], json!(1));
            set_default(obj, &["spec", "revisionHistoryLimit"], json!(10));
            set_default(obj, &["spec", "progressDeadlineSeconds"], json!(600));
            set_default(obj, &["spec", "strategy", "type"], json!("RollingUpdate"));
            if obj.pointer("/spec/strategy/type") == Some(&json!("RollingUpdate")) {
                set_default(
                    obj,
                    &["spec", "strategy", "rollingUpdate", "maxSurge"],
                    json!("25%"),
                );
                set_default(
                    obj,
                    &["spec", "strategy", "rollingUpdate", "maxUnavailable"],
                    json!("25%"),
                );
            }
            if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
                pod_spec_defaults(spec);
            }
        }
        "ReplicaSet" | "StatefulSet" => {
            set_default(obj, &["spec", "replicas"], json!(1));
            if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
                pod_spec_defaults(spec);
            }
        }
        "DaemonSet" | "Job" => {
            if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
                pod_spec_defaults(spec);
            }
        }
        "Pod" => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec_defaults(spec);
            }
            set_default(obj, &["status", "phase"], json!("Pending"));
        }
        "Service" => {
            set_default(obj, &["spec", "type"], json!("ClusterIP"));
            set_default(obj, &["spec", "sessionAffinity"], json!("None"));
            set_default(obj, &["spec", "ipFamilies"], json!(["IPv4"]));
            set_default(obj, &["spec", "ipFamilyPolicy"], json!("SingleStack"));
            set_default(obj, &["spec", "internalTrafficPolicy"], json!("Cluster"));
            if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports {
                    set_default(p, &["protocol"], json!("TCP"));
                    let port = p.get("port").cloned().unwrap_or(Value::Null);
                    set_default(p, &["targetPort"], port);
                }
            }
            set_default(obj, &["status", "loadBalancer"], json!({}));
        }
        "Secret" => {
            set_default(obj, &["type"], json!("Opaque"));
            // stringData is write-only: the server folds it into base64 `data`.
            if let Some(Value::Object(sd)) =
                obj.as_object_mut().and_then(|m| m.remove("stringData"))
            {
                use base64::Engine as _;
                for (k, v) in sd {
                    let enc = base64::engine::general_purpose::STANDARD
                        .encode(v.as_str().unwrap_or_default());
                    set(obj, &["data", &k], Value::String(enc));
                }
            }
        }
        _ => {}
    }
}

fn pod_spec_defaults(spec: &mut Value) {
    set_default(spec, &["restartPolicy"], json!("Always"));
    set_default(spec, &["terminationGracePeriodSeconds"], json!(30));
    set_default(spec, &["dnsPolicy"], json!("ClusterFirst"));
    set_default(spec, &["securityContext"], json!({}));
    set_default(spec, &["schedulerName"], json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs {
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
            let tag = image.rsplit('/').next().unwrap_or_default();
            let latest = !tag.contains(':') && !image.contains('@') || tag.ends_with(":latest");
            set_default(
                c,
                &["imagePullPolicy"],
                json!(if latest { "Always" } else { "IfNotPresent" }),
            );
            set_default(
                c,
                &["terminationMessagePath"],
                json!("/dev/termination-log"),
            );
            set_default(c, &["terminationMessagePolicy"], json!("File"));
            set_default(c, &["resources"], json!({}));
            if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    set_default(p, &["protocol"], json!("TCP"));
                }
            }
            for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
                if let Some(p) = c.get_mut(probe).filter(|p| p.is_object()) {
                    set_default(p, &["timeoutSeconds"], json!(1));
                    set_default(p, &["periodSeconds"], json!(10));
                    set_default(p, &["successThreshold"], json!(1));
                    set_default(p, &["failureThreshold"], json!(3));
                    if let Some(h) = p.get_mut("httpGet").filter(|h| h.is_object()) {
                        set_default(h, &["scheme"], json!("HTTP"));
                    }
                }
            }
        }
    }
}

/// Sets `path` to `v` unless a value is already there; creates parents as needed.
pub fn set_default(obj: &mut Value, path: &[&str], v: Value) {
    if !v.is_null() && lookup(obj, path).is_none_or(Value::is_null) {
        set(obj, path, v);
    }
}

fn lookup<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |cur, k| cur.get(k))
}

/// Sets `path` to `v`, creating parent objects.
pub fn set(obj: &mut Value, path: &[&str], v: Value) {
    let mut cur = obj;
    for (i, k) in path.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let m = cur.as_object_mut().expect("made an object above");
        if i == path.len() - 1 {
            m.insert(k.to_string(), v);
            return;
        }
        cur = m
            .entry(k.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// Validates a write; `old` is the stored object for updates. The checks are the ones
/// a deploy is likely to trip over, with the real field paths and messages.
pub fn validate(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut causes: Vec<(String, String, &'static str)> = Vec::new();
    let required = |causes: &mut Vec<(String, String, &'static str)>, f: &str| {
        causes.push((
            f.to_string(),
            "Required value".to_string(),
            "FieldValueRequired",
        ));
    };
    if name.is_empty() {
        required(&mut causes, "metadata.name");
    } else if !is_dns_subdomain(name) {
        causes.push((
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"),
            "FieldValueInvalid",
        ));
    }
    let pod_spec = match rt.kind {
        "Deployment" | "ReplicaSet" => {
            match obj.pointer("/spec/selector") {
                None | Some(Value::Null) => required(&mut causes, "spec.selector"),
                Some(sel) => {
                    let labels = obj.pointer("/spec/template/metadata/labels");
                    match LabelSelector::from_struct(sel) {
                        Ok(s) if s.is_empty() => causes.push((
                            "spec.selector".into(),
                            "Invalid value: \"null\": empty selector is invalid for deployment"
                                .into(),
                            "FieldValueInvalid",
                        )),
                        Ok(s) if !s.matches(labels) => causes.push((
                            "spec.template.metadata.labels".into(),
                            format!(
                                "Invalid value: {}: `selector` does not match template `labels`",
                                labels.cloned().unwrap_or(Value::Null)
                            ),
                            "FieldValueInvalid",
                        )),
                        Ok(_) => {}
                        Err(e) => causes.push(("spec.selector".into(), e, "FieldValueInvalid")),
                    }
                    if let Some(old_sel) = old.and_then(|o| o.pointer("/spec/selector"))
                        && old_sel != sel
                    {
                        causes.push((
                            "spec.selector".into(),
                            format!("Invalid value: {sel}: field is immutable"),
                            "FieldValueInvalid",
                        ));
                    }
                }
            }
            if obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .is_some_and(|r| r < 0)
            {
                causes.push((
                    "spec.replicas".into(),
                    "Invalid value: must be greater than or equal to 0".into(),
                    "FieldValueInvalid",
                ));
            }
            obj.pointer("/spec/template/spec")
                .map(|s| ("spec.template.spec", s))
        }
        "Pod" => obj.get("spec").map(|s| ("spec", s)),
        _ => None,
    };
    if matches!(rt.kind, "Deployment" | "ReplicaSet" | "Pod") {
        match pod_spec {
            None => required(
                &mut causes,
                if rt.kind == "Pod" {
                    "spec.containers"
                } else {
                    "spec.template.spec.containers"
                },
            ),
            Some((prefix, spec)) => match spec.get("containers").and_then(Value::as_array) {
                Some(cs) if !cs.is_empty() => {
                    for (i, c) in cs.iter().enumerate() {
                        for f in ["name", "image"] {
                            if c.get(f).and_then(Value::as_str).is_none_or(str::is_empty) {
                                required(&mut causes, &format!("{prefix}.containers[{i}].{f}"));
                            }
                        }
                    }
                }
                _ => required(&mut causes, &format!("{prefix}.containers")),
            },
        }
    }
    if rt.kind == "Service" {
        let ty = obj
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP");
        let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
        if ty != "ExternalName" && ports.is_none_or(Vec::is_empty) {
            required(&mut causes, "spec.ports");
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(rt.kind, rt.group, name, &causes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{RESOURCES, by_kind};

    fn rt(kind: &str) -> &'static ResourceType {
        &RESOURCES[by_kind(kind).unwrap()]
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "uid": "u", "resourceVersion": "5"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}
            },
            "status": {"replicas": 1}
        })
    }

    #[test]
    fn deployment_defaults_match_the_api_server() {
        let mut d = deployment();
        apply_defaults(rt("Deployment"), &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn service_ports_default_target_port_and_secret_string_data_is_encoded() {
        let mut s = json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}});
        apply_defaults(rt("Service"), &mut s);
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["type"], "ClusterIP");
        let mut sec = json!({"metadata": {"name": "s"}, "stringData": {"k": "hello"}});
        apply_defaults(rt("Secret"), &mut sec);
        assert_eq!(
            sec,
            json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"k": "aGVsbG8="}})
        );
    }

    #[test]
    fn validation_reports_selector_mismatch_and_immutability() {
        let d = deployment();
        assert!(validate(rt("Deployment"), &d, None).is_ok());
        let mut bad = d.clone();
        bad["spec"]["template"]["metadata"]["labels"]["app"] = json!("api");
        let e = validate(rt("Deployment"), &bad, None).unwrap_err();
        assert_eq!(e.code, 422);
        assert!(
            e.message
                .contains("`selector` does not match template `labels`"),
            "{}",
            e.message
        );
        let mut moved = d.clone();
        moved["spec"]["selector"]["matchLabels"]["app"] = json!("api");
        moved["spec"]["template"]["metadata"]["labels"]["app"] = json!("api");
        let e = validate(rt("Deployment"), &moved, Some(&d)).unwrap_err();
        assert!(e.message.contains("field is immutable"));
        let e = validate(
            rt("Pod"),
            &json!({"metadata": {"name": "Bad_Name"}, "spec": {"containers": []}}),
            None,
        )
        .unwrap_err();
        assert!(
            e.message
                .starts_with("Pod \"Bad_Name\" is invalid: [metadata.name: Invalid value"),
            "{}",
            e.message
        );
    }

    #[test]
    fn tracked_view_splits_main_and_status() {
        let d = deployment();
        let main = tracked_view(rt("Deployment"), &d, "");
        assert!(main.get("status").is_none() && main.get("kind").is_none());
        assert_eq!(main["metadata"], json!(null));
        assert_eq!(
            tracked_view(rt("Deployment"), &d, "status"),
            json!({"status": {"replicas": 1}})
        );
        assert!(spec_changed(&d, &{
            let mut x = d.clone();
            x["spec"]["replicas"] = json!(3);
            x
        }));
        assert!(!spec_changed(&d, &{
            let mut x = d.clone();
            x["status"]["replicas"] = json!(3);
            x
        }));
    }
}
