//! From text to logical lines: parser directives, comments, line continuations and heredocs.
//!
//! The rules follow buildkit's parser: directives are only recognised on the first lines, until
//! the first line that is not a directive (a blank line or an ordinary comment ends them too);
//! a line ending in the escape character (optionally followed by blanks) continues on the next
//! line; comment lines and empty lines inside a continuation are skipped; heredoc bodies follow
//! the logical line that opens them.

use crate::error::{Detail, ParseError};
use crate::shell::{Lexer, NoEnv};
use crate::words;

/// Longest logical line accepted (after joining continuations).
pub const MAX_LINE: usize = 1 << 20;
/// Largest heredoc body accepted.
pub const MAX_HEREDOC: usize = 16 << 20;
/// Largest Dockerfile accepted.
pub const MAX_FILE: usize = 64 << 20;

/// A parser directive (`# syntax=`, `# escape=`, `# check=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Lower-case name.
    pub name: String,
    /// The value, trimmed.
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

/// A heredoc attached to an instruction (`RUN <<EOF`, `COPY <<EOF /dst`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word without quotes (`EOF`); for COPY/ADD also the file's name.
    pub name: String,
    /// The body, each line ending in `\n`; leading tabs already removed for `<<-`.
    pub content: String,
    /// False when the delimiter was quoted (`<<"EOF"`, `<<'EOF'`): no expansion of the body.
    pub expand: bool,
    /// `<<-`: leading tabs were stripped from the body and the terminator.
    pub chomp: bool,
    /// The file descriptor written before `<<` (`3<<EOF`), 0 when absent.
    pub fd: u32,
}

/// A warning the parser gives without failing, named after buildkit's check rules so that
/// `# check=skip=<rule>` silences it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The rule, e.g. `LegacyKeyValueFormat`.
    pub rule: &'static str,
    /// 1-based line.
    pub line: usize,
    /// What is suspicious.
    pub message: String,
}

#[derive(Debug, Clone)]
pub(crate) struct LogicalLine {
    pub start: usize,
    pub end: usize,
    pub text: String,
    pub heredocs: Vec<Heredoc>,
}

#[derive(Debug, Clone)]
pub(crate) struct Lexed {
    pub directives: Vec<Directive>,
    pub escape: char,
    pub lines: Vec<LogicalLine>,
    pub warnings: Vec<Warning>,
}

struct Directives {
    done: bool,
    parsed: Vec<Directive>,
    escape: char,
}

impl Directives {
    /// Look at one physical line (newline already removed) while directives may still appear.
    fn feed(&mut self, line: &str, lineno: usize) -> Result<(), ParseError> {
        if self.done {
            return Ok(());
        }
        let Some((name, value)) = parse_directive(line) else {
            self.done = true;
            return Ok(());
        };
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(());
        }
        if self.parsed.iter().any(|d| d.name == name) {
            return Err(ParseError::new(
                lineno,
                lineno,
                Detail::Invalid(format!("only one {name} parser directive can be used")),
            ));
        }
        if name == "escape" {
            self.escape = match value.as_str() {
                "\\" => '\\',
                "`" => '`',
                other => {
                    return Err(ParseError::new(
                        lineno,
                        lineno,
                        Detail::Invalid(format!(
                            "invalid escape token '{other}': expected ` or \\"
                        )),
                    ))
                }
            };
        }
        self.parsed.push(Directive {
            name,
            value,
            line: lineno,
        });
        Ok(())
    }
}

/// `#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`
fn parse_directive(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let name_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let name = &rest[..name_len];
    if !name.chars().next()?.is_ascii_alphabetic() {
        return None;
    }
    let value = rest[name_len..].trim_start().strip_prefix('=')?.trim();
    if value.is_empty() {
        return None;
    }
    Some((name.to_ascii_lowercase(), value.to_owned()))
}

fn trim_newline(line: &str) -> &str {
    line.strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(line)
}

fn is_comment(line: &str) -> bool {
    trim_newline(line).trim_start().starts_with('#')
}

/// Strip a trailing escape character (followed only by blanks): returns the line and whether the
/// logical line ends here.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    match trimmed.strip_suffix(escape) {
        Some(rest) => (rest, false),
        None => (line, true),
    }
}

/// Split `input` into logical lines.
pub(crate) fn lex(input: &str) -> Result<Lexed, ParseError> {
    if input.len() > MAX_FILE {
        return Err(ParseError::new(
            0,
            0,
            Detail::TooLarge("Dockerfile", MAX_FILE),
        ));
    }
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    let mut physical = input.split_inclusive('\n');
    let mut d = Directives {
        done: false,
        parsed: Vec::new(),
        escape: '\\',
    };
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    let mut current = 0usize;

    while let Some(raw) = physical.next() {
        current += 1;
        let line = trim_newline(raw).trim_start();
        d.feed(line, current)?;
        if is_comment(line) {
            continue;
        }
        let start = current;
        let (first, mut end_of_line) = trim_continuation(line, d.escape);
        if end_of_line && first.trim().is_empty() {
            continue;
        }
        let mut text = first.to_owned();
        let mut empty_continuation = false;
        while !end_of_line {
            let Some(raw) = physical.next() else { break };
            current += 1;
            let line = trim_newline(raw);
            d.feed(line, current)?;
            if is_comment(line) {
                continue;
            }
            if line.trim().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (part, eol) = trim_continuation(line, d.escape);
            end_of_line = eol;
            text.push_str(part);
            if text.len() > MAX_LINE {
                return Err(ParseError::new(
                    start,
                    current,
                    Detail::TooLarge("line", MAX_LINE),
                ));
            }
        }
        if text.len() > MAX_LINE {
            return Err(ParseError::new(
                start,
                current,
                Detail::TooLarge("line", MAX_LINE),
            ));
        }
        if empty_continuation {
            warnings.push(Warning {
                rule: "NoEmptyContinuation",
                line: start,
                message: "empty continuation line (deprecated)".into(),
            });
        }

        let mut heredocs = Vec::new();
        if text.contains("<<") && can_contain_heredoc(&text) {
            for mut doc in
                heredocs_from_line(&text).map_err(|e| ParseError::new(start, current, e))?
            {
                let mut terminated = false;
                for raw in physical.by_ref() {
                    current += 1;
                    let mut candidate = trim_newline(raw);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    if doc.chomp {
                        doc.content.push_str(raw.trim_start_matches('\t'));
                    } else {
                        doc.content.push_str(raw);
                    }
                    if doc.content.len() > MAX_HEREDOC {
                        return Err(ParseError::new(
                            start,
                            current,
                            Detail::TooLarge("heredoc", MAX_HEREDOC),
                        ));
                    }
                }
                if !terminated {
                    return Err(ParseError::new(
                        start,
                        current,
                        Detail::UnterminatedHeredoc(doc.name),
                    ));
                }
                heredocs.push(doc);
            }
        }
        lines.push(LogicalLine {
            start,
            end: current,
            text,
            heredocs,
        });
    }
    Ok(Lexed {
        directives: d.parsed,
        escape: d.escape,
        lines,
        warnings,
    })
}

/// RUN, COPY and ADD (also behind ONBUILD) in shell form may open heredocs.
fn can_contain_heredoc(line: &str) -> bool {
    let (cmd, _, rest) = words::split_command(line);
    let (cmd, rest) = if cmd.eq_ignore_ascii_case("onbuild") {
        let (sub, _, sub_rest) = words::split_command(&rest);
        (sub, sub_rest)
    } else {
        (cmd, rest)
    };
    let cmd = cmd.to_ascii_lowercase();
    matches!(cmd.as_str(), "run" | "copy" | "add") && words::parse_json(&rest).is_err()
}

/// Find the heredoc openers (`<<EOF`, `<<-EOF`, `3<<"EOF"`) among the words of a logical line.
pub(crate) fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, Detail> {
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    let words = lex.process_words(line, &NoEnv).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Parse one word as a heredoc opener: `^(\d*)<<(-?)([^<]*)$`.
pub(crate) fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, Detail> {
    let digits = word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(word.len());
    let Some(rest) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let fd = if digits == 0 {
        0
    } else {
        word[..digits]
            .parse::<u32>()
            .map_err(|_| Detail::Invalid(format!("invalid heredoc file descriptor in {word}")))?
    };
    let mut lex = Lexer::new('\\');
    lex.skip_unset = true;
    let cooked = lex.process_words(rest, &NoEnv)?;
    if cooked.len() != 1 {
        return Ok(None);
    }
    lex.raw_quotes = true;
    let raw = lex.process_words(rest, &NoEnv)?;
    if raw.len() != 1 {
        return Err(Detail::Invalid(format!(
            "inconsistent lexing of heredoc word {rest}"
        )));
    }
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    let expand = quotes(&cooked[0]) == quotes(&raw[0]);
    Ok(Some(Heredoc {
        name: cooked[0].clone(),
        content: String::new(),
        expand,
        chomp,
        fd,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_syntax() {
        assert_eq!(
            parse_directive("# escape=`"),
            Some(("escape".into(), "`".into()))
        );
        assert_eq!(
            parse_directive("#Syntax = docker/dockerfile:1 "),
            Some(("syntax".into(), "docker/dockerfile:1".into()))
        );
        assert_eq!(parse_directive("# just a comment"), None);
        assert_eq!(parse_directive("# 1x=y"), None);
    }

    #[test]
    fn heredoc_words() {
        let h = parse_heredoc("<<EOF").unwrap().unwrap();
        assert_eq!(
            (h.name.as_str(), h.expand, h.chomp, h.fd),
            ("EOF", true, false, 0)
        );
        let h = parse_heredoc("<<-'END'").unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.expand, h.chomp), ("END", false, true));
        let h = parse_heredoc("3<<\"X\"").unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.expand, h.fd), ("X", false, 3));
        assert!(parse_heredoc("<<").unwrap().is_none());
        assert!(parse_heredoc("a<<b").unwrap().is_none());
    }
}
