//! The quick-start API: one topic, bootstrap peers, messages in and out, shutdown.

use bytes::Bytes;
use futures::StreamExt;
use libp2p::{Multiaddr, PeerId};

use std::sync::Arc;

use super::{start, Adapter, Client, Config, Error, Event, EventStream, Options, StartError};

/// Builder of a [`QuickNode`] on a runtime adapter's runtime
/// (`QuickStart::new(sinew_tokio::Tokio, "chat")`, `QuickStart::new(sinew_smol::Smol, "chat")`).
pub struct QuickStart {
    adapter: Arc<dyn Adapter>,
    topic: String,
    config: Config,
}

impl std::fmt::Debug for QuickStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuickStart")
            .field("runtime", &self.adapter.name())
            .field("topic", &self.topic)
            .finish()
    }
}

/// A message received on the quick node's topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuickMessage {
    /// Its author.
    pub from: PeerId,
    /// The payload.
    pub data: Bytes,
}

impl QuickStart {
    /// A node on `adapter`'s runtime that will subscribe to `topic`.
    pub fn new(adapter: impl Adapter, topic: impl Into<String>) -> Self {
        Self {
            adapter: Arc::new(adapter),
            topic: topic.into(),
            config: Config::default(),
        }
    }

    /// Listens on `address` (repeatable).
    pub fn listen(mut self, address: Multiaddr) -> Self {
        self.config.listen.push(address);
        self
    }

    /// Dials and bootstraps from these peers (each address ends in `/p2p/<peer id>`).
    pub fn bootstrap(mut self, peers: Vec<Multiaddr>) -> Self {
        self.config.bootstrap.extend(peers);
        self
    }

    /// Starts the node and subscribes to the topic.
    pub async fn start(self) -> Result<QuickNode, StartError> {
        let (client, events) = start(self.adapter, self.config, Options::default())?;
        client
            .subscribe(&self.topic)
            .await
            .map_err(|e| StartError::Transport(e.to_string()))?;
        Ok(QuickNode {
            client,
            events,
            topic: self.topic,
        })
    }
}

/// A running quick-start node.
#[derive(Debug)]
pub struct QuickNode {
    client: Client,
    events: EventStream,
    topic: String,
}

impl QuickNode {
    /// Publishes on the topic. Errors (e.g. [`Error::NoPeers`]) mean it was not sent.
    pub async fn publish(&self, data: impl Into<Bytes>) -> Result<(), Error> {
        self.client.publish(&self.topic, data).await.map(|_| ())
    }

    /// The next message on the topic; `None` once the node stopped.
    pub async fn next_message(&mut self) -> Option<QuickMessage> {
        while let Some(event) = self.events.next().await {
            if let Event::Message {
                source,
                propagated_by,
                topic,
                data,
                ..
            } = event
            {
                if topic == self.topic {
                    return Some(QuickMessage {
                        from: source.unwrap_or(propagated_by),
                        data,
                    });
                }
            }
        }
        None
    }

    /// The full client, for everything else.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Stops the node.
    pub async fn shutdown(self) {
        let _ = self.client.shutdown().await;
    }
}
