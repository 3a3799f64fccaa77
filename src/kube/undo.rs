//! Rolling rollback: every Deployment named goes back to its previous revision, as
//! `kubectl rollout undo` does. The revisions are the Deployment's ReplicaSets (owned by it
//! and selected by its selector), numbered by their `deployment.kubernetes.io/revision`
//! annotation; the one just before the current revision gives its pod template back, with
//! the controller's `pod-template-hash` label taken off.
//!
//! The template goes back with an update guarded by the Deployment's `resourceVersion`.
//! An update makes its writer (`jisu-deploy`, operation `Update`) the owner of every field
//! it changed, and server-side apply counts that as another manager: the next `deploy`
//! would conflict with it on every image. So a second write hands the template's fields
//! back to `jisu-deploy`'s apply entry, as if the previous revision had been applied.
//!
//! [`choose`] and [`hand_back`] are pure; [`prepare`] and [`undo`] do the I/O.

use std::collections::BTreeMap;

use anyhow::Context as _;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Map, Value};

use super::render::MANAGER;
use super::retry::retrying;
use crate::error::{InputError, InputProblem};
use crate::output::escape;

/// The annotation numbering a Deployment's revisions (on it and on its ReplicaSets).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The label the Deployment controller adds to each ReplicaSet's pod template.
const HASH_LABEL: &str = "pod-template-hash";
/// Attempts at handing the fields back while the controller keeps writing status.
const HAND_BACK_ATTEMPTS: u32 = 10;

/// What rolling one Deployment back does.
#[derive(Debug, Clone, PartialEq)]
pub struct Undo {
    /// The Deployment.
    pub deployment: String,
    /// Its current revision.
    pub from: u64,
    /// The revision it goes back to.
    pub to: u64,
    /// That revision's pod template, without `pod-template-hash`.
    pub template: Value,
}

/// Why a Deployment cannot be rolled back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRollback {
    /// No ReplicaSet of it has a revision below the current one.
    #[error("Deployment {deployment} has no earlier revision to roll back to ({seen})")]
    NoEarlierRevision {
        /// The Deployment.
        deployment: String,
        /// The revisions found, as text.
        seen: String,
    },
    /// The Deployment does not exist.
    #[error("Deployment {0} does not exist; deploy the environment before rolling it back")]
    Missing(String),
}

/// Picks the revision `deployment` goes back to among `replica_sets` (any in its
/// namespace; those it does not own or select are ignored): the highest revision below the
/// current one. The current revision is the Deployment's own annotation, else the highest.
pub fn choose(deployment: &Value, replica_sets: &[Value]) -> Result<Undo, NoRollback> {
    let name = str_at(deployment, "/metadata/name").to_owned();
    let uid = str_at(deployment, "/metadata/uid");
    let selector = deployment.pointer("/spec/selector");
    let mut revisions: BTreeMap<u64, &Value> = BTreeMap::new();
    for rs in replica_sets {
        let owned = rs
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|refs| {
                refs.iter()
                    .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
            });
        let labels = rs.pointer("/spec/template/metadata/labels");
        if owned
            && selects(selector, labels)
            && let Some(revision) = revision(rs)
        {
            revisions.insert(revision, rs);
        }
    }
    let current = revision(deployment)
        .or_else(|| revisions.keys().next_back().copied())
        .unwrap_or(0);
    let seen = if revisions.is_empty() {
        "it has no revisions".to_owned()
    } else {
        format!(
            "current revision {current}, revisions found: {}",
            revisions
                .keys()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let Some((&to, rs)) = revisions.range(..current).next_back() else {
        return Err(NoRollback::NoEarlierRevision {
            deployment: name,
            seen,
        });
    };
    let mut template = rs.pointer("/spec/template").cloned().unwrap_or_default();
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
    }
    Ok(Undo {
        deployment: name,
        from: current,
        to,
        template,
    })
}

/// Moves the pod template's fields from `jisu-deploy`'s `Update` entry of
/// `managedFields` into its `Apply` entry (an `Update` entry left empty goes). Returns
/// whether anything moved.
pub fn hand_back(entries: &mut Vec<Value>) -> bool {
    let is = |e: &Value, operation: &str| {
        e.get("manager").and_then(Value::as_str) == Some(MANAGER)
            && e.get("operation").and_then(Value::as_str) == Some(operation)
            && e.get("subresource")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .is_empty()
    };
    let (Some(update), Some(apply)) = (
        entries.iter().position(|e| is(e, "Update")),
        entries.iter().position(|e| is(e, "Apply")),
    ) else {
        return false;
    };
    let Some(moved) = entries[update]
        .pointer_mut("/fieldsV1/f:spec")
        .and_then(Value::as_object_mut)
        .and_then(|spec| spec.remove("f:template"))
    else {
        return false;
    };
    let fields = &mut entries[update]["fieldsV1"];
    if fields["f:spec"].as_object().is_some_and(Map::is_empty) {
        fields.as_object_mut().map(|f| f.remove("f:spec"));
    }
    let mut apply = apply;
    if fields.as_object().is_none_or(Map::is_empty) {
        entries.remove(update);
        if update < apply {
            apply -= 1;
        }
    }
    let target = &mut entries[apply]["fieldsV1"];
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let spec = target
        .as_object_mut()
        .expect("made an object")
        .entry("f:spec")
        .or_insert_with(|| Value::Object(Map::new()));
    let mut moved_tree = Map::new();
    moved_tree.insert("f:template".to_owned(), moved);
    union(spec, Value::Object(moved_tree));
    true
}

/// Adds the field set `more` to `into` (both `FieldsV1` trees).
fn union(into: &mut Value, more: Value) {
    match (into, more) {
        (Value::Object(into), Value::Object(more)) => {
            for (key, value) in more {
                match into.get_mut(&key) {
                    Some(existing) => union(existing, value),
                    None => {
                        into.insert(key, value);
                    }
                }
            }
        }
        (into, more) => *into = more,
    }
}

/// Whether a label selector (`matchLabels`, `matchExpressions`) selects `labels`. A
/// missing selector selects nothing, as for a Deployment.
fn selects(selector: Option<&Value>, labels: Option<&Value>) -> bool {
    let Some(selector) = selector else {
        return false;
    };
    let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
    let labels_match = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|wanted| {
            wanted
                .iter()
                .all(|(key, value)| label(key) == value.as_str())
        });
    let expressions_match = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|expressions| {
            expressions.iter().all(|e| {
                let key = str_at(e, "/key");
                let values: Vec<&str> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|v| v.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match str_at(e, "/operator") {
                    "In" => label(key).is_some_and(|l| values.contains(&l)),
                    "NotIn" => label(key).is_none_or(|l| !values.contains(&l)),
                    "Exists" => label(key).is_some(),
                    "DoesNotExist" => label(key).is_none(),
                    _ => false,
                }
            })
        });
    labels_match && expressions_match
}

fn revision(object: &Value) -> Option<u64> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
}

fn str_at<'v>(value: &'v Value, pointer: &str) -> &'v str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn deployments(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"));
    Api::namespaced_with(client.clone(), namespace, &resource)
}

async fn read_deployment(api: &Api<DynamicObject>, name: &str) -> anyhow::Result<Option<Value>> {
    let found = retrying("get deployment", || api.get_opt(name))
        .await
        .with_context(|| format!("reading Deployment {name}"))?;
    Ok(found.map(serde_json::to_value).transpose()?)
}

/// Reads every Deployment in `names` and its ReplicaSets and chooses where each goes back
/// to, changing nothing. A Deployment without an earlier revision (or missing) is bad
/// input, all of them reported together.
pub async fn prepare(
    client: &kube::Client,
    namespace: &str,
    names: &[String],
) -> anyhow::Result<Vec<Undo>> {
    let api = deployments(client, namespace);
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", "ReplicaSet"));
    let replica_sets: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &resource);
    let params = ListParams::default();
    let listed = retrying("list replicasets", || replica_sets.list(&params))
        .await
        .with_context(|| format!("listing ReplicaSets in {namespace}"))?;
    let listed: Vec<Value> = listed
        .items
        .into_iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    let mut chosen = Vec::new();
    let mut problems = Vec::new();
    for name in names {
        let outcome = match read_deployment(&api, name).await? {
            Some(deployment) => choose(&deployment, &listed),
            None => Err(NoRollback::Missing(name.clone())),
        };
        match outcome {
            Ok(undo) => chosen.push(undo),
            Err(why) => problems.push(InputProblem::new(
                &format!("namespace {namespace}"),
                escape(&why.to_string()).into_owned(),
            )),
        }
    }
    if problems.is_empty() {
        Ok(chosen)
    } else {
        Err(InputError { problems }.into())
    }
}

/// Puts `undo`'s template back on its Deployment (guarded by the resourceVersion read
/// now: a Deployment changed since [`prepare`] is not overwritten), then hands the
/// template's fields back to `jisu-deploy`'s server-side apply entry.
pub async fn undo(client: &kube::Client, namespace: &str, undo: &Undo) -> anyhow::Result<()> {
    let api = deployments(client, namespace);
    let name = undo.deployment.as_str();
    let shown = escape(name);
    let mut deployment = read_deployment(&api, name)
        .await?
        .with_context(|| format!("Deployment {shown} disappeared during the rollback"))?;
    if revision(&deployment) != Some(undo.from) && revision(&deployment).is_some() {
        anyhow::bail!(
            "Deployment {shown} changed during the rollback (now at revision {}); nothing was written to it",
            revision(&deployment).unwrap_or_default()
        );
    }
    deployment["spec"]["template"] = undo.template.clone();
    let body: DynamicObject = serde_json::from_value(deployment)?;
    let params = PostParams {
        field_manager: Some(MANAGER.to_owned()),
        ..PostParams::default()
    };
    let written = retrying("replace deployment", || api.replace(name, &params, &body)).await;
    if let Err(error) = written {
        // A write whose answer was lost looks like a conflict on the retry.
        let landed = error.code() == Some(409)
            && read_deployment(&api, name)
                .await?
                .is_some_and(|now| now.pointer("/spec/template") == Some(&undo.template));
        if !landed {
            return Err(anyhow::Error::from(error).context(format!(
                "putting revision {} back on Deployment {shown}",
                undo.to
            )));
        }
    }
    for _ in 0..HAND_BACK_ATTEMPTS {
        let Some(mut now) = read_deployment(&api, name).await? else {
            anyhow::bail!("Deployment {shown} disappeared during the rollback");
        };
        let mut entries = now
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !hand_back(&mut entries) {
            return Ok(());
        }
        now["metadata"]["managedFields"] = Value::Array(entries);
        let body: DynamicObject = serde_json::from_value(now)?;
        match retrying("hand back fields", || api.replace(name, &params, &body)).await {
            Ok(_) => return Ok(()),
            // The controller wrote status in between: read again.
            Err(error) if error.code() == Some(409) => continue,
            Err(error) => {
                return Err(anyhow::Error::from(error).context(format!(
                    "handing the template fields of Deployment {shown} back to server-side apply"
                )));
            }
        }
    }
    anyhow::bail!(
        "Deployment {shown} kept changing while its template fields were handed back to server-side apply; the next deploy may need --force-conflicts"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(revision: Option<&str>) -> Value {
        let mut d = json!({
            "metadata": {"name": "backend", "uid": "d-1", "annotations": {}},
            "spec": {"selector": {"matchLabels": {"app": "backend"}}}
        });
        if let Some(r) = revision {
            d["metadata"]["annotations"][REVISION] = json!(r);
        }
        d
    }

    fn rs(revision: &str, owner: &str, app: &str, image: &str) -> Value {
        json!({
            "metadata": {
                "name": format!("backend-{revision}"),
                "annotations": {REVISION: revision},
                "ownerReferences": [{"uid": owner, "kind": "Deployment"}]
            },
            "spec": {"template": {
                "metadata": {"labels": {"app": app, HASH_LABEL: format!("h{revision}")}},
                "spec": {"containers": [{"name": "backend", "image": image}]}
            }}
        })
    }

    #[test]
    fn the_revision_just_before_the_current_one_is_chosen_without_its_hash_label() {
        let sets = [
            rs("1", "d-1", "backend", "v1"),
            rs("3", "d-1", "backend", "v3"),
            rs("2", "d-1", "backend", "v2"),
            // Newer, but not this Deployment's, or not selected by it.
            rs("5", "other", "backend", "x"),
            rs("4", "d-1", "frontend", "y"),
        ];
        let undo = choose(&deployment(Some("3")), &sets).unwrap();
        assert_eq!((undo.from, undo.to), (3, 2));
        assert_eq!(
            undo.template,
            json!({"metadata": {"labels": {"app": "backend"}},
                   "spec": {"containers": [{"name": "backend", "image": "v2"}]}})
        );
        // After a rollback the old ReplicaSet is the newest revision: undo goes back again.
        let undo = choose(
            &deployment(Some("4")),
            &[
                rs("3", "d-1", "backend", "v3"),
                rs("4", "d-1", "backend", "v2"),
            ],
        )
        .unwrap();
        assert_eq!((undo.from, undo.to), (4, 3));
        // Without the Deployment's annotation the highest revision is the current one.
        let undo = choose(&deployment(None), &sets[..3]).unwrap();
        assert_eq!((undo.from, undo.to), (3, 2));
    }

    #[test]
    fn a_deployment_with_one_revision_has_nothing_to_go_back_to() {
        let error = choose(&deployment(Some("1")), &[rs("1", "d-1", "backend", "v1")]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Deployment backend has no earlier revision to roll back to (current revision 1, revisions found: 1)"
        );
        let error =
            choose(&deployment(Some("1")), &[rs("1", "other", "backend", "v1")]).unwrap_err();
        assert!(error.to_string().contains("it has no revisions"), "{error}");
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels = json!({"app": "web", "tier": "front"});
        let sel = |s: Value| selects(Some(&s), Some(&labels));
        assert!(sel(json!({"matchLabels": {"app": "web"}})));
        assert!(!sel(json!({"matchLabels": {"app": "api"}})));
        assert!(sel(
            json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]})
        ));
        assert!(!sel(
            json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]})
        ));
        assert!(sel(
            json!({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]})
        ));
        assert!(!sel(
            json!({"matchExpressions": [{"key": "zone", "operator": "Exists"}]})
        ));
        assert!(!selects(None, Some(&labels)));
    }

    #[test]
    fn the_template_fields_move_from_the_update_entry_to_the_apply_entry() {
        let mut entries = vec![
            json!({"manager": MANAGER, "operation": "Apply", "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:replicas": {}, "f:template": {"f:metadata": {"f:labels": {"f:app": {}}}}}
            }}),
            json!({"manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {}}}),
            json!({"manager": MANAGER, "operation": "Update", "fieldsV1": {
                "f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"backend\"}": {"f:image": {}}}}}}
            }}),
        ];
        assert!(hand_back(&mut entries));
        assert_eq!(
            entries.len(),
            2,
            "the emptied Update entry goes: {entries:?}"
        );
        assert_eq!(
            entries[0]["fieldsV1"]["f:spec"],
            json!({"f:replicas": {}, "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"backend\"}": {"f:image": {}}}}
            }})
        );
        assert!(!hand_back(&mut entries), "nothing left to move");
    }

    #[test]
    fn an_update_entry_keeps_what_is_not_the_template() {
        let mut entries = vec![
            json!({"manager": MANAGER, "operation": "Update", "fieldsV1": {
                "f:metadata": {"f:annotations": {"f:note": {}}},
                "f:spec": {"f:template": {"f:spec": {}}}
            }}),
            json!({"manager": MANAGER, "operation": "Apply", "fieldsV1": {}}),
        ];
        assert!(hand_back(&mut entries));
        assert_eq!(
            entries[0]["fieldsV1"],
            json!({"f:metadata": {"f:annotations": {"f:note": {}}}})
        );
        assert_eq!(
            entries[1]["fieldsV1"],
            json!({"f:spec": {"f:template": {"f:spec": {}}}})
        );
    }
}
