//! Manifests + environment + image digests -> the objects to apply. Pure: the caller reads
//! the files and hands over their text, so every rule here is unit-tested on inline YAML.
//!
//! The rendering contract is `k8s/README.md`: the tool sets the namespace, adds the
//! managed-by/part-of/version labels, replaces each component's image placeholder by
//! `repository@sha256:...`, and puts the environment's replica count into the HPA's
//! `minReplicas` (the HPA owns `spec.replicas`). Anything that would run a mutable tag is
//! refused here, before a single object reaches the cluster.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ingress::{self, Placement};
use crate::oci::Reference;

/// Label naming the tool that applied an object; pruning only ever looks at these.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label naming the application an object belongs to.
pub const PART_OF: &str = "app.kubernetes.io/part-of";
/// Label carrying the git sha the object was rendered from.
pub const VERSION: &str = "app.kubernetes.io/version";
/// Pod template annotation holding a hash of the ConfigMaps the pods read, so a config
/// change rolls the pods (they read their configuration only at start).
pub const CONFIG_HASH: &str = "jisu.dev/config-hash";
/// Value of [`MANAGED_BY`], also the server-side apply field manager.
pub const MANAGER: &str = "jisu-deploy";

/// One manifest file, read by the caller.
#[derive(Debug, Clone)]
pub struct ManifestFile {
    /// Shown in errors: the path relative to the workspace.
    pub source: String,
    /// The YAML text, possibly several documents.
    pub text: String,
}

/// What a component's containers run.
#[derive(Debug, Clone)]
pub struct ComponentImage {
    /// The exact image string in the manifests that stands for this component.
    pub placeholder: String,
    /// The digest-pinned image to put in its place.
    pub pinned: Reference,
    /// Deployment name of the component (for replica overrides).
    pub workload: String,
}

/// Everything rendering needs besides the files.
#[derive(Debug, Clone)]
pub struct RenderInput {
    /// Target namespace of every namespaced object.
    pub namespace: String,
    /// Git sha for the version label.
    pub version: String,
    /// Value of the part-of label where a manifest sets none.
    pub part_of: String,
    /// Images per component name.
    pub images: BTreeMap<String, ComponentImage>,
    /// Replica count per component name (to HPA `minReplicas`, else `spec.replicas`).
    pub replicas: BTreeMap<String, u32>,
    /// The URLs whose hosts replace the Ingress host placeholders ([`super::ingress`]).
    pub urls: super::ingress::Urls,
}

/// An object ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The file it came from.
    pub source: String,
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// The namespace, `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// The full object.
    pub object: Value,
}

impl Rendered {
    /// `Kind/name`, as kubectl prints it.
    pub fn display_name(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// A problem in a manifest; the caller turns these into one input error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderProblem {
    /// The file.
    pub source: String,
    /// The object, when known (`Deployment/backend`).
    pub object: Option<String>,
    /// What is wrong and what to do.
    pub message: String,
}

impl std::fmt::Display for RenderProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.object {
            Some(object) => write!(f, "{}: {object}: {}", self.source, self.message),
            None => write!(f, "{}: {}", self.source, self.message),
        }
    }
}

/// Kinds that live outside namespaces (those a deploy folder could plausibly hold).
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "PriorityClass",
    "StorageClass",
    "IngressClass",
];

/// Apply order: what others refer to goes first (as Helm installs), unknown kinds last.
const APPLY_ORDER: &[&str] = &[
    "Namespace",
    "ResourceQuota",
    "LimitRange",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "Role",
    "RoleBinding",
    "Service",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "Ingress",
    "NetworkPolicy",
];

/// Renders every object of `files`; returns all problems at once when any is found.
pub fn render(
    files: &[ManifestFile],
    input: &RenderInput,
) -> Result<Vec<Rendered>, Vec<RenderProblem>> {
    let mut problems = Vec::new();
    let mut objects = Vec::new();
    for file in files {
        match parse_documents(file) {
            Ok(docs) => {
                for doc in docs {
                    match render_object(&file.source, doc, input) {
                        Ok(Some(object)) => objects.push(object),
                        Ok(None) => {}
                        Err(mut found) => problems.append(&mut found),
                    }
                }
            }
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        check_workloads(&objects, input, &mut problems);
    }
    if problems.is_empty() {
        apply_replicas(&mut objects, input, &mut problems);
    }
    if problems.is_empty() {
        check_duplicates(&objects, &mut problems);
    }
    if problems.is_empty() {
        annotate_config_hashes(&mut objects);
    }
    if problems.is_empty() && objects.is_empty() {
        problems.push(RenderProblem {
            source: files
                .first()
                .map_or_else(|| "manifests".to_owned(), |f| f.source.clone()),
            object: None,
            message: "no Kubernetes objects found in the manifest folder".to_owned(),
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    objects.sort_by_key(|o| {
        APPLY_ORDER
            .iter()
            .position(|k| *k == o.kind)
            .unwrap_or(APPLY_ORDER.len())
    });
    Ok(objects)
}

/// Splits a file into its non-empty YAML documents, as JSON.
fn parse_documents(file: &ManifestFile) -> Result<Vec<Value>, RenderProblem> {
    use crate::config::depth;
    if let Some((line, column)) = depth::too_deep(&file.text, depth::MAX_DEPTH) {
        return Err(RenderProblem {
            source: file.source.clone(),
            object: None,
            message: format!(
                "nests deeper than {} levels at line {line} column {column}",
                depth::MAX_DEPTH
            ),
        });
    }
    let mut docs = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&file.text) {
        let value = serde_yaml::Value::deserialize(document).map_err(|err| RenderProblem {
            source: file.source.clone(),
            object: None,
            message: format!("not valid YAML: {err}"),
        })?;
        if value.is_null() {
            continue;
        }
        let json = serde_json::to_value(&value).map_err(|err| RenderProblem {
            source: file.source.clone(),
            object: None,
            message: format!("cannot be represented as JSON (the Kubernetes API's format): {err}"),
        })?;
        docs.push(json);
    }
    Ok(docs)
}

/// One object rendered, or `None` when it is left out for this environment (a preview
/// Ingress where there is no preview URL).
fn render_object(
    source: &str,
    mut doc: Value,
    input: &RenderInput,
) -> Result<Option<Rendered>, Vec<RenderProblem>> {
    let problem = |object: Option<String>, message: String| RenderProblem {
        source: source.to_owned(),
        object,
        message,
    };
    let Some(map) = doc.as_object() else {
        return Err(vec![problem(
            None,
            "a document is not a mapping; every document must be one Kubernetes object".into(),
        )]);
    };
    let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
    let (Some(api_version), Some(kind)) = (text("apiVersion"), text("kind")) else {
        return Err(vec![problem(
            None,
            "an object lacks `apiVersion` or `kind`".into(),
        )]);
    };
    if kind.ends_with("List") {
        return Err(vec![problem(
            None,
            format!("`kind: {kind}` is not supported; write one document per object"),
        )]);
    }
    let Some(name) = doc
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Err(vec![problem(
            Some(kind.clone()),
            "`metadata.name` is missing".into(),
        )]);
    };
    let display = format!("{kind}/{name}");
    let mut problems = Vec::new();
    let namespaced = !CLUSTER_SCOPED.contains(&kind.as_str());
    if namespaced {
        match doc.pointer("/metadata/namespace").and_then(Value::as_str) {
            Some(ns) if ns != input.namespace => problems.push(problem(
                Some(display.clone()),
                format!(
                    "`metadata.namespace: {ns}` differs from the environment's namespace `{}`; remove it, the tool sets it",
                    input.namespace
                ),
            )),
            _ => {}
        }
        set(&mut doc, &["metadata", "namespace"], json!(input.namespace));
    }
    add_labels(&mut doc, &["metadata", "labels"], input);
    for template in pod_template_paths(&kind) {
        if doc.pointer(&pointer(template)).is_some() {
            add_labels(
                &mut doc,
                &[template, &["metadata", "labels"]].concat(),
                input,
            );
            let spec = pointer(&[template, &["spec"]].concat());
            if let Some(pod_spec) = doc.pointer_mut(&spec) {
                pin_images(pod_spec, input, &display, source, &mut problems);
            }
        }
    }
    let placement = match kind.as_str() {
        "Ingress" => ingress::place_hosts(&mut doc, &input.urls).unwrap_or_else(|message| {
            problems.push(problem(Some(display.clone()), message));
            Placement::Keep
        }),
        _ => Placement::Keep,
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    if placement == Placement::LeaveOut {
        return Ok(None);
    }
    Ok(Some(Rendered {
        source: source.to_owned(),
        api_version,
        kind,
        name,
        namespace: namespaced.then(|| input.namespace.clone()),
        object: doc,
    }))
}

/// Where a kind keeps its pod template.
fn pod_template_paths(kind: &str) -> Vec<&'static [&'static str]> {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            vec![&["spec", "template"]]
        }
        "CronJob" => vec![&["spec", "jobTemplate", "spec", "template"]],
        _ => vec![],
    }
}

fn pointer(path: &[&str]) -> String {
    path.iter().map(|p| format!("/{p}")).collect()
}

/// Sets `path` to `value`, creating mappings on the way.
fn set(doc: &mut Value, path: &[&str], value: Value) {
    let mut here = doc;
    for (i, key) in path.iter().enumerate() {
        if !here.is_object() {
            *here = Value::Object(Map::new());
        }
        let map = here.as_object_mut().expect("made an object above");
        if i == path.len() - 1 {
            map.insert((*key).to_owned(), value);
            return;
        }
        here = map
            .entry((*key).to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

fn add_labels(doc: &mut Value, path: &[&str], input: &RenderInput) {
    let labels = [
        (MANAGED_BY, MANAGER.to_owned()),
        (VERSION, input.version.clone()),
    ];
    for (key, value) in labels {
        set(doc, &[path, &[key]].concat(), json!(value));
    }
    // part-of names the application; a manifest's own value wins over the fallback.
    let existing = doc
        .pointer(&pointer(path))
        .and_then(|labels| labels.get(PART_OF))
        .and_then(Value::as_str)
        .is_some();
    if !existing {
        set(doc, &[path, &[PART_OF]].concat(), json!(input.part_of));
    }
}

/// Replaces placeholders and refuses any image that is not pinned by digest.
fn pin_images(
    pod_spec: &mut Value,
    input: &RenderInput,
    object: &str,
    source: &str,
    problems: &mut Vec<RenderProblem>,
) {
    for list in ["initContainers", "containers"] {
        let Some(containers) = pod_spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers {
            let name = container
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned();
            let Some(image) = container
                .get("image")
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                problems.push(RenderProblem {
                    source: source.to_owned(),
                    object: Some(object.to_owned()),
                    message: format!("container `{name}` has no image"),
                });
                continue;
            };
            if let Some(component) = input.images.values().find(|c| c.placeholder == image) {
                container["image"] = json!(component.pinned.to_string());
                continue;
            }
            if let Some(message) = unpinned(&image) {
                problems.push(RenderProblem {
                    source: source.to_owned(),
                    object: Some(object.to_owned()),
                    message: format!("container `{name}`: image `{image}` {message}"),
                });
            }
        }
    }
}

/// Why an image left in a manifest may not run, or `None` when it is pinned by digest.
pub fn unpinned(image: &str) -> Option<String> {
    match Reference::parse(image) {
        Err(err) => Some(format!("is not a valid image reference ({err})")),
        Ok(reference) if reference.digest().is_some() => None,
        Ok(reference) => Some(format!(
            "uses the mutable tag `{}`, which can point at different code tomorrow; pin it by digest (`{}@sha256:...`) or use a component placeholder",
            reference.tag().unwrap_or("latest"),
            reference.name()
        )),
    }
}

/// Every component's workload must be a Deployment of the manifests: the rollout is
/// watched by that name, so a mismatch must stop the deploy before anything is applied.
fn check_workloads(objects: &[Rendered], input: &RenderInput, problems: &mut Vec<RenderProblem>) {
    let deployments: Vec<&str> = objects
        .iter()
        .filter(|o| o.kind == "Deployment")
        .map(|o| o.name.as_str())
        .collect();
    for (component, image) in &input.images {
        if !deployments.contains(&image.workload.as_str()) {
            problems.push(RenderProblem {
                source: "manifests".to_owned(),
                object: Some(format!("Deployment/{}", image.workload)),
                message: format!(
                    "component `{component}` deploys as Deployment `{}`, which is not in the manifests (they have: {}); set `components.{component}.workload` to its Deployment's name",
                    image.workload,
                    if deployments.is_empty() { "no Deployment".to_owned() } else { deployments.join(", ") }
                ),
            });
        }
    }
}

/// Puts each component's replica count into the HPA targeting its Deployment (raising
/// `maxReplicas` to at least that), or into the Deployment when no HPA owns it.
fn apply_replicas(
    objects: &mut [Rendered],
    input: &RenderInput,
    problems: &mut Vec<RenderProblem>,
) {
    for (component, count) in &input.replicas {
        let Some(image) = input.images.get(component) else {
            problems.push(RenderProblem {
                source: "environment".to_owned(),
                object: None,
                message: format!("`replicas` names `{component}`, which is not a component"),
            });
            continue;
        };
        let workload = image.workload.as_str();
        let count = i64::from(*count);
        let hpa = objects.iter_mut().find(|o| {
            o.kind == "HorizontalPodAutoscaler"
                && o.object
                    .pointer("/spec/scaleTargetRef/kind")
                    .and_then(Value::as_str)
                    == Some("Deployment")
                && o.object
                    .pointer("/spec/scaleTargetRef/name")
                    .and_then(Value::as_str)
                    == Some(workload)
        });
        if let Some(hpa) = hpa {
            let max = hpa
                .object
                .pointer("/spec/maxReplicas")
                .and_then(Value::as_i64)
                .unwrap_or(count);
            set(&mut hpa.object, &["spec", "minReplicas"], json!(count));
            set(
                &mut hpa.object,
                &["spec", "maxReplicas"],
                json!(max.max(count)),
            );
            continue;
        }
        match objects.iter_mut().find(|o| o.kind == "Deployment" && o.name == workload) {
            Some(deployment) => set(&mut deployment.object, &["spec", "replicas"], json!(count)),
            None => problems.push(RenderProblem {
                source: "manifests".to_owned(),
                object: Some(format!("Deployment/{workload}")),
                message: format!("`replicas.{component}` is set but no Deployment `{workload}` is in the manifests"),
            }),
        }
    }
}

/// Sets [`CONFIG_HASH`] on each pod template that reads a ConfigMap rendered here.
fn annotate_config_hashes(objects: &mut [Rendered]) {
    use sha2::{Digest as _, Sha256};
    let configmaps: BTreeMap<String, Value> = objects
        .iter()
        .filter(|o| o.kind == "ConfigMap")
        .map(|o| {
            let content = json!([o.object.get("data"), o.object.get("binaryData")]);
            (o.name.clone(), content)
        })
        .collect();
    for object in objects.iter_mut() {
        for template in pod_template_paths(&object.kind) {
            let Some(pod) = object
                .object
                .pointer(&pointer(&[template, &["spec"]].concat()))
            else {
                continue;
            };
            let mut names = std::collections::BTreeSet::new();
            collect_configmap_names(pod, &mut names);
            let read: Vec<(&String, &Value)> = names
                .iter()
                .filter_map(|n| configmaps.get_key_value(n))
                .collect();
            if read.is_empty() {
                continue;
            }
            // serde_json maps are ordered, so the same data always hashes the same.
            let digest = Sha256::digest(serde_json::to_vec(&read).expect("JSON serializes"));
            let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
            set(
                &mut object.object,
                &[template, &["metadata", "annotations", CONFIG_HASH]].concat(),
                json!(hex),
            );
        }
    }
}

/// ConfigMap names a pod spec reads: `envFrom`, `env[].valueFrom`, volumes (also projected).
fn collect_configmap_names(value: &Value, names: &mut std::collections::BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if matches!(
                    key.as_str(),
                    "configMapRef" | "configMapKeyRef" | "configMap"
                ) && let Some(name) = inner.get("name").and_then(Value::as_str)
                {
                    names.insert(name.to_owned());
                }
                collect_configmap_names(inner, names);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_configmap_names(i, names)),
        _ => {}
    }
}

fn check_duplicates(objects: &[Rendered], problems: &mut Vec<RenderProblem>) {
    let mut seen = BTreeMap::new();
    for object in objects {
        let key = (object.kind.clone(), object.name.clone());
        if let Some(first) = seen.insert(key, object.source.clone()) {
            problems.push(RenderProblem {
                source: object.source.clone(),
                object: Some(object.display_name()),
                message: format!("defined twice (also in {first})"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn input() -> RenderInput {
        let pinned = Reference::parse(&format!("ghcr.io/jisu/platform@{DIGEST}")).unwrap();
        RenderInput {
            namespace: "jisu-staging".into(),
            version: "a".repeat(40),
            part_of: "fallback".into(),
            images: BTreeMap::from([(
                "backend".to_owned(),
                ComponentImage {
                    placeholder: "ghcr.io/jisu/platform:backend".into(),
                    pinned,
                    workload: "backend".into(),
                },
            )]),
            replicas: BTreeMap::new(),
            urls: ingress::Urls {
                public: "https://staging.shop.example".into(),
                preview: None,
            },
        }
    }

    /// An input without components, for manifests that have no workload.
    fn bare() -> RenderInput {
        RenderInput {
            images: BTreeMap::new(),
            ..input()
        }
    }

    fn file(text: &str) -> Vec<ManifestFile> {
        vec![ManifestFile {
            source: "k8s/app/backend.yaml".into(),
            text: text.into(),
        }]
    }

    const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: backend
  labels: {app.kubernetes.io/part-of: jisu}
spec:
  selector: {matchLabels: {app: backend}}
  template:
    metadata: {labels: {app: backend}}
    spec:
      initContainers: [{name: migrate, image: "ghcr.io/jisu/platform:backend"}]
      containers: [{name: backend, image: "ghcr.io/jisu/platform:backend"}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: backend}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: backend}
  minReplicas: 3
  maxReplicas: 8
---
apiVersion: v1
kind: ConfigMap
metadata: {name: backend-config}
"#;

    #[test]
    fn sets_namespace_labels_digests_and_orders_by_kind() {
        let objects = render(&file(DEPLOYMENT), &input()).unwrap();
        let kinds: Vec<&str> = objects.iter().map(|o| o.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["ConfigMap", "Deployment", "HorizontalPodAutoscaler"]
        );
        let deployment = &objects[1].object;
        assert_eq!(deployment["metadata"]["namespace"], "jisu-staging");
        let labels = &deployment["metadata"]["labels"];
        assert_eq!(labels[MANAGED_BY], "jisu-deploy");
        assert_eq!(
            labels[PART_OF], "jisu",
            "the manifest's own part-of is kept"
        );
        assert_eq!(labels[VERSION], "a".repeat(40));
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        assert_eq!(pod_labels[VERSION], "a".repeat(40));
        assert_eq!(pod_labels["app"], "backend");
        let pinned = format!("ghcr.io/jisu/platform@{DIGEST}");
        assert_eq!(
            deployment["spec"]["template"]["spec"]["containers"][0]["image"],
            json!(pinned)
        );
        assert_eq!(
            deployment["spec"]["template"]["spec"]["initContainers"][0]["image"],
            json!(pinned)
        );
        assert!(
            deployment["spec"]["selector"]["matchLabels"]
                .get(VERSION)
                .is_none(),
            "versions never enter a selector"
        );
        assert_eq!(objects[0].object["metadata"]["labels"][PART_OF], "fallback");
    }

    #[test]
    fn a_config_change_changes_the_pod_templates_config_hash() {
        let with_env = DEPLOYMENT.replace(
            "containers: [{name: backend, image: \"ghcr.io/jisu/platform:backend\"}]",
            "containers: [{name: backend, image: \"ghcr.io/jisu/platform:backend\", envFrom: [{configMapRef: {name: backend-config}}]}]",
        );
        let hash = |text: &str| {
            let objects = render(&file(text), &input()).unwrap();
            objects[1].object["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH].clone()
        };
        let first = hash(&format!("{with_env}data: {{LOG_LEVEL: INFO}}\n"));
        assert!(first.is_string(), "{first}");
        assert_eq!(
            first,
            hash(&format!("{with_env}data: {{LOG_LEVEL: INFO}}\n"))
        );
        assert_ne!(
            first,
            hash(&format!("{with_env}data: {{LOG_LEVEL: DEBUG}}\n"))
        );
        // A template that reads no rendered ConfigMap gets no annotation.
        assert!(hash(DEPLOYMENT).is_null());
    }

    #[test]
    fn replicas_go_to_the_hpa_minimum_and_raise_its_maximum() {
        let mut input = input();
        input.replicas.insert("backend".into(), 10);
        let objects = render(&file(DEPLOYMENT), &input).unwrap();
        let hpa = &objects[2].object;
        assert_eq!(hpa["spec"]["minReplicas"], 10);
        assert_eq!(hpa["spec"]["maxReplicas"], 10);
        assert!(objects[1].object["spec"].get("replicas").is_none());
    }

    #[test]
    fn replicas_go_to_the_deployment_without_an_hpa() {
        let mut input = input();
        input.replicas.insert("backend".into(), 2);
        let text = DEPLOYMENT.split("---").next().unwrap();
        let objects = render(&file(text), &input).unwrap();
        assert_eq!(objects[0].object["spec"]["replicas"], 2);
    }

    #[test]
    fn a_mutable_tag_is_refused_with_the_container_named() {
        let text = DEPLOYMENT.replace(
            "containers: [{name: backend, image: \"ghcr.io/jisu/platform:backend\"}]",
            "containers: [{name: sidecar, image: \"ghcr.io/jisu/platform:latest\"}]",
        );
        let problems = render(&file(&text), &input()).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        let message = problems[0].to_string();
        assert!(message.contains("Deployment/backend"), "{message}");
        assert!(message.contains("sidecar"), "{message}");
        assert!(message.contains("mutable tag `latest`"), "{message}");
    }

    #[test]
    fn an_unknown_placeholder_survives_and_is_refused() {
        let text = DEPLOYMENT.replace("platform:backend\"}]\n---", "platform:frontend\"}]\n---");
        let problems = render(&file(&text), &input()).unwrap_err();
        assert!(
            problems[0]
                .message
                .contains("ghcr.io/jisu/platform:frontend"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_digest_pinned_third_party_image_is_kept() {
        let text = DEPLOYMENT.replace(
            "image: \"ghcr.io/jisu/platform:backend\"}]\n---",
            &format!("image: \"docker.io/library/nginx:1.27@{DIGEST}\"}}]\n---"),
        );
        let objects = render(&file(&text), &input()).unwrap();
        assert_eq!(
            objects[1].object["spec"]["template"]["spec"]["containers"][0]["image"],
            json!(format!("docker.io/library/nginx:1.27@{DIGEST}"))
        );
    }

    #[test]
    fn malformed_documents_are_reported_with_the_file() {
        for (text, expected) in [
            (
                "kind: Deployment\nmetadata: {name: x}\n",
                "lacks `apiVersion`",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",
                "`metadata.name` is missing",
            ),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [unclosed\n",
                "not valid YAML",
            ),
            ("- a\n- b\n", "not a mapping"),
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: other}\n",
                "differs from the environment's namespace",
            ),
            ("# only a comment\n", "no Kubernetes objects"),
        ] {
            let problems = render(&file(text), &bare()).unwrap_err();
            let message = problems[0].to_string();
            assert!(message.starts_with("k8s/app/backend.yaml"), "{message}");
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn cluster_scoped_objects_get_no_namespace() {
        let objects = render(
            &file("apiVersion: v1\nkind: Namespace\nmetadata: {name: jisu-staging}\n"),
            &bare(),
        )
        .unwrap();
        assert_eq!(objects[0].namespace, None);
        assert!(objects[0].object["metadata"].get("namespace").is_none());
    }

    #[test]
    fn the_same_object_twice_is_refused() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n";
        let problems = render(&file(text), &bare()).unwrap_err();
        assert!(problems[0].message.contains("defined twice"));
    }

    #[test]
    fn a_component_whose_workload_is_not_a_deployment_is_refused() {
        let mut input = input();
        input.images.get_mut("backend").unwrap().workload = "api".into();
        let problems = render(&file(DEPLOYMENT), &input).unwrap_err();
        let message = problems[0].to_string();
        assert!(message.contains("Deployment `api`"), "{message}");
        assert!(message.contains("they have: backend"), "{message}");
        assert!(message.contains("components.backend.workload"), "{message}");
    }

    #[test]
    fn ingress_hosts_come_from_the_environment_and_a_preview_needs_a_preview_url() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/k8s/app/ingress.yaml"))
                .unwrap();
        let files = vec![ManifestFile {
            source: "k8s/app/ingress.yaml".into(),
            text,
        }];
        let hosts = |objects: &[Rendered]| -> Vec<(String, String, String)> {
            objects
                .iter()
                .map(|o| {
                    let host = o.object["spec"]["rules"][0]["host"].as_str().unwrap();
                    let tls = o.object["spec"]["tls"][0]["hosts"][0].as_str().unwrap();
                    (o.name.clone(), host.to_owned(), tls.to_owned())
                })
                .collect()
        };
        let staging = render(&files, &bare()).unwrap();
        assert_eq!(
            hosts(&staging),
            [(
                "jisu".into(),
                "staging.shop.example".into(),
                "staging.shop.example".into()
            )]
        );
        assert_eq!(staging[0].namespace.as_deref(), Some("jisu-staging"));

        let mut production = bare();
        production.urls = ingress::Urls {
            public: "https://shop.example".into(),
            preview: Some("https://preview.shop.example".into()),
        };
        assert_eq!(
            hosts(&render(&files, &production).unwrap()),
            [
                ("jisu".into(), "shop.example".into(), "shop.example".into()),
                (
                    "jisu-preview".into(),
                    "preview.shop.example".into(),
                    "preview.shop.example".into()
                ),
            ]
        );

        production.urls.public = "http://192.0.2.7:8080".into();
        let problems = render(&files, &production).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].object.as_deref(), Some("Ingress/jisu"));
        assert!(
            problems[0].message.contains("IP address"),
            "{}",
            problems[0]
        );
    }
}
