//! `berth cp`: copy files between a container and the host through the archive endpoints.
//!
//! Container → host: `GET /containers/{id}/archive?path=SRC` gives a tar whose root entry is the
//! source's base name; it is renamed to the destination's name when the destination does not
//! exist (docker's rule) and unpacked with the tar crate's `unpack_in`, which refuses absolute
//! paths, `..` and writes through symlinks that leave the destination.
//! Host → container: the source is packed under the destination's name and sent with
//! `PUT /containers/{id}/archive?path=DIR`.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::Engine as _;
use clap::Args;
use serde_json::Value;

use super::client::{ApiError, Client};
use super::http::{enc, Body};

/// Options of `cp`.
#[derive(Args, Debug)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information).
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Always follow symbol link in SRC_PATH.
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Suppress progress output during copy.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// CONTAINER:SRC_PATH, SRC_PATH or - (a tar on stdin).
    pub src: String,
    /// CONTAINER:DEST_PATH, DEST_PATH or - (a tar on stdout).
    pub dest: String,
}

/// Split "container:path" (a local path that contains ':' must start with '/' or '.').
fn split_spec(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('/') || s.starts_with('.') {
        return None;
    }
    s.split_once(':')
}

/// The path stat header (`X-Docker-Container-Path-Stat`), if the path exists.
fn stat(c: &Client, id: &str, path: &str) -> anyhow::Result<Option<Value>> {
    let r = c.raw(
        "HEAD",
        &format!(
            "/v{}/containers/{}/archive?path={}",
            c.version,
            enc(id),
            enc(path)
        ),
        &[],
        Body::None,
        false,
    )?;
    if r.status == 404 {
        return Ok(None);
    }
    if r.status >= 400 {
        // a HEAD error has no body to carry the daemon's message
        return Err(ApiError {
            status: r.status,
            message: format!("cannot stat {path} in container {id} (HTTP {})", r.status),
        }
        .into());
    }
    let h = r.header("x-docker-container-path-stat").map(String::from);
    super::client::check(r)?;
    let Some(h) = h else { return Ok(None) };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(h.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(h.trim()))
        .context("decode path stat header")?;
    Ok(Some(serde_json::from_slice(&raw)?))
}

fn is_dir_mode(v: &Value) -> bool {
    // Go's os.FileMode: ModeDir is 1<<31
    v["mode"].as_u64().is_some_and(|m| m & (1 << 31) != 0)
}

/// `berth cp`.
pub fn cp(a: CpArgs) -> anyhow::Result<i32> {
    match (split_spec(&a.src), split_spec(&a.dest)) {
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
        (Some((id, src)), None) => {
            let c = super::connect()?;
            from_container(&c, id, src, &a.dest)
        }
        (None, Some((id, dst))) => {
            let c = super::connect()?;
            to_container(&c, id, &a.src, dst)
        }
    }
}

fn from_container(c: &Client, id: &str, src: &str, dest: &str) -> anyhow::Result<i32> {
    let r = c.call(
        "GET",
        &format!("/containers/{}/archive?path={}", enc(id), enc(src)),
        &[],
        Body::None,
    )?;
    if dest == "-" {
        let mut r = r;
        io::copy(&mut r, &mut io::stdout().lock())?;
        return Ok(0);
    }
    let dest = PathBuf::from(dest);
    let src_base = Path::new(src.trim_end_matches('/'))
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| ".".into());
    let (dir, rename) = if dest.is_dir() {
        (dest.clone(), None)
    } else {
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        if !parent.is_dir() {
            bail!(
                "invalid output path: directory {:?} does not exist",
                parent.display()
            );
        }
        let name = dest
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .ok_or_else(|| anyhow::anyhow!("invalid destination {}", dest.display()))?;
        (parent, Some(name))
    };
    unpack(r, &dir, &src_base, rename.as_deref())?;
    Ok(0)
}

/// Unpack `r` into `dir`, renaming the root entry `root` to `rename` when given.
pub fn unpack(r: impl Read, dir: &Path, root: &str, rename: Option<&str>) -> anyhow::Result<()> {
    let mut ar = tar::Archive::new(r);
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    for e in ar.entries()? {
        let mut e = e?;
        let path = e.path()?.into_owned();
        let target = match rename {
            Some(new) => {
                let mut comps = path.components();
                let first = comps
                    .next()
                    .map(|c| c.as_os_str().to_string_lossy().to_string());
                if first.as_deref() == Some(root) {
                    let rest = comps.as_path();
                    if rest.as_os_str().is_empty() {
                        PathBuf::from(new)
                    } else {
                        Path::new(new).join(rest)
                    }
                } else {
                    path.clone()
                }
            }
            None => path.clone(),
        };
        if target.as_os_str().is_empty() {
            continue;
        }
        e.set_mask(0);
        if rename.is_some() && target != path {
            // re-root the entry by unpacking it under its new name
            let ok = unpack_renamed(&mut e, dir, &target)?;
            if !ok {
                bail!(
                    "refusing to extract {} outside {}",
                    target.display(),
                    dir.display()
                );
            }
            continue;
        }
        if !e
            .unpack_in(dir)
            .with_context(|| format!("extract {}", path.display()))?
        {
            bail!(
                "refusing to extract {} outside {}",
                path.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

fn unpack_renamed<R: Read>(
    e: &mut tar::Entry<R>,
    dir: &Path,
    target: &Path,
) -> anyhow::Result<bool> {
    use std::path::Component;
    if target
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Ok(false);
    }
    let full = dir.join(target);
    if let Some(p) = full.parent() {
        if p.starts_with(dir) && !p.exists() {
            std::fs::create_dir_all(p).with_context(|| format!("create {}", p.display()))?;
        }
    }
    // the parent must stay inside dir after resolving symlinks
    let parent = full.parent().unwrap_or(dir);
    let canon_parent = parent.canonicalize()?;
    if !canon_parent.starts_with(dir.canonicalize()?) {
        return Ok(false);
    }
    e.unpack(&full)
        .with_context(|| format!("extract {}", full.display()))?;
    Ok(true)
}

fn to_container(c: &Client, id: &str, src: &str, dst: &str) -> anyhow::Result<i32> {
    if src == "-" {
        let r = c.call(
            "PUT",
            &format!(
                "/containers/{}/archive?path={}&noOverwriteDirNonDir=true",
                enc(id),
                enc(dst)
            ),
            &[],
            Body::Stream("application/x-tar", Box::new(io::stdin())),
        )?;
        r.bytes()?;
        return Ok(0);
    }
    let srcp = PathBuf::from(src);
    let meta =
        std::fs::symlink_metadata(&srcp).with_context(|| format!("lstat {}", srcp.display()))?;
    let (dir, name) = match stat(c, id, dst)? {
        Some(st) if is_dir_mode(&st) => (
            dst.to_string(),
            srcp.file_name()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_else(|| ".".into()),
        ),
        Some(_) if meta.is_dir() => {
            bail!("cannot copy a directory to a file: {dst}");
        }
        _ if dst.ends_with('/') => {
            return Err(ApiError {
                status: 404,
                message: format!("Could not find the file {dst} in container {id}"),
            }
            .into());
        }
        _ => {
            let p = Path::new(dst.trim_end_matches('/'));
            let parent = p
                .parent()
                .map(|x| x.to_string_lossy().to_string())
                .filter(|x| !x.is_empty())
                .unwrap_or_else(|| "/".into());
            let name = p
                .file_name()
                .map(|s| s.to_string_lossy().to_string())
                .ok_or_else(|| anyhow::anyhow!("invalid destination {dst}"))?;
            if stat(c, id, &parent)?.is_none() {
                return Err(ApiError {
                    status: 404,
                    message: format!("Could not find the file {parent} in container {id}"),
                }
                .into());
            }
            (parent, name)
        }
    };
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    if meta.is_dir() {
        b.append_dir_all(&name, &srcp)
            .with_context(|| format!("archive {}", srcp.display()))?;
    } else {
        b.append_path_with_name(&srcp, &name)
            .with_context(|| format!("archive {}", srcp.display()))?;
    }
    let data = b.into_inner()?;
    let r = c.call(
        "PUT",
        &format!(
            "/containers/{}/archive?path={}&noOverwriteDirNonDir=true",
            enc(id),
            enc(&dir)
        ),
        &[],
        Body::Bytes("application/x-tar", data),
    )?;
    r.bytes()?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_hostile_archives() {
        assert_eq!(split_spec("web:/etc/hosts"), Some(("web", "/etc/hosts")));
        assert_eq!(split_spec("/tmp/a:b"), None);
        assert_eq!(split_spec("./a:b"), None);
        // an archive that tries to escape with .. is refused
        let dir = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        let data = b"evil";
        h.set_size(4);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        {
            let name = b"x/../../escape";
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name);
        }
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let inner = dir.path().join("inner");
        std::fs::create_dir(&inner).unwrap();
        let _ = unpack(&bytes[..], &inner, "x", None);
        assert!(!dir.path().join("escape").exists());
        // a normal archive renamed on the way
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, "hosts", &b"ok"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        unpack(&bytes[..], &inner, "hosts", Some("renamed")).unwrap();
        assert_eq!(std::fs::read(inner.join("renamed")).unwrap(), b"ok");
    }
}
