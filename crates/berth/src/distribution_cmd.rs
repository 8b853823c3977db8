//! `berth image pull|push|login|logout --data-root DIR`: registry commands working directly on a
//! data root (thin: the logic lives in berth-distribution).

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use berth_core::{Platform, Reference};
use berth_distribution::{Client, ClientConfig, Credentials, DockerConfig, Progress, ProgressStatus};
use berth_image::ImageService;

/// Registry options shared by pull and push.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RegistryOpts {
    /// Registry (host:port) reachable over plain HTTP (repeatable; localhost always is).
    #[arg(long = "insecure-registry")]
    pub insecure: Vec<String>,
    /// Mirror for docker.io (repeatable, tried in order).
    #[arg(long = "registry-mirror")]
    pub mirrors: Vec<String>,
    /// Blobs transferred at once.
    #[arg(long = "max-concurrent", default_value_t = 3)]
    pub concurrency: usize,
}

fn client(o: &RegistryOpts) -> Client {
    Client::new(ClientConfig {
        insecure: o.insecure.clone(),
        mirrors: o.mirrors.clone(),
        concurrency: o.concurrency.max(1),
        ..Default::default()
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("start tokio runtime")
}

/// Docker's plain (non-terminal) progress lines on stdout: one per state change.
fn print_progress(p: Progress) {
    if matches!(
        p.status,
        ProgressStatus::Downloading { .. } | ProgressStatus::Pushing { .. }
    ) {
        return;
    }
    let j = p.to_json();
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{}: {}", p.id, j["status"].as_str().unwrap_or(""));
}

fn parse_ref(s: &str) -> anyhow::Result<Reference> {
    Reference::parse(s).map_err(|e| anyhow::anyhow!("invalid reference format {s:?}: {e}"))
}

/// `pull NAME[:TAG|@DIGEST]`.
pub fn pull(
    data_root: &Path,
    name: &str,
    platform: Option<&str>,
    quiet: bool,
    opts: &RegistryOpts,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    let r = parse_ref(name)?;
    let mut svc = ImageService::open(data_root)
        .with_context(|| format!("open data root {}", data_root.display()))?;
    if let Some(p) = platform {
        svc = svc.with_platform(Platform::parse(p).ok_or_else(|| anyhow::anyhow!("invalid platform {p:?}"))?);
    }
    let rt = runtime()?;
    let c = client(opts);
    if !quiet {
        writeln!(
            out,
            "{}: Pulling from {}",
            r.tag().unwrap_or("latest"),
            r.familiar_name()
        )?;
    }
    let res = {
        let quiet_cb = |_p: Progress| {};
        let cb: &(dyn Fn(Progress) + Sync) = if quiet { &quiet_cb } else { &print_progress };
        berth_distribution::pull(&svc, &c, rt.handle(), &r, cb)?
    };
    if quiet {
        writeln!(out, "{}", r.familiar())?;
    } else {
        writeln!(out, "Digest: {}", res.target)?;
        let what = if res.downloaded > 0 {
            "Downloaded newer image for"
        } else {
            "Image is up to date for"
        };
        writeln!(out, "Status: {what} {}", r.familiar())?;
        writeln!(out, "{r}")?;
    }
    Ok(0)
}

/// `push NAME[:TAG|@DIGEST]` (the local image of that name).
pub fn push(
    data_root: &Path,
    name: &str,
    quiet: bool,
    opts: &RegistryOpts,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    let r = parse_ref(name)?;
    let svc = ImageService::open(data_root)
        .with_context(|| format!("open data root {}", data_root.display()))?;
    let rt = runtime()?;
    let c = client(opts);
    let local = r.to_string();
    if !quiet {
        writeln!(out, "The push refers to repository [{}]", r.name())?;
    }
    let res = {
        let quiet_cb = |_p: Progress| {};
        let cb: &(dyn Fn(Progress) + Sync) = if quiet { &quiet_cb } else { &print_progress };
        berth_distribution::push(&svc, &c, rt.handle(), &local, &r, cb)?
    };
    writeln!(
        out,
        "{}: digest: {} size: {}",
        r.tag().unwrap_or("latest"),
        res.digest,
        res.size
    )?;
    Ok(0)
}

/// `login [SERVER] -u USER (-p PASS | --password-stdin)`.
pub fn login(
    server: Option<&str>,
    username: Option<&str>,
    password: Option<&str>,
    password_stdin: bool,
    out: &mut dyn Write,
) -> anyhow::Result<i32> {
    let server = server.unwrap_or("docker.io");
    let Some(user) = username else {
        bail!("username required (-u)");
    };
    let pass = match (password, password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p.to_string(),
        (None, true) => {
            let mut s = String::new();
            std::io::stdin().read_line(&mut s).context("read password from stdin")?;
            s.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => bail!("password required (-p or --password-stdin)"),
    };
    let rt = runtime()?;
    let c = client(&RegistryOpts::default());
    let path = DockerConfig::default_path();
    rt.block_on(berth_distribution::login(
        &c,
        server,
        &Credentials::new(user, pass),
        &path,
    ))?;
    writeln!(out, "Login Succeeded")?;
    Ok(0)
}

/// `logout [SERVER]`.
pub fn logout(server: Option<&str>, out: &mut dyn Write) -> anyhow::Result<i32> {
    let server = server.unwrap_or("docker.io");
    let path = DockerConfig::default_path();
    if berth_distribution::logout(server, &path)? {
        writeln!(out, "Removing login credentials for {server}")?;
    } else {
        writeln!(out, "Not logged in to {server}")?;
    }
    Ok(0)
}
