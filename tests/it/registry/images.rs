//! Test images built in memory (random layers, config, manifests, multi-platform index with
//! an attestation manifest) and pushed with the client's blob upload, or written as OCI
//! layouts for skopeo.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use jisu_deploy::oci::manifest::{OCI_INDEX, OCI_MANIFEST};
use jisu_deploy::oci::{Digest, Reference, RegistryClient};
use serde_json::{Value, json};

const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// Pseudo-random bytes (xorshift), distinct per call so every image has its own layers.
pub fn random_bytes(len: usize) -> Vec<u8> {
    static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut x = SEED.fetch_add(0x2545_F491_4F6C_DD1D, Ordering::Relaxed) ^ nanos | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A blob with its descriptor.
pub struct Blob {
    pub media_type: &'static str,
    pub data: Bytes,
}

impl Blob {
    fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": Digest::of(&self.data).to_string(), "size": self.data.len()})
    }
}

/// A single-platform image: config, layers and manifest bytes.
pub struct Image {
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub manifest: Bytes,
}

impl Image {
    pub fn digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }
}

/// Builds an image with `layers` random layers of `layer_size` bytes for a platform.
pub fn image(layers: usize, layer_size: usize, arch: &str) -> Image {
    let layers: Vec<Blob> = (0..layers)
        .map(|_| Blob {
            media_type: LAYER_TYPE,
            data: Bytes::from(random_bytes(layer_size)),
        })
        .collect();
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/app"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| Digest::of(&l.data).to_string()).collect::<Vec<_>>()},
    });
    let config = Blob {
        media_type: CONFIG_TYPE,
        data: Bytes::from(serde_json::to_vec(&config).unwrap()),
    };
    // Pretty-printed on purpose: a client that re-serialized would change these bytes.
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    }))
    .unwrap();
    Image {
        config,
        layers,
        manifest: Bytes::from(manifest),
    }
}

/// Recomputes the manifest after the config or layers were changed.
pub fn rebuild_manifest(image: Image) -> Image {
    let manifest = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": image.config.descriptor(),
        "layers": image.layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    }))
    .unwrap();
    Image {
        manifest: Bytes::from(manifest),
        ..image
    }
}

/// An attestation manifest (BuildKit style) for the image with digest `subject`.
pub fn attestation(subject: &Digest) -> Image {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": "image", "digest": {"sha256": subject.hex()}}],
        "predicate": {"builder": {"id": "jisu-test"}},
    });
    let layer = Blob {
        media_type: "application/vnd.in-toto+json",
        data: Bytes::from(serde_json::to_vec(&statement).unwrap()),
    };
    let config = Blob {
        media_type: CONFIG_TYPE,
        data: Bytes::from_static(br#"{"architecture":"unknown","os":"unknown","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#),
    };
    let mut layer_desc = layer.descriptor();
    layer_desc["annotations"] =
        json!({"in-toto.io/predicate-type": "https://slsa.dev/provenance/v0.2"});
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer_desc],
    }))
    .unwrap();
    Image {
        config,
        layers: vec![layer],
        manifest: Bytes::from(manifest),
    }
}

/// A multi-platform index: amd64 and arm64 images and an attestation for amd64.
pub struct MultiArch {
    pub children: Vec<Image>,
    pub index: Bytes,
}

pub fn multi_arch() -> MultiArch {
    let amd64 = image(2, 2048, "amd64");
    let arm64 = image(2, 2048, "arm64");
    let att = attestation(&amd64.digest());
    let entry = |img: &Image, arch: &str| {
        json!({"mediaType": OCI_MANIFEST, "digest": img.digest().to_string(), "size": img.manifest.len(),
               "platform": {"architecture": arch, "os": if arch == "unknown" { "unknown" } else { "linux" }}})
    };
    let mut att_entry = entry(&att, "unknown");
    att_entry["annotations"] = json!({
        "vnd.docker.reference.type": "attestation-manifest",
        "vnd.docker.reference.digest": amd64.digest().to_string(),
    });
    let index = serde_json::to_vec_pretty(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [entry(&amd64, "amd64"), entry(&arm64, "arm64"), att_entry],
    }))
    .unwrap();
    MultiArch {
        children: vec![amd64, arm64, att],
        index: Bytes::from(index),
    }
}

/// Pushes an image's blobs and manifest under `reference` (a tag or digest).
pub async fn push_image(client: &RegistryClient, reference: &Reference, image: &Image) {
    for blob in std::iter::once(&image.config).chain(&image.layers) {
        client
            .push_blob(reference.repository(), blob.data.clone())
            .await
            .expect("push blob");
    }
    client
        .put_manifest(reference, image.manifest.clone(), OCI_MANIFEST)
        .await
        .expect("push manifest");
}

/// Pushes every child by digest, then the index under `reference`.
pub async fn push_multi_arch(client: &RegistryClient, reference: &Reference, multi: &MultiArch) {
    for child in &multi.children {
        push_image(client, &reference.with_digest(child.digest()), child).await;
    }
    client
        .put_manifest(reference, multi.index.clone(), OCI_INDEX)
        .await
        .expect("push index");
}

/// Writes an image as an OCI image layout (what `skopeo copy oci:DIR:TAG` reads).
pub fn write_oci_layout(dir: &Path, tag: &str, image: &Image) {
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let write_blob = |data: &[u8]| {
        std::fs::write(blobs.join(Digest::of(data).hex()), data).unwrap();
    };
    write_blob(&image.config.data);
    for layer in &image.layers {
        write_blob(&layer.data);
    }
    write_blob(&image.manifest);
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": image.digest().to_string(), "size": image.manifest.len(),
                       "annotations": {"org.opencontainers.image.ref.name": tag}}],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}
