//! [`ProviderStore`]: Kademlia's record store for a Sinew node, with our own provider
//! records and remote peers' counted and capped apart.
//!
//! libp2p's `MemoryStore` has one `max_provided_keys` for every provider key it holds, its
//! own and those remote peers store on it with ADD_PROVIDER. A remote peer could therefore
//! fill it and make our own `announce_blob` fail. This wrapper keeps libp2p's store for
//! the records themselves and decides what enters it: keys we provide are bounded by
//! `Config::max_provided_blobs` alone, remote keys by
//! `Config::max_remote_provider_keys`, remote providers per key by
//! [`MAX_REMOTE_PROVIDERS_PER_KEY`] (one more slot is always free for our own record), and
//! each remote record keeps at most [`MAX_PROVIDER_ADDRESSES`] addresses of at most
//! [`MAX_PROVIDER_ADDRESS_BYTES`] bytes.
//!
//! libp2p removes an expired record only when its key is looked up, so when the remote
//! key cap is reached the store first drops the remote records that expired.

use std::borrow::{Borrow, Cow};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use libp2p::kad::store::{self, MemoryStore, MemoryStoreConfig, RecordStore};
use libp2p::kad::{ProviderRecord, Record, RecordKey, K_VALUE};
use libp2p::PeerId;

/// Remote providers kept per key; further remote providers of a full key are ignored
/// (as libp2p's store does). Kademlia's replication factor, 20.
pub const MAX_REMOTE_PROVIDERS_PER_KEY: usize = K_VALUE.get();

/// Addresses kept per remote provider record (the first ones that are short enough); the
/// rest are dropped. The provider's other addresses are learnt by identify once connected.
pub const MAX_PROVIDER_ADDRESSES: usize = 4;

/// Longest address kept in a remote provider record, in bytes of its binary encoding;
/// longer ones are dropped. Room for a `/dns/<253-byte name>/tcp/<port>/p2p/<id>`.
pub const MAX_PROVIDER_ADDRESS_BYTES: usize = 320;

/// The bytes of a key (the maps here are ordered by them).
fn bytes(key: &RecordKey) -> &[u8] {
    key.borrow()
}

/// The shell's clock, for the expiry of remote records (libp2p stamps them with it).
#[allow(clippy::disallowed_methods)] // allowed: the shell owns the clock
fn now() -> Instant {
    Instant::now() // allowed: the shell owns the clock
}

/// Kademlia's record store: libp2p's memory store with separate provider budgets for us
/// and for remote peers (see the module docs).
pub struct ProviderStore {
    inner: MemoryStore,
    local: PeerId,
    /// Keys (their bytes) we provide; at most `max_local_keys`.
    local_keys: BTreeSet<Vec<u8>>,
    /// Keys (their bytes) with remote providers, and how many (1 to
    /// MAX_REMOTE_PROVIDERS_PER_KEY); at most `max_remote_keys` keys.
    remote: BTreeMap<Vec<u8>, usize>,
    max_local_keys: usize,
    max_remote_keys: usize,
    /// No remote record expires before this; `None` if none expires.
    next_expiry: Option<Instant>,
}

impl std::fmt::Debug for ProviderStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderStore")
            .field("local", &self.local)
            .field("local_keys", &self.local_keys.len())
            .field("remote_keys", &self.remote.len())
            .finish_non_exhaustive()
    }
}

impl ProviderStore {
    /// A store for the node `local` providing at most `max_local_keys` keys itself and
    /// holding remote providers for at most `max_remote_keys` keys.
    pub fn new(local: PeerId, max_local_keys: usize, max_remote_keys: usize) -> Self {
        let inner = MemoryStore::with_config(
            local,
            MemoryStoreConfig {
                // Both budgets are enforced here.
                max_provided_keys: usize::MAX,
                // Room for every remote provider and our own.
                max_providers_per_key: MAX_REMOTE_PROVIDERS_PER_KEY + 1,
                ..MemoryStoreConfig::default()
            },
        );
        Self {
            inner,
            local,
            local_keys: BTreeSet::new(),
            remote: BTreeMap::new(),
            max_local_keys,
            max_remote_keys,
            next_expiry: None,
        }
    }

    /// Keys we provide, at most `max_local_keys`.
    pub fn local_keys(&self) -> usize {
        self.local_keys.len()
    }

    /// Keys with remote providers, at most `max_remote_keys`.
    pub fn remote_keys(&self) -> usize {
        self.remote.len()
    }

    fn is_provider(&self, key: &RecordKey, peer: &PeerId) -> bool {
        self.inner
            .providers(key)
            .iter()
            .any(|p| &p.provider == peer)
    }

    fn add_local(&mut self, record: ProviderRecord) -> store::Result<()> {
        if !self.local_keys.contains(bytes(&record.key))
            && self.local_keys.len() >= self.max_local_keys
        {
            return Err(store::Error::MaxProvidedKeys);
        }
        let key = record.key.to_vec();
        self.inner.add_provider(record)?;
        self.local_keys.insert(key);
        Ok(())
    }

    fn add_remote(&mut self, mut record: ProviderRecord) -> store::Result<()> {
        let mut kept = 0;
        record.addresses.retain(|a| {
            let keep = kept < MAX_PROVIDER_ADDRESSES && a.len() <= MAX_PROVIDER_ADDRESS_BYTES;
            kept += usize::from(keep);
            keep
        });
        let count = self.remote.get(bytes(&record.key)).copied().unwrap_or(0);
        let known = count > 0 && self.is_provider(&record.key, &record.provider);
        if !known {
            if count == 0 && self.remote.len() >= self.max_remote_keys {
                self.drop_expired(now());
                if self.remote.len() >= self.max_remote_keys {
                    return Err(store::Error::MaxProvidedKeys);
                }
            }
            if count >= MAX_REMOTE_PROVIDERS_PER_KEY {
                return Ok(());
            }
        }
        if let Some(at) = record.expires {
            self.next_expiry = Some(self.next_expiry.map_or(at, |t| t.min(at)));
        }
        let key = record.key.to_vec();
        self.inner.add_provider(record)?;
        if !known {
            *self.remote.entry(key).or_insert(0) += 1;
        }
        Ok(())
    }

    /// Removes the remote records that expired by `now` (if any can have).
    fn drop_expired(&mut self, now: Instant) {
        if self.next_expiry.is_none_or(|t| t > now) {
            return;
        }
        let mut next: Option<Instant> = None;
        let mut expired = Vec::new();
        for key in self.remote.keys() {
            for p in self.inner.providers(&RecordKey::from(key.clone())) {
                if p.provider == self.local {
                    continue;
                }
                match p.expires {
                    Some(at) if at <= now => expired.push((p.key, p.provider)),
                    Some(at) => next = Some(next.map_or(at, |t| t.min(at))),
                    None => {}
                }
            }
        }
        for (key, peer) in expired {
            self.remove_provider(&key, &peer);
        }
        self.next_expiry = next;
    }
}

impl RecordStore for ProviderStore {
    type RecordsIter<'a> = <MemoryStore as RecordStore>::RecordsIter<'a>;
    type ProvidedIter<'a> = <MemoryStore as RecordStore>::ProvidedIter<'a>;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        self.inner.get(k)
    }

    fn put(&mut self, r: Record) -> store::Result<()> {
        self.inner.put(r)
    }

    fn remove(&mut self, k: &RecordKey) {
        self.inner.remove(k);
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.inner.records()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> store::Result<()> {
        if record.provider == self.local {
            self.add_local(record)
        } else {
            self.add_remote(record)
        }
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.inner.providers(key)
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.inner.provided()
    }

    fn remove_provider(&mut self, key: &RecordKey, provider: &PeerId) {
        if !self.is_provider(key, provider) {
            return;
        }
        self.inner.remove_provider(key, provider);
        if *provider == self.local {
            self.local_keys.remove(bytes(key));
        } else if let Some(count) = self.remote.get_mut(bytes(key)) {
            *count -= 1;
            if *count == 0 {
                self.remote.remove(bytes(key));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use libp2p::Multiaddr;

    use super::*;

    fn key(i: u32) -> RecordKey {
        RecordKey::new(&i.to_be_bytes())
    }

    fn record(key: RecordKey, provider: PeerId, expires: Option<Instant>) -> ProviderRecord {
        ProviderRecord {
            key,
            provider,
            expires,
            addresses: Vec::new(),
        }
    }

    fn far() -> Option<Instant> {
        Some(now() + Duration::from_secs(3600))
    }

    #[test]
    fn remote_records_never_take_our_own_budget() {
        let local = PeerId::random();
        let mut store = ProviderStore::new(local, 2, 1000);
        let remote = PeerId::random();
        for i in 0..100 {
            store.add_provider(record(key(i), remote, far())).unwrap();
        }
        // Our own two keys fit even though 100 remote keys are stored, one of them ours too.
        store.add_provider(record(key(0), local, far())).unwrap();
        store.add_provider(record(key(1000), local, far())).unwrap();
        assert_eq!(store.local_keys(), 2);
        assert_eq!(store.provided().count(), 2);
        // The third of our own is refused, and re-adding one we have is not a new key.
        assert!(matches!(
            store.add_provider(record(key(1001), local, far())),
            Err(store::Error::MaxProvidedKeys)
        ));
        store.add_provider(record(key(0), local, far())).unwrap();
        // Stopping providing frees the slot.
        store.remove_provider(&key(0), &local);
        store.add_provider(record(key(1001), local, far())).unwrap();
        assert_eq!(store.remote_keys(), 100);
    }

    #[test]
    fn remote_keys_stop_at_the_cap_and_new_providers_of_known_keys_still_fit() {
        let mut store = ProviderStore::new(PeerId::random(), 10, 3);
        let (a, b) = (PeerId::random(), PeerId::random());
        for i in 0..3 {
            store.add_provider(record(key(i), a, far())).unwrap();
        }
        assert_eq!(store.remote_keys(), 3);
        assert!(matches!(
            store.add_provider(record(key(3), a, far())),
            Err(store::Error::MaxProvidedKeys)
        ));
        assert!(store.providers(&key(3)).is_empty());
        // A key already held takes another provider, and a known provider refreshes.
        store.add_provider(record(key(0), b, far())).unwrap();
        store.add_provider(record(key(0), a, far())).unwrap();
        assert_eq!(store.providers(&key(0)).len(), 2);
        // Removing every provider of a key frees it.
        store.remove_provider(&key(1), &a);
        assert_eq!(store.remote_keys(), 2);
        store.add_provider(record(key(3), a, far())).unwrap();
    }

    #[test]
    fn expired_remote_records_make_room_at_the_cap() {
        let mut store = ProviderStore::new(PeerId::random(), 10, 2);
        let a = PeerId::random();
        let past = Some(now() - Duration::from_secs(1));
        store.add_provider(record(key(0), a, past)).unwrap();
        store.add_provider(record(key(1), a, far())).unwrap();
        store.add_provider(record(key(2), a, far())).unwrap();
        assert!(
            store.providers(&key(0)).is_empty(),
            "the expired one made room"
        );
        assert_eq!(store.remote_keys(), 2);
        assert!(store.add_provider(record(key(3), a, far())).is_err());
    }

    #[test]
    fn a_key_keeps_max_remote_providers_and_always_has_room_for_ours() {
        let local = PeerId::random();
        let mut store = ProviderStore::new(local, 10, 10);
        let peers: Vec<PeerId> = (0..=MAX_REMOTE_PROVIDERS_PER_KEY)
            .map(|_| PeerId::random())
            .collect();
        for p in &peers {
            store.add_provider(record(key(0), *p, far())).unwrap();
        }
        // N kept, the N+1-th ignored.
        let held = store.providers(&key(0));
        assert_eq!(held.len(), MAX_REMOTE_PROVIDERS_PER_KEY);
        assert!(!held
            .iter()
            .any(|r| r.provider == peers[MAX_REMOTE_PROVIDERS_PER_KEY]));
        store.add_provider(record(key(0), local, far())).unwrap();
        assert_eq!(
            store.providers(&key(0)).len(),
            MAX_REMOTE_PROVIDERS_PER_KEY + 1
        );
        assert_eq!(store.provided().count(), 1);
    }

    #[test]
    fn a_remote_record_keeps_max_addresses_short_enough() {
        let mut store = ProviderStore::new(PeerId::random(), 10, 10);
        let a = PeerId::random();
        let short: Multiaddr = "/ip4/10.0.0.1/tcp/4001".parse().unwrap();
        let name = "a".repeat(250);
        let long: Multiaddr = format!("/dns/{name}/tcp/4001/p2p/{a}").parse().unwrap();
        let too_long: Multiaddr = format!("/dns/{name}/tcp/4001/dns/{name}").parse().unwrap();
        assert!(long.len() <= MAX_PROVIDER_ADDRESS_BYTES, "{}", long.len());
        assert!(too_long.len() > MAX_PROVIDER_ADDRESS_BYTES);
        let mut r = record(key(0), a, far());
        r.addresses = vec![too_long, long.clone()];
        r.addresses.extend(std::iter::repeat_n(
            short.clone(),
            MAX_PROVIDER_ADDRESSES + 1,
        ));
        store.add_provider(r).unwrap();
        let kept = &store.providers(&key(0))[0].addresses;
        assert_eq!(kept.len(), MAX_PROVIDER_ADDRESSES);
        assert_eq!(kept[0], long);
        assert!(kept[1..].iter().all(|x| *x == short));
    }
}
