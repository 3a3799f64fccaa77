//! Content digests (`sha256:<hex>`): parsing, validation and computing them over bytes.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// Why a digest string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// There is no `algorithm:` prefix.
    #[error("digest {0:?} has no algorithm prefix; expected sha256:<64 hex digits>")]
    MissingAlgorithm(String),
    /// The algorithm is well-formed but not one this tool verifies.
    #[error(
        "digest {digest:?} uses algorithm {algorithm:?}; only sha256 is supported because it is the one registries and image builders emit"
    )]
    UnsupportedAlgorithm {
        /// The whole digest as given.
        digest: String,
        /// The algorithm part.
        algorithm: String,
    },
    /// The hex part has the wrong length or characters.
    #[error("digest {0:?} must be sha256: followed by exactly 64 lowercase hex digits")]
    BadHex(String),
}

/// A validated sha256 content digest, kept in its canonical `sha256:<hex>` form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Computes the sha256 digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_sha256(Sha256::digest(bytes).as_slice())
    }

    /// Wraps a finished sha256 hash.
    pub(crate) fn from_sha256(hash: &[u8]) -> Self {
        let mut s = String::with_capacity(7 + 64);
        s.push_str("sha256:");
        for b in hash {
            s.push_str(&format!("{b:02x}"));
        }
        Digest(s)
    }

    /// The canonical text, `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex part alone.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((algorithm, hex)) = s.split_once(':') else {
            return Err(DigestError::MissingAlgorithm(s.to_owned()));
        };
        // OCI algorithm grammar: [a-z0-9]+([+._-][a-z0-9]+)*
        let algorithm_ok = !algorithm.is_empty()
            && algorithm.split(['+', '.', '_', '-']).all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        if !algorithm_ok {
            return Err(DigestError::MissingAlgorithm(s.to_owned()));
        }
        if algorithm != "sha256" {
            return Err(DigestError::UnsupportedAlgorithm {
                digest: s.to_owned(),
                algorithm: algorithm.to_owned(),
            });
        }
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::BadHex(s.to_owned()));
        }
        Ok(Digest(s.to_owned()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Incremental sha256 for streamed blob copies, so a copy is verified without buffering it.
#[derive(Default)]
pub(crate) struct DigestWriter(Sha256);

impl DigestWriter {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub(crate) fn finish(self) -> Digest {
        Digest::from_sha256(self.0.finalize().as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_sha256_of_empty_input() {
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn streamed_digest_equals_one_shot() {
        let mut w = DigestWriter::default();
        w.update(b"hello ");
        w.update(b"world");
        assert_eq!(w.finish(), Digest::of(b"hello world"));
    }

    #[test]
    fn parses_canonical_digest() {
        let text = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let d: Digest = text.parse().unwrap();
        assert_eq!(d.to_string(), text);
        assert_eq!(d.hex().len(), 64);
    }

    #[test]
    fn rejects_bad_digests_with_reasons() {
        assert!(matches!(
            "abc".parse::<Digest>(),
            Err(DigestError::MissingAlgorithm(_))
        ));
        assert!(matches!(
            "sha512:abcd".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm { algorithm, .. }) if algorithm == "sha512"
        ));
        assert!(matches!(
            "sha256:abcd".parse::<Digest>(),
            Err(DigestError::BadHex(_))
        ));
        let upper = format!("sha256:{}", "A".repeat(64));
        assert!(matches!(
            upper.parse::<Digest>(),
            Err(DigestError::BadHex(_))
        ));
        assert!(matches!(
            "SHA256:00".parse::<Digest>(),
            Err(DigestError::MissingAlgorithm(_))
        ));
    }
}
