//! Protocol ids: the names under which Sinew's streams are negotiated (`/sinew/blob/1`).
//!
//! libp2p picks a stream's protocol by id before a single Sinew byte is exchanged, so the
//! id carries a version of its own: a peer that only speaks `/sinew/blob/2` is never handed
//! a `/sinew/blob/1` stream. Every id this build knows is a constant holding its full
//! string, so [`ProtocolId::as_str`] returns the `&'static str` that libp2p's
//! `StreamProtocol::new` wants.

use std::fmt;
use std::str::FromStr;

use super::Error;

/// The Kademlia DHT protocol id. It follows libp2p-kad's semver-shaped convention, so it is
/// a plain string rather than a [`ProtocolId`].
pub const KAD_PROTOCOL: &str = "/sinew/kad/1.0.0";

const PREFIX: &str = "/sinew/";

/// A versioned Sinew stream protocol, displayed as `/sinew/<name>/<version>`.
///
/// ```
/// use sinew_core::wire::ProtocolId;
///
/// assert_eq!(ProtocolId::BLOB.as_str(), "/sinew/blob/1");
/// assert_eq!("/sinew/sync/1".parse::<ProtocolId>()?, ProtocolId::SYNC);
/// assert!("/sinew/blob/2".parse::<ProtocolId>().is_err()); // well-formed, but unknown
/// # Ok::<(), sinew_core::wire::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolId {
    full: &'static str,
    name: &'static str,
    version: u32,
}

impl ProtocolId {
    /// Blob transfer, version 1.
    pub const BLOB: ProtocolId = ProtocolId {
        full: "/sinew/blob/1",
        name: "blob",
        version: 1,
    };
    /// Context synchronisation, version 1.
    pub const SYNC: ProtocolId = ProtocolId {
        full: "/sinew/sync/1",
        name: "sync",
        version: 1,
    };
    /// Every protocol id this build knows.
    pub const ALL: &'static [ProtocolId] = &[ProtocolId::BLOB, ProtocolId::SYNC];

    /// The full id, e.g. `/sinew/blob/1`.
    pub const fn as_str(&self) -> &'static str {
        self.full
    }

    /// The protocol's name, e.g. `blob`.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The protocol's version, e.g. `1`.
    pub const fn version(&self) -> u32 {
        self.version
    }
}

impl fmt::Display for ProtocolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.full)
    }
}

impl FromStr for ProtocolId {
    type Err = Error;

    /// Parses `/sinew/<name>/<version>` and returns the matching known id.
    ///
    /// `<name>` is lowercase ASCII letters, digits and `-`; `<version>` a decimal `u32`
    /// without leading zeros. A well-formed id this build does not know is
    /// [`Error::UnknownProtocol`], anything else [`Error::InvalidProtocolId`].
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason: &'static str| Error::InvalidProtocolId {
            got: s.chars().take(80).collect(),
            reason,
        };
        let rest = s
            .strip_prefix(PREFIX)
            .ok_or_else(|| invalid("a Sinew protocol id starts with \"/sinew/\""))?;
        let (name, version) = rest
            .split_once('/')
            .ok_or_else(|| invalid("expected /sinew/<name>/<version>"))?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid(
                "the name is lowercase ASCII letters, digits and '-', and not empty",
            ));
        }
        let well_formed_number = !version.is_empty()
            && version.bytes().all(|b| b.is_ascii_digit())
            && (version == "0" || !version.starts_with('0'));
        let version: u32 = version
            .parse()
            .ok()
            .filter(|_| well_formed_number)
            .ok_or_else(|| invalid("the version is a decimal integer without leading zeros"))?;
        Self::ALL
            .iter()
            .find(|p| p.name == name && p.version == version)
            .copied()
            .ok_or_else(|| Error::UnknownProtocol {
                name: name.to_owned(),
                version,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_consistent_and_parse_to_themselves() {
        for p in ProtocolId::ALL {
            assert_eq!(p.as_str(), format!("/sinew/{}/{}", p.name(), p.version()));
            assert_eq!(p.to_string().parse::<ProtocolId>(), Ok(*p));
        }
        assert_eq!(ProtocolId::BLOB.as_str(), "/sinew/blob/1");
        assert_eq!(ProtocolId::SYNC.as_str(), "/sinew/sync/1");
        assert_eq!(KAD_PROTOCOL, "/sinew/kad/1.0.0");
    }

    #[test]
    fn malformed_ids_are_refused_clearly() {
        for bad in [
            "",
            "/sinew/",
            "/sinew/blob",
            "/sinew/blob/",
            "/sinew//1",
            "/sinew/Blob/1",
            "/sinew/blob/01",
            "/sinew/blob/1/2",
            "/sinew/blob/+1",
            "/sinew/blob/4294967296",
            "/ipfs/kad/1.0.0",
            KAD_PROTOCOL,
        ] {
            let err = bad.parse::<ProtocolId>().expect_err(bad);
            assert!(
                matches!(err, Error::InvalidProtocolId { .. }),
                "{bad}: {err:?}"
            );
            assert!(err.to_string().contains("invalid Sinew protocol id"));
        }
    }

    #[test]
    fn unknown_but_well_formed_names_the_protocol() {
        let err = "/sinew/blob/2"
            .parse::<ProtocolId>()
            .expect_err("not known");
        assert_eq!(
            err,
            Error::UnknownProtocol {
                name: "blob".into(),
                version: 2
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains("/sinew/blob/2") && msg.contains("/sinew/blob/1"),
            "{msg}"
        );
        assert!("/sinew/gossip-x/0".parse::<ProtocolId>().is_err());
    }
}
