//! Push-based verification of one provider response.
//!
//! A response is the pre-order walk of the tree restricted to the requested ranges: 64-byte
//! hash pairs for parents, raw data for chunk groups. The [`Decoder`] is fed whatever byte
//! pieces arrive from the network and hands out only items it has verified against the
//! blob's root hash: a chunk group is returned after its hash matched, never before, and
//! after the first mismatch nothing more is accepted from this response.
//!
//! Data is not copied when a chunk group arrives in one piece: the returned [`Bytes`] is a
//! slice of the piece that was pushed.

use std::collections::VecDeque;

use bao_tree::blake3;
use bao_tree::iter::{BaoChunk, ResponseIter};
use bao_tree::{ChunkNum, ChunkRanges, TreeNode};
use bytes::{Buf, Bytes, BytesMut};

use super::tree::{canonical_ranges, hash_subtree, parent_cv, tree, PAIR_BYTES};
use super::BlobId;

/// One verified piece of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A verified hash pair of an inner tree node, to be kept in the outboard.
    Parent {
        /// The tree node.
        node: TreeNode,
        /// Left and right child hashes, 64 bytes.
        pair: [u8; PAIR_BYTES],
    },
    /// A verified chunk group.
    Leaf {
        /// Byte offset in the blob.
        offset: u64,
        /// The verified bytes.
        data: Bytes,
    },
}

/// Why a response was rejected. Every variant means the provider sent something false.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A parent hash pair did not hash to what its parent promised.
    #[error("hash pair of tree node {node:?} does not match (lying or corrupt provider)")]
    ParentMismatch {
        /// The node whose pair was wrong.
        node: TreeNode,
    },
    /// A chunk group did not hash to what the tree promised.
    #[error("chunk group at byte {offset} does not match its hash (lying or corrupt provider)")]
    LeafMismatch {
        /// Byte offset of the group.
        offset: u64,
    },
    /// Bytes arrived after the last expected item.
    #[error("{extra} bytes after the end of the response")]
    TrailingBytes {
        /// How many extra bytes were buffered.
        extra: usize,
    },
    /// The response ended before every expected item arrived.
    #[error("response ended early: {missing} more bytes were expected")]
    Truncated {
        /// Bytes still expected for the current item (a lower bound for the rest).
        missing: usize,
    },
}

/// Verifies one response for `ranges` of a blob of claimed `size`.
///
/// The size is the provider's claim. Everything the decoder hands out is genuine whatever
/// the claim (hashes bind each byte to its position), but the size itself is proven only
/// once the last chunk group verified — see [`Decoder::proved_size`].
#[derive(Debug)]
pub struct Decoder {
    size: u64,
    iter: ResponseIter,
    /// Hashes still expected, top of the stack is the next item's.
    stack: Vec<blake3::Hash>,
    /// The item whose bytes we are waiting for.
    current: Option<BaoChunk>,
    inbox: VecDeque<Bytes>,
    inbox_len: usize,
    failed: Option<DecodeError>,
    last_chunk: ChunkNum,
    proved_size: bool,
    bytes_verified: u64,
}

impl Decoder {
    /// A decoder for the response to `requested` from a blob `id` whose claimed size is `size`.
    pub fn new(id: BlobId, size: u64, requested: &ChunkRanges) -> Self {
        let ranges = canonical_ranges(requested, size);
        let mut stack = Vec::with_capacity(64);
        let iter = ResponseIter::new(tree(size), ranges);
        stack.push(id.to_hash());
        Self {
            size,
            iter,
            stack,
            current: None,
            inbox: VecDeque::new(),
            inbox_len: 0,
            failed: None,
            last_chunk: ChunkNum(size.div_ceil(1024).saturating_sub(1)),
            proved_size: false,
            bytes_verified: 0,
        }
    }

    /// The size the provider claimed.
    pub fn claimed_size(&self) -> u64 {
        self.size
    }

    /// True once the chunk group holding the last byte verified: the claimed size is proven.
    pub fn proved_size(&self) -> bool {
        self.proved_size
    }

    /// Data bytes verified so far.
    pub fn bytes_verified(&self) -> u64 {
        self.bytes_verified
    }

    /// Bytes received but not yet verified.
    pub fn buffered(&self) -> usize {
        self.inbox_len
    }

    /// Adds bytes that arrived from the provider. Call [`Decoder::poll`] until `None` after it.
    pub fn push(&mut self, data: Bytes) {
        if data.is_empty() || self.failed.is_some() {
            return;
        }
        self.inbox_len += data.len();
        self.inbox.push_back(data);
    }

    /// The next verified item, `None` if more bytes are needed (or the response is complete,
    /// see [`Decoder::is_done`]), or the error that ends this response.
    pub fn poll(&mut self) -> Option<Result<Item, DecodeError>> {
        if let Some(err) = &self.failed {
            return Some(Err(err.clone()));
        }
        if self.current.is_none() {
            self.current = self.iter.next();
        }
        let Some(chunk) = self.current else {
            if self.inbox_len > 0 {
                return Some(Err(self.fail(DecodeError::TrailingBytes {
                    extra: self.inbox_len,
                })));
            }
            return None;
        };
        let needed = match chunk {
            BaoChunk::Parent { .. } => PAIR_BYTES,
            BaoChunk::Leaf { size, .. } => size,
        };
        if self.inbox_len < needed {
            return None;
        }
        let bytes = self.take(needed);
        self.current = None;
        let expected = self
            .stack
            .pop()
            .expect("the walk never yields more items than the stack holds hashes for");
        match chunk {
            BaoChunk::Parent {
                node,
                is_root,
                left,
                right,
                ..
            } => {
                let l = blake3::Hash::from_slice(&bytes[..32]).expect("32 bytes");
                let r = blake3::Hash::from_slice(&bytes[32..]).expect("32 bytes");
                if parent_cv(&l, &r, is_root) != expected {
                    return Some(Err(self.fail(DecodeError::ParentMismatch { node })));
                }
                if right {
                    self.stack.push(r);
                }
                if left {
                    self.stack.push(l);
                }
                let mut pair = [0u8; PAIR_BYTES];
                pair.copy_from_slice(&bytes);
                Some(Ok(Item::Parent { node, pair }))
            }
            BaoChunk::Leaf {
                start_chunk,
                is_root,
                size,
                ..
            } => {
                let offset = start_chunk.to_bytes();
                if hash_subtree(start_chunk.0, &bytes, is_root) != expected {
                    return Some(Err(self.fail(DecodeError::LeafMismatch { offset })));
                }
                let end_chunk = ChunkNum((offset + size as u64).div_ceil(1024));
                if self.size == 0 || (start_chunk <= self.last_chunk && self.last_chunk < end_chunk)
                {
                    self.proved_size = true;
                }
                self.bytes_verified += size as u64;
                Some(Ok(Item::Leaf {
                    offset,
                    data: bytes,
                }))
            }
        }
    }

    /// True when every expected item was verified and nothing extra arrived.
    pub fn is_done(&mut self) -> bool {
        if self.failed.is_some() || self.current.is_some() || self.inbox_len > 0 {
            return false;
        }
        self.current = self.iter.next();
        self.current.is_none()
    }

    /// Checks the response is complete when the provider closed its stream.
    pub fn finish(&mut self) -> Result<(), DecodeError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.is_done() {
            return Ok(());
        }
        let needed = match self.current {
            Some(BaoChunk::Parent { .. }) => PAIR_BYTES,
            Some(BaoChunk::Leaf { size, .. }) => size,
            None => 0,
        };
        Err(DecodeError::Truncated {
            missing: needed.saturating_sub(self.inbox_len).max(1),
        })
    }

    fn fail(&mut self, err: DecodeError) -> DecodeError {
        self.failed = Some(err.clone());
        self.inbox.clear();
        self.inbox_len = 0;
        err
    }

    /// Takes exactly `n` buffered bytes, without copying when one piece holds them all.
    fn take(&mut self, n: usize) -> Bytes {
        debug_assert!(self.inbox_len >= n);
        if n == 0 {
            return Bytes::new(); // the empty blob's single, empty leaf
        }
        self.inbox_len -= n;
        let front = self.inbox.front_mut().expect("inbox_len > 0 means a piece");
        if front.len() >= n {
            let out = front.split_to(n);
            if front.is_empty() {
                self.inbox.pop_front();
            }
            return out;
        }
        let mut out = BytesMut::with_capacity(n);
        while out.len() < n {
            let front = self
                .inbox
                .front_mut()
                .expect("inbox_len counted these bytes");
            let want = (n - out.len()).min(front.len());
            out.extend_from_slice(&front[..want]);
            front.advance(want);
            if front.is_empty() {
                self.inbox.pop_front();
            }
        }
        out.freeze()
    }
}
