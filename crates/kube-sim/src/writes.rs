//! The write path every create, update, patch, apply and delete goes through, from
//! HTTP handlers and emulated controllers alike: preconditions, subresource rules,
//! defaulting, validation, generation, field ownership, no-op detection, dry run.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::decode::{self, FieldValidation};
use crate::managed::{self, Writer};
use crate::objects;
use crate::patch;
use crate::resources::{RESOURCES, ResId, ids};
use crate::status::ApiError;
use crate::store::Inner;

/// The patch formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
}

/// What a write does.
#[derive(Debug, Clone)]
pub enum Change {
    /// POST.
    Create(Value),
    /// PUT.
    Replace(Value),
    /// PATCH with one of the patch formats.
    Patch(PatchType, Value),
    /// PATCH with `application/apply-patch+yaml`.
    Apply {
        /// The applied configuration.
        config: Value,
        /// `force=true`.
        force: bool,
    },
}

/// Who writes and how.
#[derive(Debug, Clone, Copy)]
pub struct WriteCtx<'a> {
    /// Field manager.
    pub manager: &'a str,
    /// `""`, `status` or `scale`.
    pub subresource: &'a str,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// How a client's object is checked against its kind's type (`fieldValidation`);
    /// `None` for the simulator's own writes, which are not checked.
    pub validation: Option<FieldValidation>,
}

/// The result of a write.
#[derive(Debug)]
pub struct Written {
    /// The object as stored (or as it would be, for a dry run).
    pub object: Arc<Value>,
    /// Whether it was created (201) rather than updated (200).
    pub created: bool,
    /// `Warning` header texts (unknown fields dropped under `fieldValidation=Warn`).
    pub warnings: Vec<String>,
}

fn meta_str<'a>(obj: &'a Value, f: &str) -> &'a str {
    obj.pointer(&format!("/metadata/{f}"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Performs a write of `change` to `res`/`ns`/`name` (`name` empty for a POST).
pub fn write(
    s: &mut Inner,
    res: ResId,
    ns: &str,
    name: &str,
    change: Change,
    ctx: WriteCtx<'_>,
) -> Result<Written, ApiError> {
    let rt = &RESOURCES[res];
    let api_version = rt.api_version();
    let now = s.clock.now_rfc3339();
    let writer = Writer {
        kind: rt.kind,
        api_version: &api_version,
        manager: ctx.manager,
        subresource: ctx.subresource,
        now: &now,
    };

    let body_name = |b: &Value| meta_str(b, "name").to_string();
    let name = match &change {
        Change::Create(b) => {
            let n = body_name(b);
            let generate = meta_str(b, "generateName").to_string();
            if n.is_empty() && !generate.is_empty() {
                format!("{generate}{}", s.random_suffix())
            } else {
                n
            }
        }
        _ => name.to_string(),
    };
    if rt.namespaced && ns.is_empty() {
        return Err(ApiError::bad_request(
            "the server could not find the requested resource: a namespace is required",
        ));
    }
    let current = s.get(res, ns, &name);
    if current.is_none() && rt.namespaced && s.get(*ids::NAMESPACE, "", ns).is_none() {
        return Err(ApiError::not_found("namespaces", ns));
    }
    let mut entries = current
        .as_deref()
        .map(managed::read_entries)
        .unwrap_or_default();
    let not_found = || ApiError::not_found(&rt.qualified(), &name);

    let is_apply = matches!(change, Change::Apply { .. });
    // How a decoding failure is reported depends on how the object came to be.
    let decoded_from = match &change {
        Change::Create(_) | Change::Replace(_) => Source::Body,
        Change::Patch(PatchType::Strategic, p) => Source::Patch(Some(decode::go_map_text(p))),
        Change::Patch(..) => Source::Patch(None),
        Change::Apply { .. } => Source::Apply,
    };
    let mut new = match change {
        Change::Create(body) => {
            if current.is_some() {
                return Err(ApiError::already_exists(&rt.qualified(), &name));
            }
            check_identity(rt, &body, ns, None)?;
            body
        }
        Change::Replace(body) => {
            let cur = current.as_deref().ok_or_else(not_found)?;
            check_identity(rt, &body, ns, Some(&name))?;
            let want_rv = meta_str(&body, "resourceVersion");
            if !want_rv.is_empty() && want_rv != meta_str(cur, "resourceVersion") {
                return Err(ApiError::conflict(&rt.qualified(), &name));
            }
            body
        }
        Change::Patch(kind, body) => {
            let cur = current.as_deref().ok_or_else(not_found)?;
            let patched = match kind {
                PatchType::Merge => patch::merge_patch(cur, &body),
                PatchType::Json => {
                    patch::json_patch(cur, &body).map_err(ApiError::invalid_patch)?
                }
                PatchType::Strategic => patch::strategic_merge_patch(rt.kind, cur, &body)
                    .map_err(ApiError::invalid_patch)?,
            };
            let want_rv = meta_str(&patched, "resourceVersion");
            if want_rv != meta_str(cur, "resourceVersion") {
                return Err(ApiError::conflict(&rt.qualified(), &name));
            }
            check_identity(rt, &patched, ns, Some(&name))?;
            patched
        }
        Change::Apply { config, force } => {
            check_identity(rt, &config, ns, Some(&name))?;
            if ctx.validation.is_some() {
                check_applied(rt, ns, &name, &config)?;
            }
            // An applied resourceVersion is a precondition, as for updates.
            let want_rv = meta_str(&config, "resourceVersion");
            if !want_rv.is_empty()
                && current
                    .as_deref()
                    .is_none_or(|c| want_rv != meta_str(c, "resourceVersion"))
            {
                return Err(ApiError::conflict(&rt.qualified(), &name));
            }
            let skeleton =
                json!({"apiVersion": api_version, "kind": rt.kind, "metadata": {"name": name}});
            let base = current.as_deref().cloned().unwrap_or(skeleton);
            let view = objects::tracked_view(rt, &config, ctx.subresource);
            let mut result = managed::apply(writer, &base, &view, force, &mut entries);
            // Like the real server, `kubectl` upgrading from client-side apply may take
            // over fields its last-applied annotation names without a conflict.
            if let Err(conflicts) = &result
                && ctx.manager == "kubectl"
                && let Some(allowed) = current.as_deref().and_then(|c| last_applied_set(rt, c))
            {
                let remaining: Vec<managed::Conflict> = conflicts
                    .iter()
                    .filter(|c| !allowed.covers(&c.path) && !allowed.contains_under(&c.path))
                    .cloned()
                    .collect();
                result = if remaining.is_empty() {
                    managed::apply(writer, &base, &view, true, &mut entries)
                } else {
                    Err(remaining)
                };
            }
            result.map_err(|conflicts| {
                let causes: Vec<(String, String)> = conflicts
                    .iter()
                    .map(|c| (c.manager.clone(), crate::fieldset::path_string(&c.path)))
                    .collect();
                ApiError::apply_conflict(managed::conflict_message(&conflicts), &causes)
            })?
        }
    };

    // A client may rewrite managedFields explicitly (kubectl does when it migrates
    // client-side-apply ownership to server-side apply; `[]` resets them): the server
    // takes what was sent as the starting point, then records this write on top.
    if !is_apply {
        let sent = new.pointer("/metadata/managedFields");
        let stored = current
            .as_deref()
            .and_then(|c| c.pointer("/metadata/managedFields"));
        if sent.is_some() && sent != stored {
            entries = managed::read_entries(&new);
        }
    }

    // Identity and server-owned metadata.
    new["apiVersion"] = Value::String(api_version.clone());
    new["kind"] = Value::String(rt.kind.to_string());
    if !new.get("metadata").is_some_and(Value::is_object) {
        new["metadata"] = json!({});
    }
    new["metadata"]["name"] = Value::String(name.clone());
    if rt.namespaced {
        new["metadata"]["namespace"] = Value::String(ns.to_string());
    }
    let mut warnings = Vec::new();
    if let Some(validation) = ctx.validation
        && !is_apply
    {
        warnings = check_typed(rt, &mut new, validation, &decoded_from)?;
    }
    let meta = new["metadata"]
        .as_object_mut()
        .expect("set to an object above");
    match current.as_deref() {
        Some(cur) => {
            for f in [
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
                "generateName",
            ] {
                match cur.pointer(&format!("/metadata/{f}")) {
                    Some(v) => meta.insert(f.into(), v.clone()),
                    None => meta.remove(f),
                };
            }
        }
        None => {
            meta.insert("uid".into(), Value::String(s.new_uid()));
            meta.insert("creationTimestamp".into(), Value::String(now.clone()));
            meta.remove("resourceVersion");
            meta.remove("deletionTimestamp");
        }
    }

    // Subresources: main writes keep the stored status, status writes keep the rest.
    if rt.has_status {
        match (ctx.subresource, current.as_deref()) {
            ("status", Some(cur)) => {
                let status = new.get("status").cloned();
                let mut merged = cur.clone();
                match status {
                    Some(st) => merged["status"] = st,
                    None => {
                        merged.as_object_mut().map(|m| m.remove("status"));
                    }
                }
                merged["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"].clone();
                new = merged;
            }
            (_, Some(cur)) => match cur.get("status") {
                Some(st) => new["status"] = st.clone(),
                None => {
                    new.as_object_mut().map(|m| m.remove("status"));
                }
            },
            (_, None) => {
                new.as_object_mut().map(|m| m.remove("status"));
            }
        }
    }

    objects::apply_defaults(rt, &mut new);
    if res == *ids::SERVICE
        && new.pointer("/spec/clusterIP").is_none_or(Value::is_null)
        && new.pointer("/spec/type") != Some(&json!("ExternalName"))
    {
        let n = s.next_counter();
        let ip = format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 1);
        new["spec"]["clusterIP"] = Value::String(ip.clone());
        new["spec"]["clusterIPs"] = json!([ip]);
    }
    if res == *ids::NAMESPACE && current.is_none() {
        new["status"] = json!({"phase": "Active"});
    }
    if ctx.subresource != "status" {
        objects::validate(rt, &new, current.as_deref())?;
    }
    // Only the workload-style types track spec changes in `metadata.generation`.
    if matches!(
        rt.kind,
        "Deployment"
            | "ReplicaSet"
            | "HorizontalPodAutoscaler"
            | "StatefulSet"
            | "DaemonSet"
            | "Job"
            | "CronJob"
    ) {
        let generation = match current.as_deref() {
            None => 1,
            Some(cur) => {
                let g = cur
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                if objects::spec_changed(cur, &new) {
                    g + 1
                } else {
                    g
                }
            }
        };
        new["metadata"]["generation"] = json!(generation);
    }

    if !is_apply {
        let old_view = current
            .as_deref()
            .map(|c| objects::tracked_view(rt, c, ctx.subresource))
            .unwrap_or(json!({}));
        let new_view = objects::tracked_view(rt, &new, ctx.subresource);
        managed::record_update(writer, &old_view, &new_view, &mut entries);
    }
    managed::write_entries(&mut new, &entries);

    if let Some(cur) = current.as_deref()
        && same_ignoring_bookkeeping(cur, &new)
    {
        return Ok(Written {
            object: current.clone().expect("checked above"),
            created: false,
            warnings,
        });
    }
    if ctx.dry_run {
        if let Some(cur) = current.as_deref() {
            new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
        }
        return Ok(Written {
            object: Arc::new(new),
            created: current.is_none(),
            warnings,
        });
    }
    let terminating = new.pointer("/metadata/deletionTimestamp").is_some();
    let no_finalizers = new
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    // A Pod still inside its grace period is left to the kubelet.
    let grace_left = new
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        > 0;
    if terminating && no_finalizers && !grace_left {
        let last = s.remove(res, ns, &name).expect("terminating objects exist");
        return Ok(Written {
            object: last,
            created: false,
            warnings,
        });
    }
    let created = current.is_none();
    Ok(Written {
        object: s.put(res, new),
        created,
        warnings,
    })
}

/// How the object being checked came to be, which decides how the real server words a
/// decoding failure.
enum Source {
    /// A create or update body: 400 `BadRequest`.
    Body,
    /// The result of a patch: 422 `Invalid` on the field `patch`, quoting the strategic
    /// merge patch (`Some`) or the patched object (`None`).
    Patch(Option<String>),
    /// Server-side apply (checked before merging, see [`check_applied`]).
    Apply,
}

/// Checks that `new` decodes into its kind's type; drops unknown fields (reporting them
/// as warnings under `Warn`) or refuses them under `Strict`.
fn check_typed(
    rt: &crate::resources::ResourceType,
    new: &mut Value,
    validation: FieldValidation,
    source: &Source,
) -> Result<Vec<String>, ApiError> {
    let refuse = |detail: String, new: &Value| match source {
        Source::Patch(quoted) => {
            let quoted = quoted
                .clone()
                .unwrap_or_else(|| serde_json::to_string(new).unwrap_or_default());
            ApiError::invalid(
                "",
                "",
                "",
                &[(
                    "patch".into(),
                    format!("Invalid value: {}: {detail}", Value::String(quoted)),
                    "FieldValueInvalid",
                )],
            )
        }
        Source::Body | Source::Apply => ApiError::bad_request(format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: {detail}",
            kind = rt.kind,
            v = rt.version
        )),
    };
    let unknown = match decode::check(rt.kind, new) {
        Ok(u) => u,
        Err(e) => return Err(refuse(e.go_message(), new)),
    };
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let texts: Vec<String> = unknown
        .iter()
        .map(|p| format!("unknown field \"{}\"", p.dotted()))
        .collect();
    if validation == FieldValidation::Strict {
        return Err(refuse(
            format!("strict decoding error: {}", texts.join(", ")),
            new,
        ));
    }
    for p in &unknown {
        decode::remove(new, p);
    }
    Ok(if validation == FieldValidation::Warn {
        texts
    } else {
        Vec::new()
    })
}

/// Server-side apply converts the applied configuration to its typed form before
/// merging, and refuses unknown and mistyped fields whatever `fieldValidation` says, with
/// a 500 whose `Status` has no reason (kubectl: `Error from server: failed to create
/// typed patch object ...`), as the real server does.
fn check_applied(
    rt: &crate::resources::ResourceType,
    ns: &str,
    name: &str,
    config: &Value,
) -> Result<(), ApiError> {
    let mut typed = config.clone();
    typed["apiVersion"] = Value::String(rt.api_version());
    typed["kind"] = Value::String(rt.kind.to_string());
    let errors: Vec<String> = match decode::check(rt.kind, &typed) {
        Ok(unknown) => unknown
            .iter()
            .map(|p| format!("{}: field not declared in schema", p.smd(rt.kind, &typed)))
            .collect(),
        Err(e) => vec![e.smd_message(rt.kind, &typed)],
    };
    if errors.is_empty() {
        return Ok(());
    }
    let detail = if errors.len() == 1 {
        errors[0].clone()
    } else {
        format!("errors:\n  {}", errors.join("\n  "))
    };
    Err(ApiError::unreasoned(
        500,
        format!(
            "failed to create typed patch object ({ns}/{name}; {}/{}, Kind={}): {detail}",
            rt.group, rt.version, rt.kind
        ),
    ))
}

/// The fields named by `kubectl.kubernetes.io/last-applied-configuration`, if present.
fn last_applied_set(
    rt: &crate::resources::ResourceType,
    obj: &Value,
) -> Option<crate::fieldset::FieldSet> {
    let text = obj
        .pointer("/metadata/annotations")?
        .get("kubectl.kubernetes.io/last-applied-configuration")?
        .as_str()?;
    let applied: Value = serde_json::from_str(text).ok()?;
    Some(crate::fieldset::set_from_object(
        rt.kind,
        &objects::tracked_view(rt, &applied, ""),
    ))
}

fn check_identity(
    rt: &crate::resources::ResourceType,
    body: &Value,
    ns: &str,
    url_name: Option<&str>,
) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON or YAML object",
        ));
    }
    if let Some(kind) = body.get("kind").and_then(Value::as_str)
        && kind != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the object ({kind}) does not match the kind on the URL ({})",
            rt.kind
        )));
    }
    if let Some(av) = body.get("apiVersion").and_then(Value::as_str)
        && av != rt.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    let body_ns = meta_str(body, "namespace");
    if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let body_name = meta_str(body, "name");
    if let Some(url) = url_name
        && !body_name.is_empty()
        && body_name != url
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({url})"
        )));
    }
    Ok(())
}

// A write that changes nothing but managedFields timestamps is not stored, as the real
// server skips no-op updates: no new resourceVersion, no watch event.
fn same_ignoring_bookkeeping(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            if let Some(Value::Array(mf)) = m.get_mut("managedFields") {
                for e in mf {
                    e.as_object_mut().map(|e| e.remove("time"));
                }
            }
        }
        v
    };
    strip(a) == strip(b)
}

/// Delete options from the request body and query.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    /// `Background` (default), `Foreground` or `Orphan`.
    pub propagation: Option<String>,
    /// `preconditions.resourceVersion`.
    pub precondition_rv: Option<String>,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `gracePeriodSeconds` (Pods only; default: the Pod's `terminationGracePeriodSeconds`).
    pub grace_period: Option<i64>,
}

/// Simulated time a terminating Pod's containers take to stop, capped by its grace period.
pub const POD_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(2);

/// Deletes an object. Objects with finalizers are marked with `deletionTimestamp` and
/// stay until their finalizers are removed. Dependents are handled by propagation:
/// Background leaves them to the garbage collector, Foreground deletes them first,
/// Orphan removes their owner references.
pub fn delete(
    s: &mut Inner,
    res: ResId,
    ns: &str,
    name: &str,
    opts: &DeleteOpts,
) -> Result<Arc<Value>, ApiError> {
    let rt = &RESOURCES[res];
    let cur = s
        .get(res, ns, name)
        .ok_or_else(|| ApiError::not_found(&rt.qualified(), name))?;
    if let Some(uid) = &opts.precondition_uid
        && uid != meta_str(&cur, "uid")
    {
        return Err(ApiError::conflict_with(format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
            meta_str(&cur, "uid")
        )));
    }
    if let Some(rv) = &opts.precondition_rv
        && rv != meta_str(&cur, "resourceVersion")
    {
        return Err(ApiError::conflict_with(format!(
            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
            meta_str(&cur, "resourceVersion")
        )));
    }
    if opts.dry_run {
        return Ok(cur);
    }
    let has_finalizers = cur
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    // Pods terminate gracefully: marked now, removed by the kubelet once their containers
    // have stopped. A zero grace period (`--grace-period=0 --force`) removes them at once.
    if res == *ids::POD {
        let grace = opts
            .grace_period
            .or_else(|| {
                cur.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30)
            .max(0);
        let marked_already = cur.pointer("/metadata/deletionTimestamp").is_some();
        if grace > 0 || has_finalizers {
            if marked_already {
                return Ok(cur);
            }
            let mut marked = (*cur).clone();
            marked["metadata"]["deletionTimestamp"] = Value::String(s.clock.now_rfc3339());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            return Ok(s.put(res, marked));
        }
    }
    if has_finalizers {
        if cur.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(cur);
        }
        let mut marked = (*cur).clone();
        marked["metadata"]["deletionTimestamp"] = Value::String(s.clock.now_rfc3339());
        marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        return Ok(s.put(res, marked));
    }
    let uid = meta_str(&cur, "uid").to_string();
    match opts.propagation.as_deref() {
        Some("Orphan") => orphan_dependents(s, &uid),
        Some("Foreground") => delete_dependents(s, &uid),
        _ => {}
    }
    if res == *ids::NAMESPACE {
        // Namespaces finalize at once here: everything in them goes with them.
        for r in 0..RESOURCES.len() {
            let names: Vec<String> = s
                .list(r, Some(name))
                .map(|o| meta_str(o, "name").to_string())
                .collect();
            for n in names {
                s.remove(r, name, &n);
            }
        }
    }
    // A self-owned object may already have gone with its dependents.
    Ok(s.remove(res, ns, name).unwrap_or(cur))
}

fn dependents(s: &Inner, owner_uid: &str) -> Vec<(ResId, String, String)> {
    let mut out = Vec::new();
    for r in 0..RESOURCES.len() {
        for o in s.list(r, None) {
            let owned = o
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|x| x.get("uid").and_then(Value::as_str) == Some(owner_uid))
                });
            if owned {
                out.push((
                    r,
                    meta_str(o, "namespace").to_string(),
                    meta_str(o, "name").to_string(),
                ));
            }
        }
    }
    out
}

fn delete_dependents(s: &mut Inner, owner_uid: &str) {
    // Owner references can form cycles (or point at their own object): visit each once.
    let mut seen = std::collections::HashSet::from([owner_uid.to_string()]);
    let mut stack = vec![owner_uid.to_string()];
    let mut doomed = Vec::new();
    while let Some(uid) = stack.pop() {
        for (r, ns, n) in dependents(s, &uid) {
            let Some(o) = s.get(r, &ns, &n) else { continue };
            let child = meta_str(&o, "uid").to_string();
            if seen.insert(child.clone()) {
                stack.push(child);
                doomed.push((r, ns, n));
            }
        }
    }
    // Deepest first, as foreground deletion removes dependents before their owners.
    for (r, ns, n) in doomed.into_iter().rev() {
        s.remove(r, &ns, &n);
    }
}

fn orphan_dependents(s: &mut Inner, owner_uid: &str) {
    for (r, ns, n) in dependents(s, owner_uid) {
        if let Some(o) = s.get(r, &ns, &n) {
            let mut o = (*o).clone();
            if let Some(refs) = o
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|x| x.get("uid").and_then(Value::as_str) != Some(owner_uid));
            }
            s.put(r, o);
        }
    }
}

/// Garbage collection: deletes objects whose every owner is gone (Background propagation).
pub fn collect_garbage(s: &mut Inner) {
    if s.deleted_uids.is_empty() {
        return;
    }
    // Deleting dependents records their uids in turn, so cascades run to the end.
    while !s.deleted_uids.is_empty() {
        let gone = std::mem::take(&mut s.deleted_uids);
        let mut victims = Vec::new();
        for uid in &gone {
            for (r, ns, n) in dependents(s, uid) {
                let Some(o) = s.get(r, &ns, &n) else { continue };
                let all_gone = o
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter().all(|x| {
                            !s.uid_exists(x.get("uid").and_then(Value::as_str).unwrap_or_default())
                        })
                    });
                if all_gone {
                    victims.push((r, ns, n));
                }
            }
        }
        for (r, ns, n) in victims {
            s.remove(r, &ns, &n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimClock;
    use crate::resources::by_kind;

    fn store() -> Inner {
        let (mut s, _rx) = Inner::new(SimClock::new(1.0), 100);
        let ns = json!({"metadata": {"name": "default"}});
        write(
            &mut s,
            *ids::NAMESPACE,
            "",
            "",
            Change::Create(ns),
            ctx("test"),
        )
        .unwrap();
        s
    }

    fn ctx(manager: &str) -> WriteCtx<'_> {
        WriteCtx {
            manager,
            subresource: "",
            dry_run: false,
            validation: None,
        }
    }

    fn deployment(image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}}}})
    }

    fn rv(o: &Value) -> &str {
        meta_str(o, "resourceVersion")
    }

    #[test]
    fn generation_moves_with_spec_only_and_no_op_writes_are_not_stored() {
        let mut s = store();
        let d = *ids::DEPLOYMENT;
        let created = write(
            &mut s,
            d,
            "default",
            "",
            Change::Create(deployment("a:1")),
            ctx("m"),
        )
        .unwrap();
        assert!(created.created);
        assert_eq!(created.object["metadata"]["generation"], 1);
        let same = write(
            &mut s,
            d,
            "default",
            "web",
            Change::Patch(PatchType::Merge, json!({"spec": {"replicas": 1}})),
            ctx("m"),
        )
        .unwrap();
        assert_eq!(
            rv(&same.object),
            rv(&created.object),
            "defaulted value re-sent: nothing changes"
        );
        let labelled = write(
            &mut s,
            d,
            "default",
            "web",
            Change::Patch(
                PatchType::Merge,
                json!({"metadata": {"labels": {"x": "y"}}}),
            ),
            ctx("m"),
        )
        .unwrap();
        assert_eq!(labelled.object["metadata"]["generation"], 1);
        let changed = write(
            &mut s,
            d,
            "default",
            "web",
            Change::Patch(PatchType::Merge, json!({"spec": {"replicas": 3}})),
            ctx("m"),
        )
        .unwrap();
        assert_eq!(changed.object["metadata"]["generation"], 2);
        assert_ne!(rv(&changed.object), rv(&labelled.object));
    }

    #[test]
    fn status_and_main_writes_do_not_touch_each_other() {
        let mut s = store();
        let d = *ids::DEPLOYMENT;
        write(
            &mut s,
            d,
            "default",
            "",
            Change::Create(deployment("a:1")),
            ctx("m"),
        )
        .unwrap();
        let status = WriteCtx {
            subresource: "status",
            ..ctx("controller")
        };
        let mut with_status = (*s.get(d, "default", "web").unwrap()).clone();
        with_status["status"] = json!({"replicas": 1});
        with_status["spec"]["replicas"] = json!(9);
        let out = write(
            &mut s,
            d,
            "default",
            "web",
            Change::Replace(with_status),
            status,
        )
        .unwrap();
        assert_eq!(out.object["status"]["replicas"], 1);
        assert_eq!(
            out.object["spec"]["replicas"], 1,
            "a status write ignores spec"
        );
        let mut main = (*out.object).clone();
        main["status"] = json!({"replicas": 7});
        let out = write(&mut s, d, "default", "web", Change::Replace(main), ctx("m")).unwrap();
        assert_eq!(
            out.object["status"]["replicas"], 1,
            "a main write ignores status"
        );
        let managers: Vec<(String, String)> = managed::read_entries(&out.object)
            .into_iter()
            .map(|e| (e.manager, e.subresource))
            .collect();
        assert!(
            managers.contains(&("controller".into(), "status".into())),
            "{managers:?}"
        );
    }

    #[test]
    fn preconditions_dry_run_and_finalizers() {
        let mut s = store();
        let cm = *ids::CONFIGMAP;
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["x/y"]}});
        let dry = write(
            &mut s,
            cm,
            "default",
            "",
            Change::Create(body.clone()),
            WriteCtx {
                dry_run: true,
                ..ctx("m")
            },
        )
        .unwrap();
        assert!(dry.created && s.get(cm, "default", "c").is_none());
        let created = write(&mut s, cm, "default", "", Change::Create(body), ctx("m")).unwrap();
        let mut stale = (*created.object).clone();
        stale["metadata"]["resourceVersion"] = json!("1");
        let e = write(&mut s, cm, "default", "c", Change::Replace(stale), ctx("m")).unwrap_err();
        assert_eq!((e.code, e.reason), (409, "Conflict"));
        let apply = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "resourceVersion": "1"}});
        let e = write(
            &mut s,
            cm,
            "default",
            "c",
            Change::Apply {
                config: apply,
                force: false,
            },
            ctx("m"),
        )
        .unwrap_err();
        assert_eq!(e.code, 409);

        let marked = delete(&mut s, cm, "default", "c", &DeleteOpts::default()).unwrap();
        assert!(marked.pointer("/metadata/deletionTimestamp").is_some());
        assert!(s.get(cm, "default", "c").is_some(), "held by its finalizer");
        let release = json!({"metadata": {"finalizers": null}});
        write(
            &mut s,
            cm,
            "default",
            "c",
            Change::Patch(PatchType::Merge, release),
            ctx("m"),
        )
        .unwrap();
        assert!(
            s.get(cm, "default", "c").is_none(),
            "gone once the finalizer is removed"
        );
    }

    #[test]
    fn background_deletion_is_finished_by_the_garbage_collector() {
        let mut s = store();
        let cm = *ids::CONFIGMAP;
        let owner = write(
            &mut s,
            cm,
            "default",
            "",
            Change::Create(json!({"metadata": {"name": "owner"}})),
            ctx("m"),
        )
        .unwrap();
        let uid = meta_str(&owner.object, "uid").to_string();
        let child = json!({"metadata": {"name": "child", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}});
        write(&mut s, cm, "default", "", Change::Create(child), ctx("m")).unwrap();
        delete(&mut s, cm, "default", "owner", &DeleteOpts::default()).unwrap();
        assert!(s.get(cm, "default", "child").is_some());
        collect_garbage(&mut s);
        assert!(s.get(cm, "default", "child").is_none());
        assert_eq!(by_kind("ConfigMap"), Some(cm));
    }

    #[test]
    fn foreground_deletion_survives_ownership_cycles() {
        let mut s = store();
        let cm = *ids::CONFIGMAP;
        let a = write(
            &mut s,
            cm,
            "default",
            "",
            Change::Create(json!({"metadata": {"name": "a"}})),
            ctx("m"),
        )
        .unwrap();
        let a_uid = meta_str(&a.object, "uid").to_string();
        let owned_by_a = json!({"metadata": {"name": "b", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "a", "uid": a_uid}]}});
        let b = write(
            &mut s,
            cm,
            "default",
            "",
            Change::Create(owned_by_a),
            ctx("m"),
        )
        .unwrap();
        let b_uid = meta_str(&b.object, "uid").to_string();
        // a is owned by b and by itself.
        let cycle = json!({"metadata": {"ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "b", "uid": b_uid},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "a", "uid": a_uid}]}});
        write(
            &mut s,
            cm,
            "default",
            "a",
            Change::Patch(PatchType::Merge, cycle),
            ctx("m"),
        )
        .unwrap();
        let opts = DeleteOpts {
            propagation: Some("Foreground".into()),
            ..Default::default()
        };
        delete(&mut s, cm, "default", "a", &opts).unwrap();
        assert!(s.get(cm, "default", "a").is_none() && s.get(cm, "default", "b").is_none());
    }
}
