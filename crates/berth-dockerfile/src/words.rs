//! Splitting a logical line into its instruction, flags and arguments, before any expansion.

/// Whitespace as the Dockerfile parser understands it between words (`[\t\v\f\r ]`).
pub(crate) fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

/// Split a logical line into the instruction name, the leading `--flags`, and the rest (trimmed).
pub(crate) fn split_command(line: &str) -> (String, Vec<String>, String) {
    let line = line.trim();
    match line.find(is_blank) {
        None => (line.to_owned(), Vec::new(), String::new()),
        Some(i) => {
            let (rest, flags) = extract_builder_flags(line[i..].trim_start_matches(is_blank));
            (line[..i].to_owned(), flags, rest.trim().to_owned())
        }
    }
}

/// Take the leading `--flag[=value]` words off `line`. Quotes group, `\` escapes (always `\`,
/// whatever the escape directive says, as buildkit does); a bare `--` ends the flags.
pub(crate) fn extract_builder_flags(line: &str) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut i = 0;
    loop {
        let Some(&(offset, c)) = chars.get(i) else {
            if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            return (String::new(), words);
        };
        match phase {
            Phase::Spaces => {
                if c.is_whitespace() {
                    i += 1;
                    continue;
                }
                let next_dash = chars.get(i + 1).map(|&(_, n)| n) == Some('-');
                if c != '-' || !next_dash {
                    return (line[offset..].to_owned(), words);
                }
                phase = Phase::Word;
            }
            Phase::Word => {
                if c.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (line[offset..].to_owned(), words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                    i += 1;
                    continue;
                }
                if c == '\'' || c == '"' {
                    phase = Phase::Quote(c);
                    blank_ok = true;
                    i += 1;
                    continue;
                }
                if c == '\\' {
                    match chars.get(i + 1) {
                        None => {
                            i += 1;
                            continue;
                        }
                        Some(&(_, n)) => {
                            word.push(n);
                            i += 2;
                            continue;
                        }
                    }
                }
                word.push(c);
                i += 1;
            }
            Phase::Quote(q) => {
                if c == q {
                    phase = Phase::Word;
                    i += 1;
                    continue;
                }
                if c == '\\' {
                    match chars.get(i + 1) {
                        None => {
                            phase = Phase::Word;
                            i += 1;
                            continue;
                        }
                        Some(&(_, n)) => {
                            word.push(n);
                            i += 2;
                            continue;
                        }
                    }
                }
                word.push(c);
                i += 1;
            }
        }
    }
}

/// Split on whitespace, keeping quotes and escapes in the words (they are removed later, by the
/// expansion). Used by ARG, ENV and LABEL.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match phase {
            Phase::Spaces => {
                if c.is_whitespace() {
                    i += 1;
                    continue;
                }
                phase = Phase::Word;
            }
            Phase::Word => {
                if c.is_whitespace() {
                    phase = Phase::Spaces;
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    i += 1;
                    continue;
                }
                if c == '\'' || c == '"' {
                    phase = Phase::Quote(c);
                    blank_ok = true;
                }
                if c == escape {
                    if i + 1 == chars.len() {
                        i += 1;
                        continue;
                    }
                    word.push(c);
                    i += 1;
                }
                word.push(chars[i]);
                i += 1;
            }
            Phase::Quote(q) => {
                if c == q {
                    phase = Phase::Word;
                }
                if c == escape && q != '\'' {
                    if i + 1 == chars.len() {
                        phase = Phase::Word;
                        i += 1;
                        continue;
                    }
                    word.push(c);
                    i += 1;
                }
                word.push(chars[i]);
                i += 1;
            }
        }
    }
    if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// Split on `[\t\v\f\r ]+` (FROM, EXPOSE, shell-form COPY/ADD/VOLUME).
pub(crate) fn split_whitespace(rest: &str) -> Vec<String> {
    rest.split(is_blank)
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Why a JSON form was not taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// Not JSON at all: the shell form applies.
    NotJson,
    /// A JSON array with non-string elements: an error, as in Docker.
    NotStrings,
}

/// Parse the JSON (exec) form `["a", "b"]`.
pub(crate) fn parse_json(rest: &str) -> Result<Vec<String>, JsonError> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Err(JsonError::NotJson);
    }
    let values: Vec<serde_json::Value> =
        serde_json::from_str(rest).map_err(|_| JsonError::NotJson)?;
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(JsonError::NotStrings),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_split_off() {
        let (cmd, flags, rest) = split_command("COPY --from=build --chown=\"a b\" src dst");
        assert_eq!(cmd, "COPY");
        assert_eq!(flags, vec!["--from=build", "--chown=a b"]);
        assert_eq!(rest, "src dst");
        let (_, flags, rest) = split_command("RUN -- --not-a-flag");
        assert!(flags.is_empty());
        assert_eq!(rest, "--not-a-flag");
        let (_, flags, rest) = split_command("RUN --network=none");
        assert_eq!(flags, vec!["--network=none"]);
        assert_eq!(rest, "");
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            parse_words(r#"a="b c" d=e\ f"#, '\\'),
            vec![r#"a="b c""#, r"d=e\ f"]
        );
        assert_eq!(parse_words("x='y z'", '`'), vec!["x='y z'"]);
    }

    #[test]
    fn json_forms() {
        assert_eq!(
            parse_json(r#"["a", "b"]"#),
            Ok(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(parse_json("[a, b]"), Err(JsonError::NotJson));
        assert_eq!(parse_json("[1]"), Err(JsonError::NotStrings));
        assert_eq!(parse_json("echo [1]"), Err(JsonError::NotJson));
    }
}
