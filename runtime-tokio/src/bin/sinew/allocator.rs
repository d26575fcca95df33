//! The node binary's malloc setting: glibc's mmap threshold pinned at 128 KiB.
//!
//! glibc starts with a 128 KiB threshold (blocks at least that large get their own
//! mapping, returned to the kernel when freed) and raises it to the size of every such
//! block freed, up to 32 MiB. After the first large buffer goes, a node's transient
//! buffers — sync batches and frames, decoded transactions, redb's dirty pages, 64 KiB to
//! 1 MiB each — are carved from the heap arenas, and the pages they leave behind stay
//! resident. Pinning the threshold keeps them in their own mappings: the catch-up
//! benchmark's requester peaks at ~12 MiB above idle for 100,000 transactions instead of
//! 13.5–17 MiB, at no measurable cost in rate.
//!
//! Only the `sinew` binary does this: a library must not change its host's allocator. An
//! application embedding Sinew gets the same by exporting `MALLOC_MMAP_THRESHOLD_=131072`
//! before it starts. A `MALLOC_MMAP_THRESHOLD_` already in the environment is left alone
//! (glibc applied it), and so is any allocator but glibc's.

/// The threshold the binary pins, in bytes: glibc's own starting value.
pub(crate) const MMAP_THRESHOLD: i32 = 128 * 1024;

/// What [`pin_mmap_threshold`] did, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pinned {
    /// The threshold is now [`MMAP_THRESHOLD`].
    Yes,
    /// The environment sets `MALLOC_MMAP_THRESHOLD_`: glibc uses that.
    FromEnvironment,
    /// glibc refused the value, or the allocator is not glibc's.
    No,
}

/// Pins glibc's mmap threshold at [`MMAP_THRESHOLD`]. Call it first thing in `main`,
/// before any thread starts.
pub(crate) fn pin_mmap_threshold() -> Pinned {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
        return Pinned::FromEnvironment;
    }
    if glibc::set_mmap_threshold(MMAP_THRESHOLD) {
        Pinned::Yes
    } else {
        Pinned::No
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    use std::ffi::c_int;

    /// `M_MMAP_THRESHOLD` in glibc's `malloc.h`.
    const M_MMAP_THRESHOLD: c_int = -3;

    extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }

    /// True if glibc took the value (it returns 1 on success, 0 on a refused value).
    #[allow(unsafe_code)] // the workspace's only unsafe block; see below
    pub(super) fn set_mmap_threshold(bytes: c_int) -> bool {
        // SAFETY: `mallopt` takes two integers and no pointer; glibc validates the value
        // (refusing it with 0) and takes the allocator's own lock, so it is sound to call
        // at any time, from any thread.
        unsafe { mallopt(M_MMAP_THRESHOLD, bytes) == 1 }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod glibc {
    /// Not glibc: nothing to set.
    pub(super) fn set_mmap_threshold(_bytes: i32) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On glibc, with no `MALLOC_MMAP_THRESHOLD_` in the environment, glibc takes the value
    /// (`mallopt` returned 1); elsewhere nothing is set.
    #[test]
    fn the_threshold_is_pinned_on_glibc_unless_the_environment_sets_it() {
        let expected = if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
            Pinned::FromEnvironment
        } else if cfg!(all(target_os = "linux", target_env = "gnu")) {
            Pinned::Yes
        } else {
            Pinned::No
        };
        assert_eq!(pin_mmap_threshold(), expected);
    }
}
