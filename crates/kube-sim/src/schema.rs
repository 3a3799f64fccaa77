//! The bits of the Kubernetes OpenAPI schema that merging needs: which lists are keyed
//! (and by what), which are sets, which maps are atomic, and the strategic-merge keys.
//!
//! Paths are the chain of field names from the object root, with list positions left
//! out: `spec.template.spec.containers[*].ports` is `["spec","template","spec","containers","ports"]`.
//! Any list not named here is atomic, as it is for the real server when a schema says
//! nothing about it.

use serde_json::Value;

/// How a list is merged and how its items are owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// `x-kubernetes-list-type: map`: items are identified by these key fields.
    Map(&'static [&'static str]),
    /// `x-kubernetes-list-type: set`: items are identified by their value.
    Set,
    /// Replaced as a whole; owned as one field.
    Atomic,
}

const POD_SPEC_LISTS: &[(&str, &[&str])] = &[
    ("containers", &["name"]),
    ("initContainers", &["name"]),
    ("ephemeralContainers", &["name"]),
    ("volumes", &["name"]),
    ("imagePullSecrets", &["name"]),
    ("hostAliases", &["ip"]),
    (
        "topologySpreadConstraints",
        &["topologyKey", "whenUnsatisfiable"],
    ),
    ("resourceClaims", &["name"]),
];

const CONTAINER_LISTS: &[(&str, &[&str])] = &[
    ("ports", &["containerPort", "protocol"]),
    ("env", &["name"]),
    ("volumeMounts", &["mountPath"]),
    ("volumeDevices", &["devicePath"]),
];

fn is_container_list(name: &str) -> bool {
    matches!(
        name,
        "containers" | "initContainers" | "ephemeralContainers"
    )
}

/// The list type of the list at `path` in an object of `kind`.
pub fn list_type(kind: &str, path: &[&str]) -> ListType {
    let Some((&last, parent)) = path.split_last() else {
        return ListType::Atomic;
    };
    let parent_last = parent.last().copied().unwrap_or("");
    if parent_last == "metadata" && parent.len() == 1 {
        return match last {
            "ownerReferences" => ListType::Map(&["uid"]),
            "finalizers" => ListType::Set,
            _ => ListType::Atomic,
        };
    }
    if last == "conditions" && parent == ["status"] {
        return ListType::Map(&["type"]);
    }
    if kind == "Service" && path == ["spec", "ports"] {
        return ListType::Map(&["port", "protocol"]);
    }
    if is_container_list(parent_last) {
        if let Some((_, keys)) = CONTAINER_LISTS.iter().find(|(n, _)| *n == last) {
            return ListType::Map(keys);
        }
        return ListType::Atomic;
    }
    if is_pod_spec(kind, parent)
        && let Some((_, keys)) = POD_SPEC_LISTS.iter().find(|(n, _)| *n == last)
    {
        return ListType::Map(keys);
    }
    ListType::Atomic
}

fn is_pod_spec(kind: &str, path: &[&str]) -> bool {
    match kind {
        "Pod" => path == ["spec"],
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
            path == ["spec", "template", "spec"]
        }
        "CronJob" => path == ["spec", "jobTemplate", "spec", "template", "spec"],
        _ => false,
    }
}

/// Whether the map at `path` is atomic (owned and replaced as a whole). Label selectors
/// are atomic everywhere, Service `spec.selector` too.
pub fn is_atomic_map(_kind: &str, path: &[&str]) -> bool {
    matches!(
        path.last(),
        Some(&"selector" | &"labelSelector" | &"namespaceSelector")
    )
}

/// The default a list key takes when an item omits it (ports default to TCP), so that
/// an applied `containerPort: 80` is the same item as the stored `{80, TCP}`.
pub fn key_default(key: &str) -> Option<Value> {
    (key == "protocol").then(|| Value::String("TCP".into()))
}

/// The `patchMergeKey` of a list for strategic merge patch, or `None` if the list is
/// replaced (or, for primitive lists with `patchStrategy: merge`, unioned: see [`smp_is_union`]).
pub fn smp_merge_key(kind: &str, path: &[&str]) -> Option<&'static str> {
    let last = *path.last()?;
    // Strategic merge predates list-map keys: container ports merge on containerPort
    // alone and Service ports on port alone.
    if kind == "Service" && path == ["spec", "ports"] {
        return Some("port");
    }
    if last == "ports" && path.len() >= 2 && is_container_list(path[path.len() - 2]) {
        return Some("containerPort");
    }
    match list_type(kind, path) {
        ListType::Map(keys) => Some(keys[0]),
        _ => None,
    }
}

/// Whether a primitive list is merged as a union by strategic merge (`finalizers`).
pub fn smp_is_union(kind: &str, path: &[&str]) -> bool {
    list_type(kind, path) == ListType::Set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_template_lists_are_keyed_like_the_real_schema() {
        let p = ["spec", "template", "spec", "containers"];
        assert_eq!(list_type("Deployment", &p), ListType::Map(&["name"]));
        let ports = ["spec", "template", "spec", "containers", "ports"];
        assert_eq!(
            list_type("Deployment", &ports),
            ListType::Map(&["containerPort", "protocol"])
        );
        assert_eq!(
            list_type(
                "Deployment",
                &["spec", "template", "spec", "containers", "args"]
            ),
            ListType::Atomic
        );
        assert_eq!(
            list_type("Pod", &["spec", "containers", "env"]),
            ListType::Map(&["name"])
        );
        assert_eq!(
            list_type("Service", &["spec", "ports"]),
            ListType::Map(&["port", "protocol"])
        );
        assert_eq!(list_type("ConfigMap", &["spec", "ports"]), ListType::Atomic);
        assert_eq!(
            list_type("Deployment", &["metadata", "finalizers"]),
            ListType::Set
        );
        assert_eq!(
            list_type("HorizontalPodAutoscaler", &["spec", "metrics"]),
            ListType::Atomic
        );
    }

    #[test]
    fn strategic_merge_keys_follow_patch_merge_key_tags() {
        assert_eq!(smp_merge_key("Service", &["spec", "ports"]), Some("port"));
        assert_eq!(
            smp_merge_key(
                "Deployment",
                &["spec", "template", "spec", "containers", "ports"]
            ),
            Some("containerPort")
        );
        assert_eq!(
            smp_merge_key("Deployment", &["spec", "template", "spec", "containers"]),
            Some("name")
        );
        assert_eq!(smp_merge_key("Pod", &["spec", "tolerations"]), None);
        assert!(is_atomic_map("Service", &["spec", "selector"]));
        assert!(!is_atomic_map("Pod", &["spec", "nodeSelector"]));
    }
}
