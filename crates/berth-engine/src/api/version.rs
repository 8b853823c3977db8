//! API version prefixes: `/v1.41/containers/json` -> (`1.41`, `/containers/json`).

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::{EngineError, API_VERSION, MIN_API_VERSION};

/// The API version a request speaks (from its `/vX.Y/` prefix; the newest when unversioned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    /// Major (1).
    pub major: u32,
    /// Minor (24..=44).
    pub minor: u32,
}

impl ApiVersion {
    /// The version berth announces.
    pub const CURRENT: ApiVersion = ApiVersion {
        major: API_VERSION.0,
        minor: API_VERSION.1,
    };
    /// The oldest accepted.
    pub const MIN: ApiVersion = ApiVersion {
        major: MIN_API_VERSION.0,
        minor: MIN_API_VERSION.1,
    };

    /// `1.x`.
    pub const fn v1(minor: u32) -> Self {
        ApiVersion { major: 1, minor }
    }

    /// Whether this request's version is at least `1.minor`.
    pub fn at_least(self, minor: u32) -> bool {
        self >= Self::v1(minor)
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Split a version prefix off `path`. `Ok(None)` = unversioned; `Err` = a version out of range
/// (400 with Docker's messages). Anything not shaped `/v<digits>.<digits>/` is unversioned.
pub fn split_version(path: &str) -> Result<Option<(ApiVersion, &str)>, EngineError> {
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok(None);
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let (ver, tail) = rest.split_at(end);
    let Some((ma, mi)) = ver.split_once('.') else {
        return Ok(None);
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(ma) || !digits(mi) {
        return Ok(None);
    }
    let (Ok(major), Ok(minor)) = (ma.parse(), mi.parse()) else {
        return Ok(None);
    };
    let v = ApiVersion { major, minor };
    if v > ApiVersion::CURRENT {
        return Err(EngineError::invalid(format!(
            "client version {ver} is too new. Maximum supported API version is {}",
            ApiVersion::CURRENT
        )));
    }
    if v < ApiVersion::MIN {
        return Err(EngineError::invalid(format!(
            "client version {ver} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
            ApiVersion::MIN
        )));
    }
    Ok(Some((v, if tail.is_empty() { "/" } else { tail })))
}

impl<S: Send + Sync> FromRequestParts<S> for ApiVersion {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ApiVersion>()
            .copied()
            .unwrap_or(ApiVersion::CURRENT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            split_version("/v1.41/containers/json").unwrap(),
            Some((ApiVersion::v1(41), "/containers/json"))
        );
        assert_eq!(
            split_version("/v1.44/_ping").unwrap(),
            Some((ApiVersion::v1(44), "/_ping"))
        );
        assert_eq!(
            split_version("/v1.24/version").unwrap().unwrap().0,
            ApiVersion::v1(24)
        );
        assert_eq!(split_version("/_ping").unwrap(), None);
        assert_eq!(split_version("/volumes/v1.2").unwrap(), None);
        assert_eq!(split_version("/vx.1/a").unwrap(), None);
        let e = split_version("/v1.99/info").unwrap_err();
        assert_eq!(
            e.to_string(),
            "client version 1.99 is too new. Maximum supported API version is 1.44"
        );
        assert_eq!(e.http_status(), 400);
        let e = split_version("/v1.11/info").unwrap_err();
        assert!(e.to_string().contains("too old"), "{e}");
        assert_eq!(e.http_status(), 400);
        assert!(split_version("/v2.0/info").is_err());
    }

    #[test]
    fn ordering() {
        assert!(ApiVersion::v1(42).at_least(42));
        assert!(!ApiVersion::v1(41).at_least(42));
        assert_eq!(ApiVersion::CURRENT.to_string(), "1.44");
    }
}
