//! `HostArray`: host copies of arrays, and safetensors written from them.

use std::collections::HashMap;

use mlx_tensor::{Array, Dtype, HostArray, io, random};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn sample(dtype: Dtype, shape: &[i32], seed: u64) -> Res<Array> {
    let key = random::key(seed)?;
    let x = random::normal(shape, Dtype::F32, 0.0, 3.0, Some(&key))?;
    Ok(x.as_type(dtype)?)
}

#[test]
fn round_trip_is_bit_exact_for_every_float_dtype_and_for_views() -> Res {
    for dtype in [Dtype::F32, Dtype::BF16, Dtype::F16, Dtype::I32] {
        let a = sample(dtype, &[5, 7], 1)?;
        let host = HostArray::from_array(&a)?;
        assert_eq!(host.shape(), &[5, 7]);
        assert_eq!(host.dtype(), dtype);
        assert_eq!(host.nbytes(), a.nbytes());
        let back = host.to_array()?;
        assert_eq!(back.dtype(), dtype);
        assert_eq!(back.to_bytes()?, a.to_bytes()?, "{dtype}");
    }
    // A transposed view is copied in logical (row-major) order.
    let a = sample(Dtype::F32, &[3, 4], 2)?;
    let t = a.transpose(&[1, 0])?;
    let host = HostArray::from_array(&t)?;
    assert_eq!(host.shape(), &[4, 3]);
    assert_eq!(host.to_array()?.to_vec::<f32>()?, t.to_vec::<f32>()?);
    Ok(())
}

#[test]
fn copy_from_reuses_the_buffer_when_the_size_agrees() -> Res {
    let mut host = HostArray::from_array(&sample(Dtype::BF16, &[16, 8], 3)?)?;
    let before = host.bytes().as_ptr();
    let next = sample(Dtype::BF16, &[16, 8], 4)?;
    host.copy_from(&next)?;
    assert_eq!(host.bytes().as_ptr(), before);
    assert_eq!(host.to_array()?.to_bytes()?, next.to_bytes()?);
    // Another size replaces the buffer (and the shape and dtype).
    let other = sample(Dtype::F32, &[3], 5)?;
    host.copy_from(&other)?;
    assert_eq!((host.shape(), host.dtype()), (&[3][..], Dtype::F32));
    assert_eq!(host.to_array()?.to_vec::<f32>()?, other.to_vec::<f32>()?);
    Ok(())
}

#[test]
fn from_parts_checks_the_length() -> Res {
    let ok = HostArray::from_parts(vec![0; 12], vec![3, 2], Dtype::BF16)?;
    assert_eq!(ok.to_array()?.to_vec::<f32>()?, vec![0.0; 6]);
    let err = HostArray::from_parts(vec![0; 10], vec![3, 2], Dtype::BF16)
        .err()
        .ok_or("10 bytes for 6 bf16 elements must be refused")?;
    assert!(err.to_string().contains("needs 12 bytes, got 10"), "{err}");
    assert!(HostArray::from_parts(vec![], vec![-1], Dtype::F32).is_err());
    Ok(())
}

#[test]
fn zeros_hold_zeros_of_any_size_and_refuse_impossible_shapes() -> Res {
    // Below, at and above the size from which host buffers are page-locked
    // under CUDA (64 KiB), where they get an allocation of their own.
    for elements in [0, 3, 32 * 1024, 32 * 1024 + 1, 300_000] {
        let z = HostArray::zeros(vec![elements], Dtype::BF16)?;
        assert_eq!(z.nbytes(), 2 * elements as usize);
        assert!(z.bytes().iter().all(|&b| b == 0));
        let back = z.to_array()?;
        assert_eq!(back.shape().dims(), &[elements]);
        assert!(back.to_vec::<f32>()?.iter().all(|&v| v == 0.0));
        // A copy of a real array over it keeps the buffer and the values.
        let values = sample(Dtype::BF16, &[elements], 9)?;
        let mut host = z.clone();
        host.copy_from(&values)?;
        assert_eq!(host.bytes(), values.to_bytes()?.as_slice());
        assert_eq!(host, HostArray::from_array(&values)?);
    }
    assert!(HostArray::zeros(vec![2, -1], Dtype::F32).is_err());
    assert!(HostArray::zeros(vec![i32::MAX, i32::MAX, i32::MAX], Dtype::F64).is_err());
    Ok(())
}

#[test]
fn host_safetensors_load_back_with_their_metadata() -> Res {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let path = dir.join("state.safetensors");
    let arrays = [
        ("layer.weight.m", sample(Dtype::BF16, &[4, 3], 6)?),
        ("layer.weight.v", sample(Dtype::F32, &[4, 3], 7)?),
        ("scalar", Array::scalar(2.5f32)?),
        ("odd", sample(Dtype::F16, &[3], 8)?),
    ];
    let hosts: Vec<(&str, HostArray)> = arrays
        .iter()
        .map(|(n, a)| Ok((*n, HostArray::from_array(a)?)))
        .collect::<Res<_>>()?;
    let mut meta = HashMap::new();
    meta.insert("step".to_string(), "3".to_string());
    io::save_host_safetensors(&path, hosts.iter().map(|(n, h)| (*n, h)), &meta)?;

    let file = io::load_safetensors(&path)?;
    assert_eq!(file.metadata, meta);
    assert_eq!(file.tensors.len(), arrays.len());
    for (name, a) in &arrays {
        let loaded = &file.tensors[*name];
        assert_eq!(loaded.dtype(), a.dtype(), "{name}");
        assert_eq!(loaded.shape(), a.shape(), "{name}");
        assert_eq!(loaded.to_bytes()?, a.to_bytes()?, "{name}");
    }
    // No temporary file is left behind; a repeated name is refused and the
    // existing file is kept.
    assert_eq!(std::fs::read_dir(dir)?.count(), 1);
    let twice = [("x", &hosts[0].1), ("x", &hosts[1].1)];
    assert!(io::save_host_safetensors(&path, twice, &meta).is_err());
    assert_eq!(io::load_safetensors(&path)?.tensors.len(), arrays.len());
    Ok(())
}

#[test]
fn large_arrays_split_over_threads_round_trip() -> Res {
    // 67 MB: copied in several parts on several threads both ways. The
    // comparison runs in MLX, not through the copy being tested; the sum
    // checks that no part was left as zeros.
    let a = sample(Dtype::F32, &[5003, 3355], 9)?;
    let host = HostArray::from_array(&a)?;
    let back = host.to_array()?;
    assert!(back.array_equal(&a, false)?.item::<bool>()?);
    let (sa, sb) = (
        a.abs()?.sum(mlx_tensor::Axes::All, false)?.item::<f32>()?,
        back.abs()?
            .sum(mlx_tensor::Axes::All, false)?
            .item::<f32>()?,
    );
    assert_eq!(sa, sb);
    // The tail part (not a multiple of the per-thread size) too.
    let n = a.size() as i32;
    let flat = (a.reshape(&[n])?, back.reshape(&[n])?);
    let tail = (
        flat.0.slice_axis(0, n - 1000, None, 1)?,
        flat.1.slice_axis(0, n - 1000, None, 1)?,
    );
    assert_eq!(tail.0.to_vec::<f32>()?, tail.1.to_vec::<f32>()?);
    Ok(())
}

#[test]
fn byte_parts_concatenate_and_split() -> Res {
    let parts: Vec<Array> = [&[2, 3][..], &[4], &[1, 5]]
        .iter()
        .enumerate()
        .map(|(i, s)| sample(Dtype::BF16, s, 20 + i as u64))
        .collect::<Res<_>>()?;
    let bytes: Vec<Vec<u8>> = parts
        .iter()
        .map(Array::to_bytes)
        .collect::<Result<_, _>>()?;
    let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
    let flat = Array::from_byte_parts(&refs, Dtype::BF16)?;
    assert_eq!(flat.shape().0, vec![15]);
    assert_eq!(flat.to_bytes()?, bytes.concat());

    // Back into parts of the same sizes, through an MLX computation.
    let doubled = flat.mul_scalar(2.0)?;
    let mut outs: Vec<Vec<u8>> = bytes.iter().map(|b| vec![0u8; b.len()]).collect();
    let mut views: Vec<&mut [u8]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
    doubled.write_byte_parts(&mut views)?;
    assert_eq!(outs.concat(), doubled.to_bytes()?);

    // Lengths that do not add up, or are not whole elements, are errors.
    let mut short = vec![0u8; 10];
    assert!(
        doubled
            .write_byte_parts(&mut [short.as_mut_slice()])
            .is_err()
    );
    assert!(Array::from_byte_parts(&[&[0u8; 3][..]], Dtype::BF16).is_err());
    assert_eq!(Array::from_byte_parts(&[], Dtype::F32)?.size(), 0);
    Ok(())
}

#[test]
fn many_large_byte_parts_round_trip_on_several_threads() -> Res {
    // 8 parts of 5 MiB: copied by several threads, split by bytes.
    let parts: Vec<Vec<u8>> = (0..8u8)
        .map(|i| {
            (0..5usize << 20)
                .map(|j| (j as u8).wrapping_mul(31) ^ i)
                .collect()
        })
        .collect();
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let flat = Array::from_byte_parts(&refs, Dtype::U8)?;
    let mut outs: Vec<Vec<u8>> = parts.iter().map(|p| vec![0u8; p.len()]).collect();
    let mut views: Vec<&mut [u8]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
    flat.write_byte_parts(&mut views)?;
    assert!(outs == parts);
    Ok(())
}

#[test]
fn direct_cuda_copies_need_a_cuda_device() -> Res {
    // Direct copies are CUDA driver calls; a process without a GPU device
    // does not use them, and large transfers keep working without them.
    if mlx_tensor::Device::gpu_count() == 0 {
        assert!(!mlx_tensor::memory::cuda_direct_copies_active());
    }
    let a = sample(Dtype::BF16, &[4096, 2049], 11)?; // 16.8 MB: over the direct-copy threshold
    let back = HostArray::from_array(&a)?.to_array()?;
    assert!(back.array_equal(&a, false)?.item::<bool>()?);
    Ok(())
}
