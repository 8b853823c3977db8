//! Rendering lists like the docker CLI: default tables, `--format`, `-q`, and JSON arrays.

use std::io::Write;

use serde_json::{Map, Value};

use super::template::{tabwrite, Template};

/// Render `rows` with docker's `--format` rules.
///
/// `format`: None → `default_table`; `"json"` → one JSON object per line; `"table …"` → header +
/// rows through the tabwriter; anything else → the template per row. `headers` maps a field name
/// to its column title ("ID" → "CONTAINER ID").
pub fn render_rows(
    out: &mut dyn Write,
    rows: &[Value],
    format: Option<&str>,
    default_table: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<()> {
    let f = match format {
        None | Some("") | Some("table") => default_table.to_string(),
        Some("json") => "{{json .}}".to_string(),
        Some(f) => f.to_string(),
    };
    let f = f.replace("\\t", "\t").replace("\\n", "\n");
    if let Some(body) = f.strip_prefix("table") {
        let body = body.trim_start_matches(' ');
        let t =
            Template::parse(body).map_err(|e| anyhow::anyhow!("template parsing error: {e}"))?;
        let mut hdr = Map::new();
        for (k, v) in headers {
            hdr.insert((*k).to_string(), Value::String((*v).to_string()));
        }
        // fields without a title get their upper-cased name, as docker does
        for r in rows.iter().take(1) {
            if let Value::Object(o) = r {
                for k in o.keys() {
                    if !hdr.contains_key(k) {
                        hdr.insert(k.clone(), Value::String(k.to_uppercase()));
                    }
                }
            }
        }
        let mut buf = String::new();
        buf.push_str(&t.render(&Value::Object(hdr)).unwrap_or_default());
        buf.push('\n');
        for r in rows {
            buf.push_str(&t.render(r).map_err(|e| anyhow::anyhow!("template: {e}"))?);
            buf.push('\n');
        }
        out.write_all(tabwrite(&buf).as_bytes())?;
    } else {
        let t = Template::parse(&f).map_err(|e| anyhow::anyhow!("template parsing error: {e}"))?;
        for r in rows {
            let line = t.render(r).map_err(|e| anyhow::anyhow!("template: {e}"))?;
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// Print values as docker's `inspect` does: a 4-space-indented JSON array, or a template per item.
pub fn print_inspect(
    out: &mut dyn Write,
    items: &[Value],
    format: Option<&str>,
) -> anyhow::Result<()> {
    match format {
        Some(f) if !f.is_empty() => {
            let f = if f == "json" { "{{json .}}" } else { f };
            let t =
                Template::parse(f).map_err(|e| anyhow::anyhow!("template parsing error: {e}"))?;
            for i in items {
                writeln!(
                    out,
                    "{}",
                    t.render(i).map_err(|e| anyhow::anyhow!("template: {e}"))?
                )?;
            }
        }
        _ => {
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            serde::Serialize::serialize(&Value::Array(items.to_vec()), &mut ser)?;
            out.write_all(&buf)?;
            out.write_all(b"\n")?;
        }
    }
    Ok(())
}

/// Go's `json.Indent(raw, "", "    ")`: re-indent JSON text keeping the daemon's key order.
pub fn indent_json(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len() * 2);
    let text = String::from_utf8_lossy(raw);
    let cs: Vec<char> = text.chars().collect();
    let mut depth = 0usize;
    let mut i = 0;
    let nl = |out: &mut String, d: usize| {
        out.push('\n');
        for _ in 0..d {
            out.push_str("    ");
        }
    };
    while i < cs.len() {
        let c = cs[i];
        match c {
            '"' => {
                out.push('"');
                i += 1;
                while i < cs.len() {
                    out.push(cs[i]);
                    if cs[i] == '\\' && i + 1 < cs.len() {
                        out.push(cs[i + 1]);
                        i += 2;
                        continue;
                    }
                    if cs[i] == '"' {
                        break;
                    }
                    i += 1;
                }
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                let mut j = i + 1;
                while j < cs.len() && cs[j].is_ascii_whitespace() {
                    j += 1;
                }
                if cs.get(j) == Some(&close) {
                    out.push(c);
                    out.push(close);
                    i = j;
                } else {
                    out.push(c);
                    depth += 1;
                    nl(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                nl(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                nl(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// The field path of a format that is exactly `{{json .A.B}}` (or `{{json .}}`).
fn json_path_only(f: &str) -> Option<Vec<String>> {
    let inner = f.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    let arg = inner.strip_prefix("json")?;
    if !arg.starts_with(char::is_whitespace) {
        return None;
    }
    let arg = arg.trim();
    if !arg.starts_with('.') || arg.contains(char::is_whitespace) {
        return None;
    }
    let path: Vec<String> = arg
        .split('.')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    path.iter()
        .all(|p| p.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .then_some(path)
}

/// The raw JSON text at `path` inside `raw`, whitespace removed outside strings.
fn raw_subtree(raw: &[u8], path: &[String]) -> Option<String> {
    let mut cur: &serde_json::value::RawValue = serde_json::from_slice(raw).ok()?;
    for p in path {
        let map: std::collections::HashMap<String, &serde_json::value::RawValue> =
            serde_json::from_str(cur.get()).ok()?;
        cur = map.get(p).copied()?;
    }
    Some(compact(cur.get()))
}

fn compact(t: &str) -> String {
    let mut o = String::with_capacity(t.len());
    let mut in_str = false;
    let mut esc = false;
    for c in t.chars() {
        if in_str {
            o.push(c);
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            o.push(c);
        } else if !c.is_whitespace() {
            o.push(c);
        }
    }
    o
}

/// Print raw JSON documents as docker's `inspect`: an indented array, or a template per item.
pub fn print_inspect_raw(
    out: &mut dyn Write,
    raws: &[Vec<u8>],
    format: Option<&str>,
) -> anyhow::Result<()> {
    if let Some(path) = format.and_then(json_path_only) {
        // `{{json .A.B}}`: print the daemon's own bytes for that subtree, so key order stays
        // the daemon's (Go struct order), as the docker CLI prints it
        for r in raws {
            match raw_subtree(r, &path) {
                Some(t) => writeln!(out, "{t}")?,
                None => {
                    let v: Value = serde_json::from_slice(r)?;
                    print_inspect(out, &[v], format)?;
                }
            }
        }
        return Ok(());
    }
    if format.is_some_and(|f| !f.is_empty()) {
        let items = raws
            .iter()
            .map(|r| serde_json::from_slice(r))
            .collect::<Result<Vec<Value>, _>>()?;
        return print_inspect(out, &items, format);
    }
    let mut all = b"[".to_vec();
    for (i, r) in raws.iter().enumerate() {
        if i > 0 {
            all.push(b',');
        }
        all.extend_from_slice(r);
    }
    all.push(b']');
    writeln!(out, "{}", indent_json(&all))?;
    Ok(())
}

/// Go's `stringid.TruncateID`: strip the algorithm, keep 12 characters.
pub fn short_id(id: &str) -> String {
    let id = id.split_once(':').map(|(_, h)| h).unwrap_or(id);
    id.chars().take(12).collect()
}

/// Seconds since the epoch now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// "5 minutes ago" from unix seconds.
pub fn ago(secs: i64) -> String {
    format!(
        "{} ago",
        berth_image::timefmt::human_duration(now_secs() - secs)
    )
}

/// Docker's human size ("1.23MB").
pub fn size(bytes: i64) -> String {
    berth_image::timefmt::human_size(bytes.max(0) as u64)
}

/// go-units `HumanSize` (4 significant digits: "1.982MB"), used by `system df`.
pub fn size4(bytes: i64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut v = bytes.max(0) as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let int_digits = if v < 1.0 {
        1
    } else {
        (v.log10().floor() as usize) + 1
    };
    let decimals = 4usize.saturating_sub(int_digits);
    let mut t = format!("{v:.decimals$}");
    if t.contains('.') {
        t = t.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{t}{}", UNITS[i])
}

/// Docker's "SIZE (PCT%)" for `system df` reclaimable columns.
pub fn size_pct(part: i64, total: i64) -> String {
    if total > 0 {
        format!("{} ({}%)", size4(part), part * 100 / total)
    } else {
        size4(part)
    }
}

/// A string field of a JSON value ("" when absent).
pub fn sf<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(|x| x.as_str()).unwrap_or("")
}

/// An integer field of a JSON value (0 when absent).
pub fn nf(v: &Value, k: &str) -> i64 {
    v.get(k).and_then(|x| x.as_i64()).unwrap_or(0)
}

/// "2024-01-02 03:04:05 +0000 UTC" (Go's time.Time String) from unix seconds.
pub fn go_time(secs: i64) -> String {
    let t = berth_image::timefmt::format_rfc3339(secs, 0);
    // "2024-01-02T03:04:05Z"
    let t = t.trim_end_matches('Z').replacen('T', " ", 1);
    format!("{t} +0000 UTC")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_and_quiet_shapes() {
        let rows = vec![
            json!({"ID":"abc","Name":"x"}),
            json!({"ID":"defghi","Name":"y"}),
        ];
        let mut o = Vec::new();
        render_rows(
            &mut o,
            &rows,
            None,
            "table {{.ID}}\t{{.Name}}",
            &[("ID", "IMAGE ID"), ("Name", "NAME")],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(o).unwrap(),
            "IMAGE ID   NAME\nabc        x\ndefghi     y\n"
        );
        let mut o = Vec::new();
        render_rows(&mut o, &rows, Some("{{.Name}}"), "", &[]).unwrap();
        assert_eq!(String::from_utf8(o).unwrap(), "x\ny\n");
        let mut o = Vec::new();
        print_inspect(&mut o, &[json!({"a": [1]})], None).unwrap();
        assert_eq!(
            String::from_utf8(o).unwrap(),
            "[\n    {\n        \"a\": [\n            1\n        ]\n    }\n]\n"
        );
        assert_eq!(indent_json(br#"{"b":[],"a":{"x":[1,"y,:"]}}"#), "{\n    \"b\": [],\n    \"a\": {\n        \"x\": [\n            1,\n            \"y,:\"\n        ]\n    }\n}");
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        let mut o = Vec::new();
        print_inspect_raw(
            &mut o,
            &[br#"{"Z": {"b": 1, "a": "x y"}, "A": 2}"#.to_vec()],
            Some("{{json .Z}}"),
        )
        .unwrap();
        assert_eq!(String::from_utf8(o).unwrap(), "{\"b\":1,\"a\":\"x y\"}\n");
        assert_eq!(json_path_only("{{json .}}"), Some(vec![]));
        assert_eq!(json_path_only("{{json .State}} x"), None);
        assert_eq!(size4(1_982_000), "1.982MB");
        assert_eq!(size4(0), "0B");
        assert_eq!(size_pct(50, 100), "50B (50%)");
        assert_eq!(go_time(0), "1970-01-01 00:00:00 +0000 UTC");
    }
}
