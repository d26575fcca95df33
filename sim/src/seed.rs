//! Seeds: one root seed per run, and every other seed derived from it by name.
//!
//! A child seed is `BLAKE3-derive-key("sinew-sim seed v1", root ‖ label ‖ index)`, so the
//! seed of peer 17 does not depend on how many peers the run has, nor on the order in which
//! the simulator asks for seeds: adding a peer or a random draw somewhere else never
//! changes what an existing peer does.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// 32 bytes derived from `root` for (`label`, `index`).
pub fn child_bytes(root: u64, label: &str, index: u64) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("sinew-sim seed v1");
    hasher.update(&root.to_le_bytes());
    hasher.update(&(label.len() as u64).to_le_bytes());
    hasher.update(label.as_bytes());
    hasher.update(&index.to_le_bytes());
    *hasher.finalize().as_bytes()
}

/// A `u64` seed derived from `root` for (`label`, `index`).
pub fn child_u64(root: u64, label: &str, index: u64) -> u64 {
    let bytes = child_bytes(root, label, index);
    u64::from_le_bytes(bytes[..8].try_into().expect("8 of 32 bytes"))
}

/// A ChaCha8 generator seeded from `root` for (`label`, `index`).
pub fn child_rng(root: u64, label: &str, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::from_seed(child_bytes(root, label, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_differ_by_label_index_and_root() {
        let a = child_u64(1, "peer", 0);
        assert_eq!(a, child_u64(1, "peer", 0));
        assert_ne!(a, child_u64(1, "peer", 1));
        assert_ne!(a, child_u64(1, "net", 0));
        assert_ne!(a, child_u64(2, "peer", 0));
        // The label's length is hashed, so ("ab", …) and ("a", …) cannot collide by
        // shifting bytes between label and index.
        assert_ne!(child_bytes(1, "ab", 0), child_bytes(1, "a", 0));
    }
}
