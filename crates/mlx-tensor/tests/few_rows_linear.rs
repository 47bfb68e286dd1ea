//! `fast::few_rows_linear`: the few-rows products of decoding steps (the
//! CUDA kernel where it applies, MLX's product elsewhere), checked against
//! products summed in f64 on the host, on whatever device runs the tests.

use mlx_tensor::{Array, Dtype, fast, random};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn sample(dtype: Dtype, shape: &[i32], seed: u64) -> Res<Array> {
    let key = random::key(seed)?;
    Ok(random::normal(shape, Dtype::F32, 0.0, 1.0, Some(&key))?.as_type(dtype)?)
}

/// Checks `y` (`[..., n]`) against `x @ w.T` summed in f64 from the same
/// (already rounded) inputs; the bound is one rounding to `dtype` plus the
/// f32 sums' error.
fn check_against_host(x: &Array, w: &Array, y: &Array, dtype: Dtype) -> Res {
    let k = w.dim(1).ok_or("weight rank")? as usize;
    let n = w.dim(0).ok_or("weight rank")? as usize;
    let xs = x.as_type(Dtype::F32)?.to_vec::<f32>()?;
    let ws = w.as_type(Dtype::F32)?.to_vec::<f32>()?;
    let ys = y.as_type(Dtype::F32)?.to_vec::<f32>()?;
    let rows = xs.len() / k;
    assert_eq!(ys.len(), rows * n, "output size");
    let rounding = match dtype {
        Dtype::BF16 => 2f64.powi(-8),
        Dtype::F16 => 2f64.powi(-11),
        _ => 2f64.powi(-24),
    };
    for r in 0..rows {
        for j in 0..n {
            let (mut exact, mut magnitude) = (0f64, 0f64);
            for c in 0..k {
                let p = xs[r * k + c] as f64 * ws[j * k + c] as f64;
                exact += p;
                magnitude += p.abs();
            }
            let got = ys[r * n + j] as f64;
            let bound = rounding * exact.abs() + 1e-5 * magnitude + 1e-6;
            assert!(
                (got - exact).abs() <= bound,
                "{dtype} row {r} column {j}: {got} vs {exact} (bound {bound})"
            );
        }
    }
    Ok(())
}

#[test]
fn few_rows_linear_matches_host_products() -> Res {
    let mut seed = 10;
    for dtype in [Dtype::BF16, Dtype::F16, Dtype::F32] {
        // 1024 and 3072: 16-byte loads; 1001: element loads (rows are not
        // whole 16-byte vectors), as is 36 for the 2-byte dtypes; 300, 77
        // and 9 outputs: a partial last block; 9 rows: past the kernel.
        for (k, n) in [(1024, 300), (1001, 77), (36, 9), (3072, 40)] {
            for rows in [1, 2, 5, 8, 9] {
                seed += 1;
                let w = sample(dtype, &[n, k], seed)?;
                let x = sample(dtype, &[rows, k], seed + 1000)?;
                let y = fast::few_rows_linear(&x, &w)?;
                assert_eq!(y.shape().dims(), &[rows, n]);
                assert_eq!(y.dtype(), dtype);
                check_against_host(&x, &w, &y, dtype)?;
            }
        }
        // Leading axes are kept: a decoding step's `[B, 1, K]`.
        let w = sample(dtype, &[50, 256], 7)?;
        let x = sample(dtype, &[2, 1, 256], 8)?;
        let y = fast::few_rows_linear(&x, &w)?;
        assert_eq!(y.shape().dims(), &[2, 1, 50]);
        check_against_host(&x, &w, &y, dtype)?;
        // A row-contiguous view that starts one element in: unaligned loads.
        let flat = sample(dtype, &[3 * 256 + 1], 9)?;
        let x = flat.slice_axis(0, 1, None, 1)?.reshape(&[3, 256])?;
        let y = fast::few_rows_linear(&x, &w)?;
        check_against_host(&x, &w, &y, dtype)?;
        // A transposed (not row-contiguous) weight.
        let wt = sample(dtype, &[256, 50], 10)?.t()?;
        let y = fast::few_rows_linear(&x, &wt)?;
        check_against_host(&x, &wt, &y, dtype)?;
    }
    Ok(())
}

#[test]
fn few_rows_linear_with_the_kernel_disabled_is_mlx_product() -> Res {
    let w = sample(Dtype::BF16, &[48, 64], 1)?;
    let x = sample(Dtype::BF16, &[3, 64], 2)?;
    let before = fast::FastPaths::current();
    fast::FastPaths {
        few_rows_linear: false,
        ..before
    }
    .apply();
    assert!(!fast::few_rows_linear_active());
    let y = fast::few_rows_linear(&x, &w);
    before.apply();
    let expected = x.matmul(&w.t()?)?;
    assert_eq!(y?.to_vec::<half::bf16>()?, expected.to_vec::<half::bf16>()?);
    Ok(())
}

#[test]
fn few_rows_linear_refuses_what_no_product_can_do() -> Res {
    let w = sample(Dtype::BF16, &[16, 64], 1)?;
    // Mismatched widths.
    let x32 = sample(Dtype::BF16, &[1, 32], 4)?;
    assert!(fast::few_rows_linear(&x32, &w).is_err());
    // Integer operands: MLX multiplies only floating types.
    let xi = Array::from_slice(&[1i32; 64], &[1, 64])?;
    let wi = Array::from_slice(&[1i32; 64 * 4], &[4, 64])?;
    assert!(fast::few_rows_linear(&xi, &wi).is_err());
    Ok(())
}
