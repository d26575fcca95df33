//! The record of chunk groups a provider has already checked against its outboard since
//! the node started (`validate_on_serve`), so that serving a group again does not hash it
//! again.

use crate::blob::{BlobId, ChunkRanges};

/// Most blobs whose checked chunk groups a node remembers (the checked-on-serve record); the
/// entry with the smallest id is forgotten beyond.
pub const MAX_CHECKED_BLOBS: usize = 1024;

/// Most range boundaries remembered per blob; a more fragmented record is dropped (its
/// groups are hashed again when served).
pub const MAX_CHECKED_BOUNDARIES: usize = 1024;

/// The chunk groups of each served blob that the provider has already checked against
/// its outboard since the node started (with `validate_on_serve`): they are not hashed
/// again when served again. Bounded by [`MAX_CHECKED_BLOBS`] and
/// [`MAX_CHECKED_BOUNDARIES`]; forgotten when the blob is deleted or found corrupt.
#[derive(Debug, Default)]
pub(crate) struct CheckedOnServe {
    blobs: std::collections::BTreeMap<BlobId, ChunkRanges>,
}

impl CheckedOnServe {
    pub(super) fn get(&self, id: &BlobId) -> ChunkRanges {
        self.blobs
            .get(id)
            .cloned()
            .unwrap_or_else(ChunkRanges::empty)
    }

    pub(super) fn add(&mut self, id: BlobId, ranges: ChunkRanges) {
        if ranges.is_empty() {
            return;
        }
        let entry = self.blobs.entry(id).or_insert_with(ChunkRanges::empty);
        *entry |= ranges;
        if entry.boundaries().len() > MAX_CHECKED_BOUNDARIES {
            self.blobs.remove(&id);
        }
        while self.blobs.len() > MAX_CHECKED_BLOBS {
            self.blobs.pop_first();
        }
    }

    pub(super) fn forget(&mut self, id: &BlobId) {
        self.blobs.remove(id);
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.blobs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u16) -> BlobId {
        let mut bytes = [0u8; 32];
        bytes[..2].copy_from_slice(&n.to_be_bytes());
        BlobId::from_bytes(bytes)
    }

    fn chunks(a: u64, b: u64) -> ChunkRanges {
        ChunkRanges::from(bao_tree::ChunkNum(a)..bao_tree::ChunkNum(b))
    }

    #[test]
    fn the_checked_record_stays_within_its_limits() {
        let mut checked = CheckedOnServe::default();
        for n in 0..(MAX_CHECKED_BLOBS as u16 + 10) {
            checked.add(id(n), chunks(0, 16));
        }
        assert_eq!(checked.len(), MAX_CHECKED_BLOBS);
        // The newest are kept.
        assert!(!checked.get(&id(MAX_CHECKED_BLOBS as u16 + 9)).is_empty());
        // A record fragmented beyond its boundary limit is dropped, not grown.
        let blob = id(60_000);
        for g in 0..(MAX_CHECKED_BOUNDARIES as u64 / 2) {
            checked.add(blob, chunks(g * 32, g * 32 + 16));
        }
        assert_eq!(
            checked.get(&blob).boundaries().len(),
            MAX_CHECKED_BOUNDARIES
        );
        checked.add(blob, chunks(1_000_000, 1_000_016));
        assert!(checked.get(&blob).is_empty());
        // Nothing to add is no entry.
        checked.add(id(60_001), ChunkRanges::empty());
        assert!(checked.get(&id(60_001)).is_empty());
    }
}
