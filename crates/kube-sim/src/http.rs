//! The HTTP front: accepts connections, applies injected faults, routes requests and
//! answers in the Kubernetes wire format (JSON bodies, `Status` errors, chunked watches).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::clock::SimClock;
use crate::discovery;
use crate::faults::Faults;
use crate::resources::{RESOURCES, ResId};
use crate::routes::{self, Route, Target};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{self, ApiError};
use crate::store::Inner;
use crate::watch;
use crate::writes::{self, Change, DeleteOpts, PatchType, WriteCtx};

/// Response body type.
pub type Body = BoxBody<Bytes, Infallible>;

/// State shared by the HTTP front and the controllers.
pub struct Shared {
    store: Mutex<Inner>,
    /// Wakes the controllers early (after a clock jump or a rule change).
    pub wake: tokio::sync::Notify,
    /// Image behaviours, changeable while running.
    pub images: Mutex<crate::behaviour::ImageRules>,
    /// Live fault configuration.
    pub faults: Faults,
    /// Address the server listens on.
    pub addr: SocketAddr,
    /// Simulated clock.
    pub clock: SimClock,
}

impl Shared {
    /// Wraps a store.
    pub fn new(
        store: Inner,
        faults: Faults,
        addr: SocketAddr,
        clock: SimClock,
        images: crate::behaviour::ImageRules,
    ) -> Self {
        Self {
            store: Mutex::new(store),
            wake: tokio::sync::Notify::new(),
            images: Mutex::new(images),
            faults,
            addr,
            clock,
        }
    }

    /// The current image behaviours.
    pub fn image_rules(&self) -> crate::behaviour::ImageRules {
        self.images
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Locks the store. A panic while holding the lock leaves data that is still
    /// consistent object by object, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Accepts connections until the task is aborted; connection tasks die with it.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(shared, req).await) }
            });
            // A client hanging up mid-request is not the server's problem.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
        while conns.try_join_next().is_some() {}
    }
}

/// A JSON response.
pub fn json_response(code: u16, body: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A JSON response from already-serialised bytes.
pub fn bytes_response(code: u16, bytes: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Adds `Warning: 299 - "TEXT"` headers, one per warning, as the real server reports
/// dropped unknown fields.
pub fn with_warnings(mut r: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            r.headers_mut().append(hyper::header::WARNING, v);
        }
    }
    r
}

/// A `Status` error response.
pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.to_status());
    if let Some(secs) = e.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        r.headers_mut().insert(RETRY_AFTER, v);
    }
    r
}

/// Decoded query parameters.
pub type Query = HashMap<String, String>;

fn parse_query(q: Option<&str>) -> Query {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn verb_of(method: &Method, t: Option<&Target>, q: &Query) -> &'static str {
    let named = t.is_some_and(|t| t.name.is_some());
    match *method {
        Method::GET if named => "get",
        Method::GET if q.get("watch").is_some_and(|w| w == "true" || w == "1") => "watch",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query());
    let route = routes::parse(&path);
    let target = match &route {
        Route::Resource(t) => Some(t),
        _ => None,
    };
    let verb = verb_of(req.method(), target, &query);
    let decision = shared.faults.decide(verb, &path);
    if !decision.latency.is_zero() {
        tokio::time::sleep(decision.latency).await;
    }
    if let Some(e) = decision.error {
        return error_response(&e);
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let content_type = header("content-type");
    let user_agent = header("user-agent");
    let table = crate::table::wants_table(&header("accept"));
    let method = req.method().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error_response(&ApiError::bad_request("could not read the request body")),
    };
    let result = match route {
        Route::Version => Ok(json_response(200, &discovery::version())),
        Route::Health => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"ok")).boxed());
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            Ok(r)
        }
        Route::CoreVersions => Ok(json_response(
            200,
            &discovery::core_versions(&shared.addr.to_string()),
        )),
        Route::GroupList => Ok(json_response(200, &discovery::group_list())),
        Route::Group(g) => discovery::group(&g)
            .map(|d| json_response(200, &d))
            .ok_or_else(|| not_found(&path)),
        Route::ResourceList(g, v) => discovery::resource_list(&g, &v)
            .map(|d| json_response(200, &d))
            .ok_or_else(|| not_found(&path)),
        Route::OpenApiV3Index => Ok(json_response(200, &discovery::openapi_v3_index())),
        Route::OpenApiV3Doc(g, v) => discovery::openapi_v3_doc(&g, &v)
            .map(|d| json_response(200, &d))
            .ok_or_else(|| not_found(&path)),
        Route::Unknown => Err(not_found(&path)),
        Route::Resource(t) => {
            let req = ResourceRequest {
                t: &t,
                verb,
                query: &query,
                content_type: &content_type,
                user_agent: &user_agent,
                body: &body,
                table,
            };
            if verb == "watch" {
                watch::start(&shared, &t, &query, table)
            } else if method == Method::GET
                || method == Method::POST
                || method == Method::PUT
                || method == Method::PATCH
                || method == Method::DELETE
            {
                resource(&shared, req)
            } else {
                Err(ApiError::method_not_allowed(format!(
                    "the server does not allow this method on the requested resource: {method}"
                )))
            }
        }
    };
    result.unwrap_or_else(|e| error_response(&e))
}

fn not_found(path: &str) -> ApiError {
    let mut e = ApiError::bad_request("the server could not find the requested resource");
    e.code = 404;
    e.reason = "NotFound";
    e.details = Some(
        json!({"causes": [{"reason": "UnexpectedServerResponse", "message": format!("404 page not found: {path}")}]}),
    );
    e
}

struct ResourceRequest<'a> {
    t: &'a Target,
    verb: &'static str,
    query: &'a Query,
    content_type: &'a str,
    user_agent: &'a str,
    body: &'a Bytes,
    /// The client asked for server-side printing.
    table: bool,
}

/// Parses a write's body by content type: protobuf for the few kinds kubectl's typed
/// generators send, otherwise JSON or YAML.
pub fn parse_request_body(body: &[u8], content_type: &str) -> Result<Value, ApiError> {
    if content_type.starts_with("application/vnd.kubernetes.protobuf") {
        return crate::protobuf::decode(body).map_err(|e| {
            let mut err = ApiError::unsupported_media_type(content_type);
            err.message = e;
            err
        });
    }
    parse_body(body)
}

/// Parses a request body: JSON, or YAML for apply patches.
pub fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).or_else(|_| {
        serde_yaml::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
    })
}

fn dry_run(q: &Query) -> Result<bool, ApiError> {
    match q.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid dry run value: {other:?}; supported values: \"All\""
        ))),
    }
}

fn resource(shared: &Shared, r: ResourceRequest<'_>) -> Result<Response<Body>, ApiError> {
    let t = r.t;
    let rt = &RESOURCES[t.res];
    let ns = if rt.namespaced {
        t.ns.clone().unwrap_or_default()
    } else {
        String::new()
    };
    let name = t.name.clone().unwrap_or_default();
    let sub = t.sub.as_deref().unwrap_or_default();
    match (sub, rt.has_status, rt.has_scale) {
        ("", ..) | ("status", true, _) | ("scale", _, true) => {}
        _ => return Err(not_found(&format!("{}/{name}/{sub}", rt.plural))),
    }
    let default_manager = r
        .user_agent
        .split('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string();
    let manager = r
        .query
        .get("fieldManager")
        .cloned()
        .unwrap_or(default_manager);
    let ctx = WriteCtx {
        manager: &manager,
        subresource: sub,
        dry_run: dry_run(r.query)?,
        validation: Some(
            crate::decode::FieldValidation::parse(
                r.query.get("fieldValidation").map(String::as_str),
            )
            .map_err(ApiError::bad_request)?,
        ),
    };
    let mut s = shared.lock();
    match r.verb {
        "get" => {
            let obj = s
                .get(t.res, &ns, &name)
                .ok_or_else(|| ApiError::not_found(&rt.qualified(), &name))?;
            let out = if sub == "scale" {
                scale_of(&obj)
            } else if r.table {
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                crate::table::table(rt.kind, &[&*obj], rv, None, s.clock.now())
            } else {
                (*obj).clone()
            };
            Ok(json_response(200, &out))
        }
        "list" => {
            let listing = list(&s, t.res, t.ns.as_deref(), r.query)?;
            let now = s.clock.now();
            // Render without holding the store.
            drop(s);
            if r.table {
                let items: Vec<&Value> = listing.items.iter().map(|o| &**o).collect();
                let rv = listing.metadata["resourceVersion"]
                    .as_str()
                    .unwrap_or_default();
                let cont = listing.metadata.get("continue").and_then(Value::as_str);
                Ok(json_response(
                    200,
                    &crate::table::table(rt.kind, &items, rv, cont, now),
                ))
            } else {
                Ok(bytes_response(200, listing.to_bytes()))
            }
        }
        "create" => {
            if t.name.is_some() {
                return Err(ApiError::method_not_allowed(
                    "POST is not allowed on a named resource",
                ));
            }
            let body = parse_request_body(r.body, r.content_type)?;
            let w = writes::write(&mut s, t.res, &ns, "", Change::Create(body), ctx)?;
            Ok(with_warnings(json_response(201, &w.object), &w.warnings))
        }
        "update" | "patch" => {
            let body = parse_request_body(r.body, r.content_type)?;
            let change = if r.verb == "update" {
                Change::Replace(body)
            } else {
                let ct = r.content_type.split(';').next().unwrap_or_default().trim();
                match ct {
                    "application/json-patch+json" => Change::Patch(PatchType::Json, body),
                    "application/merge-patch+json" => Change::Patch(PatchType::Merge, body),
                    "application/strategic-merge-patch+json" => {
                        Change::Patch(PatchType::Strategic, body)
                    }
                    "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                        if !r.query.contains_key("fieldManager") {
                            return Err(ApiError::bad_request(
                                "PATCH /apply requires fieldManager",
                            ));
                        }
                        let force = r.query.get("force").is_some_and(|f| f == "true");
                        Change::Apply {
                            config: body,
                            force,
                        }
                    }
                    other => return Err(ApiError::unsupported_media_type(other)),
                }
            };
            if sub == "scale" {
                return scale_write(&mut s, t.res, &ns, &name, change, ctx)
                    .map(|v| json_response(200, &v));
            }
            let w = writes::write(&mut s, t.res, &ns, &name, change, ctx)?;
            let code = if w.created { 201 } else { 200 };
            Ok(with_warnings(json_response(code, &w.object), &w.warnings))
        }
        "delete" => {
            let opts = delete_opts(r.body, r.query, ctx.dry_run)?;
            let gone = writes::delete(&mut s, t.res, &ns, &name, &opts)?;
            // Objects held by finalizers come back marked; Pods and Services come back as
            // deleted (their real storage sets ReturnDeletedObject); others get a Status.
            let held = gone.pointer("/metadata/deletionTimestamp").is_some()
                && s.get(t.res, &ns, &name).is_some();
            if held || matches!(rt.kind, "Pod" | "Service") {
                return Ok(json_response(200, &gone));
            }
            let uid = gone
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Ok(json_response(
                200,
                &status::success_status(&rt.qualified(), &name, uid),
            ))
        }
        "deletecollection" => {
            let opts = delete_opts(r.body, r.query, ctx.dry_run)?;
            let victims = list(&s, t.res, t.ns.as_deref(), r.query)?;
            let mut items = Vec::new();
            for o in &victims.items {
                let ns = o
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let name = o
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                items.push((*writes::delete(&mut s, t.res, ns, name, &opts)?).clone());
            }
            let kind = format!("{}List", rt.kind);
            Ok(json_response(
                200,
                &json!({"kind": kind, "apiVersion": rt.api_version(), "metadata": {"resourceVersion": s.rv().to_string()}, "items": items}),
            ))
        }
        other => Err(ApiError::method_not_allowed(format!(
            "verb {other} is not supported"
        ))),
    }
}

fn delete_opts(body: &[u8], q: &Query, dry_run: bool) -> Result<DeleteOpts, ApiError> {
    // Typed clients may send DeleteOptions as protobuf; their defaults are what we use anyway.
    let b = if body.starts_with(b"k8s\x00") {
        Value::Null
    } else {
        parse_body(body)?
    };
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let body_dry = b
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == "All"));
    Ok(DeleteOpts {
        propagation: s(b.get("propagationPolicy")).or_else(|| q.get("propagationPolicy").cloned()),
        precondition_rv: s(b.pointer("/preconditions/resourceVersion")),
        precondition_uid: s(b.pointer("/preconditions/uid")),
        dry_run: dry_run || body_dry,
        grace_period: b
            .get("gracePeriodSeconds")
            .and_then(Value::as_i64)
            .or_else(|| q.get("gracePeriodSeconds").and_then(|g| g.parse().ok())),
    })
}

/// The list answer for a collection request, honouring selectors and pagination.
/// A list answer: shared references to the stored objects, rendered after the store
/// lock is released and without copying the objects.
#[derive(Debug)]
pub struct Listing {
    /// `DeploymentList`, ...
    pub kind: String,
    /// apiVersion of the list.
    pub api_version: String,
    /// `ListMeta`.
    pub metadata: Value,
    /// The objects.
    pub items: Vec<Arc<Value>>,
}

impl Listing {
    /// The JSON body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.items.len() * 768);
        let head =
            json!({"kind": self.kind, "apiVersion": self.api_version, "metadata": self.metadata});
        let head = serde_json::to_vec(&head).unwrap_or_default();
        out.extend_from_slice(&head[..head.len() - 1]);
        out.extend_from_slice(b",\"items\":[");
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // Writing a Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, &**item);
        }
        out.extend_from_slice(b"]}");
        out
    }
}

/// The list answer for a collection request, honouring selectors and pagination.
pub fn list(s: &Inner, res: ResId, ns: Option<&str>, q: &Query) -> Result<Listing, ApiError> {
    let rt = &RESOURCES[res];
    let labels = LabelSelector::parse(
        q.get("labelSelector")
            .map(String::as_str)
            .unwrap_or_default(),
    )
    .map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(
        q.get("fieldSelector")
            .map(String::as_str)
            .unwrap_or_default(),
    )
    .map_err(ApiError::bad_request)?;
    let limit: usize = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return Err(ApiError::bad_request(
                "limit must be a non-negative integer",
            ));
        }
    };
    let matches =
        |o: &&Arc<Value>| labels.matches(o.pointer("/metadata/labels")) && fields.matches(o);
    let (token_rv, after) = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            let (rv, key) = decode_continue(c)
                .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
            if rv < s.oldest_resumable() {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                ));
            }
            (rv, Some(key))
        }
        None => (s.rv(), None),
    };
    let iter: Box<dyn Iterator<Item = &Arc<Value>>> = match after {
        Some(k) => Box::new(s.list_after(res, ns, k)),
        None => Box::new(s.list(res, ns)),
    };
    let mut items = Vec::new();
    let mut more = false;
    let mut remaining = 0usize;
    for o in iter.filter(matches) {
        if limit > 0 && items.len() == limit {
            more = true;
            remaining += 1;
            continue;
        }
        items.push(o.clone());
    }
    let mut meta = json!({"resourceVersion": token_rv.max(s.rv()).to_string()});
    if more && let Some(last) = items.last() {
        let key = (
            last.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            last.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        );
        meta["continue"] = json!(encode_continue(token_rv, &key));
        meta["remainingItemCount"] = json!(remaining);
    }
    Ok(Listing {
        kind: format!("{}List", rt.kind),
        api_version: rt.api_version(),
        metadata: meta,
        items,
    })
}

// Continue tokens are opaque to clients; base64 keeps them URL- and log-friendly.
fn encode_continue(rv: u64, key: &(String, String)) -> String {
    use base64::Engine as _;
    let raw = json!({"rv": rv, "ns": key.0, "name": key.1}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> Option<(u64, (String, String))> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    Some((
        v["rv"].as_u64()?,
        (
            v["ns"].as_str()?.to_string(),
            v["name"].as_str()?.to_string(),
        ),
    ))
}

/// The `autoscaling/v1` Scale view of a Deployment or ReplicaSet.
pub fn scale_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let selector = obj
        .pointer("/spec/selector")
        .and_then(|s| LabelSelector::from_struct(s).ok())
        .map(|s| s.to_query())
        .unwrap_or_default();
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]
        },
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
        "status": {"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector}
    })
}

fn scale_write(
    s: &mut Inner,
    res: ResId,
    ns: &str,
    name: &str,
    change: Change,
    ctx: WriteCtx<'_>,
) -> Result<Value, ApiError> {
    let rt = &RESOURCES[res];
    let cur = s
        .get(res, ns, name)
        .ok_or_else(|| ApiError::not_found(&rt.qualified(), name))?;
    let scale = scale_of(&cur);
    let new_scale = match change {
        Change::Replace(b) | Change::Create(b) => b,
        Change::Patch(PatchType::Merge, p) => crate::patch::merge_patch(&scale, &p),
        Change::Patch(PatchType::Strategic, p) => {
            crate::patch::strategic_merge_patch("Scale", &scale, &p)
                .map_err(ApiError::invalid_patch)?
        }
        Change::Patch(PatchType::Json, p) => {
            crate::patch::json_patch(&scale, &p).map_err(ApiError::invalid_patch)?
        }
        Change::Apply { config, .. } => crate::patch::merge_patch(&scale, &config),
    };
    let replicas = new_scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            ApiError::invalid(
                "Scale",
                "autoscaling",
                name,
                &[(
                    "spec.replicas".into(),
                    "Required value".into(),
                    "FieldValueRequired",
                )],
            )
        })?;
    let mut obj = (*cur).clone();
    obj["spec"]["replicas"] = json!(replicas);
    if let Some(rv) = new_scale
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        obj["metadata"]["resourceVersion"] = json!(rv);
    }
    let w = writes::write(s, res, ns, name, Change::Replace(obj), ctx)?;
    Ok(scale_of(&w.object))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_percent_decoded() {
        let q = parse_query(Some(
            "labelSelector=app%3Dweb%2Ccolor+in+%28blue%29&watch=true&x",
        ));
        assert_eq!(q["labelSelector"], "app=web,color in (blue)");
        assert_eq!(q["watch"], "true");
        assert_eq!(q["x"], "");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn continue_tokens_round_trip() {
        let key = ("ns".to_string(), "name".to_string());
        assert_eq!(decode_continue(&encode_continue(42, &key)), Some((42, key)));
        assert_eq!(decode_continue("garbage!"), None);
    }
}
