//! Container commands: run, create, start, stop, ps, logs, exec, attach, wait, ...

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{ArgAction, Args};
use serde_json::{json, Map, Value};

use super::client::{self, ApiError, Client};
use super::http::{enc, Body};
use super::output::{self, nf, render_rows, sf, short_id};
use super::stream;

/// A container's exit status carried as an error so that it becomes the process exit code.
#[derive(Debug)]
pub struct ExitCode(pub i32);
impl std::fmt::Display for ExitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}
impl std::error::Error for ExitCode {}

/// Options of `run` and `create`.
#[derive(Args, Debug, Clone)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
    /// Run container in background and print container ID.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Automatically remove the container and its anonymous volumes when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables.
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>]).
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Bind mount a volume (SRC:DST[:OPTS] or DST for an anonymous volume).
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Attach a filesystem mount (type=bind|volume|tmpfs,source=…,target=…,readonly).
    #[arg(long)]
    pub mount: Vec<String>,
    /// Publish a container's port(s) to the host ([ip:][hostPort:]containerPort[/proto]).
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports.
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports.
    #[arg(long)]
    pub expose: Vec<String>,
    /// Connect a container to a network.
    #[arg(long, alias = "net")]
    pub network: Option<String>,
    /// Add network-scoped alias for the container.
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// Restart policy to apply when a container exits (no, always, unless-stopped, on-failure[:N]).
    #[arg(long)]
    pub restart: Option<String>,
    /// Memory limit (e.g. 512m).
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 for unlimited.
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    /// Number of CPUs.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight).
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1).
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Tune container pids limit (-1 for unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Overwrite the default ENTRYPOINT of the image.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name.
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Give extended privileges to this container.
    #[arg(long)]
    pub privileged: bool,
    /// Add Linux capabilities.
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities.
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Mount the container's root filesystem as read only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Mount a tmpfs directory (PATH[:OPTS]).
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Set meta data on a container.
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Override the key sequence for detaching a container.
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Attach to STDIN, STDOUT or STDERR.
    #[arg(short = 'a', long = "attach")]
    pub attach: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps processes.
    #[arg(long)]
    pub init: bool,
    /// Signal to stop the container.
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container.
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i64>,
    /// Set custom DNS servers.
    #[arg(long)]
    pub dns: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip).
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Security Options.
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Ulimit options (nofile=1024:2048).
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Add a host device to the container.
    #[arg(long)]
    pub device: Vec<String>,
    /// Add additional groups to join.
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// Sysctl options.
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Size of /dev/shm.
    #[arg(long = "shm-size")]
    pub shm_size: Option<String>,
    /// IPC mode to use.
    #[arg(long)]
    pub ipc: Option<String>,
    /// PID namespace to use.
    #[arg(long)]
    pub pid: Option<String>,
    /// Logging driver for the container.
    #[arg(long = "log-driver")]
    pub log_driver: Option<String>,
    /// Log driver options.
    #[arg(long = "log-opt")]
    pub log_opt: Vec<String>,
    /// Set platform if server is multi-platform capable.
    #[arg(long)]
    pub platform: Option<String>,
    /// Pull image before running ("always", "missing", "never").
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Suppress the pull output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Write the container ID to the file.
    #[arg(long)]
    pub cidfile: Option<PathBuf>,
    /// Container runtime to use.
    #[arg(long)]
    pub runtime: Option<String>,
    /// IMAGE [COMMAND] [ARG...]: flags after the image belong to the command (as Docker).
    #[arg(
        value_name = "IMAGE [COMMAND] [ARG...]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true
    )]
    pub args: Vec<String>,
}

impl RunArgs {
    /// The image.
    pub fn image(&self) -> &str {
        self.args.first().map(String::as_str).unwrap_or("")
    }
    /// The command and its arguments.
    pub fn command(&self) -> &[String] {
        self.args.get(1..).unwrap_or(&[])
    }
}

/// `RAMInBytes` from go-units: "512m", "1g", "100k", "1024" (binary multiples).
pub fn parse_bytes(s: &str) -> anyhow::Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid size: '{s}'"))?;
    if n < 0.0 {
        if n == -1.0 {
            return Ok(-1);
        }
        bail!("invalid size: '{s}'");
    }
    Ok((n * mult as f64) as i64)
}

fn parse_port(spec: &str) -> anyhow::Result<(String, Option<(String, String)>)> {
    // [ip:][hostPort:]containerPort[/proto]
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p),
        None => (spec, "tcp"),
    };
    let (ip, host, cport) = if let Some(r) = rest.strip_prefix('[') {
        // [ipv6]:host:container
        let (ip, r) = r
            .split_once("]:")
            .ok_or_else(|| anyhow::anyhow!("invalid port format: {spec}"))?;
        let (h, c) = r.split_once(':').unwrap_or(("", r));
        (ip.to_string(), h.to_string(), c.to_string())
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.as_slice() {
            [c] => (String::new(), String::new(), c.to_string()),
            [h, c] => (String::new(), h.to_string(), c.to_string()),
            [ip, h, c] => (ip.to_string(), h.to_string(), c.to_string()),
            _ => bail!("invalid port format: {spec}"),
        }
    };
    if cport.is_empty() || !cport.chars().all(|c| c.is_ascii_digit() || c == '-') {
        bail!("invalid containerPort: {cport}");
    }
    let key = format!("{cport}/{proto}");
    let bind = if ip.is_empty() && host.is_empty() && !spec.contains(':') {
        None
    } else {
        Some((ip, host))
    };
    Ok((key, bind))
}

fn parse_mount(spec: &str) -> anyhow::Result<Value> {
    let mut m = Map::new();
    let mut ty = "volume".to_string();
    let mut tmpfs = Map::new();
    let mut bind = Map::new();
    let mut vol = Map::new();
    for kv in spec.split(',') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
        match k {
            "type" => ty = v.to_string(),
            "source" | "src" => {
                m.insert("Source".into(), v.into());
            }
            "target" | "destination" | "dst" => {
                m.insert("Target".into(), v.into());
            }
            "readonly" | "ro" => {
                m.insert("ReadOnly".into(), Value::Bool(v != "false" && v != "0"));
            }
            "consistency" => {
                m.insert("Consistency".into(), v.into());
            }
            "bind-propagation" => {
                bind.insert("Propagation".into(), v.into());
            }
            "bind-recursive" => {}
            "volume-nocopy" => {
                vol.insert("NoCopy".into(), Value::Bool(v != "false"));
            }
            "volume-driver" => {
                vol.insert("DriverConfig".into(), json!({"Name": v}));
            }
            "tmpfs-size" => {
                tmpfs.insert("SizeBytes".into(), parse_bytes(v)?.into());
            }
            "tmpfs-mode" => {
                let mode = i64::from_str_radix(v, 8)
                    .map_err(|_| anyhow::anyhow!("invalid tmpfs-mode {v}"))?;
                tmpfs.insert("Mode".into(), mode.into());
            }
            _ => bail!("invalid argument for --mount: unexpected key '{k}' in '{kv}'"),
        }
    }
    if !m.contains_key("Target") {
        bail!("invalid argument for --mount: target is required");
    }
    if !bind.is_empty() {
        m.insert("BindOptions".into(), Value::Object(bind));
    }
    if !vol.is_empty() {
        m.insert("VolumeOptions".into(), Value::Object(vol));
    }
    if !tmpfs.is_empty() {
        m.insert("TmpfsOptions".into(), Value::Object(tmpfs));
    }
    m.insert("Type".into(), ty.into());
    Ok(Value::Object(m))
}

fn restart_policy(s: &str) -> anyhow::Result<Value> {
    let (name, n) = s.split_once(':').unwrap_or((s, ""));
    let max: i64 = if n.is_empty() {
        0
    } else {
        n.parse().map_err(|_| {
            anyhow::anyhow!("invalid restart policy format: maximum retry count must be an integer")
        })?
    };
    match name {
        "no" | "always" | "unless-stopped" | "on-failure" => {}
        _ => bail!("invalid restart policy format: unknown policy '{name}'"),
    }
    if max != 0 && name != "on-failure" {
        bail!(
            "invalid restart policy format: maximum retry count can only be used with 'on-failure'"
        );
    }
    Ok(json!({"Name": if name == "no" { "" } else { name }, "MaximumRetryCount": max}))
}

/// Capability names as the docker CLI sends them: upper case with the CAP_ prefix ("ALL" kept).
fn caps(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|c| {
            let u = c.trim().to_ascii_uppercase();
            if u == "ALL" || u.starts_with("CAP_") {
                u
            } else {
                format!("CAP_{u}")
            }
        })
        .collect()
}

fn env_list(a: &RunArgs) -> anyhow::Result<Vec<String>> {
    let mut env = Vec::new();
    let expand = |e: &str| -> Option<String> {
        if e.contains('=') {
            Some(e.to_string())
        } else {
            // unset locally: passed as the bare name, as the docker CLI does
            Some(
                std::env::var(e)
                    .map(|v| format!("{e}={v}"))
                    .unwrap_or_else(|_| e.to_string()),
            )
        }
    };
    for f in &a.env_file {
        let text = std::fs::read_to_string(f).with_context(|| format!("open {}", f.display()))?;
        for line in text.lines() {
            let l = line.trim_start();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            env.extend(expand(l));
        }
    }
    for e in &a.env {
        env.extend(expand(e));
    }
    Ok(env)
}

fn kv_map(items: &[String]) -> Value {
    let mut m = Map::new();
    for l in items {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        m.insert(k.to_string(), v.into());
    }
    Value::Object(m)
}

/// Build the `POST /containers/create` body from the options (pure, unit-tested).
pub fn create_body(a: &RunArgs, console: Option<(u16, u16)>) -> anyhow::Result<Value> {
    let attach_all = !a.detach && a.attach.is_empty();
    let att =
        |s: &str| attach_all && s != "stdin" || a.attach.iter().any(|x| x.eq_ignore_ascii_case(s));
    let stdin = a.interactive && !a.detach && (a.attach.is_empty() || att("stdin"));
    let mut exposed = Map::new();
    let mut bindings = Map::new();
    for e in &a.expose {
        let k = if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        };
        exposed.insert(k, json!({}));
    }
    for p in &a.publish {
        let (key, bind) = parse_port(p)?;
        exposed.insert(key.clone(), json!({}));
        if let Some((ip, host)) = bind {
            let list = bindings
                .entry(key)
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(l) = list {
                l.push(json!({"HostIp": ip, "HostPort": host}));
            }
        } else {
            bindings
                .entry(key)
                .or_insert_with(|| json!([{"HostIp": "", "HostPort": ""}]));
        }
    }
    let mut binds = Vec::new();
    let mut volumes = Map::new();
    for v in &a.volume {
        if v.contains(':') {
            binds.push(v.clone());
        } else {
            volumes.insert(v.clone(), json!({}));
        }
    }
    let mounts = a
        .mount
        .iter()
        .map(|m| parse_mount(m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut tmpfs = Map::new();
    for t in &a.tmpfs {
        let (p, o) = t.split_once(':').unwrap_or((t, ""));
        tmpfs.insert(p.to_string(), o.into());
    }
    let mut ulimits = Vec::new();
    for u in &a.ulimit {
        let (name, v) = u
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("invalid ulimit argument: {u}"))?;
        let (soft, hard) = v.split_once(':').unwrap_or((v, v));
        let p = |x: &str| -> anyhow::Result<i64> {
            x.parse()
                .map_err(|_| anyhow::anyhow!("invalid ulimit argument: {u}"))
        };
        ulimits.push(json!({"Name": name, "Soft": p(soft)?, "Hard": p(hard)?}));
    }
    let mut devices = Vec::new();
    for d in &a.device {
        let parts: Vec<&str> = d.split(':').collect();
        let (host, cont, perms) = match parts.as_slice() {
            [h] => (*h, *h, "rwm"),
            [h, c] => (*h, *c, "rwm"),
            [h, c, p] => (*h, *c, *p),
            _ => bail!("invalid device specification: {d}"),
        };
        devices
            .push(json!({"PathOnHost": host, "PathInContainer": cont, "CgroupPermissions": perms}));
    }
    let mut host = json!({
        "Binds": binds,
        "NetworkMode": a.network.clone().unwrap_or_else(|| "default".into()),
        "PortBindings": bindings,
        "RestartPolicy": restart_policy(a.restart.as_deref().unwrap_or("no"))?,
        "AutoRemove": a.rm,
        "Privileged": a.privileged,
        "PublishAllPorts": a.publish_all,
        "ReadonlyRootfs": a.read_only,
        "CapAdd": caps(&a.cap_add),
        "CapDrop": caps(&a.cap_drop),
        "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": [],
        "BlkioDeviceWriteBps": [],
        "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [],
        "DnsOptions": [],
        "DnsSearch": [],
        "MemorySwappiness": -1,
        "OomKillDisable": false,
        "Dns": a.dns,
        "ExtraHosts": a.add_host,
        "SecurityOpt": a.security_opt,
        "Tmpfs": tmpfs,
        "Mounts": mounts,
        "Ulimits": ulimits,
        "Devices": devices,
        "GroupAdd": a.group_add,
        "Sysctls": kv_map(&a.sysctl),
        "LogConfig": {"Type": a.log_driver.clone().unwrap_or_default(), "Config": kv_map(&a.log_opt)},
    });
    let h = host.as_object_mut().expect("object literal");
    if let Some(m) = &a.memory {
        h.insert("Memory".into(), parse_bytes(m)?.into());
    }
    if let Some(m) = &a.memory_swap {
        h.insert("MemorySwap".into(), parse_bytes(m)?.into());
    }
    if let Some(c) = a.cpus {
        h.insert("NanoCpus".into(), ((c * 1e9) as i64).into());
    }
    if let Some(c) = a.cpu_shares {
        h.insert("CpuShares".into(), c.into());
    }
    if let Some(c) = &a.cpuset_cpus {
        h.insert("CpusetCpus".into(), c.clone().into());
    }
    if let Some(p) = a.pids_limit {
        h.insert("PidsLimit".into(), p.into());
    }
    if let Some(s) = &a.shm_size {
        h.insert("ShmSize".into(), parse_bytes(s)?.into());
    }
    if let Some(s) = &a.ipc {
        h.insert("IpcMode".into(), s.clone().into());
    }
    if let Some(s) = &a.pid {
        h.insert("PidMode".into(), s.clone().into());
    }
    if let Some(s) = &a.runtime {
        h.insert("Runtime".into(), s.clone().into());
    }
    if a.init {
        h.insert("Init".into(), true.into());
    }
    if let (true, Some((rows, cols))) = (a.tty, console) {
        h.insert("ConsoleSize".into(), json!([rows, cols]));
    }
    let mut cfg = json!({
        "Hostname": a.hostname.clone().unwrap_or_default(),
        "User": a.user.clone().unwrap_or_default(),
        "AttachStdin": stdin,
        "AttachStdout": att("stdout"),
        "AttachStderr": att("stderr"),
        "Tty": a.tty,
        "OpenStdin": a.interactive,
        "StdinOnce": stdin,
        "Env": env_list(a)?,
        "Image": a.image(),
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
        "Labels": kv_map(&a.label),
        "ExposedPorts": exposed,
        "Volumes": volumes,
        "HostConfig": host,
    });
    let c = cfg.as_object_mut().expect("object literal");
    if !a.command().is_empty() {
        c.insert("Cmd".into(), json!(a.command()));
    }
    if let Some(e) = &a.entrypoint {
        c.insert("Entrypoint".into(), json!([e]));
    }
    if let Some(s) = &a.stop_signal {
        c.insert("StopSignal".into(), s.clone().into());
    }
    if let Some(t) = a.stop_timeout {
        c.insert("StopTimeout".into(), t.into());
    }
    if let Some(net) = &a.network {
        if !a.network_alias.is_empty() {
            c.insert(
                "NetworkingConfig".into(),
                json!({"EndpointsConfig": {net.clone(): {"Aliases": a.network_alias}}}),
            );
        }
    }
    Ok(cfg)
}

fn is_no_such_image(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiError>().is_some_and(|a| {
        a.status == 404 && a.message.to_ascii_lowercase().contains("no such image")
    })
}

/// Create the container, pulling its image first when missing (as `docker run` does).
fn create_container(c: &Client, a: &RunArgs) -> anyhow::Result<String> {
    let body = create_body(a, if a.tty { stream::term_size() } else { None })?;
    let mut q = String::new();
    if let Some(n) = &a.name {
        q = format!("?name={}", enc(n));
    }
    if let Some(p) = &a.platform {
        q.push(if q.is_empty() { '?' } else { '&' });
        q.push_str(&format!("platform={}", enc(p)));
    }
    let path = format!("/containers/create{q}");
    if a.pull == "always" {
        super::image::pull_image(c, a.image(), a.quiet, true, a.platform.as_deref())?;
    }
    let resp = match c.post_json(&path, Some(&body)) {
        Ok(v) => v,
        Err(e) if is_no_such_image(&e) && a.pull == "missing" => {
            eprintln!("Unable to find image '{}' locally", a.image());
            super::image::pull_image(c, a.image(), a.quiet, true, a.platform.as_deref())?;
            c.post_json(&path, Some(&body))?
        }
        Err(e) => return Err(e),
    };
    for w in resp
        .get("Warnings")
        .and_then(|w| w.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(w) = w.as_str() {
            eprintln!("WARNING: {w}");
        }
    }
    let id = sf(&resp, "Id").to_string();
    if let Some(f) = &a.cidfile {
        std::fs::write(f, &id).with_context(|| format!("write cidfile {}", f.display()))?;
    }
    Ok(id)
}

/// `berth create`.
pub fn create_cmd(a: RunArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let id = create_container(&c, &a)?;
    println!("{id}");
    Ok(0)
}

/// Docker's mapping of a start error to 126/127/125.
pub fn start_error_code(msg: &str) -> i32 {
    let m = msg.to_ascii_lowercase();
    if m.contains("executable file not found")
        || m.contains("no such file or directory")
        || m.contains("system cannot find the file specified")
    {
        127
    } else if m.contains("permission denied") {
        126
    } else {
        125
    }
}

/// Start a `wait` before `start`: the daemon answers headers at once and the body at exit.
fn begin_wait(
    c: &Client,
    id: &str,
    cond: &str,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<i32>>> {
    let resp = c.call(
        "POST",
        &format!("/containers/{id}/wait?condition={cond}"),
        &[],
        Body::None,
    )?;
    Ok(std::thread::spawn(move || {
        let b = resp.bytes()?;
        let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
        if let Some(m) = v
            .get("Error")
            .and_then(|e| e.get("Message"))
            .and_then(|m| m.as_str())
        {
            if !m.is_empty() {
                bail!(ApiError {
                    status: 0,
                    message: m.to_string()
                });
            }
        }
        Ok(nf(&v, "StatusCode") as i32)
    }))
}

fn attach_conn(
    c: &Client,
    id: &str,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    detach_keys: Option<&str>,
) -> anyhow::Result<super::http::Response> {
    let mut q = format!(
        "/containers/{id}/attach?stream=1&stdin={}&stdout={}&stderr={}",
        stdin as u8, stdout as u8, stderr as u8
    );
    if let Some(k) = detach_keys {
        q.push_str(&format!("&detachKeys={}", enc(k)));
    }
    c.upgrade(&q, Body::Bytes("text/plain", Vec::new()))
}

fn resize(c: &Client, path: &str) {
    if let Some((h, w)) = stream::term_size() {
        let _ = c.send_ok("POST", &format!("{path}/resize?h={h}&w={w}"));
    }
}

/// Resize on SIGWINCH for the lifetime of the process.
fn watch_resize(c: &Client, path: String) {
    let Ok(mut sigs) = signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH]) else {
        return;
    };
    let c = Client {
        endpoint: c.endpoint.clone(),
        version: c.version.clone(),
        os_type: String::new(),
        tls: c.tls.clone(),
    };
    std::thread::spawn(move || {
        for _ in sigs.forever() {
            resize(&c, &path);
        }
    });
}

/// Forward SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to the container (docker's sig-proxy).
fn proxy_signals(c: &Client, id: &str) {
    use signal_hook::consts::*;
    let sigs = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2];
    let Ok(mut it) = signal_hook::iterator::Signals::new(sigs) else {
        return;
    };
    let c = Client {
        endpoint: c.endpoint.clone(),
        version: c.version.clone(),
        os_type: String::new(),
        tls: c.tls.clone(),
    };
    let id = id.to_string();
    std::thread::spawn(move || {
        for sig in it.forever() {
            let _ = c.send_ok("POST", &format!("/containers/{id}/kill?signal={sig}"));
        }
    });
}

/// `berth run`.
pub fn run(a: RunArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let keys = a
        .detach_keys
        .clone()
        .unwrap_or_else(|| "ctrl-p,ctrl-q".to_string());
    let key_bytes = stream::parse_detach_keys(&keys).map_err(anyhow::Error::msg)?;
    if a.tty && a.interactive && !a.detach && !io::stdin().is_terminal() {
        bail!("the input device is not a TTY");
    }
    let id = create_container(&c, &a)?;
    if a.detach {
        c.send_ok("POST", &format!("/containers/{id}/start"))
            .map_err(start_err)?;
        println!("{id}");
        return Ok(0);
    }
    let attach_all = a.attach.is_empty();
    let want =
        |s: &str| attach_all && s != "stdin" || a.attach.iter().any(|x| x.eq_ignore_ascii_case(s));
    let stdin = a.interactive && (attach_all || want("stdin"));
    let conn = attach_conn(
        &c,
        &id,
        stdin,
        want("stdout"),
        want("stderr"),
        a.detach_keys.as_deref(),
    )?;
    let waiter = begin_wait(&c, &id, if a.rm { "removed" } else { "next-exit" })?;
    let _raw = if a.tty && stdin {
        Some(stream::RawTerminal::enter())
    } else {
        None
    };
    if let Err(e) = c.send_ok("POST", &format!("/containers/{id}/start")) {
        drop(_raw);
        return Err(start_err(e));
    }
    if a.tty && io::stdout().is_terminal() {
        resize(&c, &format!("/containers/{id}"));
        watch_resize(&c, format!("/containers/{id}"));
    }
    if !a.tty {
        proxy_signals(&c, &id);
    }
    let reader = conn.into_upgraded();
    let p = stream::pump(
        reader,
        stdin,
        a.tty,
        if a.tty { Some(key_bytes) } else { None },
    )?;
    if p.detached {
        drop(_raw);
        eprintln!("\r\nread escape sequence");
        return Ok(0);
    }
    let code = waiter
        .join()
        .map_err(|_| anyhow::anyhow!("wait thread panicked"))??;
    Ok(code)
}

fn start_err(e: anyhow::Error) -> anyhow::Error {
    if let Some(a) = e.downcast_ref::<ApiError>() {
        let code = start_error_code(&a.message);
        eprintln!("{a}");
        return ExitCode(code).into();
    }
    e
}

/// Options of `start`.
#[derive(Args, Debug)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals.
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach container's STDIN.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Override the key sequence for detaching a container.
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

fn for_each(
    names: &[String],
    mut f: impl FnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<i32> {
    let mut failed = false;
    for n in names {
        if let Err(e) = f(n) {
            if e.downcast_ref::<client::ConnectError>().is_some() {
                return Err(e);
            }
            super::report(&e, false);
            failed = true;
        }
    }
    Ok(failed as i32)
}

/// `berth start`.
pub fn start(a: StartArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        let id = &a.containers[0];
        let info = c.get_json(&format!("/containers/{}/json", enc(id)))?;
        let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
        let conn = attach_conn(&c, id, a.interactive, true, true, a.detach_keys.as_deref())?;
        let waiter = begin_wait(&c, id, "next-exit")?;
        let _raw = (tty && a.interactive).then(stream::RawTerminal::enter);
        c.send_ok("POST", &format!("/containers/{}/start", enc(id)))
            .map_err(start_err)?;
        let keys = stream::parse_detach_keys(a.detach_keys.as_deref().unwrap_or("ctrl-p,ctrl-q"))
            .map_err(anyhow::Error::msg)?;
        if !tty {
            proxy_signals(&c, id);
        }
        let p = stream::pump(
            conn.into_upgraded(),
            a.interactive,
            tty,
            tty.then_some(keys),
        )?;
        if p.detached {
            return Ok(0);
        }
        return waiter
            .join()
            .map_err(|_| anyhow::anyhow!("wait thread panicked"))?;
    }
    for_each(&a.containers, |n| {
        c.send_ok("POST", &format!("/containers/{}/start", enc(n)))?;
        println!("{n}");
        Ok(())
    })
}

/// Options of `stop` / `restart`.
#[derive(Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing the container.
    #[arg(
        short = 't',
        long = "time",
        alias = "timeout",
        allow_hyphen_values = true
    )]
    pub time: Option<i64>,
    /// Signal to send to the container.
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `berth stop` / `berth restart`.
pub fn stop(a: StopArgs, restart: bool) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let verb = if restart { "restart" } else { "stop" };
    let mut q = Vec::new();
    if let Some(t) = a.time {
        q.push(format!("t={t}"));
    }
    if let Some(s) = &a.signal {
        q.push(format!("signal={}", enc(s)));
    }
    let q = if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    };
    for_each(&a.containers, |n| {
        c.send_ok("POST", &format!("/containers/{}/{verb}{q}", enc(n)))?;
        println!("{n}");
        Ok(())
    })
}

/// Options of `kill`.
#[derive(Args, Debug)]
pub struct KillArgs {
    /// Signal to send to the container.
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `berth kill`.
pub fn kill(a: KillArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let q = a
        .signal
        .as_ref()
        .map(|s| format!("?signal={}", enc(s)))
        .unwrap_or_default();
    for_each(&a.containers, |n| {
        c.send_ok("POST", &format!("/containers/{}/kill{q}", enc(n)))?;
        println!("{n}");
        Ok(())
    })
}

/// Options of `rm`.
#[derive(Args, Debug)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL).
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container.
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Remove the specified link.
    #[arg(short = 'l', long)]
    pub link: bool,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `berth rm`.
pub fn rm(a: RmArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let mut q = Vec::new();
    if a.force {
        q.push("force=1");
    }
    if a.volumes {
        q.push("v=1");
    }
    if a.link {
        q.push("link=1");
    }
    let q = if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    };
    for_each(&a.containers, |n| {
        c.send_ok("DELETE", &format!("/containers/{}{q}", enc(n)))?;
        println!("{n}");
        Ok(())
    })
}

/// Several container names.
#[derive(Args, Debug)]
pub struct NamesArgs {
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// One container.
#[derive(Args, Debug)]
pub struct OneArg {
    /// Container.
    pub container: String,
}

/// `pause` / `unpause`.
pub fn simple(a: NamesArgs, verb: &str) -> anyhow::Result<i32> {
    let c = super::connect()?;
    for_each(&a.containers, |n| {
        c.send_ok("POST", &format!("/containers/{}/{verb}", enc(n)))?;
        println!("{n}");
        Ok(())
    })
}

/// `berth wait`.
pub fn wait(a: NamesArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    for_each(&a.containers, |n| {
        let v = c.post_json(&format!("/containers/{}/wait", enc(n)), None)?;
        println!("{}", nf(&v, "StatusCode"));
        Ok(())
    })
}

/// Options of `ps`.
#[derive(Args, Debug)]
pub struct PsArgs {
    /// Show all containers (default shows just running).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Filter output based on conditions provided (key=value).
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE').
    #[arg(long)]
    pub format: Option<String>,
    /// Show n last created containers (includes all states).
    #[arg(short = 'n', long = "last", default_value_t = -1, allow_hyphen_values = true)]
    pub last: i64,
    /// Show the latest created container (includes all states).
    #[arg(short = 'l', long)]
    pub latest: bool,
    /// Don't truncate output.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only display container IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Display total file sizes.
    #[arg(short = 's', long)]
    pub size: bool,
}

/// `key=value` filters as the CLI sends them: `{"key":{"value":true}}`.
pub fn filters_json(f: &[String]) -> anyhow::Result<String> {
    let mut m: Map<String, Value> = Map::new();
    for x in f {
        let (k, v) = x
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value)"))?;
        let e = m
            .entry(k.trim().to_lowercase())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(o) = e {
            o.insert(v.to_string(), Value::Bool(true));
        }
    }
    Ok(serde_json::to_string(&m)?)
}

/// Docker's `formatter.Ellipsis`.
pub fn ellipsis(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max || max == 0 {
        return s.to_string();
    }
    s.chars().take(max - 1).collect::<String>() + "…"
}

/// Docker's port display: "0.0.0.0:8080->80/tcp, 443/tcp".
pub fn ports_string(ports: &Value) -> String {
    let mut out: Vec<String> = Vec::new();
    for p in ports.as_array().into_iter().flatten() {
        let priv_ = nf(p, "PrivatePort");
        let ty = sf(p, "Type");
        let s = match p.get("PublicPort").and_then(|x| x.as_i64()) {
            Some(pp) if pp != 0 => {
                let ip = sf(p, "IP");
                let ip = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.to_string()
                };
                format!("{ip}:{pp}->{priv_}/{ty}")
            }
            _ => format!("{priv_}/{ty}"),
        };
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out.join(", ")
}

const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("State", "STATE"),
    ("LocalVolumes", "LOCAL VOLUMES"),
];

/// The row docker's formatter exposes for one `/containers/json` entry.
pub fn ps_row(c: &Value, trunc: bool) -> Value {
    let id = sf(c, "Id");
    let mut names: Vec<String> = c["Names"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str())
        .map(|n| n.trim_start_matches('/').to_string())
        .collect();
    if trunc {
        names.retain(|n| !n.contains('/'));
    }
    let cmd = sf(c, "Command");
    let cmd = if trunc {
        ellipsis(cmd, 20)
    } else {
        cmd.to_string()
    };
    let labels = c["Labels"]
        .as_object()
        .map(|o| {
            let mut v: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            v.sort();
            v.join(",")
        })
        .unwrap_or_default();
    let mounts: Vec<String> = c["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let n = sf(m, "Name");
            let n = if n.is_empty() { sf(m, "Source") } else { n };
            if trunc {
                ellipsis(n, 15)
            } else {
                n.to_string()
            }
        })
        .collect();
    let nets: Vec<String> = c["NetworkSettings"]["Networks"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let image = sf(c, "Image");
    let image = if trunc && image.starts_with("sha256:") {
        short_id(image)
    } else {
        image.to_string()
    };
    let created = nf(c, "Created");
    // docker's formatter: "0B" when the daemon sent no sizes
    let rw = nf(c, "SizeRw");
    let root = nf(c, "SizeRootFs");
    let size = if root > 0 {
        format!("{} (virtual {})", output::size(rw), output::size(root))
    } else {
        output::size(rw)
    };
    json!({
        "ID": if trunc { short_id(id) } else { id.to_string() },
        "Image": image,
        "Command": format!("{cmd:?}"),
        "CreatedAt": output::go_time(created),
        "RunningFor": output::ago(created),
        "Ports": ports_string(&c["Ports"]),
        "Status": sf(c, "Status"),
        "State": sf(c, "State"),
        "Size": size,
        "Names": names.join(","),
        "Labels": labels,
        "Mounts": mounts.join(","),
        "Networks": nets.join(","),
        "Platform": Value::Null,
        "LocalVolumes": c["Mounts"].as_array().map(|m| m.iter().filter(|x| sf(x, "Driver") == "local").count()).unwrap_or(0).to_string(),
    })
}

/// `berth ps`.
pub fn ps(a: PsArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let mut q = vec![];
    if a.all {
        q.push("all=1".to_string());
    }
    let limit = if a.latest { 1 } else { a.last };
    if limit > 0 {
        q.push(format!("limit={limit}"));
    }
    let want_size = a.size || a.format.as_deref().is_some_and(|f| f.contains(".Size"));
    if want_size {
        q.push("size=1".into());
    }
    if !a.filter.is_empty() {
        q.push(format!("filters={}", enc(&filters_json(&a.filter)?)));
    }
    let list = c.get_json(&format!("/containers/json?{}", q.join("&")))?;
    let rows: Vec<Value> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|x| ps_row(x, !a.no_trunc))
        .collect();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if a.quiet && a.format.is_none() {
        for r in &rows {
            writeln!(out, "{}", sf(r, "ID"))?;
        }
        return Ok(0);
    }
    let mut def = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}".to_string();
    if a.size {
        def.push_str("\t{{.Size}}");
    }
    render_rows(&mut out, &rows, a.format.as_deref(), &def, PS_HEADERS)?;
    Ok(0)
}

/// Options of `logs`.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Follow log output.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Show logs since timestamp or relative (e.g. 42m).
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp or relative.
    #[arg(long)]
    pub until: Option<String>,
    /// Number of lines to show from the end of the logs.
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps.
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Show extra details provided to logs.
    #[arg(long)]
    pub details: bool,
    /// Container.
    pub container: String,
}

/// Docker's `timetypes.GetTimestamp` subset: durations ("10m", "2h", "30s") or RFC 3339 or unix.
pub fn timestamp_arg(s: &str) -> String {
    let units = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];
    for (u, mult) in units {
        if let Some(n) = s.strip_suffix(u) {
            if let Ok(v) = n.parse::<f64>() {
                return ((output::now_secs() as f64) - v * mult).floor().to_string();
            }
        }
    }
    if let Some(t) = berth_image::timefmt::parse_rfc3339(s) {
        return t.to_string();
    }
    s.to_string()
}

/// `berth logs`.
pub fn logs(a: LogsArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let info = c.get_json(&format!("/containers/{}/json", enc(&a.container)))?;
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let mut q = format!("stdout=1&stderr=1&tail={}", enc(&a.tail));
    if a.follow {
        q.push_str("&follow=1");
    }
    if a.timestamps {
        q.push_str("&timestamps=1");
    }
    if a.details {
        q.push_str("&details=1");
    }
    if let Some(s) = &a.since {
        q.push_str(&format!("&since={}", enc(&timestamp_arg(s))));
    }
    if let Some(s) = &a.until {
        q.push_str(&format!("&until={}", enc(&timestamp_arg(s))));
    }
    let r = c.call(
        "GET",
        &format!("/containers/{}/logs?{q}", enc(&a.container)),
        &[],
        Body::None,
    )?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if tty {
        stream::raw_copy(r, &mut out)?;
    } else {
        let stderr = io::stderr();
        let mut err = stderr.lock();
        stream::demux(r, &mut out, &mut err)?;
    }
    Ok(0)
}

/// Options of `exec`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Detached mode: run command in the background.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set environment variables.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables.
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// Username or UID.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Give extended privileges to the command.
    #[arg(long)]
    pub privileged: bool,
    /// Override the key sequence for detaching a container.
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Container.
    pub container: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

/// `berth exec`.
pub fn exec(a: ExecArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    if a.tty && a.interactive && !io::stdin().is_terminal() {
        bail!("the input device is not a TTY");
    }
    let mut env = Vec::new();
    for f in &a.env_file {
        let text = std::fs::read_to_string(f).with_context(|| format!("open {}", f.display()))?;
        env.extend(
            text.lines()
                .map(str::trim_start)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    env.extend(a.env.iter().cloned());
    let mut body = json!({
        "AttachStdin": a.interactive && !a.detach,
        "AttachStdout": !a.detach,
        "AttachStderr": !a.detach,
        "Tty": a.tty,
        "Env": env,
        "Cmd": a.command,
        "Privileged": a.privileged,
        "User": a.user.clone().unwrap_or_default(),
        "WorkingDir": a.workdir.clone().unwrap_or_default(),
    });
    if let Some(k) = &a.detach_keys {
        body["DetachKeys"] = k.clone().into();
    }
    if let (true, Some((h, w))) = (a.tty, stream::term_size()) {
        body["ConsoleSize"] = json!([h, w]);
    }
    let v = c.post_json(
        &format!("/containers/{}/exec", enc(&a.container)),
        Some(&body),
    )?;
    let eid = sf(&v, "Id").to_string();
    let start = serde_json::to_vec(&json!({"Detach": a.detach, "Tty": a.tty}))?;
    if a.detach {
        let r = c.call(
            "POST",
            &format!("/exec/{eid}/start"),
            &[],
            Body::Bytes("application/json", start),
        )?;
        r.bytes()?;
        return Ok(0);
    }
    let conn = c.upgrade(
        &format!("/exec/{eid}/start"),
        Body::Bytes("application/json", start),
    )?;
    let _raw = (a.tty && a.interactive).then(stream::RawTerminal::enter);
    if a.tty && io::stdout().is_terminal() {
        resize(&c, &format!("/exec/{eid}"));
        watch_resize(&c, format!("/exec/{eid}"));
    }
    let keys = stream::parse_detach_keys(a.detach_keys.as_deref().unwrap_or("ctrl-p,ctrl-q"))
        .map_err(anyhow::Error::msg)?;
    let p = stream::pump(
        conn.into_upgraded(),
        a.interactive,
        a.tty,
        a.tty.then_some(keys),
    )?;
    drop(_raw);
    if p.detached {
        return Ok(0);
    }
    let info = c.get_json(&format!("/exec/{eid}/json"))?;
    Ok(nf(&info, "ExitCode") as i32)
}

/// Options of `attach`.
#[derive(Args, Debug)]
pub struct AttachArgs {
    /// Do not attach STDIN.
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process.
    #[arg(long = "sig-proxy", default_value_t = true, action = ArgAction::Set)]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container.
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
    /// Container.
    pub container: String,
}

/// `berth attach`.
pub fn attach(a: AttachArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let info = c.get_json(&format!("/containers/{}/json", enc(&a.container)))?;
    if !info["State"]["Running"].as_bool().unwrap_or(false) {
        bail!("You cannot attach to a stopped container, start it first");
    }
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let stdin = !a.no_stdin && info["Config"]["OpenStdin"].as_bool().unwrap_or(false);
    let id = sf(&info, "Id").to_string();
    let conn = attach_conn(&c, &id, stdin, true, true, a.detach_keys.as_deref())?;
    let waiter = begin_wait(&c, &id, "next-exit")?;
    let _raw = (tty && stdin && io::stdin().is_terminal()).then(stream::RawTerminal::enter);
    if tty && io::stdout().is_terminal() {
        resize(&c, &format!("/containers/{id}"));
        watch_resize(&c, format!("/containers/{id}"));
    }
    let keys = stream::parse_detach_keys(a.detach_keys.as_deref().unwrap_or("ctrl-p,ctrl-q"))
        .map_err(anyhow::Error::msg)?;
    if !tty && a.sig_proxy {
        proxy_signals(&c, &id);
    }
    let p = stream::pump(conn.into_upgraded(), stdin, tty, tty.then_some(keys))?;
    drop(_raw);
    if p.detached {
        eprintln!("\r\nread escape sequence");
        return Ok(0);
    }
    waiter
        .join()
        .map_err(|_| anyhow::anyhow!("wait thread panicked"))?
}

/// Options of `top`.
#[derive(Args, Debug)]
pub struct TopArgs {
    /// Container.
    pub container: String,
    /// ps options.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// `berth top`.
pub fn top(a: TopArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let mut p = format!("/containers/{}/top", enc(&a.container));
    if !a.ps_args.is_empty() {
        p.push_str(&format!("?ps_args={}", enc(&a.ps_args.join(" "))));
    }
    let v = c.get_json(&p)?;
    let mut buf = String::new();
    let titles: Vec<&str> = v["Titles"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str())
        .collect();
    buf.push_str(&titles.join("\t"));
    buf.push('\n');
    for row in v["Processes"].as_array().into_iter().flatten() {
        let cells: Vec<&str> = row
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str())
            .collect();
        buf.push_str(&cells.join("\t"));
        buf.push('\n');
    }
    print!("{}", super::template::tabwrite_with(&buf, 20, 1));
    Ok(0)
}

/// Options of `stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Show all containers (default shows just running).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result.
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Do not truncate output.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Format output using a custom template.
    #[arg(long)]
    pub format: Option<String>,
    /// Containers.
    pub containers: Vec<String>,
}

/// One stats row as docker's formatter shows it.
pub fn stats_row(s: &Value, name: &str, id: &str) -> Value {
    let cpu = &s["cpu_stats"];
    let pre = &s["precpu_stats"];
    let cd = cpu["cpu_usage"]["total_usage"].as_f64().unwrap_or(0.0)
        - pre["cpu_usage"]["total_usage"].as_f64().unwrap_or(0.0);
    let sd = cpu["system_cpu_usage"].as_f64().unwrap_or(0.0)
        - pre["system_cpu_usage"].as_f64().unwrap_or(0.0);
    let ncpu = cpu["online_cpus"]
        .as_f64()
        .filter(|n| *n > 0.0)
        .unwrap_or_else(|| {
            cpu["cpu_usage"]["percpu_usage"]
                .as_array()
                .map(|a| a.len() as f64)
                .unwrap_or(1.0)
        });
    let cpu_pct = if sd > 0.0 && cd > 0.0 {
        cd / sd * ncpu * 100.0
    } else {
        0.0
    };
    let mem = &s["memory_stats"];
    let cache = mem["stats"]["inactive_file"]
        .as_f64()
        .or_else(|| mem["stats"]["total_inactive_file"].as_f64())
        .unwrap_or(0.0);
    let usage = (mem["usage"].as_f64().unwrap_or(0.0) - cache).max(0.0);
    let limit = mem["limit"].as_f64().unwrap_or(0.0);
    let mem_pct = if limit > 0.0 {
        usage / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    if let Some(n) = s["networks"].as_object() {
        for v in n.values() {
            rx += v["rx_bytes"].as_f64().unwrap_or(0.0);
            tx += v["tx_bytes"].as_f64().unwrap_or(0.0);
        }
    }
    let (mut br, mut bw) = (0.0, 0.0);
    for e in s["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match sf(e, "op").to_ascii_lowercase().as_str() {
            "read" => br += e["value"].as_f64().unwrap_or(0.0),
            "write" => bw += e["value"].as_f64().unwrap_or(0.0),
            _ => {}
        }
    }
    let bin = |b: f64| berth_image::timefmt::human_size(b as u64);
    json!({
        "Container": name,
        "ID": id,
        "Name": name,
        "CPUPerc": format!("{cpu_pct:.2}%"),
        "MemUsage": format!("{} / {}", bytes_iec(usage), bytes_iec(limit)),
        "MemPerc": format!("{mem_pct:.2}%"),
        "NetIO": format!("{} / {}", bin(rx), bin(tx)),
        "BlockIO": format!("{} / {}", bin(br), bin(bw)),
        "PIDs": s["pids_stats"]["current"].as_u64().unwrap_or(0).to_string(),
    })
}

/// go-units BytesSize: "1.5MiB".
pub fn bytes_iec(b: f64) -> String {
    const U: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = b;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}{}", U[i])
}

/// `berth stats` (one sample per container; streaming redraws with --no-stream unset).
pub fn stats(a: StatsArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let names: Vec<(String, String)> = if a.containers.is_empty() {
        let list = c.get_json(&format!(
            "/containers/json{}",
            if a.all { "?all=1" } else { "" }
        ))?;
        list.as_array()
            .into_iter()
            .flatten()
            .map(|x| {
                let n = x["Names"][0]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches('/')
                    .to_string();
                (sf(x, "Id").to_string(), n)
            })
            .collect()
    } else {
        a.containers
            .iter()
            .map(|n| (n.clone(), n.clone()))
            .collect()
    };
    let def = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";
    let headers = [
        ("ID", "CONTAINER ID"),
        ("Container", "CONTAINER"),
        ("Name", "NAME"),
        ("CPUPerc", "CPU %"),
        ("MemUsage", "MEM USAGE / LIMIT"),
        ("MemPerc", "MEM %"),
        ("NetIO", "NET I/O"),
        ("BlockIO", "BLOCK I/O"),
        ("PIDs", "PIDS"),
    ];
    loop {
        let mut rows = Vec::new();
        for (id, name) in &names {
            let s = c.get_json(&format!("/containers/{}/stats?stream=0", enc(id)))?;
            let full = sf(&s, "id").to_string();
            let full = if full.is_empty() { id.clone() } else { full };
            let n = sf(&s, "name").trim_start_matches('/').to_string();
            let n = if n.is_empty() { name.clone() } else { n };
            rows.push(stats_row(
                &s,
                &n,
                &if a.no_trunc { full } else { short_id(&full) },
            ));
        }
        let stdout = io::stdout();
        let mut out = stdout.lock();
        if !a.no_stream {
            write!(out, "\x1b[2J\x1b[H")?;
        }
        render_rows(&mut out, &rows, a.format.as_deref(), def, &headers)?;
        out.flush()?;
        if a.no_stream {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// Options of `rename`.
#[derive(Args, Debug)]
pub struct RenameArgs {
    /// Container.
    pub container: String,
    /// New name.
    pub new_name: String,
}

/// `berth rename`.
pub fn rename(a: RenameArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    c.send_ok(
        "POST",
        &format!(
            "/containers/{}/rename?name={}",
            enc(&a.container),
            enc(&a.new_name)
        ),
    )?;
    Ok(0)
}

/// Options of `update`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Memory limit.
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap.
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    /// Number of CPUs.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPU shares.
    #[arg(short = 'c', long = "cpu-shares")]
    pub cpu_shares: Option<i64>,
    /// Tune container pids limit.
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Restart policy.
    #[arg(long)]
    pub restart: Option<String>,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `berth update`.
pub fn update(a: UpdateArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let mut b = Map::new();
    if let Some(m) = &a.memory {
        b.insert("Memory".into(), parse_bytes(m)?.into());
    }
    if let Some(m) = &a.memory_swap {
        b.insert("MemorySwap".into(), parse_bytes(m)?.into());
    }
    if let Some(x) = a.cpus {
        b.insert("NanoCpus".into(), ((x * 1e9) as i64).into());
    }
    if let Some(x) = a.cpu_shares {
        b.insert("CpuShares".into(), x.into());
    }
    if let Some(x) = a.pids_limit {
        b.insert("PidsLimit".into(), x.into());
    }
    if let Some(r) = &a.restart {
        b.insert("RestartPolicy".into(), restart_policy(r)?);
    }
    let body = Value::Object(b);
    for_each(&a.containers, |n| {
        let v = c.post_json(&format!("/containers/{}/update", enc(n)), Some(&body))?;
        for w in v["Warnings"].as_array().into_iter().flatten() {
            eprintln!("WARNING: {}", w.as_str().unwrap_or(""));
        }
        println!("{n}");
        Ok(())
    })
}

/// Options of `port`.
#[derive(Args, Debug)]
pub struct PortArgs {
    /// Container.
    pub container: String,
    /// PRIVATE_PORT[/PROTO].
    pub port: Option<String>,
}

/// `berth port`.
pub fn port(a: PortArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let info = c.get_json(&format!("/containers/{}/json", enc(&a.container)))?;
    let ports = info["NetworkSettings"]["Ports"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut keys: Vec<&String> = ports.keys().collect();
    keys.sort();
    let want = a.port.as_ref().map(|p| {
        if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut found = false;
    for k in keys {
        if want.as_ref().is_some_and(|w| w != k) {
            continue;
        }
        for b in ports[k].as_array().into_iter().flatten() {
            let ip = sf(b, "HostIp");
            let ip = if ip.contains(':') {
                format!("[{ip}]")
            } else {
                ip.to_string()
            };
            found = true;
            if want.is_some() {
                println!("{ip}:{}", sf(b, "HostPort"));
            } else {
                println!("{k} -> {ip}:{}", sf(b, "HostPort"));
            }
        }
    }
    if let (Some(w), false) = (want, found) {
        bail!("Error: No public port '{w}' published for {}", a.container);
    }
    Ok(0)
}

/// `berth diff`.
pub fn diff(a: OneArg) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let v = c.get_json(&format!("/containers/{}/changes", enc(&a.container)))?;
    for ch in v.as_array().into_iter().flatten() {
        let k = match nf(ch, "Kind") {
            1 => "A",
            2 => "D",
            _ => "C",
        };
        println!("{k} {}", sf(ch, "Path"));
    }
    Ok(0)
}

/// Options of `commit`.
#[derive(Args, Debug)]
pub struct CommitArgs {
    /// Author.
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image.
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Commit message.
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Pause container during commit.
    #[arg(short = 'p', long, default_value_t = true, action = ArgAction::Set)]
    pub pause: bool,
    /// Container.
    pub container: String,
    /// REPOSITORY[:TAG].
    pub reference: Option<String>,
}

/// Split "repo[:tag]" (a ':' after the last '/').
pub fn split_tag(r: &str) -> (String, String) {
    let r = r.split('@').next().unwrap_or(r);
    match r.rfind(':') {
        Some(i) if !r[i..].contains('/') => (r[..i].to_string(), r[i + 1..].to_string()),
        _ => (r.to_string(), String::new()),
    }
}

/// `berth commit`.
pub fn commit(a: CommitArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let mut q = format!("container={}&pause={}", enc(&a.container), a.pause as u8);
    if let Some(r) = &a.reference {
        let (repo, tag) = split_tag(r);
        q.push_str(&format!("&repo={}&tag={}", enc(&repo), enc(&tag)));
    }
    if let Some(m) = &a.message {
        q.push_str(&format!("&comment={}", enc(m)));
    }
    if let Some(m) = &a.author {
        q.push_str(&format!("&author={}", enc(m)));
    }
    for ch in &a.change {
        q.push_str(&format!("&changes={}", enc(ch)));
    }
    let v = c.post_json(&format!("/commit?{q}"), Some(&json!({})))?;
    println!("{}", sf(&v, "Id"));
    Ok(0)
}

/// Options of `export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Container.
    pub container: String,
}

/// Copy a response body to `-o FILE` or to stdout (refusing a terminal).
pub fn body_to_output(
    mut r: super::http::Response,
    output: Option<&PathBuf>,
) -> anyhow::Result<()> {
    match output {
        Some(p) => {
            let mut f =
                std::fs::File::create(p).with_context(|| format!("create {}", p.display()))?;
            io::copy(&mut r, &mut f)?;
            f.sync_all()?;
        }
        None => {
            let stdout = io::stdout();
            let mut out = stdout.lock();
            io::copy(&mut r, &mut out)?;
        }
    }
    Ok(())
}

/// `berth export`.
pub fn export(a: ExportArgs) -> anyhow::Result<i32> {
    if a.output.is_none() && io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let c = super::connect()?;
    let r = c.call(
        "GET",
        &format!("/containers/{}/export", enc(&a.container)),
        &[],
        Body::None,
    )?;
    body_to_output(r, a.output.as_ref())?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: RunArgs,
    }

    fn body(args: &[&str]) -> Value {
        let t = T::try_parse_from(std::iter::once("run").chain(args.iter().copied())).unwrap();
        create_body(&t.a, None).unwrap()
    }

    #[test]
    fn run_flags_to_create_body() {
        let b = body(&[
            "-it",
            "--rm",
            "--name",
            "x",
            "-e",
            "A=1",
            "-w",
            "/w",
            "-u",
            "1:2",
            "-v",
            "data:/data",
            "-v",
            "/anon",
            "-p",
            "127.0.0.1:8080:80",
            "-p",
            "53/udp",
            "--restart",
            "on-failure:3",
            "-m",
            "512m",
            "--cpus",
            "1.5",
            "--pids-limit",
            "100",
            "--entrypoint",
            "/bin/sh",
            "-h",
            "host1",
            "--cap-add",
            "NET_ADMIN",
            "--read-only",
            "--tmpfs",
            "/t:size=1m",
            "-l",
            "k=v",
            "--mount",
            "type=bind,source=/src,target=/dst,readonly",
            "busybox",
            "echo",
            "-n",
            "hi",
        ]);
        assert_eq!(b["Image"], "busybox");
        assert_eq!(b["Cmd"], json!(["echo", "-n", "hi"]));
        assert_eq!(b["Tty"], true);
        assert_eq!(b["OpenStdin"], true);
        assert_eq!(b["AttachStdin"], true);
        assert_eq!(b["Env"], json!(["A=1"]));
        assert_eq!(b["Hostname"], "host1");
        assert_eq!(b["Entrypoint"], json!(["/bin/sh"]));
        assert_eq!(b["Volumes"], json!({"/anon": {}}));
        let h = &b["HostConfig"];
        assert_eq!(h["Binds"], json!(["data:/data"]));
        assert_eq!(h["AutoRemove"], true);
        assert_eq!(h["Memory"], 512 * 1024 * 1024);
        assert_eq!(h["NanoCpus"], 1_500_000_000i64);
        assert_eq!(h["PidsLimit"], 100);
        assert_eq!(
            h["RestartPolicy"],
            json!({"Name": "on-failure", "MaximumRetryCount": 3})
        );
        assert_eq!(
            h["PortBindings"]["80/tcp"],
            json!([{"HostIp": "127.0.0.1", "HostPort": "8080"}])
        );
        assert_eq!(b["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(h["Tmpfs"], json!({"/t": "size=1m"}));
        assert_eq!(
            h["Mounts"][0],
            json!({"Type": "bind", "Source": "/src", "Target": "/dst", "ReadOnly": true})
        );
        assert_eq!(b["Labels"], json!({"k": "v"}));
    }

    #[test]
    fn flags_after_the_image_belong_to_the_command() {
        let b = body(&["--rm", "busybox", "-c", "echo", "--rm"]);
        assert_eq!(b["Image"], "busybox");
        assert_eq!(b["Cmd"], json!(["-c", "echo", "--rm"]));
        assert!(b["HostConfig"].get("CpuShares").is_none());
    }

    #[test]
    fn bad_flags_are_errors() {
        let t = T::try_parse_from(["run", "--restart", "sometimes", "busybox"]).unwrap();
        assert!(create_body(&t.a, None).is_err());
        assert!(parse_bytes("12q").is_err());
        assert!(parse_port("a:b:c:d").is_err());
    }

    #[test]
    fn helpers() {
        assert_eq!(
            start_error_code("exec: \"nope\": executable file not found in $PATH"),
            127
        );
        assert_eq!(start_error_code("exec /etc/passwd: permission denied"), 126);
        assert_eq!(start_error_code("boom"), 125);
        assert_eq!(
            ellipsis("sh -c 'sleep 1000; echo'", 20),
            "sh -c 'sleep 1000; …"
        );
        assert_eq!(
            split_tag("localhost:5000/a/b:v1"),
            ("localhost:5000/a/b".into(), "v1".into())
        );
        assert_eq!(
            split_tag("localhost:5000/a"),
            ("localhost:5000/a".into(), "".into())
        );
        assert_eq!(
            filters_json(&["status=exited".into()]).unwrap(),
            r#"{"status":{"exited":true}}"#
        );
        let p = json!([{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":8080,"Type":"tcp"},{"IP":"::","PrivatePort":80,"PublicPort":8080,"Type":"tcp"},{"PrivatePort":53,"Type":"udp"}]);
        assert_eq!(
            ports_string(&p),
            "0.0.0.0:8080->80/tcp, [::]:8080->80/tcp, 53/udp"
        );
        assert_eq!(bytes_iec(1536.0 * 1024.0), "1.5MiB");
    }
}
