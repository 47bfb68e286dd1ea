//! Scoped memory limits (`MemoryLimitGuard`). Its own binary: the limit is
//! process-wide.

use mlx_tensor::{Array, Axes, Dtype, memory};

const MIB: usize = 1 << 20;

#[test]
fn limit_guards_lower_never_raise_overlap_and_restore() {
    let original = memory::set_memory_limit(usize::MAX / 4);
    memory::set_memory_limit(original);
    let current = || {
        let now = memory::set_memory_limit(0);
        memory::set_memory_limit(now);
        now
    };
    let outer = memory::MemoryLimitGuard::new(64 * MIB);
    assert_eq!(outer.previous(), original);
    assert_eq!(current(), 64 * MIB);
    // A guard asking for more keeps the lower limit; one asking for less
    // lowers it until it goes, in whatever order the guards are dropped.
    let higher = memory::MemoryLimitGuard::new(original);
    assert_eq!(current(), 64 * MIB);
    let lower = memory::MemoryLimitGuard::new(16 * MIB);
    assert_eq!(current(), 16 * MIB);
    drop(higher);
    assert_eq!(current(), 16 * MIB);
    // Work still runs under a limit below what it allocates.
    let big = Array::ones(&[8 * MIB as i32], Dtype::F32).unwrap();
    let total: f32 = big.sum(Axes::All, false).unwrap().item().unwrap();
    assert_eq!(total, 8.0 * MIB as f32);
    drop(outer);
    assert_eq!(current(), 16 * MIB);
    drop(lower);
    assert_eq!(current(), original);
}
