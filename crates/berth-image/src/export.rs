//! Writing images out: Docker save archives (with both `manifest.json` and an OCI
//! `index.json`, as docker ≥ 25 does), OCI image layout directories and tars.
//!
//! Output is deterministic: blobs in first-reference order, fixed tar headers (mtime 0, root
//! owner, 0444 files), so saving the same images twice gives identical bytes.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read, Write};
use std::path::Path;

use berth_content::Store;
use berth_core::{Digest, Reference};

use crate::error::StoreContext;
use crate::spec::{
    media, ArchiveManifestEntry, Descriptor, Index, Manifest, ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME, MAX_MANIFEST_SIZE,
};
use crate::ImageError;

/// One image to export: the manifest (already resolved to a platform) and its names.
#[derive(Debug, Clone)]
pub struct ExportImage {
    /// The image manifest's descriptor.
    pub manifest_desc: Descriptor,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// Names (tags) to record.
    pub names: Vec<Reference>,
}

/// How `org.opencontainers.image.ref.name` is written in index.json.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefNameStyle {
    /// The tag only, plus `io.containerd.image.name` with the full name (docker ≥ 25, containerd).
    Tag,
    /// The full reference (`docker.io/library/busybox:latest`), as skopeo/podman users expect.
    Full,
}

fn blobs_of(images: &[ExportImage]) -> Vec<Descriptor> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for i in images {
        for d in i
            .manifest
            .layers
            .iter()
            .chain([&i.manifest.config, &i.manifest_desc])
        {
            if seen.insert(d.digest.clone()) {
                out.push(d.clone());
            }
        }
    }
    out
}

fn index_for(images: &[ExportImage], style: RefNameStyle) -> Index {
    let mut manifests = Vec::new();
    for i in images {
        let plain = Descriptor::new(
            &i.manifest_desc.media_type,
            i.manifest_desc.digest.clone(),
            i.manifest_desc.size,
        );
        if i.names.is_empty() {
            manifests.push(plain.clone());
        }
        for n in &i.names {
            let mut d = plain.clone();
            match style {
                RefNameStyle::Tag => {
                    d.annotations
                        .insert(ANNOTATION_IMAGE_NAME.into(), n.to_string());
                    if let Some(t) = n.tag() {
                        d.annotations.insert(ANNOTATION_REF_NAME.into(), t.into());
                    }
                }
                RefNameStyle::Full => {
                    d.annotations
                        .insert(ANNOTATION_REF_NAME.into(), n.to_string());
                }
            }
            manifests.push(d);
        }
    }
    Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.into()),
        artifact_type: None,
        manifests,
        subject: None,
        annotations: BTreeMap::new(),
    }
}

fn json(v: &impl serde::Serialize) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(v).map_err(|e| ImageError::Invalid(format!("encode json: {e}")))
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

struct TarOut<W: Write> {
    b: tar::Builder<W>,
}

impl<W: Write> TarOut<W> {
    fn dir(&mut self, path: &str) -> Result<(), ImageError> {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        self.b
            .append_data(&mut h, path, io::empty())
            .map_err(|e| ImageError::io(format!("write archive entry {path}"), e))
    }

    fn file(&mut self, path: &str, size: u64, data: impl Read) -> Result<(), ImageError> {
        let mut h = header(tar::EntryType::Regular, 0o444, size);
        self.b
            .append_data(&mut h, path, data)
            .map_err(|e| ImageError::io(format!("write archive entry {path}"), e))
    }

    fn blob(&mut self, store: &dyn Store, d: &Digest) -> Result<(), ImageError> {
        let r = store.reader(d).ctx(|| format!("open blob {d}"))?;
        let size = r.size();
        let path = format!("blobs/{}/{}", d.algorithm().as_str(), d.encoded());
        self.file(&path, size, io::BufReader::with_capacity(1 << 20, r))
    }
}

fn familiar_tag(n: &Reference) -> String {
    n.familiar()
}

/// Write a Docker save archive of `images` to `w`.
pub fn write_docker_archive(
    store: &dyn Store,
    images: &[ExportImage],
    w: impl Write,
) -> Result<(), ImageError> {
    let mut t = TarOut {
        b: tar::Builder::new(w),
    };
    t.dir("blobs/")?;
    let blobs = blobs_of(images);
    let mut algs: Vec<&str> = blobs
        .iter()
        .map(|d| d.digest.algorithm().as_str())
        .collect();
    algs.sort();
    algs.dedup();
    for a in algs {
        t.dir(&format!("blobs/{a}/"))?;
    }
    for d in &blobs {
        t.blob(store, &d.digest)?;
    }
    let idx = json(&index_for(images, RefNameStyle::Tag))?;
    t.file("index.json", idx.len() as u64, &idx[..])?;
    let path_of = |d: &Digest| format!("blobs/{}/{}", d.algorithm().as_str(), d.encoded());
    let entries: Vec<ArchiveManifestEntry> = images
        .iter()
        .map(|i| ArchiveManifestEntry {
            config: path_of(&i.manifest.config.digest),
            repo_tags: Some(i.names.iter().map(familiar_tag).collect()),
            layers: i
                .manifest
                .layers
                .iter()
                .map(|l| path_of(&l.digest))
                .collect(),
            layer_sources: None,
        })
        .collect();
    let mf = json(&entries)?;
    t.file("manifest.json", mf.len() as u64, &mf[..])?;
    t.file("oci-layout", OCI_LAYOUT.len() as u64, OCI_LAYOUT)?;
    let mut repos: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for i in images {
        if let Some(top) = i.manifest.layers.last() {
            for n in &i.names {
                if let Some(tag) = n.tag() {
                    repos
                        .entry(n.familiar_name())
                        .or_default()
                        .insert(tag.into(), top.digest.encoded().into());
                }
            }
        }
    }
    let rp = json(&repos)?;
    t.file("repositories", rp.len() as u64, &rp[..])?;
    t.b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| ImageError::io("finish archive", e))
}

/// Write an OCI image layout tar (`oci-archive:`).
pub fn write_oci_archive(
    store: &dyn Store,
    images: &[ExportImage],
    style: RefNameStyle,
    w: impl Write,
) -> Result<(), ImageError> {
    let mut t = TarOut {
        b: tar::Builder::new(w),
    };
    t.file("oci-layout", OCI_LAYOUT.len() as u64, OCI_LAYOUT)?;
    t.dir("blobs/")?;
    t.dir("blobs/sha256/")?;
    for d in &blobs_of(images) {
        t.blob(store, &d.digest)?;
    }
    let idx = json(&index_for(images, style))?;
    t.file("index.json", idx.len() as u64, &idx[..])?;
    t.b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| ImageError::io("finish archive", e))
}

/// Write (or add to) an OCI image layout directory (`oci:`). Entries already in its
/// index.json for the same names are replaced.
pub fn write_oci_dir(
    store: &dyn Store,
    images: &[ExportImage],
    style: RefNameStyle,
    dir: &Path,
) -> Result<(), ImageError> {
    let io_err = |what: String| move |e| ImageError::io(what, e);
    std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    std::fs::write(dir.join("oci-layout"), OCI_LAYOUT)
        .map_err(io_err(format!("write {}/oci-layout", dir.display())))?;
    for d in &blobs_of(images) {
        let adir = dir.join("blobs").join(d.digest.algorithm().as_str());
        std::fs::create_dir_all(&adir).map_err(io_err(format!("create {}", adir.display())))?;
        let p = adir.join(d.digest.encoded());
        if p.exists() {
            continue;
        }
        let tmp = adir.join(format!(".{}.tmp", d.digest.encoded()));
        let mut r = store
            .reader(&d.digest)
            .ctx(|| format!("open blob {}", d.digest))?;
        let mut f =
            std::fs::File::create(&tmp).map_err(io_err(format!("create {}", tmp.display())))?;
        io::copy(&mut r, &mut f).map_err(io_err(format!("write {}", tmp.display())))?;
        f.sync_all()
            .map_err(io_err(format!("fsync {}", tmp.display())))?;
        std::fs::rename(&tmp, &p).map_err(io_err(format!("rename {}", p.display())))?;
    }
    let ipath = dir.join("index.json");
    let mut idx = match std::fs::read(&ipath) {
        Ok(b) if b.len() <= MAX_MANIFEST_SIZE => Index::from_slice(&b)?,
        Ok(_) => {
            return Err(ImageError::Invalid(format!(
                "{} is too large",
                ipath.display()
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => index_for(&[], style),
        Err(e) => return Err(ImageError::io(format!("read {}", ipath.display()), e)),
    };
    let new = index_for(images, style);
    let key = |d: &Descriptor| d.annotations.get(ANNOTATION_REF_NAME).cloned();
    let new_keys: HashSet<_> = new.manifests.iter().filter_map(key).collect();
    idx.manifests
        .retain(|d| key(d).is_none_or(|k| !new_keys.contains(&k)));
    idx.manifests.extend(new.manifests);
    let tmp = dir.join(".index.json.tmp");
    std::fs::write(&tmp, json(&idx)?).map_err(io_err(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, &ipath).map_err(io_err(format!("rename {}", ipath.display())))?;
    Ok(())
}
