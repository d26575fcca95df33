//! [`BoundedString`]: a UTF-8 string whose length limit is part of its type.
//!
//! borsh's own `String` trusts the 4-byte length prefix (it only caps the first allocation),
//! so a hostile peer could make a decoder read megabytes of "reason". Every string on the
//! wire is a `BoundedString<MAX>` instead: the declared length is checked against `MAX`
//! before a single byte of it is read.

use std::fmt;
use std::io::{Read, Write};
use std::ops::Deref;

use borsh::{BorshDeserialize, BorshSerialize};

use super::{invalid_data, Error};

/// The longest human-readable reason (in a [`BlobResponse::Error`](super::BlobResponse) or a
/// [`Message::Goodbye`](super::Message)), in bytes of UTF-8.
pub const MAX_REASON_LEN: usize = 256;

/// A human-readable reason sent to a peer; at most [`MAX_REASON_LEN`] bytes.
pub type Reason = BoundedString<MAX_REASON_LEN>;

/// A UTF-8 string of at most `MAX` bytes; borsh-encoded as a `u32` length and the bytes.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BoundedString<const MAX: usize>(String);

impl<const MAX: usize> BoundedString<MAX> {
    /// The limit, in bytes.
    pub const MAX_LEN: usize = MAX;

    /// Wraps `s` if it is at most `MAX` bytes long.
    ///
    /// # Errors
    ///
    /// [`Error::StringTooLong`] otherwise.
    pub fn new(s: impl Into<String>) -> Result<Self, Error> {
        let s = s.into();
        if s.len() > MAX {
            return Err(Error::StringTooLong {
                len: s.len(),
                max: MAX,
            });
        }
        Ok(Self(s))
    }

    /// Keeps at most the first `MAX` bytes of `s`, cut on a character boundary.
    ///
    /// Handy for error reasons, where a shortened text is better than none.
    ///
    /// ```
    /// use sinew_core::wire::BoundedString;
    /// assert_eq!(BoundedString::<4>::truncating("héllo").as_str(), "hél");
    /// ```
    pub fn truncating(s: &str) -> Self {
        let mut end = s.len().min(MAX);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        Self(s[..end].to_owned())
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The owned text.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl<const MAX: usize> Deref for BoundedString<MAX> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> fmt::Display for BoundedString<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const MAX: usize> fmt::Debug for BoundedString<MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<const MAX: usize> TryFrom<String> for BoundedString<MAX> {
    type Error = Error;

    fn try_from(s: String) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl<const MAX: usize> TryFrom<&str> for BoundedString<MAX> {
    type Error = Error;

    fn try_from(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl<const MAX: usize> BorshSerialize for BoundedString<MAX> {
    fn serialize<W: Write>(&self, writer: &mut W) -> std::io::Result<()> {
        // `new` and decoding keep len <= MAX; MAX above u32::MAX would be a programming
        // error, reported rather than truncated.
        let len = u32::try_from(self.0.len()).map_err(|_| {
            invalid_data(Error::StringTooLong {
                len: self.0.len(),
                max: MAX,
            })
        })?;
        len.serialize(writer)?;
        writer.write_all(self.0.as_bytes())
    }
}

impl<const MAX: usize> BorshDeserialize for BoundedString<MAX> {
    fn deserialize_reader<R: Read>(reader: &mut R) -> std::io::Result<Self> {
        let declared = u32::deserialize_reader(reader)?;
        let len = usize::try_from(declared).unwrap_or(usize::MAX);
        // The limit comes before the allocation.
        if len > MAX {
            return Err(invalid_data(Error::StringTooLong { len, max: MAX }));
        }
        let mut bytes = vec![0; len];
        reader.read_exact(&mut bytes).map_err(|_| {
            invalid_data(Error::Malformed {
                reason: format!("string declares {len} bytes but the message ends first"),
            })
        })?;
        let s = String::from_utf8(bytes).map_err(|_| {
            invalid_data(Error::Malformed {
                reason: "string is not valid UTF-8".to_owned(),
            })
        })?;
        Ok(Self(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::from_io;

    fn decode<const MAX: usize>(bytes: &[u8]) -> Result<BoundedString<MAX>, Error> {
        BoundedString::<MAX>::deserialize_reader(&mut &bytes[..]).map_err(from_io)
    }

    #[test]
    fn limit_at_n_and_n_plus_one() {
        let at = "a".repeat(MAX_REASON_LEN);
        let reason = Reason::new(at.clone()).expect("at the limit");
        let bytes = borsh::to_vec(&reason).expect("in memory");
        assert_eq!(decode::<MAX_REASON_LEN>(&bytes), Ok(reason));

        let over = "a".repeat(MAX_REASON_LEN + 1);
        assert_eq!(
            Reason::new(over),
            Err(Error::StringTooLong {
                len: MAX_REASON_LEN + 1,
                max: MAX_REASON_LEN
            })
        );
    }

    #[test]
    fn over_long_length_is_refused_before_reading() {
        // Declares 257 bytes and sends none: the limit, not the missing bytes, is reported.
        let bytes = u32::try_from(MAX_REASON_LEN + 1)
            .expect("small")
            .to_le_bytes();
        assert_eq!(
            decode::<MAX_REASON_LEN>(&bytes),
            Err(Error::StringTooLong {
                len: MAX_REASON_LEN + 1,
                max: MAX_REASON_LEN
            })
        );
        // Same for a length near u32::MAX.
        assert!(matches!(
            decode::<MAX_REASON_LEN>(&u32::MAX.to_le_bytes()),
            Err(Error::StringTooLong { .. })
        ));
    }

    #[test]
    fn truncated_and_non_utf8_are_malformed() {
        assert!(matches!(
            decode::<8>(&[3, 0, 0, 0, b'a']),
            Err(Error::Malformed { .. })
        ));
        assert!(matches!(
            decode::<8>(&[1, 0, 0, 0, 0xff]),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn truncating_respects_char_boundaries() {
        assert_eq!(BoundedString::<0>::truncating("abc").as_str(), "");
        assert_eq!(BoundedString::<2>::truncating("é!").as_str(), "é");
        assert_eq!(BoundedString::<1>::truncating("é").as_str(), "");
        assert_eq!(BoundedString::<10>::truncating("short").as_str(), "short");
    }
}
