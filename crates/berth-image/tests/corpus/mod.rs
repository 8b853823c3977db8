//! Test support for the layer tests: a raw tar writer that can express hostile entries (the
//! `tar` crate's builder refuses `..` and absolute names), a host fixture with sentinel files
//! outside the layer root, and a tree manifest for comparisons.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

pub mod cases;

/// One tar entry to write. Fields default to a regular, empty, 0644 file owned by 0:0.
#[derive(Clone)]
pub struct E {
    pub name: Vec<u8>,
    pub typ: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub data: Vec<u8>,
    /// Size written in the header when it must differ from `data.len()`.
    pub size: Option<u64>,
    pub link: Vec<u8>,
    pub dev: (u32, u32),
    pub pax: Vec<(String, Vec<u8>)>,
    /// Put the name in a GNU 'L' long-name entry instead of PAX.
    pub gnu_long: bool,
}

impl E {
    pub fn new(name: impl AsRef<[u8]>, typ: u8) -> Self {
        E {
            name: name.as_ref().to_vec(),
            typ,
            mode: if typ == b'5' { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            data: Vec::new(),
            size: None,
            link: Vec::new(),
            dev: (0, 0),
            pax: Vec::new(),
            gnu_long: false,
        }
    }
    pub fn file(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Self {
        let mut e = E::new(name, b'0');
        e.data = data.as_ref().to_vec();
        e
    }
    pub fn dir(name: impl AsRef<[u8]>) -> Self {
        E::new(name, b'5')
    }
    pub fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        let mut e = E::new(name, b'2');
        e.link = target.as_ref().to_vec();
        e.mode = 0o777;
        e
    }
    pub fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        let mut e = E::new(name, b'1');
        e.link = target.as_ref().to_vec();
        e
    }
    pub fn chardev(name: impl AsRef<[u8]>, major: u32, minor: u32) -> Self {
        let mut e = E::new(name, b'3');
        e.dev = (major, minor);
        e
    }
    pub fn fifo(name: impl AsRef<[u8]>) -> Self {
        E::new(name, b'6')
    }
    pub fn mode(mut self, m: u32) -> Self {
        self.mode = m;
        self
    }
    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn mtime(mut self, t: u64) -> Self {
        self.mtime = t;
        self
    }
    pub fn pax(mut self, k: &str, v: impl AsRef<[u8]>) -> Self {
        self.pax.push((k.to_string(), v.as_ref().to_vec()));
        self
    }
    pub fn xattr(self, k: &str, v: impl AsRef<[u8]>) -> Self {
        self.pax(&format!("SCHILY.xattr.{k}"), v)
    }
    pub fn size(mut self, s: u64) -> Self {
        self.size = Some(s);
        self
    }
    pub fn gnu_long(mut self) -> Self {
        self.gnu_long = true;
        self
    }
}

fn octal(field: &mut [u8], v: u64) {
    let w = field.len() - 1;
    let s = format!("{v:0w$o}");
    let b = s.as_bytes();
    let start = b.len().saturating_sub(w);
    field[..w].copy_from_slice(&b[start..]);
    field[w] = 0;
}

fn header(name: &[u8], typ: u8, e: &E, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], u64::from(e.mode));
    octal(&mut h[108..116], e.uid);
    octal(&mut h[116..124], e.gid);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], e.mtime);
    h[156] = typ;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], u64::from(e.dev.0));
    octal(&mut h[337..345], u64::from(e.dev.1));
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

fn pax_records(recs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in recs {
        let base = k.len() + v.len() + 3;
        let mut len = base + 1;
        while base + len.to_string().len() != len {
            len = base + len.to_string().len();
        }
        out.extend_from_slice(format!("{len} {k}=").as_bytes());
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

fn push_data(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

/// Serialise entries into a tar stream (with the two zero end blocks).
pub fn tar(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        append(&mut out, e);
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

/// Append one entry (with its PAX / GNU long-name entries) to `out`.
pub fn append(out: &mut Vec<u8>, e: &E) {
    let mut pax = e.pax.clone();
    if e.uid >= 0o7777777 {
        pax.push(("uid".into(), e.uid.to_string().into_bytes()));
    }
    if e.gid >= 0o7777777 {
        pax.push(("gid".into(), e.gid.to_string().into_bytes()));
    }
    if e.name.len() > 100 && !e.gnu_long {
        pax.push(("path".into(), e.name.clone()));
    }
    if e.link.len() > 100 {
        pax.push(("linkpath".into(), e.link.clone()));
    }
    if e.gnu_long {
        let mut n = e.name.clone();
        n.push(0);
        let h = header(
            b"././@LongLink",
            b'L',
            &E::new("", b'L'),
            n.len() as u64,
            b"",
        );
        out.extend_from_slice(&h);
        push_data(out, &n);
    }
    if !pax.is_empty() {
        let recs = pax_records(&pax);
        let h = header(
            b"PaxHeader",
            b'x',
            &E::new("", b'x'),
            recs.len() as u64,
            b"",
        );
        out.extend_from_slice(&h);
        push_data(out, &recs);
    }
    let size = e.size.unwrap_or(e.data.len() as u64);
    out.extend_from_slice(&header(&e.name, e.typ, e, size, &e.link));
    push_data(out, &e.data);
}

/// A temporary "host" directory: `root/` (the layer root) next to `outside/` holding
/// sentinels a hostile layer must not touch.
pub struct Host {
    pub dir: tempfile::TempDir,
    mounts: std::cell::RefCell<Vec<PathBuf>>,
}

impl Drop for Host {
    fn drop(&mut self) {
        for m in self.mounts.borrow().iter().rev() {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(m)
                .status();
        }
    }
}

impl Host {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berthtest-layer-")
            .tempdir()
            .expect("create temp host dir");
        fs::create_dir(dir.path().join("root")).unwrap();
        fs::create_dir_all(dir.path().join("outside/sub")).unwrap();
        fs::write(dir.path().join("outside/secret"), b"host secret").unwrap();
        fs::write(dir.path().join("outside/sub/file"), b"host file").unwrap();
        Host {
            dir,
            mounts: Default::default(),
        }
    }
    /// Mount a fresh procfs at `path` (unmounted when the host is dropped).
    pub fn mount_proc(&self, path: &Path) {
        fs::create_dir_all(path).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(path)
            .status()
            .expect("run mount")
            .success();
        assert!(ok, "mount proc on {}", path.display());
        self.mounts.borrow_mut().push(path.to_path_buf());
    }
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    pub fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }
    /// The manifest of everything outside `root/` (and of the host dir's parent entries).
    pub fn outside_manifest(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        for top in fs::read_dir(self.dir.path()).unwrap() {
            let p = top.unwrap().path();
            if p != self.root() {
                m.insert(
                    p.display().to_string(),
                    manifest(&p)
                        .into_iter()
                        .collect::<Vec<_>>()
                        .len()
                        .to_string(),
                );
                for (k, v) in manifest(&p) {
                    m.insert(format!("{}/{k}", p.display()), v);
                }
            }
        }
        m
    }
}

/// `path -> description` of a tree: type, mode, owner, size, content hash, link target,
/// xattrs, nlink for files, mtime. Directory mtimes are included too.
pub fn manifest(root: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    walk(root, root, &mut m);
    m
}

fn walk(root: &Path, dir: &Path, m: &mut BTreeMap<String, String>) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for p in names {
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let md = fs::symlink_metadata(&p).unwrap();
        let ft = md.file_type();
        let mut d = format!(
            "mode={:o} uid={} gid={} mtime={}",
            md.mode(),
            md.uid(),
            md.gid(),
            md.mtime()
        );
        if ft.is_file() {
            let mut h = Sha256::new();
            let mut f = fs::File::open(&p).unwrap();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            d += &format!(
                " file size={} sha={} nlink={}",
                md.len(),
                hex::encode(h.finalize()),
                md.nlink()
            );
        } else if ft.is_symlink() {
            d += &format!(" link={}", fs::read_link(&p).unwrap().display());
        } else if ft.is_char_device() || ft.is_block_device() {
            d += &format!(" dev={}", md.rdev());
        } else if ft.is_dir() {
            d += " dir";
        }
        d += &format!(" xattrs={:?}", xattrs(&p));
        m.insert(rel, d);
        if ft.is_dir() {
            walk(root, &p, m);
        }
    }
}

/// All xattrs of `p` (not following symlinks), sorted.
pub fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let mut buf = vec![0u8; 65536];
    let n = match rustix::fs::llistxattr(p, &mut buf[..]) {
        Ok(n) => n,
        Err(_) => return Vec::new(),
    };
    let mut out = Vec::new();
    for k in buf[..n].split(|&b| b == 0).filter(|k| !k.is_empty()) {
        let k = String::from_utf8_lossy(k).into_owned();
        let mut v = vec![0u8; 65536];
        if let Ok(l) = rustix::fs::lgetxattr(p, k.as_str(), &mut v[..]) {
            out.push((k, v[..l].to_vec()));
        }
    }
    out.sort();
    out
}

/// One xattr of `p`, not following symlinks.
pub fn xattr(p: &Path, k: &str) -> Option<Vec<u8>> {
    xattrs(p).into_iter().find(|(n, _)| n == k).map(|(_, v)| v)
}
