//! OCI `LinuxResources` -> a list of cgroup file writes ([`plan`]), then written by [`Manager::apply`](crate::Manager::apply).
//!
//! Planning only asks a [`Host`] which controller lives where and whether a file exists, so
//! every translation rule (v1 and v2) is unit-tested without root.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use crate::error::{invalid, CgroupError};
use crate::manager::write_text;
use crate::Manager;

/// Which hierarchy holds a controller for this container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Where {
    /// A v1 hierarchy; the container's directory in it.
    V1(PathBuf),
    /// The unified hierarchy; the container's directory in it.
    V2(PathBuf),
}

/// What planning needs to know about the host.
pub trait Host {
    /// Where `controller` (v1 name: memory, cpu, cpuset, pids, blkio, hugetlb, net_cls,
    /// net_prio, rdma) can be used, if anywhere. For v2 the names memory, cpu, cpuset, pids, io,
    /// hugetlb, rdma are asked as their v1 names (blkio for io).
    fn controller(&self, controller: &str) -> Option<Where>;
    /// The container's unified directory, if a cgroup2 hierarchy is mounted.
    fn unified(&self) -> Option<PathBuf>;
    /// Whether a file exists (to pick among kernel variants such as blkio.weight/bfq.weight).
    fn has_file(&self, path: &Path) -> bool;
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write `value` to `path`.
    Write {
        /// The cgroup file.
        path: PathBuf,
        /// What to write.
        value: String,
    },
    /// v1 memory limit and memory+swap limit: the kernel requires memsw >= limit at all times,
    /// so the order depends on the current values. Try `first` then `second`; if `first` fails
    /// with EINVAL, write `second` then `first`.
    Ordered {
        /// Usually memory.limit_in_bytes.
        first: Box<Step>,
        /// Usually memory.memsw.limit_in_bytes.
        second: Box<Step>,
    },
}

fn w(dir: &Path, file: &str, value: impl ToString) -> Step {
    Step::Write {
        path: dir.join(file),
        value: value.to_string(),
    }
}

fn missing(what: &str, controller: &str) -> CgroupError {
    CgroupError::Unsupported(format!(
        "{what} requested but the {controller} controller is not available for this cgroup"
    ))
}

/// cgroup v1 cpu.shares -> cgroup v2 cpu.weight (the conversion runc and crun use).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262144);
    1 + ((shares - 2) * 9999) / 262142
}

/// blkio.weight (10..=1000) -> io.weight (1..=10000).
pub fn blkio_weight_to_io(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + ((w - 10) * 9999) / 990
}

/// OCI memory.swap (memory+swap) -> v2 memory.swap.max (swap only). `None` means leave unset.
pub fn swap_to_v2(limit: Option<i64>, swap: Option<i64>) -> Result<Option<String>, CgroupError> {
    let swap = match swap {
        None | Some(0) => return Ok(None),
        Some(s) => s,
    };
    if swap == -1 {
        return Ok(Some("max".into()));
    }
    if swap < -1 {
        return Err(invalid("memory.swap", format!("{swap} is negative")));
    }
    match limit {
        None | Some(0) => Err(invalid("memory.swap", "a swap limit needs a memory limit")),
        Some(-1) => Err(invalid(
            "memory.swap",
            "a swap limit with an unlimited memory limit",
        )),
        Some(l) if swap < l => Err(invalid(
            "memory.swap",
            format!("memory+swap {swap} is below the memory limit {l}"),
        )),
        Some(l) => Ok(Some((swap - l).to_string())),
    }
}

fn limit_str(v: i64, max: &str) -> String {
    if v < 0 {
        max.to_string()
    } else {
        v.to_string()
    }
}

fn plan_memory(host: &dyn Host, m: &LinuxMemory, out: &mut Vec<Step>) -> Result<(), CgroupError> {
    let asks = m.limit().is_some_and(|v| v != 0)
        || m.reservation().is_some_and(|v| v != 0)
        || m.swap().is_some_and(|v| v != 0)
        || m.swappiness().is_some()
        || m.disable_oom_killer() == Some(true);
    if !asks {
        return Ok(());
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(invalid("memory.swappiness", format!("{s} is above 100")));
        }
    }
    match host.controller("memory") {
        None => Err(missing("memory limits", "memory")),
        Some(Where::V1(d)) => {
            let limit = m
                .limit()
                .filter(|&v| v != 0)
                .map(|v| w(&d, "memory.limit_in_bytes", limit_str(v, "-1")));
            let memsw_file = d.join("memory.memsw.limit_in_bytes");
            let swap = match m.swap().filter(|&v| v != 0) {
                Some(s) if host.has_file(&memsw_file) => {
                    if let (Some(l), true) = (m.limit(), s > 0) {
                        if l > 0 && s < l {
                            return Err(invalid(
                                "memory.swap",
                                format!("memory+swap {s} is below the memory limit {l}"),
                            ));
                        }
                    }
                    Some(w(&d, "memory.memsw.limit_in_bytes", limit_str(s, "-1")))
                }
                // No swap accounting on this kernel: as runc, ignore the swap limit.
                _ => None,
            };
            match (limit, swap) {
                (Some(l), Some(s)) => out.push(Step::Ordered {
                    first: Box::new(l),
                    second: Box::new(s),
                }),
                (Some(x), None) | (None, Some(x)) => out.push(x),
                (None, None) => {}
            }
            if let Some(r) = m.reservation().filter(|&v| v != 0) {
                out.push(w(&d, "memory.soft_limit_in_bytes", limit_str(r, "-1")));
            }
            if let Some(s) = m.swappiness() {
                out.push(w(&d, "memory.swappiness", s));
            }
            if m.disable_oom_killer() == Some(true) {
                out.push(w(&d, "memory.oom_control", 1));
            }
            Ok(())
        }
        Some(Where::V2(d)) => {
            if let Some(l) = m.limit().filter(|&v| v != 0) {
                out.push(w(&d, "memory.max", limit_str(l, "max")));
            }
            if let Some(s) = swap_to_v2(m.limit(), m.swap())? {
                // Without swap accounting the file is absent: "no limit" and "no swap" are
                // then already true (as runc); any other value is an error naming the file.
                let absent = !host.has_file(&d.join("memory.swap.max"));
                if !(absent && (s == "max" || s == "0")) {
                    out.push(w(&d, "memory.swap.max", s));
                }
            }
            if let Some(r) = m.reservation().filter(|&v| v != 0) {
                out.push(w(&d, "memory.low", limit_str(r, "max")));
            }
            // swappiness and disableOOMKiller have no v2 equivalent: ignored, as runc does.
            Ok(())
        }
    }
}

fn plan_cpu(host: &dyn Host, c: &LinuxCpu, out: &mut Vec<Step>) -> Result<(), CgroupError> {
    let asks_cpu = c.shares().is_some_and(|v| v != 0)
        || c.quota().is_some_and(|v| v != 0)
        || c.period().is_some_and(|v| v != 0)
        || c.burst().is_some()
        || c.idle().is_some();
    if asks_cpu {
        match host.controller("cpu") {
            None => return Err(missing("cpu limits", "cpu")),
            Some(Where::V1(d)) => {
                if let Some(s) = c.shares().filter(|&v| v != 0) {
                    out.push(w(&d, "cpu.shares", s));
                }
                if let Some(p) = c.period().filter(|&v| v != 0) {
                    out.push(w(&d, "cpu.cfs_period_us", p));
                }
                if let Some(q) = c.quota().filter(|&v| v != 0) {
                    out.push(w(&d, "cpu.cfs_quota_us", if q < 0 { -1 } else { q }));
                }
                if let Some(b) = c.burst() {
                    let f = d.join("cpu.cfs_burst_us");
                    if !host.has_file(&f) {
                        return Err(CgroupError::Unsupported(format!(
                            "cpu burst: {} does not exist",
                            f.display()
                        )));
                    }
                    out.push(w(&d, "cpu.cfs_burst_us", b));
                }
                if let Some(i) = c.idle() {
                    out.push(w(&d, "cpu.idle", i));
                }
            }
            Some(Where::V2(d)) => {
                if let Some(s) = c.shares().filter(|&v| v != 0) {
                    out.push(w(&d, "cpu.weight", shares_to_weight(s)));
                }
                let q = c.quota().filter(|&v| v != 0);
                let p = c.period().filter(|&v| v != 0);
                if q.is_some() || p.is_some() {
                    let qs = match q {
                        Some(q) if q > 0 => q.to_string(),
                        _ => "max".into(),
                    };
                    out.push(w(&d, "cpu.max", format!("{qs} {}", p.unwrap_or(100_000))));
                }
                if let Some(b) = c.burst() {
                    out.push(w(&d, "cpu.max.burst", b));
                }
                if let Some(i) = c.idle() {
                    out.push(w(&d, "cpu.idle", i));
                }
            }
        }
    }
    let rt =
        c.realtime_period().is_some_and(|v| v != 0) || c.realtime_runtime().is_some_and(|v| v != 0);
    if rt {
        // Real-time scheduling budgets exist only in v1 with CONFIG_RT_GROUP_SCHED; elsewhere
        // they are ignored (as Docker hosts without RT group scheduling do).
        if let Some(Where::V1(d)) = host.controller("cpu") {
            if host.has_file(&d.join("cpu.rt_runtime_us")) {
                if let Some(p) = c.realtime_period().filter(|&v| v != 0) {
                    out.push(w(&d, "cpu.rt_period_us", p));
                }
                if let Some(r) = c.realtime_runtime().filter(|&v| v != 0) {
                    out.push(w(&d, "cpu.rt_runtime_us", r));
                }
            }
        }
    }
    let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = c.mems().as_deref().filter(|s| !s.is_empty());
    if cpus.is_some() || mems.is_some() {
        let d = match host.controller("cpuset") {
            None => return Err(missing("cpuset", "cpuset")),
            Some(Where::V1(d)) | Some(Where::V2(d)) => d,
        };
        for (f, v) in [("cpuset.cpus", cpus), ("cpuset.mems", mems)] {
            if let Some(v) = v {
                if !v
                    .chars()
                    .all(|ch| ch.is_ascii_digit() || ch == ',' || ch == '-')
                {
                    return Err(invalid(f, format!("{v:?} is not a list like 0-2,4")));
                }
                out.push(w(&d, f, v));
            }
        }
    }
    Ok(())
}

fn plan_blkio(host: &dyn Host, b: &LinuxBlockIo, out: &mut Vec<Step>) -> Result<(), CgroupError> {
    let throttles = [
        (
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
            "rbps",
        ),
        (
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
            "wbps",
        ),
        (
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
            "riops",
        ),
        (
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
            "wiops",
        ),
    ];
    let weight_devs = b.weight_device().as_deref().unwrap_or_default();
    let asks = b.weight().is_some()
        || b.leaf_weight().is_some()
        || !weight_devs.is_empty()
        || throttles
            .iter()
            .any(|(t, _, _)| t.as_ref().is_some_and(|v| !v.is_empty()));
    if !asks {
        return Ok(());
    }
    for wgt in b
        .weight()
        .into_iter()
        .chain(weight_devs.iter().filter_map(|d| d.weight()))
    {
        if !(10..=1000).contains(&wgt) {
            return Err(invalid(
                "blockIO.weight",
                format!("{wgt} is outside 10..1000"),
            ));
        }
    }
    match host.controller("blkio") {
        None => Err(missing("block I/O limits", "blkio/io")),
        Some(Where::V1(d)) => {
            let (wfile, wdfile) = if host.has_file(&d.join("blkio.weight")) {
                ("blkio.weight", "blkio.weight_device")
            } else {
                ("blkio.bfq.weight", "blkio.bfq.weight_device")
            };
            let has_weight = host.has_file(&d.join(wfile));
            if (b.weight().is_some() || !weight_devs.is_empty()) && !has_weight {
                return Err(CgroupError::Unsupported(format!(
                    "block I/O weight: neither blkio.weight nor blkio.bfq.weight exists in {} \
                     (no proportional-weight I/O scheduler)",
                    d.display()
                )));
            }
            if let Some(wgt) = b.weight() {
                out.push(w(&d, wfile, wgt));
            }
            if let Some(lw) = b.leaf_weight() {
                // leaf weights were removed from the kernel (4.20+): ignored when absent
                if host.has_file(&d.join("blkio.leaf_weight")) {
                    out.push(w(&d, "blkio.leaf_weight", lw));
                }
            }
            for dev in weight_devs {
                if let Some(wgt) = dev.weight() {
                    out.push(w(
                        &d,
                        wdfile,
                        format!("{}:{} {wgt}", dev.major(), dev.minor()),
                    ));
                }
            }
            for (list, file, _) in throttles {
                for t in list.as_deref().unwrap_or_default() {
                    out.push(w(
                        &d,
                        file,
                        format!("{}:{} {}", t.major(), t.minor(), t.rate()),
                    ));
                }
            }
            Ok(())
        }
        Some(Where::V2(d)) => {
            let bfq = host.has_file(&d.join("io.bfq.weight"));
            if let Some(wgt) = b.weight() {
                if bfq {
                    out.push(w(&d, "io.bfq.weight", format!("default {wgt}")));
                } else {
                    out.push(w(
                        &d,
                        "io.weight",
                        format!("default {}", blkio_weight_to_io(wgt)),
                    ));
                }
            }
            for dev in weight_devs {
                if let Some(wgt) = dev.weight() {
                    let (f, v) = if bfq {
                        ("io.bfq.weight", u64::from(wgt))
                    } else {
                        ("io.weight", blkio_weight_to_io(wgt))
                    };
                    out.push(w(&d, f, format!("{}:{} {v}", dev.major(), dev.minor())));
                }
            }
            for (list, _, key) in throttles {
                for t in list.as_deref().unwrap_or_default() {
                    let rate = if t.rate() == 0 {
                        "max".to_string()
                    } else {
                        t.rate().to_string()
                    };
                    out.push(w(
                        &d,
                        "io.max",
                        format!("{}:{} {key}={rate}", t.major(), t.minor()),
                    ));
                }
            }
            Ok(())
        }
    }
}

fn valid_page_size(s: &str) -> bool {
    !s.is_empty() && s.len() < 16 && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Keys of `unified` must name a file of the cgroup directory: `controller.knob`, no '/', no
/// "..".
pub fn valid_unified_key(k: &str) -> bool {
    !k.is_empty()
        && !k.contains('/')
        && !k.contains('\0')
        && !k.contains("..")
        && !k.starts_with('.')
        && k.contains('.')
}

/// Translate `r` into writes. Devices are not part of the plan (see [`crate::devices`]).
pub fn plan(host: &dyn Host, r: &LinuxResources) -> Result<Vec<Step>, CgroupError> {
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        plan_memory(host, m, &mut out)?;
    }
    if let Some(c) = r.cpu() {
        plan_cpu(host, c, &mut out)?;
    }
    if let Some(p) = r.pids() {
        match host.controller("pids") {
            None => return Err(missing("pids limit", "pids")),
            Some(Where::V1(d)) | Some(Where::V2(d)) => out.push(w(
                &d,
                "pids.max",
                if p.limit() > 0 {
                    p.limit().to_string()
                } else {
                    "max".into()
                },
            )),
        }
    }
    if let Some(b) = r.block_io() {
        plan_blkio(host, b, &mut out)?;
    }
    for h in r.hugepage_limits().as_deref().unwrap_or_default() {
        let ps = h.page_size();
        if !valid_page_size(ps) {
            return Err(invalid("hugepageLimits.pageSize", format!("{ps:?}")));
        }
        match host.controller("hugetlb") {
            None => return Err(missing("hugepage limits", "hugetlb")),
            Some(Where::V1(d)) => out.push(w(
                &d,
                &format!("hugetlb.{ps}.limit_in_bytes"),
                limit_str(h.limit(), "-1"),
            )),
            Some(Where::V2(d)) => out.push(w(
                &d,
                &format!("hugetlb.{ps}.max"),
                limit_str(h.limit(), "max"),
            )),
        }
    }
    if let Some(n) = r.network() {
        if let Some(id) = n.class_id() {
            match host.controller("net_cls") {
                Some(Where::V1(d)) => out.push(w(&d, "net_cls.classid", id)),
                _ => return Err(missing("network class id", "net_cls")),
            }
        }
        for p in n.priorities().as_deref().unwrap_or_default() {
            if p.name().is_empty() || p.name().contains(char::is_whitespace) {
                return Err(invalid(
                    "network.priorities.name",
                    format!("{:?}", p.name()),
                ));
            }
            match host.controller("net_prio") {
                Some(Where::V1(d)) => out.push(w(
                    &d,
                    "net_prio.ifpriomap",
                    format!("{} {}", p.name(), p.priority()),
                )),
                _ => return Err(missing("network priorities", "net_prio")),
            }
        }
    }
    if let Some(rdma) = r.rdma() {
        for (dev, l) in rdma {
            if dev.is_empty() || dev.contains(char::is_whitespace) {
                return Err(invalid("rdma device", format!("{dev:?}")));
            }
            let d = match host.controller("rdma") {
                Some(Where::V1(d)) | Some(Where::V2(d)) => d,
                None => return Err(missing("rdma limits", "rdma")),
            };
            let mut v = dev.clone();
            if let Some(h) = l.hca_handles() {
                v.push_str(&format!(" hca_handle={h}"));
            }
            if let Some(o) = l.hca_objects() {
                v.push_str(&format!(" hca_object={o}"));
            }
            out.push(w(&d, "rdma.max", v));
        }
    }
    if let Some(u) = r.unified() {
        let mut keys: Vec<&String> = u.keys().collect();
        keys.sort();
        for k in keys {
            if !valid_unified_key(k) {
                return Err(invalid(
                    format!("unified key {k:?}"),
                    "must be a file name like memory.high",
                ));
            }
            let Some(d) = host.unified() else {
                return Err(CgroupError::Unsupported(format!(
                    "unified resource {k}: no cgroup2 hierarchy on this host"
                )));
            };
            let prefix = k.split('.').next().unwrap_or_default();
            if prefix != "cgroup" {
                let ctrl = if prefix == "io" { "blkio" } else { prefix };
                if !matches!(host.controller(ctrl), Some(Where::V2(_)))
                    && !host.has_file(&d.join(k))
                {
                    return Err(CgroupError::Unsupported(format!(
                        "unified resource {k}: controller {prefix} is not enabled in the cgroup2 hierarchy"
                    )));
                }
            }
            out.push(w(&d, k, &u[k]));
        }
    }
    Ok(out)
}

fn run(step: &Step) -> Result<(), CgroupError> {
    match step {
        Step::Write { path, value } => write_text(path, value),
        Step::Ordered { first, second } => match run(first) {
            Ok(()) => run(second),
            Err(CgroupError::Write { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) =>
            {
                run(second)?;
                run(first)
            }
            Err(e) => Err(e),
        },
    }
}

impl Host for Manager {
    fn controller(&self, controller: &str) -> Option<Where> {
        if let Some(d) = self.v1_dir(controller) {
            return Some(Where::V1(d.to_path_buf()));
        }
        let v2name = if controller == "blkio" {
            "io"
        } else {
            controller
        };
        let d = self.v2_dir()?;
        self.v2_controllers()
            .iter()
            .any(|c| c == v2name)
            .then(|| Where::V2(d.to_path_buf()))
    }

    fn unified(&self) -> Option<PathBuf> {
        self.v2_dir().map(Path::to_path_buf)
    }

    fn has_file(&self, path: &Path) -> bool {
        path.exists()
    }
}

pub(crate) fn apply(m: &Manager, r: &LinuxResources) -> Result<(), CgroupError> {
    let steps = plan(m, r)?;
    if let Some(devs) = r.devices() {
        crate::devices::apply(m, devs)?;
    }
    for s in &steps {
        run(s)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxHugepageLimitBuilder, LinuxMemoryBuilder,
        LinuxPidsBuilder, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
        LinuxWeightDeviceBuilder,
    };
    use std::collections::{HashMap, HashSet};

    /// A host with v1 hierarchies at /v1/<ctrl>/c or everything on /v2/c.
    struct Fake {
        v2: bool,
        controllers: Vec<&'static str>,
        files: HashSet<PathBuf>,
    }

    impl Host for Fake {
        fn controller(&self, c: &str) -> Option<Where> {
            if !self.controllers.contains(&c) {
                return None;
            }
            Some(if self.v2 {
                Where::V2(PathBuf::from("/v2/c"))
            } else {
                Where::V1(PathBuf::from(format!("/v1/{c}/c")))
            })
        }
        fn unified(&self) -> Option<PathBuf> {
            self.v2.then(|| PathBuf::from("/v2/c"))
        }
        fn has_file(&self, p: &Path) -> bool {
            self.files.contains(p)
        }
    }

    fn v1(files: &[&str]) -> Fake {
        Fake {
            v2: false,
            controllers: vec!["memory", "cpu", "cpuset", "pids", "blkio", "hugetlb"],
            files: files.iter().map(PathBuf::from).collect(),
        }
    }

    fn v2(files: &[&str]) -> Fake {
        Fake {
            v2: true,
            controllers: vec!["memory", "cpu", "cpuset", "pids", "blkio", "hugetlb"],
            files: files.iter().map(PathBuf::from).collect(),
        }
    }

    fn writes(steps: &[Step]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for s in steps {
            match s {
                Step::Write { path, value } => {
                    out.push((path.display().to_string(), value.clone()))
                }
                Step::Ordered { first, second } => {
                    out.extend(writes(&[(**first).clone(), (**second).clone()]))
                }
            }
        }
        out
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn conversions() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262144), 10000);
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(blkio_weight_to_io(10), 1);
        assert_eq!(blkio_weight_to_io(500), 4950);
        assert_eq!(blkio_weight_to_io(1000), 10000);
        assert_eq!(
            swap_to_v2(Some(100), Some(300)).unwrap(),
            Some("200".into())
        );
        assert_eq!(swap_to_v2(Some(100), Some(-1)).unwrap(), Some("max".into()));
        assert_eq!(swap_to_v2(Some(100), None).unwrap(), None);
        assert_eq!(swap_to_v2(Some(100), Some(0)).unwrap(), None);
        assert!(swap_to_v2(Some(300), Some(100)).is_err());
        assert!(swap_to_v2(None, Some(100)).is_err());
        assert!(swap_to_v2(Some(-1), Some(100)).is_err());
    }

    fn mem(limit: i64, swap: Option<i64>) -> LinuxResources {
        let mut b = LinuxMemoryBuilder::default()
            .limit(limit)
            .reservation(10i64)
            .swappiness(5u64);
        if let Some(s) = swap {
            b = b.swap(s);
        }
        LinuxResourcesBuilder::default()
            .memory(b.disable_oom_killer(true).build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn memory_v1_with_and_without_memsw() {
        let host = v1(&["/v1/memory/c/memory.memsw.limit_in_bytes"]);
        let steps = plan(&host, &mem(100, Some(200))).unwrap();
        assert!(matches!(steps[0], Step::Ordered { .. }));
        assert_eq!(
            writes(&steps),
            vec![
                pair("/v1/memory/c/memory.limit_in_bytes", "100"),
                pair("/v1/memory/c/memory.memsw.limit_in_bytes", "200"),
                pair("/v1/memory/c/memory.soft_limit_in_bytes", "10"),
                pair("/v1/memory/c/memory.swappiness", "5"),
                pair("/v1/memory/c/memory.oom_control", "1"),
            ]
        );
        // unlimited
        let steps = plan(&host, &mem(-1, Some(-1))).unwrap();
        assert_eq!(
            writes(&steps)[0],
            pair("/v1/memory/c/memory.limit_in_bytes", "-1")
        );
        assert_eq!(
            writes(&steps)[1],
            pair("/v1/memory/c/memory.memsw.limit_in_bytes", "-1")
        );
        // no swap accounting: swap is ignored
        let steps = plan(&v1(&[]), &mem(100, Some(200))).unwrap();
        assert_eq!(
            writes(&steps)[0],
            pair("/v1/memory/c/memory.limit_in_bytes", "100")
        );
        assert_eq!(
            writes(&steps)[1].0,
            "/v1/memory/c/memory.soft_limit_in_bytes"
        );
        assert!(plan(&host, &mem(300, Some(200))).is_err());
    }

    #[test]
    fn memory_v2() {
        let steps = plan(&v2(&["/v2/c/memory.swap.max"]), &mem(100, Some(300))).unwrap();
        assert_eq!(
            writes(&steps),
            vec![
                pair("/v2/c/memory.max", "100"),
                pair("/v2/c/memory.swap.max", "200"),
                pair("/v2/c/memory.low", "10"),
            ]
        );
        let steps = plan(&v2(&[]), &mem(-1, None)).unwrap();
        assert_eq!(writes(&steps)[0], pair("/v2/c/memory.max", "max"));
        // no swap accounting: swap == limit (no swap) is already true, more swap still fails
        let steps = plan(&v2(&[]), &mem(100, Some(100))).unwrap();
        assert!(!writes(&steps).iter().any(|(p, _)| p.ends_with("swap.max")));
        let steps = plan(&v2(&[]), &mem(100, Some(300))).unwrap();
        assert_eq!(writes(&steps)[1], pair("/v2/c/memory.swap.max", "200"));
    }

    fn cpu() -> LinuxResources {
        LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(1024u64)
                    .quota(50000i64)
                    .period(100000u64)
                    .realtime_period(1000000u64)
                    .realtime_runtime(950000i64)
                    .cpus("0-1,3")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(-1).build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn cpu_v1_and_v2() {
        let w1 = writes(&plan(&v1(&["/v1/cpu/c/cpu.rt_runtime_us"]), &cpu()).unwrap());
        assert_eq!(
            w1,
            vec![
                pair("/v1/cpu/c/cpu.shares", "1024"),
                pair("/v1/cpu/c/cpu.cfs_period_us", "100000"),
                pair("/v1/cpu/c/cpu.cfs_quota_us", "50000"),
                pair("/v1/cpu/c/cpu.rt_period_us", "1000000"),
                pair("/v1/cpu/c/cpu.rt_runtime_us", "950000"),
                pair("/v1/cpuset/c/cpuset.cpus", "0-1,3"),
                pair("/v1/cpuset/c/cpuset.mems", "0"),
                pair("/v1/pids/c/pids.max", "max"),
            ]
        );
        // realtime silently ignored without RT group scheduling
        let w1 = writes(&plan(&v1(&[]), &cpu()).unwrap());
        assert!(!w1.iter().any(|(p, _)| p.contains("rt_")));
        let w2 = writes(&plan(&v2(&[]), &cpu()).unwrap());
        assert_eq!(
            w2,
            vec![
                pair("/v2/c/cpu.weight", "39"),
                pair("/v2/c/cpu.max", "50000 100000"),
                pair("/v2/c/cpuset.cpus", "0-1,3"),
                pair("/v2/c/cpuset.mems", "0"),
                pair("/v2/c/pids.max", "max"),
            ]
        );
        let q = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().quota(-1i64).build().unwrap())
            .build()
            .unwrap();
        assert_eq!(
            writes(&plan(&v2(&[]), &q).unwrap()),
            vec![pair("/v2/c/cpu.max", "max 100000")]
        );
        assert_eq!(
            writes(&plan(&v1(&[]), &q).unwrap()),
            vec![pair("/v1/cpu/c/cpu.cfs_quota_us", "-1")]
        );
        let bad = LinuxResourcesBuilder::default()
            .cpu(LinuxCpuBuilder::default().cpus("0;rm").build().unwrap())
            .build()
            .unwrap();
        assert!(plan(&v1(&[]), &bad).is_err());
    }

    fn blkio() -> LinuxResources {
        let t = |maj: i64, min: i64, rate: u64| {
            LinuxThrottleDeviceBuilder::default()
                .major(maj)
                .minor(min)
                .rate(rate)
                .build()
                .unwrap()
        };
        LinuxResourcesBuilder::default()
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .weight_device(vec![LinuxWeightDeviceBuilder::default()
                        .major(8)
                        .minor(0)
                        .weight(100u16)
                        .build()
                        .unwrap()])
                    .throttle_read_bps_device(vec![t(8, 0, 1048576)])
                    .throttle_write_iops_device(vec![t(8, 16, 0)])
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    }

    #[test]
    fn blkio_v1_and_v2() {
        // no weight file at all: weight requested -> error naming the directory
        let e = plan(&v1(&[]), &blkio()).unwrap_err();
        assert!(e.to_string().contains("blkio.weight"), "{e}");
        let w1 = writes(&plan(&v1(&["/v1/blkio/c/blkio.bfq.weight"]), &blkio()).unwrap());
        assert_eq!(
            w1,
            vec![
                pair("/v1/blkio/c/blkio.bfq.weight", "500"),
                pair("/v1/blkio/c/blkio.bfq.weight_device", "8:0 100"),
                pair("/v1/blkio/c/blkio.throttle.read_bps_device", "8:0 1048576"),
                pair("/v1/blkio/c/blkio.throttle.write_iops_device", "8:16 0"),
            ]
        );
        let w2 = writes(&plan(&v2(&[]), &blkio()).unwrap());
        assert_eq!(
            w2,
            vec![
                pair("/v2/c/io.weight", "default 4950"),
                pair("/v2/c/io.weight", "8:0 910"),
                pair("/v2/c/io.max", "8:0 rbps=1048576"),
                pair("/v2/c/io.max", "8:16 wiops=max"),
            ]
        );
        let w2 = writes(&plan(&v2(&["/v2/c/io.bfq.weight"]), &blkio()).unwrap());
        assert_eq!(w2[0], pair("/v2/c/io.bfq.weight", "default 500"));
    }

    #[test]
    fn hugetlb_and_unified() {
        let r = LinuxResourcesBuilder::default()
            .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(4096i64)
                .build()
                .unwrap()])
            .unified(HashMap::from([
                ("memory.high".to_string(), "1000".to_string()),
                ("cgroup.max.depth".to_string(), "2".to_string()),
            ]))
            .build()
            .unwrap();
        assert_eq!(
            writes(&plan(&v2(&[]), &r).unwrap()),
            vec![
                pair("/v2/c/hugetlb.2MB.max", "4096"),
                pair("/v2/c/cgroup.max.depth", "2"),
                pair("/v2/c/memory.high", "1000"),
            ]
        );
        // unified on a pure v1 host
        assert!(matches!(
            plan(&v1(&[]), &r),
            Err(CgroupError::Unsupported(_))
        ));
        for bad in ["../x.y", "a/b.c", "nodot", "", ".hidden"] {
            assert!(!valid_unified_key(bad), "{bad}");
            let r = LinuxResourcesBuilder::default()
                .unified(HashMap::from([(bad.to_string(), "1".to_string())]))
                .build()
                .unwrap();
            assert!(
                matches!(plan(&v2(&[]), &r), Err(CgroupError::Invalid { .. })),
                "{bad}"
            );
        }
        let badps = LinuxResourcesBuilder::default()
            .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                .page_size("../2MB")
                .limit(1i64)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        assert!(plan(&v1(&[]), &badps).is_err());
    }

    #[test]
    fn missing_controller_errors_only_when_asked() {
        let none = Fake {
            v2: false,
            controllers: vec![],
            files: HashSet::new(),
        };
        assert!(plan(&none, &LinuxResources::default()).unwrap().is_empty());
        // a memory object with nothing set does not need the controller
        let empty_mem = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().build().unwrap())
            .build()
            .unwrap();
        assert!(plan(&none, &empty_mem).unwrap().is_empty());
        let e = plan(&none, &mem(100, None)).unwrap_err();
        assert_eq!(e.kind(), berth_core::ErrorKind::Unsupported);
        assert!(e.to_string().contains("memory"), "{e}");
        assert!(plan(&none, &cpu()).is_err());
    }
}
