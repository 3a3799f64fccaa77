//! Manifest media types and what a manifest refers to (child manifests, blobs).
//!
//! Manifests are only ever *read* here: the bytes a registry returned are what gets pushed
//! again, so digests stay the same. Parsing is limited to the descriptor lists a copy needs.

use serde::Deserialize;

use super::digest::Digest;
use super::server_text::shown;

/// OCI image index (multi-platform list, also used for attestations).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list (Docker's multi-platform list).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The `Accept` header for manifest requests: every type this tool can copy, so the
/// registry never converts a manifest to another type (conversion would change the digest).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Layer media types whose blobs are not distributable: registries may not hold them, so a
/// copy leaves them to be fetched from their `urls` as the image spec says.
const NON_DISTRIBUTABLE: [&str; 4] = [
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

/// Whether a manifest lists other manifests or describes one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// OCI index or Docker manifest list: refers to child manifests.
    Index,
    /// OCI or Docker image manifest (also OCI artifacts): refers to blobs.
    Image,
}

/// Why manifest bytes could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The media type is not one of the four this tool copies (e.g. Docker schema 1).
    #[error(
        "manifest media type {0:?} is not supported; supported are OCI index/manifest and Docker manifest list/v2"
    )]
    UnsupportedMediaType(String),
    /// The body is not the JSON the media type promises.
    #[error("manifest body is not valid {media_type} JSON: {reason}")]
    Malformed {
        /// The media type the body was read as.
        media_type: String,
        /// The parser's complaint.
        reason: String,
    },
    /// `schemaVersion` is missing or not 2 (the only version of the four types).
    #[error("manifest schemaVersion is {0}, expected 2")]
    SchemaVersion(String),
    /// The body's `mediaType` contradicts the type it is sent or stored as.
    #[error("manifest body says mediaType {body:?} but is typed {declared:?}")]
    MediaTypeMismatch {
        /// The body's `mediaType`.
        body: String,
        /// The `Content-Type` it goes with.
        declared: String,
    },
}

/// Checks, before a PUT, that `body` is a whole manifest or index of one of the four
/// supported types, so that truncated or foreign bytes are never written anywhere: valid
/// JSON, `schemaVersion` 2, a `mediaType` (when the body has one) matching `content_type`,
/// and descriptors that parse.
pub fn check_for_put(content_type: &str, body: &[u8]) -> Result<ManifestKind, ManifestError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Header {
        schema_version: Option<serde_json::Value>,
        media_type: Option<String>,
    }
    let header: Header = serde_json::from_slice(body).map_err(|e| ManifestError::Malformed {
        media_type: shown(content_type),
        reason: shown(&e.to_string()),
    })?;
    match &header.schema_version {
        Some(v) if v.as_u64() == Some(2) => {}
        Some(other) => return Err(ManifestError::SchemaVersion(shown(&other.to_string()))),
        None => return Err(ManifestError::SchemaVersion("missing".into())),
    }
    let kind = manifest_kind(Some(content_type), body)?;
    let declared = essence(content_type);
    if let Some(in_body) = &header.media_type
        && declared != "application/json"
        && essence(in_body) != declared
    {
        return Err(ManifestError::MediaTypeMismatch {
            body: shown(in_body),
            declared: shown(&declared),
        });
    }
    manifest_refs(kind, body)?;
    Ok(kind)
}

/// A content descriptor as far as copying needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// The media type of what it points at.
    pub media_type: String,
    /// The digest of what it points at.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// What one manifest refers to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ManifestRefs {
    /// Child manifests (entries of an index), copied before the parent.
    pub manifests: Vec<Descriptor>,
    /// Blobs (config and layers) that must exist in the destination repository.
    pub blobs: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    urls: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<RawDescriptor>,
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
    /// Early OCI artifact manifests listed their content under `blobs`.
    #[serde(default)]
    blobs: Vec<RawDescriptor>,
}

/// Strips media type parameters (`; charset=utf-8`) and case differences for comparison.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Classifies a manifest from the `Content-Type` the registry sent, falling back to the
/// body's `mediaType` when the header is missing or generic JSON (some registries do that).
pub fn manifest_kind(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<ManifestKind, ManifestError> {
    let from_header = content_type
        .map(essence)
        .filter(|t| !t.is_empty() && t != "application/json");
    let media_type = match from_header {
        Some(t) => t,
        None => {
            let raw: RawManifest =
                serde_json::from_slice(body).map_err(|e| ManifestError::Malformed {
                    media_type: "manifest".into(),
                    reason: shown(&e.to_string()),
                })?;
            match raw.media_type {
                Some(t) => essence(&t),
                // An OCI manifest may omit mediaType; its shape then tells.
                None if !raw.manifests.is_empty() => OCI_INDEX.into(),
                None if raw.config.is_some() => OCI_MANIFEST.into(),
                None => return Err(ManifestError::UnsupportedMediaType("(none)".into())),
            }
        }
    };
    match media_type.as_str() {
        OCI_INDEX | DOCKER_MANIFEST_LIST => Ok(ManifestKind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => Ok(ManifestKind::Image),
        other => Err(ManifestError::UnsupportedMediaType(shown(other))),
    }
}

/// Lists what a manifest of `kind` refers to. Non-distributable layers that carry `urls`
/// are left out: they are not expected to be in the registry.
pub fn manifest_refs(kind: ManifestKind, body: &[u8]) -> Result<ManifestRefs, ManifestError> {
    let malformed = |reason: String| ManifestError::Malformed {
        media_type: format!("{kind:?}").to_lowercase(),
        reason: shown(&reason),
    };
    let raw: RawManifest = serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
    let convert = |d: RawDescriptor| -> Result<Descriptor, ManifestError> {
        Ok(Descriptor {
            digest: d
                .digest
                .parse()
                .map_err(|e| malformed(format!("descriptor digest: {e}")))?,
            media_type: d.media_type,
            size: d.size,
        })
    };
    let mut refs = ManifestRefs::default();
    match kind {
        ManifestKind::Index => {
            for d in raw.manifests {
                refs.manifests.push(convert(d)?);
            }
        }
        ManifestKind::Image => {
            let config = raw
                .config
                .ok_or_else(|| malformed("image manifest has no config".into()))?;
            for d in std::iter::once(config).chain(raw.layers).chain(raw.blobs) {
                let foreign = !d.urls.is_empty()
                    && NON_DISTRIBUTABLE.contains(&essence(&d.media_type).as_str());
                if !foreign {
                    refs.blobs.push(convert(d)?);
                }
            }
        }
    }
    // A blob listed twice (same layer content) needs copying once.
    let mut seen = std::collections::HashSet::new();
    refs.blobs.retain(|d| seen.insert(d.digest.clone()));
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    #[test]
    fn kind_from_content_type_with_parameters() {
        assert_eq!(
            manifest_kind(
                Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
                b"{}"
            )
            .unwrap(),
            ManifestKind::Index
        );
        assert_eq!(
            manifest_kind(Some(DOCKER_MANIFEST_LIST), b"").unwrap(),
            ManifestKind::Index
        );
        assert_eq!(
            manifest_kind(Some(DOCKER_MANIFEST), b"").unwrap(),
            ManifestKind::Image
        );
        assert_eq!(
            manifest_kind(Some(OCI_MANIFEST), b"").unwrap(),
            ManifestKind::Image
        );
    }

    #[test]
    fn kind_falls_back_to_body() {
        let body = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert_eq!(
            manifest_kind(Some("application/json"), body.as_bytes()).unwrap(),
            ManifestKind::Index
        );
        let no_type = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{}","size":1}},"layers":[]}}"#,
            d(1)
        );
        assert_eq!(
            manifest_kind(None, no_type.as_bytes()).unwrap(),
            ManifestKind::Image
        );
    }

    #[test]
    fn schema1_is_refused_by_name() {
        let err = manifest_kind(
            Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
            b"",
        )
        .unwrap_err();
        assert_eq!(
            err,
            ManifestError::UnsupportedMediaType(
                "application/vnd.docker.distribution.manifest.v1+prettyjws".into()
            )
        );
    }

    #[test]
    fn image_refs_are_config_then_layers_deduplicated() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":10}},
            "layers":[
              {{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":20}},
              {{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":20}},
              {{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"{}","size":5,"urls":["https://example.invalid/x"]}}
            ]}}"#,
            d(1),
            d(2),
            d(2),
            d(3)
        );
        let refs = manifest_refs(ManifestKind::Image, body.as_bytes()).unwrap();
        let digests: Vec<String> = refs.blobs.iter().map(|b| b.digest.to_string()).collect();
        assert_eq!(digests, vec![d(1), d(2)]);
        assert!(refs.manifests.is_empty());
        assert_eq!(refs.blobs[0].size, 10);
    }

    #[test]
    fn index_refs_are_children() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":500,"platform":{{"architecture":"amd64","os":"linux"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":400,"platform":{{"architecture":"unknown","os":"unknown"}},
                "annotations":{{"vnd.docker.reference.type":"attestation-manifest","vnd.docker.reference.digest":"{}"}}}}
            ]}}"#,
            d(4),
            d(5),
            d(4)
        );
        let refs = manifest_refs(ManifestKind::Index, body.as_bytes()).unwrap();
        assert_eq!(refs.manifests.len(), 2);
        assert_eq!(refs.manifests[1].digest.to_string(), d(5));
        assert!(refs.blobs.is_empty());
    }

    #[test]
    fn only_whole_supported_manifests_may_be_put() {
        let image = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"x","digest":"{}","size":1}},"layers":[]}}"#,
            d(1)
        );
        assert_eq!(
            check_for_put(OCI_MANIFEST, image.as_bytes()),
            Ok(ManifestKind::Image)
        );
        let truncated = &image.as_bytes()[..image.len() - 3];
        assert!(matches!(
            check_for_put(OCI_MANIFEST, truncated),
            Err(ManifestError::Malformed { .. })
        ));
        let index = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert_eq!(
            check_for_put(OCI_INDEX, index.as_bytes()),
            Ok(ManifestKind::Index)
        );
        assert!(matches!(
            check_for_put(OCI_MANIFEST, index.as_bytes()),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        assert_eq!(
            check_for_put(OCI_INDEX, br#"{"mediaType":"x","manifests":[]}"#),
            Err(ManifestError::SchemaVersion("missing".into()))
        );
        assert_eq!(
            check_for_put(OCI_INDEX, br#"{"schemaVersion":1,"manifests":[]}"#),
            Err(ManifestError::SchemaVersion("1".into()))
        );
        assert!(matches!(
            check_for_put(OCI_INDEX, b"[1,2]"),
            Err(ManifestError::Malformed { .. })
        ));
        assert!(matches!(
            check_for_put("application/vnd.evil\nx", br#"{"schemaVersion":2}"#),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn malformed_bodies_are_reported() {
        assert!(matches!(
            manifest_refs(ManifestKind::Image, b"not json"),
            Err(ManifestError::Malformed { .. })
        ));
        assert!(matches!(
            manifest_refs(ManifestKind::Image, br#"{"layers":[]}"#),
            Err(ManifestError::Malformed { reason, .. }) if reason.contains("no config")
        ));
        let bad_digest = r#"{"manifests":[{"mediaType":"x","digest":"md5:00","size":1}]}"#;
        assert!(matches!(
            manifest_refs(ManifestKind::Index, bad_digest.as_bytes()),
            Err(ManifestError::Malformed { .. })
        ));
    }
}
