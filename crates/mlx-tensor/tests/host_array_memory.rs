//! A `HostArray` holds no MLX memory (its own test binary: it reads MLX's
//! process-wide counters).

use mlx_tensor::{Array, Dtype, HostArray, memory};

#[test]
fn host_copies_take_no_mlx_memory() -> Result<(), Box<dyn std::error::Error>> {
    Array::ones(&[4], Dtype::F32)?.eval()?;
    memory::clear_cache();
    let baseline = memory::active_memory();
    let a = Array::ones(&[1 << 20], Dtype::F32)?.mul_scalar(2.0)?;
    a.eval()?;
    assert!(memory::active_memory() >= baseline + (4 << 20));
    let host = HostArray::from_array(&a)?;
    drop(a);
    assert_eq!(
        memory::active_memory(),
        baseline,
        "the host copy is outside MLX"
    );
    let back = host.to_array()?;
    assert!(memory::active_memory() >= baseline + (4 << 20));
    assert_eq!(back.to_vec::<f32>()?, vec![2.0; 1 << 20]);
    Ok(())
}
