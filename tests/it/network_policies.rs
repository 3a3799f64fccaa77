//! The platform's NetworkPolicies, evaluated over its pods (nothing here enforces them):
//! the policies and the pod labels and ports come from the manifests in `k8s/`, as they
//! are applied to two environments, `jisu-staging` and the blue-green `jisu-prod`; the
//! pods the manifests do not make (the ingress controller, DNS, in-namespace databases,
//! a stranger) are written here. Each row of the table is one connection and whether it
//! must be allowed.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::Value;

use crate::support::netpol::{Cluster, Endpoint, Labels, Pod};
use crate::support::{repo_root, yaml_documents};

const ENVIRONMENTS: [&str; 2] = ["jisu-staging", "jisu-prod"];
/// Applied into each environment's namespace (no `metadata.namespace` in the files).
const PER_ENVIRONMENT: [&str; 6] = [
    "k8s/namespace/networkpolicy.yaml",
    "k8s/app/frontend.yaml",
    "k8s/app/backend.yaml",
    "k8s/app/networkpolicy.yaml",
    "k8s/exporters",
    "k8s/backup/cronjob.yaml",
];
/// Shared services, which name their namespaces.
const SHARED: [&str; 2] = ["k8s/monitoring", "k8s/logging"];

fn documents(path: &str) -> Vec<Value> {
    let full = repo_root().join(path);
    let files: Vec<_> = if full.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(&full)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        files
    } else {
        vec![full]
    };
    files
        .iter()
        .flat_map(|file| yaml_documents(&std::fs::read_to_string(file).unwrap()))
        .collect()
}

fn labels(value: &Value) -> Labels {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// The pod a workload object makes, if it is one.
fn pod_of(object: &Value, namespace: &str) -> Option<Pod> {
    let template = match object["kind"].as_str()? {
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => &object["spec"]["template"],
        "CronJob" => &object["spec"]["jobTemplate"]["spec"]["template"],
        _ => return None,
    };
    let mut ports = BTreeMap::new();
    for container in template["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for port in container["ports"].as_array().into_iter().flatten() {
            if let (Some(name), Some(number)) =
                (port["name"].as_str(), port["containerPort"].as_u64())
            {
                let protocol = port["protocol"].as_str().unwrap_or("TCP").to_owned();
                ports.insert(name.to_owned(), (u16::try_from(number).unwrap(), protocol));
            }
        }
    }
    Some(Pod {
        namespace: namespace.to_owned(),
        name: object["metadata"]["name"].as_str()?.to_owned(),
        labels: labels(&template["metadata"]["labels"]),
        ports,
    })
}

fn synthetic(namespace: &str, name: &str, app: &str, port: u16) -> Pod {
    Pod {
        namespace: namespace.into(),
        name: name.into(),
        labels: Labels::from([("app.kubernetes.io/name".to_owned(), app.to_owned())]),
        ports: BTreeMap::from([("main".to_owned(), (port, "TCP".to_owned()))]),
    }
}

/// The cluster with every policy, and every pod by `namespace/name` (production's app pods
/// once per color, as `backend-blue`, `backend-green`).
fn platform() -> (Cluster, BTreeMap<String, Pod>) {
    let mut cluster = Cluster::default();
    for ns in ENVIRONMENTS.iter().chain(&[
        "monitoring",
        "logging",
        "logging-agent",
        "ingress-nginx",
        "kube-system",
        "default",
    ]) {
        cluster.namespace(ns, &[]);
    }
    let mut pods = BTreeMap::new();
    let mut add = |pod: Pod| {
        pods.insert(format!("{}/{}", pod.namespace, pod.name), pod);
    };
    for env in ENVIRONMENTS {
        for path in PER_ENVIRONMENT {
            for object in documents(path) {
                assert!(object["metadata"].get("namespace").is_none(), "{path}");
                if object["kind"] == "NetworkPolicy" {
                    let mut object = object;
                    object["metadata"]["namespace"] = env.into();
                    cluster.policy(env, object);
                } else if let Some(pod) = pod_of(&object, env) {
                    let app = path.starts_with("k8s/app/");
                    if env == "jisu-prod" && app {
                        for color in ["blue", "green"] {
                            let mut colored = pod.clone();
                            colored.name = format!("{}-{color}", pod.name);
                            colored.labels.insert("color".into(), color.into());
                            add(colored);
                        }
                    } else {
                        add(pod);
                    }
                }
            }
        }
        add(synthetic(env, "postgresql", "postgresql", 5432));
        add(synthetic(env, "redis", "redis", 6379));
    }
    for path in SHARED {
        for object in documents(path) {
            let Some(ns) = object["metadata"]["namespace"].as_str().map(str::to_owned) else {
                continue;
            };
            if object["kind"] == "NetworkPolicy" {
                cluster.policy(&ns, object);
            } else if let Some(pod) = pod_of(&object, &ns) {
                add(pod);
            }
        }
    }
    add(synthetic(
        "ingress-nginx",
        "controller",
        "ingress-nginx",
        443,
    ));
    let mut dns = synthetic("kube-system", "coredns", "coredns", 53);
    dns.labels.insert("k8s-app".into(), "kube-dns".into());
    add(dns);
    add(synthetic("default", "stranger", "stranger", 8080));
    (cluster, pods)
}

const INTERNET: &str = "203.0.113.10";
const MANAGED_DATABASE: &str = "10.20.0.5";

#[test]
fn the_platform_allows_exactly_its_own_traffic() {
    let (cluster, pods) = platform();
    #[rustfmt::skip]
    let table: &[(&str, &str, u16, &str, bool)] = &[
        // from                              to                                 port   proto  allowed
        ("ingress-nginx/controller",         "jisu-prod/frontend-blue",         80,   "TCP", true),
        ("ingress-nginx/controller",         "jisu-prod/frontend-green",        80,   "TCP", true),
        ("ingress-nginx/controller",         "jisu-prod/backend-green",         8000, "TCP", true),
        ("ingress-nginx/controller",         "jisu-staging/backend",            8000, "TCP", true),
        ("ingress-nginx/controller",         "jisu-prod/backend-green",         9000, "TCP", false),
        ("ingress-nginx/controller",         "jisu-prod/postgresql",            5432, "TCP", false),
        (INTERNET,                           "jisu-prod/backend-blue",          8000, "TCP", false),
        (INTERNET,                           "jisu-prod/frontend-blue",         80,   "TCP", false),
        ("jisu-prod/frontend-blue",          "jisu-prod/backend-blue",          8000, "TCP", true),
        ("jisu-prod/frontend-green",         "jisu-prod/backend-blue",          8000, "TCP", true),
        ("jisu-prod/backend-blue",           "jisu-prod/frontend-blue",         80,   "TCP", false),
        ("jisu-staging/frontend",            "jisu-prod/backend-blue",          8000, "TCP", false),
        ("jisu-prod/frontend-blue",          INTERNET,                          443,  "TCP", false),
        ("jisu-prod/backend-green",          "jisu-prod/postgresql",            5432, "TCP", true),
        ("jisu-prod/backend-green",          "jisu-prod/redis",                 6379, "TCP", true),
        ("jisu-prod/backend-green",          MANAGED_DATABASE,                  5432, "TCP", true),
        ("jisu-prod/backend-green",          INTERNET,                          443,  "TCP", false),
        ("jisu-prod/backend-green",          "jisu-prod/postgresql",            22,   "TCP", false),
        ("jisu-staging/backend",             "jisu-prod/postgresql",            5432, "TCP", false),
        ("jisu-prod/frontend-blue",          "jisu-prod/postgresql",            5432, "TCP", false),
        ("jisu-prod/frontend-blue",          "jisu-prod/redis",                 6379, "TCP", false),
        ("monitoring/prometheus",            "jisu-prod/backend-blue",          8000, "TCP", true),
        ("monitoring/prometheus",            "jisu-staging/backend",            8000, "TCP", true),
        ("monitoring/prometheus",            "jisu-prod/postgres-exporter",     9187, "TCP", true),
        ("monitoring/prometheus",            "jisu-prod/redis-exporter",        9121, "TCP", true),
        ("monitoring/prometheus",            "jisu-prod/frontend-blue",         80,   "TCP", false),
        ("monitoring/prometheus",            "jisu-prod/postgresql",            5432, "TCP", false),
        ("monitoring/grafana",               "jisu-prod/backend-blue",          8000, "TCP", false),
        ("jisu-prod/postgres-exporter",      "jisu-prod/postgresql",            5432, "TCP", true),
        ("jisu-prod/postgres-exporter",      "jisu-prod/redis",                 6379, "TCP", false),
        ("jisu-prod/redis-exporter",         "jisu-prod/redis",                 6379, "TCP", true),
        ("jisu-prod/redis-exporter",         "jisu-prod/postgresql",            5432, "TCP", false),
        ("jisu-prod/jisu-backup",            "jisu-prod/postgresql",            5432, "TCP", true),
        ("jisu-prod/jisu-backup",            "jisu-prod/redis",                 6379, "TCP", true),
        ("jisu-prod/jisu-backup",            INTERNET,                          443,  "TCP", true),
        ("jisu-prod/jisu-backup",            "jisu-prod/backend-blue",          8000, "TCP", false),
        ("jisu-prod/backend-blue",           "kube-system/coredns",             53,   "UDP", true),
        ("jisu-prod/frontend-green",         "kube-system/coredns",             53,   "TCP", true),
        ("jisu-prod/jisu-backup",            "kube-system/coredns",             53,   "UDP", true),
        ("jisu-prod/backend-blue",           "kube-system/coredns",             8080, "TCP", false),
        ("default/stranger",                 "jisu-prod/backend-blue",          8000, "TCP", false),
        ("default/stranger",                 "jisu-prod/postgresql",            5432, "TCP", false),
        ("default/stranger",                 "jisu-staging/redis",              6379, "TCP", false),
        ("default/stranger",                 "jisu-prod/postgres-exporter",     9187, "TCP", false),
        // The logging stack's own policies (k8s/logging/networkpolicy.yaml).
        ("logging-agent/filebeat",           "logging/logstash",                5044, "TCP", true),
        ("default/stranger",                 "logging/logstash",                5044, "TCP", false),
        ("logging/kibana",                   "logging/elasticsearch",           9200, "TCP", true),
        ("default/stranger",                 "logging/elasticsearch",           9200, "TCP", false),
    ];
    let endpoint = |name: &str| -> Endpoint<'_> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Endpoint::External(ip);
        }
        Endpoint::Pod(pods.get(name).unwrap_or_else(|| {
            panic!(
                "no pod {name}; the manifests give: {:?}",
                pods.keys().collect::<Vec<_>>()
            )
        }))
    };
    let wrong: Vec<String> = table
        .iter()
        .filter(|(from, to, port, protocol, allowed)| {
            cluster.allows(endpoint(from), endpoint(to), *port, protocol) != *allowed
        })
        .map(|(from, to, port, protocol, allowed)| {
            let verdict = if *allowed {
                "denied, must be allowed"
            } else {
                "allowed, must be denied"
            };
            format!("{from} -> {to}:{port}/{protocol}: {verdict}")
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} connections wrong:\n{}",
        wrong.len(),
        table.len(),
        wrong.join("\n")
    );
}

/// A policy set that forgot the default deny lets a stranger in: the table above would
/// catch a regression of the baseline, not only of the allow rules.
#[test]
fn without_the_default_deny_a_stranger_reaches_the_database() {
    let (_, pods) = platform();
    let mut cluster = Cluster::default();
    for ns in ["jisu-prod", "default"] {
        cluster.namespace(ns, &[]);
    }
    for object in documents("k8s/app/networkpolicy.yaml") {
        let mut object = object;
        object["metadata"]["namespace"] = "jisu-prod".into();
        cluster.policy("jisu-prod", object);
    }
    let stranger = Endpoint::Pod(&pods["default/stranger"]);
    assert!(cluster.allows(
        stranger,
        Endpoint::Pod(&pods["jisu-prod/postgresql"]),
        5432,
        "TCP"
    ));
    assert!(!cluster.allows(
        stranger,
        Endpoint::Pod(&pods["jisu-prod/backend-blue"]),
        8000,
        "TCP"
    ));
}
