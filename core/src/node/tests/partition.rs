//! Contexts across a [`Partition`] of the harness (the rule the simulator's partitions use):
//! each half goes on alone, a one-way partition lets only the first half through, and both
//! halves converge once it heals.

use super::contexts::{founded, heads, len, submit};
use super::*;
use crate::sync::ContextId;
use crate::testing::link::Partition;

/// Four members, all synced, then split into {0, 1} and {2, 3}.
fn split(seed: u64, partition: Partition) -> (World, ContextId) {
    let mut world = World::new(4, seed);
    let ctx = founded(&mut world, 4);
    world.drive();
    assert_eq!(
        len(&world, 3, &ctx),
        2,
        "the genesis and its key everywhere"
    );
    world.partition(partition);
    (world, ctx)
}

/// Heals the partition and waits for the heads digests to tell everyone what they miss.
fn heal_and_converge(world: &mut World, ctx: &ContextId) {
    world.heal_partition();
    let until = world.now() + world.node(0).sync_config().digest_interval * 2;
    world.run_until(until);
    world.drive();
    for i in 1..4 {
        assert_eq!(heads(world, i, ctx), heads(world, 0, ctx), "node {i}");
        assert_eq!(len(world, i, ctx), len(world, 0, ctx), "node {i}");
    }
}

#[test]
fn a_two_way_partition_keeps_each_half_to_itself_until_it_heals() {
    let (mut world, ctx) = split(41, Partition::two_way(2));
    for k in 0..10 {
        submit(&mut world, 0, &ctx, &format!("first half {k}"));
        submit(&mut world, 3, &ctx, &format!("second half {k}"));
    }
    world.drive();
    assert_eq!(len(&world, 1, &ctx), 12, "node 1 has node 0's writes only");
    assert_eq!(len(&world, 2, &ctx), 12, "node 2 has node 3's writes only");
    assert_ne!(heads(&world, 1, &ctx), heads(&world, 2, &ctx));
    // A heal of one pair across it waits for the partition's heal.
    world.heal(0, 3);
    world.drive();
    assert_eq!(len(&world, 0, &ctx), 12, "still apart");
    heal_and_converge(&mut world, &ctx);
    assert_eq!(len(&world, 0, &ctx), 22, "both halves' writes everywhere");
}

#[test]
fn a_one_way_partition_lets_only_the_first_half_through() {
    let (mut world, ctx) = split(42, Partition::one_way(2));
    for k in 0..10 {
        submit(&mut world, 0, &ctx, &format!("first half {k}"));
    }
    world.drive();
    assert_eq!(
        len(&world, 3, &ctx),
        12,
        "the first half's writes reach the second"
    );
    for k in 0..10 {
        submit(&mut world, 3, &ctx, &format!("second half {k}"));
    }
    world.drive();
    assert_eq!(len(&world, 2, &ctx), 22);
    assert_eq!(
        len(&world, 1, &ctx),
        12,
        "nothing comes back to the first half"
    );
    heal_and_converge(&mut world, &ctx);
    assert_eq!(len(&world, 0, &ctx), 22);
}
