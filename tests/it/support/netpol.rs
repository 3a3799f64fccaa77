//! Kubernetes NetworkPolicy semantics (networking.k8s.io/v1), evaluated over a set of pods,
//! since nothing here enforces policies. What it follows, from the API reference:
//!
//! - A pod is isolated for a direction when a policy of its namespace selects it and lists
//!   that direction in `policyTypes` (default: Ingress, plus Egress when `egress` is set).
//!   An isolated pod allows only what the union of those policies' rules allows.
//! - A connection needs both ends: the source's egress and the destination's ingress.
//! - A peer with only `podSelector` means pods of the policy's own namespace; only
//!   `namespaceSelector` means every pod of the matching namespaces; both means pods
//!   matching the first in namespaces matching the second. An empty rule peer list (`to`
//!   or `from` missing) matches every source or destination, outside the cluster too.
//! - `ipBlock` matches addresses outside the cluster only (whether it matches pod IPs is
//!   up to the CNI, so the platform's policies must not rely on it).
//! - `ports` missing means every port; a port is a number (with an optional `endPort`) or
//!   the name of a container port of the destination pod; the protocol defaults to TCP.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::Value;

/// Labels of a pod or namespace.
pub type Labels = BTreeMap<String, String>;

/// A pod, with what policies look at.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Its namespace.
    pub namespace: String,
    /// Shown in failures.
    pub name: String,
    /// Pod labels.
    pub labels: Labels,
    /// Named container ports: name -> (port, protocol).
    pub ports: BTreeMap<String, (u16, String)>,
}

/// One end of a connection.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint<'a> {
    /// A pod in the cluster.
    Pod(&'a Pod),
    /// An address outside the cluster.
    External(IpAddr),
}

/// The cluster: namespaces with their labels, and the policies of each namespace.
#[derive(Debug, Default)]
pub struct Cluster {
    namespaces: BTreeMap<String, Labels>,
    policies: Vec<(String, Value)>,
}

impl Cluster {
    /// Adds a namespace; it gets the `kubernetes.io/metadata.name` label as the API server
    /// sets it.
    pub fn namespace(&mut self, name: &str, labels: &[(&str, &str)]) {
        let mut all: Labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        all.insert("kubernetes.io/metadata.name".into(), name.into());
        self.namespaces.insert(name.into(), all);
    }

    /// Adds a NetworkPolicy object in `namespace`.
    pub fn policy(&mut self, namespace: &str, object: Value) {
        assert_eq!(object["kind"], "NetworkPolicy", "{object}");
        assert!(
            self.namespaces.contains_key(namespace),
            "no namespace {namespace}"
        );
        self.policies.push((namespace.into(), object));
    }

    /// Whether a TCP/UDP connection from `from` to `to` on `port` is allowed.
    pub fn allows(&self, from: Endpoint<'_>, to: Endpoint<'_>, port: u16, protocol: &str) -> bool {
        let destination = match to {
            Endpoint::Pod(pod) => Some(pod),
            Endpoint::External(_) => None,
        };
        let egress = match from {
            Endpoint::Pod(pod) => self.direction(pod, "Egress", to, destination, port, protocol),
            Endpoint::External(_) => true,
        };
        let ingress = match destination {
            Some(pod) => self.direction(pod, "Ingress", from, destination, port, protocol),
            None => true,
        };
        egress && ingress
    }

    /// For `pod` in `direction`: not isolated, or some rule admits `peer` on the port of
    /// `destination` (a named port is the destination pod's).
    fn direction(
        &self,
        pod: &Pod,
        direction: &str,
        peer: Endpoint<'_>,
        destination: Option<&Pod>,
        port: u16,
        protocol: &str,
    ) -> bool {
        let selecting: Vec<&Value> = self
            .policies
            .iter()
            .filter(|(ns, policy)| {
                *ns == pod.namespace
                    && selects(&policy["spec"]["podSelector"], &pod.labels)
                    && types(policy).contains(&direction)
            })
            .map(|(_, policy)| policy)
            .collect();
        if selecting.is_empty() {
            return true;
        }
        let (rules_key, peers_key) = match direction {
            "Ingress" => ("ingress", "from"),
            _ => ("egress", "to"),
        };
        selecting.iter().any(|policy| {
            let namespace = policy["metadata"]["namespace"]
                .as_str()
                .unwrap_or(&pod.namespace);
            rules(policy, rules_key).any(|rule| {
                let peers_ok = match rule.get(peers_key).and_then(Value::as_array) {
                    None => true,
                    Some(peers) if peers.is_empty() => true,
                    Some(peers) => peers.iter().any(|p| self.peer_matches(p, namespace, peer)),
                };
                peers_ok && ports_match(rule, destination, port, protocol)
            })
        })
    }

    fn peer_matches(&self, peer: &Value, policy_namespace: &str, endpoint: Endpoint<'_>) -> bool {
        if let Some(block) = peer.get("ipBlock") {
            return match endpoint {
                Endpoint::External(ip) => ip_block_matches(block, ip),
                Endpoint::Pod(_) => false,
            };
        }
        let Endpoint::Pod(pod) = endpoint else {
            return false;
        };
        let pods = peer.get("podSelector");
        let namespaces = peer.get("namespaceSelector");
        let namespace_ok = match namespaces {
            Some(selector) => self
                .namespaces
                .get(&pod.namespace)
                .is_some_and(|labels| selects(selector, labels)),
            None => pod.namespace == policy_namespace,
        };
        let pod_ok = pods.is_none_or(|selector| selects(selector, &pod.labels));
        namespace_ok && pod_ok
    }
}

fn types(policy: &Value) -> Vec<&str> {
    match policy["spec"]["policyTypes"].as_array() {
        Some(list) => list.iter().filter_map(Value::as_str).collect(),
        None => {
            let mut out = vec!["Ingress"];
            if policy["spec"].get("egress").is_some() {
                out.push("Egress");
            }
            out
        }
    }
}

fn rules<'a>(policy: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    policy["spec"]
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// A label selector (`matchLabels` and `matchExpressions`); `{}` selects everything.
pub fn selects(selector: &Value, labels: &Labels) -> bool {
    let labels_ok = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    let expressions_ok = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or_default();
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let value = labels.get(key).map(String::as_str);
            match e["operator"].as_str() {
                Some("In") => value.is_some_and(|v| values.contains(&v)),
                Some("NotIn") => value.is_none_or(|v| !values.contains(&v)),
                Some("Exists") => value.is_some(),
                Some("DoesNotExist") => value.is_none(),
                other => panic!("unknown selector operator {other:?}"),
            }
        });
    labels_ok && expressions_ok
}

fn ports_match(rule: &Value, dest: Option<&Pod>, port: u16, protocol: &str) -> bool {
    let Some(ports) = rule.get("ports").and_then(Value::as_array) else {
        return true;
    };
    ports.is_empty()
        || ports.iter().any(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            if proto != protocol {
                return false;
            }
            match &p["port"] {
                Value::Null => true,
                Value::Number(n) => {
                    let start = n.as_u64().unwrap_or_default();
                    let end = p["endPort"].as_u64().unwrap_or(start);
                    (start..=end).contains(&u64::from(port))
                }
                Value::String(name) => dest
                    .and_then(|pod| pod.ports.get(name))
                    .is_some_and(|(number, proto)| *number == port && proto == protocol),
                other => panic!("bad port {other}"),
            }
        })
}

fn ip_block_matches(block: &Value, ip: IpAddr) -> bool {
    let within = |cidr: &str| {
        let (net, bits) = cidr.split_once('/').expect("CIDR with a prefix length");
        let bits: u32 = bits.parse().unwrap();
        match (net.parse::<IpAddr>().unwrap(), ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    };
    within(block["cidr"].as_str().unwrap_or_default())
        && !block["except"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .any(within)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Pod {
        Pod {
            namespace: namespace.into(),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ports: BTreeMap::from([("http".to_owned(), (8080, "TCP".to_owned()))]),
        }
    }

    /// The evaluator itself, on the examples of the Kubernetes documentation's semantics.
    #[test]
    fn semantics_of_selectors_peers_ports_and_blocks() {
        let mut cluster = Cluster::default();
        cluster.namespace("a", &[("team", "x")]);
        cluster.namespace("b", &[]);
        let server = pod("a", "server", &[("role", "db")]);
        let same_ns = pod("a", "client", &[("role", "client")]);
        let other_ns = pod("b", "client", &[("role", "client")]);
        // Nothing selects the server yet: open both ways.
        assert!(cluster.allows(Endpoint::Pod(&other_ns), Endpoint::Pod(&server), 1, "TCP"));

        cluster.policy(
            "a",
            json!({"kind": "NetworkPolicy", "metadata": {"name": "db", "namespace": "a"},
              "spec": {"podSelector": {"matchLabels": {"role": "db"}},
                "ingress": [{"from": [{"podSelector": {"matchExpressions":
                    [{"key": "role", "operator": "In", "values": ["client"]}]}}],
                  "ports": [{"port": "http"}, {"port": 9000, "endPort": 9005, "protocol": "UDP"}]}]}}),
        );
        let tcp =
            |from, port| cluster.allows(Endpoint::Pod(from), Endpoint::Pod(&server), port, "TCP");
        assert!(tcp(&same_ns, 8080), "named port, same namespace");
        assert!(!tcp(&same_ns, 8081), "another port");
        assert!(
            !tcp(&other_ns, 8080),
            "podSelector alone is the policy's namespace"
        );
        assert!(cluster.allows(Endpoint::Pod(&same_ns), Endpoint::Pod(&server), 9003, "UDP"));
        assert!(!cluster.allows(Endpoint::Pod(&same_ns), Endpoint::Pod(&server), 9003, "TCP"));
        let outside: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(!cluster.allows(
            Endpoint::External(outside),
            Endpoint::Pod(&server),
            8080,
            "TCP"
        ));
        // Egress is not isolated by an ingress-only policy.
        assert!(cluster.allows(
            Endpoint::Pod(&server),
            Endpoint::External(outside),
            443,
            "TCP"
        ));

        cluster.policy(
            "a",
            json!({"kind": "NetworkPolicy", "metadata": {"name": "out", "namespace": "a"},
              "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                "egress": [{"to": [{"ipBlock": {"cidr": "198.51.100.0/24", "except": ["198.51.100.128/25"]}},
                                   {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": "client"}}}]}]}}),
        );
        let inside: IpAddr = "198.51.100.200".parse().unwrap();
        assert!(cluster.allows(
            Endpoint::Pod(&server),
            Endpoint::External(outside),
            443,
            "TCP"
        ));
        assert!(!cluster.allows(
            Endpoint::Pod(&server),
            Endpoint::External(inside),
            443,
            "TCP"
        ));
        assert!(cluster.allows(Endpoint::Pod(&server), Endpoint::Pod(&other_ns), 1, "TCP"));
        assert!(!cluster.allows(Endpoint::Pod(&server), Endpoint::Pod(&server), 8080, "TCP"));
        assert!(!selects(
            &json!({"matchExpressions": [{"key": "role", "operator": "DoesNotExist"}]}),
            &server.labels
        ));
        assert!(selects(
            &json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}]}),
            &server.labels
        ));
    }
}
