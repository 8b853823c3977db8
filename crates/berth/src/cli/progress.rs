//! Progress display for pull/push/load: indicatif bars (one per layer) on a terminal, plain
//! lines otherwise (or with `--progress plain`), nothing with `-q`.

use std::collections::HashMap;
use std::io::Write;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::client::{json_stream, stream_error};

/// How to show progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bars on a terminal.
    Tty,
    /// One line per status change.
    Plain,
    /// Nothing.
    Quiet,
}

impl Mode {
    /// From `--progress` (auto|tty|plain|quiet), `-q` and whether stderr/stdout is a terminal.
    pub fn choose(flag: Option<&str>, quiet: bool, is_tty: bool) -> Mode {
        if quiet {
            return Mode::Quiet;
        }
        match flag {
            Some("plain") => Mode::Plain,
            Some("tty") => Mode::Tty,
            Some("quiet") => Mode::Quiet,
            _ if is_tty => Mode::Tty,
            _ => Mode::Plain,
        }
    }
}

/// Render one message as a plain line (`None` for in-between progress updates).
pub fn plain_line(m: &Value) -> Option<String> {
    if let Some(s) = m.get("stream").and_then(|s| s.as_str()) {
        return Some(s.trim_end_matches('\n').to_string());
    }
    let status = m.get("status").and_then(|s| s.as_str())?;
    let detail = m.get("progressDetail");
    let has_progress = detail
        .and_then(|d| d.get("current"))
        .and_then(|c| c.as_i64())
        .is_some_and(|c| c > 0);
    if has_progress {
        return None;
    }
    Some(match m.get("id").and_then(|i| i.as_str()) {
        Some(id) if !id.is_empty() => format!("{id}: {status}"),
        _ => status.to_string(),
    })
}

/// Consume a progress stream, rendering it to `out`; returns an error carried in the stream
/// (`{"errorDetail":…}`) as [`super::client::ApiError`] and the `aux` messages seen.
pub fn show(r: impl std::io::Read, mode: Mode, out: &mut dyn Write) -> anyhow::Result<Vec<Value>> {
    let mut aux = Vec::new();
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    let style = ProgressStyle::with_template(
        "{prefix}: {msg:<12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let done_style = ProgressStyle::with_template("{prefix}: {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut err = None;
    json_stream(r, |m| {
        if let Some(e) = stream_error(&m) {
            err = Some(e);
            return Ok(());
        }
        if let Some(a) = m.get("aux") {
            aux.push(a.clone());
        }
        match mode {
            Mode::Quiet => {}
            Mode::Plain => {
                if let Some(l) = plain_line(&m) {
                    writeln!(out, "{l}")?;
                }
            }
            Mode::Tty => {
                let id = m.get("id").and_then(|i| i.as_str()).unwrap_or("");
                let status = m.get("status").and_then(|s| s.as_str()).unwrap_or("");
                if id.is_empty() || m.get("stream").is_some() {
                    if let Some(l) = plain_line(&m) {
                        multi.println(l)?;
                    }
                    return Ok(());
                }
                let bar = bars.entry(id.to_string()).or_insert_with(|| {
                    let b = multi.add(ProgressBar::new(0));
                    b.set_style(done_style.clone());
                    b.set_prefix(id.to_string());
                    b
                });
                let d = m.get("progressDetail");
                let cur = d.and_then(|d| d.get("current")).and_then(|c| c.as_u64());
                let tot = d.and_then(|d| d.get("total")).and_then(|c| c.as_u64());
                if let (Some(c), Some(t)) = (cur, tot) {
                    bar.set_style(style.clone());
                    bar.set_length(t);
                    bar.set_position(c);
                } else {
                    bar.set_style(done_style.clone());
                }
                bar.set_message(status.to_string());
            }
        }
        Ok(())
    })?;
    for b in bars.values() {
        b.set_style(done_style.clone());
        b.finish();
    }
    if let Some(e) = err {
        return Err(e.into());
    }
    Ok(aux)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_progress_lines() {
        let s = concat!(
            r#"{"status":"Pulling from library/busybox","id":"latest"}"#,
            "\r\n",
            r#"{"status":"Downloading","progressDetail":{"current":10,"total":100},"id":"abc"}"#,
            "\r\n",
            r#"{"status":"Pull complete","progressDetail":{},"id":"abc"}"#,
            "\r\n",
            r#"{"status":"Digest: sha256:00"}"#,
            "\r\n",
        );
        let mut out = Vec::new();
        show(s.as_bytes(), Mode::Plain, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "latest: Pulling from library/busybox\nabc: Pull complete\nDigest: sha256:00\n"
        );
        let e = show(
            r#"{"errorDetail":{"message":"boom"},"error":"boom"}"#.as_bytes(),
            Mode::Quiet,
            &mut Vec::new(),
        );
        assert_eq!(e.unwrap_err().to_string(), "boom");
    }
}
