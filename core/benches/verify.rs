//! `cargo bench -p sinew-core --bench verify`: checking signed transactions in batches
//! (`sync::check_batch`, what the catch-up pipeline will run on its workers) against
//! checking them one at a time (`SignedTx::check`), the same transactions, interleaved.
//!
//! `SINEW_BENCH_TXS` transactions (default 20 000, 256-byte payloads) by
//! `SINEW_BENCH_AUTHORS` authors (default 8) are signed once; each round checks all of
//! them one by one, then in batches of `SINEW_BENCH_BATCH` (default 256). The batch
//! verifier combines the signatures of one author, so its gain grows as authors get fewer
//! per batch: compare runs with few and many authors. The best of `ROUNDS` is kept for each and printed as
//! `bench verify-batch: <tx/s> tx/s (<ratio>x serial)`. Both use one core.
#![allow(clippy::disallowed_methods)] // allowed: a benchmark measures wall-clock time
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use libp2p_identity::ed25519;
use sinew_core::sync::{
    check_batch, AuthorKey, SeededBatchRng, SignedTx, Transaction, TxBody, TxId,
};

const ROUNDS: usize = 3;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n = env("SINEW_BENCH_TXS", 20_000);
    let batch = env("SINEW_BENCH_BATCH", 256).max(1);
    let authors = env("SINEW_BENCH_AUTHORS", 8).max(1);
    let keys: Vec<ed25519::Keypair> = (0..authors)
        .map(|i| {
            let mut secret = [0u8; 32];
            secret[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            ed25519::Keypair::from(ed25519::SecretKey::try_from_bytes(secret).expect("32 bytes"))
        })
        .collect();
    let context = TxId([1; 32]);
    let txs: Vec<SignedTx> = (0..n)
        .map(|i| {
            let key = &keys[i % keys.len()];
            Transaction {
                context,
                author: AuthorKey::from(&key.public()),
                seq: (i / keys.len()) as u64 + 1,
                parents: vec![TxId([(i % 251) as u8; 32])],
                body: TxBody::Payload(vec![(i % 256) as u8; 256]),
            }
            .sign(key)
        })
        .collect();
    println!(
        "{n} signed transactions (256-byte payloads) by {authors} authors, batches of {batch}, best of {ROUNDS}"
    );
    let mut serial = Duration::MAX;
    let mut batched = Duration::MAX;
    for round in 0..ROUNDS {
        let t = Instant::now();
        let ok = txs
            .iter()
            .filter(|tx| black_box(tx.check()).is_ok())
            .count();
        serial = serial.min(t.elapsed());
        assert_eq!(ok, n);
        let t = Instant::now();
        let mut ok = 0;
        for (k, chunk) in txs.chunks(batch).enumerate() {
            let rng = SeededBatchRng::new((round * 1_000_000 + k) as u64);
            ok += black_box(check_batch(chunk, rng))
                .iter()
                .filter(|v| v.is_ok())
                .count();
        }
        batched = batched.min(t.elapsed());
        assert_eq!(ok, n);
    }
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!("  serial: {:.0} tx/s", rate(serial));
    println!(
        "bench verify-batch: {:.0} tx/s ({:.2}x serial)",
        rate(batched),
        rate(batched) / rate(serial)
    );
}
