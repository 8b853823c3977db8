//! Request paths as values: repository-name and tag validation per the spec, and the parse of
//! `/v2/...` into a [`Route`] (names contain slashes, so routes are matched from the right).

/// What a `/v2/` path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags(String),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(String, String),
    /// `/v2/<name>/blobs/<digest>`
    Blob(String, String),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(String),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(String, String),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(String, String),
}

impl Route {
    /// The repository the route names, if any.
    pub fn name(&self) -> Option<&str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags(n)
            | Route::Manifest(n, _)
            | Route::Blob(n, _)
            | Route::UploadStart(n)
            | Route::Upload(n, _)
            | Route::Referrers(n, _) => Some(n),
        }
    }
}

/// Parse a request path (without query). `None`: not a registry route (404).
pub fn parse(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_prefix_suffix("/tags/list") {
        return Some(Route::Tags(name.to_string()));
    }
    for suffix in ["/blobs/uploads/", "/blobs/uploads"] {
        if let Some(name) = rest.strip_prefix_suffix(suffix) {
            return Some(Route::UploadStart(name.to_string()));
        }
    }
    let (head, last) = rest.rsplit_once('/')?;
    if last.is_empty() {
        return None;
    }
    if let Some(name) = head.strip_prefix_suffix("/blobs/uploads") {
        return Some(Route::Upload(name.to_string(), last.to_string()));
    }
    let (name, kind) = head.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Route::Manifest(name.to_string(), last.to_string())),
        "blobs" => Some(Route::Blob(name.to_string(), last.to_string())),
        "referrers" => Some(Route::Referrers(name.to_string(), last.to_string())),
        _ => None,
    }
}

trait StripSuffix {
    fn strip_prefix_suffix(&self, suffix: &str) -> Option<&str>;
}

impl StripSuffix for str {
    fn strip_prefix_suffix(&self, suffix: &str) -> Option<&str> {
        self.strip_suffix(suffix).filter(|n| !n.is_empty())
    }
}

/// Whether `name` is a valid repository name:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, under 256 bytes.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() < 256 && name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        let sep = b[i];
        while i < b.len() && b[i] == sep {
            i += 1;
        }
        let run = i - start;
        let ok = match sep {
            b'.' => run == 1,
            b'_' => run <= 2,
            b'-' => true,
            _ => false,
        };
        if !ok || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

/// Whether `tag` is a valid tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "library/busybox",
            "a.b_c__d---e/f0",
            "my-org/team/app",
            "x9",
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "a..b",
            "a___b",
            "-a",
            "a-",
            "a.",
            "a:b",
            &"a".repeat(256),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn tags() {
        assert!(valid_tag("latest"));
        assert!(valid_tag("_x.Y-1"));
        assert!(valid_tag(&"a".repeat(128)));
        assert!(!valid_tag(&"a".repeat(129)));
        assert!(!valid_tag(".a"));
        assert!(!valid_tag("-a"));
        assert!(!valid_tag("a/b"));
        assert!(!valid_tag(""));
    }

    #[test]
    fn routes() {
        assert_eq!(parse("/v2/"), Some(Route::Base));
        assert_eq!(parse("/v2"), Some(Route::Base));
        assert_eq!(parse("/v2/_catalog"), Some(Route::Catalog));
        assert_eq!(parse("/v2/a/b/tags/list"), Some(Route::Tags("a/b".into())));
        assert_eq!(
            parse("/v2/a/manifests/b/manifests/latest"),
            Some(Route::Manifest("a/manifests/b".into(), "latest".into()))
        );
        assert_eq!(
            parse("/v2/a/blobs/sha256:x"),
            Some(Route::Blob("a".into(), "sha256:x".into()))
        );
        assert_eq!(
            parse("/v2/a/b/blobs/uploads/"),
            Some(Route::UploadStart("a/b".into()))
        );
        assert_eq!(
            parse("/v2/a/b/blobs/uploads/123"),
            Some(Route::Upload("a/b".into(), "123".into()))
        );
        assert_eq!(
            parse("/v2/a/referrers/sha256:x"),
            Some(Route::Referrers("a".into(), "sha256:x".into()))
        );
        assert_eq!(parse("/v3/"), None);
        assert_eq!(parse("/v2/a"), None);
        assert_eq!(parse("/v2/a/manifests/"), None);
    }
}
