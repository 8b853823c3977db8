//! Pure functions: the image config merged with create options, and the OCI runtime spec
//! (config.json) built from a container's config, host config and resolved mounts.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use super::types::{ContainerConfig, HostConfig, MountPoint};
use crate::EngineError;

/// Docker's default capabilities.
pub use berth_runtime::features::DOCKER_DEFAULT_CAPS as DEFAULT_CAPS;

/// Every capability the kernel knows (for `--privileged` and `--cap-add ALL`).
pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's masked paths.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The PATH a container gets when neither the image nor the user sets one.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Merge `KEY=value` lists: later entries replace earlier ones with the same key.
pub fn merge_env(base: &[String], over: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for kv in base.iter().chain(over) {
        let key = kv.split('=').next().unwrap_or("");
        match out.iter().position(|e| e.split('=').next() == Some(key)) {
            Some(i) => out[i] = kv.clone(),
            None => out.push(kv.clone()),
        }
    }
    out
}

/// The image's defaults (the `config` of the image config).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageDefaults {
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: String,
    pub user: String,
    pub labels: BTreeMap<String, String>,
    pub volumes: Vec<String>,
    pub stop_signal: Option<String>,
    pub exposed_ports: Vec<String>,
    pub healthcheck: Option<Value>,
}

/// Docker's merge of the create config with the image's: Env by key, Labels by key, an
/// Entrypoint given by the user drops the image's Cmd, WorkingDir/User/StopSignal fall back to
/// the image's. Returns the merged config.
pub fn merge_config(user: &ContainerConfig, img: &ImageDefaults) -> ContainerConfig {
    let mut c = user.clone();
    c.env = merge_env(&img.env, &user.env);
    match &user.entrypoint {
        Some(ep) => {
            c.entrypoint = Some(ep.clone()).filter(|v| !v.is_empty());
            c.cmd = user.cmd.clone();
        }
        None => {
            c.entrypoint = img.entrypoint.clone();
            c.cmd = match &user.cmd {
                Some(v) if !v.is_empty() => Some(v.clone()),
                _ => img.cmd.clone(),
            };
        }
    }
    if c.working_dir.is_empty() {
        c.working_dir = img.working_dir.clone();
    }
    if c.user.is_empty() {
        c.user = img.user.clone();
    }
    let mut labels = img.labels.clone();
    labels.extend(user.labels.clone());
    c.labels = labels;
    if c.stop_signal.is_none() {
        c.stop_signal = img.stop_signal.clone();
    }
    if c.healthcheck.is_none() {
        c.healthcheck = img.healthcheck.clone();
    }
    let mut vols = c.volumes.clone().unwrap_or_default();
    for v in &img.volumes {
        vols.entry(v.clone()).or_insert(json!({}));
    }
    c.volumes = (!vols.is_empty()).then_some(vols);
    let mut ports = c.exposed_ports.clone().unwrap_or_default();
    for p in &img.exposed_ports {
        ports.entry(p.clone()).or_insert(json!({}));
    }
    c.exposed_ports = (!ports.is_empty()).then_some(ports);
    c
}

/// The command line: entrypoint + cmd.
pub fn command_line(c: &ContainerConfig) -> Vec<String> {
    let mut v = c.entrypoint.clone().unwrap_or_default();
    v.extend(c.cmd.clone().unwrap_or_default());
    v
}

fn cap_name(s: &str) -> String {
    let u = s.to_ascii_uppercase();
    if u.starts_with("CAP_") {
        u
    } else {
        format!("CAP_{u}")
    }
}

/// The capability set after `--cap-add`/`--cap-drop` (and `--privileged`).
pub fn capabilities(h: &HostConfig) -> Vec<String> {
    if h.privileged {
        return ALL_CAPS.iter().map(|s| s.to_string()).collect();
    }
    let mut caps: Vec<String> = if h.cap_drop.iter().any(|c| c.eq_ignore_ascii_case("all")) {
        Vec::new()
    } else {
        DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !h.cap_drop.iter().any(|d| cap_name(d) == *c))
            .collect()
    };
    for a in &h.cap_add {
        if a.eq_ignore_ascii_case("all") {
            caps = ALL_CAPS.iter().map(|s| s.to_string()).collect();
        } else {
            let n = cap_name(a);
            if !caps.contains(&n) {
                caps.push(n);
            }
        }
    }
    caps
}

/// `--ulimit name=soft:hard` names to OCI rlimit types.
fn rlimit_type(name: &str) -> String {
    format!("RLIMIT_{}", name.to_ascii_uppercase())
}

/// Security options: (seccomp: None = Docker's default, Some(None) = unconfined,
/// Some(Some(profile))), no_new_privileges.
pub fn security_opts(h: &HostConfig) -> Result<(Option<Option<Value>>, bool), EngineError> {
    let mut seccomp = None;
    let mut nnp = false;
    for o in &h.security_opt {
        let (k, v) = match o.split_once('=').or_else(|| o.split_once(':')) {
            Some((k, v)) => (k, v),
            None => (o.as_str(), ""),
        };
        match k {
            "seccomp" => {
                if v == "unconfined" {
                    seccomp = Some(None);
                } else {
                    let p: Value = serde_json::from_str(v).map_err(|e| {
                        EngineError::invalid(format!("decoding seccomp profile failed: {e}"))
                    })?;
                    seccomp = Some(Some(p));
                }
            }
            "no-new-privileges" => {
                nnp = v.is_empty()
                    || crate::filters::parse_bool(v).map_err(|_| {
                        EngineError::invalid(format!("invalid --security-opt: {o:?}"))
                    })?;
            }
            "label" | "apparmor" => {}
            _ => {
                return Err(EngineError::invalid(format!(
                    "invalid --security-opt 1: {o:?}"
                )))
            }
        }
    }
    Ok((seccomp, nnp))
}

/// A numeric `uid[:gid]` (names resolved by the caller).
pub fn numeric_user(u: &str) -> Option<(u32, u32)> {
    if u.is_empty() {
        return Some((0, 0));
    }
    let (a, b) = match u.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (u, None),
    };
    let uid = a.parse().ok()?;
    let gid = match b {
        Some(b) => b.parse().ok()?,
        None => 0,
    };
    Some((uid, gid))
}

/// A host device given to the container (`--device`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Path inside the container.
    pub path: String,
    /// `c` or `b`.
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    /// Permission bits of the node.
    pub mode: u32,
    /// Cgroup access (`rwm`).
    pub access: String,
}

/// Everything [`build_spec`] needs besides the configs.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    pub id: &'a str,
    pub config: &'a ContainerConfig,
    pub host: &'a HostConfig,
    /// The rootfs mount point.
    pub rootfs: &'a Path,
    /// Binds, volumes and tmpfs mounts (resolved).
    pub mounts: &'a [MountPoint],
    /// Files bind-mounted over /etc/hostname, /etc/hosts, /etc/resolv.conf.
    pub etc_files: &'a [(String, String)],
    /// The resolved process user.
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// The hostname inside the container.
    pub hostname: &'a str,
    /// Docker's default seccomp profile for the final capabilities (computed by the caller so
    /// this stays pure).
    pub default_seccomp: Option<Value>,
    /// Host devices (`--device`), resolved.
    pub devices: &'a [DeviceNode],
}

/// The OCI runtime spec (config.json) of a container.
pub fn build_spec(i: &SpecInput<'_>) -> Result<Value, EngineError> {
    let c = i.config;
    let h = i.host;
    let args = command_line(c);
    if args.is_empty() {
        return Err(EngineError::invalid("no command specified"));
    }
    let caps = capabilities(h);
    let (seccomp, nnp) = security_opts(h)?;
    let mut env = c.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    env = merge_env(&[format!("HOSTNAME={}", i.hostname)], &env);
    if c.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let cwd = if c.working_dir.is_empty() {
        "/".to_string()
    } else {
        c.working_dir.clone()
    };
    let mut process = json!({
        "terminal": c.tty,
        "user": {"uid": i.uid, "gid": i.gid},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": nnp,
    });
    if !i.additional_gids.is_empty() {
        process["user"]["additionalGids"] = json!(i.additional_gids);
    }
    if h.oom_score_adj != 0 {
        process["oomScoreAdj"] = json!(h.oom_score_adj);
    }
    if c.tty && h.console_size != [0, 0] {
        process["consoleSize"] = json!({"height": h.console_size[0], "width": h.console_size[1]});
    }
    if !h.ulimits.is_empty() {
        process["rlimits"] = Value::Array(
            h.ulimits
                .iter()
                .map(|u| json!({"type": rlimit_type(&u.name), "soft": u.soft, "hard": u.hard}))
                .collect(),
        );
    }
    let shm = if h.shm_size > 0 { h.shm_size } else { 64 << 20 };
    let sys_opts = if h.privileged {
        json!(["nosuid", "noexec", "nodev"])
    } else {
        json!(["nosuid", "noexec", "nodev", "ro"])
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm}")]}),
    ];
    for (dest, src) in i.etc_files {
        if i.mounts.iter().any(|m| m.destination == *dest) {
            continue;
        }
        mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
    }
    for m in i.mounts {
        match m.kind.as_str() {
            "tmpfs" => {
                let mut opts = vec!["nosuid".to_string(), "nodev".to_string()];
                opts.extend(m.options.iter().cloned());
                mounts.push(json!({"destination": m.destination, "type": "tmpfs", "source": "tmpfs", "options": opts}));
            }
            _ => {
                let mut opts = vec!["rbind".to_string()];
                opts.push(if m.rw { "rw" } else { "ro" }.to_string());
                let prop = if m.propagation.is_empty() {
                    "rprivate"
                } else {
                    m.propagation.as_str()
                };
                opts.push(prop.to_string());
                mounts.push(json!({"destination": m.destination, "type": "bind", "source": m.source, "options": opts}));
            }
        }
    }
    let mut namespaces = vec![json!({"type": "mount"})];
    if h.pid_mode != "host" {
        namespaces.push(json!({"type": "pid"}));
    }
    if h.ipc_mode != "host" {
        namespaces.push(json!({"type": "ipc"}));
    }
    if h.uts_mode != "host" {
        namespaces.push(json!({"type": "uts"}));
    }
    if h.network_mode != "host" {
        namespaces.push(json!({"type": "network"}));
    }
    if h.cgroupns_mode != "host" {
        namespaces.push(json!({"type": "cgroup"}));
    }
    let mut resources = json!({});
    if h.privileged {
        resources["devices"] = json!([{"allow": true, "access": "rwm"}]);
    } else {
        resources["devices"] = json!([{"allow": false, "access": "rwm"}]);
    }
    if !i.devices.is_empty() {
        if let Some(list) = resources["devices"].as_array_mut() {
            for d in i.devices {
                list.push(json!({"allow": true, "type": d.kind.to_string(), "major": d.major, "minor": d.minor, "access": d.access}));
            }
        }
    }
    let mut memory = json!({});
    if h.memory > 0 {
        memory["limit"] = json!(h.memory);
        if h.memory_swap != 0 {
            memory["swap"] = json!(h.memory_swap);
        }
    }
    if h.memory_reservation > 0 {
        memory["reservation"] = json!(h.memory_reservation);
    }
    if let Some(s) = h.memory_swappiness.filter(|s| *s >= 0) {
        memory["swappiness"] = json!(s);
    }
    if let Some(d) = h.oom_kill_disable {
        memory["disableOOMKiller"] = json!(d);
    }
    if memory.as_object().is_some_and(|m| !m.is_empty()) {
        resources["memory"] = memory;
    }
    let mut cpu = json!({});
    if h.cpu_shares > 0 {
        cpu["shares"] = json!(h.cpu_shares);
    }
    if h.nano_cpus > 0 {
        let period = 100_000i64;
        cpu["period"] = json!(period);
        cpu["quota"] = json!(h.nano_cpus * period / 1_000_000_000);
    } else {
        if h.cpu_period > 0 {
            cpu["period"] = json!(h.cpu_period);
        }
        if h.cpu_quota > 0 {
            cpu["quota"] = json!(h.cpu_quota);
        }
    }
    if !h.cpuset_cpus.is_empty() {
        cpu["cpus"] = json!(h.cpuset_cpus);
    }
    if !h.cpuset_mems.is_empty() {
        cpu["mems"] = json!(h.cpuset_mems);
    }
    if cpu.as_object().is_some_and(|m| !m.is_empty()) {
        resources["cpu"] = cpu;
    }
    if let Some(p) = h.pids_limit.filter(|p| *p != 0) {
        resources["pids"] = json!({"limit": p});
    }
    if h.blkio_weight > 0 {
        resources["blockIO"] = json!({"weight": h.blkio_weight});
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": format!("/berth/{}", i.id),
    });
    if !h.privileged {
        let mut masked: Vec<String> = MASKED_PATHS.iter().map(|s| s.to_string()).collect();
        let mut ro: Vec<String> = READONLY_PATHS.iter().map(|s| s.to_string()).collect();
        if !h.masked_paths.is_empty() {
            masked = h.masked_paths.clone();
        }
        if !h.readonly_paths.is_empty() {
            ro = h.readonly_paths.clone();
        }
        linux["maskedPaths"] = json!(masked);
        linux["readonlyPaths"] = json!(ro);
        match seccomp {
            None => {
                if let Some(p) = &i.default_seccomp {
                    linux["seccomp"] = p.clone();
                }
            }
            Some(None) => {}
            Some(Some(p)) => {
                let parsed = berth_runtime::seccomp::parse_seccomp(&p)
                    .map_err(|e| EngineError::invalid(format!("seccomp profile: {e}")))?;
                linux["seccomp"] = serde_json::to_value(parsed)
                    .map_err(|e| EngineError::internal(format!("seccomp profile: {e}")))?;
            }
        }
    }
    if !i.devices.is_empty() {
        linux["devices"] = Value::Array(
            i.devices
                .iter()
                .map(|d| json!({"path": d.path, "type": d.kind.to_string(), "major": d.major, "minor": d.minor, "fileMode": d.mode, "uid": 0, "gid": 0}))
                .collect(),
        );
    }
    if !h.sysctls.is_empty() {
        linux["sysctl"] = json!(h.sysctls);
    }
    let mut spec = json!({
        "ociVersion": berth_runtime::OCI_VERSION,
        "process": process,
        "root": {"path": i.rootfs, "readonly": h.readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
    });
    if h.uts_mode != "host" {
        spec["hostname"] = json!(i.hostname);
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img() -> ImageDefaults {
        ImageDefaults {
            env: vec!["PATH=/bin".into(), "A=1".into()],
            cmd: Some(vec!["sh".into()]),
            entrypoint: None,
            working_dir: "/w".into(),
            labels: [("l".to_string(), "img".to_string())].into(),
            volumes: vec!["/data".into()],
            ..Default::default()
        }
    }

    #[test]
    fn merge_rules() {
        let u = ContainerConfig {
            env: vec!["A=2".into(), "B=3".into()],
            cmd: Some(vec!["echo".into(), "hi".into()]),
            labels: [("l".to_string(), "user".to_string())].into(),
            ..Default::default()
        };
        let m = merge_config(&u, &img());
        assert_eq!(m.env, vec!["PATH=/bin", "A=2", "B=3"]);
        assert_eq!(command_line(&m), vec!["echo", "hi"]);
        assert_eq!(m.working_dir, "/w");
        assert_eq!(m.labels["l"], "user");
        assert!(m.volumes.unwrap().contains_key("/data"));
        // user entrypoint drops the image cmd
        let u = ContainerConfig {
            entrypoint: Some(vec!["/bin/true".into()]),
            ..Default::default()
        };
        assert_eq!(command_line(&merge_config(&u, &img())), vec!["/bin/true"]);
        // no cmd: the image's
        assert_eq!(
            command_line(&merge_config(&ContainerConfig::default(), &img())),
            vec!["sh"]
        );
    }

    #[test]
    fn caps() {
        let mut h = HostConfig::default();
        assert_eq!(capabilities(&h).len(), DEFAULT_CAPS.len());
        h.cap_drop = vec!["chown".into(), "CAP_KILL".into()];
        h.cap_add = vec!["sys_admin".into()];
        let c = capabilities(&h);
        assert!(!c.contains(&"CAP_CHOWN".to_string()));
        assert!(!c.contains(&"CAP_KILL".to_string()));
        assert!(c.contains(&"CAP_SYS_ADMIN".to_string()));
        h.cap_drop = vec!["ALL".into()];
        h.cap_add = vec!["NET_ADMIN".into()];
        assert_eq!(capabilities(&h), vec!["CAP_NET_ADMIN"]);
    }

    #[test]
    fn spec_shape() {
        let c = merge_config(
            &ContainerConfig {
                cmd: Some(vec!["echo".into()]),
                tty: true,
                ..Default::default()
            },
            &img(),
        );
        let h = HostConfig {
            memory: 64 << 20,
            nano_cpus: 500_000_000,
            pids_limit: Some(50),
            network_mode: "none".into(),
            security_opt: vec!["no-new-privileges".into()],
            readonly_rootfs: true,
            ..Default::default()
        };
        let mounts = vec![MountPoint {
            kind: "tmpfs".into(),
            destination: "/t".into(),
            options: vec!["size=1m".into()],
            rw: true,
            ..Default::default()
        }];
        let s = build_spec(&SpecInput {
            id: "abc",
            config: &c,
            host: &h,
            rootfs: Path::new("/r"),
            mounts: &mounts,
            etc_files: &[("/etc/hostname".into(), "/x/hostname".into())],
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            hostname: "abc",
            default_seccomp: Some(json!({"defaultAction": "SCMP_ACT_ERRNO"})),
            devices: &[DeviceNode {
                path: "/dev/xnull".into(),
                kind: 'c',
                major: 1,
                minor: 3,
                mode: 0o666,
                access: "rwm".into(),
            }],
        })
        .unwrap();
        assert_eq!(s["process"]["args"], json!(["echo"]));
        assert_eq!(s["process"]["terminal"], json!(true));
        assert!(s["process"]["env"]
            .as_array()
            .unwrap()
            .contains(&json!("TERM=xterm")));
        assert!(s["process"]["env"]
            .as_array()
            .unwrap()
            .contains(&json!("HOSTNAME=abc")));
        assert_eq!(s["process"]["noNewPrivileges"], json!(true));
        assert_eq!(s["root"]["readonly"], json!(true));
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], json!(64 << 20));
        assert_eq!(s["linux"]["resources"]["cpu"]["quota"], json!(50_000));
        assert_eq!(s["linux"]["resources"]["pids"]["limit"], json!(50));
        assert_eq!(s["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(s["hostname"], "abc");
        let ms = s["mounts"].as_array().unwrap();
        assert!(ms
            .iter()
            .any(|m| m["destination"] == "/t" && m["type"] == "tmpfs"));
        assert!(ms.iter().any(|m| m["destination"] == "/etc/hostname"));
        assert_eq!(s["linux"]["devices"][0]["path"], "/dev/xnull");
        assert_eq!(s["linux"]["resources"]["devices"][1]["major"], 1);
        let ns = s["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.iter().any(|n| n["type"] == "network"));
        // the spec parses as an OCI spec
        let _: berth_runtime::oci_spec::runtime::Spec = serde_json::from_value(s).unwrap();
    }

    #[test]
    fn security_options() {
        let h = HostConfig {
            security_opt: vec!["seccomp=unconfined".into(), "no-new-privileges:true".into()],
            ..Default::default()
        };
        assert_eq!(security_opts(&h).unwrap(), (Some(None), true));
        let h = HostConfig {
            security_opt: vec!["bogus".into()],
            ..Default::default()
        };
        assert!(security_opts(&h).is_err());
        assert_eq!(numeric_user("1000:100"), Some((1000, 100)));
        assert_eq!(numeric_user("nobody"), None);
    }
}
