//! [`BlobId`]: the BLAKE3 hash of a blob's content.
//!
//! The id is exactly what `b3sum` prints for the same bytes, so users can check a download
//! with a tool they already trust. It is also the root of the blob's verification tree:
//! every chunk group a provider sends is checked against it.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};

/// The BLAKE3 hash of a blob's content; its name on the network.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct BlobId([u8; 32]);

impl BlobId {
    /// The length of an id in bytes.
    pub const LEN: usize = 32;

    /// Hashes `content` (the same as `blake3::hash`, and what `b3sum` prints).
    ///
    /// ```
    /// let id = sinew_core::blob::BlobId::of(b"hello");
    /// assert_eq!(
    ///     id.to_string(),
    ///     "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
    /// );
    /// ```
    pub fn of(content: &[u8]) -> Self {
        Self(*blake3::hash(content).as_bytes())
    }

    /// Wraps 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub(crate) fn to_hash(self) -> blake3::Hash {
        blake3::Hash::from_bytes(self.0)
    }

    /// The first 5 bytes as hex, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..5])
    }
}

impl From<blake3::Hash> for BlobId {
    fn from(hash: blake3::Hash) -> Self {
        Self(*hash.as_bytes())
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({})", self.short())
    }
}

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a blob id is 64 hex digits (as printed by b3sum); got {got:?}")]
pub struct ParseBlobIdError {
    got: String,
}

impl FromStr for BlobId {
    type Err = ParseBlobIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseBlobIdError {
            got: s.chars().take(80).collect(),
        };
        let mut bytes = [0u8; 32];
        if s.len() != 64 {
            return Err(err());
        }
        hex::decode_to_slice(s, &mut bytes).map_err(|_| err())?;
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_round_trip() {
        let id = BlobId::of(b"sinew");
        let s = id.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<BlobId>(), Ok(id));
    }

    #[test]
    fn parse_rejects_wrong_length_and_non_hex() {
        assert!("abc".parse::<BlobId>().is_err());
        assert!("zz".repeat(32).parse::<BlobId>().is_err());
        let long = "a".repeat(65);
        assert!(long.parse::<BlobId>().is_err());
    }

    #[test]
    fn empty_blob_id_matches_b3sum() {
        // `b3sum /dev/null`
        assert_eq!(
            BlobId::of(b"").to_string(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }
}
