//! The quick start: one topic, bootstrap peers, messages in and out, graceful shutdown.
//!
//! ```sh
//! cargo run -p sinew-tokio --example quickstart            # prints its address
//! cargo run -p sinew-tokio --example quickstart -- <addr>  # in a second terminal
//! ```
//! Every line typed is published on the topic `chat`; messages from others are printed.
//! With `--once` (used by the tests) it publishes until one message went out, prints the
//! first message it receives, and exits; it gives up with an error after 30 s.

use tokio::io::AsyncBufReadExt;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let once = args.iter().any(|a| a == "--once");
    let peers = args
        .iter()
        .filter(|a| a.starts_with('/'))
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;

    // The ten lines of the quick start:
    let mut chat = sinew_tokio::QuickStart::new(sinew_tokio::Tokio, "chat")
        .listen("/ip4/127.0.0.1/tcp/0".parse()?)
        .bootstrap(peers)
        .start()
        .await?;
    for _ in 0..50 {
        let status = chat.client().network_status().await?;
        if let Some(addr) = status.listen_addrs.first() {
            eprintln!("listening on {addr}/p2p/{}", status.local_peer_id);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut ticker = tokio::time::interval(std::time::Duration::from_millis(200));
    let give_up = tokio::time::sleep(std::time::Duration::from_secs(if once {
        30
    } else {
        u64::MAX / 4
    }));
    tokio::pin!(give_up);
    let (mut sent, mut received) = (false, false);
    loop {
        if once && sent && received {
            break;
        }
        tokio::select! {
            message = chat.next_message() => {
                let Some(m) = message else { break };
                println!("{}: {}", m.from, String::from_utf8_lossy(&m.data));
                received = true;
            }
            line = lines.next_line(), if !once => match line? {
                Some(line) => if let Err(e) = chat.publish(line).await { eprintln!("not sent: {e}") },
                None => break,
            },
            () = &mut give_up => anyhow::bail!("no message exchanged within 30 s"),
            _ = ticker.tick() => {
                let status = chat.client().network_status().await?;
                if once && !sent && !status.connected_peers.is_empty() {
                    sent = chat.publish(format!("hello from {}", status.local_peer_id)).await.is_ok();
                }
            }
        }
    }
    chat.shutdown().await;
    Ok(())
}
