//! `berth image pull|push|login|logout --data-root DIR`: registry commands working directly on a
//! data root (thin: the logic lives in berth-distribution).

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};
use berth_core::{Platform, Reference};
use berth_distribution::{
    Client, ClientConfig, Credentials, DockerConfig, Progress, ProgressStatus,
};
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

/// Docker's plain (non-terminal) progress line for an event: one per state change.
fn progress_line(p: &Progress) -> Option<String> {
    if matches!(
        p.status,
        ProgressStatus::Downloading { .. } | ProgressStatus::Pushing { .. }
    ) {
        return None;
    }
    let j = p.to_json();
    Some(format!("{}: {}", p.id, j["status"].as_str().unwrap_or("")))
}

/// Run `op` on a helper thread while this thread prints its progress events to `out` (the
/// caller may hold stdout's lock, so events cannot be printed from the worker threads).
fn with_progress<T: Send>(
    out: &mut dyn Write,
    quiet: bool,
    op: impl FnOnce(&(dyn Fn(Progress) + Sync)) -> T + Send,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel::<Progress>();
    std::thread::scope(|s| {
        let h = s.spawn(move || {
            let tx = std::sync::Mutex::new(tx);
            let cb = move |p: Progress| {
                if let Ok(t) = tx.lock() {
                    let _ = t.send(p);
                }
            };
            op(&cb)
        });
        let tty = !quiet && std::io::IsTerminal::is_terminal(&std::io::stdout());
        let mut bars = tty.then(Bars::new);
        for p in rx {
            if quiet {
                continue;
            }
            match bars.as_mut() {
                Some(b) => b.update(&p),
                None => {
                    if let Some(l) = progress_line(&p) {
                        let _ = writeln!(out, "{l}");
                    }
                }
            }
        }
        drop(bars);
        match h.join() {
            Ok(v) => v,
            Err(e) => std::panic::resume_unwind(e),
        }
    })
}

/// Progress bars per layer on a terminal (drawn from the calling thread, like the plain lines).
struct Bars {
    multi: indicatif::MultiProgress,
    bars: std::collections::HashMap<String, indicatif::ProgressBar>,
}

impl Bars {
    fn new() -> Bars {
        Bars {
            multi: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stdout(),
            ),
            bars: std::collections::HashMap::new(),
        }
    }

    fn update(&mut self, p: &Progress) {
        let bar = self.bars.entry(p.id.clone()).or_insert_with(|| {
            let b = self.multi.add(indicatif::ProgressBar::new(0));
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix}: {msg:<18} {bar:40} {bytes}/{total_bytes}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_prefix(p.id.clone());
            b
        });
        match &p.status {
            ProgressStatus::Downloading { current, total }
            | ProgressStatus::Pushing { current, total } => {
                bar.set_length(*total);
                bar.set_position(*current);
                let what = if matches!(p.status, ProgressStatus::Pushing { .. }) {
                    "Pushing"
                } else {
                    "Downloading"
                };
                bar.set_message(what);
            }
            ProgressStatus::PullComplete
            | ProgressStatus::AlreadyExists
            | ProgressStatus::Pushed
            | ProgressStatus::LayerAlreadyExists
            | ProgressStatus::MountedFrom(_) => {
                let msg = progress_line(p).unwrap_or_default();
                let msg = msg
                    .split_once(": ")
                    .map(|(_, m)| m.to_string())
                    .unwrap_or(msg);
                bar.finish_with_message(msg);
            }
            _ => {
                if let Some(l) = progress_line(p) {
                    let m = l.split_once(": ").map(|(_, m)| m.to_string()).unwrap_or(l);
                    bar.set_message(m);
                }
            }
        }
    }
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
        svc = svc.with_platform(
            Platform::parse(p).ok_or_else(|| anyhow::anyhow!("invalid platform {p:?}"))?,
        );
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
    let handle = rt.handle().clone();
    let res = with_progress(out, quiet, |cb| {
        berth_distribution::pull(&svc, &c, &handle, &r, cb)
    })?;
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
    let handle = rt.handle().clone();
    let res = with_progress(out, quiet, |cb| {
        berth_distribution::push(&svc, &c, &handle, &local, &r, cb)
    })?;
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
            std::io::stdin()
                .read_line(&mut s)
                .context("read password from stdin")?;
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
