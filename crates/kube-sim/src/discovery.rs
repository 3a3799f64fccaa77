//! Discovery documents (`/version`, `/api`, `/apis`, group versions) and the minimal
//! OpenAPI v3 documents kubectl reads to learn that the server validates fields itself.

use serde_json::{Value, json};

use crate::resources::{RESOURCES, groups};

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.0-kube-sim",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc",
        "platform": "linux/amd64"
    })
}

/// `/api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

fn group_doc(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

/// `/apis`.
pub fn group_list() -> Value {
    let groups: Vec<Value> = groups().into_iter().map(|(g, v)| group_doc(g, v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`.
pub fn group(group: &str) -> Option<Value> {
    let (g, v) = groups().into_iter().find(|(g, _)| *g == group)?;
    let mut doc = group_doc(g, v);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

/// `/api/v1` or `/apis/{group}/{version}`.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut main = json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": VERBS, "storageVersionHash": "",
        });
        if !r.short_names.is_empty() {
            main["shortNames"] = json!(r.short_names);
        }
        if matches!(
            r.kind,
            "Pod"
                | "Service"
                | "Deployment"
                | "ReplicaSet"
                | "HorizontalPodAutoscaler"
                | "StatefulSet"
                | "DaemonSet"
                | "Job"
                | "CronJob"
        ) {
            main["categories"] = json!(["all"]);
        }
        resources.push(main);
        if r.has_status {
            resources.push(json!({
                "name": format!("{}/status", r.plural), "singularName": "", "namespaced": r.namespaced,
                "kind": r.kind, "verbs": ["get", "patch", "update"],
            }));
        }
        if r.has_scale {
            resources.push(json!({
                "name": format!("{}/scale", r.plural), "singularName": "", "namespaced": r.namespaced,
                "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"],
            }));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// `/openapi/v3`: the index of per-group-version documents. Each URL carries a hash of
/// its document, because kubectl caches documents by that hash.
pub fn openapi_v3_index() -> Value {
    let url = |g: &str, v: &str, prefix: String| {
        let doc = openapi_v3_doc(g, v).unwrap_or_default();
        let hash = crate::controllers::deployment::template_hash(&doc);
        json!({"serverRelativeURL": format!("/openapi/v3/{prefix}?hash={hash}")})
    };
    let mut paths = serde_json::Map::new();
    paths.insert("api/v1".into(), url("", "v1", "api/v1".into()));
    for (g, v) in groups() {
        paths.insert(format!("apis/{g}/{v}"), url(g, v, format!("apis/{g}/{v}")));
    }
    json!({"paths": paths})
}

/// `/openapi/v3/{api/v1|apis/g/v}`: one PATCH operation per kind, tagged with its
/// group-version-kind and the `fieldValidation` parameter. That is what kubectl's
/// query-parameter verifier looks for before leaving validation to the server; the
/// simulator publishes no schemas beyond it.
pub fn openapi_v3_doc(group: &str, version: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let path = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        let gvk = json!({"group": group, "version": version, "kind": r.kind});
        let params = json!([
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
            {"name": "force", "in": "query", "schema": {"type": "boolean"}}
        ]);
        paths.insert(
            path,
            json!({
                "get": {"x-kubernetes-action": "get", "x-kubernetes-group-version-kind": gvk, "responses": {"200": {"description": "OK"}}},
                "patch": {"x-kubernetes-action": "patch", "x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": {"200": {"description": "OK"}}}
            }),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (kube-sim)", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}}
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_v1_lists_deployment_subresources() {
        let doc = resource_list("apps", "v1").unwrap();
        let names: Vec<&str> = doc["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"deployments")
                && names.contains(&"deployments/status")
                && names.contains(&"deployments/scale")
        );
        assert!(resource_list("apps", "v2").is_none());
        assert_eq!(
            group("autoscaling").unwrap()["preferredVersion"]["groupVersion"],
            "autoscaling/v2"
        );
        assert!(openapi_v3_index()["paths"]["apis/apps/v1"].is_object());
        let d = openapi_v3_doc("apps", "v1").unwrap();
        assert!(d["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]["parameters"].is_array());
    }
}
