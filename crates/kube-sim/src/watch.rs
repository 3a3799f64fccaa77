//! Watches: replay from a `resourceVersion` (or synthetic ADDED events for a fresh
//! watch), then live events, streamed as one JSON object per line. Selectors are applied
//! per event, so an object that stops matching is sent as DELETED, as the real server does.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::http::{Body, Query, Shared};
use crate::resources::{RESOURCES, ResId};
use crate::routes::Target;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{Event, EventType};

/// How often a watch that allows bookmarks gets one (the real server: about a minute).
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

/// Which objects a watch wants.
#[derive(Debug, Clone)]
pub struct Filter {
    res: ResId,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    /// Whether `obj` (of the filter's type) is selected.
    pub fn matches(&self, obj: &Value) -> bool {
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        self.ns.as_deref().is_none_or(|want| want == ns)
            && self.labels.matches(obj.pointer("/metadata/labels"))
            && self.fields.matches(obj)
    }

    /// The event a watcher with this filter sees for `ev`, if any.
    pub fn translate(&self, ev: &Event) -> Option<(EventType, Arc<Value>)> {
        if ev.res != self.res {
            return None;
        }
        let was = ev.old.as_deref().is_some_and(|o| self.matches(o));
        let is = self.matches(&ev.object);
        match ev.kind {
            EventType::Deleted => was.then(|| (EventType::Deleted, ev.object.clone())),
            EventType::Added => is.then(|| (EventType::Added, ev.object.clone())),
            EventType::Modified => match (was, is) {
                (true, true) => Some((EventType::Modified, ev.object.clone())),
                (false, true) => Some((EventType::Added, ev.object.clone())),
                (true, false) => Some((EventType::Deleted, ev.object.clone())),
                (false, false) => None,
            },
        }
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// Starts a watch; the response streams until the client leaves, `timeoutSeconds`
/// passes, or a fault drops it.
pub fn start(
    shared: &Arc<Shared>,
    t: &Target,
    q: &Query,
    table: bool,
) -> Result<Response<Body>, ApiError> {
    let rt = &RESOURCES[t.res];
    let filter = Filter {
        res: t.res,
        ns: if rt.namespaced { t.ns.clone() } else { None },
        labels: LabelSelector::parse(
            q.get("labelSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        )
        .map_err(ApiError::bad_request)?,
        fields: FieldSelector::parse(
            q.get("fieldSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        )
        .map_err(ApiError::bad_request)?,
    };
    let rv = q
        .get("resourceVersion")
        .filter(|r| !r.is_empty() && *r != "0")
        .cloned();
    let send_initial = q.get("sendInitialEvents").is_some_and(|v| v == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0);

    // kubectl's human output asks for Table rows in watch events too.
    let clock = shared.clock.clone();
    let kind = rt.kind;
    let render = move |ty: &str, o: &Value| -> Bytes {
        if table && matches!(ty, "ADDED" | "MODIFIED" | "DELETED") {
            let rv = o
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            line(ty, &crate::table::table(kind, &[o], rv, None, clock.now()))
        } else {
            line(ty, o)
        }
    };
    let render_live = render.clone();
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut first: Vec<Bytes> = Vec::new();
    let live: Option<broadcast::Receiver<Arc<Event>>>;
    {
        let s = shared.lock();
        match rv.as_deref().map(str::parse::<u64>) {
            Some(Ok(from)) if !send_initial => match s.watch_from(t.res, from) {
                Ok((replay, rx)) => {
                    for ev in &replay {
                        if let Some((k, o)) = filter.translate(ev) {
                            first.push(render(k.as_str(), &o));
                        }
                    }
                    live = Some(rx);
                }
                Err(too_old) => {
                    let e = ApiError::expired(format!(
                        "too old resource version: {from} ({})",
                        too_old.oldest
                    ));
                    let mut status = e.to_status();
                    status["reason"] = json!("Expired");
                    first.push(line("ERROR", &status));
                    live = None;
                }
            },
            Some(Err(_)) => {
                return Err(ApiError::bad_request(format!(
                    "invalid resource version: {}",
                    rv.unwrap_or_default()
                )));
            }
            _ => {
                // A fresh watch (or sendInitialEvents) starts with the current state.
                let objs: Vec<&Arc<Value>> = s
                    .list(t.res, filter.ns.as_deref())
                    .filter(|o| filter.matches(o))
                    .collect();
                for o in objs {
                    first.push(render("ADDED", o));
                }
                if send_initial {
                    let bookmark = json!({
                        "kind": rt.kind, "apiVersion": rt.api_version(),
                        "metadata": {"resourceVersion": s.rv().to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}
                    });
                    first.push(line("BOOKMARK", &bookmark));
                }
                live = Some(s.subscribe());
            }
        }
    }

    let faults = shared.faults.clone();
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let shared_for_bookmarks = shared.clone();
    let (bm_kind, bm_api_version) = (rt.kind, rt.api_version());
    tokio::spawn(async move {
        for b in first {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        let Some(mut live) = live else { return };
        let mut drops = faults.drop_signal();
        drops.borrow_and_update();
        let limit = [timeout.map(Duration::from_secs), faults.watch_lifetime()]
            .into_iter()
            .flatten()
            .min();
        let deadline = limit.map(|d| tokio::time::Instant::now() + d);
        let mut bookmark_tick = tokio::time::interval(BOOKMARK_EVERY);
        bookmark_tick.reset();
        loop {
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = live.recv() => match ev {
                    Ok(ev) => {
                        if let Some((k, o)) = filter.translate(&ev)
                            && tx.send(render_live(k.as_str(), &o)).await.is_err()
                        {
                            return;
                        }
                    }
                    // A watcher that falls this far behind is cut off; clients re-list.
                    Err(_) => return,
                },
                _ = bookmark_tick.tick(), if bookmarks => {
                    // Only when every queued event has been delivered, so the bookmark's
                    // version never runs ahead of events still to come. Checked under the
                    // store lock, which is also held while events are sent.
                    let rv = {
                        let s = shared_for_bookmarks.lock();
                        live.is_empty().then(|| s.rv())
                    };
                    if let Some(rv) = rv {
                        let bm = json!({"kind": bm_kind, "apiVersion": bm_api_version, "metadata": {"resourceVersion": rv.to_string()}});
                        if tx.send(line("BOOKMARK", &bm)).await.is_err() {
                            return;
                        }
                    }
                }
                _ = drops.changed() => return,
                _ = sleep => return,
                _ = tx.closed() => return,
            }
        }
    });

    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert("transfer-encoding", HeaderValue::from_static("chunked"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventType, old: Option<Value>, new: Value) -> Event {
        Event {
            rv: 2,
            kind,
            res: 0,
            ns: "a".into(),
            object: Arc::new(new),
            old: old.map(Arc::new),
        }
    }

    #[test]
    fn selector_transitions_become_added_and_deleted() {
        let f = Filter {
            res: 0,
            ns: Some("a".into()),
            labels: LabelSelector::parse("color=blue").unwrap(),
            fields: FieldSelector::default(),
        };
        let blue = json!({"metadata": {"namespace": "a", "labels": {"color": "blue"}}});
        let green = json!({"metadata": {"namespace": "a", "labels": {"color": "green"}}});
        let kind = |e: Event| f.translate(&e).map(|(k, _)| k);
        assert_eq!(
            kind(ev(EventType::Modified, Some(blue.clone()), green.clone())),
            Some(EventType::Deleted)
        );
        assert_eq!(
            kind(ev(EventType::Modified, Some(green.clone()), blue.clone())),
            Some(EventType::Added)
        );
        assert_eq!(
            kind(ev(EventType::Modified, Some(green.clone()), green.clone())),
            None
        );
        assert_eq!(
            kind(ev(EventType::Deleted, Some(blue.clone()), blue.clone())),
            Some(EventType::Deleted)
        );
        let other_ns = json!({"metadata": {"namespace": "b", "labels": {"color": "blue"}}});
        assert_eq!(kind(ev(EventType::Added, None, other_ns)), None);
    }
}
