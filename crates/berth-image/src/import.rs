//! `docker import`: a rootfs tarball (plain, gzip or zstd) becomes a one-layer OCI image.

use std::collections::BTreeMap;
use std::io::Read;

use berth_content::Store;
use berth_core::Platform;

use crate::archive::{ingest, maybe_decompress, BlobHook};
use crate::changes::apply_changes;
use crate::error::StoreContext;
use crate::spec::{media, Descriptor, History, ImageConfig, Manifest, RootFs, RunConfig};
use crate::timefmt::now_rfc3339;
use crate::ImageError;

/// Options of an import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// `--change` instructions (CMD, ENTRYPOINT, ENV, ...).
    pub changes: Vec<String>,
    /// `--message`: the history comment.
    pub message: Option<String>,
    /// Where the tarball came from, for the default comment ("Imported from -").
    pub source: String,
    /// The image's platform.
    pub platform: Platform,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            changes: Vec::new(),
            message: None,
            source: "-".into(),
            platform: Platform::host(),
        }
    }
}

/// What an import stored.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The manifest's descriptor.
    pub manifest_desc: Descriptor,
    /// The config.
    pub config: ImageConfig,
}

/// Store `reader` (a rootfs tar, maybe compressed) as an uncompressed layer and build the image.
pub fn import_rootfs(
    store: &dyn Store,
    reader: impl Read,
    opts: &ImportOptions,
    hook: BlobHook<'_>,
) -> Result<Imported, ImageError> {
    // Validate the changes before reading any data.
    let mut run = RunConfig::default();
    apply_changes(&mut run, &opts.changes)?;
    let r = maybe_decompress(reader).map_err(|e| ImageError::io("read import source", e))?;
    let (diff_id, size) = ingest(store, "import", r, None)?;
    hook(&diff_id)?;
    if size < 512 {
        return Err(ImageError::Invalid(format!(
            "import source of {size} bytes is not a tar archive"
        )));
    }
    let created = now_rfc3339();
    let config = ImageConfig {
        created: Some(created.clone()),
        architecture: opts.platform.architecture.clone(),
        variant: opts.platform.variant.clone(),
        os: opts.platform.os.clone(),
        config: Some(run),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![diff_id.clone()],
        },
        history: vec![History {
            created: Some(created),
            created_by: None,
            comment: Some(
                opts.message
                    .clone()
                    .unwrap_or_else(|| format!("Imported from {}", opts.source)),
            ),
            ..Default::default()
        }],
        ..Default::default()
    };
    let cfg_bytes = serde_json::to_vec(&config)
        .map_err(|e| ImageError::Invalid(format!("encode config: {e}")))?;
    let c = store
        .write_blob(&cfg_bytes, None)
        .ctx(|| "store image config".into())?;
    hook(c.digest())?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor::new(
            media::OCI_CONFIG,
            c.digest().clone(),
            cfg_bytes.len() as u64,
        ),
        layers: vec![Descriptor::new(media::OCI_LAYER, diff_id, size)],
        subject: None,
        annotations: BTreeMap::new(),
    };
    let mbytes = serde_json::to_vec(&manifest)
        .map_err(|e| ImageError::Invalid(format!("encode manifest: {e}")))?;
    let m = store
        .write_blob(&mbytes, None)
        .ctx(|| "store manifest".into())?;
    hook(m.digest())?;
    Ok(Imported {
        manifest_desc: Descriptor::new(
            media::OCI_MANIFEST,
            m.digest().clone(),
            mbytes.len() as u64,
        ),
        config,
    })
}
