//! Variable substitution: every form buildkit supports, quoting, escapes, word splitting.

use std::collections::HashMap;

use berth_dockerfile::*;

fn env() -> HashMap<String, String> {
    [
        ("name", "world"),
        ("empty", ""),
        ("path", "/usr/local/bin/app.tar.gz"),
        ("spaced", "a  b c"),
        ("string", "foobarbaz"),
        ("x", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn ex(word: &str) -> String {
    match expand(word, &env(), '\\') {
        Ok(s) => s,
        Err(e) => panic!("{word}: {e}"),
    }
}

fn err(word: &str) -> String {
    expand(word, &env(), '\\').expect_err(word).to_string()
}

#[test]
fn plain_references() {
    let cases = [
        ("$name", "world"),
        ("${name}", "world"),
        ("hello $name!", "hello world!"),
        ("${name}s", "worlds"),
        ("$names", ""),
        ("$unset", ""),
        ("a$", "a$"),
        ("$ a", "$ a"),
        ("$1x", "x"),
        ("$x$x", "11"),
        ("${x}${name}", "1world"),
        ("$$", ""),
        ("cost: 5$", "cost: 5$"),
    ];
    for (word, want) in cases {
        assert_eq!(ex(word), want, "{word}");
    }
}

#[test]
fn modifiers() {
    let cases = [
        ("${name:-default}", "world"),
        ("${unset:-default}", "default"),
        ("${empty:-default}", "default"),
        ("${empty-default}", ""),
        ("${unset-default}", "default"),
        ("${name:+alt}", "alt"),
        ("${empty:+alt}", ""),
        ("${empty+alt}", "alt"),
        ("${unset+alt}", ""),
        ("${unset:-${name}}", "world"),
        ("${unset:-${also:-deep $x}}", "deep 1"),
        ("${unset:-a b}", "a b"),
        ("${unset:-\"q}\"}", "q}"),
        ("${name:?must be set}", "world"),
        ("${empty?ok when empty}", ""),
        // The Dockerfile reference's examples.
        ("${string#*bar}", "baz"),
        ("${string%bar*}", "foo"),
        ("${path#*/}", "usr/local/bin/app.tar.gz"),
        ("${path##*/}", "app.tar.gz"),
        ("${path%.*}", "/usr/local/bin/app.tar"),
        ("${path%%.*}", "/usr/local/bin/app"),
        ("${path#nomatch}", "/usr/local/bin/app.tar.gz"),
        ("${string#foo?ar}", "baz"),
        ("${string%\\*}", "foobarbaz"),
        ("${unset#x}", ""),
        ("${path/local/opt}", "/usr/opt/bin/app.tar.gz"),
        ("${string/a/A}", "foobArbaz"),
        ("${string//a/A}", "foobArbAz"),
        ("${string//o}", "fbarbaz"),
        ("${path/*bin/X}", "X/app.tar.gz"),
    ];
    for (word, want) in cases {
        assert_eq!(ex(word), want, "{word}");
    }
}

#[test]
fn required_variables() {
    assert_eq!(err("${unset:?}"), "unset: is not allowed to be unset");
    assert_eq!(err("${unset?}"), "unset: is not allowed to be unset");
    assert_eq!(err("${empty:?}"), "empty: is not allowed to be empty");
    assert_eq!(err("${unset:?you must set it}"), "unset: you must set it");
}

#[test]
fn syntax_errors() {
    assert_eq!(err("${"), "syntax error: missing '}'");
    assert_eq!(err("${name"), "syntax error: missing '}'");
    assert_eq!(err("${unset:-abc"), "syntax error: missing '}'");
    assert_eq!(err("${}"), "syntax error: bad substitution");
    assert_eq!(err("${:x}"), "syntax error: bad substitution");
    assert_eq!(
        err("${name:#x}"),
        "unsupported modifier (:#) in substitution"
    );
    assert_eq!(err("${name^^}"), "unsupported modifier (^) in substitution");
    assert_eq!(
        err("'abc"),
        "unexpected end of statement while looking for matching single-quote"
    );
    assert_eq!(
        err("\"abc"),
        "unexpected end of statement while looking for matching double-quote"
    );
    let deep = format!("{}x{}", "${u:-".repeat(100), "}".repeat(100));
    assert_eq!(
        expand(&deep, &env(), '\\').unwrap_err(),
        ExpandError::TooDeep
    );
    let ok = format!("{}x{}", "${u:-".repeat(20), "}".repeat(20));
    assert_eq!(ex(&ok), "x");
}

#[test]
fn quotes_and_escapes() {
    let cases = [
        ("'$name'", "$name"),
        ("\"$name\"", "world"),
        ("\"a 'b' $x\"", "a 'b' 1"),
        ("'a \"b\"'", "a \"b\""),
        ("\\$name", "$name"),
        ("\"\\$name\"", "$name"),
        ("\"\\\"\"", "\""),
        ("\"a\\b\"", "a\\b"),
        ("a\\ b", "a b"),
        ("\\\\", "\\"),
        ("abc\\", "abc"),
        ("it''s", "its"),
        ("\"\"", ""),
        ("${unset:-'$x'}", "$x"),
    ];
    for (word, want) in cases {
        assert_eq!(ex(word), want, "{word}");
    }
    // With the backtick escape, backslashes are ordinary.
    assert_eq!(
        expand("c:\\dir\\$name", &env(), '`').unwrap(),
        "c:\\dir\\world"
    );
    assert_eq!(expand("`$name", &env(), '`').unwrap(), "$name");
    assert_eq!(expand("\"`\"\"", &env(), '`').unwrap(), "\"");
}

#[test]
fn word_splitting() {
    let e = env();
    let w = |s: &str| expand_words(s, &e, '\\').unwrap();
    assert_eq!(w("a b  c"), vec!["a", "b", "c"]);
    assert_eq!(w("$spaced"), vec!["a", "b", "c"], "unquoted values split");
    assert_eq!(w("\"$spaced\""), vec!["a  b c"], "quoted values do not");
    assert_eq!(w("'x y' z"), vec!["x y", "z"]);
    assert_eq!(w("x\\ y z"), vec!["x y", "z"]);
    assert_eq!(w("pre$spaced"), vec!["prea", "b", "c"]);
    assert_eq!(w(""), Vec::<String>::new());
    assert_eq!(
        w("\"\" a"),
        vec!["a"],
        "empty quoted strings vanish as buildkit does"
    );
}

#[test]
fn lexer_options() {
    let mut lex = Lexer::new('\\');
    lex.skip_unset = true;
    assert_eq!(
        lex.process_word("$unset ${unset} ${unset:-d} $x", &env())
            .unwrap(),
        "$unset ${unset} ${unset:-d} 1"
    );
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    assert_eq!(lex.process_word("'a' \"$x\"", &env()).unwrap(), "'a' \"1\"");
    let mut lex = Lexer::new('\\');
    lex.raw_escapes = true;
    assert_eq!(lex.process_word("a\\ b", &env()).unwrap(), "a\\ b");
}

#[test]
fn env_sources() {
    let pairs = vec![
        ("A".to_string(), "1".to_string()),
        ("A".to_string(), "2".to_string()),
    ];
    assert_eq!(
        expand("$A", &pairs, '\\').unwrap(),
        "2",
        "the last pair wins"
    );
    let btree: std::collections::BTreeMap<String, String> =
        [("B".to_string(), "b".to_string())].into();
    assert_eq!(expand("$B", &btree, '\\').unwrap(), "b");
    assert_eq!(expand("${B:-none}", &NoEnv, '\\').unwrap(), "none");
}

#[test]
fn unicode_names_and_values() {
    let mut e = env();
    e.insert("café".into(), "crème".into());
    assert_eq!(expand("${café}/$café", &e, '\\').unwrap(), "crème/crème");
    assert_eq!(expand("${café%è*}", &e, '\\').unwrap(), "cr");
}

#[test]
fn hostile_patterns_are_bounded() {
    let mut e = env();
    e.insert("long".into(), "a".repeat(200_000));
    let word = format!("${{long#{}b}}", "*a".repeat(2_000));
    let started = std::time::Instant::now();
    let result = expand(&word, &e, '\\');
    assert!(
        matches!(result, Err(ExpandError::TooComplex)),
        "expected TooComplex, got {:?}",
        result.map(|s| s.len())
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // Ordinary patterns on long values are fine.
    assert_eq!(expand("${long%%a*}", &e, '\\').unwrap(), "");
    assert_eq!(expand("${long#a}", &e, '\\').unwrap().len(), 199_999);
}
