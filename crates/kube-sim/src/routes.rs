//! URL paths to routes: discovery documents, or a resource target (type, namespace,
//! name, subresource). Pure, so the path grammar is unit-tested apart from HTTP.

use crate::resources::{self, RESOURCES, ResId};

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `/version`.
    Version,
    /// `/healthz`, `/livez`, `/readyz`.
    Health,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    GroupList,
    /// `/apis/{group}`.
    Group(String),
    /// `/api/v1`, `/apis/{group}/{version}`.
    ResourceList(String, String),
    /// `/openapi/v3`.
    OpenApiV3Index,
    /// `/openapi/v3/api/v1`, `/openapi/v3/apis/{group}/{version}`.
    OpenApiV3Doc(String, String),
    /// A resource collection, object or subresource.
    Resource(Target),
    /// Anything else (404).
    Unknown,
}

/// A resource request target.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    /// Resource type.
    pub res: ResId,
    /// Namespace from the path (`None` for cluster-scoped or all-namespaces requests).
    pub ns: Option<String>,
    /// Object name (`None` for collections).
    pub name: Option<String>,
    /// Subresource (`status`, `scale`).
    pub sub: Option<String>,
}

/// Parses a request path (without query string).
pub fn parse(path: &str) -> Route {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::GroupList,
        ["apis", g] => Route::Group(g.to_string()),
        ["api", v] => Route::ResourceList(String::new(), v.to_string()),
        ["apis", g, v] => Route::ResourceList(g.to_string(), v.to_string()),
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", "api", v] => Route::OpenApiV3Doc(String::new(), v.to_string()),
        ["openapi", "v3", "apis", g, v] => Route::OpenApiV3Doc(g.to_string(), v.to_string()),
        ["api", v, rest @ ..] => target("", v, rest),
        ["apis", g, v, rest @ ..] => target(g, v, rest),
        _ => Route::Unknown,
    }
}

fn target(group: &str, version: &str, rest: &[&str]) -> Route {
    let find = |plural: &str| resources::find(group, version, plural);
    let t = |res, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        Route::Resource(Target {
            res,
            ns: ns.map(str::to_string),
            name: name.map(str::to_string),
            sub: sub.map(str::to_string),
        })
    };
    // `namespaces/{ns}/{plural}...` is a namespaced request unless `{plural}` is not a
    // namespaced type, in which case it is a subresource of the Namespace itself.
    if let ["namespaces", ns, plural, more @ ..] = rest
        && let Some(res) = find(plural).filter(|r| RESOURCES[*r].namespaced)
    {
        return match more {
            [] => t(res, Some(ns), None, None),
            [name] => t(res, Some(ns), Some(name), None),
            [name, sub] => t(res, Some(ns), Some(name), Some(sub)),
            _ => Route::Unknown,
        };
    }
    match rest {
        [plural] => find(plural).map_or(Route::Unknown, |r| t(r, None, None, None)),
        [plural, name] => find(plural)
            .filter(|r| !RESOURCES[*r].namespaced)
            .map_or(Route::Unknown, |r| t(r, None, Some(name), None)),
        [plural, name, sub] => find(plural)
            .filter(|r| !RESOURCES[*r].namespaced)
            .map_or(Route::Unknown, |r| t(r, None, Some(name), Some(sub))),
        _ => Route::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::ids;

    #[test]
    fn resource_paths_resolve() {
        let Route::Resource(t) = parse("/apis/apps/v1/namespaces/prod/deployments/web/scale")
        else {
            panic!()
        };
        assert_eq!(
            t,
            Target {
                res: *ids::DEPLOYMENT,
                ns: Some("prod".into()),
                name: Some("web".into()),
                sub: Some("scale".into())
            }
        );
        let Route::Resource(t) = parse("/api/v1/pods") else {
            panic!()
        };
        assert_eq!((t.res, t.ns, t.name), (*ids::POD, None, None));
        let Route::Resource(t) = parse("/api/v1/namespaces/prod") else {
            panic!()
        };
        assert_eq!((t.res, t.name.as_deref()), (*ids::NAMESPACE, Some("prod")));
        let Route::Resource(t) = parse("/api/v1/namespaces/prod/status") else {
            panic!()
        };
        assert_eq!((t.res, t.sub.as_deref()), (*ids::NAMESPACE, Some("status")));
        assert_eq!(
            parse("/apis/apps/v1/namespaces/prod/widgets"),
            Route::Unknown
        );
        assert_eq!(
            parse("/apis/apps/v1"),
            Route::ResourceList("apps".into(), "v1".into())
        );
        assert_eq!(
            parse("/openapi/v3/apis/apps/v1"),
            Route::OpenApiV3Doc("apps".into(), "v1".into())
        );
    }
}
