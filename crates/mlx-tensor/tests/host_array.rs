//! `HostArray`: host copies of arrays, and safetensors written from them.

use std::collections::HashMap;

use mlx_tensor::{io, random, Array, Dtype, HostArray};

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
fn host_safetensors_load_back_with_their_metadata() -> Res {
    let dir = std::env::temp_dir().join(format!("host-st-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
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
    assert_eq!(std::fs::read_dir(&dir)?.count(), 1);
    let twice = [("x", &hosts[0].1), ("x", &hosts[1].1)];
    assert!(io::save_host_safetensors(&path, twice, &meta).is_err());
    assert_eq!(io::load_safetensors(&path)?.tensors.len(), arrays.len());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
