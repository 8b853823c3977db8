//! A Go `text/template` subset for `--format`: `{{.Field}}`, `{{.A.B}}`, `{{json .}}`,
//! `{{range .X}}…{{else}}…{{end}}`, `{{if}}`, `{{with}}`, `{{index . "k"}}`, `{{upper}}`,
//! `{{lower}}`, `{{title}}`, `{{join .X ","}}`, `{{split}}`, `{{len}}`, `{{println}}`,
//! `{{printf}}`, `{{pad}}`, `{{truncate}}`, pipelines with `|`, and `{{- -}}` trimming.

use serde_json::Value;

/// A parse or execution error (printed by the caller as "template parsing error: ...").
#[derive(Debug, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for TemplateError {}

#[derive(Debug, Clone)]
enum Arg {
    Field(Vec<String>),
    Root(Vec<String>),
    Str(String),
    Num(f64),
    Bool(bool),
    Ident(String),
    Sub(Pipe),
}

type Cmd = Vec<Arg>;
type Pipe = Vec<Cmd>;

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipe),
    Range(Pipe, Vec<Node>, Vec<Node>),
    If(Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

enum Item {
    Text(String),
    Action(String),
}

fn lex(src: &str) -> Result<Vec<Item>, TemplateError> {
    let mut items = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(i) = rest.find("{{") {
        let mut text = &rest[..i];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[i + 2..];
        let (after, trim_prev) = match after.strip_prefix("- ") {
            Some(a) => (a, true),
            None => (after, false),
        };
        if trim_prev {
            text = text.trim_end();
        }
        if !text.is_empty() {
            items.push(Item::Text(text.to_string()));
        }
        let end = after
            .find("}}")
            .ok_or_else(|| TemplateError("unclosed action".into()))?;
        let mut inner = &after[..end];
        trim_next = false;
        if let Some(s) = inner.strip_suffix(" -") {
            inner = s;
            trim_next = true;
        }
        items.push(Item::Action(inner.trim().to_string()));
        rest = &after[end + 2..];
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        items.push(Item::Text(text.to_string()));
    }
    Ok(items)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Pipe,
    Open,
    Close,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, TemplateError> {
    let mut out = Vec::new();
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        match c {
            ' ' | '\t' | '\n' => i += 1,
            '|' => {
                out.push(Tok::Pipe);
                i += 1
            }
            '(' => {
                out.push(Tok::Open);
                i += 1
            }
            ')' => {
                out.push(Tok::Close);
                i += 1
            }
            '"' => {
                let mut v = String::new();
                i += 1;
                loop {
                    let Some(&c) = cs.get(i) else {
                        return Err(TemplateError("unterminated quoted string".into()));
                    };
                    i += 1;
                    match c {
                        '"' => break,
                        '\\' => {
                            let e = cs.get(i).copied().unwrap_or('\\');
                            i += 1;
                            v.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                        }
                        _ => v.push(c),
                    }
                }
                out.push(Tok::Str(v));
            }
            '`' => {
                let start = i + 1;
                let end = cs[start..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or_else(|| TemplateError("unterminated raw quoted string".into()))?;
                out.push(Tok::Str(cs[start..start + end].iter().collect()));
                i = start + end + 1;
            }
            _ => {
                let start = i;
                while i < cs.len() && !matches!(cs[i], ' ' | '\t' | '\n' | '|' | '(' | ')') {
                    i += 1;
                }
                out.push(Tok::Word(cs[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

fn parse_pipe(toks: &[Tok], pos: &mut usize) -> Result<Pipe, TemplateError> {
    let mut pipe = Vec::new();
    let mut cmd: Cmd = Vec::new();
    while *pos < toks.len() {
        match &toks[*pos] {
            Tok::Pipe => {
                if cmd.is_empty() {
                    return Err(TemplateError("missing command before |".into()));
                }
                pipe.push(std::mem::take(&mut cmd));
                *pos += 1;
            }
            Tok::Close => break,
            Tok::Open => {
                *pos += 1;
                let p = parse_pipe(toks, pos)?;
                if toks.get(*pos) != Some(&Tok::Close) {
                    return Err(TemplateError("unclosed left paren".into()));
                }
                *pos += 1;
                cmd.push(Arg::Sub(p));
            }
            Tok::Str(s) => {
                cmd.push(Arg::Str(s.clone()));
                *pos += 1;
            }
            Tok::Word(w) => {
                cmd.push(word(w)?);
                *pos += 1;
            }
        }
    }
    if !cmd.is_empty() {
        pipe.push(cmd);
    }
    if pipe.is_empty() {
        return Err(TemplateError("missing value for command".into()));
    }
    Ok(pipe)
}

fn fields(s: &str) -> Vec<String> {
    s.split('.')
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

fn word(w: &str) -> Result<Arg, TemplateError> {
    if w.starts_with('.') {
        Ok(Arg::Field(fields(w)))
    } else if let Some(r) = w.strip_prefix('$') {
        Ok(Arg::Root(fields(r)))
    } else if w == "true" || w == "false" {
        Ok(Arg::Bool(w == "true"))
    } else if let Ok(n) = w.parse::<f64>() {
        Ok(Arg::Num(n))
    } else if w.chars().all(|c| c.is_alphanumeric() || c == '_') {
        Ok(Arg::Ident(w.to_string()))
    } else {
        Err(TemplateError(format!("unexpected {w:?} in command")))
    }
}

fn parse_action(s: &str) -> Result<Pipe, TemplateError> {
    let toks = tokenize(s)?;
    let mut pos = 0;
    let p = parse_pipe(&toks, &mut pos)?;
    if pos != toks.len() {
        return Err(TemplateError("unexpected right paren".into()));
    }
    Ok(p)
}

/// Parse nodes until `{{end}}` / `{{else}}` (returned as the stop word).
fn parse_nodes(
    items: &[Item],
    pos: &mut usize,
    top: bool,
) -> Result<(Vec<Node>, Option<&'static str>), TemplateError> {
    let mut nodes = Vec::new();
    while *pos < items.len() {
        let it = &items[*pos];
        *pos += 1;
        match it {
            Item::Text(t) => nodes.push(Node::Text(t.clone())),
            Item::Action(a) => {
                let (kw, rest) = a.split_once(char::is_whitespace).unwrap_or((a, ""));
                match kw {
                    "end" => {
                        if top {
                            return Err(TemplateError("unexpected {{end}}".into()));
                        }
                        return Ok((nodes, Some("end")));
                    }
                    "else" => {
                        if top {
                            return Err(TemplateError("unexpected {{else}}".into()));
                        }
                        return Ok((nodes, Some("else")));
                    }
                    "range" | "if" | "with" => {
                        let p = parse_action(rest)?;
                        let (body, stop) = parse_nodes(items, pos, false)?;
                        let alt = match stop {
                            Some("else") => {
                                let (alt, stop2) = parse_nodes(items, pos, false)?;
                                if stop2 != Some("end") {
                                    return Err(TemplateError("missing {{end}}".into()));
                                }
                                alt
                            }
                            Some(_) => Vec::new(),
                            None => return Err(TemplateError(format!("unexpected EOF in {kw}"))),
                        };
                        nodes.push(match kw {
                            "range" => Node::Range(p, body, alt),
                            "if" => Node::If(p, body, alt),
                            _ => Node::With(p, body, alt),
                        });
                    }
                    _ if a.starts_with("/*") => {}
                    _ => nodes.push(Node::Action(parse_action(a)?)),
                }
            }
        }
    }
    if top {
        Ok((nodes, None))
    } else {
        Err(TemplateError("unexpected EOF: missing {{end}}".into()))
    }
}

impl Template {
    /// Parse a template.
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let items = lex(src)?;
        let mut pos = 0;
        let (nodes, _) = parse_nodes(&items, &mut pos, true)?;
        Ok(Template { nodes })
    }

    /// Render against `data`.
    pub fn render(&self, data: &Value) -> Result<String, TemplateError> {
        let mut out = String::new();
        exec(&self.nodes, data, data, &mut out)?;
        Ok(out)
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn exec(nodes: &[Node], dot: &Value, root: &Value, out: &mut String) -> Result<(), TemplateError> {
    for n in nodes {
        match n {
            Node::Text(t) => out.push_str(t),
            Node::Action(p) => out.push_str(&to_text(&eval_pipe(p, dot, root)?)),
            Node::If(p, body, alt) => {
                if truthy(&eval_pipe(p, dot, root)?) {
                    exec(body, dot, root, out)?
                } else {
                    exec(alt, dot, root, out)?
                }
            }
            Node::With(p, body, alt) => {
                let v = eval_pipe(p, dot, root)?;
                if truthy(&v) {
                    exec(body, &v, root, out)?
                } else {
                    exec(alt, dot, root, out)?
                }
            }
            Node::Range(p, body, alt) => {
                let v = eval_pipe(p, dot, root)?;
                let items: Vec<Value> = match v {
                    Value::Array(a) => a,
                    // Go ranges over map values in key order
                    Value::Object(o) => {
                        let mut ks: Vec<_> = o.into_iter().collect();
                        ks.sort_by(|a, b| a.0.cmp(&b.0));
                        ks.into_iter().map(|(_, v)| v).collect()
                    }
                    Value::Null => Vec::new(),
                    other => {
                        return Err(TemplateError(format!(
                            "range can't iterate over {}",
                            to_text(&other)
                        )))
                    }
                };
                if items.is_empty() {
                    exec(alt, dot, root, out)?;
                }
                for it in &items {
                    exec(body, it, root, out)?;
                }
            }
        }
    }
    Ok(())
}

fn lookup(base: &Value, path: &[String]) -> Result<Value, TemplateError> {
    let mut cur = base.clone();
    for f in path {
        cur = match cur {
            Value::Object(mut o) => o.remove(f).unwrap_or(Value::Null),
            Value::Null => Value::Null,
            other => {
                return Err(TemplateError(format!(
                    "can't evaluate field {f} in type {}",
                    type_name(&other)
                )))
            }
        };
    }
    Ok(cur)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "int",
        Value::Bool(_) => "bool",
        Value::Array(_) => "[]interface {}",
        _ => "interface {}",
    }
}

fn eval_arg(a: &Arg, dot: &Value, root: &Value) -> Result<Value, TemplateError> {
    match a {
        Arg::Field(p) => lookup(dot, p),
        Arg::Root(p) => lookup(root, p),
        Arg::Str(s) => Ok(Value::String(s.clone())),
        Arg::Num(n) => Ok(if n.fract() == 0.0 {
            Value::from(*n as i64)
        } else {
            Value::from(*n)
        }),
        Arg::Bool(b) => Ok(Value::Bool(*b)),
        Arg::Sub(p) => eval_pipe(p, dot, root),
        Arg::Ident(f) => call(f, Vec::new()),
    }
}

fn eval_pipe(p: &Pipe, dot: &Value, root: &Value) -> Result<Value, TemplateError> {
    let mut prev: Option<Value> = None;
    for cmd in p {
        let v = match &cmd[0] {
            Arg::Ident(f) => {
                let mut args = cmd[1..]
                    .iter()
                    .map(|a| eval_arg(a, dot, root))
                    .collect::<Result<Vec<_>, _>>()?;
                if let Some(pv) = prev.take() {
                    args.push(pv);
                }
                call(f, args)?
            }
            Arg::Field(path) if path.last().is_some_and(|m| m == "Label") && cmd.len() == 2 => {
                // docker's formatter method `.Label "key"` over the "k=v,k2=v2" Labels column
                let base = lookup(dot, &path[..path.len() - 1])?;
                let key = to_text(&eval_arg(&cmd[1], dot, root)?);
                label_of(&base, &key)
            }
            a => {
                if cmd.len() > 1 || prev.is_some() {
                    return Err(TemplateError("can't give argument to non-function".into()));
                }
                eval_arg(a, dot, root)?
            }
        };
        prev = Some(v);
    }
    Ok(prev.unwrap_or(Value::Null))
}

fn label_of(base: &Value, key: &str) -> Value {
    match base.get("Labels") {
        Some(Value::Object(o)) => Value::String(o.get(key).map(to_text).unwrap_or_default()),
        Some(Value::String(l)) => Value::String(
            l.split(',')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default(),
        ),
        _ => Value::String(String::new()),
    }
}

fn s(v: &Value) -> String {
    to_text(v)
}

fn call(f: &str, args: Vec<Value>) -> Result<Value, TemplateError> {
    let need = |n: usize| -> Result<(), TemplateError> {
        if args.len() != n {
            Err(TemplateError(format!(
                "wrong number of args for {f}: want {n} got {}",
                args.len()
            )))
        } else {
            Ok(())
        }
    };
    Ok(match f {
        "json" => {
            need(1)?;
            Value::String(go_json(&args[0]))
        }
        "upper" => {
            need(1)?;
            Value::String(s(&args[0]).to_uppercase())
        }
        "lower" => {
            need(1)?;
            Value::String(s(&args[0]).to_lowercase())
        }
        "title" => {
            need(1)?;
            let t = s(&args[0]);
            let mut c = t.chars();
            Value::String(match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            })
        }
        "len" => {
            need(1)?;
            Value::from(match &args[0] {
                Value::Array(a) => a.len(),
                Value::Object(o) => o.len(),
                Value::String(x) => x.len(),
                _ => return Err(TemplateError("len of unsupported type".into())),
            })
        }
        "join" => {
            need(2)?;
            let sep = s(&args[1]);
            match &args[0] {
                Value::Array(a) => Value::String(a.iter().map(s).collect::<Vec<_>>().join(&sep)),
                Value::Null => Value::String(String::new()),
                other => Value::String(s(other)),
            }
        }
        "split" => {
            need(2)?;
            Value::Array(
                s(&args[0])
                    .split(&s(&args[1]))
                    .map(|x| Value::String(x.into()))
                    .collect(),
            )
        }
        "index" => {
            if args.is_empty() {
                return Err(TemplateError("wrong number of args for index".into()));
            }
            let mut cur = args[0].clone();
            for k in &args[1..] {
                cur = match (&cur, k) {
                    (Value::Object(o), k) => o.get(&s(k)).cloned().unwrap_or(Value::Null),
                    (Value::Array(a), Value::Number(n)) => {
                        let i = n.as_u64().unwrap_or(u64::MAX) as usize;
                        a.get(i).cloned().ok_or_else(|| {
                            TemplateError(format!("error calling index: index out of range: {i}"))
                        })?
                    }
                    (Value::Null, _) => Value::Null,
                    _ => return Err(TemplateError("error calling index: cannot index".into())),
                };
            }
            cur
        }
        "println" => Value::String(args.iter().map(s).collect::<Vec<_>>().join(" ") + "\n"),
        "print" => Value::String(args.iter().map(s).collect::<String>()),
        "printf" => {
            if args.is_empty() {
                return Err(TemplateError("wrong number of args for printf".into()));
            }
            Value::String(printf(&s(&args[0]), &args[1..]))
        }
        "pad" => {
            need(3)?;
            let n = |v: &Value| v.as_u64().unwrap_or(0) as usize;
            Value::String(format!(
                "{}{}{}",
                " ".repeat(n(&args[1])),
                s(&args[0]),
                " ".repeat(n(&args[2]))
            ))
        }
        "truncate" => {
            need(2)?;
            let n = args[1].as_u64().unwrap_or(0) as usize;
            Value::String(s(&args[0]).chars().take(n).collect())
        }
        "eq" => {
            if args.len() < 2 {
                return Err(TemplateError("missing argument for comparison".into()));
            }
            Value::Bool(args[1..].iter().any(|a| a == &args[0]))
        }
        "ne" => {
            need(2)?;
            Value::Bool(args[0] != args[1])
        }
        "not" => {
            need(1)?;
            Value::Bool(!truthy(&args[0]))
        }
        _ => return Err(TemplateError(format!("function {f:?} not defined"))),
    })
}

/// JSON as Go's encoding/json writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped.
pub fn go_json(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("\\u003c"),
            '>' => o.push_str("\\u003e"),
            '&' => o.push_str("\\u0026"),
            '\u{2028}' => o.push_str("\\u2028"),
            '\u{2029}' => o.push_str("\\u2029"),
            c => o.push(c),
        }
    }
    o
}

fn printf(fmt: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut it = args.iter();
    let mut cs = fmt.chars();
    while let Some(c) = cs.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match cs.next() {
            Some('%') => out.push('%'),
            Some('q') => out.push_str(&format!("{:?}", it.next().map(s).unwrap_or_default())),
            Some(_) => out.push_str(&it.next().map(s).unwrap_or_default()),
            None => out.push('%'),
        }
    }
    out
}

/// How Go prints a value in a template.
pub fn to_text(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(x) => x.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(to_text).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => {
            let mut ks: Vec<_> = o.iter().collect();
            ks.sort_by(|a, b| a.0.cmp(b.0));
            format!(
                "map[{}]",
                ks.iter()
                    .map(|(k, v)| format!("{k}:{}", to_text(v)))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    }
}

/// Go's `text/tabwriter` with Docker's settings (minwidth 10, tabwidth 1, padding 3, spaces).
pub fn tabwrite(text: &str) -> String {
    tabwrite_with(text, 10, 3)
}

/// Go's tabwriter cell layout: a column block is a run of consecutive lines that have a
/// tab-terminated cell at that column; its width is the widest cell plus padding.
pub fn tabwrite_with(text: &str, minwidth: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text
        .strip_suffix('\n')
        .unwrap_or(text)
        .split('\n')
        .map(|l| l.split('\t').collect())
        .collect();
    let mut widths: Vec<Vec<usize>> = vec![Vec::new(); lines.len()];
    fn format(
        lines: &[Vec<&str>],
        widths: &mut [Vec<usize>],
        cur: &mut Vec<usize>,
        line0: usize,
        line1: usize,
        minwidth: usize,
        padding: usize,
    ) {
        let column = cur.len();
        let mut l0 = line0;
        let mut this = line0;
        while this < line1 {
            if column + 1 >= lines[this].len() {
                this += 1;
                continue;
            }
            for w in widths.iter_mut().take(this).skip(l0) {
                w.clone_from(cur);
            }
            l0 = this;
            let mut width = minwidth;
            while this < line1 && column + 1 < lines[this].len() {
                width = width.max(lines[this][column].chars().count() + padding);
                this += 1;
            }
            cur.push(width);
            format(lines, widths, cur, l0, this, minwidth, padding);
            cur.pop();
            l0 = this;
        }
        for w in widths.iter_mut().take(line1).skip(l0) {
            w.clone_from(cur);
        }
    }
    let mut cur = Vec::new();
    let n = lines.len();
    format(&lines, &mut widths, &mut cur, 0, n, minwidth, padding);
    let mut out = String::new();
    for (cells, ws) in lines.iter().zip(&widths) {
        for (j, c) in cells.iter().enumerate() {
            out.push_str(c);
            if j + 1 < cells.len() {
                let w = ws.get(j).copied().unwrap_or(0);
                let len = c.chars().count();
                out.push_str(&" ".repeat(w.saturating_sub(len)));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, v: Value) -> String {
        Template::parse(t).unwrap().render(&v).unwrap()
    }

    #[test]
    fn fields_and_functions() {
        let v = json!({"ID":"abc","Names":"web","Labels":{"a":"1","b":"2"},"L":["x","y"],"N":{"S":"deep"}});
        assert_eq!(r("{{.ID}} {{.Names}}", v.clone()), "abc web");
        assert_eq!(r("{{.N.S}}", v.clone()), "deep");
        assert_eq!(r("{{json .L}}", v.clone()), r#"["x","y"]"#);
        assert_eq!(
            r("{{json .}}", json!({"a": "<none>&"})),
            r#"{"a":"\u003cnone\u003e\u0026"}"#
        );
        assert_eq!(r(r#"{{index .Labels "b"}}"#, v.clone()), "2");
        assert_eq!(r(r#"{{join .L ","}}"#, v.clone()), "x,y");
        assert_eq!(r("{{upper .ID}}|{{.ID | upper}}", v.clone()), "ABC|ABC");
        assert_eq!(r("{{range .L}}<{{.}}>{{end}}", v.clone()), "<x><y>");
        assert_eq!(r("{{range .Nope}}x{{else}}none{{end}}", v.clone()), "none");
        assert_eq!(r("{{if .ID}}yes{{else}}no{{end}}", v.clone()), "yes");
        assert_eq!(r("{{println .ID}}", v.clone()), "abc\n");
        assert_eq!(r("{{.Missing}}", v.clone()), "<no value>");
        assert_eq!(r("a {{- .ID -}} b", v.clone()), "aabcb");
        assert_eq!(r(r#"{{.Label "b"}}"#, v.clone()), "2");
        assert_eq!(r(r#"{{.Label "b"}}"#, json!({"Labels": "a=1,b=x"})), "x");
        assert_eq!(r("{{.Labels}}", v), "map[a:1 b:2]");
    }

    #[test]
    fn errors() {
        assert!(Template::parse("{{.ID").is_err());
        assert!(Template::parse("{{range .X}}").is_err());
        assert!(Template::parse("{{end}}").is_err());
        let t = Template::parse("{{nosuch .X}}").unwrap();
        assert!(t.render(&json!({})).is_err());
    }

    #[test]
    fn tabwriter_like_go() {
        let t = "CONTAINER ID\tIMAGE\tNAMES\nabc\tbusybox:latest\tweb\n";
        assert_eq!(
            tabwrite(t),
            "CONTAINER ID   IMAGE            NAMES\nabc            busybox:latest   web\n"
        );
    }
}
