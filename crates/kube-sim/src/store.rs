//! The object store: every object by type, namespace and name, one global
//! `resourceVersion` counter, and a bounded history of change events that watches
//! replay from. Storage only; the rules for writes live in [`crate::writes`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

use crate::clock::SimClock;
use crate::resources::{RESOURCES, ResId};

/// Watch event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as stored in the history and broadcast to watches.
#[derive(Debug)]
pub struct Event {
    /// resourceVersion of the change.
    pub rv: u64,
    /// What happened.
    pub kind: EventType,
    /// Type of the object.
    pub res: ResId,
    /// Namespace (empty for cluster-scoped).
    pub ns: String,
    /// The object after the change (for deletes: its last state, at the delete's version).
    pub object: Arc<Value>,
    /// The object before the change, so a filtered watch can tell "stopped matching"
    /// (sent as DELETED) from "changed".
    pub old: Option<Arc<Value>>,
}

/// Objects keyed by (namespace, name).
pub type Bucket = BTreeMap<(String, String), Arc<Value>>;

/// A replay of past events and a receiver for live ones.
pub type Subscription = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

type Entries<'a> = Box<dyn Iterator<Item = (&'a (String, String), &'a Arc<Value>)> + 'a>;

/// All state guarded by the store's mutex.
pub struct Inner {
    rv: u64,
    buckets: Vec<Bucket>,
    history: VecDeque<Arc<Event>>,
    history_cap: usize,
    tx: broadcast::Sender<Arc<Event>>,
    counter: u64,
    /// uid -> (type, namespace, name), for owner lookups and garbage collection.
    uids: HashMap<String, (ResId, String, String)>,
    /// uids deleted since the garbage collector last ran.
    pub deleted_uids: Vec<String>,
    /// The simulated clock, for timestamps.
    pub clock: SimClock,
    hooks: Vec<crate::changes::ChangeHook>,
}

/// Why a watch could not start from the requested version.
#[derive(Debug)]
pub struct TooOld {
    /// Oldest version a watch can still start from.
    pub oldest: u64,
}

impl Inner {
    /// A fresh store; `history_cap` bounds how far back a watch may resume.
    pub fn new(clock: SimClock, history_cap: usize) -> (Self, broadcast::Receiver<Arc<Event>>) {
        let (tx, rx) = broadcast::channel(16_384);
        let inner = Self {
            rv: 1,
            buckets: RESOURCES.iter().map(|_| Bucket::new()).collect(),
            history: VecDeque::new(),
            history_cap: history_cap.max(1),
            tx,
            counter: 0,
            uids: HashMap::new(),
            deleted_uids: Vec::new(),
            clock,
            hooks: Vec::new(),
        };
        (inner, rx)
    }

    /// The current resourceVersion.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// The stored object.
    pub fn get(&self, res: ResId, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.buckets[res]
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// All objects of a type, optionally in one namespace, in (namespace, name) order.
    pub fn list<'a>(
        &'a self,
        res: ResId,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Arc<Value>> + 'a {
        let bucket = &self.buckets[res];
        let iter: Entries<'a> = match ns {
            Some(ns) => Box::new(
                bucket
                    .range((ns.to_string(), String::new())..)
                    .take_while(move |((n, _), _)| n == ns),
            ),
            None => Box::new(bucket.iter()),
        };
        iter.map(|(_, v)| v)
    }

    /// Objects after `after` (exclusive) in key order, for paginated lists.
    pub fn list_after<'a>(
        &'a self,
        res: ResId,
        ns: Option<&'a str>,
        after: (String, String),
    ) -> impl Iterator<Item = &'a Arc<Value>> + 'a {
        use std::ops::Bound;
        self.buckets[res]
            .range((Bound::Excluded(after), Bound::Unbounded))
            .filter(move |((n, _), _)| ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v)
    }

    /// The object with this uid, if it exists.
    pub fn by_uid(&self, uid: &str) -> Option<Arc<Value>> {
        let (res, ns, name) = self.uids.get(uid)?;
        self.get(*res, ns, name)
    }

    /// Whether an object with this uid exists.
    pub fn uid_exists(&self, uid: &str) -> bool {
        self.uids.contains_key(uid)
    }

    /// A fresh number, for uids, generated names and IPs.
    pub fn next_counter(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// A uid in the usual 8-4-4-4-12 form.
    pub fn new_uid(&mut self) -> String {
        let n = self.next_counter();
        let h = mix(n);
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            h >> 32,
            (h >> 16) & 0xffff,
            h & 0xfff,
            n & 0xfff,
            mix(h) & 0xffff_ffff_ffff
        )
    }

    /// A five-character suffix like the ones `generateName` and ReplicaSets use.
    pub fn random_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut h = mix(self.next_counter());
        (0..5)
            .map(|_| {
                let c = ALPHABET[(h % ALPHABET.len() as u64) as usize] as char;
                h /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    /// Stores `obj` (already validated) at a new resourceVersion and emits the event.
    pub fn put(&mut self, res: ResId, mut obj: Value) -> Arc<Value> {
        self.rv += 1;
        let rv = self.rv;
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let ns = str_at(&obj, "namespace").to_string();
        let name = str_at(&obj, "name").to_string();
        let uid = str_at(&obj, "uid").to_string();
        let obj = Arc::new(obj);
        let old = self.buckets[res].insert((ns.clone(), name.clone()), obj.clone());
        if !uid.is_empty() {
            self.uids.insert(uid, (res, ns.clone(), name));
        }
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.emit(Event {
            rv,
            kind,
            res,
            ns,
            object: obj.clone(),
            old,
        });
        obj
    }

    /// Removes an object, emitting DELETED at a new resourceVersion.
    pub fn remove(&mut self, res: ResId, ns: &str, name: &str) -> Option<Arc<Value>> {
        let old = self.buckets[res].remove(&(ns.to_string(), name.to_string()))?;
        self.rv += 1;
        let rv = self.rv;
        let uid = str_at(&old, "uid").to_string();
        self.uids.remove(&uid);
        self.deleted_uids.push(uid);
        let mut last = (*old).clone();
        last["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let last = Arc::new(last);
        self.emit(Event {
            rv,
            kind: EventType::Deleted,
            res,
            ns: ns.to_string(),
            object: last.clone(),
            old: Some(old),
        });
        Some(last)
    }

    /// Registers a hook called with every change from now on, in order, under the lock.
    pub fn add_hook(&mut self, hook: crate::changes::ChangeHook) {
        self.hooks.push(hook);
    }

    fn emit(&mut self, ev: Event) {
        let ev = Arc::new(ev);
        if !self.hooks.is_empty() {
            let change = crate::changes::StoredChange::from_event(&ev);
            for hook in &self.hooks {
                hook(&change);
            }
        }
        if self.history.len() >= self.history_cap {
            self.history.pop_front();
        }
        self.history.push_back(ev.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.tx.send(ev);
    }

    /// The oldest resourceVersion a watch or continue token may start from.
    pub fn oldest_resumable(&self) -> u64 {
        self.history.front().map(|e| e.rv - 1).unwrap_or(self.rv)
    }

    /// Events after `from` for a type, plus a receiver for what follows; taken under the
    /// lock so nothing falls between the replay and the live stream.
    pub fn watch_from(&self, res: ResId, from: u64) -> Result<Subscription, TooOld> {
        if from < self.oldest_resumable() {
            return Err(TooOld {
                oldest: self.oldest_resumable(),
            });
        }
        let replay = self
            .history
            .iter()
            .filter(|e| e.rv > from && e.res == res)
            .cloned()
            .collect();
        Ok((replay, self.tx.subscribe()))
    }

    /// A receiver for live events only.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Number of stored objects, all types.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(BTreeMap::len).sum()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn str_at<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

// splitmix64: deterministic, well-spread identifiers without a random number crate.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_increase_and_history_is_bounded() {
        let (mut s, _rx) = Inner::new(SimClock::new(1.0), 3);
        for i in 0..5 {
            s.put(
                0,
                json!({"metadata": {"name": format!("n{i}"), "uid": format!("u{i}")}}),
            );
        }
        assert_eq!(s.rv(), 6);
        assert_eq!(s.list(0, None).count(), 5);
        assert!(s.watch_from(0, 2).is_err());
        let (replay, _) = s.watch_from(0, 4).unwrap();
        assert_eq!(replay.iter().map(|e| e.rv).collect::<Vec<_>>(), [5, 6]);
        let gone = s.remove(0, "", "n0").unwrap();
        assert_eq!(gone["metadata"]["resourceVersion"], "7");
        assert_eq!(s.deleted_uids, ["u0"]);
        assert!(!s.uid_exists("u0") && s.uid_exists("u1"));
    }

    #[test]
    fn namespace_listing_is_exact_and_pages_resume_after_a_key() {
        let (mut s, _rx) = Inner::new(SimClock::new(1.0), 10);
        for (ns, n) in [("a", "x"), ("ab", "y"), ("a", "z")] {
            s.put(1, json!({"metadata": {"name": n, "namespace": ns}}));
        }
        assert_eq!(s.list(1, Some("a")).count(), 2);
        let after: Vec<_> = s
            .list_after(1, None, ("a".into(), "x".into()))
            .map(|o| o["metadata"]["name"].clone())
            .collect();
        assert_eq!(after, [json!("z"), json!("y")]);
        assert_ne!(s.random_suffix(), s.random_suffix());
    }
}
