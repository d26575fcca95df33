//! The hello exchange: which protocol version and which features each peer speaks.
//!
//! The first message on every Sinew stream is a [`Hello`]. Both sides then call
//! [`negotiate`] on the pair: peers with the same major version agree on the lower minor
//! version and on the features both support, so an old and a new peer degrade to what
//! they share; peers with different major versions fail with an error that names both
//! versions, so nobody ever misparses a newer layout.
//!
//! The layout of `Hello` itself (two `u16`s and a `u64`) is frozen for wire format 1: later
//! additions travel as feature bits or as new messages, never as new `Hello` fields.

use std::fmt;

use borsh::{BorshDeserialize, BorshSerialize};

use super::Error;

/// A protocol version: peers with the same `major` can talk, `minor` adds compatible
/// extensions.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize,
)]
pub struct Version {
    /// Changes when old and new peers cannot understand each other.
    pub major: u16,
    /// Changes for backwards-compatible additions.
    pub minor: u16,
}

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: Version = Version { major: 1, minor: 0 };

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A set of optional protocol features, as a bitset.
///
/// Bits this build does not know are kept, not rejected: they are a newer peer's features,
/// and intersecting with our own set drops them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct Features(u64);

impl Features {
    /// Serving and fetching blobs (`/sinew/blob/1`).
    pub const BLOB: Features = Features(1 << 0);
    /// Context synchronisation (`/sinew/sync/1`).
    pub const SYNC: Features = Features(1 << 1);
    /// Peer discovery beyond the DHT.
    pub const DISCOVERY: Features = Features(1 << 2);
    /// The features this build implements.
    pub const SUPPORTED: Features = Features::BLOB;

    const NAMES: [(Features, &'static str); 3] = [
        (Features::BLOB, "BLOB"),
        (Features::SYNC, "SYNC"),
        (Features::DISCOVERY, "DISCOVERY"),
    ];

    /// No features.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// The set with exactly these bits, including bits this build does not know.
    pub const fn from_bits_retain(bits: u64) -> Self {
        Self(bits)
    }

    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether no feature is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every feature of `other` is in `self`.
    pub const fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }

    /// The features in both sets.
    #[must_use]
    pub const fn intersection(self, other: Features) -> Self {
        Self(self.0 & other.0)
    }

    /// The features in either set.
    #[must_use]
    pub const fn union(self, other: Features) -> Self {
        Self(self.0 | other.0)
    }

    /// The features of `self` that are not in `other`.
    #[must_use]
    pub const fn difference(self, other: Features) -> Self {
        Self(self.0 & !other.0)
    }
}

impl fmt::Display for Features {
    /// Known names joined by `|`, unknown bits as hex, `(none)` for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("(none)");
        }
        let mut rest = *self;
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| {
            let s = if first { "" } else { "|" };
            first = false;
            f.write_str(s)
        };
        for (feature, name) in Self::NAMES {
            if rest.contains(feature) {
                sep(f)?;
                f.write_str(name)?;
                rest = rest.difference(feature);
            }
        }
        if !rest.is_empty() {
            sep(f)?;
            write!(f, "{:#x}", rest.0)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Features {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Features({self})")
    }
}

/// The first message on a stream: what the sender speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Hello {
    /// The sender's protocol version.
    pub version: Version,
    /// The optional features the sender supports.
    pub features: Features,
}

impl Hello {
    /// This build's hello: [`PROTOCOL_VERSION`] and [`Features::SUPPORTED`].
    pub const fn ours() -> Self {
        Self {
            version: PROTOCOL_VERSION,
            features: Features::SUPPORTED,
        }
    }
}

/// What two peers agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Negotiated {
    /// The shared major version and the lower of the two minor versions.
    pub version: Version,
    /// The features both peers support.
    pub features: Features,
}

impl Negotiated {
    /// Checks that every feature in `feature` was agreed on.
    ///
    /// # Errors
    ///
    /// [`Error::MissingFeature`] naming what is missing.
    pub fn require(&self, feature: Features) -> Result<(), Error> {
        let missing = feature.difference(self.features);
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::MissingFeature {
                missing,
                negotiated: self.features,
            })
        }
    }
}

/// Agrees on a version and a feature set with a peer; both sides compute the same result.
///
/// # Errors
///
/// [`Error::IncompatibleVersion`] when the major versions differ.
///
/// ```
/// use sinew_core::wire::{negotiate, Features, Hello, Version};
///
/// let newer = Hello {
///     version: Version { major: 1, minor: 4 },
///     features: Features::BLOB.union(Features::SYNC),
/// };
/// let agreed = negotiate(&Hello::ours(), &newer)?;
/// assert_eq!(agreed.version, Version { major: 1, minor: 0 });
/// assert_eq!(agreed.features, Features::BLOB);
/// assert!(agreed.require(Features::SYNC).is_err());
/// # Ok::<(), sinew_core::wire::Error>(())
/// ```
pub fn negotiate(local: &Hello, remote: &Hello) -> Result<Negotiated, Error> {
    if local.version.major != remote.version.major {
        return Err(Error::IncompatibleVersion {
            local: local.version,
            remote: remote.version,
        });
    }
    Ok(Negotiated {
        version: Version {
            major: local.version.major,
            minor: local.version.minor.min(remote.version.minor),
        },
        features: local.features.intersection(remote.features),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(major: u16, minor: u16, features: Features) -> Hello {
        Hello {
            version: Version { major, minor },
            features,
        }
    }

    #[test]
    fn same_major_takes_lower_minor_and_shared_features() {
        let a = hello(1, 3, Features::BLOB.union(Features::SYNC));
        let b = hello(1, 1, Features::SYNC.union(Features::DISCOVERY));
        let ab = negotiate(&a, &b).expect("same major");
        let ba = negotiate(&b, &a).expect("same major");
        assert_eq!(ab, ba, "both sides agree");
        assert_eq!(ab.version, Version { major: 1, minor: 1 });
        assert_eq!(ab.features, Features::SYNC);
        assert_eq!(ab.require(Features::SYNC), Ok(()));
        assert_eq!(ab.require(Features::empty()), Ok(()));
    }

    #[test]
    fn different_major_names_both_versions() {
        let err =
            negotiate(&Hello::ours(), &hello(2, 3, Features::BLOB)).expect_err("different major");
        assert_eq!(
            err,
            Error::IncompatibleVersion {
                local: PROTOCOL_VERSION,
                remote: Version { major: 2, minor: 3 }
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains("we speak 1.0, the peer speaks 2.3"),
            "message: {msg}"
        );
    }

    #[test]
    fn missing_feature_is_named() {
        let agreed = negotiate(&Hello::ours(), &hello(1, 0, Features::SYNC)).expect("same major");
        assert_eq!(agreed.features, Features::empty());
        let err = agreed
            .require(Features::BLOB.union(Features::SYNC))
            .expect_err("nothing agreed");
        assert!(err.to_string().contains("BLOB|SYNC"), "{err}");
    }

    #[test]
    fn unknown_bits_are_kept_and_displayed() {
        let f = Features::from_bits_retain(0b1 | 1 << 40);
        assert_eq!(f.bits(), 0b1 | 1 << 40);
        assert_eq!(f.to_string(), "BLOB|0x10000000000");
        assert_eq!(f.intersection(Features::SUPPORTED), Features::BLOB);
        assert_eq!(Features::empty().to_string(), "(none)");
        assert_eq!(
            format!("{:?}", Features::BLOB.union(Features::DISCOVERY)),
            "Features(BLOB|DISCOVERY)"
        );
    }

    #[test]
    fn ours_and_display() {
        assert_eq!(PROTOCOL_VERSION.to_string(), "1.0");
        assert_eq!(Hello::ours().features, Features::BLOB);
        assert!(Version { major: 1, minor: 9 } < Version { major: 2, minor: 0 });
    }
}
