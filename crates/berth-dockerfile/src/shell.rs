//! Variable substitution and shell-style word processing, as the Dockerfile builder applies it to
//! the arguments of ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR and ARG.
//!
//! Supported: `$var`, `${var}`, `${var:-word}`, `${var-word}`, `${var:+word}`, `${var+word}`,
//! `${var:?msg}`, `${var?msg}`, `${var#pat}`, `${var##pat}`, `${var%pat}`, `${var%%pat}`,
//! `${var/pat/repl}`, `${var//pat/repl}`; single quotes (literal), double quotes (expansion, with
//! the escape character escaping `"`, `$` and itself), and the escape character outside quotes.

use std::collections::{BTreeMap, HashMap};

use crate::glob::{shell_pattern, Nfa};

/// Deepest nesting of `${...}` accepted (`${a:-${b:-${c}}}` is depth 3).
pub const MAX_NESTING: usize = 64;

/// Work allowed for pattern matching in one expansion (active pattern states × characters).
const PATTERN_BUDGET: u64 = 1 << 24;

/// Variables visible to an expansion.
pub trait Env {
    /// The value of `name`, or `None` when it is unset.
    fn get_var(&self, name: &str) -> Option<&str>;
}

impl Env for HashMap<String, String> {
    fn get_var(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Env for BTreeMap<String, String> {
    fn get_var(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// An ordered list of pairs; the last pair with a name wins (like an image's `Env`).
impl Env for [(String, String)] {
    fn get_var(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Env for Vec<(String, String)> {
    fn get_var(&self, name: &str) -> Option<&str> {
        self.as_slice().get_var(name)
    }
}

/// No variables at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnv;

impl Env for NoEnv {
    fn get_var(&self, _: &str) -> Option<&str> {
        None
    }
}

impl<T: Env + ?Sized> Env for &T {
    fn get_var(&self, name: &str) -> Option<&str> {
        (**self).get_var(name)
    }
}

/// Why a substitution failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// `${` without its closing brace.
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    /// `${}`, `${:x}`, `${{x}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// A modifier buildkit does not support, such as `${a:#x}` or `${a x}`.
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${var?msg}` / `${var:?msg}` with the variable unset (or empty).
    #[error("{name}: {message}")]
    Required {
        /// The variable's name.
        name: String,
        /// The message given in the word, or the default one.
        message: String,
    },
    /// An opening quote without its closing one.
    #[error("unexpected end of statement while looking for matching {}", quote_name(*.0))]
    Unterminated(char),
    /// Nesting deeper than [`MAX_NESTING`].
    #[error("substitution nested deeper than {MAX_NESTING} levels")]
    TooDeep,
    /// A `#`, `%` or `/` pattern that would take too long to match against the value.
    #[error("pattern in substitution too complex for a value of this length")]
    TooComplex,
}

fn quote_name(c: char) -> String {
    match c {
        '\'' => "single-quote".into(),
        '"' => "double-quote".into(),
        c => c.to_string(),
    }
}

impl ExpandError {
    /// Every expansion error is the caller's input.
    pub fn kind(&self) -> berth_core::ErrorKind {
        berth_core::ErrorKind::InvalidInput
    }
}

/// Options of the word processor. [`expand`] and [`expand_words`] use the defaults.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    /// The escape character (`\` or `` ` ``).
    pub escape: char,
    /// Keep quote characters in the output (used to detect heredoc words).
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written (`$x` stays `$x`).
    pub skip_unset: bool,
    /// Treat quotes as ordinary characters (used for heredoc bodies).
    pub skip_quotes: bool,
}

impl Lexer {
    /// A lexer with the given escape character and default options.
    pub fn new(escape: char) -> Lexer {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset: false,
            skip_quotes: false,
        }
    }

    /// Expand `word` into one string: quotes and escapes removed, variables substituted, no
    /// word splitting.
    pub fn process_word(&self, word: &str, env: &dyn Env) -> Result<String, ExpandError> {
        Ok(self.run(word, env)?.0)
    }

    /// Expand `word` and split the result into words on unquoted whitespace (quotes and escapes
    /// keep whitespace inside a word; whitespace coming from a variable's value splits).
    pub fn process_words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ExpandError> {
        Ok(self.run(word, env)?.1)
    }

    fn run(&self, word: &str, env: &dyn Env) -> Result<(String, Vec<String>), ExpandError> {
        let mut p = Proc {
            s: word.chars().collect(),
            pos: 0,
            env,
            lex: self,
            depth: 0,
            budget: PATTERN_BUDGET,
        };
        let (result, words, _) = p.stop_on(&[], self.raw_escapes)?;
        Ok((result, words))
    }
}

/// Expand one word as the builder does for ENV/LABEL values, paths, USER, WORKDIR and so on.
pub fn expand(word: &str, env: &dyn Env, escape: char) -> Result<String, ExpandError> {
    Lexer::new(escape).process_word(word, env)
}

/// Expand the body of a heredoc whose delimiter was not quoted (`COPY <<EOF`), as buildkit
/// does: variables are substituted, quotes are ordinary characters and escapes are kept.
pub fn expand_heredoc(body: &str, env: &dyn Env, escape: char) -> Result<String, ExpandError> {
    let mut lex = Lexer::new(escape);
    lex.skip_quotes = true;
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.process_word(body, env)
}

/// Expand and split into words (EXPOSE, and anything that takes several words after expansion).
pub fn expand_words(word: &str, env: &dyn Env, escape: char) -> Result<Vec<String>, ExpandError> {
    Lexer::new(escape).process_words(word, env)
}

#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }
    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }
    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct Proc<'a> {
    s: Vec<char>,
    pos: usize,
    env: &'a dyn Env,
    lex: &'a Lexer,
    depth: usize,
    budget: u64,
}

impl Proc<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Process up to (and consuming) one of `stops`, or to the end when `stops` is empty.
    /// Returns the text, its words, and the stop character met.
    fn stop_on(
        &mut self,
        stops: &[char],
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>, Option<char>), ExpandError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(ExpandError::TooDeep);
        }
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(c) = self.peek() {
            if stops.contains(&c) {
                self.next();
                self.depth -= 1;
                return Ok((result, words.finish(), Some(c)));
            }
            match c {
                '$' => {
                    let t = self.dollar()?;
                    result.push_str(&t);
                    words.add_string(&t);
                }
                '\'' if !self.lex.skip_quotes => {
                    let t = self.single_quote()?;
                    result.push_str(&t);
                    words.add_raw_string(&t);
                }
                '"' if !self.lex.skip_quotes => {
                    let t = self.double_quote()?;
                    result.push_str(&t);
                    words.add_raw_string(&t);
                }
                _ => {
                    self.next();
                    if c == self.lex.escape {
                        if raw_escapes {
                            words.add_raw_char(c);
                            result.push(c);
                        }
                        match self.next() {
                            None => break,
                            Some(n) => {
                                words.add_raw_char(n);
                                result.push(n);
                            }
                        }
                    } else {
                        words.add_char(c);
                        result.push(c);
                    }
                }
            }
        }
        if let Some(&s) = stops.first() {
            return Err(ExpandError::Unterminated(s));
        }
        self.depth -= 1;
        Ok((result, words.finish(), None))
    }

    fn single_quote(&mut self) -> Result<String, ExpandError> {
        let mut out = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(ExpandError::Unterminated('\'')),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, ExpandError> {
        let mut out = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(ExpandError::Unterminated('"')),
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(_) => {
                    let mut c = self.next().unwrap_or_default();
                    if c == self.lex.escape {
                        if self.lex.raw_escapes {
                            out.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.lex.escape => {
                                c = n;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return c.to_string();
            }
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            name.push(c);
            self.next();
        }
        name
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.env.get_var(name).map(str::to_owned)
    }

    fn dollar(&mut self) -> Result<String, ExpandError> {
        self.next(); // '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // '{'
        match self.peek() {
            None => return Err(ExpandError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.name();
        let Some(mut c) = self.next() else {
            return Err(ExpandError::MissingBrace);
        };
        let mut modifier = c.to_string();
        let mut null_is_unset = false;
        match c {
            '}' => {
                return Ok(match self.lookup(&name) {
                    Some(v) => v,
                    None if self.lex.skip_unset => format!("${{{name}}}"),
                    None => String::new(),
                });
            }
            '/' => return self.replace(&name),
            ':' => {
                null_is_unset = true;
                c = self.next().ok_or(ExpandError::MissingBrace)?;
                modifier.push(c);
                if !matches!(c, '+' | '-' | '?') {
                    return Err(ExpandError::UnsupportedModifier(modifier));
                }
            }
            '+' | '-' | '?' | '#' | '%' => {}
            _ => return Err(ExpandError::UnsupportedModifier(modifier)),
        }
        let trims = c == '#' || c == '%';
        let word = match self.stop_on(&['}'], trims) {
            Ok((w, _, _)) => w,
            Err(ExpandError::Unterminated('}')) => return Err(ExpandError::MissingBrace),
            Err(e) => return Err(e),
        };
        let value = self.lookup(&name);
        if value.is_none() && self.lex.skip_unset {
            return Ok(format!("${{{name}{modifier}{word}}}"));
        }
        let unset = value.is_none() || (null_is_unset && value.as_deref() == Some(""));
        match c {
            '-' => Ok(if unset {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if unset { String::new() } else { word }),
            '?' => {
                if value.is_none() {
                    let message = if word.is_empty() {
                        "is not allowed to be unset".into()
                    } else {
                        word
                    };
                    return Err(ExpandError::Required { name, message });
                }
                if unset {
                    let message = if word.is_empty() {
                        "is not allowed to be empty".into()
                    } else {
                        word
                    };
                    return Err(ExpandError::Required { name, message });
                }
                Ok(value.unwrap_or_default())
            }
            _ => {
                let value = value.unwrap_or_default();
                let (greedy, pattern) = match word.strip_prefix(c) {
                    Some(rest) => (true, rest.to_owned()),
                    None => (false, word),
                };
                let escape = self.lex.escape;
                if c == '#' {
                    trim_prefix(&pattern, &value, greedy, escape, &mut self.budget)
                } else {
                    trim_suffix(&pattern, &value, greedy, escape, &mut self.budget)
                }
            }
        }
    }

    fn replace(&mut self, name: &str) -> Result<String, ExpandError> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let (pattern, _, stop) = match self.stop_on(&['}', '/'], true) {
            Err(ExpandError::Unterminated(_)) => return Err(ExpandError::MissingBrace),
            other => other?,
        };
        // `${var/pattern}` deletes the match, like bash.
        let replacement = if stop == Some('/') {
            match self.stop_on(&['}'], true) {
                Err(ExpandError::Unterminated('}')) => return Err(ExpandError::MissingBrace),
                other => other?.0,
            }
        } else {
            String::new()
        };
        let Some(value) = self.lookup(name) else {
            if self.lex.skip_unset {
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            return Ok(String::new());
        };
        let nfa = Nfa::compile(&shell_pattern(&pattern, self.lex.escape));
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut start = 0;
        let mut replaced = false;
        while start <= chars.len() {
            if replaced && !all {
                break;
            }
            let ends = nfa
                .match_ends(&chars[start..], &mut self.budget)
                .ok_or(ExpandError::TooComplex)?;
            match ends.iter().rposition(|&m| m) {
                Some(len) if len > 0 || !pattern.is_empty() => {
                    out.push_str(&replacement);
                    replaced = true;
                    if len == 0 {
                        if let Some(&c) = chars.get(start) {
                            out.push(c);
                        }
                        start += 1;
                    } else {
                        start += len;
                    }
                }
                _ => {
                    if let Some(&c) = chars.get(start) {
                        out.push(c);
                    }
                    start += 1;
                }
            }
        }
        if start < chars.len() {
            out.extend(&chars[start..]);
        }
        Ok(out)
    }
}

/// `${value#pattern}` (`greedy`: `##`): remove the shortest (longest) matching prefix.
fn trim_prefix(
    pattern: &str,
    value: &str,
    greedy: bool,
    escape: char,
    budget: &mut u64,
) -> Result<String, ExpandError> {
    let nfa = Nfa::compile(&shell_pattern(pattern, escape));
    let chars: Vec<char> = value.chars().collect();
    let ends = nfa
        .match_ends(&chars, budget)
        .ok_or(ExpandError::TooComplex)?;
    let cut = if greedy {
        ends.iter().rposition(|&m| m)
    } else {
        ends.iter().position(|&m| m)
    };
    Ok(match cut {
        Some(n) => chars[n..].iter().collect(),
        None => value.to_owned(),
    })
}

/// `${value%pattern}` (`greedy`: `%%`): remove the shortest (longest) matching suffix.
fn trim_suffix(
    pattern: &str,
    value: &str,
    greedy: bool,
    escape: char,
    budget: &mut u64,
) -> Result<String, ExpandError> {
    let mut tokens = shell_pattern(pattern, escape);
    tokens.reverse();
    let nfa = Nfa::compile(&tokens);
    let rev: Vec<char> = value.chars().rev().collect();
    let ends = nfa
        .match_ends(&rev, budget)
        .ok_or(ExpandError::TooComplex)?;
    let cut = if greedy {
        ends.iter().rposition(|&m| m)
    } else {
        ends.iter().position(|&m| m)
    };
    Ok(match cut {
        Some(n) => rev[n..].iter().rev().collect(),
        None => value.to_owned(),
    })
}
