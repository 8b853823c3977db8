//! `.dockerignore`: which files of the build context are sent to the builder.
//!
//! Semantics follow Docker's: each non-comment line is a pattern, cleaned like Go's
//! `filepath.Clean` with a leading `/` removed; `*` and `?` do not cross `/`, `**` matches any
//! number of directories, `[...]` classes and `\` escapes work as in `filepath.Match`; a pattern
//! that matches a directory excludes everything below it; `!pattern` re-includes; the last
//! matching pattern wins. `.dockerignore` and the Dockerfile are always sent.

use std::path::{Path, PathBuf};

use crate::glob::{Class, Nfa, Token};

/// A `.dockerignore` failure.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    /// A malformed pattern (unclosed `[`, trailing `\`, lone `!`).
    #[error(".dockerignore:{line}: invalid pattern {pattern:?}: {reason}")]
    BadPattern {
        /// 1-based line.
        line: usize,
        /// The pattern as cleaned.
        pattern: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Reading the context failed.
    #[error("read {path}: {source}")]
    Io {
        /// The path that could not be read.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl IgnoreError {
    /// Classify the error.
    pub fn kind(&self) -> berth_core::ErrorKind {
        match self {
            IgnoreError::BadPattern { .. } => berth_core::ErrorKind::InvalidInput,
            IgnoreError::Io { source, .. } => berth_core::ErrorKind::from_io(source),
        }
    }
}

/// Longest pattern accepted (paths cannot be longer on Linux).
const MAX_PATTERN: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchType {
    Exact,
    Prefix,
    Suffix,
    Pattern,
}

#[derive(Debug, Clone)]
struct Pattern {
    exclusion: bool,
    cleaned: String,
    match_type: MatchType,
    nfa: Nfa,
}

impl Pattern {
    fn new(cleaned: String, exclusion: bool, line: usize) -> Result<Pattern, IgnoreError> {
        let bad = |reason| IgnoreError::BadPattern {
            line,
            pattern: cleaned.clone(),
            reason,
        };
        if cleaned.len() > MAX_PATTERN {
            return Err(bad("longer than 4096 bytes"));
        }
        let chars: Vec<char> = cleaned.chars().collect();
        let mut tokens = Vec::new();
        let mut match_type = MatchType::Exact;
        let mut i = 0;
        let mut iteration = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' if chars.get(i) == Some(&'*') => {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    if i == chars.len() {
                        if match_type == MatchType::Exact {
                            match_type = MatchType::Prefix;
                        } else {
                            tokens.push(Token::Star { slash: true });
                            match_type = MatchType::Pattern;
                        }
                    } else {
                        tokens.push(Token::AnyDirs);
                        match_type = MatchType::Pattern;
                    }
                    if iteration == 0 {
                        match_type = MatchType::Suffix;
                    }
                }
                '*' => {
                    tokens.push(Token::Star { slash: false });
                    match_type = MatchType::Pattern;
                }
                '?' => {
                    tokens.push(Token::One { slash: false });
                    match_type = MatchType::Pattern;
                }
                '\\' => match chars.get(i) {
                    Some(&n) => {
                        i += 1;
                        tokens.push(Token::Lit(n));
                        match_type = MatchType::Pattern;
                    }
                    None => return Err(bad("trailing backslash")),
                },
                '[' => {
                    let (class, used) =
                        parse_class(&chars[i..]).ok_or_else(|| bad("malformed character class"))?;
                    i += used;
                    tokens.push(Token::Class(class));
                    match_type = MatchType::Pattern;
                }
                c => tokens.push(Token::Lit(c)),
            }
            iteration += 1;
        }
        Ok(Pattern {
            exclusion,
            nfa: Nfa::compile(&tokens),
            cleaned,
            match_type,
        })
    }

    /// Whether the pattern matches `file` itself or one of its parent directories (the prefixes
    /// of `file` ending just before a `/`).
    fn matches_file_or_parent(&self, file: &str) -> bool {
        if self.match_type == MatchType::Pattern {
            // One pass gives the answer for every prefix.
            let chars: Vec<char> = file.chars().collect();
            let Some(ends) = self.nfa.match_ends(&chars, &mut { u64::MAX }) else {
                return false;
            };
            return ends[chars.len()]
                || chars.iter().enumerate().any(|(i, &c)| c == '/' && ends[i]);
        }
        self.matches(file)
            || file
                .char_indices()
                .any(|(i, c)| c == '/' && self.matches(&file[..i]))
    }

    fn matches(&self, path: &str) -> bool {
        match self.match_type {
            MatchType::Exact => path == self.cleaned,
            MatchType::Prefix => path.starts_with(&self.cleaned[..self.cleaned.len() - 2]),
            MatchType::Suffix => {
                let suffix = &self.cleaned[2..];
                path.ends_with(suffix) || suffix.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            MatchType::Pattern => {
                let chars: Vec<char> = path.chars().collect();
                self.nfa
                    .match_ends(&chars, &mut { u64::MAX })
                    .is_some_and(|e| e[chars.len()])
            }
        }
    }
}

/// Parse a class body after `[` as `filepath.Match` does. Returns the class and the number of
/// characters used, including the closing `]`.
fn parse_class(chars: &[char]) -> Option<(Class, usize)> {
    let mut i = 0;
    let negated = chars.first() == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let get_esc = |i: &mut usize| -> Option<char> {
        let c = *chars.get(*i)?;
        if c == '-' || c == ']' {
            return None;
        }
        *i += 1;
        let c = if c == '\\' {
            let n = *chars.get(*i)?;
            *i += 1;
            n
        } else {
            c
        };
        chars.get(*i)?; // the class must continue
        Some(c)
    };
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Some((Class { negated, ranges }, i + 1));
        }
        let lo = get_esc(&mut i)?;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            i += 1;
            hi = get_esc(&mut i)?;
        }
        ranges.push((lo, hi));
    }
}

/// Go's `filepath.Clean` for slash-separated paths.
pub fn clean_path(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|p| *p != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            p => out.push(p),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn escape_literal(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Clean and compile pattern lines (`(index, text)`; the line number is `index + 1`).
fn compile<'a>(lines: impl Iterator<Item = (usize, &'a str)>) -> Result<Vec<Pattern>, IgnoreError> {
    let mut patterns = Vec::new();
    for (n, line) in lines {
        let mut pattern = line.trim();
        if pattern.is_empty() {
            continue;
        }
        let exclusion = pattern.starts_with('!');
        if exclusion {
            pattern = pattern[1..].trim();
            if pattern.is_empty() {
                return Err(IgnoreError::BadPattern {
                    line: n + 1,
                    pattern: "!".into(),
                    reason: "an exception needs a pattern after !",
                });
            }
        }
        let mut cleaned = clean_path(pattern);
        if cleaned.len() > 1 && cleaned.starts_with('/') {
            cleaned.remove(0);
        }
        patterns.push(Pattern::new(cleaned, exclusion, n + 1)?);
    }
    Ok(patterns)
}

/// Parsed `.dockerignore` patterns.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    /// Parse the text of a `.dockerignore` file. `.dockerignore` and `Dockerfile` are kept
    /// (never excluded); add other always-sent paths with [`DockerIgnore::keep`].
    pub fn parse(text: &str) -> Result<DockerIgnore, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.starts_with('#'));
        let mut ignore = DockerIgnore {
            patterns: compile(lines)?,
        };
        ignore.keep(".dockerignore");
        ignore.keep("Dockerfile");
        Ok(ignore)
    }

    /// A matcher over bare patterns with the same semantics, and nothing kept: for
    /// `COPY --exclude` / `ADD --exclude`. `#` is an ordinary character here.
    pub fn from_patterns<'a>(
        patterns: impl IntoIterator<Item = &'a str>,
    ) -> Result<DockerIgnore, IgnoreError> {
        Ok(DockerIgnore {
            patterns: compile(patterns.into_iter().enumerate())?,
        })
    }

    /// Read `<context>/<dockerfile>.dockerignore` when it exists (buildkit's per-Dockerfile
    /// ignore file), else `<context>/.dockerignore`, else nothing is ignored. The Dockerfile at
    /// `dockerfile` (relative to the context) is kept.
    pub fn load(context: &Path, dockerfile: &str) -> Result<DockerIgnore, IgnoreError> {
        let specific = context.join(format!("{}.dockerignore", clean_path(dockerfile)));
        let general = context.join(".dockerignore");
        let mut ignore = DockerIgnore::default();
        for candidate in [specific, general] {
            match std::fs::read_to_string(&candidate) {
                Ok(text) => {
                    ignore = DockerIgnore::parse(&text)?;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(IgnoreError::Io {
                        path: candidate,
                        source,
                    })
                }
            }
        }
        ignore.keep(".dockerignore");
        ignore.keep("Dockerfile");
        ignore.keep(dockerfile);
        Ok(ignore)
    }

    /// Never exclude `path` (relative to the context), e.g. a Dockerfile given with `-f`.
    pub fn keep(&mut self, path: &str) {
        let cleaned = clean_path(path.trim_start_matches('/'));
        if cleaned == "." || cleaned.starts_with("..") {
            return;
        }
        if let Ok(p) = Pattern::new(escape_literal(&cleaned), true, 0) {
            self.patterns.push(p);
        }
    }

    /// Whether `rel_path` (relative to the context, `/`-separated) is excluded from the
    /// context, directly or because a parent directory is.
    pub fn is_excluded(&self, rel_path: &str) -> bool {
        let file = clean_path(rel_path.trim_start_matches('/'));
        let mut matched = false;
        for p in &self.patterns {
            // Only a pattern that could change the answer needs to be evaluated.
            if p.exclusion == matched && p.matches_file_or_parent(&file) {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether an exception pattern might re-include something below the excluded directory
    /// `dir`, so that the walk must still descend into it.
    fn may_include_below(&self, dir: &str) -> bool {
        let dir_slash = format!("{dir}/");
        self.patterns.iter().filter(|p| p.exclusion).any(|p| {
            let literal_end = p
                .cleaned
                .find(['*', '?', '[', '\\'])
                .unwrap_or(p.cleaned.len());
            let literal = &p.cleaned[..literal_end];
            format!("{}/", p.cleaned).starts_with(&dir_slash)
                || (literal_end < p.cleaned.len() && dir_slash.starts_with(literal))
                || (literal_end < p.cleaned.len() && literal.starts_with(&dir_slash))
        })
    }

    /// The paths of the context to send, relative to `context`, parents before children and
    /// sorted by name within a directory. Directories, regular files and symlinks are listed
    /// (symlinks as themselves: they are never followed). An excluded directory is still walked
    /// when an exception may re-include something below it; it is then not listed itself.
    pub fn walk(&self, context: &Path) -> Result<Vec<PathBuf>, IgnoreError> {
        let mut out = Vec::new();
        // (relative path, its `/`-separated text for matching)
        let mut stack = vec![(PathBuf::new(), String::new())];
        while let Some((dir, dir_text)) = stack.pop() {
            let abs = context.join(&dir);
            let io = |source| IgnoreError::Io {
                path: abs.clone(),
                source,
            };
            let mut entries = Vec::new();
            for entry in std::fs::read_dir(&abs).map_err(io)? {
                let entry = entry.map_err(io)?;
                // DirEntry::file_type does not follow symlinks.
                let is_dir = entry.file_type().map_err(io)?.is_dir();
                let name = entry.file_name();
                let text = match dir_text.as_str() {
                    "" => name.to_string_lossy().into_owned(),
                    d => format!("{d}/{}", name.to_string_lossy()),
                };
                entries.push((dir.join(&name), text, is_dir));
            }
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut subdirs = Vec::new();
            for (path, text, is_dir) in entries {
                if self.is_excluded(&text) {
                    if is_dir && self.may_include_below(&text) {
                        subdirs.push((path, text));
                    }
                    continue;
                }
                if is_dir {
                    subdirs.push((path.clone(), text));
                }
                out.push(path);
            }
            // Depth-first, in name order.
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(out)
    }
}
