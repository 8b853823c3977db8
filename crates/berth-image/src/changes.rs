//! `docker import --change` / `docker commit --change`: Dockerfile instructions applied to an
//! image's runtime config. Supported: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL,
//! USER, VOLUME, WORKDIR (Docker's list).

use std::collections::BTreeMap;

use crate::spec::{Empty, RunConfig};
use crate::ImageError;

fn invalid(msg: String) -> ImageError {
    ImageError::Invalid(msg)
}

/// Parse a JSON array of strings (the exec form), or `None` when `s` is not one.
fn json_array(s: &str) -> Option<Vec<String>> {
    let t = s.trim();
    if !t.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(t).ok()
}

/// Split `k=v k2="v 2"` words, honouring double/single quotes and backslash escapes.
fn words(s: &str) -> Result<Vec<String>, ImageError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"') | (None, '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (q, '\\') if q != Some('\'') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(invalid(format!("unterminated quote in {s:?}")));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `k=v ...` pairs, or the legacy single `k v` form.
fn pairs(instr: &str, args: &str) -> Result<Vec<(String, String)>, ImageError> {
    let ws = words(args)?;
    if ws.is_empty() {
        return Err(invalid(format!("{instr} requires at least one argument")));
    }
    if !ws[0].contains('=') {
        // legacy form: ENV key value with spaces
        let (k, v) = args
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| invalid(format!("{instr} names a key without a value: {args:?}")))?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    ws.into_iter()
        .map(|w| {
            w.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| invalid(format!("{instr}: {w:?} is not key=value")))
        })
        .collect()
}

fn cmd_form(args: &str, shell: &Option<Vec<String>>) -> Vec<String> {
    json_array(args).unwrap_or_else(|| {
        let mut v = shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
        v.push(args.trim().to_string());
        v
    })
}

/// Apply one `--change` instruction to `cfg`.
pub fn apply_change(cfg: &mut RunConfig, change: &str) -> Result<(), ImageError> {
    let change = change.trim();
    let (instr, args) = change
        .split_once(char::is_whitespace)
        .unwrap_or((change, ""));
    let args = args.trim();
    let upper = instr.to_ascii_uppercase();
    if args.is_empty() && upper != "CMD" && upper != "ENTRYPOINT" {
        return Err(invalid(format!("{upper} requires at least one argument")));
    }
    match upper.as_str() {
        "CMD" => cfg.cmd = Some(cmd_form(args, &cfg.shell)),
        "ENTRYPOINT" => {
            cfg.entrypoint = Some(cmd_form(args, &cfg.shell));
            // Docker: ENTRYPOINT resets a CMD inherited from the base.
        }
        "ENV" => {
            let env = cfg.env.get_or_insert_with(Vec::new);
            for (k, v) in pairs("ENV", args)? {
                let prefix = format!("{k}=");
                env.retain(|e| !e.starts_with(&prefix));
                env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            let labels = cfg.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in pairs("LABEL", args)? {
                labels.insert(k, v);
            }
        }
        "EXPOSE" => {
            let ports = cfg.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in words(args)? {
                let (num, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                let proto = proto.to_ascii_lowercase();
                let ok_num = |n: &str| n.parse::<u16>().is_ok_and(|n| n > 0);
                let ok = match num.split_once('-') {
                    Some((a, b)) => ok_num(a) && ok_num(b),
                    None => ok_num(num),
                };
                if !ok || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                    return Err(invalid(format!("invalid port {p:?} in EXPOSE")));
                }
                ports.insert(format!("{num}/{proto}"), Empty {});
            }
        }
        "VOLUME" => {
            let vols = cfg.volumes.get_or_insert_with(BTreeMap::new);
            let list = match json_array(args) {
                Some(v) => v,
                None => words(args)?,
            };
            for v in list {
                if v.is_empty() {
                    return Err(invalid(
                        "VOLUME specified can not be an empty string".into(),
                    ));
                }
                vols.insert(v, Empty {});
            }
        }
        "WORKDIR" => {
            let w = args.to_string();
            let new = if w.starts_with('/') {
                w
            } else {
                let base = cfg.working_dir.clone().unwrap_or_else(|| "/".into());
                format!("{}/{}", base.trim_end_matches('/'), w)
            };
            cfg.working_dir = Some(new);
        }
        "USER" => cfg.user = Some(args.to_string()),
        "STOPSIGNAL" => cfg.stop_signal = Some(args.to_string()),
        "ONBUILD" => {
            let inner = args
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            if matches!(inner.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                return Err(invalid(format!(
                    "{inner} isn't allowed as an ONBUILD trigger"
                )));
            }
            cfg.on_build
                .get_or_insert_with(Vec::new)
                .push(args.to_string());
        }
        other => return Err(invalid(format!("{other} is not a valid change command"))),
    }
    Ok(())
}

/// Apply several changes in order.
pub fn apply_changes(cfg: &mut RunConfig, changes: &[String]) -> Result<(), ImageError> {
    for c in changes {
        apply_change(cfg, c)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_docker_changes() {
        let mut c = RunConfig::default();
        for ch in [
            r#"CMD ["/bin/sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /init --flag",
            "ENV A=1 B=\"two words\"",
            "ENV LEGACY some value",
            "ENV A=3",
            "WORKDIR /app",
            "WORKDIR sub",
            "USER 1000:1000",
            "EXPOSE 80 53/udp 8000-8010",
            r#"LABEL a=b "c d"=e"#,
            r#"VOLUME ["/data", "/logs"]"#,
            "VOLUME /cache",
            "STOPSIGNAL SIGINT",
            "onbuild RUN make",
        ] {
            apply_change(&mut c, ch).unwrap_or_else(|e| panic!("{ch}: {e}"));
        }
        assert_eq!(c.cmd.unwrap(), ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(c.entrypoint.unwrap(), ["/bin/sh", "-c", "/init --flag"]);
        assert_eq!(c.env.unwrap(), ["B=two words", "LEGACY=some value", "A=3"]);
        assert_eq!(c.working_dir.as_deref(), Some("/app/sub"));
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        let ports: Vec<_> = c.exposed_ports.unwrap().into_keys().collect();
        assert_eq!(ports, ["53/udp", "80/tcp", "8000-8010/tcp"]);
        let labels = c.labels.unwrap();
        assert_eq!(labels["a"], "b");
        assert_eq!(labels["c d"], "e");
        let vols: Vec<_> = c.volumes.unwrap().into_keys().collect();
        assert_eq!(vols, ["/cache", "/data", "/logs"]);
        assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(c.on_build.unwrap(), ["RUN make"]);
    }

    #[test]
    fn rejects_bad_changes() {
        for bad in [
            "RUN echo",
            "FROM x",
            "EXPOSE 99999",
            "EXPOSE 80/xyz",
            "ENV",
            "LABEL a=\"unterminated",
            "ONBUILD FROM x",
            "USER",
        ] {
            let mut c = RunConfig::default();
            assert!(apply_change(&mut c, bad).is_err(), "{bad} accepted");
        }
    }
}
