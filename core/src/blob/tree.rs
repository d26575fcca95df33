//! The verification tree: chunk groups, hashing, outboards and range canonicalisation.
//!
//! A blob is cut into 1 KiB BLAKE3 chunks; Sinew verifies them in groups of 16 chunks
//! (16 KiB), which keeps the outboard at 64 bytes per 16 KiB (0.4 % of the data) while
//! letting BLAKE3 hash each group with full SIMD width. The tree geometry comes from
//! `bao-tree` (walked with its iterators, no I/O); the hashes come from BLAKE3's `hazmat`
//! API, so the root of the tree is exactly `blake3::hash(content)`.

use bao_tree::blake3;
use bao_tree::iter::BaoChunk;
use bao_tree::{BaoTree, BlockSize, ChunkNum, ChunkRanges};
use blake3::hazmat::{merge_subtrees_non_root, merge_subtrees_root, HasherExt, Mode};

use super::BlobId;

/// Chunk groups of 2^4 = 16 BLAKE3 chunks.
pub const BLOCK_SIZE: BlockSize = BlockSize::from_chunk_log(4);
/// Bytes in one chunk group: the unit of verification.
pub const CHUNK_GROUP_BYTES: u64 = 16 * 1024;
/// Chunks (1 KiB) in one chunk group.
pub const CHUNKS_PER_GROUP: u64 = 16;
/// Bytes of one hash pair in an outboard.
pub const PAIR_BYTES: usize = 64;

/// The tree of a blob of `size` bytes with Sinew's chunk group size.
pub fn tree(size: u64) -> BaoTree {
    BaoTree::new(size, BLOCK_SIZE)
}

/// Size of the pre-order outboard of a blob of `size` bytes.
pub fn outboard_size(size: u64) -> u64 {
    tree(size).outboard_size()
}

/// Bytes of a blob of `size` bytes covered by the chunk ranges `ranges` (the short last
/// chunk counts by its real length).
pub fn verified_bytes(ranges: &ChunkRanges, size: u64) -> u64 {
    use range_collections::range_set::RangeSetRange;
    ranges
        .iter()
        .map(|r| {
            let (start, end) = match r {
                RangeSetRange::Range(r) => (r.start.0, r.end.0),
                RangeSetRange::RangeFrom(r) => (r.start.0, u64::MAX),
            };
            let start = start.saturating_mul(1024).min(size);
            let end = end.saturating_mul(1024).min(size);
            end - start
        })
        .sum()
}

/// The number of 1 KiB chunks of a blob of `size` bytes (the last one may be short).
pub fn chunks(size: u64) -> ChunkNum {
    ChunkNum(size.div_ceil(1024))
}

/// Hash of the subtree made of `data`, which starts at chunk `start_chunk`.
pub(crate) fn hash_subtree(start_chunk: u64, data: &[u8], is_root: bool) -> blake3::Hash {
    if is_root {
        blake3::hash(data)
    } else {
        let mut hasher = blake3::Hasher::new();
        hasher.set_input_offset(start_chunk * 1024);
        hasher.update(data);
        blake3::Hash::from(hasher.finalize_non_root())
    }
}

/// Hash of a parent node from its two children.
pub(crate) fn parent_cv(left: &blake3::Hash, right: &blake3::Hash, is_root: bool) -> blake3::Hash {
    let (l, r) = (left.as_bytes(), right.as_bytes());
    if is_root {
        merge_subtrees_root(l, r, Mode::Hash)
    } else {
        blake3::Hash::from(merge_subtrees_non_root(l, r, Mode::Hash))
    }
}

/// The ranges a response really covers when `requested` is asked of a blob of `size`.
///
/// Both sides compute this, so that they walk the same tree nodes in the same order:
/// anything at or past the end means "the last chunk group" (so a requester that does not
/// know the size yet can ask for a size proof), and every range is widened to whole chunk
/// groups, because the outboard stores nothing below a group. The last range is open-ended
/// when it reaches the last group.
pub fn canonical_ranges(requested: &ChunkRanges, size: u64) -> ChunkRanges {
    if requested.is_empty() {
        return ChunkRanges::empty();
    }
    let n = chunks(size).0;
    if n <= CHUNKS_PER_GROUP {
        // One chunk group (or the empty blob): the only thing to send is all of it.
        return ChunkRanges::all();
    }
    let last_group = (n - 1) / CHUNKS_PER_GROUP * CHUNKS_PER_GROUP;
    let mut out = ChunkRanges::empty();
    let bounds = requested.boundaries();
    for pair in bounds.chunks(2) {
        let start = pair[0].0.min(n - 1);
        let end = pair.get(1).map_or(n, |e| e.0.min(n)).max(start + 1);
        let start = start / CHUNKS_PER_GROUP * CHUNKS_PER_GROUP;
        let end = end.div_ceil(CHUNKS_PER_GROUP) * CHUNKS_PER_GROUP;
        if end > last_group {
            out |= ChunkRanges::from(ChunkNum(start)..);
        } else {
            out |= ChunkRanges::from(ChunkNum(start)..ChunkNum(end));
        }
    }
    out
}

/// The chunk range that a verified leaf covers, for the verified-ranges bookkeeping.
pub(crate) fn leaf_chunks(offset: u64, len: usize) -> ChunkRanges {
    let start = ChunkNum(offset / 1024);
    let end = ChunkNum((offset + len as u64).div_ceil(1024));
    if len == 0 {
        // The empty blob: one empty leaf, which proves the size is zero.
        return ChunkRanges::empty();
    }
    ChunkRanges::from(start..end)
}

/// A range set as half-open `(start, end)` chunk pairs, `u64::MAX` ending an open range
/// (the form the wire and the persistent store use).
pub(crate) fn ranges_to_pairs(ranges: &ChunkRanges) -> Vec<(u64, u64)> {
    ranges
        .boundaries()
        .chunks(2)
        .map(|p| (p[0].0, p.get(1).map_or(u64::MAX, |e| e.0)))
        .collect()
}

/// The inverse of [`ranges_to_pairs`]; empty pairs are skipped.
pub(crate) fn pairs_to_ranges(pairs: impl IntoIterator<Item = (u64, u64)>) -> ChunkRanges {
    let mut out = ChunkRanges::empty();
    for (start, end) in pairs {
        if end == u64::MAX {
            out |= ChunkRanges::from(ChunkNum(start)..);
        } else if start < end {
            out |= ChunkRanges::from(ChunkNum(start)..ChunkNum(end));
        }
    }
    out
}

/// Every chunk of a blob of `size` bytes.
pub fn all_chunks(size: u64) -> ChunkRanges {
    ChunkRanges::from(ChunkNum(0)..chunks(size))
}

/// A blob's pre-order outboard: the hash pairs of every tree node above the chunk groups.
///
/// Together with the data it lets a provider prove any range of the blob to a requester
/// that only knows the [`BlobId`].
#[derive(Clone, PartialEq, Eq)]
pub struct Outboard {
    id: BlobId,
    size: u64,
    data: Vec<u8>,
}

impl std::fmt::Debug for Outboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outboard")
            .field("id", &self.id)
            .field("size", &self.size)
            .field("bytes", &self.data.len())
            .finish()
    }
}

impl Outboard {
    /// Hashes `content` and builds its outboard in one pass.
    ///
    /// ```
    /// use sinew_core::blob::{BlobId, Outboard};
    /// let content = vec![7u8; 100_000];
    /// let outboard = Outboard::create(&content);
    /// assert_eq!(outboard.id(), BlobId::of(&content));
    /// assert_eq!(outboard.size(), 100_000);
    /// ```
    pub fn create(content: &[u8]) -> Self {
        let built: Result<Self, std::convert::Infallible> =
            Self::build(content.len() as u64, |start, len, start_chunk, is_root| {
                let start = start as usize;
                Ok(hash_subtree(
                    start_chunk,
                    &content[start..start + len],
                    is_root,
                ))
            });
        match built {
            Ok(outboard) => outboard,
            Err(never) => match never {},
        }
    }

    /// Reads `size` bytes from `reader` once, in order, hashing them and building the
    /// outboard; every chunk group read is also handed to `sink` (to copy the content
    /// somewhere while it is hashed). Memory: one chunk group plus the outboard (0.4 % of
    /// `size`), whatever the size.
    ///
    /// Fails with [`std::io::ErrorKind::UnexpectedEof`] if the reader ends early.
    ///
    /// ```
    /// use sinew_core::blob::{BlobId, Outboard};
    /// let content = vec![3u8; 70_000];
    /// let mut copy = Vec::new();
    /// let outboard = Outboard::create_from_reader(70_000, &content[..], |group| {
    ///     copy.extend_from_slice(group);
    ///     Ok(())
    /// })?;
    /// assert_eq!(outboard.id(), BlobId::of(&content));
    /// assert_eq!(copy, content);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn create_from_reader(
        size: u64,
        mut reader: impl std::io::Read,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<Self> {
        let mut group = vec![0u8; CHUNK_GROUP_BYTES as usize];
        Self::build(size, |_, len, start_chunk, is_root| {
            let bytes = &mut group[..len];
            reader.read_exact(bytes)?;
            sink(bytes)?;
            Ok(hash_subtree(start_chunk, bytes, is_root))
        })
    }

    /// Walks the tree of a blob of `size` bytes in post-order; `hash_leaf(start byte, len,
    /// start chunk, is_root)` hashes each chunk group, called in content order.
    fn build<E>(
        size: u64,
        mut hash_leaf: impl FnMut(u64, usize, u64, bool) -> Result<blake3::Hash, E>,
    ) -> Result<Self, E> {
        let tree = tree(size);
        let mut data = vec![0u8; tree.outboard_size() as usize];
        let mut stack: Vec<blake3::Hash> = Vec::with_capacity(64);
        for item in tree.post_order_chunks_iter() {
            match item {
                BaoChunk::Parent { is_root, node, .. } => {
                    let right = stack
                        .pop()
                        .expect("post-order: a parent follows both children");
                    let left = stack
                        .pop()
                        .expect("post-order: a parent follows both children");
                    if let Some(offset) = tree.pre_order_offset(node) {
                        let at = offset as usize * PAIR_BYTES;
                        data[at..at + 32].copy_from_slice(left.as_bytes());
                        data[at + 32..at + 64].copy_from_slice(right.as_bytes());
                    }
                    stack.push(parent_cv(&left, &right, is_root));
                }
                BaoChunk::Leaf {
                    start_chunk,
                    size: len,
                    is_root,
                    ..
                } => {
                    stack.push(hash_leaf(
                        start_chunk.to_bytes(),
                        len,
                        start_chunk.0,
                        is_root,
                    )?);
                }
            }
        }
        let root = stack.pop().expect("a tree always has a root");
        Ok(Self {
            id: BlobId::from(root),
            size,
            data,
        })
    }

    /// Wraps stored outboard bytes; `None` if their length does not fit `size`.
    pub fn from_parts(id: BlobId, size: u64, data: Vec<u8>) -> Option<Self> {
        (data.len() as u64 == outboard_size(size)).then_some(Self { id, size, data })
    }

    /// The blob's id (the root hash).
    pub fn id(&self) -> BlobId {
        self.id
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The pre-order outboard bytes (64 bytes per stored node).
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// Consumes the outboard, returning its bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn outboard_root_is_blake3_hash() {
        for len in [
            0,
            1,
            1023,
            1024,
            1025,
            16383,
            16384,
            16385,
            100_000,
            1 << 20,
        ] {
            let d = data(len);
            let ob = Outboard::create(&d);
            assert_eq!(ob.id(), BlobId::of(&d), "len {len}");
            assert_eq!(ob.as_bytes().len() as u64, outboard_size(len as u64));
            let mut copy = Vec::new();
            let streamed = Outboard::create_from_reader(len as u64, &d[..], |g| {
                copy.extend_from_slice(g);
                Ok(())
            })
            .unwrap();
            assert_eq!(streamed, ob, "len {len}");
            assert_eq!(copy, d);
        }
    }

    #[test]
    fn verified_bytes_counts_the_short_last_chunk_by_its_length() {
        let size = 3 * 1024 + 5;
        assert_eq!(verified_bytes(&all_chunks(size), size), size);
        assert_eq!(verified_bytes(&ChunkRanges::from(ChunkNum(3)..), size), 5);
        assert_eq!(
            verified_bytes(&ChunkRanges::from(ChunkNum(1)..ChunkNum(2)), size),
            1024
        );
        assert_eq!(verified_bytes(&ChunkRanges::empty(), size), 0);
    }

    #[test]
    fn a_short_reader_is_an_error_not_a_wrong_id() {
        let d = data(50_000);
        let err = Outboard::create_from_reader(50_001, &d[..], |_| Ok(())).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn canonical_ranges_are_whole_groups() {
        let size = 40 * 1024; // 40 chunks: groups 0..16, 16..32, 32..40
        let r = canonical_ranges(&ChunkRanges::from(ChunkNum(3)..ChunkNum(5)), size);
        assert_eq!(r, ChunkRanges::from(ChunkNum(0)..ChunkNum(16)));
        let r = canonical_ranges(&ChunkRanges::from(ChunkNum(30)..ChunkNum(35)), size);
        assert_eq!(r, ChunkRanges::from(ChunkNum(16)..));
        // past the end means the last group: a size proof
        let r = canonical_ranges(&ChunkRanges::from(ChunkNum(u64::MAX / 2)..), size);
        assert_eq!(r, ChunkRanges::from(ChunkNum(32)..));
        let r = canonical_ranges(&ChunkRanges::empty(), size);
        assert!(r.is_empty());
    }

    #[test]
    fn every_parent_of_a_canonical_response_is_in_the_outboard() {
        for size in [0u64, 1, 16384, 16385, 40 * 1024, 1 << 20, (1 << 20) + 7] {
            let t = tree(size);
            for (s, e) in [(0u64, 1u64), (5, 40), (17, 18), (60, 1000), (0, u64::MAX)] {
                let req = ChunkRanges::from(ChunkNum(s)..ChunkNum(e));
                let ranges = canonical_ranges(&req, size);
                for item in bao_tree::iter::ResponseIter::new(t, ranges) {
                    if let BaoChunk::Parent { node, .. } = item {
                        assert!(
                            t.pre_order_offset(node).is_some(),
                            "size {size} node {node:?}"
                        );
                    }
                }
            }
        }
    }
}
