//! `cargo run --release -p sinew-core --example blob_roundtrip -- <file>`
//!
//! Hashes a file, prints its blob id (the same 64 hex digits `b3sum` prints), then moves it
//! through Sinew's sans-IO provider and requester exactly as two nodes would — the requester
//! knowing only the id: a size probe first, then range requests, every 16 KiB chunk group
//! verified before it is written — and checks the copy is byte-identical.
//!
//! The file is read into memory: this example shows the verification path, not the disk
//! store (that comes with the persistent store).
#![allow(clippy::disallowed_methods)] // allowed: an example times itself with the wall clock

use std::process::ExitCode;
use std::time::Instant;

use bytes::Bytes;
use sinew_core::blob::store::{BlobStore, MemStore};
use sinew_core::blob::{download, BlobId, Download, Encoder};

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: blob_roundtrip <file>");
        return ExitCode::from(2);
    };
    let content = match std::fs::read(&path) {
        Ok(c) => Bytes::from(c),
        Err(err) => {
            eprintln!("cannot read {}: {err}", path.to_string_lossy());
            return ExitCode::from(1);
        }
    };
    match run(content) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(1)
        }
    }
}

fn run(content: Bytes) -> Result<(), Box<dyn std::error::Error>> {
    let size = content.len() as u64;
    let started = Instant::now();
    let mut provider = MemStore::new();
    let id = provider.add(content.clone());
    let hashed = started.elapsed();
    println!("{id}");
    eprintln!(
        "{size} bytes, id and outboard in {:.1} ms",
        hashed.as_secs_f64() * 1e3
    );
    debug_assert_eq!(id, BlobId::of(&content));

    let peer = libp2p_identity::Keypair::ed25519_from_bytes([1; 32])?
        .public()
        .to_peer_id();
    let mut requester = MemStore::new();
    let mut dl = Download::new(id, None, download::Config::default());
    dl.add_provider(peer);
    let started = Instant::now();
    let mut requests = 0;
    while !dl.is_complete() {
        let now = Instant::now();
        let request = dl
            .poll_request(now)
            .ok_or("the requester stopped asking before completing")?;
        requests += 1;
        // The provider's side: size header, then the encoded ranges, piece by piece.
        let mut encoder = Encoder::new(id, size, &request.ranges, true);
        dl.handle_found(request.id, size, now);
        while let Some(piece) = encoder.next_piece(&provider)? {
            dl.handle_data(request.id, piece, now);
            while let Some(event) = dl.poll_event() {
                match event {
                    download::Event::SizeProven { size } => requester.begin_partial(&id, size)?,
                    download::Event::Pair { offset, pair } => {
                        requester.write_pair(&id, offset, &pair)?
                    }
                    download::Event::Data { offset, data } => {
                        requester.write_verified(&id, offset, &data)?
                    }
                    download::Event::ProviderDropped { reason, .. } => {
                        return Err(format!("provider dropped: {reason}").into())
                    }
                    _ => {}
                }
            }
        }
        dl.handle_closed(request.id);
    }
    let elapsed = started.elapsed();
    let copy = requester
        .get(&id)
        .ok_or("the requester's copy is not complete")?;
    if copy != content {
        return Err("the copy differs from the original".into());
    }
    eprintln!(
        "streamed and verified in {requests} requests, {:.1} ms ({:.0} MiB/s): copy is byte-identical",
        elapsed.as_secs_f64() * 1e3,
        size as f64 / (1 << 20) as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    Ok(())
}
