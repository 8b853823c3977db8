//! RUN steps: the [`StepRunner`] trait the engine implements, and [`OciRunner`], which runs a
//! step through a runc-compatible runtime binary (berth's own `berth-build-step` helper,
//! `berth runtime`, runc or crun).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_core::Mount;
use serde_json::{json, Value};

use crate::error::BuildError;
use crate::fsutil;

/// Network of a RUN step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StepNetwork {
    /// A private network namespace with only `lo` (the builder's default for now).
    #[default]
    Private,
    /// No network at all (also a private namespace).
    None,
    /// The host's network namespace.
    Host,
}

/// An extra mount of a RUN step (`--mount=type=cache|bind|tmpfs|secret`), as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepMount {
    /// Absolute path inside the container.
    pub destination: String,
    /// `bind` or `tmpfs`.
    pub kind: String,
    /// Host path for binds; ignored for tmpfs.
    pub source: PathBuf,
    /// Mount options (`rbind`, `ro`, `size=...`).
    pub options: Vec<String>,
}

/// What a RUN step executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    /// Unique id for the container (also used for the bundle's name).
    pub id: String,
    /// Mounts presenting the rootfs (from the snapshotter's `prepare`).
    pub rootfs: Vec<Mount>,
    /// argv.
    pub args: Vec<String>,
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Numeric uid and gid (resolved by the builder from the image's files).
    pub user: (u32, u32),
    /// Additional group ids.
    pub additional_gids: Vec<u32>,
    /// Working directory (absolute).
    pub workdir: String,
    /// Network mode.
    pub network: StepNetwork,
    /// Extra mounts, in order.
    pub mounts: Vec<StepMount>,
}

/// Runs RUN steps. Implementations must be usable from several threads at once (stages run
/// in parallel). Every line the step prints (stdout and stderr merged) goes to `output`.
pub trait StepRunner: Send + Sync {
    /// Run the step to completion and return its exit code.
    fn run(&self, req: &RunRequest, output: &mut dyn FnMut(&str)) -> Result<i32, BuildError>;
}

/// A [`StepRunner`] that writes an OCI bundle and runs `<binary> --root <root> run --bundle
/// <bundle> <id>` (the runc command line), with stdout and stderr captured line by line.
#[derive(Debug, Clone)]
pub struct OciRunner {
    binary: PathBuf,
    prefix_args: Vec<String>,
    state_root: PathBuf,
    work: PathBuf,
}

impl OciRunner {
    /// Use `binary` (e.g. the `berth-build-step` helper, `/usr/sbin/runc`) with state under
    /// `state_root` and bundles under `work`.
    pub fn new(binary: impl Into<PathBuf>, state_root: &Path, work: &Path) -> Self {
        OciRunner {
            binary: binary.into(),
            prefix_args: Vec::new(),
            state_root: state_root.to_path_buf(),
            work: work.to_path_buf(),
        }
    }

    /// Arguments placed before `--root` (e.g. `["runtime"]` for the `berth` binary).
    pub fn with_prefix_args(mut self, args: Vec<String>) -> Self {
        self.prefix_args = args;
        self
    }
}

/// The capabilities Docker grants a container (and a RUN step) by default.
pub use berth_runtime::features::DOCKER_DEFAULT_CAPS as DEFAULT_CAPS;

/// The config.json of a RUN step (rootfs at `rootfs` in the bundle, mounted by the caller).
pub fn step_spec(req: &RunRequest) -> Value {
    let mut spec = berth_runtime::features::default_spec(false, 0, 0);
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(req.args);
    spec["process"]["env"] = json!(req.env);
    spec["process"]["cwd"] = json!(req.workdir);
    let mut user = json!({"uid": req.user.0, "gid": req.user.1});
    if !req.additional_gids.is_empty() {
        user["additionalGids"] = json!(req.additional_gids);
    }
    spec["process"]["user"] = user;
    spec["process"]["noNewPrivileges"] = json!(false);
    let caps = json!(DEFAULT_CAPS);
    spec["process"]["capabilities"] =
        json!({"bounding": caps, "effective": caps, "permitted": caps});
    spec["root"] = json!({"path": "rootfs", "readonly": false});
    spec["hostname"] = json!("buildkitsandbox");
    let mut mounts = spec["mounts"].as_array().cloned().unwrap_or_default();
    for m in &req.mounts {
        mounts.push(json!({
            "destination": m.destination,
            "type": m.kind,
            "source": m.source,
            "options": m.options,
        }));
    }
    spec["mounts"] = json!(mounts);
    if req.network == StepNetwork::Host {
        if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
            ns.retain(|n| n["type"] != "network");
        }
    }
    // The default spec denies every device in the cgroup; the runtime's default devices
    // (/dev/null, zero, ...) must be usable.
    spec["linux"]["resources"] = json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
        {"allow": true, "type": "c", "major": 136, "access": "rwm"},
    ]});
    spec
}

/// Unmounts and removes a bundle on drop.
struct BundleGuard {
    dir: PathBuf,
    mounted: bool,
}

impl Drop for BundleGuard {
    fn drop(&mut self) {
        if self.mounted {
            let _ = berth_snapshot::unmount(&self.dir.join("rootfs"));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl StepRunner for OciRunner {
    fn run(&self, req: &RunRequest, output: &mut dyn FnMut(&str)) -> Result<i32, BuildError> {
        let dir = self.work.join(&req.id);
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&rootfs)
            .map_err(|e| BuildError::io(format!("create bundle {}", dir.display()), e))?;
        let mut guard = BundleGuard {
            dir: dir.clone(),
            mounted: false,
        };
        berth_snapshot::mount_all(&req.rootfs, &rootfs)
            .map_err(|e| BuildError::Snapshot(format!("mount rootfs of {}: {e}", req.id)))?;
        guard.mounted = true;
        // The working directory exists before the process starts (owned by root, as Docker).
        fsutil::mkdir_all_in(&rootfs, &req.workdir)?;
        let spec = step_spec(req);
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_vec_pretty(&spec).unwrap_or_default(),
        )
        .map_err(|e| BuildError::io(format!("write {}/config.json", dir.display()), e))?;
        std::fs::create_dir_all(&self.state_root)
            .map_err(|e| BuildError::io(format!("create {}", self.state_root.display()), e))?;
        let (reader, writer) =
            std::io::pipe().map_err(|e| BuildError::io("create output pipe", e))?;
        let writer2 = writer
            .try_clone()
            .map_err(|e| BuildError::io("clone output pipe", e))?;
        let mut child = Command::new(&self.binary)
            .args(&self.prefix_args)
            .arg("--root")
            .arg(&self.state_root)
            .arg("run")
            .arg("--bundle")
            .arg(&dir)
            .arg(&req.id)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer2)
            .spawn()
            .map_err(|e| BuildError::io(format!("run {}", self.binary.display()), e))?;
        let mut lines = BufReader::new(reader);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match lines.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) => output(&String::from_utf8_lossy(&buf)),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let status = child
            .wait()
            .map_err(|e| BuildError::io(format!("wait for {}", self.binary.display()), e))?;
        drop(guard);
        use std::os::unix::process::ExitStatusExt;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(network: StepNetwork) -> RunRequest {
        RunRequest {
            id: "x".into(),
            rootfs: Vec::new(),
            args: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            env: vec!["A=1".into()],
            user: (1000, 50),
            additional_gids: vec![7],
            workdir: "/app".into(),
            network,
            mounts: vec![StepMount {
                destination: "/run/secrets/s".into(),
                kind: "bind".into(),
                source: "/tmp/s".into(),
                options: vec!["rbind".into(), "ro".into()],
            }],
        }
    }

    #[test]
    fn step_spec_shape() {
        let s = step_spec(&req(StepNetwork::Private));
        assert_eq!(s["process"]["args"][2], "true");
        assert_eq!(s["process"]["cwd"], "/app");
        assert_eq!(s["process"]["user"]["uid"], 1000);
        assert_eq!(s["process"]["user"]["additionalGids"][0], 7);
        assert_eq!(s["process"]["terminal"], false);
        assert_eq!(s["root"]["readonly"], false);
        let mounts = s["mounts"].as_array().unwrap();
        assert_eq!(mounts.last().unwrap()["destination"], "/run/secrets/s");
        let has_net = |s: &Value| {
            s["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["type"] == "network")
        };
        assert!(has_net(&s));
        assert!(!has_net(&step_spec(&req(StepNetwork::Host))));
        // the spec parses as an OCI runtime spec
        berth_runtime::spec::parse(s.to_string().as_bytes()).unwrap();
    }
}
