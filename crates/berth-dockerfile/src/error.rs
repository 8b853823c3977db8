//! Parse errors: every error carries the Dockerfile line it belongs to.

use crate::shell::ExpandError;

/// A Dockerfile error with its location. Displays as `Dockerfile:7: ENV requires at least one
/// argument`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Dockerfile:{line}: {detail}")]
pub struct ParseError {
    /// First line (1-based) of the offending instruction; 0 when the file is empty.
    pub line: usize,
    /// Last line of the offending instruction.
    pub end_line: usize,
    /// What went wrong.
    pub detail: Detail,
}

impl ParseError {
    pub(crate) fn new(line: usize, end_line: usize, detail: Detail) -> ParseError {
        ParseError {
            line,
            end_line: end_line.max(line),
            detail,
        }
    }

    /// Every parse error is the caller's input, except for size limits, which are too.
    pub fn kind(&self) -> berth_core::ErrorKind {
        berth_core::ErrorKind::InvalidInput
    }
}

/// What went wrong, without the location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Detail {
    /// The file has no instruction at all.
    #[error("file with no instructions")]
    Empty,
    /// Only ARG instructions, or none before the end: there is no stage to build.
    #[error("no FROM instruction")]
    NoFrom,
    /// An instruction other than ARG before the first FROM.
    #[error("{0} before the first FROM: expected FROM (only ARG may come before it)")]
    BeforeFrom(String),
    /// An instruction name that is not part of the Dockerfile reference.
    #[error("unknown instruction: {name}{}", did_you_mean(suggestion))]
    UnknownInstruction {
        /// The name as written.
        name: String,
        /// The closest known instruction, if one is close.
        suggestion: Option<String>,
    },
    /// A `--flag` the instruction does not take.
    #[error("unknown flag: --{flag} for {instruction}{}", did_you_mean(suggestion))]
    UnknownFlag {
        /// The instruction, upper case.
        instruction: String,
        /// The flag's name without dashes.
        flag: String,
        /// The closest flag the instruction takes, if one is close.
        suggestion: Option<String>,
    },
    /// Wrong number of arguments: `ENV requires at least one argument`.
    #[error("{instruction} requires {expected}")]
    Arguments {
        /// The instruction, upper case.
        instruction: String,
        /// What was expected, e.g. `at least one argument`.
        expected: String,
    },
    /// A heredoc whose terminator never came.
    #[error("unterminated heredoc: expected a line with {0}")]
    UnterminatedHeredoc(String),
    /// A variable substitution failed.
    #[error("{0}")]
    Expand(#[from] ExpandError),
    /// A size limit was exceeded.
    #[error("{0} exceeds the limit of {1} bytes")]
    TooLarge(&'static str, usize),
    /// Any other malformed input; the message says what was expected.
    #[error("{0}")]
    Invalid(String),
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    }
}

/// The closest candidate to `word` by edit distance (case-insensitive), when it is close enough
/// to be a plausible typo.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    if word.len() >= 3 {
        if let Some(c) = candidates
            .iter()
            .find(|c| c.to_ascii_lowercase().starts_with(&word))
        {
            return Some(c);
        }
    }
    let (best, dist) = candidates
        .iter()
        .map(|c| (*c, levenshtein(&word, &c.to_ascii_lowercase())))
        .min_by_key(|(_, d)| *d)?;
    let len = word.chars().count().max(best.len());
    let limit = if len >= 4 { (len / 3).max(2) } else { 1 };
    (dist <= limit && dist < word.chars().count()).then_some(best)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len() > 256 || b.len() > 256 {
        return usize::MAX;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let names = ["run", "copy", "from", "env"];
        assert_eq!(suggest("RUUN", &names), Some("run"));
        assert_eq!(suggest("COPPY", &names), Some("copy"));
        assert_eq!(suggest("frm", &names), Some("from"));
        assert_eq!(suggest("XYZZY", &names), None);
    }
}
