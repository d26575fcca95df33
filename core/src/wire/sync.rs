//! The messages of `/sinew/sync/1`, a context's catch-up session (spoken by
//! `crate::sync::session`).
//!
//! 1. requester → responder: [`SyncHello`] (the context, the requester's membership proof,
//!    what it shows it knows — heads with skip ancestors — and a byte credit);
//! 2. responder → requester: [`SyncPlan`] (how many transactions and bytes are coming);
//! 3. responder → requester: [`SyncBatch`](super::Message::SyncBatch)es in causal order, within the credit, which the
//!    requester re-grants with [`SyncCredit`](super::Message::SyncCredit) as batches become durable;
//! 4. both: [`SyncDone`](super::Message::SyncDone) with their heads; a mismatch is an error, never success.
//!
//! When the requester cannot show a frontier (too many heads, or none of what it showed is
//! known to the responder), step 2 is preceded by rounds of range-based set
//! reconciliation ([`RangeList`], `crate::sync::reconcile`).
//!
//! Every list is checked against its limit before anything is read or allocated.

use std::io::{Read, Write};

use borsh::{BorshDeserialize, BorshSerialize};

use super::{invalid_data, Error};

/// Transaction ids a [`SyncHello`] or [`SyncDone`](super::Message::SyncDone) lists at most (64 heads with 24 skip
/// ancestors each, and room to spare).
pub const MAX_SYNC_IDS: usize = 2048;
/// Transactions in one [`SyncBatch`](super::Message::SyncBatch) at most.
pub const MAX_BATCH_TXS: usize = 1024;
/// Bytes of one encoded transaction inside a batch at most (`sync::MAX_TX_BYTES`).
pub const MAX_BATCH_TX_BYTES: usize = crate::sync::MAX_TX_BYTES;

/// A list of transaction ids, at most [`MAX_SYNC_IDS`].
#[derive(Debug, Clone, PartialEq, Eq, Default, BorshSerialize)]
pub struct TxIdList(Vec<[u8; 32]>);

impl TxIdList {
    /// `ids`, if there are at most [`MAX_SYNC_IDS`].
    pub fn new(ids: Vec<[u8; 32]>) -> Result<Self, Error> {
        if ids.len() > MAX_SYNC_IDS {
            return Err(Error::TooMany {
                what: "transaction ids",
                count: ids.len(),
                max: MAX_SYNC_IDS,
            });
        }
        Ok(Self(ids))
    }

    /// The ids.
    pub fn ids(&self) -> &[[u8; 32]] {
        &self.0
    }
}

impl BorshDeserialize for TxIdList {
    fn deserialize_reader<R: Read>(reader: &mut R) -> std::io::Result<Self> {
        let count = usize::try_from(u32::deserialize_reader(reader)?).unwrap_or(usize::MAX);
        if count > MAX_SYNC_IDS {
            return Err(invalid_data(Error::TooMany {
                what: "transaction ids",
                count,
                max: MAX_SYNC_IDS,
            }));
        }
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            ids.push(<[u8; 32]>::deserialize_reader(reader)?);
        }
        Ok(Self(ids))
    }
}

/// Encoded transactions (`sync::SignedTx::encode`), at most [`MAX_BATCH_TXS`] of at most
/// [`MAX_BATCH_TX_BYTES`] each; the whole message stays within the frame limit.
#[derive(Debug, Clone, PartialEq, Eq, Default, BorshSerialize)]
pub struct TxBatch(Vec<Vec<u8>>);

impl TxBatch {
    /// `txs`, if within the limits.
    pub fn new(txs: Vec<Vec<u8>>) -> Result<Self, Error> {
        if txs.len() > MAX_BATCH_TXS {
            return Err(Error::TooMany {
                what: "transactions in a batch",
                count: txs.len(),
                max: MAX_BATCH_TXS,
            });
        }
        if let Some(big) = txs.iter().find(|t| t.len() > MAX_BATCH_TX_BYTES) {
            return Err(Error::TooLong {
                len: big.len(),
                max: MAX_BATCH_TX_BYTES,
            });
        }
        Ok(Self(txs))
    }

    /// The encoded transactions.
    pub fn txs(&self) -> &[Vec<u8>] {
        &self.0
    }

    /// The encoded transactions, taken out.
    pub fn into_txs(self) -> Vec<Vec<u8>> {
        self.0
    }
}

impl BorshDeserialize for TxBatch {
    fn deserialize_reader<R: Read>(reader: &mut R) -> std::io::Result<Self> {
        let count = usize::try_from(u32::deserialize_reader(reader)?).unwrap_or(usize::MAX);
        if count > MAX_BATCH_TXS {
            return Err(invalid_data(Error::TooMany {
                what: "transactions in a batch",
                count,
                max: MAX_BATCH_TXS,
            }));
        }
        let mut txs = Vec::with_capacity(count);
        for _ in 0..count {
            let len = usize::try_from(u32::deserialize_reader(reader)?).unwrap_or(usize::MAX);
            if len > MAX_BATCH_TX_BYTES {
                return Err(invalid_data(Error::TooLong {
                    len,
                    max: MAX_BATCH_TX_BYTES,
                }));
            }
            let mut tx = vec![0u8; len];
            reader.read_exact(&mut tx)?;
            txs.push(tx);
        }
        Ok(Self(txs))
    }
}

/// Opens a catch-up session.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SyncHello {
    /// The context.
    pub context: [u8; 32],
    /// The requester's member key.
    pub member: [u8; 32],
    /// The member's signature over the context and both peer ids (requester, responder):
    /// a proof that cannot be replayed to another peer.
    pub proof: [u8; 64],
    /// What the requester knows: its heads, each followed by its skip ancestors.
    pub shown: TxIdList,
    /// Bytes of transactions the responder may send before the next [`SyncCredit`](super::Message::SyncCredit).
    pub credit: u64,
    /// The requester cannot show a frontier (its DAG is too wide): reconcile the sets of
    /// ids ([`RangeList`]) before planning.
    pub reconcile: bool,
}

/// The responder's answer to a [`SyncHello`]: what is coming.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SyncPlan {
    /// Transactions that will follow.
    pub txs: u64,
    /// Their encoded bytes.
    pub bytes: u64,
    /// The context's application blob, if the requester should fetch it.
    pub app: Option<[u8; 32]>,
}

/// Writes the signed message a [`SyncHello`]'s proof covers.
pub fn hello_proof_message(
    context: &[u8; 32],
    requester: &[u8],
    responder: &[u8],
    out: &mut impl Write,
) -> std::io::Result<()> {
    out.write_all(b"sinew/sync/hello/1")?;
    out.write_all(context)?;
    (requester.len() as u32).serialize(out)?;
    out.write_all(requester)?;
    (responder.len() as u32).serialize(out)?;
    out.write_all(responder)
}

/// Items a [`RangeList`] holds at most.
pub const MAX_RANGE_ITEMS: usize = 1024;

/// A range of transaction ids: `lower` inclusive, `upper` exclusive (`None`: to the end of
/// the id space), in the byte order of the ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct IdRange {
    /// The first id in the range.
    pub lower: [u8; 32],
    /// The first id after it; `None`: the range runs to the end.
    pub upper: Option<[u8; 32]>,
}

impl IdRange {
    /// The whole id space.
    pub const ALL: IdRange = IdRange {
        lower: [0; 32],
        upper: None,
    };

    /// True if `id` is in the range.
    pub fn contains(&self, id: &[u8; 32]) -> bool {
        *id >= self.lower && self.upper.is_none_or(|u| *id < u)
    }
}

/// What one side says about a range in a reconciliation round.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize)]
pub enum RangeWhat {
    /// How many ids the sender holds in the range, and a BLAKE3 hash over them in order.
    Fingerprint {
        /// Ids held in the range.
        count: u64,
        /// The hash (`crate::sync::reconcile::fingerprint`).
        hash: [u8; 32],
    },
    /// Every id the sender holds in the range.
    Ids(Vec<[u8; 32]>),
    /// Send everything in the range (the requester gives up splitting it).
    All,
}

/// One round of a reconciliation: ranges and what the sender holds in each, at most
/// [`MAX_RANGE_ITEMS`] items and [`MAX_SYNC_IDS`] ids in all.
#[derive(Debug, Clone, PartialEq, Eq, Default, BorshSerialize)]
pub struct RangeList(Vec<(IdRange, RangeWhat)>);

impl RangeList {
    /// `items`, if within the limits.
    pub fn new(items: Vec<(IdRange, RangeWhat)>) -> Result<Self, Error> {
        if items.len() > MAX_RANGE_ITEMS {
            return Err(Error::TooMany {
                what: "reconciliation ranges",
                count: items.len(),
                max: MAX_RANGE_ITEMS,
            });
        }
        let ids: usize = items
            .iter()
            .map(|(_, w)| match w {
                RangeWhat::Ids(ids) => ids.len(),
                _ => 0,
            })
            .sum();
        if ids > MAX_SYNC_IDS {
            return Err(Error::TooMany {
                what: "transaction ids",
                count: ids,
                max: MAX_SYNC_IDS,
            });
        }
        Ok(Self(items))
    }

    /// The items.
    pub fn items(&self) -> &[(IdRange, RangeWhat)] {
        &self.0
    }
}

impl BorshDeserialize for RangeList {
    fn deserialize_reader<R: Read>(reader: &mut R) -> std::io::Result<Self> {
        let count = usize::try_from(u32::deserialize_reader(reader)?).unwrap_or(usize::MAX);
        if count > MAX_RANGE_ITEMS {
            return Err(invalid_data(Error::TooMany {
                what: "reconciliation ranges",
                count,
                max: MAX_RANGE_ITEMS,
            }));
        }
        let mut items = Vec::with_capacity(count);
        let mut ids_left = MAX_SYNC_IDS;
        for _ in 0..count {
            let range = IdRange::deserialize_reader(reader)?;
            let what = match u8::deserialize_reader(reader)? {
                0 => RangeWhat::Fingerprint {
                    count: u64::deserialize_reader(reader)?,
                    hash: <[u8; 32]>::deserialize_reader(reader)?,
                },
                1 => {
                    let n = usize::try_from(u32::deserialize_reader(reader)?).unwrap_or(usize::MAX);
                    if n > ids_left {
                        return Err(invalid_data(Error::TooMany {
                            what: "transaction ids",
                            count: n,
                            max: MAX_SYNC_IDS,
                        }));
                    }
                    ids_left -= n;
                    let mut ids = Vec::with_capacity(n);
                    for _ in 0..n {
                        ids.push(<[u8; 32]>::deserialize_reader(reader)?);
                    }
                    RangeWhat::Ids(ids)
                }
                2 => RangeWhat::All,
                tag => {
                    return Err(invalid_data(Error::UnknownVariant {
                        ty: "RangeWhat",
                        tag,
                    }))
                }
            };
            items.push((range, what));
        }
        Ok(Self(items))
    }
}
