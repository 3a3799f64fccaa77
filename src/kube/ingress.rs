//! Ingress hosts from the pipeline file. Pure, like the rest of rendering.
//!
//! An Ingress in the manifests names its host by a placeholder instead of a real name, so
//! one folder serves every environment: [`PUBLIC_HOST`] becomes the host of the
//! environment's `url`, [`PREVIEW_HOST`] the host of its `blue_green.preview_url`. Both
//! placeholders end in `.invalid`, a name that never resolves (RFC 2606), so an Ingress
//! applied by hand without rendering routes nothing and obtains no certificate.
//!
//! An Ingress that names the preview host routes to the `-preview` Services, which only a
//! blue-green environment has; where the environment has no preview URL it is left out.

use serde_json::Value;

use crate::config::validate::is_dns_label;

/// Stands for the host of the environment's `url` in `spec.rules[].host` and
/// `spec.tls[].hosts[]`.
pub const PUBLIC_HOST: &str = "url.jisu-deploy.invalid";
/// Stands for the host of the environment's `blue_green.preview_url`.
pub const PREVIEW_HOST: &str = "preview-url.jisu-deploy.invalid";

/// The URLs whose hosts replace the placeholders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Urls {
    /// The environment's public URL.
    pub public: String,
    /// The blue-green preview URL, if the environment has one.
    pub preview: Option<String>,
}

/// What to do with an Ingress after its hosts were looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Apply it (placeholders, if any, replaced).
    Keep,
    /// Leave it out: it serves the preview URL and this environment has none.
    LeaveOut,
}

/// Replaces the host placeholders of one Ingress object in place. An error says what to fix.
pub fn place_hosts(object: &mut Value, urls: &Urls) -> Result<Placement, String> {
    let names = hosts_named(object);
    let public = names.iter().any(|h| h == PUBLIC_HOST);
    let preview = names.iter().any(|h| h == PREVIEW_HOST);
    if public && preview {
        return Err(format!(
            "names both `{PUBLIC_HOST}` and `{PREVIEW_HOST}`; put the preview host in an Ingress of its own (it is left out where an environment has no preview URL)"
        ));
    }
    let (placeholder, url, field) = if public {
        (PUBLIC_HOST, urls.public.as_str(), "url")
    } else if preview {
        match urls.preview.as_deref() {
            Some(url) => (PREVIEW_HOST, url, "blue_green.preview_url"),
            None => return Ok(Placement::LeaveOut),
        }
    } else {
        return Ok(Placement::Keep);
    };
    let host = host_of(url)
        .map_err(|why| format!("the environment's `{field}` cannot name an Ingress host: {why}"))?;
    replace_hosts(object, placeholder, &host);
    Ok(Placement::Keep)
}

/// The DNS name of an http(s) URL, as an Ingress rule's `host` takes it: no scheme, port,
/// path or trailing dot, lower case, and not an IP address.
pub fn host_of(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL ({e})"))?;
    let Some(host) = parsed.host_str() else {
        return Err(format!("`{url}` has no host"));
    };
    if host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "`{url}` names an IP address; an Ingress host must be a DNS name"
        ));
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    if is_dns_name(&name) {
        Ok(name)
    } else {
        Err(format!("`{name}` is not a DNS name"))
    }
}

/// RFC 1123 names as Kubernetes validates `spec.rules[].host` (a leading `*.` allowed):
/// DNS labels joined by dots.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

/// Every host an Ingress names, in rules and TLS entries.
fn hosts_named(object: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let spec = object.get("spec");
    for rule in array(spec, "rules") {
        if let Some(host) = rule.get("host").and_then(Value::as_str) {
            out.push(host.to_owned());
        }
    }
    for tls in array(spec, "tls") {
        for host in tls
            .get("hosts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(host) = host.as_str() {
                out.push(host.to_owned());
            }
        }
    }
    out
}

fn array<'a>(spec: Option<&'a Value>, key: &str) -> impl Iterator<Item = &'a Value> {
    spec.and_then(|s| s.get(key))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn replace_hosts(object: &mut Value, placeholder: &str, host: &str) {
    let Some(spec) = object.get_mut("spec") else {
        return;
    };
    let replace = |value: &mut Value| {
        if value.as_str() == Some(placeholder) {
            *value = Value::String(host.to_owned());
        }
    };
    if let Some(rules) = spec.get_mut("rules").and_then(Value::as_array_mut) {
        for rule in rules {
            if let Some(h) = rule.get_mut("host") {
                replace(h);
            }
        }
    }
    if let Some(tls) = spec.get_mut("tls").and_then(Value::as_array_mut) {
        for entry in tls {
            if let Some(hosts) = entry.get_mut("hosts").and_then(Value::as_array_mut) {
                hosts.iter_mut().for_each(replace);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(hosts: &[&str]) -> Value {
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "web"},
            "spec": {
                "tls": [{"hosts": hosts, "secretName": "web-tls"}],
                "rules": hosts.iter().map(|h| json!({"host": h})).collect::<Vec<_>>(),
            }
        })
    }

    fn urls(preview: Option<&str>) -> Urls {
        Urls {
            public: "https://Shop.Example.COM./app".into(),
            preview: preview.map(str::to_owned),
        }
    }

    #[test]
    fn placeholders_become_the_hosts_of_the_urls() {
        let mut public = ingress(&[PUBLIC_HOST]);
        assert_eq!(place_hosts(&mut public, &urls(None)), Ok(Placement::Keep));
        assert_eq!(public["spec"]["rules"][0]["host"], "shop.example.com");
        assert_eq!(public["spec"]["tls"][0]["hosts"][0], "shop.example.com");

        let mut preview = ingress(&[PREVIEW_HOST]);
        let with_preview = urls(Some("https://preview.shop.example.com:8443"));
        assert_eq!(
            place_hosts(&mut preview, &with_preview),
            Ok(Placement::Keep)
        );
        assert_eq!(
            preview["spec"]["rules"][0]["host"],
            "preview.shop.example.com"
        );
    }

    #[test]
    fn a_preview_ingress_is_left_out_without_a_preview_url() {
        let mut preview = ingress(&[PREVIEW_HOST]);
        let before = preview.clone();
        assert_eq!(
            place_hosts(&mut preview, &urls(None)),
            Ok(Placement::LeaveOut)
        );
        assert_eq!(preview, before);
    }

    #[test]
    fn real_hosts_are_kept_as_written() {
        let mut fixed = ingress(&["api.example.org"]);
        let before = fixed.clone();
        assert_eq!(place_hosts(&mut fixed, &urls(None)), Ok(Placement::Keep));
        assert_eq!(fixed, before);
    }

    #[test]
    fn mixed_placeholders_and_unusable_urls_are_refused() {
        let mut mixed = ingress(&[PUBLIC_HOST, PREVIEW_HOST]);
        let err = place_hosts(&mut mixed, &urls(Some("https://p.example"))).unwrap_err();
        assert!(err.contains("an Ingress of its own"), "{err}");

        for (url, why) in [
            ("https://10.0.0.7/", "IP address"),
            ("https://[::1]/", "IP address"),
            ("https://bad_name.example/", "not a DNS name"),
            ("not a url", "is not a URL"),
        ] {
            let mut public = ingress(&[PUBLIC_HOST]);
            let urls = Urls {
                public: url.into(),
                preview: None,
            };
            let err = place_hosts(&mut public, &urls).unwrap_err();
            assert!(err.contains("`url`") && err.contains(why), "{url}: {err}");
        }
    }
}
