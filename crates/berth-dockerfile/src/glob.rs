//! A small pattern engine shared by `.dockerignore` patterns and the `${var#pattern}` family.
//!
//! Patterns compile to a Thompson NFA that is simulated in `O(pattern × text)` time, so hostile
//! patterns (`*a*a*a*a*b`) cannot make matching exponential.

/// One element of a pattern, before compilation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// A literal character.
    Lit(char),
    /// `?`: one character (not `/` when `slash` is false).
    One { slash: bool },
    /// `*`: any run of characters (not containing `/` when `slash` is false).
    Star { slash: bool },
    /// `**/` in `.dockerignore`: `(.*/)?`, zero or more whole directories.
    AnyDirs,
    /// `[...]` character class.
    Class(Class),
}

/// A character class: inclusive ranges, possibly negated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Class {
    pub negated: bool,
    pub ranges: Vec<(char, char)>,
}

impl Class {
    fn matches(&self, c: char) -> bool {
        let inside = self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
        inside != self.negated
    }
}

#[derive(Debug, Clone)]
enum Test {
    Lit(char),
    Any { slash: bool },
    Class(Class),
}

impl Test {
    fn matches(&self, c: char) -> bool {
        match self {
            Test::Lit(l) => *l == c,
            Test::Any { slash } => *slash || c != '/',
            Test::Class(class) => class.matches(c),
        }
    }
}

#[derive(Debug, Clone)]
enum Node {
    Char(Test, usize),
    Split(usize, usize),
    Match,
}

/// Scratch state of one simulation.
struct Sim {
    seen: Vec<u32>,
    generation: u32,
    current: Vec<usize>,
    next: Vec<usize>,
    stack: Vec<usize>,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub(crate) struct Nfa {
    nodes: Vec<Node>,
}

impl Nfa {
    /// Compile a token sequence.
    pub(crate) fn compile(tokens: &[Token]) -> Nfa {
        let mut nodes = Vec::with_capacity(tokens.len() * 2 + 1);
        for token in tokens {
            let i = nodes.len();
            match token {
                Token::Lit(c) => nodes.push(Node::Char(Test::Lit(*c), i + 1)),
                Token::One { slash } => nodes.push(Node::Char(Test::Any { slash: *slash }, i + 1)),
                Token::Class(class) => nodes.push(Node::Char(Test::Class(class.clone()), i + 1)),
                Token::Star { slash } => {
                    nodes.push(Node::Split(i + 1, i + 2));
                    nodes.push(Node::Char(Test::Any { slash: *slash }, i));
                }
                Token::AnyDirs => {
                    // i: enter the group or skip it; i+1: loop or close; i+2: any char;
                    // i+3: the closing '/'.
                    nodes.push(Node::Split(i + 1, i + 4));
                    nodes.push(Node::Split(i + 2, i + 3));
                    nodes.push(Node::Char(Test::Any { slash: true }, i + 1));
                    nodes.push(Node::Char(Test::Lit('/'), i + 4));
                }
            }
        }
        nodes.push(Node::Match);
        Nfa { nodes }
    }

    /// Add `state` and its epsilon closure to `set`, once per generation.
    fn add(&self, sim: &mut Sim, next: bool, state: usize) {
        sim.stack.clear();
        sim.stack.push(state);
        while let Some(s) = sim.stack.pop() {
            if s >= self.nodes.len() || sim.seen[s] == sim.generation {
                continue;
            }
            sim.seen[s] = sim.generation;
            match &self.nodes[s] {
                Node::Split(a, b) => {
                    sim.stack.push(*b);
                    sim.stack.push(*a);
                }
                _ if next => sim.next.push(s),
                _ => sim.current.push(s),
            }
        }
    }

    /// For each `end` in `0..=text.len()`, whether the whole pattern matches `text[..end]`.
    /// `budget` bounds the work (one unit per active state per character); `None` when it runs
    /// out, so that hostile pattern/text pairs cannot stall the caller.
    pub(crate) fn match_ends(&self, text: &[char], budget: &mut u64) -> Option<Vec<bool>> {
        let mut ends = vec![false; text.len() + 1];
        let mut sim = Sim {
            seen: vec![0; self.nodes.len()],
            generation: 1,
            current: Vec::new(),
            next: Vec::new(),
            stack: Vec::new(),
        };
        self.add(&mut sim, false, 0);
        for (pos, &c) in text.iter().enumerate() {
            if sim.current.is_empty() {
                return Some(ends);
            }
            *budget = budget.checked_sub(sim.current.len() as u64)?;
            sim.generation += 1;
            sim.next.clear();
            for i in 0..sim.current.len() {
                let s = sim.current[i];
                match &self.nodes[s] {
                    Node::Match => ends[pos] = true,
                    Node::Char(test, to) if test.matches(c) => self.add(&mut sim, true, *to),
                    _ => {}
                }
            }
            std::mem::swap(&mut sim.current, &mut sim.next);
        }
        if sim
            .current
            .iter()
            .any(|&s| matches!(self.nodes[s], Node::Match))
        {
            ends[text.len()] = true;
        }
        Some(ends)
    }

    /// Whether the pattern matches all of `text`.
    #[cfg(test)]
    pub(crate) fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        self.match_ends(&chars, &mut { u64::MAX })
            .is_some_and(|ends| ends[chars.len()])
    }
}

/// Tokenize a shell pattern as used by `${var#pattern}`: `*`, `?`, and `escape` before a
/// character makes it literal. Classes are not supported (buildkit treats `[` literally).
pub(crate) fn shell_pattern(pattern: &str, escape: char) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => out.push(Token::Star { slash: true }),
            '?' => out.push(Token::One { slash: true }),
            c if c == escape => match chars.next() {
                Some(n) => out.push(Token::Lit(n)),
                None => out.push(Token::Lit(c)),
            },
            c => out.push(Token::Lit(c)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_and_classes() {
        let nfa = Nfa::compile(&[
            Token::Lit('a'),
            Token::Star { slash: false },
            Token::Class(Class {
                negated: false,
                ranges: vec![('0', '9')],
            }),
        ]);
        assert!(nfa.is_match("a7"));
        assert!(nfa.is_match("abc7"));
        assert!(!nfa.is_match("a/7"));
        assert!(!nfa.is_match("abc"));
    }

    #[test]
    fn any_dirs() {
        let nfa = Nfa::compile(&[Token::AnyDirs, Token::Lit('x')]);
        assert!(nfa.is_match("x"));
        assert!(nfa.is_match("a/x"));
        assert!(nfa.is_match("a/b/x"));
        assert!(!nfa.is_match("ax"));
    }

    #[test]
    fn hostile_pattern_is_fast() {
        let mut tokens = Vec::new();
        for _ in 0..40 {
            tokens.push(Token::Star { slash: true });
            tokens.push(Token::Lit('a'));
        }
        tokens.push(Token::Lit('b'));
        let nfa = Nfa::compile(&tokens);
        let text = "a".repeat(5000);
        assert!(!nfa.is_match(&text));
    }
}
