//! The image digests running in the environments' namespaces: what `image prune` must
//! never delete.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::Value;

use crate::oci::Digest;

/// Digests named by `objects` (Deployments, ReplicaSets, Pods as JSON): pinned
/// `repo@sha256:` images in pod templates and pod specs, and the `imageID` the kubelet
/// reports for each container, which also covers images deployed by tag.
pub fn digests_in(objects: &[Value]) -> BTreeSet<Digest> {
    let mut found = BTreeSet::new();
    let mut take = |text: Option<&str>| {
        let digest = text
            .and_then(|t| t.rsplit_once('@'))
            .and_then(|(_, digest)| digest.parse::<Digest>().ok());
        found.extend(digest);
    };
    for object in objects {
        let pod_spec = object
            .pointer("/spec/template/spec")
            .or_else(|| object.get("spec"));
        for list in ["containers", "initContainers"] {
            for container in array(pod_spec.and_then(|spec| spec.get(list))) {
                take(container.get("image").and_then(Value::as_str));
            }
        }
        for list in ["containerStatuses", "initContainerStatuses"] {
            for status in array(object.pointer(&format!("/status/{list}"))) {
                take(status.get("imageID").and_then(Value::as_str));
            }
        }
    }
    found
}

fn array(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// Lists every Deployment, ReplicaSet and Pod in `namespaces`: older ReplicaSets are
/// rollback targets and a kept blue-green color is a Deployment, so all of them count.
/// A failed list is an error, so pruning fails closed.
pub async fn read(client: &kube::Client, namespaces: &[String]) -> Result<BTreeSet<Digest>> {
    let mut objects = Vec::new();
    for namespace in namespaces {
        let params = ListParams::default();
        let deployments = Api::<Deployment>::namespaced(client.clone(), namespace)
            .list(&params)
            .await
            .with_context(|| format!("listing Deployments in {namespace}"))?;
        let replica_sets = Api::<ReplicaSet>::namespaced(client.clone(), namespace)
            .list(&params)
            .await
            .with_context(|| format!("listing ReplicaSets in {namespace}"))?;
        let pods = Api::<Pod>::namespaced(client.clone(), namespace)
            .list(&params)
            .await
            .with_context(|| format!("listing Pods in {namespace}"))?;
        for item in deployments.items.iter().map(serde_json::to_value) {
            objects.push(item?);
        }
        for item in replica_sets.items.iter().map(serde_json::to_value) {
            objects.push(item?);
        }
        for item in pods.items.iter().map(serde_json::to_value) {
            objects.push(item?);
        }
    }
    Ok(digests_in(&objects))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn finds_pinned_images_and_running_image_ids() {
        let objects = [
            json!({"kind": "Deployment", "spec": {"template": {"spec": {
                "initContainers": [{"image": format!("ghcr.io/jisu/platform@{}", digest('a'))}],
                "containers": [{"image": "ghcr.io/jisu/platform:backend"}, {"image": format!("ghcr.io/jisu/platform:x@{}", digest('b'))}]
            }}}}),
            json!({"kind": "Pod", "spec": {"containers": [{"image": "nginx:1.27"}]},
                   "status": {"containerStatuses": [{"imageID": format!("docker.io/library/nginx@{}", digest('c'))}]}}),
            json!({"kind": "Pod", "status": {"containerStatuses": [{"imageID": ""}, {"imageID": "sha256:short"}]}}),
        ];
        let found: Vec<String> = digests_in(&objects)
            .into_iter()
            .map(|d| d.as_str().to_owned())
            .collect();
        assert_eq!(found, [digest('a'), digest('b'), digest('c')]);
    }

    #[test]
    fn nothing_deployed_is_an_empty_set() {
        assert!(digests_in(&[json!({"kind": "Deployment", "spec": {}})]).is_empty());
    }
}
