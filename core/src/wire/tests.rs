//! Envelope tests: limits at N and N+1, typed errors, and property tests over every
//! [`Message`] variant.

use proptest::prelude::*;

use super::*;
use crate::blob::BlobId;

fn hello_bytes() -> Vec<u8> {
    to_bytes(&Message::Hello(Hello::ours()))
        .expect("small")
        .to_vec()
}

#[test]
fn envelope_layout_is_stable() {
    // Format 1, tag 0, major 1, minor 0 (u16 LE), features BLOB (u64 LE).
    assert_eq!(hello_bytes(), [1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    let busy = to_bytes(&Message::BlobResponse(BlobResponse::Busy)).expect("small");
    assert_eq!(&busy[..], &[1, 17, 2]);
    let bye = to_bytes(&Message::Goodbye {
        reason: Reason::truncating("ok"),
    })
    .expect("small");
    assert_eq!(&bye[..], &[1, 1, 2, 0, 0, 0, b'o', b'k']);
}

#[test]
fn message_len_at_n_and_n_plus_one() {
    // Exactly MAX_MESSAGE_LEN passes the length check and fails later, on content.
    let mut at = hello_bytes();
    let extra = MAX_MESSAGE_LEN - at.len();
    at.resize(MAX_MESSAGE_LEN, 0);
    assert_eq!(decode(&at), Err(Error::TrailingBytes { extra }));

    // One more byte is refused by length alone, before the format byte is looked at.
    let mut over = vec![0xff; MAX_MESSAGE_LEN + 1];
    assert_eq!(
        decode(&over),
        Err(Error::TooLong {
            len: MAX_MESSAGE_LEN + 1,
            max: MAX_MESSAGE_LEN
        })
    );
    over[0] = WIRE_FORMAT;
    assert!(matches!(decode(&over), Err(Error::TooLong { .. })));
}

#[test]
fn envelope_errors_are_typed() {
    assert_eq!(decode(&[]), Err(Error::Empty));
    assert_eq!(
        decode(&[2, 0]),
        Err(Error::UnknownFormat {
            got: 2,
            supported: WIRE_FORMAT
        })
    );
    assert_eq!(
        decode(&[WIRE_FORMAT, 200]),
        Err(Error::UnknownVariant {
            ty: "Message",
            tag: 200
        })
    );
    let mut trailing = hello_bytes();
    trailing.extend_from_slice(&[0, 0]);
    assert_eq!(decode(&trailing), Err(Error::TrailingBytes { extra: 2 }));
    let cut = hello_bytes();
    assert!(matches!(
        decode(&cut[..cut.len() - 1]),
        Err(Error::Malformed { .. })
    ));
    // Inner limits surface with their own variant through the envelope.
    let mut too_many = vec![WIRE_FORMAT, 16];
    too_many.extend_from_slice(&[0; 32]);
    too_many.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        decode(&too_many),
        Err(Error::TooManyRanges {
            count: u32::MAX as usize,
            max: MAX_RANGES_PER_REQUEST
        })
    );
}

#[test]
fn largest_request_fits_easily() {
    let ranges = (0..MAX_RANGES_PER_REQUEST as u64)
        .map(|i| (i * 10, i * 10 + 5))
        .collect();
    let msg = Message::BlobRequest(BlobRequest {
        id: BlobId::of(b"big"),
        ranges: ChunkRangeList::new(ranges).expect("at the limit"),
    });
    let bytes = to_bytes(&msg).expect("far below MAX_MESSAGE_LEN");
    assert_eq!(bytes.len(), 2 + 32 + 4 + 16 * MAX_RANGES_PER_REQUEST);
    assert_eq!(decode(&bytes), Ok(msg));
}

#[test]
fn encode_appends_to_existing_buffer() {
    let mut buf = BytesMut::from(&b"xyz"[..]);
    encode(&Message::BlobResponse(BlobResponse::NotFound), &mut buf).expect("small");
    assert_eq!(&buf[..], &[b'x', b'y', b'z', 1, 17, 1]);
}

fn arb_version() -> impl Strategy<Value = Version> {
    (any::<u16>(), any::<u16>()).prop_map(|(major, minor)| Version { major, minor })
}

fn arb_hello() -> impl Strategy<Value = Hello> {
    (arb_version(), any::<u64>()).prop_map(|(version, bits)| Hello {
        version,
        features: Features::from_bits_retain(bits),
    })
}

fn arb_reason() -> impl Strategy<Value = Reason> {
    ".{0,300}".prop_map(|s| Reason::truncating(&s))
}

fn arb_ranges() -> impl Strategy<Value = ChunkRangeList> {
    // Distinct sorted bounds taken in pairs are sorted, non-empty, non-overlapping ranges;
    // `adjacent` glues some of them together to cover touching ranges too.
    (
        prop::collection::btree_set(any::<u64>(), 0..64),
        any::<bool>(),
    )
        .prop_map(|(bounds, adjacent)| {
            let bounds: Vec<u64> = bounds.into_iter().collect();
            let mut ranges: Vec<(u64, u64)> =
                bounds.chunks_exact(2).map(|p| (p[0], p[1])).collect();
            if adjacent {
                for i in 1..ranges.len() {
                    ranges[i].0 = ranges[i - 1].1;
                }
            }
            ChunkRangeList::new(ranges).expect("valid by construction")
        })
}

fn arb_blob_response() -> impl Strategy<Value = BlobResponse> {
    prop_oneof![
        any::<u64>().prop_map(|size| BlobResponse::Found { size }),
        Just(BlobResponse::NotFound),
        Just(BlobResponse::Busy),
        arb_reason().prop_map(|reason| BlobResponse::Error { reason }),
    ]
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        arb_hello().prop_map(Message::Hello),
        arb_reason().prop_map(|reason| Message::Goodbye { reason }),
        (any::<[u8; 32]>(), arb_ranges()).prop_map(|(id, ranges)| {
            Message::BlobRequest(BlobRequest {
                id: BlobId::from_bytes(id),
                ranges,
            })
        }),
        arb_blob_response().prop_map(Message::BlobResponse),
        arb_sync_message(),
    ]
}

fn arb_ids() -> impl Strategy<Value = TxIdList> {
    prop::collection::vec(any::<[u8; 32]>(), 0..8).prop_map(|ids| TxIdList::new(ids).unwrap())
}

fn arb_sync_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            prop::collection::vec(any::<u8>(), 64),
            arb_ids(),
            any::<u64>()
        )
            .prop_map(|(context, member, proof, shown, credit)| {
                Message::SyncHello(SyncHello {
                    context,
                    member,
                    proof: proof.try_into().unwrap(),
                    shown,
                    credit,
                    reconcile: credit % 2 == 0,
                })
            }),
        prop::collection::vec(
            (
                any::<[u8; 32]>(),
                any::<Option<[u8; 32]>>(),
                prop_oneof![
                    (any::<u64>(), any::<[u8; 32]>())
                        .prop_map(|(count, hash)| RangeWhat::Fingerprint { count, hash }),
                    prop::collection::vec(any::<[u8; 32]>(), 0..4).prop_map(RangeWhat::Ids),
                    Just(RangeWhat::All),
                ]
            ),
            0..5
        )
        .prop_map(|items| {
            let items = items
                .into_iter()
                .map(|(lower, upper, what)| (IdRange { lower, upper }, what))
                .collect();
            Message::SyncRanges(RangeList::new(items).unwrap())
        }),
        (any::<u64>(), any::<u64>(), any::<Option<[u8; 32]>>())
            .prop_map(|(txs, bytes, app)| Message::SyncPlan(SyncPlan { txs, bytes, app })),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..6)
            .prop_map(|txs| Message::SyncBatch(TxBatch::new(txs).unwrap())),
        any::<u64>().prop_map(|bytes| Message::SyncCredit { bytes }),
        arb_ids().prop_map(|heads| Message::SyncDone { heads }),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(msg in arb_message()) {
        let bytes = to_bytes(&msg).expect("small");
        prop_assert_eq!(bytes[0], WIRE_FORMAT);
        prop_assert_eq!(decode(&bytes), Ok(msg));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&data);
    }

    #[test]
    fn arbitrary_bodies_never_panic(
        tag in prop::sample::select(vec![0u8, 1, 16, 17, 32, 33, 34, 35, 36, 2, 255]),
        body in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut data = vec![WIRE_FORMAT, tag];
        data.extend_from_slice(&body);
        if let Ok(msg) = decode(&data) {
            // Whatever decodes re-encodes to the very same bytes: the encoding is canonical.
            prop_assert_eq!(to_bytes(&msg).expect("small").to_vec(), data);
        }
    }

    #[test]
    fn mutated_messages_never_panic(
        msg in arb_message(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut data = to_bytes(&msg).expect("small").to_vec();
        for (at, byte) in flips {
            let i = at.index(data.len());
            data[i] = byte;
        }
        if let Ok(back) = decode(&data) {
            prop_assert_eq!(to_bytes(&back).expect("small").to_vec(), data);
        }
    }
}

#[test]
fn sync_lists_hold_at_their_limits_and_refuse_one_more_before_reading_it() {
    let ids = vec![[7u8; 32]; MAX_SYNC_IDS];
    let at = Message::SyncDone {
        heads: TxIdList::new(ids.clone()).unwrap(),
    };
    assert_eq!(decode(&to_bytes(&at).unwrap()), Ok(at));
    assert!(matches!(
        TxIdList::new(vec![[7u8; 32]; MAX_SYNC_IDS + 1]),
        Err(Error::TooMany { .. })
    ));
    // Declared one over the limit, with nothing behind it: refused from the count alone.
    let mut over = vec![WIRE_FORMAT, 36];
    over.extend_from_slice(&(MAX_SYNC_IDS as u32 + 1).to_le_bytes());
    assert!(matches!(decode(&over), Err(Error::TooMany { .. })));

    let batch = TxBatch::new(vec![vec![1u8]; MAX_BATCH_TXS]).unwrap();
    let msg = Message::SyncBatch(batch);
    assert_eq!(decode(&to_bytes(&msg).unwrap()), Ok(msg));
    assert!(matches!(
        TxBatch::new(vec![vec![1u8]; MAX_BATCH_TXS + 1]),
        Err(Error::TooMany { .. })
    ));
    let mut over = vec![WIRE_FORMAT, 34];
    over.extend_from_slice(&(MAX_BATCH_TXS as u32 + 1).to_le_bytes());
    assert!(matches!(decode(&over), Err(Error::TooMany { .. })));
    // One transaction at its byte limit passes; one byte more is refused from its length.
    let big = TxBatch::new(vec![vec![0u8; MAX_BATCH_TX_BYTES]]).unwrap();
    let msg = Message::SyncBatch(big);
    assert_eq!(decode(&to_bytes(&msg).unwrap()), Ok(msg));
    assert!(matches!(
        TxBatch::new(vec![vec![0u8; MAX_BATCH_TX_BYTES + 1]]),
        Err(Error::TooLong { .. })
    ));
    let mut over = vec![WIRE_FORMAT, 34];
    over.extend_from_slice(&1u32.to_le_bytes());
    over.extend_from_slice(&(MAX_BATCH_TX_BYTES as u32 + 1).to_le_bytes());
    assert!(matches!(decode(&over), Err(Error::TooLong { .. })));
}

#[test]
fn a_batch_carries_signed_transactions_that_decode_and_verify() {
    use crate::sync::{AuthorKey, Role, SignedTx, Transaction, TxBody, NO_CONTEXT};
    let key = libp2p_identity::ed25519::Keypair::from(
        libp2p_identity::ed25519::SecretKey::try_from_bytes([3; 32]).unwrap(),
    );
    let genesis = Transaction {
        context: NO_CONTEXT,
        author: AuthorKey::from(&key.public()),
        seq: 0,
        parents: vec![],
        body: TxBody::Genesis {
            members: vec![(AuthorKey::from(&key.public()), Role::Admin)],
            app: None,
        },
    }
    .sign(&key);
    let msg = Message::SyncBatch(TxBatch::new(vec![genesis.encode()]).unwrap());
    let Ok(Message::SyncBatch(batch)) = decode(&to_bytes(&msg).unwrap()) else {
        panic!("a batch");
    };
    let tx = SignedTx::decode(&batch.txs()[0]).unwrap();
    assert_eq!(tx.check(), Ok(genesis.id()));
}
