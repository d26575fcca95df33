//! Messages of the blob protocol (`/sinew/blob/1`): a request for chunk ranges of a blob,
//! and the provider's answer.
//!
//! Ranges are counted in BLAKE3 chunks (1 KiB) and kept as plain `(start, end)` pairs here:
//! the wire layer checks their shape, the `blob` module turns them into `bao_tree` ranges.
//! A request names ranges rather than a whole blob so that a download can resume and be
//! split across providers.

use std::io::{Read, Write};
use std::ops::Range;

use borsh::{BorshDeserialize, BorshSerialize};

use super::{invalid_data, Error, Reason};
use crate::blob::BlobId;

/// The most ranges one [`BlobRequest`] may name.
pub const MAX_RANGES_PER_REQUEST: usize = 1024;

/// Sorted, non-overlapping, non-empty half-open chunk ranges; at most
/// [`MAX_RANGES_PER_REQUEST`] of them.
///
/// Encoded as a `u32` count and `(start: u64, end: u64)` pairs. Adjacent ranges
/// (`0..4, 4..8`) are allowed; an empty list is allowed too (it asks for nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ChunkRangeList(Vec<(u64, u64)>);

impl ChunkRangeList {
    /// Checks and wraps `ranges`.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyRanges`] above [`MAX_RANGES_PER_REQUEST`], [`Error::InvalidRange`]
    /// for a range with `start >= end`, [`Error::OverlappingRanges`] for a range that does
    /// not start at or after the previous one's end.
    ///
    /// ```
    /// use sinew_core::wire::ChunkRangeList;
    ///
    /// let ranges = ChunkRangeList::new(vec![(0, 4), (10, 12)])?;
    /// assert_eq!(ranges.iter().collect::<Vec<_>>(), vec![0..4, 10..12]);
    /// assert!(ChunkRangeList::new(vec![(0, 4), (3, 5)]).is_err());
    /// # Ok::<(), sinew_core::wire::Error>(())
    /// ```
    pub fn new(ranges: Vec<(u64, u64)>) -> Result<Self, Error> {
        if ranges.len() > MAX_RANGES_PER_REQUEST {
            return Err(Error::TooManyRanges {
                count: ranges.len(),
                max: MAX_RANGES_PER_REQUEST,
            });
        }
        let mut previous_end = None;
        for (index, &(start, end)) in ranges.iter().enumerate() {
            check_range(index, start, end, previous_end)?;
            previous_end = Some(end);
        }
        Ok(Self(ranges))
    }

    /// One range, `start..end`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidRange`] if `start >= end`.
    pub fn single(start: u64, end: u64) -> Result<Self, Error> {
        Self::new(vec![(start, end)])
    }

    /// The ranges, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Range<u64>> + '_ {
        self.0.iter().map(|&(start, end)| start..end)
    }

    /// The ranges as `(start, end)` pairs.
    pub fn as_slice(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// How many ranges there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no ranges.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn check_range(index: usize, start: u64, end: u64, previous_end: Option<u64>) -> Result<(), Error> {
    if start >= end {
        return Err(Error::InvalidRange { index, start, end });
    }
    match previous_end {
        Some(previous_end) if start < previous_end => Err(Error::OverlappingRanges {
            index,
            previous_end,
            start,
        }),
        _ => Ok(()),
    }
}

impl BorshSerialize for ChunkRangeList {
    fn serialize<W: Write>(&self, writer: &mut W) -> std::io::Result<()> {
        // `new` and decoding keep len <= MAX_RANGES_PER_REQUEST, far below u32::MAX.
        let count = u32::try_from(self.0.len()).map_err(|_| {
            invalid_data(Error::TooManyRanges {
                count: self.0.len(),
                max: MAX_RANGES_PER_REQUEST,
            })
        })?;
        count.serialize(writer)?;
        for (start, end) in &self.0 {
            start.serialize(writer)?;
            end.serialize(writer)?;
        }
        Ok(())
    }
}

impl BorshDeserialize for ChunkRangeList {
    fn deserialize_reader<R: Read>(reader: &mut R) -> std::io::Result<Self> {
        let count = usize::try_from(u32::deserialize_reader(reader)?).unwrap_or(usize::MAX);
        // The limit comes before reading or allocating a single element.
        if count > MAX_RANGES_PER_REQUEST {
            return Err(invalid_data(Error::TooManyRanges {
                count,
                max: MAX_RANGES_PER_REQUEST,
            }));
        }
        let mut ranges = Vec::with_capacity(count);
        let mut previous_end = None;
        for index in 0..count {
            let start = u64::deserialize_reader(reader)?;
            let end = u64::deserialize_reader(reader)?;
            check_range(index, start, end, previous_end).map_err(invalid_data)?;
            previous_end = Some(end);
            ranges.push((start, end));
        }
        Ok(Self(ranges))
    }
}

/// Asks a provider for some chunk ranges of a blob.
#[derive(Debug, Clone, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct BlobRequest {
    /// The blob.
    pub id: BlobId,
    /// The chunk ranges wanted.
    pub ranges: ChunkRangeList,
}

/// A provider's answer to a [`BlobRequest`], sent before any data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BlobResponse {
    /// The provider has the blob; verified data for the requested ranges follows.
    Found {
        /// The blob's size in bytes as the provider claims it; trusted only once the last
        /// chunk verified.
        size: u64,
    },
    /// The provider does not have the blob.
    NotFound,
    /// The provider is at its limit; try later or elsewhere.
    Busy,
    /// The provider failed; the reason is for logs, not for logic.
    Error {
        /// What went wrong, as the provider tells it.
        reason: Reason,
    },
}

/// Wire tags of [`BlobResponse`]; never renumber, only add.
mod tag {
    pub(super) const FOUND: u8 = 0;
    pub(super) const NOT_FOUND: u8 = 1;
    pub(super) const BUSY: u8 = 2;
    pub(super) const ERROR: u8 = 3;
}

impl BorshSerialize for BlobResponse {
    fn serialize<W: Write>(&self, writer: &mut W) -> std::io::Result<()> {
        match self {
            BlobResponse::Found { size } => {
                tag::FOUND.serialize(writer)?;
                size.serialize(writer)
            }
            BlobResponse::NotFound => tag::NOT_FOUND.serialize(writer),
            BlobResponse::Busy => tag::BUSY.serialize(writer),
            BlobResponse::Error { reason } => {
                tag::ERROR.serialize(writer)?;
                reason.serialize(writer)
            }
        }
    }
}

impl BorshDeserialize for BlobResponse {
    fn deserialize_reader<R: Read>(reader: &mut R) -> std::io::Result<Self> {
        match u8::deserialize_reader(reader)? {
            tag::FOUND => Ok(BlobResponse::Found {
                size: u64::deserialize_reader(reader)?,
            }),
            tag::NOT_FOUND => Ok(BlobResponse::NotFound),
            tag::BUSY => Ok(BlobResponse::Busy),
            tag::ERROR => Ok(BlobResponse::Error {
                reason: Reason::deserialize_reader(reader)?,
            }),
            tag => Err(invalid_data(Error::UnknownVariant {
                ty: "BlobResponse",
                tag,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::from_io;

    fn decode(bytes: &[u8]) -> Result<ChunkRangeList, Error> {
        ChunkRangeList::deserialize_reader(&mut &bytes[..]).map_err(from_io)
    }

    fn ranges(n: usize) -> Vec<(u64, u64)> {
        (0..n as u64).map(|i| (2 * i, 2 * i + 1)).collect()
    }

    #[test]
    fn max_ranges_at_n_and_n_plus_one() {
        let at = ChunkRangeList::new(ranges(MAX_RANGES_PER_REQUEST)).expect("at the limit");
        let bytes = borsh::to_vec(&at).expect("in memory");
        assert_eq!(bytes.len(), 4 + 16 * MAX_RANGES_PER_REQUEST);
        assert_eq!(decode(&bytes), Ok(at));

        let over_err = Error::TooManyRanges {
            count: MAX_RANGES_PER_REQUEST + 1,
            max: MAX_RANGES_PER_REQUEST,
        };
        assert_eq!(
            ChunkRangeList::new(ranges(MAX_RANGES_PER_REQUEST + 1)),
            Err(over_err.clone())
        );
        // Only the count is sent: the limit is reported, not the missing elements.
        let count = u32::try_from(MAX_RANGES_PER_REQUEST + 1).expect("small");
        assert_eq!(decode(&count.to_le_bytes()), Err(over_err));
        assert!(matches!(
            decode(&u32::MAX.to_le_bytes()),
            Err(Error::TooManyRanges { .. })
        ));
    }

    #[test]
    fn shape_is_checked_on_both_paths() {
        let cases = [
            (
                vec![(5, 5)],
                Error::InvalidRange {
                    index: 0,
                    start: 5,
                    end: 5,
                },
            ),
            (
                vec![(0, 1), (9, 3)],
                Error::InvalidRange {
                    index: 1,
                    start: 9,
                    end: 3,
                },
            ),
            (
                vec![(0, 4), (3, 8)],
                Error::OverlappingRanges {
                    index: 1,
                    previous_end: 4,
                    start: 3,
                },
            ),
            (
                vec![(10, 12), (0, 4)],
                Error::OverlappingRanges {
                    index: 1,
                    previous_end: 12,
                    start: 0,
                },
            ),
        ];
        for (input, err) in cases {
            assert_eq!(ChunkRangeList::new(input.clone()), Err(err.clone()));
            // Bypass `new` to put the bad list on the wire.
            let bytes = borsh::to_vec(&ChunkRangeList(input)).expect("in memory");
            assert_eq!(decode(&bytes), Err(err));
        }
        // Adjacent and empty are fine.
        assert!(ChunkRangeList::new(vec![(0, 4), (4, 8), (8, u64::MAX)]).is_ok());
        assert_eq!(decode(&[0, 0, 0, 0]), Ok(ChunkRangeList::default()));
    }

    #[test]
    fn unknown_response_tag_is_typed() {
        let err = BlobResponse::deserialize_reader(&mut &[9u8][..]).map_err(from_io);
        assert_eq!(
            err,
            Err(Error::UnknownVariant {
                ty: "BlobResponse",
                tag: 9
            })
        );
    }
}
