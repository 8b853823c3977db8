//! inspect, version, info, login/logout, events, network/volume/system/builder groups, completion.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::{ApiError, CLIENT_API_VERSION};
use super::container::{filters_json, timestamp_arg};
use super::http::{enc, Body};
use super::output::{self, nf, print_inspect, render_rows, sf, short_id};

/// Options of `inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template.
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Display total file sizes if the type is container.
    #[arg(short = 's', long)]
    pub size: bool,
    /// Return JSON for specified type (container, image, network, volume).
    #[arg(long = "type")]
    pub kind: Option<String>,
    /// Objects.
    #[arg(required = true)]
    pub names: Vec<String>,
}

fn is_404(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiError>()
        .is_some_and(|a| a.status == 404)
}

/// `berth inspect` (tries container, image, network, volume in Docker's order).
pub fn inspect(a: InspectArgs, kind: Option<&str>) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let kind = a.kind.as_deref().or(kind);
    let mut items = Vec::new();
    let mut failed = false;
    for n in &a.names {
        let tries: Vec<(&str, String)> = vec![
            (
                "container",
                format!(
                    "/containers/{}/json{}",
                    enc(n),
                    if a.size { "?size=1" } else { "" }
                ),
            ),
            ("image", format!("/images/{n}/json")),
            ("network", format!("/networks/{}", enc(n))),
            ("volume", format!("/volumes/{}", enc(n))),
        ];
        let mut found = None;
        for (k, p) in tries {
            if kind.is_some_and(|want| want != k) {
                continue;
            }
            match c
                .call("GET", &p, &[], Body::None)
                .and_then(|r| Ok(r.bytes()?))
            {
                Ok(v) => {
                    found = Some(v);
                    break;
                }
                Err(e) if is_404(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        match found {
            Some(v) => items.push(v),
            None => {
                failed = true;
                match kind {
                    Some(k) => eprintln!("Error response from daemon: No such {k}: {n}"),
                    None => eprintln!("Error response from daemon: No such object: {n}"),
                }
            }
        }
    }
    let stdout = io::stdout();
    let mut out = stdout.lock();
    output::print_inspect_raw(&mut out, &items, a.format.as_deref())?;
    Ok(failed as i32)
}

/// A `--format` option alone.
#[derive(Args, Debug)]
pub struct FormatArgs {
    /// Format output using a custom template.
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

/// `berth version`.
pub fn version(a: FormatArgs) -> anyhow::Result<i32> {
    let client = json!({
        "Platform": {"Name": "berth"},
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": CLIENT_API_VERSION,
        "DefaultAPIVersion": CLIENT_API_VERSION,
        "Os": std::env::consts::OS,
        "Arch": go_arch(),
        "Context": "default",
    });
    let c = super::connect();
    let (server, negotiated) = match &c {
        Ok(c) => (Some(c.get_json("/version")?), c.version.clone()),
        Err(_) => (None, CLIENT_API_VERSION.to_string()),
    };
    let data = json!({"Client": client, "Server": server});
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if let Some(f) = &a.format {
        print_inspect(&mut out, &[data], Some(f))?;
    } else {
        let api = if negotiated != CLIENT_API_VERSION {
            format!("{negotiated} (downgraded from {CLIENT_API_VERSION})")
        } else {
            negotiated
        };
        writeln!(out, "Client:")?;
        writeln!(out, " Version:           {}", env!("CARGO_PKG_VERSION"))?;
        writeln!(out, " API version:       {api}")?;
        writeln!(
            out,
            " OS/Arch:           {}/{}",
            std::env::consts::OS,
            go_arch()
        )?;
        writeln!(out, " Context:           default")?;
        if let Some(s) = &server {
            writeln!(out)?;
            let pname = s["Platform"]["Name"].as_str().unwrap_or("");
            writeln!(
                out,
                "Server:{}",
                if pname.is_empty() {
                    String::new()
                } else {
                    format!(" {pname}")
                }
            )?;
            let comps = s["Components"].as_array().cloned().unwrap_or_default();
            if comps.is_empty() {
                writeln!(out, " Engine:")?;
                writeln!(out, "  Version:          {}", sf(s, "Version"))?;
                writeln!(
                    out,
                    "  API version:      {} (minimum version {})",
                    sf(s, "ApiVersion"),
                    sf(s, "MinAPIVersion")
                )?;
            }
            for comp in comps {
                writeln!(out, " {}:", sf(&comp, "Name"))?;
                writeln!(out, "  Version:          {}", sf(&comp, "Version"))?;
                if sf(&comp, "Name") == "Engine" {
                    writeln!(
                        out,
                        "  API version:      {} (minimum version {})",
                        sf(s, "ApiVersion"),
                        sf(s, "MinAPIVersion")
                    )?;
                    writeln!(out, "  Go version:       {}", sf(s, "GoVersion"))?;
                    writeln!(out, "  Git commit:       {}", sf(s, "GitCommit"))?;
                    writeln!(out, "  Built:            {}", sf(s, "BuildTime"))?;
                    writeln!(out, "  OS/Arch:          {}/{}", sf(s, "Os"), sf(s, "Arch"))?;
                    writeln!(
                        out,
                        "  Experimental:     {}",
                        s["Experimental"].as_bool().unwrap_or(false)
                    )?;
                } else if let Some(gc) = comp["Details"]["GitCommit"].as_str() {
                    writeln!(out, "  GitCommit:        {gc}")?;
                }
            }
        }
    }
    drop(out);
    match c {
        Ok(_) => Ok(0),
        Err(e) => Err(e),
    }
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `berth info`.
pub fn info(a: FormatArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let i = c.get_json("/info")?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if let Some(f) = &a.format {
        print_inspect(&mut out, &[i], Some(f))?;
        return Ok(0);
    }
    writeln!(out, "Client:")?;
    writeln!(out, " Version:    {}", env!("CARGO_PKG_VERSION"))?;
    writeln!(out, " Context:    default")?;
    writeln!(out, " Debug Mode: false")?;
    writeln!(out)?;
    writeln!(out, "Server:")?;
    writeln!(out, " Containers: {}", nf(&i, "Containers"))?;
    writeln!(out, "  Running: {}", nf(&i, "ContainersRunning"))?;
    writeln!(out, "  Paused: {}", nf(&i, "ContainersPaused"))?;
    writeln!(out, "  Stopped: {}", nf(&i, "ContainersStopped"))?;
    writeln!(out, " Images: {}", nf(&i, "Images"))?;
    writeln!(out, " Server Version: {}", sf(&i, "ServerVersion"))?;
    writeln!(out, " Storage Driver: {}", sf(&i, "Driver"))?;
    for d in i["DriverStatus"].as_array().into_iter().flatten() {
        writeln!(
            out,
            "  {}: {}",
            d[0].as_str().unwrap_or(""),
            d[1].as_str().unwrap_or("")
        )?;
    }
    writeln!(out, " Logging Driver: {}", sf(&i, "LoggingDriver"))?;
    writeln!(out, " Cgroup Driver: {}", sf(&i, "CgroupDriver"))?;
    writeln!(out, " Cgroup Version: {}", sf(&i, "CgroupVersion"))?;
    let runtimes: Vec<String> = i["Runtimes"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    writeln!(out, " Runtimes: {}", runtimes.join(" "))?;
    writeln!(out, " Default Runtime: {}", sf(&i, "DefaultRuntime"))?;
    let sec: Vec<String> = i["SecurityOptions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str())
        .map(|s| s.trim_start_matches("name=").to_string())
        .collect();
    writeln!(out, " Security Options:")?;
    for s in sec {
        writeln!(out, "  {s}")?;
    }
    writeln!(out, " Kernel Version: {}", sf(&i, "KernelVersion"))?;
    writeln!(out, " Operating System: {}", sf(&i, "OperatingSystem"))?;
    writeln!(out, " OSType: {}", sf(&i, "OSType"))?;
    writeln!(out, " Architecture: {}", sf(&i, "Architecture"))?;
    writeln!(out, " CPUs: {}", nf(&i, "NCPU"))?;
    writeln!(
        out,
        " Total Memory: {}",
        super::container::bytes_iec(nf(&i, "MemTotal") as f64)
    )?;
    writeln!(out, " Name: {}", sf(&i, "Name"))?;
    writeln!(out, " ID: {}", sf(&i, "ID"))?;
    writeln!(out, " Docker Root Dir: {}", sf(&i, "DockerRootDir"))?;
    writeln!(
        out,
        " Debug Mode: {}",
        i["Debug"].as_bool().unwrap_or(false)
    )?;
    writeln!(
        out,
        " Experimental: {}",
        i["ExperimentalBuild"].as_bool().unwrap_or(false)
    )?;
    writeln!(
        out,
        " Live Restore Enabled: {}",
        i["LiveRestoreEnabled"].as_bool().unwrap_or(false)
    )?;
    for w in i["Warnings"].as_array().into_iter().flatten() {
        eprintln!("{}", w.as_str().unwrap_or(""));
    }
    Ok(0)
}

// ---- credentials (docker's config.json) ----

/// The client configuration directory (--config, DOCKER_CONFIG, ~/.docker).
pub fn config_dir() -> PathBuf {
    if let Some(d) = super::global().config {
        return d;
    }
    if let Ok(d) = std::env::var("DOCKER_CONFIG") {
        return PathBuf::from(d);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".docker")
}

/// The registry host of an image reference (Docker Hub's legacy key for Hub images).
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((d, _)) if d.contains('.') || d.contains(':') || d == "localhost" => d.to_string(),
        _ => "https://index.docker.io/v1/".to_string(),
    }
}

/// Canonical reference ("busybox" → "docker.io/library/busybox:latest").
pub fn full_reference(image: &str) -> String {
    match berth_core::Reference::parse(image) {
        Ok(r) if r.tag().is_none() && r.digest().is_none() => r
            .with_tag("latest")
            .map(|r| r.to_string())
            .unwrap_or_else(|_| image.to_string()),
        Ok(r) => r.to_string(),
        Err(_) => image.to_string(),
    }
}

fn read_config() -> Value {
    std::fs::read(config_dir().join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| json!({}))
}

fn write_config(v: &Value) -> anyhow::Result<()> {
    let dir = config_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let tmp = dir.join("config.json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("write {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(v)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("config.json"))?;
    Ok(())
}

use std::os::unix::fs::OpenOptionsExt;

/// Stored credentials for a registry as the API's auth config.
pub fn load_auth(server: &str) -> Option<Value> {
    let cfg = read_config();
    let e = cfg["auths"].get(server)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(e["auth"].as_str()?)
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some(json!({"username": u, "password": p, "serveraddress": server}))
}

/// Options of `login`.
#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Username.
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password.
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Take the password from stdin.
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// Server.
    pub server: Option<String>,
}

/// `berth login`.
pub fn login(a: LoginArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let server = a
        .server
        .clone()
        .unwrap_or_else(|| "https://index.docker.io/v1/".into());
    let user = match a.username {
        Some(u) => u,
        None => {
            eprint!("Username: ");
            let mut s = String::new();
            io::stdin().read_line(&mut s)?;
            s.trim().to_string()
        }
    };
    let pass = if a.password_stdin {
        let mut s = String::new();
        io::stdin().read_to_string(&mut s)?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else {
        bail!("Error: Cannot perform an interactive login from a non TTY device");
    };
    let v = c.post_json(
        "/auth",
        Some(&json!({"username": user, "password": pass, "serveraddress": server})),
    )?;
    let mut cfg = read_config();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    if !cfg["auths"].is_object() {
        cfg["auths"] = json!({});
    }
    cfg["auths"][&server] = json!({"auth": auth});
    write_config(&cfg)?;
    println!("{}", v["Status"].as_str().unwrap_or("Login Succeeded"));
    Ok(0)
}

/// Options of `logout`.
#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Server.
    pub server: Option<String>,
}

/// `berth logout`.
pub fn logout(a: LogoutArgs) -> anyhow::Result<i32> {
    let server = a
        .server
        .unwrap_or_else(|| "https://index.docker.io/v1/".into());
    let mut cfg = read_config();
    let removed = cfg["auths"]
        .as_object_mut()
        .and_then(|o| o.remove(&server))
        .is_some();
    if removed {
        write_config(&cfg)?;
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(0)
}

/// Options of the prune commands.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Do not prompt for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove all unused objects, not just dangling ones.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Provide filter values (e.g. 'until=<timestamp>').
    #[arg(long = "filter")]
    pub filter: Vec<String>,
    /// Prune anonymous volumes too (system prune).
    #[arg(long)]
    pub volumes: bool,
}

fn confirm(what: &str) -> anyhow::Result<bool> {
    eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    let mut s = String::new();
    io::stdin().read_line(&mut s)?;
    Ok(matches!(s.trim(), "y" | "Y" | "yes"))
}

/// `container|image|volume|network|builder prune`.
pub fn prune(kind: &str, a: PruneArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let what = match kind {
        "containers" => "all stopped containers",
        "images" if a.all => "all images without at least one container associated to them",
        "images" => "all dangling images",
        "volumes" => "all anonymous local volumes not used by at least one container",
        "networks" => "all custom networks not used by at least one container",
        _ => "all dangling build cache",
    };
    if !a.force && !confirm(what)? {
        return Ok(0);
    }
    let mut filters = a.filter.clone();
    if kind == "images" {
        // as the docker CLI: -a prunes every unused image, otherwise only dangling ones
        filters.push(format!("dangling={}", !a.all));
    }
    if kind == "volumes" && a.all {
        filters.push("all=true".into());
    }
    let path = match kind {
        "builder" => "/build/prune".to_string(),
        k => format!("/{k}/prune"),
    };
    let q = if filters.is_empty() {
        String::new()
    } else {
        format!("?filters={}", enc(&filters_json(&filters)?))
    };
    let v = c.post_json(&format!("{path}{q}"), None)?;
    let list_key = match kind {
        "containers" => "ContainersDeleted",
        "volumes" => "VolumesDeleted",
        "networks" => "NetworksDeleted",
        "builder" => "CachesDeleted",
        _ => "ImagesDeleted",
    };
    let items = v[list_key].as_array().cloned().unwrap_or_default();
    if !items.is_empty() {
        let title = match kind {
            "containers" => "Deleted Containers:",
            "volumes" => "Deleted Volumes:",
            "networks" => "Deleted Networks:",
            "builder" => "Deleted build cache objects:",
            _ => "Deleted Images:",
        };
        println!("{title}");
        for it in items {
            if let Some(s) = it.as_str() {
                println!("{s}");
            } else if let Some(u) = it.get("Untagged").and_then(|x| x.as_str()) {
                println!("untagged: {u}");
            } else if let Some(d) = it.get("Deleted").and_then(|x| x.as_str()) {
                println!("deleted: {d}");
            }
        }
        println!();
    }
    if kind != "networks" {
        println!(
            "Total reclaimed space: {}",
            output::size4(nf(&v, "SpaceReclaimed"))
        );
    }
    Ok(0)
}

/// `berth network …`.
#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    /// List networks.
    #[command(alias = "list")]
    #[command(after_help = "Example:\n  berth network ls --filter driver=bridge")]
    Ls(ListArgs),
    /// Create a network.
    #[command(after_help = "Example:\n  berth network create --subnet 10.99.0.0/24 mynet")]
    Create(NetworkCreateArgs),
    /// Remove one or more networks.
    #[command(alias = "remove")]
    #[command(after_help = "Example:\n  berth network rm mynet")]
    Rm(NamesOnly),
    /// Display detailed information on one or more networks.
    #[command(after_help = "Example:\n  berth network inspect -f {{.IPAM.Config}} mynet")]
    Inspect(InspectArgs),
    /// Remove all unused networks.
    #[command(after_help = "Example:\n  berth network prune -f")]
    Prune(PruneArgs),
    /// Connect a container to a network.
    #[command(after_help = "Example:\n  berth network connect --alias db mynet web")]
    Connect(ConnectArgs),
    /// Disconnect a container from a network.
    #[command(after_help = "Example:\n  berth network disconnect mynet web")]
    Disconnect(DisconnectArgs),
}

/// `ls` options shared by networks and volumes.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Provide filter values.
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template.
    #[arg(long)]
    pub format: Option<String>,
    /// Do not truncate the output.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only display names/IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// Names only.
#[derive(Args, Debug)]
pub struct NamesOnly {
    /// Force removal (volumes).
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Names.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Options of `network create`.
#[derive(Args, Debug)]
pub struct NetworkCreateArgs {
    /// Driver to manage the Network.
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format.
    #[arg(long)]
    pub subnet: Vec<String>,
    /// Gateway for the master subnet.
    #[arg(long)]
    pub gateway: Vec<String>,
    /// Restrict external access to the network.
    #[arg(long)]
    pub internal: bool,
    /// Enable IPv6 networking.
    #[arg(long)]
    pub ipv6: bool,
    /// Set metadata on a network.
    #[arg(long)]
    pub label: Vec<String>,
    /// Driver specific options.
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    /// Name.
    pub name: String,
}

/// Options of `network connect`.
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container.
    #[arg(long)]
    pub alias: Vec<String>,
    /// IPv4 address.
    #[arg(long)]
    pub ip: Option<String>,
    /// Network.
    pub network: String,
    /// Container.
    pub container: String,
}

/// Options of `network disconnect`.
#[derive(Args, Debug)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Network.
    pub network: String,
    /// Container.
    pub container: String,
}

fn kv(items: &[String]) -> Value {
    let mut m = serde_json::Map::new();
    for i in items {
        let (k, v) = i.split_once('=').unwrap_or((i, ""));
        m.insert(k.into(), v.into());
    }
    Value::Object(m)
}

/// `berth network …`.
pub fn network(cmd: NetworkCmd) -> anyhow::Result<i32> {
    let c = super::connect()?;
    match cmd {
        NetworkCmd::Ls(a) => {
            let q = if a.filter.is_empty() {
                String::new()
            } else {
                format!("?filters={}", enc(&filters_json(&a.filter)?))
            };
            let v = c.get_json(&format!("/networks{q}"))?;
            let mut rows: Vec<Value> = v
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| {
                    let id = sf(n, "Id");
                    json!({
                        "ID": if a.no_trunc { id.to_string() } else { short_id(id) },
                        "Name": sf(n, "Name"),
                        "Driver": sf(n, "Driver"),
                        "Scope": sf(n, "Scope"),
                        "IPv6": n["EnableIPv6"].as_bool().unwrap_or(false).to_string(),
                        "Internal": n["Internal"].as_bool().unwrap_or(false).to_string(),
                        "Labels": "",
                        "CreatedAt": sf(n, "Created"),
                    })
                })
                .collect();
            rows.sort_by(|x, y| sf(x, "Name").cmp(sf(y, "Name")));
            if a.quiet && a.format.is_none() {
                for r in &rows {
                    println!("{}", sf(r, "ID"));
                }
                return Ok(0);
            }
            let stdout = io::stdout();
            render_rows(
                &mut stdout.lock(),
                &rows,
                a.format.as_deref(),
                "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
                &[
                    ("ID", "NETWORK ID"),
                    ("Name", "NAME"),
                    ("Driver", "DRIVER"),
                    ("Scope", "SCOPE"),
                    ("IPv6", "IPV6"),
                    ("Internal", "INTERNAL"),
                    ("CreatedAt", "CREATED"),
                ],
            )?;
            Ok(0)
        }
        NetworkCmd::Create(a) => {
            let cfg: Vec<Value> = a
                .subnet
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut m = json!({"Subnet": s});
                    if let Some(g) = a.gateway.get(i) {
                        m["Gateway"] = g.clone().into();
                    }
                    m
                })
                .collect();
            let body = json!({
                "Name": a.name, "Driver": a.driver, "Internal": a.internal, "EnableIPv6": a.ipv6,
                "Labels": kv(&a.label), "Options": kv(&a.opt),
                "IPAM": {"Driver": "default", "Config": cfg},
            });
            let v = c.post_json("/networks/create", Some(&body))?;
            println!("{}", sf(&v, "Id"));
            Ok(0)
        }
        NetworkCmd::Rm(a) => each(&a.names, |n| {
            c.send_ok("DELETE", &format!("/networks/{}", enc(n)))?;
            println!("{n}");
            Ok(())
        }),
        NetworkCmd::Inspect(a) => inspect(a, Some("network")),
        NetworkCmd::Prune(a) => prune("networks", a),
        NetworkCmd::Connect(a) => {
            let mut ep = json!({"Aliases": a.alias});
            if let Some(ip) = &a.ip {
                ep["IPAMConfig"] = json!({"IPv4Address": ip});
            }
            c.post_json(
                &format!("/networks/{}/connect", enc(&a.network)),
                Some(&json!({"Container": a.container, "EndpointConfig": ep})),
            )?;
            Ok(0)
        }
        NetworkCmd::Disconnect(a) => {
            c.post_json(
                &format!("/networks/{}/disconnect", enc(&a.network)),
                Some(&json!({"Container": a.container, "Force": a.force})),
            )?;
            Ok(0)
        }
    }
}

fn each(names: &[String], mut f: impl FnMut(&str) -> anyhow::Result<()>) -> anyhow::Result<i32> {
    let mut failed = false;
    for n in names {
        if let Err(e) = f(n) {
            super::report(&e, false);
            failed = true;
        }
    }
    Ok(failed as i32)
}

/// `berth volume …`.
#[derive(Subcommand, Debug)]
pub enum VolumeCmd {
    /// List volumes.
    #[command(alias = "list")]
    #[command(after_help = "Example:\n  berth volume ls -q")]
    Ls(ListArgs),
    /// Create a volume.
    #[command(after_help = "Example:\n  berth volume create --label app=web data")]
    Create(VolumeCreateArgs),
    /// Remove one or more volumes.
    #[command(alias = "remove")]
    #[command(after_help = "Example:\n  berth volume rm data")]
    Rm(NamesOnly),
    /// Display detailed information on one or more volumes.
    #[command(after_help = "Example:\n  berth volume inspect data")]
    Inspect(InspectArgs),
    /// Remove unused local volumes.
    #[command(after_help = "Example:\n  berth volume prune -f")]
    Prune(PruneArgs),
}

/// Options of `volume create`.
#[derive(Args, Debug)]
pub struct VolumeCreateArgs {
    /// Specify volume driver name.
    #[arg(short = 'd', long, default_value = "local")]
    pub driver: String,
    /// Set metadata for a volume.
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options.
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    /// Name.
    pub name: Option<String>,
}

/// `berth volume …`.
pub fn volume(cmd: VolumeCmd) -> anyhow::Result<i32> {
    let c = super::connect()?;
    match cmd {
        VolumeCmd::Ls(a) => {
            let q = if a.filter.is_empty() {
                String::new()
            } else {
                format!("?filters={}", enc(&filters_json(&a.filter)?))
            };
            let v = c.get_json(&format!("/volumes{q}"))?;
            let mut rows: Vec<Value> = v["Volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| json!({"Driver": sf(x, "Driver"), "Name": sf(x, "Name"), "Mountpoint": sf(x, "Mountpoint"), "Scope": sf(x, "Scope"), "Labels": "", "Links": "N/A", "Size": "N/A"}))
                .collect();
            rows.sort_by(|x, y| sf(x, "Name").cmp(sf(y, "Name")));
            if a.quiet && a.format.is_none() {
                for r in &rows {
                    println!("{}", sf(r, "Name"));
                }
                return Ok(0);
            }
            let stdout = io::stdout();
            render_rows(
                &mut stdout.lock(),
                &rows,
                a.format.as_deref(),
                "table {{.Driver}}\t{{.Name}}",
                &[
                    ("Driver", "DRIVER"),
                    ("Name", "VOLUME NAME"),
                    ("Mountpoint", "MOUNTPOINT"),
                    ("Scope", "SCOPE"),
                ],
            )?;
            Ok(0)
        }
        VolumeCmd::Create(a) => {
            let v = c.post_json(
                "/volumes/create",
                Some(&json!({"Name": a.name.unwrap_or_default(), "Driver": a.driver, "DriverOpts": kv(&a.opt), "Labels": kv(&a.label)})),
            )?;
            println!("{}", sf(&v, "Name"));
            Ok(0)
        }
        VolumeCmd::Rm(a) => each(&a.names, |n| {
            c.send_ok(
                "DELETE",
                &format!(
                    "/volumes/{}{}",
                    enc(n),
                    if a.force { "?force=1" } else { "" }
                ),
            )?;
            println!("{n}");
            Ok(())
        }),
        VolumeCmd::Inspect(a) => inspect(a, Some("volume")),
        VolumeCmd::Prune(a) => prune("volumes", a),
    }
}

/// `berth system …`.
#[derive(Subcommand, Debug)]
pub enum SystemCmd {
    /// Show docker disk usage.
    #[command(after_help = "Example:\n  berth system df")]
    Df(DfArgs),
    /// Display system-wide information.
    #[command(after_help = "Example:\n  berth system info")]
    Info(FormatArgs),
    /// Get real time events from the server.
    #[command(after_help = "Example:\n  berth system events --filter type=container")]
    Events(EventsArgs),
    /// Remove unused data.
    #[command(after_help = "Example:\n  berth system prune -f --volumes")]
    Prune(PruneArgs),
}

/// Options of `system df`.
#[derive(Args, Debug)]
pub struct DfArgs {
    /// Show detailed information on space usage.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Format output using a custom template.
    #[arg(long)]
    pub format: Option<String>,
}

/// `berth system …`.
pub fn system(cmd: SystemCmd) -> anyhow::Result<i32> {
    match cmd {
        SystemCmd::Info(a) => info(a),
        SystemCmd::Events(a) => events(a),
        SystemCmd::Prune(a) => {
            let n = |f: bool| PruneArgs {
                force: true,
                all: f,
                filter: a.filter.clone(),
                volumes: false,
            };
            if !a.force && !confirm("all stopped containers, all networks not used by at least one container, all dangling images and unused build cache")? {
                return Ok(0);
            }
            prune("containers", n(false))?;
            prune("networks", n(false))?;
            if a.volumes {
                prune("volumes", n(false))?;
            }
            prune("images", n(a.all))?;
            Ok(0)
        }
        SystemCmd::Df(a) => {
            let c = super::connect()?;
            let v = c.get_json("/system/df")?;
            let imgs = v["Images"].as_array().cloned().unwrap_or_default();
            let ctrs = v["Containers"].as_array().cloned().unwrap_or_default();
            let vols = v["Volumes"].as_array().cloned().unwrap_or_default();
            let active_imgs = imgs.iter().filter(|i| nf(i, "Containers") > 0).count();
            let layers = nf(&v, "LayersSize");
            let used_imgs: i64 = imgs
                .iter()
                .filter(|i| nf(i, "Containers") > 0)
                .map(|i| nf(i, "Size") - nf(i, "SharedSize").max(0))
                .sum();
            let running = |c: &&Value| sf(c, "State") == "running";
            let active_ctrs = ctrs.iter().filter(running).count();
            let ctr_size: i64 = ctrs.iter().map(|c| nf(c, "SizeRw")).sum();
            let ctr_recl: i64 = ctrs
                .iter()
                .filter(|c| !running(c))
                .map(|c| nf(c, "SizeRw"))
                .sum();
            let refs = |x: &Value| x["UsageData"]["RefCount"].as_i64().unwrap_or(0);
            let vsize = |x: &Value| x["UsageData"]["Size"].as_i64().unwrap_or(0).max(0);
            let active_vols = vols.iter().filter(|x| refs(x) > 0).count();
            let vol_size: i64 = vols.iter().map(vsize).sum();
            let vol_recl: i64 = vols.iter().filter(|x| refs(x) == 0).map(vsize).sum();
            let cache = v["BuildCache"].as_array().cloned().unwrap_or_default();
            let cache_size: i64 = cache
                .iter()
                .filter(|c| !c["Shared"].as_bool().unwrap_or(false))
                .map(|c| nf(c, "Size"))
                .sum();
            let cache_recl: i64 = cache
                .iter()
                .filter(|c| {
                    !c["InUse"].as_bool().unwrap_or(false)
                        && !c["Shared"].as_bool().unwrap_or(false)
                })
                .map(|c| nf(c, "Size"))
                .sum();
            let rows = vec![
                json!({"Type": "Images", "TotalCount": imgs.len().to_string(), "Active": active_imgs.to_string(), "Size": output::size4(layers), "Reclaimable": output::size_pct((layers - used_imgs).max(0), layers)}),
                json!({"Type": "Containers", "TotalCount": ctrs.len().to_string(), "Active": active_ctrs.to_string(), "Size": output::size4(ctr_size), "Reclaimable": output::size_pct(ctr_recl, ctr_size)}),
                json!({"Type": "Local Volumes", "TotalCount": vols.len().to_string(), "Active": active_vols.to_string(), "Size": output::size4(vol_size), "Reclaimable": output::size_pct(vol_recl, vol_size)}),
                json!({"Type": "Build Cache", "TotalCount": cache.len().to_string(), "Active": cache.iter().filter(|c| c["InUse"].as_bool().unwrap_or(false)).count().to_string(), "Size": output::size4(cache_size), "Reclaimable": output::size4(cache_recl)}),
            ];
            let stdout = io::stdout();
            render_rows(
                &mut stdout.lock(),
                &rows,
                a.format.as_deref(),
                "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}",
                &[
                    ("Type", "TYPE"),
                    ("TotalCount", "TOTAL"),
                    ("Active", "ACTIVE"),
                    ("Size", "SIZE"),
                    ("Reclaimable", "RECLAIMABLE"),
                ],
            )?;
            Ok(0)
        }
    }
}

/// `berth builder …`.
#[derive(Subcommand, Debug)]
pub enum BuilderCmd {
    /// Remove build cache.
    #[command(after_help = "Example:\n  berth builder prune -f")]
    Prune(PruneArgs),
}

/// `berth builder prune`.
pub fn builder(cmd: BuilderCmd) -> anyhow::Result<i32> {
    match cmd {
        BuilderCmd::Prune(a) => prune("builder", a),
    }
}

/// Options of `events`.
#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Show all events created since timestamp.
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp.
    #[arg(long)]
    pub until: Option<String>,
    /// Filter output based on conditions provided.
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template.
    #[arg(long)]
    pub format: Option<String>,
}

/// `berth events`.
pub fn events(a: EventsArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let mut q = Vec::new();
    if let Some(s) = &a.since {
        q.push(format!("since={}", enc(&timestamp_arg(s))));
    }
    if let Some(s) = &a.until {
        q.push(format!("until={}", enc(&timestamp_arg(s))));
    }
    if !a.filter.is_empty() {
        q.push(format!("filters={}", enc(&filters_json(&a.filter)?)));
    }
    let r = c.call("GET", &format!("/events?{}", q.join("&")), &[], Body::None)?;
    let tmpl = match a.format.as_deref() {
        Some("json") => Some(super::template::Template::parse("{{json .}}")?),
        Some(f) => Some(super::template::Template::parse(f)?),
        None => None,
    };
    super::client::json_stream(r, |ev| {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        if let Some(t) = &tmpl {
            writeln!(out, "{}", t.render(&ev)?)?;
        } else {
            let nanos = ev["timeNano"]
                .as_i64()
                .unwrap_or(nf(&ev, "time") * 1_000_000_000);
            // Go's RFC3339NanoFixed in UTC: 2006-01-02T15:04:05.000000000Z
            let base = berth_image::timefmt::format_rfc3339(nanos.div_euclid(1_000_000_000), 0);
            let ts = format!(
                "{}.{:09}Z",
                base.trim_end_matches('Z'),
                nanos.rem_euclid(1_000_000_000)
            );
            let mut attrs: Vec<String> = ev["Actor"]["Attributes"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect()
                })
                .unwrap_or_default();
            attrs.sort();
            let attrs = if attrs.is_empty() {
                String::new()
            } else {
                format!(" ({})", attrs.join(", "))
            };
            writeln!(
                out,
                "{} {} {} {}{attrs}",
                ts,
                sf(&ev, "Type"),
                sf(&ev, "Action"),
                sf(&ev["Actor"], "ID")
            )?;
        }
        out.flush()?;
        Ok(())
    })?;
    Ok(0)
}

/// Options of `completion`.
#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// Shell.
    pub shell: clap_complete::Shell,
}

/// `berth completion SHELL`.
pub fn completion(a: CompletionArgs) -> anyhow::Result<i32> {
    let mut cmd = <crate::Cli as clap::CommandFactory>::command();
    clap_complete::generate(a.shell, &mut cmd, "berth", &mut io::stdout());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries() {
        assert_eq!(registry_of("localhost:5000/a/b"), "localhost:5000");
        assert_eq!(registry_of("busybox"), "https://index.docker.io/v1/");
        assert_eq!(
            registry_of("library/busybox"),
            "https://index.docker.io/v1/"
        );
        assert_eq!(
            full_reference("busybox"),
            "docker.io/library/busybox:latest"
        );
    }
}
