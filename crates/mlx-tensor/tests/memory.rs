//! Memory statistics of MLX's allocator. One test in its own binary, so no
//! other test allocates while it measures.

use mlx_tensor::{Array, Axes, Dtype, memory};

const MIB: usize = 1 << 20;

#[test]
fn active_memory_returns_to_baseline_after_drop() {
    // Warm up MLX (streams, scalars) before taking the baseline.
    let warm = Array::ones(&[4], Dtype::F32)
        .unwrap()
        .sum(Axes::All, false)
        .unwrap();
    warm.item::<f32>().unwrap();
    drop(warm);
    memory::clear_cache();
    let baseline = memory::active_memory();
    memory::reset_peak_memory();

    // 8 MiB of f32, plus a derived array of the same size.
    let a = Array::ones(&[2 * MIB as i32], Dtype::F32).unwrap();
    let b = a.mul_scalar(3.0).unwrap();
    b.eval().unwrap();
    let during = memory::active_memory();
    assert!(
        during >= baseline + 8 * MIB,
        "active {during} vs baseline {baseline}"
    );
    assert!(memory::peak_memory() >= during);
    let total: f32 = b.sum(Axes::All, false).unwrap().item().unwrap();
    assert_eq!(total, 6.0 * MIB as f32);

    drop(b);
    drop(a);
    assert_eq!(
        memory::active_memory(),
        baseline,
        "every buffer is released on drop"
    );
    // Freed buffers stay in the allocator's cache until cleared.
    assert!(memory::cache_memory() > 0);
    memory::clear_cache();
    assert_eq!(memory::cache_memory(), 0);

    // Clones share one buffer; it is freed with the last handle.
    let c = Array::zeros(&[MIB as i32], Dtype::F32).unwrap();
    c.eval().unwrap();
    let with_c = memory::active_memory();
    let d = c.clone();
    assert_eq!(memory::active_memory(), with_c);
    drop(c);
    assert_eq!(d.size(), MIB);
    drop(d);
    assert_eq!(memory::active_memory(), baseline);

    // Graphs that were built but never evaluated hold no buffers.
    let lazy = Array::ones(&[MIB as i32], Dtype::F32)
        .unwrap()
        .exp()
        .unwrap();
    drop(lazy);
    assert_eq!(memory::active_memory(), baseline);

    // The limits report their previous values.
    let old = memory::set_cache_limit(64 * MIB);
    assert_eq!(memory::set_cache_limit(old), 64 * MIB);
    let old = memory::set_memory_limit(1 << 34);
    assert_eq!(memory::set_memory_limit(old), 1 << 34);
}
