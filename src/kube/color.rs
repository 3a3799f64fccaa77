//! Blue-green rendering: the rendered base objects of an environment turned into one
//! color's objects, by the contract in `k8s/README.md`. Pure, so every rule is unit-tested
//! on inline objects.
//!
//! Per base Deployment `<name>` the color gets `<name>-<color>`, with `color: <color>` in
//! its labels, its selector and its pod template. An HPA that scales a base Deployment is
//! cloned as `<hpa>-<color>` scaling the colored one; a PodDisruptionBudget that selects a
//! base Deployment's pods is cloned as `<pdb>-<color>` with the color in its selector (one
//! per color: a budget spanning both would count the idle color's pods as available). A
//! Service that selects a base Deployment's pods is *routed*: it keeps its name, its
//! selector gets the live color (traffic stays where it is while the idle color comes up),
//! and a `<service>-preview` Service selects the color being deployed, for checks before
//! any traffic moves. Everything else is applied as it is.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::render::{RenderProblem, Rendered};

/// Label (and selector key) that tells the colors apart.
pub const COLOR_LABEL: &str = "color";
/// Annotation on a previous color's Deployments: when it may be scaled down (RFC 3339).
pub const SCALE_DOWN_AFTER: &str = "jisu.dev/scale-down-after";
/// Suffix of the Service that selects the color being deployed.
pub const PREVIEW_SUFFIX: &str = "-preview";

/// One of the two colors of a blue-green environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    /// Blue.
    Blue,
    /// Green.
    Green,
}

impl Color {
    /// The other color.
    pub fn other(self) -> Color {
        match self {
            Color::Blue => Color::Green,
            Color::Green => Color::Blue,
        }
    }

    /// `blue` or `green`, as labels and names carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }

    /// The color a label value names.
    pub fn parse(text: &str) -> Option<Color> {
        match text {
            "blue" => Some(Color::Blue),
            "green" => Some(Color::Green),
            _ => None,
        }
    }

    /// `<name>-<color>`.
    pub fn name(self, base: &str) -> String {
        format!("{base}-{}", self.as_str())
    }
}

impl std::fmt::Display for Color {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What routes where in an environment, found from its base objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// Base Deployment names.
    pub workloads: Vec<String>,
    /// Services that send traffic to a base Deployment's pods (switched by color).
    pub routed: Vec<String>,
}

/// One color's objects and the layout they follow.
#[derive(Debug, Clone)]
pub struct Colored {
    /// The objects to apply, in the order of the base objects (previews after their
    /// Service).
    pub objects: Vec<Rendered>,
    /// Base workloads and routed Services.
    pub layout: Layout,
}

/// The base objects as `color`'s, with routed Services kept on `live` (their selector
/// unchanged when nothing is live yet).
pub fn colorize(
    base: &[Rendered],
    color: Color,
    live: Option<Color>,
) -> Result<Colored, Vec<RenderProblem>> {
    let mut problems = Vec::new();
    let workloads: Vec<(&Rendered, Map<String, Value>)> = base
        .iter()
        .filter(|o| o.kind == "Deployment")
        .filter_map(|o| match pod_labels(o) {
            Some(labels) if !labels.is_empty() => Some((o, labels)),
            _ => {
                problems.push(problem(o, "a blue-green Deployment needs labels on its pod template (the colors are told apart by adding `color` to them)"));
                None
            }
        })
        .collect();
    for (object, _) in &workloads {
        if Color::parse(object.name.rsplit('-').next().unwrap_or_default()).is_some() {
            problems.push(problem(
                object,
                "a blue-green environment's base Deployment must not already end in -blue or -green; the tool adds the color",
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let selects_a_workload = |selector: &Map<String, Value>| {
        !selector.is_empty()
            && workloads.iter().any(|(_, labels)| {
                selector
                    .iter()
                    .filter(|(key, _)| key.as_str() != COLOR_LABEL)
                    .all(|(key, value)| labels.get(key) == Some(value))
            })
    };
    let workload_names: Vec<&str> = workloads.iter().map(|(o, _)| o.name.as_str()).collect();
    let mut layout = Layout {
        workloads: workload_names.iter().map(|n| (*n).to_owned()).collect(),
        routed: Vec::new(),
    };
    let mut objects = Vec::new();
    for object in base {
        match object.kind.as_str() {
            "Deployment" => objects.push(colored_deployment(object, color)),
            "HorizontalPodAutoscaler" => {
                let target = object
                    .object
                    .pointer("/spec/scaleTargetRef")
                    .filter(|t| t.get("kind").and_then(Value::as_str) == Some("Deployment"))
                    .and_then(|t| t.get("name"))
                    .and_then(Value::as_str);
                match target {
                    Some(target) if workload_names.contains(&target) => {
                        let mut hpa = renamed(object, color);
                        hpa.object["spec"]["scaleTargetRef"]["name"] =
                            Value::String(color.name(target));
                        objects.push(hpa);
                    }
                    _ => objects.push(object.clone()),
                }
            }
            "PodDisruptionBudget" => match match_labels(&object.object, "/spec/selector") {
                Some(selector) if selects_a_workload(&selector) => {
                    let mut pdb = renamed(object, color);
                    set_label(&mut pdb.object, "/spec/selector/matchLabels", color);
                    objects.push(pdb);
                }
                _ => objects.push(object.clone()),
            },
            "Service" => match object
                .object
                .pointer("/spec/selector")
                .and_then(Value::as_object)
            {
                Some(selector) if selects_a_workload(selector) => {
                    layout.routed.push(object.name.clone());
                    let mut routed = object.clone();
                    match live {
                        Some(live) => set_label(&mut routed.object, "/spec/selector", live),
                        None => remove_label(&mut routed.object, "/spec/selector"),
                    }
                    objects.push(routed);
                    objects.push(preview_service(object, color));
                }
                _ => objects.push(object.clone()),
            },
            _ => objects.push(object.clone()),
        }
    }
    Ok(Colored { objects, layout })
}

fn problem(object: &Rendered, message: &str) -> RenderProblem {
    RenderProblem {
        source: object.source.clone(),
        object: Some(object.display_name()),
        message: message.to_owned(),
    }
}

fn pod_labels(object: &Rendered) -> Option<Map<String, Value>> {
    object
        .object
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
}

fn match_labels(object: &Value, selector: &str) -> Option<Map<String, Value>> {
    object
        .pointer(&format!("{selector}/matchLabels"))
        .and_then(Value::as_object)
        .cloned()
}

/// `object` named `<name>-<color>` with the color label.
fn renamed(object: &Rendered, color: Color) -> Rendered {
    let mut out = object.clone();
    out.name = color.name(&object.name);
    out.object["metadata"]["name"] = Value::String(out.name.clone());
    set_label(&mut out.object, "/metadata/labels", color);
    out
}

fn colored_deployment(object: &Rendered, color: Color) -> Rendered {
    let mut out = renamed(object, color);
    set_label(&mut out.object, "/spec/selector/matchLabels", color);
    set_label(&mut out.object, "/spec/template/metadata/labels", color);
    out
}

/// The Service renamed `<name>-preview`, selecting `color`, only inside the cluster: its
/// cluster IP, node ports and load balancer are the base Service's own.
fn preview_service(object: &Rendered, color: Color) -> Rendered {
    let mut out = object.clone();
    out.name = format!("{}{PREVIEW_SUFFIX}", object.name);
    out.object["metadata"]["name"] = Value::String(out.name.clone());
    set_label(&mut out.object, "/spec/selector", color);
    if let Some(spec) = out.object.get_mut("spec").and_then(Value::as_object_mut) {
        for field in [
            "clusterIP",
            "clusterIPs",
            "loadBalancerIP",
            "loadBalancerSourceRanges",
            "externalIPs",
            "externalTrafficPolicy",
            "healthCheckNodePort",
            "allocateLoadBalancerNodePorts",
            "loadBalancerClass",
        ] {
            spec.remove(field);
        }
        spec.insert("type".to_owned(), Value::String("ClusterIP".to_owned()));
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                port.remove("nodePort");
            }
        }
    }
    out
}

/// Sets `color` under the map at `pointer`, creating the map when missing.
fn set_label(object: &mut Value, pointer: &str, color: Color) {
    let mut at = &mut *object;
    for key in pointer.trim_start_matches('/').split('/') {
        if !at.get(key).is_some_and(Value::is_object) {
            at[key] = Value::Object(Map::new());
        }
        at = &mut at[key];
    }
    at[COLOR_LABEL] = Value::String(color.as_str().to_owned());
}

fn remove_label(object: &mut Value, pointer: &str) {
    if let Some(map) = object.pointer_mut(pointer).and_then(Value::as_object_mut) {
        map.remove(COLOR_LABEL);
    }
}

/// A switch as recorded on a Service it moved: from, to, and which switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchMark {
    /// The color traffic left (`None`: the un-colored selector).
    pub from: Option<Color>,
    /// The color traffic went to.
    pub to: Option<Color>,
    /// Tells one switch from another.
    pub id: String,
}

impl SwitchMark {
    /// Reads `<from>-><to>@<id>` (`none` for no color).
    pub fn parse(text: &str) -> Option<SwitchMark> {
        let (colors, id) = text.split_once('@')?;
        let (from, to) = colors.split_once("->")?;
        let color = |c: &str| match c {
            "none" => Some(None),
            other => Color::parse(other).map(Some),
        };
        Some(SwitchMark {
            from: color(from)?,
            to: color(to)?,
            id: id.to_owned(),
        })
    }
}

impl std::fmt::Display for SwitchMark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = |c: Option<Color>| c.map_or("none", Color::as_str);
        write!(f, "{}->{}@{}", name(self.from), name(self.to), self.id)
    }
}

/// The switch mark of each routed Service that has one.
pub type SwitchMarks = BTreeMap<String, SwitchMark>;

/// A switch a killed run left halfway: the color the unmoved Services still select (where
/// traffic goes back to) and the Services it moved (all carrying its mark and selecting
/// its target). `None` when the disagreement is anything else (a hand edit, a stale mark).
pub fn interrupted_switch(
    colors: &ServiceColors,
    marks: &SwitchMarks,
) -> Option<(Option<Color>, Vec<String>)> {
    // The latest switch any Service records (ids start with the time in milliseconds).
    let order = |m: &SwitchMark| {
        let time = m.id.split('-').next().and_then(|t| t.parse::<i64>().ok());
        (time, m.id.clone())
    };
    let latest = marks.values().max_by_key(|m| order(m))?;
    let moved: Vec<String> = colors
        .iter()
        .filter(|(service, color)| {
            marks.get(*service).is_some_and(|m| m.id == latest.id) && **color == latest.to
        })
        .map(|(service, _)| service.clone())
        .collect();
    let rest_stayed = colors
        .iter()
        .filter(|(service, _)| !moved.contains(service))
        .all(|(service, color)| {
            *color == latest.from && marks.get(service).is_none_or(|m| m.id != latest.id)
        });
    let halfway = !moved.is_empty() && moved.len() < colors.len() && latest.from != latest.to;
    (halfway && rest_stayed).then_some((latest.from, moved))
}

/// The color each routed Service selects (`None`: it selects no color yet).
pub type ServiceColors = BTreeMap<String, Option<Color>>;

/// Why the live color cannot be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveColorError {
    /// The routed Services select different colors (a switch was interrupted by hand, or
    /// someone patched one).
    #[error(
        "the routed Services disagree on the live color ({}); point them all at the color that is serving with `kubectl patch service NAME -p '{{\"spec\":{{\"selector\":{{\"color\":\"COLOR\"}}}}}}'` (or run `jisu-deploy rollback`), then deploy again",
        describe(.0)
    )]
    Disagree(ServiceColors),
    /// A Service selects a color value that is neither blue nor green.
    #[error(
        "Service `{service}` selects color `{value}`, which is neither blue nor green; fix its selector"
    )]
    Unknown {
        /// The Service.
        service: String,
        /// What it selects.
        value: String,
    },
}

fn describe(colors: &ServiceColors) -> String {
    colors
        .iter()
        .map(|(service, color)| format!("{service}: {}", color.map_or("no color", Color::as_str)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The live color from what each routed Service selects: all the same color, or none of
/// them colored yet (`None`: the first blue-green deploy). Anything else is an error that
/// says which Service selects what.
pub fn live_color(colors: &ServiceColors) -> Result<Option<Color>, LiveColorError> {
    let mut seen = colors.values().copied();
    let Some(first) = seen.next() else {
        return Ok(None);
    };
    if seen.all(|c| c == first) {
        Ok(first)
    } else {
        Err(LiveColorError::Disagree(colors.clone()))
    }
}

/// The color a Service's selector names, from the Service object.
pub fn selected_color(service: &str, object: &Value) -> Result<Option<Color>, LiveColorError> {
    match object
        .pointer(&format!("/spec/selector/{COLOR_LABEL}"))
        .and_then(Value::as_str)
    {
        None => Ok(None),
        Some(value) => Color::parse(value)
            .map(Some)
            .ok_or_else(|| LiveColorError::Unknown {
                service: service.to_owned(),
                value: value.to_owned(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rendered(kind: &str, name: &str, object: Value) -> Rendered {
        let mut object = object;
        object["kind"] = json!(kind);
        object["metadata"]["name"] = json!(name);
        Rendered {
            source: "k8s/app.yaml".into(),
            api_version: "v1".into(),
            kind: kind.into(),
            name: name.into(),
            namespace: Some("prod".into()),
            object,
        }
    }

    fn base() -> Vec<Rendered> {
        vec![
            rendered(
                "Service",
                "backend",
                json!({"metadata": {}, "spec": {"type": "LoadBalancer", "clusterIP": "10.0.0.1",
                    "selector": {"app": "jisu", "component": "backend"},
                    "ports": [{"port": 80, "targetPort": 8000, "nodePort": 30080}]}}),
            ),
            rendered(
                "Service",
                "postgres",
                json!({"metadata": {}, "spec": {"selector": {"app": "postgres"}, "ports": [{"port": 5432}]}}),
            ),
            rendered(
                "Deployment",
                "backend",
                json!({"metadata": {"labels": {"app": "jisu"}}, "spec": {
                    "selector": {"matchLabels": {"app": "jisu", "component": "backend"}},
                    "template": {"metadata": {"labels": {"app": "jisu", "component": "backend", "tier": "api"}},
                                 "spec": {"containers": [{"name": "api", "image": "r/b@sha256:1"}]}}}}),
            ),
            rendered(
                "HorizontalPodAutoscaler",
                "backend",
                json!({"metadata": {}, "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "backend"}, "minReplicas": 3, "maxReplicas": 10}}),
            ),
            rendered(
                "PodDisruptionBudget",
                "backend",
                json!({"metadata": {}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"component": "backend"}}}}),
            ),
            rendered(
                "ConfigMap",
                "backend-config",
                json!({"metadata": {}, "data": {"A": "1"}}),
            ),
        ]
    }

    fn find<'a>(objects: &'a [Rendered], kind: &str, name: &str) -> &'a Rendered {
        objects
            .iter()
            .find(|o| o.kind == kind && o.name == name)
            .unwrap_or_else(|| panic!("no {kind}/{name}"))
    }

    #[test]
    fn a_color_gets_its_own_deployment_hpa_pdb_and_preview() {
        let colored = colorize(&base(), Color::Green, Some(Color::Blue)).unwrap();
        assert_eq!(colored.layout.workloads, vec!["backend"]);
        assert_eq!(colored.layout.routed, vec!["backend"]);
        let names: Vec<String> = colored.objects.iter().map(Rendered::display_name).collect();
        assert_eq!(
            names,
            [
                "Service/backend",
                "Service/backend-preview",
                "Service/postgres",
                "Deployment/backend-green",
                "HorizontalPodAutoscaler/backend-green",
                "PodDisruptionBudget/backend-green",
                "ConfigMap/backend-config"
            ]
        );
        let deployment = &find(&colored.objects, "Deployment", "backend-green").object;
        assert_eq!(deployment["metadata"]["name"], "backend-green");
        assert_eq!(deployment["metadata"]["labels"]["color"], "green");
        assert_eq!(
            deployment["spec"]["selector"]["matchLabels"]["color"],
            "green"
        );
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["labels"]["color"],
            "green"
        );
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["labels"]["tier"],
            "api"
        );
        let hpa = &find(&colored.objects, "HorizontalPodAutoscaler", "backend-green").object;
        assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "backend-green");
        let pdb = &find(&colored.objects, "PodDisruptionBudget", "backend-green").object;
        assert_eq!(
            pdb["spec"]["selector"]["matchLabels"],
            json!({"component": "backend", "color": "green"})
        );
        // Traffic stays on the live color; the preview selects the new one, inside only.
        let routed = &find(&colored.objects, "Service", "backend").object;
        assert_eq!(routed["spec"]["selector"]["color"], "blue");
        let preview = &find(&colored.objects, "Service", "backend-preview").object;
        assert_eq!(preview["spec"]["selector"]["color"], "green");
        assert_eq!(preview["spec"]["type"], "ClusterIP");
        assert!(preview["spec"].get("clusterIP").is_none());
        assert!(preview["spec"]["ports"][0].get("nodePort").is_none());
        // Unrelated objects are untouched.
        assert_eq!(find(&colored.objects, "Service", "postgres"), &base()[1]);
    }

    #[test]
    fn the_first_deploy_leaves_routing_uncolored() {
        let colored = colorize(&base(), Color::Blue, None).unwrap();
        let routed = &find(&colored.objects, "Service", "backend").object;
        assert_eq!(
            routed["spec"]["selector"],
            json!({"app": "jisu", "component": "backend"})
        );
    }

    #[test]
    fn deployments_without_pod_labels_or_with_a_color_name_are_refused() {
        let mut objects = base();
        objects[2].object["spec"]["template"]["metadata"] = json!({});
        objects.push(rendered(
            "Deployment",
            "web-blue",
            json!({"metadata": {}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}}}}),
        ));
        let problems = colorize(&objects, Color::Blue, None).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].message.contains("labels on its pod template"));
        assert!(problems[1].message.contains("-blue or -green"));
    }

    #[test]
    fn a_switch_left_halfway_is_told_from_a_hand_edit() {
        let colors = |list: &[(&str, Option<Color>)]| -> ServiceColors {
            list.iter().map(|(s, c)| ((*s).to_owned(), *c)).collect()
        };
        let mark = |text: &str| SwitchMark::parse(text).unwrap();
        assert_eq!(mark("blue->green@7").to_string(), "blue->green@7");
        assert_eq!(mark("none->blue@1").from, None);
        assert_eq!(SwitchMark::parse("blue->red@1"), None);
        let (b, g) = (Some(Color::Blue), Some(Color::Green));
        // a moved to green by switch 7, b not yet: undo a, back to blue.
        let marks: SwitchMarks = [("a".to_owned(), mark("blue->green@7"))].into();
        assert_eq!(
            interrupted_switch(&colors(&[("a", g), ("b", b)]), &marks),
            Some((b, vec!["a".to_owned()]))
        );
        // An older switch's mark on b is no obstacle.
        let marks: SwitchMarks = [
            ("a".to_owned(), mark("blue->green@7")),
            ("b".to_owned(), mark("green->blue@3")),
        ]
        .into();
        assert_eq!(
            interrupted_switch(&colors(&[("a", g), ("b", b)]), &marks),
            Some((b, vec!["a".to_owned()]))
        );
        // Both marked by switch 7, b patched back by hand: not a switch left halfway.
        let marks: SwitchMarks = [
            ("a".to_owned(), mark("blue->green@7")),
            ("b".to_owned(), mark("blue->green@7")),
        ]
        .into();
        assert_eq!(
            interrupted_switch(&colors(&[("a", g), ("b", b)]), &marks),
            None
        );
        // No mark at all: a hand edit.
        assert_eq!(
            interrupted_switch(&colors(&[("a", g), ("b", b)]), &SwitchMarks::new()),
            None
        );
    }

    #[test]
    fn the_live_color_is_what_every_routed_service_selects() {
        let colors = |list: &[(&str, Option<Color>)]| -> ServiceColors {
            list.iter().map(|(s, c)| ((*s).to_owned(), *c)).collect()
        };
        assert_eq!(live_color(&colors(&[])), Ok(None));
        assert_eq!(live_color(&colors(&[("a", None), ("b", None)])), Ok(None));
        assert_eq!(
            live_color(&colors(&[
                ("a", Some(Color::Green)),
                ("b", Some(Color::Green))
            ])),
            Ok(Some(Color::Green))
        );
        let err = live_color(&colors(&[
            ("a", Some(Color::Green)),
            ("b", Some(Color::Blue)),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("a: green, b: blue"), "{err}");
        let err = live_color(&colors(&[("a", Some(Color::Green)), ("b", None)])).unwrap_err();
        assert!(err.to_string().contains("b: no color"), "{err}");
        assert_eq!(
            selected_color("a", &json!({"spec": {"selector": {"color": "red"}}})),
            Err(LiveColorError::Unknown {
                service: "a".into(),
                value: "red".into()
            })
        );
    }
}
