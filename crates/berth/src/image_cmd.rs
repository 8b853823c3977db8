//! `berth image ...`: image commands working directly on a data root (thin: all logic lives in
//! `berth_image::ImageService`).

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use berth_image::{DeleteResponse, ImageService, ImportOptions, OciDest};
use clap::{Args, Parser, Subcommand};

/// Arguments of `berth image`.
#[derive(Args, Debug)]
pub struct ImageArgs {
    /// Subcommand and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Parser, Debug)]
#[command(name = "berth image", about = "Manage images in a local data root")]
struct Cli {
    /// Root of persistent state.
    #[arg(long, default_value = "/var/lib/berth", global = true)]
    data_root: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Load images from a tar archive (docker save or OCI layout) or STDIN.
    Load {
        /// Read from this file instead of STDIN; `oci:DIR` loads an OCI layout directory.
        #[arg(short, long)]
        input: Option<String>,
        /// Suppress the load output.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Save images to a tar archive (STDOUT by default).
    Save {
        /// Write to a file; `oci:DIR` / `oci-archive:FILE` write an OCI image layout.
        #[arg(short, long)]
        output: Option<String>,
        /// Images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Import a rootfs tarball to create an image.
    Import {
        /// File, or `-` for STDIN.
        file: String,
        /// Repository[:tag] for the image.
        reference: Option<String>,
        /// Dockerfile instruction to apply (repeatable).
        #[arg(short = 'c', long = "change")]
        change: Vec<String>,
        /// Commit message.
        #[arg(short, long)]
        message: Option<String>,
        /// Platform (os/arch[/variant]).
        #[arg(long)]
        platform: Option<String>,
    },
    /// List images.
    #[command(alias = "list")]
    Ls {
        /// Only show image ids.
        #[arg(short, long)]
        quiet: bool,
        /// Don't truncate output.
        #[arg(long)]
        no_trunc: bool,
        /// Show all images (intermediate ones too).
        #[arg(short, long)]
        all: bool,
        /// Show digests.
        #[arg(long)]
        digests: bool,
    },
    /// Display detailed information on images.
    Inspect {
        /// Images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove images.
    #[command(alias = "remove")]
    Rm {
        /// Force removal.
        #[arg(short, long)]
        force: bool,
        /// Do not delete untagged parents (and skip garbage collection).
        #[arg(long)]
        no_prune: bool,
        /// Images.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE.
    Tag {
        /// Source image.
        source: String,
        /// New name.
        target: String,
    },
    /// Show the history of an image.
    History {
        /// Don't truncate output.
        #[arg(long)]
        no_trunc: bool,
        /// Only show image ids.
        #[arg(short, long)]
        quiet: bool,
        /// Print sizes and dates in human-readable format.
        #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
        human: bool,
        /// Image.
        image: String,
    },
    /// Unpack an image's layers into snapshots (normally done by load/import).
    Unpack {
        /// Image.
        image: String,
    },
    /// Remove content and snapshots no image, lease or container holds.
    Gc,
    /// Pull an image from a registry.
    Pull {
        /// NAME[:TAG|@DIGEST].
        name: String,
        /// Platform to choose from an index (os/arch[/variant]).
        #[arg(long)]
        platform: Option<String>,
        /// Print only the image name.
        #[arg(short, long)]
        quiet: bool,
        #[command(flatten)]
        registry: crate::distribution_cmd::RegistryOpts,
    },
    /// Push an image to a registry.
    Push {
        /// NAME[:TAG|@DIGEST].
        name: String,
        /// Suppress progress output.
        #[arg(short, long)]
        quiet: bool,
        #[command(flatten)]
        registry: crate::distribution_cmd::RegistryOpts,
    },
    /// Log in to a registry (credentials go to ~/.docker/config.json).
    Login {
        /// Server (default docker.io).
        server: Option<String>,
        /// Username.
        #[arg(short, long)]
        username: Option<String>,
        /// Password.
        #[arg(short, long)]
        password: Option<String>,
        /// Read the password from STDIN.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Log out from a registry.
    Logout {
        /// Server (default docker.io).
        server: Option<String>,
    },
}

/// Docker's tabwriter settings: minwidth 10, padding 3, last column unpadded.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count() + 3).max(10);
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(c);
                line.extend(std::iter::repeat_n(' ', widths[i] - c.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        hex.chars().take(12).collect()
    }
}

fn split_tag(t: &str) -> (String, String) {
    // familiar form: name[:tag]; the tag is after the last ':' not followed by '/'
    match t.rfind(':') {
        Some(i) if !t[i + 1..].contains('/') => (t[..i].to_string(), t[i + 1..].to_string()),
        _ => (t.to_string(), "<none>".to_string()),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn ago(secs: i64) -> String {
    if secs <= 0 {
        "N/A".into()
    } else {
        format!(
            "{} ago",
            berth_image::timefmt::human_duration(now_secs() - secs)
        )
    }
}

/// Run `berth image ...`; returns the exit code.
pub fn run(args: ImageArgs) -> anyhow::Result<i32> {
    // without --data-root, `berth image …` is the Engine API client (image ls/pull/push/...)
    let local = args
        .args
        .iter()
        .any(|a| a == "--data-root" || a.starts_with("--data-root="));
    if !local {
        return Ok(crate::cli::image::image_client(args.args));
    }
    let stdout = std::io::stdout();
    let tty = std::io::IsTerminal::is_terminal(&stdout);
    let mut out = stdout.lock();
    run_with(args.args, &mut out, tty)
}

/// Run `berth image ARGS...` writing its output to `out` (`out_is_tty`: refuse binary output).
fn run_with(args: Vec<String>, out: &mut dyn Write, out_is_tty: bool) -> anyhow::Result<i32> {
    let cli = match Cli::try_parse_from(std::iter::once("berth image".to_string()).chain(args)) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return Ok(code);
        }
    };
    let svc = || {
        ImageService::open(&cli.data_root)
            .with_context(|| format!("open data root {}", cli.data_root.display()))
    };
    match cli.cmd {
        Cmd::Pull {
            name,
            platform,
            quiet,
            registry,
        } => {
            return crate::distribution_cmd::pull(
                &cli.data_root,
                &name,
                platform.as_deref(),
                quiet,
                &registry,
                out,
            )
        }
        Cmd::Push {
            name,
            quiet,
            registry,
        } => return crate::distribution_cmd::push(&cli.data_root, &name, quiet, &registry, out),
        Cmd::Login {
            server,
            username,
            password,
            password_stdin,
        } => {
            return crate::distribution_cmd::login(
                server.as_deref(),
                username.as_deref(),
                password.as_deref(),
                password_stdin,
                out,
            )
        }
        Cmd::Logout { server } => return crate::distribution_cmd::logout(server.as_deref(), out),
        Cmd::Load { input, quiet } => {
            let s = svc()?;
            let res = match input.as_deref() {
                Some(p) if p.starts_with("oci:") => {
                    s.load_oci_dir(std::path::Path::new(&p["oci:".len()..]))?
                }
                Some(p) => {
                    let p = p
                        .strip_prefix("oci-archive:")
                        .or_else(|| p.strip_prefix("docker-archive:"))
                        .unwrap_or(p);
                    let f = std::fs::File::open(p).with_context(|| format!("open {p}"))?;
                    s.load(f)?
                }
                None => {
                    let stdin = std::io::stdin();
                    if std::io::IsTerminal::is_terminal(&stdin) {
                        bail!("requested load from stdin, but stdin is empty");
                    }
                    s.load(stdin.lock())?
                }
            };
            if !quiet {
                for r in res {
                    for (name, old) in &r.renamed {
                        writeln!(
                            out,
                            "The image {name} already exists, renaming the old one with ID {old} to empty string"
                        )?;
                    }
                    if r.names.is_empty() {
                        writeln!(out, "Loaded image ID: {}", r.id)?;
                    }
                    for n in r.names {
                        writeln!(out, "Loaded image: {n}")?;
                    }
                }
            }
        }
        Cmd::Save { output, images } => {
            let s = svc()?;
            match output.as_deref() {
                Some(p) if p.starts_with("oci:") => {
                    s.save_oci(&images, &OciDest::Dir(p["oci:".len()..].into()))?
                }
                Some(p) if p.starts_with("oci-archive:") => {
                    s.save_oci(&images, &OciDest::Archive(p["oci-archive:".len()..].into()))?
                }
                Some(p) => {
                    let tmp = format!("{p}.berth-tmp");
                    let f = std::fs::File::create(&tmp).with_context(|| format!("create {tmp}"))?;
                    let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
                    s.save(&images, &mut w)?;
                    let f = w.into_inner().map_err(|e| e.into_error())?;
                    f.sync_all()?;
                    std::fs::rename(&tmp, p).with_context(|| format!("rename {tmp} to {p}"))?;
                }
                None => {
                    if out_is_tty {
                        bail!(
                            "cowardly refusing to save to a terminal. Use the -o flag or redirect"
                        );
                    }
                    let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut *out);
                    s.save(&images, &mut w)?;
                    w.flush()?;
                }
            }
        }
        Cmd::Import {
            file,
            reference,
            change,
            message,
            platform,
        } => {
            let s = svc()?;
            let mut opts = ImportOptions {
                changes: change,
                message,
                source: file.clone(),
                ..Default::default()
            };
            if let Some(p) = platform {
                opts.platform = berth_core::Platform::parse(&p)
                    .with_context(|| format!("invalid platform {p:?}"))?;
            }
            let reader: Box<dyn Read> = if file == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(std::fs::File::open(&file).with_context(|| format!("open {file}"))?)
            };
            let r = s.import(reader, reference.as_deref(), &opts)?;
            writeln!(out, "{}", r.id)?;
        }
        Cmd::Ls {
            quiet,
            no_trunc,
            all: _,
            digests,
        } => {
            let s = svc()?;
            let list = s.list()?;
            if quiet {
                for i in &list {
                    writeln!(out, "{}", short_id(&i.id, no_trunc))?;
                }
                return Ok(0);
            }
            let mut rows = vec![{
                let mut h = vec!["REPOSITORY".to_string(), "TAG".into()];
                if digests {
                    h.push("DIGEST".into());
                }
                h.extend(["IMAGE ID".into(), "CREATED".into(), "SIZE".into()]);
                h
            }];
            for i in &list {
                let tags: Vec<(String, String)> = if i.repo_tags.is_empty() {
                    vec![("<none>".into(), "<none>".into())]
                } else {
                    i.repo_tags.iter().map(|t| split_tag(t)).collect()
                };
                for (repo, tag) in tags {
                    let mut r = vec![repo.clone(), tag];
                    if digests {
                        let d = i
                            .repo_digests
                            .iter()
                            .find(|d| d.starts_with(&format!("{repo}@")))
                            .and_then(|d| d.split_once('@').map(|x| x.1.to_string()))
                            .unwrap_or_else(|| "<none>".into());
                        r.push(d);
                    }
                    r.extend([
                        short_id(&i.id, no_trunc),
                        ago(i.created),
                        berth_image::timefmt::human_size(i.size),
                    ]);
                    rows.push(r);
                }
            }
            write!(out, "{}", table(&rows))?;
        }
        Cmd::Inspect { images } => {
            let s = svc()?;
            let mut vals = Vec::new();
            let mut failed = false;
            for i in &images {
                match s.inspect(i) {
                    Ok(v) => vals.push(v),
                    Err(e) => {
                        eprintln!("Error: {e}");
                        failed = true;
                    }
                }
            }
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            serde::Serialize::serialize(&vals, &mut ser)?;
            out.write_all(&buf)?;
            writeln!(out)?;
            return Ok(if failed { 1 } else { 0 });
        }
        Cmd::Rm {
            force,
            no_prune,
            images,
        } => {
            let s = svc()?;
            let mut failed = false;
            for i in &images {
                match s.remove(i, force, !no_prune) {
                    Ok(lines) => {
                        for l in lines {
                            match l {
                                DeleteResponse::Untagged(n) => writeln!(out, "Untagged: {n}")?,
                                DeleteResponse::Deleted(n) => writeln!(out, "Deleted: {n}")?,
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("Error response from daemon: {e}");
                        failed = true;
                    }
                }
            }
            return Ok(if failed { 1 } else { 0 });
        }
        Cmd::Tag { source, target } => svc()?.tag(&source, &target)?,
        Cmd::History {
            no_trunc,
            quiet,
            human,
            image,
        } => {
            let s = svc()?;
            let items = s.history(&image)?;
            if quiet {
                for h in &items {
                    let id = if h.id == "<missing>" {
                        h.id.clone()
                    } else {
                        short_id(&h.id, no_trunc)
                    };
                    writeln!(out, "{id}")?;
                }
                return Ok(0);
            }
            let mut rows = vec![vec![
                "IMAGE".to_string(),
                "CREATED".into(),
                "CREATED BY".into(),
                "SIZE".into(),
                "COMMENT".into(),
            ]];
            for h in &items {
                let id = if h.id == "<missing>" {
                    h.id.clone()
                } else {
                    short_id(&h.id, no_trunc)
                };
                let created_by = h.created_by.replace('\t', " ");
                let created_by = if no_trunc {
                    created_by
                } else {
                    truncate(&created_by, 45)
                };
                let (created, size) = if human {
                    (ago(h.created), berth_image::timefmt::human_size(h.size))
                } else {
                    (
                        berth_image::timefmt::format_rfc3339(h.created, 0),
                        h.size.to_string(),
                    )
                };
                rows.push(vec![id, created, created_by, size, h.comment.clone()]);
            }
            write!(out, "{}", table(&rows))?;
        }
        Cmd::Unpack { image } => {
            let r = svc()?.unpack(&image)?;
            writeln!(
                out,
                "unpacked {} layers ({} already present), {} bytes",
                r.applied, r.reused, r.bytes
            )?;
        }
        Cmd::Gc => {
            let r = svc()?.gc()?;
            writeln!(
                out,
                "removed {} blobs ({} bytes), {} snapshots, {} ingests",
                r.blobs_removed, r.bytes_freed, r.snapshots_removed, r.ingests_removed
            )?;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_aligned_like_docker() {
        let t = table(&[
            vec!["REPOSITORY".into(), "TAG".into(), "IMAGE ID".into()],
            vec!["busybox".into(), "latest".into(), "0123456789ab".into()],
        ]);
        assert_eq!(
            t,
            // as `docker images` prints: minimum width 10, padding 3
            "REPOSITORY   TAG       IMAGE ID\nbusybox      latest    0123456789ab\n"
        );
        assert_eq!(
            split_tag("localhost:5000/a:v1"),
            ("localhost:5000/a".into(), "v1".into())
        );
        assert_eq!(
            split_tag("localhost:5000/a"),
            ("localhost:5000/a".into(), "<none>".into())
        );
        assert_eq!(truncate("abcdef", 4), "abc…");
    }

    struct TempRoot(PathBuf);
    impl Drop for TempRoot {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp_root() -> TempRoot {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p =
            std::env::temp_dir().join(format!("berthtest-imagecli-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        TempRoot(p)
    }

    fn cli(root: &TempRoot, args: &[&str]) -> (i32, String) {
        let mut v = vec!["--data-root".to_string(), root.0.display().to_string()];
        v.extend(args.iter().map(|s| s.to_string()));
        let mut out = Vec::new();
        let code = run_with(v, &mut out, false).unwrap();
        (code, String::from_utf8(out).unwrap())
    }

    const FIXTURE: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../berth-image/tests/fixtures/docker-save-tiny.tar"
    );

    #[test]
    fn cli_load_ls_history_inspect_tag_rm_save() {
        let root = temp_root();
        let (code, out) = cli(&root, &["load", "-i", FIXTURE]);
        assert_eq!(code, 0);
        assert_eq!(
            out,
            "Loaded image: berthfixture/tiny:v1\nLoaded image: berthfixture/tiny:latest\n"
        );
        assert_eq!(
            cli(
                &root,
                &["tag", "berthfixture/tiny:v1", "localhost:5000/tiny:x"]
            )
            .0,
            0
        );

        let (_, ls) = cli(&root, &["ls"]);
        let lines: Vec<&str> = ls.lines().collect();
        assert_eq!(lines.len(), 4, "{ls}");
        let header = lines[0];
        assert!(header.starts_with("REPOSITORY"), "{ls}");
        let col = |name: &str| header.find(name).unwrap();
        for (i, name) in ["TAG", "IMAGE ID", "CREATED", "SIZE"].iter().enumerate() {
            let c = col(name);
            assert!(c > 0 && (i == 0 || c > col(["TAG", "IMAGE ID", "CREATED", "SIZE"][i - 1])));
            for l in &lines[1..] {
                assert_eq!(
                    l.as_bytes()[c - 1],
                    b' ',
                    "column {name} misaligned in {l:?}"
                );
            }
        }
        assert!(
            lines[1..]
                .iter()
                .any(|l| l.starts_with("localhost:5000/tiny")),
            "{ls}"
        );
        assert!(lines[1].contains("3de91d705320"), "{ls}");
        let (_, q) = cli(&root, &["ls", "-q"]);
        assert_eq!(q, "3de91d705320\n");

        let (_, h) = cli(&root, &["history", "berthfixture/tiny:v1"]);
        let hl: Vec<&str> = h.lines().collect();
        assert!(hl[0].starts_with("IMAGE          CREATED"), "{h}");
        assert!(
            hl[0].contains("CREATED BY") && hl[0].ends_with("COMMENT"),
            "{h}"
        );
        assert!(
            hl[1].starts_with("3de91d705320") && hl[1].ends_with("berth fixture"),
            "{h}"
        );

        let (code, js) = cli(&root, &["inspect", "berthfixture/tiny:v1", "3de91d705320"]);
        assert_eq!(code, 0);
        assert!(
            js.starts_with("[\n    {\n        \"Id\": \"sha256:3de91d70"),
            "{js}"
        );
        let v: serde_json::Value = serde_json::from_str(&js).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[0]["Config"]["WorkingDir"], "/data");
        let (code, _) = cli(&root, &["inspect", "nope:none"]);
        assert_eq!(code, 1);

        let save = root.0.join("out.tar");
        assert_eq!(
            cli(
                &root,
                &["save", "-o", save.to_str().unwrap(), "berthfixture/tiny:v1"]
            )
            .0,
            0
        );
        assert!(std::fs::metadata(&save).unwrap().len() > 10240);

        let (code, _) = cli(&root, &["rm", "3de91d705320"]);
        assert_eq!(code, 1, "referenced in two repositories: must force");
        let (_, rm) = cli(&root, &["rm", "localhost:5000/tiny:x"]);
        assert_eq!(rm, "Untagged: localhost:5000/tiny:x\n");
        let (_, rm) = cli(&root, &["rm", "3de91d705320"]);
        assert_eq!(
            rm,
            "Untagged: berthfixture/tiny:latest\nUntagged: berthfixture/tiny:v1\nDeleted: sha256:3de91d70532028de844cb2be7f31a3cab654e01d317ff6dd9a01dc06df109903\n"
        );
        assert_eq!(cli(&root, &["ls", "-q"]).1, "");

        // reload from our own save
        let (_, out) = cli(&root, &["load", "-q", "-i", save.to_str().unwrap()]);
        assert_eq!(out, "");
        assert_eq!(cli(&root, &["ls", "-q"]).1, "3de91d705320\n");
        let (_, out) = cli(
            &root,
            &["import", FIXTURE, "berthtest/imp:1", "-c", "CMD [\"x\"]"],
        );
        assert!(out.starts_with("sha256:"), "{out}");
        assert_eq!(cli(&root, &["bogus"]).0, 2);
    }
}
