//! OCI and Docker image formats as serde types: descriptors, manifests, indexes, configs.
//!
//! Unknown fields are ignored on input. berth never re-serialises a manifest it did not make:
//! the original bytes stay in the content store under their digest, so round trips keep digests.

use std::collections::BTreeMap;

use berth_core::{Digest, Platform};
use serde::{Deserialize, Serialize};

use crate::ImageError;

/// Media types of the OCI image spec and Docker's v2 schema 2.
pub mod media {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI uncompressed layer.
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    /// OCI gzip layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// OCI zstd layer.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// OCI non-distributable uncompressed layer (deprecated).
    pub const OCI_LAYER_NONDIST: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
    /// OCI non-distributable gzip layer (deprecated).
    pub const OCI_LAYER_NONDIST_GZIP: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    /// The empty descriptor's media type.
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
    /// Docker v2 schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker gzip layer.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// Docker uncompressed layer (as `docker save` writes them).
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    /// Docker foreign layer (Windows base layers).
    pub const DOCKER_FOREIGN_LAYER: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

    /// Whether `mt` names an image manifest (OCI or Docker).
    pub fn is_manifest(mt: &str) -> bool {
        mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
    }

    /// Whether `mt` names an index or manifest list.
    pub fn is_index(mt: &str) -> bool {
        mt == OCI_INDEX || mt == DOCKER_MANIFEST_LIST
    }

    /// Whether `mt` names an image config.
    pub fn is_config(mt: &str) -> bool {
        mt == OCI_CONFIG || mt == DOCKER_CONFIG
    }

    /// Whether `mt` names a filesystem layer berth can unpack.
    pub fn is_layer(mt: &str) -> bool {
        matches!(
            mt,
            OCI_LAYER
                | OCI_LAYER_GZIP
                | OCI_LAYER_ZSTD
                | OCI_LAYER_NONDIST
                | OCI_LAYER_NONDIST_GZIP
                | DOCKER_LAYER
                | DOCKER_LAYER_GZIP
                | DOCKER_FOREIGN_LAYER
        )
    }
}

/// The largest manifest, index or config body berth accepts (the distribution spec's 4 MiB).
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;
/// The largest image config accepted (configs with long histories can be larger than manifests).
pub const MAX_CONFIG_SIZE: usize = 8 << 20;
/// Annotation naming the tag of a manifest in an OCI layout's index.json.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation containerd and docker ≥ 25 put on index.json entries: the full image name.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// Annotation creation time.
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";

/// The platform of an index entry (OCI image-spec `platform`), with the optional fields
/// berth's core [`Platform`] does not carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DescriptorPlatform {
    /// GOARCH-style architecture.
    pub architecture: String,
    /// Operating system.
    pub os: String,
    /// OS version (Windows).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features.
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl DescriptorPlatform {
    /// The core platform (os/architecture/variant).
    pub fn to_platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone().filter(|v| !v.is_empty()),
        }
    }
}

impl From<&Platform> for DescriptorPlatform {
    fn from(p: &Platform) -> Self {
        DescriptorPlatform {
            architecture: p.architecture.clone(),
            os: p.os.clone(),
            variant: p.variant.clone(),
            ..Default::default()
        }
    }
}

/// A content descriptor: what, which digest, how big.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes of the referenced content.
    pub size: u64,
    /// Alternative download URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Platform (index entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<DescriptorPlatform>,
    /// Artifact type (artifacts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Embedded base64 data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl Descriptor {
    /// A plain descriptor.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
            data: None,
        }
    }
}

/// An image manifest: OCI `application/vnd.oci.image.manifest.v1+json` or Docker v2 schema 2
/// (the two share a shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// Media type (required by Docker, optional in OCI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// Layers, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Subject (referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// Media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The entries.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Subject (referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A manifest or an index, as found behind a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // short-lived parse results
pub enum ManifestKind {
    /// A single-platform image manifest.
    Manifest(Manifest),
    /// An index / manifest list.
    Index(Index),
}

fn check_size(what: &str, bytes: &[u8], max: usize) -> Result<(), ImageError> {
    if bytes.len() > max {
        return Err(ImageError::Invalid(format!(
            "{what} of {} bytes exceeds the limit of {max} bytes",
            bytes.len()
        )));
    }
    Ok(())
}

fn check_descriptor(what: &str, d: &Descriptor) -> Result<(), ImageError> {
    if d.media_type.is_empty() || d.media_type.len() > 255 || !d.media_type.contains('/') {
        return Err(ImageError::Invalid(format!(
            "{what}: invalid media type {:?}",
            d.media_type
        )));
    }
    if d.size > i64::MAX as u64 {
        return Err(ImageError::Invalid(format!("{what}: size out of range")));
    }
    Ok(())
}

impl Manifest {
    /// Parse and validate a manifest body.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ImageError> {
        check_size("manifest", bytes, MAX_MANIFEST_SIZE)?;
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| ImageError::Invalid(format!("parse manifest: {e}")))?;
        m.validate()?;
        Ok(m)
    }

    /// Check schema version, media types and descriptors.
    pub fn validate(&self) -> Result<(), ImageError> {
        if self.schema_version != 2 {
            return Err(ImageError::Invalid(format!(
                "manifest: unsupported schemaVersion {}",
                self.schema_version
            )));
        }
        if let Some(mt) = &self.media_type {
            if !media::is_manifest(mt) {
                return Err(ImageError::Invalid(format!(
                    "manifest: unexpected mediaType {mt:?}"
                )));
            }
        }
        check_descriptor("manifest config", &self.config)?;
        for l in &self.layers {
            check_descriptor("manifest layer", l)?;
        }
        Ok(())
    }

    /// The media type, defaulting to OCI's when absent.
    pub fn media_type(&self) -> &str {
        self.media_type.as_deref().unwrap_or(media::OCI_MANIFEST)
    }

    /// Whether this is an image (its config is an image config) rather than an artifact.
    pub fn is_image(&self) -> bool {
        media::is_config(&self.config.media_type)
    }
}

impl Index {
    /// Parse and validate an index body.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ImageError> {
        check_size("index", bytes, MAX_MANIFEST_SIZE)?;
        let i: Index = serde_json::from_slice(bytes)
            .map_err(|e| ImageError::Invalid(format!("parse index: {e}")))?;
        if i.schema_version != 2 {
            return Err(ImageError::Invalid(format!(
                "index: unsupported schemaVersion {}",
                i.schema_version
            )));
        }
        if let Some(mt) = &i.media_type {
            if !media::is_index(mt) {
                return Err(ImageError::Invalid(format!(
                    "index: unexpected mediaType {mt:?}"
                )));
            }
        }
        for d in &i.manifests {
            check_descriptor("index entry", d)?;
        }
        Ok(i)
    }

    /// The media type, defaulting to OCI's when absent.
    pub fn media_type(&self) -> &str {
        self.media_type.as_deref().unwrap_or(media::OCI_INDEX)
    }
}

impl ManifestKind {
    /// Parse a manifest or index; `media_type` is the descriptor's media type when known, else
    /// the body's `mediaType` field or its shape decides.
    pub fn parse(media_type: Option<&str>, bytes: &[u8]) -> Result<Self, ImageError> {
        check_size("manifest", bytes, MAX_MANIFEST_SIZE)?;
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            #[serde(default)]
            media_type: Option<String>,
            #[serde(default)]
            manifests: Option<serde_json::Value>,
            #[serde(default)]
            config: Option<serde_json::Value>,
        }
        let p: Probe = serde_json::from_slice(bytes)
            .map_err(|e| ImageError::Invalid(format!("parse manifest: {e}")))?;
        let mt = media_type
            .filter(|m| media::is_index(m) || media::is_manifest(m))
            .map(str::to_string)
            .or(p.media_type.clone());
        let is_index = match mt.as_deref() {
            Some(m) if media::is_index(m) => true,
            Some(m) if media::is_manifest(m) => false,
            Some(m) => {
                return Err(ImageError::Unsupported(format!(
                    "unsupported manifest media type {m:?}"
                )))
            }
            None => p.manifests.is_some() && p.config.is_none(),
        };
        if let (Some(hint), Some(body)) = (media_type, &p.media_type) {
            if (media::is_index(hint) || media::is_manifest(hint)) && hint != body {
                return Err(ImageError::Invalid(format!(
                    "manifest mediaType {body:?} does not match descriptor {hint:?}"
                )));
            }
        }
        if is_index {
            Index::from_slice(bytes).map(ManifestKind::Index)
        } else {
            Manifest::from_slice(bytes).map(ManifestKind::Manifest)
        }
    }
}

/// An empty JSON object, as in `ExposedPorts: {"80/tcp": {}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Empty {}

/// A healthcheck (durations in nanoseconds, as Docker stores them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", cmd]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    /// Interval between checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// Timeout of one check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Start period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    /// Interval during the start period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    /// Consecutive failures before unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
}

/// The runtime defaults of an image (`config` in the image config).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    /// User (name, uid, uid:gid ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Exposed ports, e.g. `80/tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Empty>>,
    /// Environment, `KEY=value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// Entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Healthcheck (Docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// Whether Cmd is already escaped (Windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    /// Volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Empty>>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Stop signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// ONBUILD triggers (Docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// Shell for the shell form (Docker extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
}

/// The layers of an image, by uncompressed digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// DiffIDs, base first.
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

/// One history entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct History {
    /// RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The command that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when this step made no layer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

/// An image config (OCI image config with Docker's extensions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ImageConfig {
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Author.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Architecture (GOARCH).
    #[serde(default)]
    pub architecture: String,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// OS version.
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// Runtime defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfig>,
    /// Layers.
    #[serde(default)]
    pub rootfs: RootFs,
    /// History, one entry per step (empty_layer steps made no layer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Docker's legacy comment field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Docker version that made the image (legacy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_version: Option<String>,
}

impl ImageConfig {
    /// Parse and validate an image config body.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ImageError> {
        check_size("image config", bytes, MAX_CONFIG_SIZE)?;
        let c: ImageConfig = serde_json::from_slice(bytes)
            .map_err(|e| ImageError::Invalid(format!("parse image config: {e}")))?;
        if c.rootfs.kind != "layers" {
            return Err(ImageError::Invalid(format!(
                "image config: unsupported rootfs type {:?}",
                c.rootfs.kind
            )));
        }
        let layered = c.history.iter().filter(|h| !h.empty_layer).count();
        if !c.history.is_empty() && layered > c.rootfs.diff_ids.len() {
            return Err(ImageError::Invalid(format!(
                "image config: history names {layered} layers but rootfs has {}",
                c.rootfs.diff_ids.len()
            )));
        }
        Ok(c)
    }

    /// The image's platform.
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone().filter(|v| !v.is_empty()),
        }
    }
}

/// A Docker save archive's `manifest.json` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveManifestEntry {
    /// Path of the config inside the archive.
    #[serde(rename = "Config")]
    pub config: String,
    /// Tags, familiar form (`busybox:latest`).
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    /// Paths of the layer tars inside the archive, base first.
    #[serde(rename = "Layers", default)]
    pub layers: Vec<String>,
    /// Descriptors of foreign layers, by diff id.
    #[serde(
        rename = "LayerSources",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub layer_sources: Option<BTreeMap<String, Descriptor>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_docker_manifest_and_ignores_unknown_fields() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","size":7,"digest":"{D1}"}},
            "layers":[{{"mediaType":"{}","size":1,"digest":"{D1}","x-unknown":1}}],"extra":true}}"#,
            media::DOCKER_MANIFEST,
            media::DOCKER_CONFIG,
            media::DOCKER_LAYER_GZIP
        );
        let m = ManifestKind::parse(None, body.as_bytes()).unwrap();
        let ManifestKind::Manifest(m) = m else {
            panic!("not a manifest")
        };
        assert_eq!(m.layers.len(), 1);
        assert!(m.is_image());
        assert_eq!(m.media_type(), media::DOCKER_MANIFEST);
    }

    #[test]
    fn index_detected_by_shape_and_mismatch_rejected() {
        let body = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","size":3,"digest":"{D1}","platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#,
            media::OCI_MANIFEST
        );
        let ManifestKind::Index(i) = ManifestKind::parse(None, body.as_bytes()).unwrap() else {
            panic!("not an index")
        };
        assert_eq!(
            i.manifests[0].platform.as_ref().unwrap().to_platform(),
            Platform::parse("linux/arm64/v8").unwrap()
        );
        let body2 = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
            media::OCI_INDEX
        );
        assert!(ManifestKind::parse(Some(media::OCI_MANIFEST), body2.as_bytes()).is_err());
    }

    #[test]
    fn rejects_bad_bodies() {
        let cases: Vec<(String, &str)> = vec![
            ("{".into(), "truncated json"),
            (
                r#"{"schemaVersion":1,"config":{"mediaType":"a/b","size":1,"digest":"sha256:00"}}"#
                    .into(),
                "bad digest",
            ),
            (
                format!(
                    r#"{{"schemaVersion":1,"config":{{"mediaType":"a/b","size":1,"digest":"{D1}"}}}}"#
                ),
                "schema 1",
            ),
            (
                format!(
                    r#"{{"schemaVersion":2,"config":{{"mediaType":"a/b","size":-1,"digest":"{D1}"}}}}"#
                ),
                "negative size",
            ),
            (
                format!(
                    r#"{{"schemaVersion":2,"config":{{"mediaType":"","size":1,"digest":"{D1}"}}}}"#
                ),
                "empty media type",
            ),
            (
                format!(
                    r#"{{"schemaVersion":2,"mediaType":"text/html","config":{{"mediaType":"a/b","size":1,"digest":"{D1}"}}}}"#
                ),
                "wrong media type",
            ),
            (
                format!(
                    r#"{{"schemaVersion":2,"config":{{"mediaType":"a/b","size":1,"digest":"md5:{D1}"}}}}"#
                ),
                "md5",
            ),
        ];
        for (body, what) in cases {
            assert!(
                ManifestKind::parse(None, body.as_bytes()).is_err(),
                "{what} accepted"
            );
        }
        let huge = vec![b' '; MAX_MANIFEST_SIZE + 1];
        assert!(ManifestKind::parse(None, &huge).is_err());
    }

    #[test]
    fn config_roundtrip_with_docker_fields() {
        let body = r#"{"architecture":"amd64","os":"linux","created":"2024-01-02T03:04:05.123456789Z",
          "config":{"User":"1000","Env":["PATH=/bin"],"Entrypoint":null,"Cmd":["sh"],"WorkingDir":"/w",
            "Labels":{"a":"b"},"ExposedPorts":{"80/tcp":{}},"Volumes":{"/data":{}},"StopSignal":"SIGTERM",
            "Healthcheck":{"Test":["CMD","true"],"Interval":1000000000},"OnBuild":null,"Shell":["/bin/sh","-c"]},
          "rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]},
          "history":[{"created":"2024-01-02T03:04:05Z","created_by":"/bin/sh -c #(nop) ADD","comment":"c"},{"created_by":"CMD","empty_layer":true}],
          "container_config":{"Hostname":"x"}}"#;
        let c = ImageConfig::from_slice(body.as_bytes()).unwrap();
        let rc = c.config.as_ref().unwrap();
        assert_eq!(rc.cmd.as_deref(), Some(&["sh".to_string()][..]));
        assert!(rc.entrypoint.is_none());
        assert!(rc.exposed_ports.as_ref().unwrap().contains_key("80/tcp"));
        assert_eq!(
            rc.healthcheck.as_ref().unwrap().interval,
            Some(1_000_000_000)
        );
        assert!(c.history[1].empty_layer);
        let again = ImageConfig::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        // more layered history entries than layers
        let bad = r#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"x"}]}"#;
        assert!(ImageConfig::from_slice(bad.as_bytes()).is_err());
    }
}
