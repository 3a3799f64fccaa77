//! The resource types the simulator serves: their group, version, kind, scope and
//! subresources. Discovery, routing and storage all read this one table.

/// One served resource type.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Plural resource name used in URLs.
    pub plural: &'static str,
    /// Singular resource name.
    pub singular: &'static str,
    /// Kind of the objects.
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names kubectl accepts (`deploy`, `svc`, ...).
    pub short_names: &'static [&'static str],
    /// Whether the type has a `status` subresource (main-resource writes then leave
    /// `.status` alone, and status writes leave everything else alone).
    pub has_status: bool,
    /// Whether the type has a `scale` subresource.
    pub has_scale: bool,
}

impl ResourceType {
    /// `apiVersion` of the objects, e.g. `apps/v1` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The name error messages use, e.g. `deployments.apps` or `pods`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

macro_rules! res {
    ($g:expr, $v:expr, $p:expr, $s:expr, $k:expr, $ns:expr, $short:expr, $st:expr, $sc:expr) => {
        ResourceType {
            group: $g,
            version: $v,
            plural: $p,
            singular: $s,
            kind: $k,
            namespaced: $ns,
            short_names: $short,
            has_status: $st,
            has_scale: $sc,
        }
    };
}

/// Every served type. The order is the discovery order.
#[rustfmt::skip]
pub static RESOURCES: &[ResourceType] = &[
    res!("", "v1", "namespaces", "namespace", "Namespace", false, &["ns"], true, false),
    res!("", "v1", "pods", "pod", "Pod", true, &["po"], true, false),
    res!("", "v1", "services", "service", "Service", true, &["svc"], true, false),
    res!("", "v1", "endpoints", "endpoints", "Endpoints", true, &["ep"], false, false),
    res!("", "v1", "configmaps", "configmap", "ConfigMap", true, &["cm"], false, false),
    res!("", "v1", "secrets", "secret", "Secret", true, &[], false, false),
    res!("apps", "v1", "deployments", "deployment", "Deployment", true, &["deploy"], true, true),
    res!("apps", "v1", "replicasets", "replicaset", "ReplicaSet", true, &["rs"], true, true),
    res!("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", true, &[], false, false),
    res!("autoscaling", "v2", "horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", true, &["hpa"], true, false),
    res!("coordination.k8s.io", "v1", "leases", "lease", "Lease", true, &[], false, false),
    // Stored only: served so whole platform manifests apply, but no controller acts on them.
    res!("", "v1", "events", "event", "Event", true, &["ev"], false, false),
    res!("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", true, &["sa"], false, false),
    res!("", "v1", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", true, &["pvc"], true, false),
    res!("", "v1", "limitranges", "limitrange", "LimitRange", true, &["limits"], false, false),
    res!("", "v1", "resourcequotas", "resourcequota", "ResourceQuota", true, &["quota"], true, false),
    res!("apps", "v1", "statefulsets", "statefulset", "StatefulSet", true, &["sts"], true, true),
    res!("apps", "v1", "daemonsets", "daemonset", "DaemonSet", true, &["ds"], true, false),
    res!("batch", "v1", "jobs", "job", "Job", true, &[], true, false),
    res!("batch", "v1", "cronjobs", "cronjob", "CronJob", true, &["cj"], true, false),
    res!("networking.k8s.io", "v1", "networkpolicies", "networkpolicy", "NetworkPolicy", true, &["netpol"], false, false),
    res!("networking.k8s.io", "v1", "ingresses", "ingress", "Ingress", true, &["ing"], true, false),
    res!("policy", "v1", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget", true, &["pdb"], true, false),
    res!("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", true, &[], false, false),
    res!("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding", true, &[], false, false),
    res!("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole", false, &[], false, false),
    res!("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", false, &[], false, false),
    res!("", "v1", "persistentvolumes", "persistentvolume", "PersistentVolume", false, &["pv"], true, false),
    res!("storage.k8s.io", "v1", "storageclasses", "storageclass", "StorageClass", false, &["sc"], false, false),
    res!("scheduling.k8s.io", "v1", "priorityclasses", "priorityclass", "PriorityClass", false, &["pc"], false, false),
    res!("networking.k8s.io", "v1", "ingressclasses", "ingressclass", "IngressClass", false, &[], false, false),
];

/// The index of a resource type in [`RESOURCES`]; used as the storage key.
pub type ResId = usize;

/// Looks a type up by group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<ResId> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Looks a type up by kind (the simulator serves one version per kind).
pub fn by_kind(kind: &str) -> Option<ResId> {
    RESOURCES.iter().position(|r| r.kind == kind)
}

/// The groups served, in discovery order, each with its single version.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !out.iter().any(|(g, _)| *g == r.group) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// Well-known ids used by the controllers.
pub mod ids {
    use super::{ResId, by_kind};
    use std::sync::LazyLock;

    macro_rules! id {
        ($name:ident, $kind:expr) => {
            #[doc = concat!("Id of ", $kind, ".")]
            pub static $name: LazyLock<ResId> =
                LazyLock::new(|| by_kind($kind).expect("kind is in the table"));
        };
    }
    id!(NAMESPACE, "Namespace");
    id!(POD, "Pod");
    id!(SERVICE, "Service");
    id!(ENDPOINTS, "Endpoints");
    id!(DEPLOYMENT, "Deployment");
    id!(REPLICASET, "ReplicaSet");
    id!(ENDPOINTSLICE, "EndpointSlice");
    id!(CONFIGMAP, "ConfigMap");
    id!(EVENT, "Event");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_agree_with_the_table() {
        let d = find("apps", "v1", "deployments").unwrap();
        assert_eq!(RESOURCES[d].kind, "Deployment");
        assert_eq!(RESOURCES[d].qualified(), "deployments.apps");
        assert_eq!(RESOURCES[by_kind("Pod").unwrap()].api_version(), "v1");
        assert!(find("apps", "v2", "deployments").is_none());
        assert!(groups().contains(&("autoscaling", "v2")));
    }
}
