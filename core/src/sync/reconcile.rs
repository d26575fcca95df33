//! Range-based set reconciliation of transaction ids: the catch-up's fallback when the
//! requester cannot show a frontier (its DAG has more than
//! [`MAX_HELLO_HEADS`](super::MAX_HELLO_HEADS) heads) or none of what it showed is known to
//! the responder.
//!
//! Ids are BLAKE3 hashes, so ranges of the id space split them evenly. The responder opens
//! with a fingerprint of everything it holds; each side answers every range whose
//! fingerprint differs from its own by splitting its own ids in the range into
//! [`FANOUT`] parts (fingerprints again), or, once it holds at most [`LEAF_IDS`] there,
//! by listing them (requester) or sending them (responder). A range whose fingerprints
//! match is done. After O(log n) rounds the responder knows what the requester lacks and
//! the session goes on with its plan and batches as usual.
//!
//! A fingerprint is BLAKE3 over the count and the sorted ids — collision-resistant, never
//! an XOR or a sum that a peer could make match on purpose. The ranges of one message must
//! be sorted and disjoint, so a round costs each side at most one pass over its ids; a
//! session has at most [`MAX_ROUNDS`] rounds; a message at most
//! [`MAX_RANGE_ITEMS`] ranges and [`MAX_SYNC_IDS`] ids — when splitting would exceed that,
//! the requester asks for everything in the range ([`RangeWhat::All`]) and the responder
//! sends it: more transactions, never fewer.

use std::collections::BTreeSet;

use super::dag::Dag;
use super::session::SessionError;
use super::tx::TxId;
use crate::wire::{IdRange, RangeList, RangeWhat, MAX_RANGE_ITEMS, MAX_SYNC_IDS};

/// Parts a differing range is split into.
pub const FANOUT: usize = 16;
/// Ids in a range below which it is listed (or sent) instead of split.
pub const LEAF_IDS: usize = 32;
/// Reconciliation rounds a session may take; the next one ends it (16 rounds of
/// [`FANOUT`] reach single ids in 2^64 transactions).
pub const MAX_ROUNDS: u32 = 16;

/// BLAKE3 over the count and the ids, in order.
pub fn fingerprint(ids: &[TxId]) -> (u64, [u8; 32]) {
    let mut hasher = blake3::Hasher::new_derive_key("sinew/sync/range-fingerprint/1");
    hasher.update(&(ids.len() as u64).to_le_bytes());
    for id in ids {
        hasher.update(&id.0);
    }
    (ids.len() as u64, *hasher.finalize().as_bytes())
}

fn own_ids(dag: Option<&Dag>, range: &IdRange) -> Vec<TxId> {
    dag.map(|dag| dag.ids_in(range).collect())
        .unwrap_or_default()
}

/// `ids` (sorted, in `range`, at least `parts`) cut into `parts` ranges covering `range`.
fn split(ids: &[TxId], range: &IdRange, parts: usize) -> Vec<(IdRange, RangeWhat)> {
    let parts = parts.clamp(1, ids.len().max(1));
    let at = |i: usize| i * ids.len() / parts;
    (0..parts)
        .map(|i| {
            let lower = if i == 0 { range.lower } else { ids[at(i)].0 };
            let upper = if i + 1 == parts {
                range.upper
            } else {
                Some(ids[at(i + 1)].0)
            };
            let (count, hash) = fingerprint(&ids[at(i)..at(i + 1)]);
            (
                IdRange { lower, upper },
                RangeWhat::Fingerprint { count, hash },
            )
        })
        .collect()
}

/// Checks that the ranges of a message are each non-empty, sorted and disjoint.
fn check_ranges(list: &RangeList) -> Result<(), SessionError> {
    let mut floor: Option<[u8; 32]> = None;
    let mut open_ended = false;
    for (range, _) in list.items() {
        if open_ended
            || floor.is_some_and(|f| range.lower < f)
            || range.upper.is_some_and(|u| u <= range.lower)
        {
            return Err(SessionError::Unexpected(
                "reconciliation ranges out of order, overlapping or empty",
            ));
        }
        match range.upper {
            Some(u) => floor = Some(u),
            None => open_ended = true,
        }
    }
    Ok(())
}

/// The responder's opening: one fingerprint of everything it holds.
pub fn opening(dag: &Dag) -> RangeList {
    let ids: Vec<TxId> = dag.ids_in(&IdRange::ALL).collect();
    let (count, hash) = fingerprint(&ids);
    RangeList::new(vec![(IdRange::ALL, RangeWhat::Fingerprint { count, hash })]).expect("one item")
}

/// The requester's answer to a responder's round, against what it holds (`None`: nothing
/// yet).
pub fn answer(dag: Option<&Dag>, list: &RangeList) -> Result<RangeList, SessionError> {
    check_ranges(list)?;
    let mut out = Vec::new();
    let mut ids_left = MAX_SYNC_IDS;
    let items = list.items();
    for (i, (range, what)) in items.iter().enumerate() {
        let RangeWhat::Fingerprint { count, hash } = what else {
            return Err(SessionError::Unexpected(
                "a responder sends fingerprints only",
            ));
        };
        let own = own_ids(dag, range);
        if fingerprint(&own) == (*count, *hash) {
            continue;
        }
        // Room for every later range to get at least one item.
        let reserve = items.len() - i - 1;
        if own.len() <= LEAF_IDS
            && own.len() <= ids_left
            && out.len() + 1 + reserve <= MAX_RANGE_ITEMS
        {
            ids_left -= own.len();
            out.push((*range, RangeWhat::Ids(own.iter().map(|id| id.0).collect())));
        } else if own.len() > LEAF_IDS && out.len() + FANOUT + reserve <= MAX_RANGE_ITEMS {
            out.extend(split(&own, range, FANOUT));
        } else {
            out.push((*range, RangeWhat::All));
        }
    }
    Ok(RangeList::new(out).expect("built within the limits"))
}

/// The responder's answer to a requester's round: adds what the requester lacks to
/// `to_send` and returns the ranges still to compare (none: reconciliation is over).
pub fn respond(
    dag: &Dag,
    list: &RangeList,
    to_send: &mut BTreeSet<TxId>,
) -> Result<RangeList, SessionError> {
    check_ranges(list)?;
    let mut out = Vec::new();
    let items = list.items();
    for (i, (range, what)) in items.iter().enumerate() {
        let own = own_ids(Some(dag), range);
        match what {
            RangeWhat::Fingerprint { count, hash } => {
                if own.is_empty() || fingerprint(&own) == (*count, *hash) {
                    continue;
                }
                let reserve = items.len() - i - 1;
                if own.len() > LEAF_IDS && out.len() + FANOUT + reserve <= MAX_RANGE_ITEMS {
                    out.extend(split(&own, range, FANOUT));
                } else {
                    to_send.extend(own);
                }
            }
            RangeWhat::Ids(theirs) => {
                let theirs: BTreeSet<[u8; 32]> = theirs.iter().copied().collect();
                to_send.extend(own.into_iter().filter(|id| !theirs.contains(&id.0)));
            }
            RangeWhat::All => to_send.extend(own),
        }
    }
    Ok(RangeList::new(out).expect("built within the limits"))
}
