//! Choosing the manifest for a platform from an index / manifest list.
//!
//! Rules: os and architecture must match (after normalising `x86_64`/`aarch64` spellings);
//! variants are ordered (`v5 < v6 < v7 < v8`, `v1 < v2 < v3 < v4` for amd64): a host runs its own
//! variant and lower ones, an image without a variant runs anywhere its architecture does, and a
//! host that names no variant accepts any. The best match wins: exact variant, then no variant,
//! then the nearest lower variant; ties go to index order. Attestation manifests
//! (`vnd.docker.reference.type=attestation-manifest`, `unknown/unknown`) are never chosen.

use berth_core::Platform;

use crate::spec::{media, Descriptor, Index};
use crate::ImageError;

fn normalise_arch(a: &str) -> &str {
    match a {
        "x86_64" | "x86-64" => "amd64",
        "aarch64" => "arm64",
        "i386" | "i686" => "386",
        "armhf" | "armel" => "arm",
        other => other,
    }
}

fn variant_rank(v: &str) -> Option<u32> {
    v.strip_prefix('v').and_then(|n| n.parse().ok())
}

/// Canonical variant: arm64 without one is v8, arm without one is v7 (as Docker normalises).
fn default_variant(arch: &str) -> Option<&'static str> {
    match arch {
        "arm64" => Some("v8"),
        _ => None,
    }
}

/// How well an image for `image` suits `host`; `None` when it cannot run, lower is better.
pub fn match_score(host: &Platform, image: &Platform) -> Option<u32> {
    if host.os != image.os {
        return None;
    }
    let arch = normalise_arch(&host.architecture);
    if arch != normalise_arch(&image.architecture) {
        return None;
    }
    let hv = host
        .variant
        .as_deref()
        .or(default_variant(arch))
        .filter(|v| !v.is_empty());
    let iv = image
        .variant
        .as_deref()
        .or(default_variant(arch))
        .filter(|v| !v.is_empty());
    match (hv, iv) {
        (_, None) => Some(1),
        (None, Some(i)) => Some(2 + variant_rank(i).unwrap_or(50)),
        (Some(h), Some(i)) if h == i => Some(0),
        (Some(h), Some(i)) => match (variant_rank(h), variant_rank(i)) {
            (Some(h), Some(i)) if i < h => Some(2 + (h - i)),
            _ => None,
        },
    }
}

fn is_attestation(d: &Descriptor) -> bool {
    d.annotations
        .get("vnd.docker.reference.type")
        .is_some_and(|t| t == "attestation-manifest")
        || d.platform
            .as_ref()
            .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
}

/// Pick the entry of `index` for `platform`.
pub fn select_manifest<'a>(
    index: &'a Index,
    platform: &Platform,
) -> Result<&'a Descriptor, ImageError> {
    let mut best: Option<(u32, &Descriptor)> = None;
    for d in &index.manifests {
        if !(media::is_manifest(&d.media_type) || media::is_index(&d.media_type))
            || is_attestation(d)
        {
            continue;
        }
        let score = match &d.platform {
            Some(p) => match match_score(platform, &p.to_platform()) {
                Some(s) => s,
                None => continue,
            },
            // No platform given: usable, but any matching entry is preferred.
            None => 1000,
        };
        if best.is_none_or(|(s, _)| score < s) {
            best = Some((score, d));
        }
    }
    best.map(|(_, d)| d).ok_or_else(|| {
        ImageError::NotFound(format!(
            "no matching manifest for {platform} in the manifest list entries"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::DescriptorPlatform;
    use berth_core::Digest;

    fn entry(p: Option<&str>, n: u8) -> Descriptor {
        let mut d = Descriptor::new(media::OCI_MANIFEST, Digest::sha256_of(&[n]), 10);
        d.platform = p.map(|p| DescriptorPlatform::from(&Platform::parse(p).unwrap()));
        d
    }

    fn index(entries: Vec<Descriptor>) -> Index {
        Index {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.into()),
            artifact_type: None,
            manifests: entries,
            subject: None,
            annotations: Default::default(),
        }
    }

    fn pick(idx: &Index, host: &str) -> Result<u8, String> {
        let d = select_manifest(idx, &Platform::parse(host).unwrap()).map_err(|e| e.to_string())?;
        Ok(idx.manifests.iter().position(|x| x == d).unwrap() as u8)
    }

    #[test]
    fn picks_by_os_arch_variant() {
        let mut att = entry(Some("unknown/unknown"), 9);
        att.annotations.insert(
            "vnd.docker.reference.type".into(),
            "attestation-manifest".into(),
        );
        let idx = index(vec![
            entry(Some("linux/arm/v6"), 0),
            entry(Some("linux/arm/v7"), 1),
            entry(Some("linux/arm64/v8"), 2),
            entry(Some("linux/amd64"), 3),
            entry(Some("windows/amd64"), 4),
            entry(Some("linux/s390x"), 5),
            att,
        ]);
        assert_eq!(pick(&idx, "linux/amd64"), Ok(3));
        assert_eq!(pick(&idx, "linux/arm64"), Ok(2));
        assert_eq!(pick(&idx, "linux/arm64/v8"), Ok(2));
        assert_eq!(pick(&idx, "linux/arm/v7"), Ok(1));
        assert_eq!(pick(&idx, "linux/arm/v6"), Ok(0));
        assert_eq!(pick(&idx, "windows/amd64"), Ok(4));
        assert_eq!(
            pick(&idx, "linux/arm/v5"),
            Err("no matching manifest for linux/arm/v5 in the manifest list entries".into())
        );
        assert_eq!(
            pick(&index(vec![entry(Some("linux/arm64"), 0)]), "linux/amd64"),
            Err("no matching manifest for linux/amd64 in the manifest list entries".into())
        );
        // a v8 host runs an arm64 image that names no variant; arm v7 host falls back to v6
        assert_eq!(
            pick(
                &index(vec![entry(Some("linux/arm64"), 0)]),
                "linux/arm64/v8"
            ),
            Ok(0)
        );
        assert_eq!(
            pick(
                &index(vec![
                    entry(Some("linux/arm/v5"), 0),
                    entry(Some("linux/arm/v6"), 1)
                ]),
                "linux/arm/v7"
            ),
            Ok(1)
        );
        // entries without a platform are a last resort
        assert_eq!(
            pick(
                &index(vec![entry(None, 0), entry(Some("linux/amd64"), 1)]),
                "linux/amd64"
            ),
            Ok(1)
        );
        assert_eq!(pick(&index(vec![entry(None, 0)]), "linux/amd64"), Ok(0));
        // the attestation is never chosen even if it is the only entry
        assert!(pick(
            &index(vec![entry(Some("unknown/unknown"), 0)]),
            "linux/amd64"
        )
        .is_err());
    }

    #[test]
    fn host_platform_selects_itself() {
        let host = Platform::host();
        let idx = index(vec![
            entry(Some("linux/ppc64le"), 0),
            Descriptor {
                platform: Some(DescriptorPlatform::from(&host)),
                ..entry(None, 1)
            },
        ]);
        assert_eq!(select_manifest(&idx, &host).unwrap(), &idx.manifests[1]);
    }
}
