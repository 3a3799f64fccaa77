//! Counts of the HTTP requests a client made, by kind, so tests and reports can show cost.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What an HTTP request to a registry or token service was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RequestKind {
    /// Token service request (Bearer token exchange).
    Token,
    /// `GET /v2/<name>/manifests/<ref>`.
    ManifestGet,
    /// `HEAD /v2/<name>/manifests/<ref>`.
    ManifestHead,
    /// `PUT /v2/<name>/manifests/<ref>`.
    ManifestPut,
    /// `HEAD /v2/<name>/blobs/<digest>`.
    BlobHead,
    /// `POST /v2/<name>/blobs/uploads/?mount=...&from=...`.
    BlobMount,
    /// `GET /v2/<name>/blobs/<digest>`.
    BlobGet,
    /// Upload session requests: start (POST), chunk (PATCH), finish (PUT), cancel (DELETE).
    BlobUpload,
    /// `GET /v2/<name>/tags/list` (one per page).
    TagList,
    /// `DELETE /v2/<name>/manifests/<digest>`.
    ManifestDelete,
}

impl RequestKind {
    /// Every kind, in display order.
    pub const ALL: [RequestKind; 10] = [
        RequestKind::Token,
        RequestKind::ManifestGet,
        RequestKind::ManifestHead,
        RequestKind::ManifestPut,
        RequestKind::BlobHead,
        RequestKind::BlobMount,
        RequestKind::BlobGet,
        RequestKind::BlobUpload,
        RequestKind::TagList,
        RequestKind::ManifestDelete,
    ];

    fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or_default()
    }

    /// Short name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            RequestKind::Token => "token",
            RequestKind::ManifestGet => "manifest-get",
            RequestKind::ManifestHead => "manifest-head",
            RequestKind::ManifestPut => "manifest-put",
            RequestKind::BlobHead => "blob-head",
            RequestKind::BlobMount => "blob-mount",
            RequestKind::BlobGet => "blob-get",
            RequestKind::BlobUpload => "blob-upload",
            RequestKind::TagList => "tag-list",
            RequestKind::ManifestDelete => "manifest-delete",
        }
    }
}

/// Shared, thread-safe request counter; clones count into the same totals.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<[AtomicU64; 10]>);

impl RequestCounter {
    /// Records one request of `kind`.
    pub fn record(&self, kind: RequestKind) {
        self.0[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> RequestCounts {
        let mut counts = [0; 10];
        for (slot, atomic) in counts.iter_mut().zip(self.0.iter()) {
            *slot = atomic.load(Ordering::Relaxed);
        }
        RequestCounts(counts)
    }
}

/// A snapshot of request counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestCounts([u64; 10]);

impl RequestCounts {
    /// Requests of one kind.
    pub fn get(&self, kind: RequestKind) -> u64 {
        self.0[kind.index()]
    }

    /// Manifest GET + HEAD + PUT.
    pub fn manifest_requests(&self) -> u64 {
        self.get(RequestKind::ManifestGet)
            + self.get(RequestKind::ManifestHead)
            + self.get(RequestKind::ManifestPut)
    }

    /// Token service requests (the client sends no separate `/v2/` ping: it learns the
    /// authentication scheme from the first 401, or knows it for ghcr.io and Docker Hub).
    pub fn auth_requests(&self) -> u64 {
        self.get(RequestKind::Token)
    }

    /// Blob HEAD, mount, GET and upload requests.
    pub fn blob_requests(&self) -> u64 {
        self.get(RequestKind::BlobHead)
            + self.get(RequestKind::BlobMount)
            + self.get(RequestKind::BlobGet)
            + self.get(RequestKind::BlobUpload)
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Counts made since `earlier` (for measuring one operation on a long-lived client).
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        let mut out = [0; 10];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = self.0[i].saturating_sub(earlier.0[i]);
        }
        RequestCounts(out)
    }
}

impl fmt::Display for RequestCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} requests", self.total())?;
        let parts: Vec<String> = RequestKind::ALL
            .iter()
            .filter(|k| self.get(**k) > 0)
            .map(|k| format!("{} {}", k.name(), self.get(*k)))
            .collect();
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_groups() {
        let counter = RequestCounter::default();
        let shared = counter.clone();
        counter.record(RequestKind::Token);
        shared.record(RequestKind::ManifestGet);
        shared.record(RequestKind::ManifestPut);
        counter.record(RequestKind::BlobMount);
        let before = counter.snapshot();
        counter.record(RequestKind::ManifestHead);
        let now = counter.snapshot();
        assert_eq!(now.manifest_requests(), 3);
        assert_eq!(now.auth_requests(), 1);
        assert_eq!(now.blob_requests(), 1);
        assert_eq!(now.total(), 5);
        let delta = now.since(&before);
        assert_eq!(delta.total(), 1);
        assert_eq!(delta.get(RequestKind::ManifestHead), 1);
        assert_eq!(
            now.to_string(),
            "5 requests (token 1, manifest-get 1, manifest-head 1, manifest-put 1, blob-mount 1)"
        );
    }
}
