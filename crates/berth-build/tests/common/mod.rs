//! Shared fixtures: a private data root with a busybox image, the step runner, unpacking.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_build::{BuildError, BuildOptions, BuildResult, Builder, Event, OciRunner};
use berth_image::layer::{apply_layer, ApplyOptions, WhiteoutMode};
use berth_image::{ImageService, ImportOptions};

pub fn suffix() -> String {
    let mut b = [0u8; 4];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).unwrap();
    hex::encode(b)
}

/// A busybox rootfs tar: /bin/busybox, applet symlinks, /etc/passwd and /etc/group.
pub fn busybox_tar() -> Vec<u8> {
    let bb =
        std::fs::read("/bin/busybox").expect("busybox-static must be installed at /bin/busybox");
    let list = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        b.append_data(&mut h, name, std::io::empty()).unwrap();
    };
    for d in ["bin", "etc", "tmp", "root", "usr", "usr/bin", "var", "home"] {
        dir(&mut b, d, if d == "tmp" { 0o1777 } else { 0o755 });
    }
    let file = |b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data).unwrap();
    };
    file(&mut b, "bin/busybox", &bb, 0o755);
    file(
        &mut b,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        0o644,
    );
    file(
        &mut b,
        "etc/group",
        b"root:x:0:\napp:x:1000:\nstaff:x:50:\n",
        0o644,
    );
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet == "busybox" || applet.is_empty() {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")
            .unwrap();
    }
    b.into_inner().unwrap()
}

/// A private data root with a `busybox:latest` image, cleaned on drop.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub images: ImageService,
    pub runner: OciRunner,
    pub name: String,
}

impl Env {
    pub fn new() -> Env {
        let name = format!("berthtest{}", suffix());
        let dir = tempfile::Builder::new().prefix(&name).tempdir().unwrap();
        let images = ImageService::open(dir.path().join("data")).unwrap();
        let opts = ImportOptions {
            changes: vec!["CMD [\"sh\"]".into()],
            ..Default::default()
        };
        images
            .import(
                std::io::Cursor::new(busybox_tar()),
                Some("busybox:latest"),
                &opts,
            )
            .unwrap();
        let runner = OciRunner::new(
            env!("CARGO_BIN_EXE_berth-build-step"),
            &dir.path().join("runtime"),
            &dir.path().join("bundles"),
        );
        Env {
            dir,
            images,
            runner,
            name,
        }
    }

    pub fn context(&self, files: &[(&str, &str)]) -> PathBuf {
        let c = self.dir.path().join(format!("ctx-{}", suffix()));
        std::fs::create_dir_all(&c).unwrap();
        for (name, data) in files {
            let p = c.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        }
        c
    }

    pub fn builder(&self) -> Builder<'_> {
        Builder::new(&self.images, &self.runner)
            .unwrap()
            .with_name_prefix(&self.name)
    }

    pub fn build(
        &self,
        ctx: &Path,
        dockerfile: &str,
        f: impl FnOnce(&mut BuildOptions),
    ) -> Result<(BuildResult, Vec<Event>), BuildError> {
        let mut opts = BuildOptions {
            context: ctx.to_path_buf(),
            dockerfile: Some(dockerfile.to_owned()),
            apply_dockerignore: true,
            ..Default::default()
        };
        f(&mut opts);
        let events = Mutex::new(Vec::new());
        let r = self
            .builder()
            .build(&opts, &|e: &Event| events.lock().unwrap().push(e.clone()));
        r.map(|r| (r, events.into_inner().unwrap()))
    }

    /// The image's filesystem, unpacked from its layer blobs into a fresh directory.
    pub fn unpack(&self, id: &str) -> PathBuf {
        let img = self.images.resolve(id).unwrap();
        let out = self.dir.path().join(format!("unpacked-{}", suffix()));
        std::fs::create_dir_all(&out).unwrap();
        for l in &img.manifest.layers {
            let blob = berth_content::Store::reader(self.images.content(), &l.digest).unwrap();
            apply_layer(
                &out,
                blob,
                &ApplyOptions::with_whiteout(WhiteoutMode::Remove),
            )
            .unwrap();
        }
        out
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Leak check: nothing of ours stays mounted.
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let leaked: Vec<&str> = mi.lines().filter(|l| l.contains(&self.name)).collect();
        for l in &leaked {
            if let Some(p) = l.split_whitespace().nth(4) {
                let _ = rustix::mount::unmount(p, rustix::mount::UnmountFlags::DETACH);
            }
        }
        // ... and no step container's cgroup stays behind.
        let mut cgroups = Vec::new();
        let mut stack = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
        while let Some((dir, depth)) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    if e.file_name().to_string_lossy().contains(&self.name) {
                        cgroups.push(e.path());
                    } else if depth < 3 {
                        stack.push((e.path(), depth + 1));
                    }
                }
            }
        }
        if !std::thread::panicking() {
            assert!(leaked.is_empty(), "mounts leaked: {leaked:?}");
            assert!(cgroups.is_empty(), "cgroups leaked: {cgroups:?}");
        }
    }
}
