//! Resource usage, shaped like the `data` object of runc's `events --stats` (same JSON names).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::CgroupError;
use crate::resources::{Host, Where};
use crate::Manager;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// CPU time consumed, in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuUsage {
    /// Total CPU time.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total: u64,
    /// Per-CPU total (v1 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    /// Per-CPU kernel time (v1 only, when the kernel reports it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    /// Per-CPU user time (v1 only, when the kernel reports it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    /// Time in the kernel.
    pub kernel: u64,
    /// Time in user space.
    pub user: u64,
}

/// CFS bandwidth throttling.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttling {
    /// Enforcement periods elapsed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub periods: u64,
    /// Periods in which the cgroup was throttled.
    #[serde(default, rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Total time throttled (ns).
    #[serde(default, rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

/// CPU statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cpu {
    /// Usage.
    pub usage: CpuUsage,
    /// Throttling.
    pub throttling: Throttling,
}

/// One memory counter with its limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryEntry {
    /// Limit in bytes (u64::MAX-ish values mean unlimited).
    pub limit: u64,
    /// Current usage.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Peak usage.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    /// How many times the limit was hit.
    pub failcnt: u64,
}

/// Memory statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// Page cache.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache: u64,
    /// Memory.
    pub usage: MemoryEntry,
    /// v1: memory+swap; v2: swap only.
    pub swap: MemoryEntry,
    /// Kernel memory (v1).
    pub kernel: MemoryEntry,
    /// Kernel TCP memory (v1).
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat as read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// Process counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pids {
    /// Processes (tasks) in the cgroup.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub current: u64,
    /// Limit (0 = unlimited).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// One block I/O counter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlkioEntry {
    /// Device major.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub major: u64,
    /// Device minor.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minor: u64,
    /// "Read", "Write", "Sync", "Async", "Discard", "Total".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub op: String,
    /// Value.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub value: u64,
}

/// Block I/O statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blkio {
    /// Bytes transferred.
    #[serde(
        rename = "ioServiceBytesRecursive",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    /// Operations.
    #[serde(
        rename = "ioServicedRecursive",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

/// Huge page usage for one page size.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hugetlb {
    /// Bytes in use.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// Peak (v1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    /// Allocation failures.
    pub failcnt: u64,
}

/// Resource usage of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// CPU.
    pub cpu: Cpu,
    /// Memory.
    pub memory: Memory,
    /// Processes.
    pub pids: Pids,
    /// Block I/O.
    pub blkio: Blkio,
    /// Huge pages by page size ("2MB").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

/// Parse "key value" lines (cpu.stat, memory.stat, memory.events, cpuacct.stat).
pub fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

/// Parse a v1 blkio file ("8:0 Read 4096" lines, plus a "Total N" line that is skipped).
pub fn parse_blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 3 {
                return None;
            }
            let (maj, min) = f[0].split_once(':')?;
            Some(BlkioEntry {
                major: maj.parse().ok()?,
                minor: min.parse().ok()?,
                op: f[1].to_string(),
                value: f[2].parse().ok()?,
            })
        })
        .collect()
}

/// Parse v2 `io.stat` into (bytes, operations) entries, as runc reports them.
pub fn parse_io_stat(text: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    for l in text.lines() {
        let mut it = l.split_whitespace();
        let Some((maj, min)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (maj.parse::<u64>(), min.parse::<u64>()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse::<u64>() else {
                continue;
            };
            let (list, op) = match k {
                "rbytes" => (&mut bytes, "Read"),
                "wbytes" => (&mut bytes, "Write"),
                "dbytes" => (&mut bytes, "Discard"),
                "rios" => (&mut ios, "Read"),
                "wios" => (&mut ios, "Write"),
                "dios" => (&mut ios, "Discard"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
    (bytes, ios)
}

fn read_opt(p: &Path) -> Result<Option<String>, CgroupError> {
    match fs::read_to_string(p) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: p.to_path_buf(),
            source,
        }),
    }
}

/// A single number; "max" reads as u64::MAX; a missing file as 0.
fn num(p: &Path) -> Result<u64, CgroupError> {
    let Some(s) = read_opt(p)? else { return Ok(0) };
    let s = s.trim();
    if s == "max" {
        return Ok(u64::MAX);
    }
    s.parse().map_err(|_| CgroupError::Parse {
        path: p.to_path_buf(),
        reason: format!("not a number: {s:?}"),
    })
}

fn nums(p: &Path) -> Result<Vec<u64>, CgroupError> {
    Ok(read_opt(p)?
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect())
}

fn keyed(p: &Path) -> Result<BTreeMap<String, u64>, CgroupError> {
    Ok(parse_flat_keyed(&read_opt(p)?.unwrap_or_default()))
}

const USER_HZ_NS: u64 = 10_000_000; // 1e9 / USER_HZ (100)

fn cpu_v1(s: &mut Stats, acct: Option<&Path>, cpu: Option<&Path>) -> Result<(), CgroupError> {
    if let Some(d) = acct {
        let u = &mut s.cpu.usage;
        u.total = num(&d.join("cpuacct.usage"))?;
        u.percpu = nums(&d.join("cpuacct.usage_percpu"))?;
        u.percpu_user = nums(&d.join("cpuacct.usage_percpu_user"))?;
        u.percpu_kernel = nums(&d.join("cpuacct.usage_percpu_sys"))?;
        let st = keyed(&d.join("cpuacct.stat"))?;
        u.user = st.get("user").copied().unwrap_or(0) * USER_HZ_NS;
        u.kernel = st.get("system").copied().unwrap_or(0) * USER_HZ_NS;
    }
    if let Some(d) = cpu {
        let st = keyed(&d.join("cpu.stat"))?;
        s.cpu.throttling = Throttling {
            periods: st.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: st.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: st.get("throttled_time").copied().unwrap_or(0),
        };
    }
    Ok(())
}

fn cpu_v2(s: &mut Stats, d: &Path) -> Result<(), CgroupError> {
    let st = keyed(&d.join("cpu.stat"))?;
    let g = |k: &str| st.get(k).copied().unwrap_or(0);
    s.cpu.usage.total = g("usage_usec") * 1000;
    s.cpu.usage.user = g("user_usec") * 1000;
    s.cpu.usage.kernel = g("system_usec") * 1000;
    s.cpu.throttling = Throttling {
        periods: g("nr_periods"),
        throttled_periods: g("nr_throttled"),
        throttled_time: g("throttled_usec") * 1000,
    };
    Ok(())
}

fn mem_entry_v1(d: &Path, prefix: &str) -> Result<MemoryEntry, CgroupError> {
    Ok(MemoryEntry {
        limit: num(&d.join(format!("{prefix}.limit_in_bytes")))?,
        usage: num(&d.join(format!("{prefix}.usage_in_bytes")))?,
        max: num(&d.join(format!("{prefix}.max_usage_in_bytes")))?,
        failcnt: num(&d.join(format!("{prefix}.failcnt")))?,
    })
}

fn memory(s: &mut Stats, w: Where) -> Result<(), CgroupError> {
    match w {
        Where::V1(d) => {
            s.memory.usage = mem_entry_v1(&d, "memory")?;
            s.memory.swap = mem_entry_v1(&d, "memory.memsw")?;
            s.memory.kernel = mem_entry_v1(&d, "memory.kmem")?;
            s.memory.kernel_tcp = mem_entry_v1(&d, "memory.kmem.tcp")?;
            s.memory.raw = keyed(&d.join("memory.stat"))?;
            s.memory.cache = s
                .memory
                .raw
                .get("total_cache")
                .or_else(|| s.memory.raw.get("cache"))
                .copied()
                .unwrap_or(0);
        }
        Where::V2(d) => {
            let ev = keyed(&d.join("memory.events"))?;
            s.memory.usage = MemoryEntry {
                limit: num(&d.join("memory.max"))?,
                usage: num(&d.join("memory.current"))?,
                max: num(&d.join("memory.peak"))?,
                failcnt: ev.get("max").copied().unwrap_or(0),
            };
            let sev = keyed(&d.join("memory.swap.events"))?;
            s.memory.swap = MemoryEntry {
                limit: num(&d.join("memory.swap.max"))?,
                usage: num(&d.join("memory.swap.current"))?,
                max: num(&d.join("memory.swap.peak"))?,
                failcnt: sev.get("max").copied().unwrap_or(0),
            };
            s.memory.raw = keyed(&d.join("memory.stat"))?;
            s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);
        }
    }
    Ok(())
}

fn hugetlb(s: &mut Stats, w: Where) -> Result<(), CgroupError> {
    let (d, v2) = match w {
        Where::V1(d) => (d, false),
        Where::V2(d) => (d, true),
    };
    let Ok(rd) = fs::read_dir(&d) else {
        return Ok(());
    };
    let mut sizes: Vec<String> = rd
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            let rest = n.strip_prefix("hugetlb.")?;
            let ps = rest.strip_suffix(if v2 { ".current" } else { ".usage_in_bytes" })?;
            (!ps.contains('.')).then(|| ps.to_string())
        })
        .collect();
    sizes.sort();
    for ps in sizes {
        let h = if v2 {
            Hugetlb {
                usage: num(&d.join(format!("hugetlb.{ps}.current")))?,
                max: 0,
                failcnt: keyed(&d.join(format!("hugetlb.{ps}.events")))?
                    .get("max")
                    .copied()
                    .unwrap_or(0),
            }
        } else {
            Hugetlb {
                usage: num(&d.join(format!("hugetlb.{ps}.usage_in_bytes")))?,
                max: num(&d.join(format!("hugetlb.{ps}.max_usage_in_bytes")))?,
                failcnt: num(&d.join(format!("hugetlb.{ps}.failcnt")))?,
            }
        };
        s.hugetlb.insert(ps, h);
    }
    Ok(())
}

pub(crate) fn collect(m: &Manager) -> Result<Stats, CgroupError> {
    let mut s = Stats::default();
    match (m.controller("cpuacct"), m.controller("cpu")) {
        (Some(Where::V1(a)), c) => {
            let c = match c {
                Some(Where::V1(c)) => Some(c),
                _ => None,
            };
            cpu_v1(&mut s, Some(&a), c.as_deref())?
        }
        (_, Some(Where::V1(c))) => cpu_v1(&mut s, None, Some(&c))?,
        _ => {
            // cpu.stat is a core file of every v2 cgroup
            if let Some(d) = m.v2_dir() {
                if m.v1_dir("cpu").is_none() {
                    cpu_v2(&mut s, d)?;
                }
            }
        }
    }
    if let Some(w) = m.controller("memory") {
        memory(&mut s, w)?;
    }
    if let Some(Where::V1(d)) | Some(Where::V2(d)) = m.controller("pids") {
        s.pids.current = num(&d.join("pids.current"))?;
        let l = num(&d.join("pids.max"))?;
        s.pids.limit = if l == u64::MAX { 0 } else { l };
    }
    match m.controller("blkio") {
        Some(Where::V1(d)) => {
            let p = |f: &str| -> Result<Vec<BlkioEntry>, CgroupError> {
                Ok(parse_blkio_v1(&read_opt(&d.join(f))?.unwrap_or_default()))
            };
            s.blkio.io_service_bytes_recursive = p("blkio.throttle.io_service_bytes_recursive")?;
            s.blkio.io_serviced_recursive = p("blkio.throttle.io_serviced_recursive")?;
        }
        Some(Where::V2(d)) => {
            let (b, o) = parse_io_stat(&read_opt(&d.join("io.stat"))?.unwrap_or_default());
            s.blkio.io_service_bytes_recursive = b;
            s.blkio.io_serviced_recursive = o;
        }
        None => {}
    }
    if let Some(w) = m.controller("hugetlb") {
        hugetlb(&mut s, w)?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        let k = parse_flat_keyed("usage_usec 12\nnr_periods 3\nbogus\nx y\n");
        assert_eq!(k.len(), 2);
        assert_eq!(k["usage_usec"], 12);
        let b = parse_blkio_v1("8:0 Read 4096\n8:0 Write 0\nTotal 4096\n");
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[0],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Read".into(),
                value: 4096
            }
        );
        let (bytes, ios) =
            parse_io_stat("259:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n");
        assert_eq!(bytes.len(), 3);
        assert_eq!(bytes[1].op, "Write");
        assert_eq!(bytes[1].value, 20);
        assert_eq!(ios[0].value, 1);
        assert_eq!(ios[0].major, 259);
    }

    #[test]
    fn json_shape_matches_runc() {
        let mut s = Stats::default();
        s.cpu.usage.total = 5;
        s.cpu.throttling.throttled_periods = 2;
        s.memory.usage.limit = 100;
        s.memory.kernel_tcp.failcnt = 1;
        s.pids.current = 3;
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["cpu"]["usage"]["total"], 5);
        assert_eq!(v["cpu"]["usage"]["kernel"], 0);
        assert!(v["cpu"]["usage"].get("percpu").is_none());
        assert_eq!(v["cpu"]["throttling"]["throttledPeriods"], 2);
        assert_eq!(v["memory"]["usage"]["limit"], 100);
        assert_eq!(v["memory"]["kernelTCP"]["failcnt"], 1);
        assert_eq!(v["pids"]["current"], 3);
        assert!(v.get("hugetlb").is_none());
    }
}
