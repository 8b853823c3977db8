//! Docker's `filters` query parameter and query booleans.
//!
//! `filters` is URL-encoded JSON in two shapes: the CLI's map of maps
//! (`{"name":{"web":true}}`) and docker-py's map of lists (`{"label": ["a=b"]}`). Both parse to
//! the same [`Filters`]. Booleans accept every Go `strconv.ParseBool` spelling plus `""`.

use std::collections::{BTreeMap, BTreeSet};

use crate::EngineError;

/// Parsed `filters`: key -> set of values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, BTreeSet<String>>);

impl Filters {
    /// Parse the JSON text of a `filters` parameter (empty text = no filters).
    pub fn parse(text: &str) -> Result<Self, EngineError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Filters::default());
        }
        let bad = |why: String| EngineError::invalid(format!("invalid filter: {why}"));
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(format!("{e}: {text}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| bad(format!("expected a JSON object: {text}")))?;
        let mut out = BTreeMap::new();
        for (k, vals) in obj {
            let set: &mut BTreeSet<String> = out.entry(k.clone()).or_default();
            match vals {
                serde_json::Value::Array(a) => {
                    for x in a {
                        match x {
                            serde_json::Value::String(s) => {
                                set.insert(s.clone());
                            }
                            other => {
                                return Err(bad(format!("value of {k:?} is not a string: {other}")))
                            }
                        }
                    }
                }
                serde_json::Value::Object(m) => {
                    for (s, on) in m {
                        match on {
                            serde_json::Value::Bool(true) => {
                                set.insert(s.clone());
                            }
                            serde_json::Value::Bool(false) => {}
                            other => {
                                return Err(bad(format!(
                                    "value of {k:?}.{s:?} is not a boolean: {other}"
                                )))
                            }
                        }
                    }
                }
                serde_json::Value::String(s) => {
                    set.insert(s.clone());
                }
                other => return Err(bad(format!("value of {k:?} is not a list or map: {other}"))),
            }
        }
        Ok(Filters(out))
    }

    /// Whether no filter is set.
    pub fn is_empty(&self) -> bool {
        self.0.values().all(|s| s.is_empty())
    }

    /// The keys that have at least one value.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, _)| k.as_str())
    }

    /// Values of `key`.
    pub fn values<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a str> {
        self.0
            .get(key)
            .into_iter()
            .flat_map(|s| s.iter().map(String::as_str))
    }

    /// Whether `key` has the value `v`.
    pub fn contains(&self, key: &str, v: &str) -> bool {
        self.0.get(key).is_some_and(|s| s.contains(v))
    }

    /// Whether `key` is set.
    pub fn has(&self, key: &str) -> bool {
        self.0.get(key).is_some_and(|s| !s.is_empty())
    }

    /// Add a value (used to apply defaults, e.g. prune's `dangling=true`).
    pub fn insert(&mut self, key: &str, v: &str) {
        self.0
            .entry(key.to_string())
            .or_default()
            .insert(v.to_string());
    }

    /// Drop a key.
    pub fn remove(&mut self, key: &str) {
        self.0.remove(key);
    }

    /// Fail on keys outside `allowed` (Docker: `invalid filter 'x'`).
    pub fn validate(&self, allowed: &[&str]) -> Result<(), EngineError> {
        for k in self.keys() {
            if !allowed.contains(&k) {
                return Err(EngineError::invalid(format!("invalid filter '{k}'")));
            }
        }
        Ok(())
    }

    /// A boolean filter (`dangling=true`): `None` if unset; error on a bad or conflicting value.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, EngineError> {
        let mut out = None;
        for v in self.values(key) {
            let b = parse_bool(v)
                .map_err(|_| EngineError::invalid(format!("invalid filter '{key}={v}'")))?;
            if out.is_some_and(|o| o != b) {
                return Err(EngineError::invalid(format!(
                    "invalid filter '{key}': conflicting values"
                )));
            }
            out = Some(b);
        }
        Ok(out)
    }

    /// Match `label` filters against `labels`: each `k` or `k=v` must hold (AND).
    pub fn match_labels(&self, key: &str, labels: &BTreeMap<String, String>) -> bool {
        self.values(key).all(|l| match l.split_once('=') {
            Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
            None => labels.contains_key(l),
        })
    }
}

/// Parse a query boolean: Go's `ParseBool` spellings (`1 t T TRUE true True`, `0 f F FALSE false
/// False`) and `""` (false).
pub fn parse_bool(s: &str) -> Result<bool, EngineError> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "" | "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(EngineError::invalid(format!("invalid boolean value {s:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_equal() {
        let a =
            Filters::parse(r#"{"label":{"a=b":true,"c":true},"dangling":{"true":true}}"#).unwrap();
        let b = Filters::parse(r#"{"label": ["a=b", "c"], "dangling": ["true"]}"#).unwrap();
        assert_eq!(a, b);
        assert!(a.contains("label", "c"));
        assert_eq!(a.bool("dangling").unwrap(), Some(true));
    }

    #[test]
    fn false_entries_and_empty() {
        let f = Filters::parse(r#"{"name":{"x":false}}"#).unwrap();
        assert!(f.is_empty());
        assert!(Filters::parse("").unwrap().is_empty());
        assert!(Filters::parse("[1]").is_err());
        assert!(Filters::parse(r#"{"a":[1]}"#).is_err());
        assert!(Filters::parse("{nope").is_err());
    }

    #[test]
    fn validate_names_key() {
        let f = Filters::parse(r#"{"bogus":["x"]}"#).unwrap();
        let e = f.validate(&["label"]).unwrap_err();
        assert_eq!(e.to_string(), "invalid filter 'bogus'");
    }

    #[test]
    fn bools() {
        for s in ["1", "t", "T", "TRUE", "true", "True"] {
            assert!(parse_bool(s).unwrap(), "{s}");
        }
        for s in ["", "0", "f", "F", "FALSE", "false", "False"] {
            assert!(!parse_bool(s).unwrap(), "{s}");
        }
        assert!(parse_bool("yes").is_err());
        let f = Filters::parse(r#"{"dangling":["true","false"]}"#).unwrap();
        assert!(f.bool("dangling").is_err());
    }

    #[test]
    fn labels() {
        let f = Filters::parse(r#"{"label":["a=1","b"]}"#).unwrap();
        let mut l = BTreeMap::new();
        l.insert("a".to_string(), "1".to_string());
        assert!(!f.match_labels("label", &l));
        l.insert("b".to_string(), "x".to_string());
        assert!(f.match_labels("label", &l));
    }
}
