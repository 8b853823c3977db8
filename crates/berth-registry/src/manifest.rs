//! Manifest parsing and validation as values: what a pushed manifest references, its subject
//! and artifact type, and which media type it is stored under.

use berth_core::Digest;
use serde_json::Value;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest v2 schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Whether `mt` is an index or a manifest list.
pub fn is_index(mt: &str) -> bool {
    mt == OCI_INDEX || mt == DOCKER_LIST
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The media type to store and serve it under.
    pub media_type: String,
    /// Blobs it references that must be in the repository: (digest, size).
    pub blobs: Vec<(String, u64)>,
    /// Manifests it references that must be in the repository.
    pub manifests: Vec<String>,
    /// Its subject's digest.
    pub subject: Option<String>,
    /// `artifactType`, else the config's media type (for the referrers API).
    pub artifact_type: Option<String>,
    /// Its annotations, as JSON text.
    pub annotations: Option<String>,
    /// For an index: (child digest, media type, os, architecture).
    pub platforms: Vec<(String, String, String, String)>,
}

fn descriptor(v: &Value, what: &str) -> Result<(String, String, u64), String> {
    let mt = v
        .get("mediaType")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what}: missing mediaType"))?;
    let d = v
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what}: missing digest"))?;
    d.parse::<Digest>()
        .map_err(|e| format!("{what}: invalid digest {d}: {e}"))?;
    let size = v
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("{what}: missing or negative size"))?;
    Ok((mt.to_string(), d.to_string(), size))
}

/// Parse and validate `body` pushed with `content_type` (the request's Content-Type, if any).
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Parsed, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("manifest is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("manifest is not a JSON object")?;
    let declared = obj.get("mediaType").and_then(Value::as_str);
    let ct = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !c.is_empty());
    let known = |t: &str| [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST].contains(&t);
    if let (Some(c), Some(d)) = (ct, declared) {
        if known(c) && c != d {
            return Err(format!("mediaType {d} does not match content type {c}"));
        }
    }
    let media_type = match (ct.filter(|c| known(c)), declared) {
        (Some(c), _) => c.to_string(),
        (None, Some(d)) => d.to_string(),
        (None, None) if obj.contains_key("manifests") => OCI_INDEX.to_string(),
        (None, None) if obj.contains_key("config") => OCI_MANIFEST.to_string(),
        (None, None) => return Err("cannot tell the manifest's media type".into()),
    };
    if !known(&media_type) {
        return Err(format!("unsupported manifest media type {media_type}"));
    }
    if obj.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err("schemaVersion must be 2".into());
    }
    let mut p = Parsed {
        media_type: media_type.clone(),
        blobs: Vec::new(),
        manifests: Vec::new(),
        subject: None,
        artifact_type: obj
            .get("artifactType")
            .and_then(Value::as_str)
            .map(str::to_string),
        annotations: obj
            .get("annotations")
            .filter(|a| a.is_object())
            .map(|a| a.to_string()),
        platforms: Vec::new(),
    };
    if let Some(s) = obj.get("subject") {
        let (_, d, _) = descriptor(s, "subject")?;
        p.subject = Some(d);
    }
    if is_index(&media_type) {
        let list = obj
            .get("manifests")
            .and_then(Value::as_array)
            .ok_or("index: missing manifests array")?;
        for (i, m) in list.iter().enumerate() {
            let (mt, d, _) = descriptor(m, &format!("manifests[{i}]"))?;
            let plat = m.get("platform");
            let field = |k: &str| {
                plat.and_then(|p| p.get(k))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            p.platforms
                .push((d.clone(), mt, field("os"), field("architecture")));
            if !p.manifests.contains(&d) {
                p.manifests.push(d);
            }
        }
    } else {
        let config = obj.get("config").ok_or("manifest: missing config")?;
        let (cmt, cd, cs) = descriptor(config, "config")?;
        if p.artifact_type.is_none() {
            p.artifact_type = Some(cmt);
        }
        p.blobs.push((cd, cs));
        let layers = obj
            .get("layers")
            .and_then(Value::as_array)
            .ok_or("manifest: missing layers array")?;
        for (i, l) in layers.iter().enumerate() {
            let (_, d, s) = descriptor(l, &format!("layers[{i}]"))?;
            // Foreign (non-distributable) layers live elsewhere.
            if l.get("urls")
                .and_then(Value::as_array)
                .is_some_and(|u| !u.is_empty())
            {
                continue;
            }
            if !p.blobs.iter().any(|(x, _)| *x == d) {
                p.blobs.push((d, s));
            }
        }
    }
    Ok(p)
}

/// Whether an `Accept` header admits `media_type` (no header, or `*/*`, admits everything).
pub fn accepts(accept: &[String], media_type: &str) -> bool {
    if accept.is_empty() {
        return true;
    }
    accept.iter().flat_map(|a| a.split(',')).any(|a| {
        let t = a.split(';').next().unwrap_or("").trim();
        t == media_type || t == "*/*" || t == "application/*"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn image_manifest() {
        let body = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d('a'), "size": 2},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d('b'), "size": 3},
                {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar", "digest": d('c'), "size": 3, "urls": ["http://x"]}
            ],
            "subject": {"mediaType": OCI_MANIFEST, "digest": d('e'), "size": 9},
            "annotations": {"k": "v"}
        })
        .to_string();
        let p = parse(body.as_bytes(), Some(OCI_MANIFEST)).expect("valid");
        assert_eq!(p.blobs, vec![(d('a'), 2), (d('b'), 3)]);
        assert_eq!(p.subject, Some(d('e')));
        assert_eq!(
            p.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert_eq!(p.annotations.as_deref(), Some(r#"{"k":"v"}"#));
        assert!(parse(body.as_bytes(), Some(OCI_INDEX)).is_err());
        assert_eq!(
            parse(body.as_bytes(), None).expect("valid").media_type,
            OCI_MANIFEST
        );
    }

    #[test]
    fn invalid() {
        for bad in [
            "not json",
            "[]",
            r#"{"schemaVersion":1,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#,
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#,
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","digest":"sha256:zz","size":1},"layers":[]}"#,
            r#"{"schemaVersion":2,"mediaType":"text/plain"}"#,
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#,
        ] {
            assert!(parse(bad.as_bytes(), None).is_err(), "{bad}");
        }
    }

    #[test]
    fn index_and_accept() {
        let body = serde_json::json!({
            "schemaVersion": 2, "mediaType": DOCKER_LIST,
            "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": d('a'), "size": 5,
                           "platform": {"os": "linux", "architecture": "amd64"}}]
        })
        .to_string();
        let p = parse(body.as_bytes(), Some(DOCKER_LIST)).expect("valid");
        assert_eq!(p.manifests, vec![d('a')]);
        assert_eq!(p.platforms[0].2, "linux");
        assert!(accepts(&[], OCI_INDEX));
        assert!(accepts(
            &[format!("{DOCKER_MANIFEST}, {OCI_INDEX};q=0.5")],
            OCI_INDEX
        ));
        assert!(!accepts(&[DOCKER_MANIFEST.to_string()], OCI_INDEX));
        assert!(accepts(&["*/*".to_string()], OCI_INDEX));
    }
}
