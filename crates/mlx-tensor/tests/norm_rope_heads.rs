//! `fast::norm_rope_heads`: the one-kernel query/key norm and rotation of a
//! decoding step (one CUDA kernel where it applies, MLX's operations
//! elsewhere), checked against MLX's `rms_norm`, a product with the weights
//! and `rope` on the CPU.

use mlx_tensor::{Array, Device, Dtype, fast, random};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn sample(dtype: Dtype, shape: &[i32], seed: u64) -> Res<Array> {
    let key = random::key(seed)?;
    Ok(random::normal(shape, Dtype::F32, 0.5, 2.0, Some(&key))?.as_type(dtype)?)
}

/// The same computation from MLX's own operations.
#[allow(clippy::too_many_arguments)]
fn composed(
    x: &Array,
    q_weight: &Array,
    k_weight: &Array,
    offsets: &[i32],
    q_heads: i32,
    k_heads: i32,
    eps: f32,
    base: f32,
    scale: f32,
) -> Res<Array> {
    let (b, d) = (x.dim(0).ok_or("rank")?, x.dim(3).ok_or("rank")?);
    let heads = |from: i32, n: i32, w: &Array| -> Res<Array> {
        let h = x.slice_axis(1, from, Some(from + n), 1)?;
        Ok(fast::rms_norm(&h, None, eps)?.multiply(&w.reshape(&[1, 1, 1, d])?)?)
    };
    let qk = mlx_tensor::concatenate(
        &[
            &heads(0, q_heads, q_weight)?,
            &heads(q_heads, k_heads, k_weight)?,
        ],
        1,
    )?;
    Ok(if offsets.len() == 1 {
        fast::rope(&qk, d, false, base, scale, offsets[0])?
    } else {
        let per_row = Array::from_slice(offsets, &[b])?;
        fast::rope_with_offsets(&qk, d, false, base, scale, &per_row)?
    })
}

/// `f` with the CPU as default device. MLX's CUDA `rope` adds a per-row
/// offset to an unsigned position index, so a negative offset (a padded row)
/// becomes a position near 2^32 there; on the CPU, as in the formula and in
/// the kernel under test, it rotates backwards.
fn on_cpu<T>(f: impl FnOnce() -> Res<T>) -> Res<T> {
    let previous = Device::default_device();
    Device::Cpu.set_default()?;
    let out = f();
    previous.set_default()?;
    out
}

#[test]
fn norm_rope_heads_matches_mlx_operations() -> Res {
    // Without the kernel the same operations run on the default device; on
    // the CPU, so that negative offsets rotate backwards there too.
    let run = |f: &dyn Fn() -> Res<Array>| {
        if fast::norm_rope_heads_active() {
            f()
        } else {
            on_cpu(f)
        }
    };
    let mut seed = 100;
    for dtype in [Dtype::BF16, Dtype::F16, Dtype::F32] {
        let ulp = match dtype {
            Dtype::BF16 => 2f32.powi(-8),
            Dtype::F16 => 2f32.powi(-11),
            _ => 2f32.powi(-22),
        };
        // (batch, q heads, k heads, extra heads, head dim, offsets)
        let cases: [(i32, i32, i32, i32, i32, Vec<i32>); 5] = [
            (1, 16, 8, 8, 128, vec![0]),
            (1, 16, 8, 8, 128, vec![517]),
            (3, 4, 2, 2, 64, vec![9]),
            (3, 4, 2, 2, 64, vec![-2, 0, 40_000]),
            (2, 2, 1, 1, 96, vec![5, 6]),
        ];
        for (b, hq, hk, extra, d, offsets) in cases {
            seed += 1;
            let x = sample(dtype, &[b, hq + hk + extra, 1, d], seed)?;
            let qw = sample(dtype, &[d], seed + 1)?;
            let kw = sample(dtype, &[d], seed + 2)?;
            let (eps, base, scale) = (1e-6, 1_000_000.0, 0.5);
            let pos = Array::from_slice(&offsets, &[offsets.len() as i32])?;
            let got = run(&|| {
                Ok(fast::norm_rope_heads(
                    &x, &qw, &kw, &pos, hq, hk, eps, base, scale,
                )?)
            })?;
            assert_eq!(got.shape().dims(), &[b, hq + hk, 1, d]);
            assert_eq!(got.dtype(), dtype);
            let want = on_cpu(|| composed(&x, &qw, &kw, &offsets, hq, hk, eps, base, scale))?;
            let got = got.as_type(Dtype::F32)?.to_vec::<f32>()?;
            let want = want.as_type(Dtype::F32)?.to_vec::<f32>()?;
            // The sum of squares runs in another order than MLX's norm, so
            // a normalised value may round one step apart; through the
            // weight and the rotation that is a few steps of the head's
            // largest value. The angle (position × scale × frequency, in
            // f32 on both sides) may also differ by a few steps of itself,
            // which moves a rotated value by that angle times its size.
            let heads = (hq + hk) as usize;
            for (h, (g, w)) in got
                .chunks(d as usize)
                .zip(want.chunks(d as usize))
                .enumerate()
            {
                let largest = w.iter().fold(0f32, |m, v| m.max(v.abs()));
                let position = offsets[if offsets.len() == 1 { 0 } else { h / heads }];
                let angle = (position as f32 * scale).abs();
                let bound = (4.0 * ulp + 8.0 * angle * 2f32.powi(-24)) * largest + 1e-6;
                for (i, (g, w)) in g.iter().zip(w).enumerate() {
                    assert!(
                        (g - w).abs() <= bound,
                        "{dtype} b={b} d={d} offsets {offsets:?} head {h} element {i}: {g} vs {w}"
                    );
                }
            }
        }
    }
    Ok(())
}

#[test]
fn norm_rope_heads_refuses_heads_and_weights_that_do_not_fit() -> Res {
    let w = sample(Dtype::BF16, &[8], 1)?;
    let pos = Array::from_slice(&[0i32], &[1])?;
    let x = sample(Dtype::BF16, &[1, 4, 1, 8], 4)?;
    for (q, k) in [(4, 1), (0, 1), (2, -1), (i32::MAX, 1)] {
        let err = fast::norm_rope_heads(&x, &w, &w, &pos, q, k, 1e-6, 1e4, 1.0)
            .expect_err("heads past x");
        assert!(err.to_string().contains("heads"), "{err}");
    }
    let short = sample(Dtype::BF16, &[6], 2)?;
    let err = fast::norm_rope_heads(&x, &short, &w, &pos, 2, 1, 1e-6, 1e4, 1.0)
        .expect_err("short weight");
    assert!(err.to_string().contains("q_weight"), "{err}");
    let flat = sample(Dtype::BF16, &[4, 8], 3)?;
    assert!(fast::norm_rope_heads(&flat, &w, &w, &pos, 2, 1, 1e-6, 1e4, 1.0).is_err());
    Ok(())
}
