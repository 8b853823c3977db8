//! Image commands: images, pull, push, tag, rmi, save, load, import, history, and `berth image …`.

use std::io::{self, IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use super::client::Client;
use super::container::{body_to_output, filters_json, split_tag};
use super::http::{enc, Body};
use super::output::{self, nf, render_rows, sf, short_id};
use super::progress::{self, Mode};

/// Options of `images` / `image ls`.
#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Show digests.
    #[arg(long)]
    pub digests: bool,
    /// Filter output based on conditions provided.
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template.
    #[arg(long)]
    pub format: Option<String>,
    /// Don't truncate output.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Repository (optionally with a tag) to list.
    pub repository: Option<String>,
}

const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("ID", "IMAGE ID"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "VIRTUAL SIZE"),
];

/// Rows docker's image formatter shows for one `/images/json` entry (one per tag).
pub fn image_rows(i: &Value, trunc: bool, digests_shown: bool) -> Vec<Value> {
    let id = sf(i, "Id");
    let id = if trunc { short_id(id) } else { id.to_string() };
    let created = nf(i, "Created");
    let size = output::size(nf(i, "Size"));
    let digests: Vec<&str> = i["RepoDigests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str())
        .collect();
    let mut tags: Vec<(String, String)> = i["RepoTags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str())
        .filter(|t| *t != "<none>:<none>")
        .map(|t| {
            let (r, t) = split_tag(t);
            (r, t)
        })
        .collect();
    if tags.is_empty() {
        let repo = digests
            .first()
            .and_then(|d| d.split('@').next())
            .unwrap_or("<none>")
            .to_string();
        tags.push((repo, "<none>".into()));
    }
    // docker's formatter: -1 (not computed) shows as N/A
    let n = |k: &str| i.get(k).and_then(|x| x.as_i64()).unwrap_or(-1);
    let containers = match n("Containers") {
        -1 => "N/A".to_string(),
        c => c.to_string(),
    };
    let shared = match n("SharedSize") {
        -1 => "N/A".to_string(),
        x => output::size(x),
    };
    let unique = match (n("Size"), n("SharedSize")) {
        (-1, _) | (_, -1) => "N/A".to_string(),
        (sz, sh) => output::size(sz - sh),
    };
    tags.into_iter()
        .map(|(repo, tag)| {
            let digest = digests
                .iter()
                .find(|d| d.split('@').next() == Some(repo.as_str()))
                .and_then(|d| d.split('@').nth(1))
                .unwrap_or("<none>");
            let digest = if digests_shown { digest } else { "<none>" };
            serde_json::json!({
                "Repository": repo,
                "Tag": tag,
                "ID": id,
                "Digest": digest,
                "CreatedSince": output::ago(created),
                "CreatedAt": output::go_time(created),
                "Size": size,
                "VirtualSize": output::size4(nf(i, "Size")),
                "SharedSize": shared,
                "UniqueSize": unique,
                "Containers": containers,
            })
        })
        .collect()
}

/// `berth images`.
pub fn images(a: ImagesArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let mut filters = a.filter.clone();
    if let Some(r) = &a.repository {
        filters.push(format!("reference={r}"));
    }
    let mut q = Vec::new();
    if a.all {
        q.push("all=1".to_string());
    }
    if !filters.is_empty() {
        q.push(format!("filters={}", enc(&filters_json(&filters)?)));
    }
    let list = c.get_json(&format!("/images/json?{}", q.join("&")))?;
    let mut rows = Vec::new();
    for i in list.as_array().into_iter().flatten() {
        rows.extend(image_rows(
            i,
            !a.no_trunc,
            a.digests || a.format.as_deref().is_some_and(|f| f.contains(".Digest")),
        ));
    }
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if a.quiet && a.format.is_none() {
        let mut seen = Vec::new();
        for r in &rows {
            let id = sf(r, "ID").to_string();
            if !seen.contains(&id) {
                println!("{id}");
                seen.push(id);
            }
        }
        return Ok(0);
    }
    let def = if a.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    render_rows(&mut out, &rows, a.format.as_deref(), def, IMAGE_HEADERS)?;
    Ok(0)
}

/// The `X-Registry-Auth` header for an image's registry, from the client config (`{}` if none).
fn registry_auth(image: &str) -> String {
    use base64::Engine as _;
    let server = super::system::registry_of(image);
    let creds = super::system::load_auth(&server).unwrap_or(serde_json::json!({}));
    base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&creds).unwrap_or_default())
}

/// Pull an image with progress on stderr (run) or stdout (pull).
pub fn pull_image(
    c: &Client,
    image: &str,
    quiet: bool,
    to_stderr: bool,
    platform: Option<&str>,
) -> anyhow::Result<()> {
    let (repo, tag) = if image.contains('@') {
        let (r, d) = image.split_once('@').unwrap_or((image, ""));
        (r.to_string(), d.to_string())
    } else {
        let (r, t) = split_tag(image);
        (r, if t.is_empty() { "latest".into() } else { t })
    };
    let mut q = format!("fromImage={}&tag={}", enc(&repo), enc(&tag));
    if let Some(p) = platform {
        q.push_str(&format!("&platform={}", enc(p)));
    }
    let r = c.call(
        "POST",
        &format!("/images/create?{q}"),
        &[("X-Registry-Auth", registry_auth(image))],
        Body::None,
    )?;
    let tty = if to_stderr {
        io::stderr().is_terminal()
    } else {
        io::stdout().is_terminal()
    };
    let mode = Mode::choose(None, quiet, tty);
    if to_stderr {
        progress::show(r, mode, &mut io::stderr())?;
    } else {
        progress::show(r, mode, &mut io::stdout())?;
    }
    Ok(())
}

/// Options of `pull`.
#[derive(Args, Debug)]
pub struct PullArgs {
    /// Download all tagged images in the repository.
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Set platform if server is multi-platform capable.
    #[arg(long)]
    pub platform: Option<String>,
    /// Progress output: auto, tty, plain, quiet.
    #[arg(long)]
    pub progress: Option<String>,
    /// NAME[:TAG|@DIGEST].
    pub image: String,
}

/// `berth pull`.
pub fn pull(a: PullArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let (repo, tag) = split_tag(&a.image);
    let tag = if a.image.contains('@') {
        String::new()
    } else if tag.is_empty() && !a.all_tags {
        "latest".to_string()
    } else {
        tag
    };
    let (repo, tag) = if let Some((r, d)) = a.image.split_once('@') {
        (r.to_string(), d.to_string())
    } else {
        (repo, tag)
    };
    if tag.is_empty() && !a.all_tags {
        bail!("invalid reference format");
    }
    if !a.image.contains(':') && !a.image.contains('@') && !a.all_tags && !a.quiet {
        println!("Using default tag: latest");
    }
    let mut q = format!("fromImage={}&tag={}", enc(&repo), enc(&tag));
    if let Some(p) = &a.platform {
        q.push_str(&format!("&platform={}", enc(p)));
    }
    let r = c.call(
        "POST",
        &format!("/images/create?{q}"),
        &[("X-Registry-Auth", registry_auth(&a.image))],
        Body::None,
    )?;
    let mode = Mode::choose(a.progress.as_deref(), a.quiet, io::stdout().is_terminal());
    progress::show(r, mode, &mut io::stdout())?;
    let full = super::system::full_reference(&a.image);
    println!("{full}");
    Ok(0)
}

/// Options of `push`.
#[derive(Args, Debug)]
pub struct PushArgs {
    /// Push all tags of an image to the repository.
    #[arg(short = 'a', long = "all-tags")]
    pub all_tags: bool,
    /// Suppress verbose output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Progress output: auto, tty, plain, quiet.
    #[arg(long)]
    pub progress: Option<String>,
    /// NAME[:TAG].
    pub image: String,
}

/// `berth push`.
pub fn push(a: PushArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let (repo, tag) = split_tag(&a.image);
    let tag = if tag.is_empty() && !a.all_tags {
        if !a.quiet {
            println!("Using default tag: latest");
        }
        "latest".to_string()
    } else {
        tag
    };
    let r = c.call(
        "POST",
        &format!("/images/{repo}/push?tag={}", enc(&tag)),
        &[("X-Registry-Auth", registry_auth(&a.image))],
        Body::None,
    )?;
    let mode = Mode::choose(a.progress.as_deref(), a.quiet, io::stdout().is_terminal());
    progress::show(r, mode, &mut io::stdout())?;
    if a.quiet {
        println!(
            "{}",
            if a.image.contains(':') {
                a.image.clone()
            } else {
                format!("{}:{tag}", a.image)
            }
        );
    }
    Ok(0)
}

/// Options of `tag`.
#[derive(Args, Debug)]
pub struct TagArgs {
    /// SOURCE_IMAGE[:TAG].
    pub source: String,
    /// TARGET_IMAGE[:TAG].
    pub target: String,
}

/// `berth tag`.
pub fn tag(a: TagArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let (repo, tag) = split_tag(&a.target);
    let tag = if tag.is_empty() { "latest".into() } else { tag };
    c.send_ok(
        "POST",
        &format!(
            "/images/{}/tag?repo={}&tag={}",
            a.source,
            enc(&repo),
            enc(&tag)
        ),
    )?;
    Ok(0)
}

/// Options of `rmi`.
#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Force removal of the image.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Do not delete untagged parents.
    #[arg(long = "no-prune")]
    pub no_prune: bool,
    /// Images.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `berth rmi`.
pub fn rmi(a: RmiArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let mut failed = false;
    for i in &a.images {
        let r = c.call(
            "DELETE",
            &format!(
                "/images/{i}?force={}&noprune={}",
                a.force as u8, a.no_prune as u8
            ),
            &[],
            Body::None,
        );
        match r.and_then(|r| Ok(serde_json::from_slice::<Value>(&r.bytes()?)?)) {
            Ok(v) => {
                for e in v.as_array().into_iter().flatten() {
                    if let Some(u) = e.get("Untagged").and_then(|x| x.as_str()) {
                        println!("Untagged: {u}");
                    }
                    if let Some(d) = e.get("Deleted").and_then(|x| x.as_str()) {
                        println!("Deleted: {d}");
                    }
                }
            }
            Err(e) => {
                if e.downcast_ref::<super::client::ConnectError>().is_some() {
                    return Err(e);
                }
                super::report(&e, false);
                failed = true;
            }
        }
    }
    Ok(failed as i32)
}

/// Options of `save`.
#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Images.
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `berth save`.
pub fn save(a: SaveArgs) -> anyhow::Result<i32> {
    if a.output.is_none() && io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let c = super::connect()?;
    let q: Vec<String> = a
        .images
        .iter()
        .map(|i| format!("names={}", enc(i)))
        .collect();
    let r = c.call(
        "GET",
        &format!("/images/get?{}", q.join("&")),
        &[],
        Body::None,
    )?;
    body_to_output(r, a.output.as_ref())?;
    Ok(0)
}

/// Options of `load`.
#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN.
    #[arg(short = 'i', long)]
    pub input: Option<PathBuf>,
    /// Suppress the load output.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

fn input_reader(p: Option<&PathBuf>) -> anyhow::Result<Box<dyn Read>> {
    Ok(match p {
        Some(p) if p.as_os_str() != "-" => {
            Box::new(std::fs::File::open(p).with_context(|| format!("open {}", p.display()))?)
        }
        _ => {
            if io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty");
            }
            Box::new(io::stdin())
        }
    })
}

/// `berth load`.
pub fn load(a: LoadArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let body = input_reader(a.input.as_ref())?;
    let r = c.call(
        "POST",
        &format!("/images/load?quiet={}", a.quiet as u8),
        &[],
        Body::Stream("application/x-tar", body),
    )?;
    let mode = if a.quiet {
        Mode::Plain
    } else {
        Mode::choose(None, false, io::stdout().is_terminal())
    };
    progress::show(r, mode, &mut io::stdout())?;
    Ok(0)
}

/// Options of `import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image.
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Set commit message for imported image.
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Set platform if server is multi-platform capable.
    #[arg(long)]
    pub platform: Option<String>,
    /// File or "-" for STDIN.
    pub file: String,
    /// REPOSITORY[:TAG].
    pub reference: Option<String>,
}

/// `berth import`.
pub fn import(a: ImportArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let mut q = String::from("fromSrc=-");
    if let Some(r) = &a.reference {
        let (repo, tag) = split_tag(r);
        q.push_str(&format!("&repo={}&tag={}", enc(&repo), enc(&tag)));
    }
    if let Some(m) = &a.message {
        q.push_str(&format!("&message={}", enc(m)));
    }
    if let Some(p) = &a.platform {
        q.push_str(&format!("&platform={}", enc(p)));
    }
    for ch in &a.change {
        q.push_str(&format!("&changes={}", enc(ch)));
    }
    let path = PathBuf::from(&a.file);
    let body = input_reader(Some(&path))?;
    let r = c.call(
        "POST",
        &format!("/images/create?{q}"),
        &[],
        Body::Stream("application/x-tar", body),
    )?;
    let mut id = String::new();
    super::client::json_stream(r, |m| {
        if let Some(e) = super::client::stream_error(&m) {
            return Err(e.into());
        }
        if let Some(s) = m.get("status").and_then(|s| s.as_str()) {
            id = s.trim().to_string();
        }
        Ok(())
    })?;
    println!("{id}");
    Ok(0)
}

/// Options of `history`.
#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format.
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub human: bool,
    /// Don't truncate output.
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Format output using a custom template.
    #[arg(long)]
    pub format: Option<String>,
    /// Image.
    pub image: String,
}

/// `berth history`.
pub fn history(a: HistoryArgs) -> anyhow::Result<i32> {
    let c = super::connect()?;
    let v = c.get_json(&format!("/images/{}/history", a.image))?;
    let trunc = !a.no_trunc;
    let rows: Vec<Value> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let id = sf(h, "Id");
            let id = if id == "<missing>" || id.is_empty() {
                "<missing>".to_string()
            } else if trunc {
                short_id(id)
            } else {
                id.to_string()
            };
            let by = sf(h, "CreatedBy").replace('\t', " ");
            let by = if trunc { super::container::ellipsis(&by, 45) } else { by };
            let created = nf(h, "Created");
            serde_json::json!({
                "ID": id,
                "CreatedSince": if a.human { output::ago(created) } else { output::go_time(created) },
                "CreatedAt": output::go_time(created),
                "CreatedBy": by,
                "Size": if a.human { output::size(nf(h, "Size")) } else { nf(h, "Size").to_string() },
                "Comment": sf(h, "Comment"),
            })
        })
        .collect();
    if a.quiet {
        for r in &rows {
            println!("{}", sf(r, "ID"));
        }
        return Ok(0);
    }
    let stdout = io::stdout();
    let mut out = stdout.lock();
    render_rows(
        &mut out,
        &rows,
        a.format.as_deref(),
        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
        &[
            ("ID", "IMAGE"),
            ("CreatedSince", "CREATED"),
            ("CreatedAt", "CREATED AT"),
            ("CreatedBy", "CREATED BY"),
            ("Size", "SIZE"),
            ("Comment", "COMMENT"),
        ],
    )?;
    Ok(0)
}

#[derive(Parser, Debug)]
#[command(name = "berth image", about = "Manage images")]
struct ImageCli {
    #[command(subcommand)]
    cmd: ImageCmd,
}

/// `berth image …` (client form).
#[derive(Subcommand, Debug)]
enum ImageCmd {
    /// List images.
    #[command(alias = "list")]
    #[command(after_help = "Example:\n  berth image ls --format {{.Repository}}:{{.Tag}}")]
    Ls(ImagesArgs),
    /// Download an image from a registry.
    #[command(after_help = "Example:\n  berth image pull localhost:5000/busybox:latest")]
    Pull(PullArgs),
    /// Upload an image to a registry.
    #[command(after_help = "Example:\n  berth image push localhost:5000/busybox:latest")]
    Push(PushArgs),
    /// Remove one or more images.
    #[command(alias = "remove")]
    #[command(after_help = "Example:\n  berth image rm busybox:old")]
    Rm(RmiArgs),
    /// Display detailed information on one or more images.
    #[command(after_help = "Example:\n  berth image inspect -f {{.Id}} busybox")]
    Inspect(super::system::InspectArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    #[command(after_help = "Example:\n  berth image tag busybox localhost:5000/busybox:v1")]
    Tag(TagArgs),
    /// Show the history of an image.
    #[command(after_help = "Example:\n  berth image history --no-trunc busybox")]
    History(HistoryArgs),
    /// Save one or more images to a tar archive.
    #[command(after_help = "Example:\n  berth image save -o busybox.tar busybox")]
    Save(SaveArgs),
    /// Load an image from a tar archive or STDIN.
    #[command(after_help = "Example:\n  berth image load -i busybox.tar")]
    Load(LoadArgs),
    /// Import the contents from a tarball to create a filesystem image.
    #[command(after_help = "Example:\n  berth image import rootfs.tar mybase:latest")]
    Import(ImportArgs),
    /// Remove unused images.
    #[command(after_help = "Example:\n  berth image prune -a -f")]
    Prune(super::system::PruneArgs),
}

/// `berth image ARGS…` against the daemon (the local data-root tool handles `--data-root`).
pub fn image_client(args: Vec<String>) -> i32 {
    super::quiet_panics();
    let cli = match ImageCli::try_parse_from(std::iter::once("berth image".to_string()).chain(args))
    {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 125 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let res = match cli.cmd {
        ImageCmd::Ls(a) => images(a),
        ImageCmd::Pull(a) => pull(a),
        ImageCmd::Push(a) => push(a),
        ImageCmd::Rm(a) => rmi(a),
        ImageCmd::Inspect(a) => super::system::inspect(a, Some("image")),
        ImageCmd::Tag(a) => tag(a),
        ImageCmd::History(a) => history(a),
        ImageCmd::Save(a) => save(a),
        ImageCmd::Load(a) => load(a),
        ImageCmd::Import(a) => import(a),
        ImageCmd::Prune(a) => super::system::prune("images", a),
    };
    match res {
        Ok(c) => c,
        Err(e) => super::report(&e, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_per_tag_and_untagged() {
        let i = json!({"Id":"sha256:0123456789abcdef0123","Created":0,"Size":4_260_000,"RepoTags":["busybox:latest","busybox:1"],"RepoDigests":[]});
        let r = image_rows(&i, true, true);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["Repository"], "busybox");
        assert_eq!(r[1]["Tag"], "1");
        assert_eq!(r[0]["ID"], "0123456789ab");
        assert_eq!(r[0]["Size"], "4.26MB");
        let u = json!({"Id":"sha256:ab","Created":0,"Size":1,"RepoTags":null,"RepoDigests":["x/y@sha256:cd"]});
        let r = image_rows(&u, true, true);
        assert_eq!(
            (
                r[0]["Repository"].as_str(),
                r[0]["Tag"].as_str(),
                r[0]["Digest"].as_str()
            ),
            (Some("x/y"), Some("<none>"), Some("sha256:cd"))
        );
    }
}
