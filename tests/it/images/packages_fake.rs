//! A fake GitHub Packages API (wiremock) for container package versions: paginates with
//! `Link` headers, answers the first listing request with 429 + `Retry-After` when asked,
//! can fail a page, and records deletions.

use std::sync::{Arc, Mutex};

use jisu_deploy::oci::Digest;
use serde_json::json;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// One package version the fake holds.
#[derive(Debug, Clone)]
pub struct FakeVersion {
    pub id: u64,
    pub digest: Digest,
    pub tags: Vec<String>,
    /// RFC 3339.
    pub created: String,
}

/// What the fake does and has seen.
#[derive(Debug, Default)]
pub struct State {
    /// The one package that has versions; every other package lists none.
    pub package: String,
    pub versions: Vec<FakeVersion>,
    /// Where clients reach the fake (prism's URL): `Link` headers point there.
    pub public_base: String,
    pub page_size: usize,
    /// Answer the next listing request with 429 and `Retry-After: 1`.
    pub throttle_next: bool,
    /// Answer this page with 500, every time.
    pub failing_page: Option<usize>,
    /// Every page of the listing links a next one, forever, each with one new version.
    pub endless: bool,
    /// Every page links page 2 as its next page.
    pub next_repeats: bool,
    pub throttled: usize,
    pub deleted: Vec<u64>,
    pub list_requests: usize,
}

pub struct FakePackages {
    pub server: MockServer,
    pub state: Arc<Mutex<State>>,
}

const VERSIONS_PATH: &str = r"^/(orgs|users)/[^/]+/packages/container/[^/]+/versions$";
const VERSION_PATH: &str = r"^/(orgs|users)/[^/]+/packages/container/[^/]+/versions/[0-9]+$";

struct ListVersions(Arc<Mutex<State>>);

impl Respond for ListVersions {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.0.lock().unwrap();
        state.list_requests += 1;
        if state.throttle_next {
            state.throttle_next = false;
            state.throttled += 1;
            return ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_json(json!({"message": "You have exceeded a secondary rate limit", "documentation_url": "https://docs.github.com/rest"}));
        }
        let page: usize = request
            .url
            .query_pairs()
            .find(|(k, _)| k == "page")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(1);
        if state.failing_page == Some(page) {
            return ResponseTemplate::new(500)
                .set_body_json(json!({"message": "Server Error", "documentation_url": "https://docs.github.com/rest"}));
        }
        let size = state.page_size.max(1);
        let path = request.url.path();
        if state.endless || state.next_repeats {
            let next = if state.endless { page + 1 } else { 2 };
            let synthetic = FakeVersion {
                id: 1_000_000 + page as u64,
                digest: Digest::of(format!("page {page}").as_bytes()),
                tags: Vec::new(),
                created: "2020-01-01T00:00:00Z".into(),
            };
            let link = format!(
                "<{}{path}?per_page={size}&page={next}>; rel=\"next\"",
                state.public_base
            );
            return ResponseTemplate::new(200)
                .set_body_json(vec![version_json(&synthetic, path)])
                .insert_header("Link", link.as_str());
        }
        let ours = path.ends_with(&format!("/container/{}/versions", state.package));
        let versions: &[FakeVersion] = if ours { &state.versions } else { &[] };
        let pages = versions.len().div_ceil(size).max(1);
        let items: Vec<serde_json::Value> = versions
            .iter()
            .skip((page - 1) * size)
            .take(size)
            .map(|v| version_json(v, path))
            .collect();
        let link = |n: usize, rel: &str| {
            format!(
                "<{}{path}?per_page={size}&page={n}>; rel=\"{rel}\"",
                state.public_base
            )
        };
        let mut links = Vec::new();
        if page < pages {
            links.push(link(page + 1, "next"));
            links.push(link(pages, "last"));
        }
        if page > 1 {
            links.push(link(1, "first"));
            links.push(link(page - 1, "prev"));
        }
        let mut response = ResponseTemplate::new(200).set_body_json(items);
        if !links.is_empty() {
            response = response.insert_header("Link", links.join(", ").as_str());
        }
        response
    }
}

fn version_json(v: &FakeVersion, versions_path: &str) -> serde_json::Value {
    json!({
        "id": v.id,
        "name": v.digest.to_string(),
        "url": format!("https://api.github.com{versions_path}/{}", v.id),
        "package_html_url": "https://github.com/orgs/jisu/packages/container/package/platform",
        "html_url": format!("https://github.com/orgs/jisu/packages/container/platform/{}", v.id),
        "created_at": v.created,
        "updated_at": v.created,
        "metadata": {"package_type": "container", "container": {"tags": v.tags}},
    })
}

struct DeleteVersion(Arc<Mutex<State>>);

impl Respond for DeleteVersion {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id: u64 = request
            .url
            .path()
            .rsplit('/')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap();
        let mut state = self.0.lock().unwrap();
        state.versions.retain(|v| v.id != id);
        state.deleted.push(id);
        ResponseTemplate::new(204)
    }
}

impl FakePackages {
    pub async fn start(package: &str, versions: Vec<FakeVersion>, page_size: usize) -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
            package: package.to_owned(),
            versions,
            page_size,
            public_base: server.uri(),
            ..State::default()
        }));
        Mock::given(method("GET"))
            .and(path_regex(VERSIONS_PATH))
            .respond_with(ListVersions(state.clone()))
            .mount(&server)
            .await;
        Mock::given(method("DELETE"))
            .and(path_regex(VERSION_PATH))
            .respond_with(DeleteVersion(state.clone()))
            .mount(&server)
            .await;
        FakePackages { server, state }
    }

    /// Every request the fake received, as `METHOD path?query`.
    pub async fn requests(&self) -> Vec<String> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let query = r.url.query().map(|q| format!("?{q}")).unwrap_or_default();
                format!("{} {}{query}", r.method, r.url.path())
            })
            .collect()
    }
}
