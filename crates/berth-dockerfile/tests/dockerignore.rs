//! `.dockerignore` semantics: Docker's documentation examples, the pattern table of Docker's
//! matcher, and a walk over a real context directory.

use std::path::PathBuf;

use berth_dockerfile::{clean_path, DockerIgnore};

fn excluded(patterns: &str, path: &str) -> bool {
    DockerIgnore::parse(patterns)
        .unwrap_or_else(|e| panic!("{patterns:?}: {e}"))
        .is_excluded(path)
}

#[test]
fn documentation_examples() {
    let di = "# comment\n*/temp*\n*/*/temp*\ntemp?\n";
    assert!(excluded(di, "somedir/temporary.txt"));
    assert!(excluded(di, "somedir/temp"));
    assert!(
        excluded(di, "somedir/temp/inside"),
        "a matched directory excludes its content"
    );
    assert!(excluded(di, "somedir/subdir/temporary.txt"));
    assert!(excluded(di, "tempa"));
    assert!(excluded(di, "tempb"));
    assert!(!excluded(di, "temp"));
    assert!(!excluded(di, "tempab"));
    assert!(
        !excluded(di, "temporary.txt"),
        "*/temp* only looks one level down"
    );
    assert!(!excluded(di, "# comment"));

    assert!(excluded("/foo/bar", "foo/bar"));
    assert!(excluded("foo/bar", "foo/bar"));
    assert!(!excluded("foo/bar", "bar"));
    assert!(!excluded("foo/bar", "foo"));

    assert!(excluded("**/*.go", "main.go"));
    assert!(excluded("**/*.go", "cmd/app/main.go"));
    assert!(!excluded("**/*.go", "main.go.txt"));

    let md = "*.md\n!README.md\n";
    assert!(excluded(md, "CHANGELOG.md"));
    assert!(!excluded(md, "README.md"));
    assert!(
        !excluded(md, "docs/guide.md"),
        "*.md is anchored at the root"
    );

    let secret_last = "*.md\n!README*.md\nREADME-secret.md\n";
    assert!(excluded(secret_last, "README-secret.md"));
    assert!(!excluded(secret_last, "README-public.md"));
    assert!(excluded(secret_last, "notes.md"));

    let exception_last = "*.md\nREADME-secret.md\n!README*.md\n";
    assert!(
        !excluded(exception_last, "README-secret.md"),
        "the last matching line wins"
    );
    assert!(excluded(exception_last, "notes.md"));

    let only = "*\n!src\n!Makefile\n";
    assert!(excluded(only, "README"));
    assert!(!excluded(only, "src"));
    assert!(!excluded(only, "src/lib/a.rs"));
    assert!(!excluded(only, "Makefile"));
    assert!(excluded(only, "docs/a"));
}

#[test]
fn docker_pattern_table() {
    // (pattern, path, excluded) — the cases of Docker's pattern matcher tests.
    let table: &[(&str, &str, bool)] = &[
        ("**", "file", true),
        ("**", "file/", true),
        ("**/", "file", true),
        ("**", "/", true),
        ("**", "dir/file", true),
        ("**/", "dir/file", true),
        ("**/**", "dir/file", true),
        ("dir/**", "dir/file", true),
        ("dir/**", "dir/dir2/file", true),
        ("**/dir", "dir", true),
        ("**/dir", "dir/file", true),
        ("**/dir2/*", "dir/dir2/file", true),
        ("**/dir2/**", "dir/dir2/dir3/file", true),
        ("**file", "file", true),
        ("**file", "dir/file", true),
        ("**/file", "dir/file", true),
        ("**file", "dir/dir/file", true),
        ("**/file", "dir/dir/file", true),
        ("**/file*", "dir/dir/file", true),
        ("**/file*", "dir/dir/file.txt", true),
        ("**/file*txt", "dir/dir/file.txt", true),
        ("**/file*.txt", "dir/dir/file.txt", true),
        ("**/file*.txt*", "dir/dir/file.txt", true),
        ("**/**/*.txt", "dir/dir/file.txt", true),
        ("**/**/*.txt2", "dir/dir/file.txt", false),
        ("**/*.txt", "file.txt", true),
        ("**/**/*.txt", "file.txt", true),
        ("a**/*.txt", "a/file.txt", true),
        ("a**/*.txt", "a/dir/file.txt", true),
        ("a**/*.txt", "a/dir/dir/file.txt", true),
        ("a/*.txt", "a/dir/file.txt", false),
        ("a/*.txt", "a/file.txt", true),
        ("a/*.txt**", "a/file.txt", true),
        ("a[b-d]e", "ae", false),
        ("a[b-d]e", "ace", true),
        ("a[b-d]e", "aae", false),
        ("a[^b-d]e", "aze", true),
        (".*", ".foo", true),
        (".*", "foo", false),
        ("abc.def", "abcdef", false),
        ("abc.def", "abc.def", true),
        ("abc.def", "abcZdef", false),
        ("abc?def", "abcZdef", true),
        ("abc?def", "abcdef", false),
        ("a\\\\", "a\\", true),
        ("**/foo/bar", "foo/bar", true),
        ("**/foo/bar", "dir/foo/bar", true),
        ("**/foo/bar", "dir/dir2/foo/bar", true),
        ("abc/**", "abc", false),
        ("abc/**", "abc/def", true),
        ("abc/**", "abc/def/ghi", true),
        ("**/.foo", ".foo", true),
        ("**/.foo", "bar.foo", false),
        ("a(b)c/def", "a(b)c/def", true),
        ("a(b)c/def", "a(b)c/xyz", false),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
        (
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        ("\\*.txt", "*.txt", true),
        ("\\*.txt", "a.txt", false),
        ("file[0-9].txt", "file7.txt", true),
        ("file[0-9].txt", "filex.txt", false),
        ("[\\]]", "]", true),
        ("?", "ab", false),
        ("?", "a/b", true), // the parent "a" matches
        ("*", "a/b", true),
        ("dir/", "dir/file", true),
        ("./dir/../other", "other/x", true),
        ("a//b", "a/b", true),
    ];
    for (pattern, path, want) in table {
        assert_eq!(
            excluded(pattern, path),
            *want,
            "pattern {pattern:?} on {path:?}"
        );
    }
}

#[test]
fn parsing_rules() {
    assert!(
        excluded("  spaced.txt  ", "spaced.txt"),
        "surrounding blanks are trimmed"
    );
    assert!(
        excluded(" #notacomment", "#notacomment"),
        "# only starts a comment in column 1"
    );
    assert!(!excluded("#comment\n\n\n", "comment"));
    assert!(excluded("\u{feff}bom", "bom"));
    assert!(!excluded("x\n! x", "x"), "blanks after ! are trimmed");
    for bad in ["[", "a[", "a\\", "!", "[]", "[a-]", "[z"] {
        assert!(
            DockerIgnore::parse(bad).is_err(),
            "{bad:?} must be rejected"
        );
    }
    let err = DockerIgnore::parse("ok\n\n[bad").unwrap_err();
    assert_eq!(
        err.to_string(),
        ".dockerignore:3: invalid pattern \"[bad\": malformed character class"
    );
    assert_eq!(err.kind(), berth_core::ErrorKind::InvalidInput);
    // The Dockerfile and .dockerignore are always sent.
    let all = DockerIgnore::parse("*\n").unwrap();
    assert!(!all.is_excluded("Dockerfile"));
    assert!(!all.is_excluded(".dockerignore"));
    let mut custom = DockerIgnore::parse("build\n*.Dockerfile\n").unwrap();
    custom.keep("build/app.Dockerfile");
    assert!(!custom.is_excluded("build/app.Dockerfile"));
    assert!(custom.is_excluded("build/other"));
}

#[test]
fn clean_like_go() {
    for (input, want) in [
        ("", "."),
        (".", "."),
        ("a/b/../c", "a/c"),
        ("../a", "../a"),
        ("/../a", "/a"),
        ("a/./b//c/", "a/b/c"),
        ("/", "/"),
        ("a/..", "."),
        ("a/../..", ".."),
    ] {
        assert_eq!(clean_path(input), want, "{input:?}");
    }
}

struct Context(tempfile::TempDir);

impl Context {
    fn new() -> Context {
        Context(
            tempfile::Builder::new()
                .prefix("berthtest-ctx-")
                .tempdir()
                .expect("tempdir"),
        )
    }
    fn file(&self, rel: &str, body: &str) {
        let p = self.0.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
}

#[test]
fn walk_a_context() {
    let ctx = Context::new();
    let ignore = "# build context\n*.md\n!README.md\nnode_modules\n**/*.o\ndocs\n!docs/keep.md\nDockerfile\n.dockerignore\n";
    ctx.file(".dockerignore", ignore);
    ctx.file("Dockerfile", "FROM scratch\n");
    ctx.file("a.txt", "a");
    ctx.file("b.md", "b");
    ctx.file("README.md", "r");
    ctx.file("node_modules/x/y.js", "y");
    ctx.file("src/main.rs", "fn main() {}");
    ctx.file("src/gen/out.o", "o");
    ctx.file("docs/keep.md", "k");
    ctx.file("docs/other.md", "o");
    std::fs::create_dir(ctx.0.path().join("empty")).unwrap();
    std::os::unix::fs::symlink("/etc", ctx.0.path().join("link")).unwrap();
    std::os::unix::fs::symlink("src", ctx.0.path().join("linkdir")).unwrap();

    let di = DockerIgnore::load(ctx.0.path(), "Dockerfile").unwrap();
    let got = di.walk(ctx.0.path()).unwrap();
    let want: Vec<PathBuf> = [
        ".dockerignore",
        "Dockerfile",
        "README.md",
        "a.txt",
        "empty",
        "link",
        "linkdir",
        "src",
        "docs/keep.md",
        "src/gen",
        "src/main.rs",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(got, want);
}

#[test]
fn walk_descends_for_wildcard_exceptions() {
    // docker/cli#2919: `!**/*.py` under an excluded tree must still find the files.
    let ctx = Context::new();
    ctx.file("pkg/sub/deep.py", "");
    ctx.file("pkg/sub/deep.txt", "");
    ctx.file("top.py", "");
    let di = DockerIgnore::parse("**\n!**/*.py\n").unwrap();
    let got = di.walk(ctx.0.path()).unwrap();
    assert_eq!(
        got,
        vec![PathBuf::from("top.py"), PathBuf::from("pkg/sub/deep.py")]
    );
}

#[test]
fn per_dockerfile_ignore_file_wins() {
    let ctx = Context::new();
    ctx.file(".dockerignore", "a\n");
    ctx.file("app.Dockerfile.dockerignore", "b\n");
    ctx.file("app.Dockerfile", "FROM x\n");
    ctx.file("a", "");
    ctx.file("b", "");
    let di = DockerIgnore::load(ctx.0.path(), "app.Dockerfile").unwrap();
    assert!(!di.is_excluded("a"));
    assert!(di.is_excluded("b"));
    let none = Context::new();
    let di = DockerIgnore::load(none.0.path(), "Dockerfile").unwrap();
    assert!(!di.is_excluded("anything"));
}

#[test]
fn exclude_flag_patterns() {
    let ex = DockerIgnore::from_patterns(["*.tmp", "cache/**", "!cache/keep"]).unwrap();
    assert!(ex.is_excluded("a.tmp"));
    assert!(ex.is_excluded("cache/x/y"));
    assert!(!ex.is_excluded("cache/keep"));
    assert!(!ex.is_excluded("src/a.rs"));
    // Nothing is kept implicitly, and # is not a comment.
    assert!(DockerIgnore::from_patterns(["Dockerfile"])
        .unwrap()
        .is_excluded("Dockerfile"));
    assert!(DockerIgnore::from_patterns(["#x"])
        .unwrap()
        .is_excluded("#x"));
    assert!(DockerIgnore::from_patterns(["["]).is_err());
}
