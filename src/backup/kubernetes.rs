//! The namespace's Kubernetes objects, read through the API and cleaned of what the server
//! sets (uid, resourceVersion, managedFields, status, assigned cluster IPs, ...), so they
//! re-apply to a new cluster. Objects another object owns (a CronJob's Jobs) and what the
//! cluster makes itself (the `default` ServiceAccount, `kube-root-ca.crt`) are left out.
//! Secrets are left out, unless the pipeline file names an age recipient: then they go,
//! cleaned the same way, into a separate file encrypted to it, and never touch the disk
//! in plain text.
//!
//! Verification parses every object back and sends it as a server-side apply dry run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use serde_json::Value;

/// The kinds backed up, as `(group, version, kind, plural)`.
pub const KINDS: &[(&str, &str, &str, &str)] = &[
    ("", "v1", "ConfigMap", "configmaps"),
    ("", "v1", "Service", "services"),
    ("", "v1", "ServiceAccount", "serviceaccounts"),
    ("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ("apps", "v1", "Deployment", "deployments"),
    ("apps", "v1", "StatefulSet", "statefulsets"),
    ("apps", "v1", "DaemonSet", "daemonsets"),
    ("batch", "v1", "CronJob", "cronjobs"),
    (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
    ),
    ("networking.k8s.io", "v1", "Ingress", "ingresses"),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
    ),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
    ),
];

/// File name of the objects in the backup.
pub const FILE: &str = "kubernetes.yaml";

/// File name of the Secrets, encrypted to the recipient, when there is one.
pub const SECRETS_FILE: &str = "kubernetes-secrets.yaml.age";

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The multi-document YAML file.
    pub file: PathBuf,
    /// Objects per kind (`Secret` included when they were encrypted).
    pub counts: BTreeMap<String, usize>,
    /// The encrypted Secrets, when a recipient was given.
    pub secrets_file: Option<PathBuf>,
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// Metadata the server sets or that belongs to this cluster only.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Annotations a client or controller writes.
const SERVER_ANNOTATIONS: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
];

/// Whether the object belongs in a backup: not owned by another, not made by the cluster.
pub fn wanted(object: &Value) -> bool {
    let metadata = &object["metadata"];
    let owned = metadata["ownerReferences"]
        .as_array()
        .is_some_and(|refs| !refs.is_empty());
    let name = metadata["name"].as_str().unwrap_or_default();
    let made_by_cluster = match object["kind"].as_str() {
        Some("ServiceAccount") => name == "default",
        Some("ConfigMap") => name == "kube-root-ca.crt",
        _ => false,
    };
    !owned && !made_by_cluster
}

/// The object as it re-applies: server-set metadata, status and assigned addresses gone.
pub fn clean(mut object: Value) -> Value {
    if let Some(metadata) = object["metadata"].as_object_mut() {
        for field in SERVER_METADATA {
            metadata.remove(*field);
        }
        if let Some(annotations) = metadata
            .get_mut("annotations")
            .and_then(Value::as_object_mut)
        {
            for annotation in SERVER_ANNOTATIONS {
                annotations.remove(*annotation);
            }
            if annotations.is_empty() {
                metadata.remove("annotations");
            }
        }
    }
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    match object["kind"].as_str() {
        Some("Service") => {
            if let Some(spec) = object["spec"].as_object_mut() {
                // Assigned by the cluster; a headless Service's `None` is the user's.
                // Node ports stay: one the user chose and one the cluster assigned look the
                // same, and a new cluster usually has the same port free.
                if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
                    spec.remove("clusterIP");
                    spec.remove("clusterIPs");
                }
            }
        }
        Some("PersistentVolumeClaim") => {
            if let Some(spec) = object["spec"].as_object_mut() {
                spec.remove("volumeName");
            }
        }
        _ => {}
    }
    object
}

/// Reads every kind of [`KINDS`] in `namespace` and writes the wanted objects, cleaned,
/// to `dir/kubernetes.yaml`. A kind the server does not serve is skipped. With
/// `secrets_recipient`, the Secrets (but service account tokens, which the cluster makes)
/// go to `dir/kubernetes-secrets.yaml.age`, encrypted in memory before they are written.
pub async fn export(
    client: &kube::Client,
    namespace: &str,
    dir: &Path,
    secrets_recipient: Option<&str>,
) -> anyhow::Result<Exported> {
    let mut documents = Vec::new();
    let mut counts = BTreeMap::new();
    for (group, version, kind, plural) in KINDS {
        let api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            namespace,
            &resource(group, version, kind, plural),
        );
        let list = match api.list(&ListParams::default()).await {
            Ok(list) => list,
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(err) => anyhow::bail!("cannot list {plural} in {namespace}: {err}"),
        };
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        for item in list.items {
            let mut value = serde_json::to_value(&item)?;
            value["apiVersion"] = Value::from(api_version.as_str());
            value["kind"] = Value::from(*kind);
            if !wanted(&value) {
                continue;
            }
            documents.push(serde_yaml::to_string(&clean(value))?);
            *counts.entry(kind.to_string()).or_insert(0) += 1;
        }
    }
    let file = dir.join(FILE);
    std::fs::write(&file, documents.join("---\n"))?;
    let secrets_file = match secrets_recipient {
        Some(recipient) => {
            let (text, count) = secrets(client, namespace).await?;
            counts.insert("Secret".into(), count);
            let path = dir.join(SECRETS_FILE);
            std::fs::write(&path, encrypt(recipient, text.as_bytes())?)?;
            Some(path)
        }
        None => None,
    };
    Ok(Exported {
        file,
        counts,
        secrets_file,
    })
}

/// The namespace's Secrets as YAML documents, cleaned; service account tokens left out.
async fn secrets(client: &kube::Client, namespace: &str) -> anyhow::Result<(String, usize)> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        namespace,
        &resource("", "v1", "Secret", "secrets"),
    );
    let mut documents = Vec::new();
    for item in api.list(&ListParams::default()).await?.items {
        let mut value = serde_json::to_value(&item)?;
        value["apiVersion"] = Value::from("v1");
        value["kind"] = Value::from("Secret");
        let token = value["type"].as_str() == Some("kubernetes.io/service-account-token");
        if token || !wanted(&value) {
            continue;
        }
        documents.push(serde_yaml::to_string(&clean(value))?);
    }
    let count = documents.len();
    Ok((documents.join("---\n"), count))
}

/// `plain` encrypted to the age `recipient` (binary age format).
pub fn encrypt(recipient: &str, plain: &[u8]) -> anyhow::Result<Vec<u8>> {
    use std::io::Write as _;
    let recipient: age::x25519::Recipient = recipient
        .parse()
        .map_err(|e| anyhow::anyhow!("backup.kubernetes.secrets_recipient: {e}"))?;
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))?;
    let mut out = Vec::new();
    let mut writer = encryptor.wrap_output(&mut out)?;
    writer.write_all(plain)?;
    writer.finish()?;
    Ok(out)
}

/// Parses every object of `file` and sends it as a server-side apply dry run into
/// `namespace`; the number of objects, or every refusal.
pub async fn verify(client: &kube::Client, namespace: &str, file: &Path) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(file)?;
    let mut problems = Vec::new();
    let mut count = 0;
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value: Value = serde::Deserialize::deserialize(document)?;
        if value.is_null() {
            continue;
        }
        count += 1;
        let object: DynamicObject = serde_json::from_value(value.clone())?;
        let (group, version) = match object.types.as_ref().map(|t| t.api_version.as_str()) {
            Some(api_version) => match api_version.split_once('/') {
                Some((group, version)) => (group.to_owned(), version.to_owned()),
                None => (String::new(), api_version.to_owned()),
            },
            None => anyhow::bail!("an object in {} has no apiVersion", file.display()),
        };
        let kind = value["kind"].as_str().unwrap_or_default();
        let Some((_, _, _, plural)) = KINDS
            .iter()
            .find(|k| k.0 == group && k.1 == version && k.2 == kind)
        else {
            problems.push(format!("{kind} is not a kind this backup writes"));
            continue;
        };
        let name = object.metadata.name.clone().unwrap_or_default();
        let api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            namespace,
            &resource(&group, &version, kind, plural),
        );
        let params = PatchParams::apply("jisu-deploy-backup-verify")
            .dry_run()
            .force();
        if let Err(err) = api.patch(&name, &params, &Patch::Apply(&object)).await {
            problems.push(format!("{kind}/{name}: {err}"));
        }
    }
    if problems.is_empty() {
        Ok(count)
    } else {
        anyhow::bail!(
            "{} object(s) do not apply: {}",
            problems.len(),
            problems.join("; ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_set_fields_go_and_the_users_stay() {
        let service = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "backend", "namespace": "prod", "uid": "u", "resourceVersion": "7",
                "creationTimestamp": "2026-01-01T00:00:00Z", "managedFields": [{}],
                "labels": {"app": "backend"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"], "selector": {"app": "backend"},
                "ports": [{"port": 80, "targetPort": 8000}]},
            "status": {"loadBalancer": {}}
        });
        assert_eq!(
            clean(service),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "backend", "namespace": "prod", "labels": {"app": "backend"}},
                "spec": {"selector": {"app": "backend"}, "ports": [{"port": 80, "targetPort": 8000}]}
            })
        );
        let headless =
            json!({"kind": "Service", "metadata": {"name": "db"}, "spec": {"clusterIP": "None"}});
        assert_eq!(clean(headless.clone()), headless);
    }

    #[test]
    fn owned_and_cluster_made_objects_are_left_out() {
        assert!(wanted(
            &json!({"kind": "Deployment", "metadata": {"name": "backend"}})
        ));
        assert!(!wanted(
            &json!({"kind": "Job", "metadata": {"name": "nightly-1",
            "ownerReferences": [{"kind": "CronJob", "name": "nightly"}]}})
        ));
        assert!(!wanted(
            &json!({"kind": "ServiceAccount", "metadata": {"name": "default"}})
        ));
        assert!(!wanted(
            &json!({"kind": "ConfigMap", "metadata": {"name": "kube-root-ca.crt"}})
        ));
        assert!(wanted(
            &json!({"kind": "ConfigMap", "metadata": {"name": "app-config"}})
        ));
    }
}
