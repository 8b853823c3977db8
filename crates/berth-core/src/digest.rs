//! Content digests as the OCI image spec defines them: `algorithm:encoded`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

use crate::ErrorKind;

/// Digest algorithms berth computes and verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256 (64 lowercase hex characters).
    Sha256,
    /// SHA-512 (128 lowercase hex characters).
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as written in a digest.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A parse error for a digest string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The string has no `algorithm:` prefix.
    #[error("invalid digest {0:?}: expected algorithm:hex")]
    Format(String),
    /// The algorithm is not sha256 or sha512.
    #[error("unsupported digest algorithm {0:?}")]
    Algorithm(String),
    /// The encoded part is not lowercase hex of the right length.
    #[error("invalid digest {0:?}: bad encoded length or characters")]
    Encoded(String),
}

impl DigestError {
    /// The error's class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DigestError::Algorithm(_) => ErrorKind::Unsupported,
            _ => ErrorKind::InvalidInput,
        }
    }
}

/// A validated digest such as `sha256:e3b0c442...`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    encoded: String,
}

impl Digest {
    /// Build a digest from an algorithm and lowercase hex, validating both.
    pub fn new(algorithm: Algorithm, encoded: &str) -> Result<Self, DigestError> {
        let ok = encoded.len() == algorithm.hex_len()
            && encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(DigestError::Encoded(format!(
                "{}:{}",
                algorithm.as_str(),
                encoded
            )));
        }
        Ok(Digest {
            algorithm,
            encoded: encoded.to_string(),
        })
    }

    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Self {
        Digest {
            algorithm: Algorithm::Sha256,
            encoded: hex::encode(sha2::Sha256::digest(data)),
        }
    }

    /// The digest of `data` with `algorithm`.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Self {
        let mut d = Digester::new(algorithm);
        d.update(data);
        d.finish()
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex part, without the algorithm.
    pub fn encoded(&self) -> &str {
        &self.encoded
    }

    /// The first 12 hex characters, as Docker shows short IDs.
    pub fn short(&self) -> &str {
        &self.encoded[..12]
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, enc) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Format(s.to_string()))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            "" => return Err(DigestError::Format(s.to_string())),
            other => return Err(DigestError::Algorithm(other.to_string())),
        };
        Digest::new(algorithm, enc)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.encoded)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental digest computation.
#[derive(Clone)]
pub enum Digester {
    /// SHA-256 state.
    Sha256(sha2::Sha256),
    /// SHA-512 state.
    Sha512(sha2::Sha512),
}

impl Digester {
    /// Start a new computation.
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Digester::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Digester::Sha512(sha2::Sha512::new()),
        }
    }

    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Digester::Sha256(h) => h.update(data),
            Digester::Sha512(h) => h.update(data),
        }
    }

    /// Finish and return the digest.
    pub fn finish(self) -> Digest {
        match self {
            Digester::Sha256(h) => Digest {
                algorithm: Algorithm::Sha256,
                encoded: hex::encode(h.finalize()),
            },
            Digester::Sha512(h) => Digest {
                algorithm: Algorithm::Sha512,
                encoded: hex::encode(h.finalize()),
            },
        }
    }
}

impl std::io::Write for Digester {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_and_display() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d, Digest::sha256_of(b""));
        assert_eq!(d.short(), "e3b0c44298fc");
    }

    #[test]
    fn rejects_bad() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:ABC",
            "md5:00",
            ":abc",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad} accepted");
        }
        assert_eq!(
            "md5:00".parse::<Digest>().unwrap_err().kind(),
            ErrorKind::Unsupported
        );
    }

    #[test]
    fn sha512() {
        let d = Digest::of(Algorithm::Sha512, b"abc");
        assert_eq!(d.encoded().len(), 128);
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn serde_roundtrip() {
        let d: Digest = EMPTY.parse().unwrap();
        let j = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&j).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:zz\"").is_err());
    }
}
