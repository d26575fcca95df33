//! The provider side: encodes the response to one range request from a blob store.
//!
//! The [`Encoder`] walks the same pre-order tree as the requester's
//! [`Decoder`](super::Decoder) and produces the response piece by piece, so a provider
//! never holds more than one chunk group of a response in memory and the node can stop
//! pulling pieces whenever the stream is not writable. Chunk groups are served zero-copy
//! from the store. With `validate` on, every group is checked against the outboard before
//! it leaves, so on-disk corruption is caught here and not blamed on us by the requester.

use bao_tree::blake3;
use bao_tree::iter::{BaoChunk, ResponseIter};
use bao_tree::{ChunkRanges, TreeNode};
use bytes::{Bytes, BytesMut};

use super::tree::{canonical_ranges, hash_subtree, leaf_chunks, parent_cv, tree, PAIR_BYTES};
use super::BlobId;
use crate::blob::store::{BlobStore, StoreError};

/// Why a response could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The store failed to read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Our own copy does not match its hashes: the store is corrupt for this blob.
    #[error("our copy of blob {id} is corrupt near byte {offset}: refusing to serve it")]
    Corrupt {
        /// The blob.
        id: BlobId,
        /// Where the mismatch was found.
        offset: u64,
    },
}

/// Produces the verified-streaming response for one request.
#[derive(Debug)]
pub struct Encoder {
    id: BlobId,
    size: u64,
    iter: ResponseIter,
    validate: bool,
    stack: Vec<blake3::Hash>,
    /// A piece taken from the walk but not sent yet: a leaf found while batching parents
    /// ([`Encoder::next_piece`]), or a piece that did not fit ([`Encoder::fill`]).
    pending_leaf: Option<BaoChunk>,
    sent: u64,
    /// The block of the outboard read last: (byte offset, bytes). Parents of neighbouring
    /// groups sit close together in the pre-order outboard, so one read serves many.
    outboard_block: Option<(u64, Bytes)>,
    /// Chunks already checked against the outboard (by an earlier response): with
    /// validation on, their groups are not hashed again.
    checked: ChunkRanges,
    /// Chunks this encoder hashed and found right.
    newly_checked: ChunkRanges,
}

/// The largest piece of a response (one chunk group): an [`Encoder::fill`] buffer of at
/// least this size always makes progress.
pub const FILL_MIN: usize = super::CHUNK_GROUP_BYTES as usize;

/// Bytes of outboard read at once (the parents of up to 64 MiB of data).
pub(crate) const OUTBOARD_READ: usize = 16 * 1024;

impl Encoder {
    /// Encoder for `requested` ranges of blob `id`, which has `size` bytes in the store.
    pub fn new(id: BlobId, size: u64, requested: &ChunkRanges, validate: bool) -> Self {
        let ranges = canonical_ranges(requested, size);
        Self {
            id,
            size,
            iter: ResponseIter::new(tree(size), ranges),
            validate,
            stack: vec![id.to_hash()],
            pending_leaf: None,
            sent: 0,
            outboard_block: None,
            checked: ChunkRanges::empty(),
            newly_checked: ChunkRanges::empty(),
        }
    }

    /// With validation on, skip hashing the chunk groups within `checked` (their bytes
    /// were checked against this blob's hashes before): parents are still checked on the
    /// way down. For a provider that serves the same blob again and again.
    pub fn with_checked(mut self, checked: ChunkRanges) -> Self {
        self.checked = checked;
        self
    }

    /// The chunks this encoder hashed and found right so far (for
    /// [`Encoder::with_checked`] of later responses); empties the record.
    pub fn take_newly_checked(&mut self) -> ChunkRanges {
        std::mem::replace(&mut self.newly_checked, ChunkRanges::empty())
    }

    /// The blob being served.
    pub fn id(&self) -> BlobId {
        self.id
    }

    /// The blob's size (sent to the requester before the encoding).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes produced so far.
    pub fn bytes_sent(&self) -> u64 {
        self.sent
    }

    /// The next piece of the response, or `None` when it is complete.
    ///
    /// Consecutive hash pairs are batched into one piece; a chunk group is its own piece.
    pub fn next_piece<S: BlobStore + ?Sized>(
        &mut self,
        store: &S,
    ) -> Result<Option<Bytes>, EncodeError> {
        let mut parents = BytesMut::new();
        loop {
            let item = match self.pending_leaf.take() {
                Some(leaf) => Some(leaf),
                None => self.iter.next(),
            };
            match item {
                None => break,
                Some(BaoChunk::Parent {
                    node,
                    is_root,
                    left,
                    right,
                    ..
                }) => {
                    let pair = self.read_pair(store, node)?;
                    self.check_pair(&pair, node, is_root, left, right)?;
                    parents.extend_from_slice(&pair);
                }
                Some(
                    leaf @ BaoChunk::Leaf {
                        start_chunk,
                        size,
                        is_root,
                        ..
                    },
                ) => {
                    if !parents.is_empty() {
                        self.pending_leaf = Some(leaf);
                        break;
                    }
                    let offset = start_chunk.to_bytes();
                    let data = store.read_data(&self.id, offset, size)?;
                    if data.len() != size {
                        return Err(self.corrupt(offset));
                    }
                    if self.validate {
                        let expected = self.stack.pop().expect("walk matches the stack");
                        if hash_subtree(start_chunk.0, &data, is_root) != expected {
                            return Err(self.corrupt(offset));
                        }
                    }
                    self.sent += size as u64;
                    return Ok(Some(data));
                }
            }
        }
        if parents.is_empty() {
            return Ok(None);
        }
        self.sent += parents.len() as u64;
        Ok(Some(parents.freeze()))
    }

    /// Writes the response into `out` from its start, piece after piece, while the next
    /// piece fits; returns how many bytes were written and whether the response is
    /// complete. A piece that does not fit is the first of the next call.
    ///
    /// Chunk groups are read from the store straight into `out` and checked there: one
    /// copy from the store per byte, none afterwards. The largest piece is one chunk group
    /// ([`FILL_MIN`] bytes): a shorter `out` may get nothing written.
    ///
    /// On an error, the pieces before the failing one are in `out` and may be sent: their
    /// length is how much [`Encoder::bytes_sent`] grew during the call.
    pub fn fill<S: BlobStore + ?Sized>(
        &mut self,
        store: &S,
        out: &mut [u8],
    ) -> Result<(usize, bool), EncodeError> {
        let mut at = 0;
        loop {
            let item = match self.pending_leaf.take() {
                Some(item) => item,
                None => match self.iter.next() {
                    Some(item) => item,
                    None => return Ok((at, true)),
                },
            };
            let room = out.len() - at;
            match item {
                BaoChunk::Parent { .. } if room < PAIR_BYTES => {
                    self.pending_leaf = Some(item);
                    return Ok((at, false));
                }
                BaoChunk::Leaf { size, .. } if room < size => {
                    self.pending_leaf = Some(item);
                    return Ok((at, false));
                }
                BaoChunk::Parent {
                    node,
                    is_root,
                    left,
                    right,
                    ..
                } => {
                    let pair = self.read_pair(store, node)?;
                    self.check_pair(&pair, node, is_root, left, right)?;
                    out[at..at + PAIR_BYTES].copy_from_slice(&pair);
                    at += PAIR_BYTES;
                    self.sent += PAIR_BYTES as u64;
                }
                BaoChunk::Leaf {
                    start_chunk,
                    size,
                    is_root,
                    ..
                } => {
                    let offset = start_chunk.to_bytes();
                    let group = &mut out[at..at + size];
                    store.read_data_into(&self.id, offset, group)?;
                    if self.validate {
                        let expected = self.stack.pop().expect("walk matches the stack");
                        let chunks = leaf_chunks(offset, size);
                        // (The empty blob's one leaf covers no chunk: always hashed.)
                        if chunks.is_empty() || !self.checked.is_superset(&chunks) {
                            if hash_subtree(start_chunk.0, group, is_root) != expected {
                                return Err(self.corrupt(offset));
                            }
                            self.newly_checked |= chunks;
                        }
                    }
                    at += size;
                    self.sent += size as u64;
                }
            }
        }
    }

    /// With validation on: checks a parent pair against the hash expected for its node and
    /// pushes the children still to be checked.
    fn check_pair(
        &mut self,
        pair: &[u8; PAIR_BYTES],
        node: TreeNode,
        is_root: bool,
        left: bool,
        right: bool,
    ) -> Result<(), EncodeError> {
        if !self.validate {
            return Ok(());
        }
        let l = blake3::Hash::from_slice(&pair[..32]).expect("32 bytes");
        let r = blake3::Hash::from_slice(&pair[32..]).expect("32 bytes");
        let expected = self.stack.pop().expect("walk matches the stack");
        if parent_cv(&l, &r, is_root) != expected {
            return Err(self.corrupt(node.chunk_range().start.to_bytes()));
        }
        if right {
            self.stack.push(r);
        }
        if left {
            self.stack.push(l);
        }
        Ok(())
    }

    fn read_pair<S: BlobStore + ?Sized>(
        &mut self,
        store: &S,
        node: TreeNode,
    ) -> Result<[u8; PAIR_BYTES], EncodeError> {
        let tree = tree(self.size);
        let at = tree
            .pre_order_offset(node)
            .expect("canonical ranges only walk nodes that the outboard stores")
            * PAIR_BYTES as u64;
        let cached = |block: &Option<(u64, Bytes)>| match block {
            Some((start, bytes))
                if at >= *start && at + PAIR_BYTES as u64 <= start + bytes.len() as u64 =>
            {
                let from = (at - start) as usize;
                Some(bytes.slice(from..from + PAIR_BYTES))
            }
            _ => None,
        };
        let bytes = match cached(&self.outboard_block) {
            Some(bytes) => bytes,
            None => {
                let len = (tree.outboard_size().saturating_sub(at) as usize)
                    .clamp(PAIR_BYTES, OUTBOARD_READ);
                self.outboard_block = Some((at, store.read_outboard(&self.id, at, len)?));
                cached(&self.outboard_block)
                    .ok_or_else(|| self.corrupt(node.chunk_range().start.to_bytes()))?
            }
        };
        let mut pair = [0u8; PAIR_BYTES];
        pair.copy_from_slice(&bytes);
        Ok(pair)
    }

    fn corrupt(&self, offset: u64) -> EncodeError {
        EncodeError::Corrupt {
            id: self.id,
            offset,
        }
    }
}
