//! Request/response helpers: the error response, query parameters, JSON bodies.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::filters::{parse_bool, Filters};
use crate::EngineError;

/// Largest JSON request body accepted (container create bodies are a few KB).
pub const MAX_JSON_BODY: usize = 16 << 20;

/// A `{"message": ...}` error response with an explicit status.
pub fn error_response(status: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({ "message": message }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

impl IntoResponse for EngineError {
    fn into_response(self) -> Response {
        let status = self.http_status();
        if status >= 500 {
            tracing::error!("request failed: {self}");
        } else {
            tracing::debug!("request failed ({status}): {self}");
        }
        error_response(status, &self.to_string())
    }
}

/// Query parameters in order, with Docker's parsing rules.
#[derive(Debug, Clone, Default)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    /// Parse a raw query string.
    pub fn parse(q: &str) -> Self {
        Query(
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (`names=a&names=b`).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A boolean parameter; missing = `default`. Any Go ParseBool spelling, `""` = false.
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, EngineError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_bool(v)
                .map_err(|_| EngineError::invalid(format!("invalid value for {name}: {v:?}"))),
        }
    }

    /// A boolean parameter, false when missing.
    pub fn bool(&self, name: &str) -> Result<bool, EngineError> {
        self.bool_or(name, false)
    }

    /// A number parameter (`None` when missing or empty).
    pub fn num<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, EngineError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| EngineError::invalid(format!("invalid value for {name}: {v:?}"))),
        }
    }

    /// The `filters` parameter (both JSON shapes).
    pub fn filters(&self) -> Result<Filters, EngineError> {
        Filters::parse(self.get("filters").unwrap_or(""))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = EngineError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Query::parse(parts.uri.query().unwrap_or("")))
    }
}

async fn body_bytes(req: Request) -> Result<Bytes, EngineError> {
    axum::body::to_bytes(req.into_body(), MAX_JSON_BODY)
        .await
        .map_err(|e| EngineError::invalid(format!("read request body: {e}")))
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, EngineError> {
    serde_json::from_slice(b).map_err(|e| EngineError::invalid(format!("invalid JSON: {e}")))
}

/// A required JSON body. Unknown fields are ignored (serde's default; do not use
/// `deny_unknown_fields` on API types); no Content-Type check (clients vary).
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = EngineError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let b = body_bytes(req).await?;
        if b.iter().all(|c| c.is_ascii_whitespace()) {
            return Err(EngineError::invalid("invalid JSON: empty request body"));
        }
        decode(&b).map(JsonBody)
    }
}

/// An optional JSON body: empty (or `null`) gives `T::default()`.
#[derive(Debug, Clone)]
pub struct OptJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptJsonBody<T> {
    type Rejection = EngineError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let b = body_bytes(req).await?;
        if b.iter().all(|c| c.is_ascii_whitespace()) {
            return Ok(OptJsonBody(T::default()));
        }
        let v: Option<T> = decode(&b)?;
        Ok(OptJsonBody(v.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = Query::parse(
            "all=1&force=True&v=False&x=&filters=%7B%22a%22%3A%5B%22b%22%5D%7D&names=a&names=b%2Fc",
        );
        assert!(q.bool("all").unwrap());
        assert!(q.bool("force").unwrap());
        assert!(!q.bool("v").unwrap());
        assert!(!q.bool("x").unwrap());
        assert!(!q.bool("missing").unwrap());
        assert!(q.bool_or("missing", true).unwrap());
        assert!(Query::parse("a=yes").bool("a").is_err());
        assert!(q.filters().unwrap().contains("a", "b"));
        assert_eq!(q.all("names"), vec!["a", "b/c"]);
        assert_eq!(Query::parse("t=10").num::<i64>("t").unwrap(), Some(10));
        assert!(Query::parse("t=x").num::<i64>("t").is_err());
    }

    #[test]
    fn unknown_fields_ignored() {
        #[derive(serde::Deserialize, Default)]
        #[serde(rename_all = "PascalCase")]
        struct T {
            name: String,
        }
        let t: T = decode(br#"{"Name":"x","GwPriority":3,"ConsoleSize":[1,2]}"#).unwrap();
        assert_eq!(t.name, "x");
    }
}
