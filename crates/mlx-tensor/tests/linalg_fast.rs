//! Linear algebra, the fused kernels of `fast`, quantization and
//! `gather_mm` against naive formulas.

mod common;

use common::{Nd, assert_close, broadcast_pair_up_to, cases, nd_in};
use mlx_tensor::fast::{self, SdpaMask};
use mlx_tensor::{Array, Axes, Dtype, gather_mm};
use proptest::prelude::*;

/// A naive norm of a vector.
type VectorNorm = fn(&[f64]) -> f64;

/// NumPy `matmul` of arrays of rank >= 2 (batch dimensions broadcast).
fn matmul(a: &Nd, b: &Nd) -> Nd {
    let (ra, rb) = (a.shape.len(), b.shape.len());
    let (m, k, n) = (a.shape[ra - 2], a.shape[ra - 1], b.shape[rb - 1]);
    assert_eq!(k, b.shape[rb - 2]);
    let batch = common::broadcast_shapes(&a.shape[..ra - 2], &b.shape[..rb - 2]);
    let mut shape = batch.clone();
    shape.extend([m, n]);
    Nd::from_fn(&shape, |idx| {
        let nb = batch.len();
        let (i, j) = (idx[nb], idx[nb + 1]);
        let bi = &idx[..nb];
        let pick = |x: &Nd, r: usize, row: usize, col: usize| {
            let skip = nb - (r - 2);
            let mut full: Vec<usize> = (0..r - 2)
                .map(|d| if x.shape[d] == 1 { 0 } else { bi[skip + d] })
                .collect();
            full.extend([row, col]);
            x.at(&full)
        };
        (0..k).map(|l| pick(a, ra, i, l) * pick(b, rb, l, j)).sum()
    })
}

/// Two matmul operands with broadcast batch dimensions.
fn matmul_operands() -> impl Strategy<Value = (Nd, Nd)> {
    (broadcast_pair_up_to(2, 3), 1usize..6, 1usize..6, 1usize..6).prop_flat_map(
        |((ba, bb), m, k, n)| {
            let mut sa = ba;
            sa.extend([m, k]);
            let mut sb = bb;
            sb.extend([k, n]);
            (nd_in(Just(sa), -2.0, 2.0), nd_in(Just(sb), -2.0, 2.0))
        },
    )
}

fn rope_reference(x: &Nd, d: usize, traditional: bool, base: f64, scale: f64, offset: usize) -> Nd {
    let r = x.shape.len();
    let half = d / 2;
    Nd::from_fn(&x.shape, |idx| {
        let f = idx[r - 1];
        if f >= d {
            return x.at(idx);
        }
        let pos = (offset + idx[r - 2]) as f64;
        let (pair, first, partner) = if traditional {
            (f / 2, f % 2 == 0, if f % 2 == 0 { f + 1 } else { f - 1 })
        } else {
            (
                f % half,
                f < half,
                if f < half { f + half } else { f - half },
            )
        };
        let theta = pos * scale * base.powf(-2.0 * pair as f64 / d as f64);
        let mut other = idx.to_vec();
        other[r - 1] = partner;
        let (v, w) = (x.at(idx), x.at(&other));
        if first {
            v * theta.cos() - w * theta.sin()
        } else {
            v * theta.cos() + w * theta.sin()
        }
    })
}

/// Attention with `q: [B, Hq, L, D]`, `k, v: [B, Hkv, S, D]`; `keep(b, h,
/// i, j)` / `bias(b, h, i, j)` say which scores are kept and what is added.
fn sdpa_reference(
    q: &Nd,
    k: &Nd,
    v: &Nd,
    scale: f64,
    keep: impl Fn(usize, usize, usize, usize) -> bool,
    bias: impl Fn(usize, usize, usize, usize) -> f64,
) -> Nd {
    let (hq, d) = (q.shape[1], q.shape[3]);
    let (hkv, s) = (k.shape[1], k.shape[2]);
    let group = hq / hkv;
    Nd::from_fn(&q.shape, |idx| {
        let (b, h, i, e) = (idx[0], idx[1], idx[2], idx[3]);
        let kh = h / group;
        let scores: Vec<f64> = (0..s)
            .map(|j| {
                if !keep(b, h, i, j) {
                    return f64::NEG_INFINITY;
                }
                let dot: f64 = (0..d)
                    .map(|c| q.at(&[b, h, i, c]) * k.at(&[b, kh, j, c]))
                    .sum();
                dot * scale + bias(b, h, i, j)
            })
            .collect();
        let p = common::softmax(&scores);
        (0..s).map(|j| p[j] * v.at(&[b, kh, j, e])).sum()
    })
}

proptest! {
    #![proptest_config(cases(48))]

    #[test]
    fn matmul_with_batch_broadcasting((a, b) in matmul_operands()) {
        let got = a.to_array().matmul(&b.to_array()).unwrap();
        assert_close(&got, &matmul(&a, &b), 1e-5, 1e-5, "matmul");
    }

    #[test]
    fn matmul_of_vectors(
        v in nd_in(Just(vec![4]), -2.0, 2.0),
        m in nd_in(Just(vec![4, 3]), -2.0, 2.0),
        w in nd_in(Just(vec![3]), -2.0, 2.0),
    ) {
        // A vector on the left is a row; on the right, a column; both are dropped.
        let got = v.to_array().matmul(&m.to_array()).unwrap();
        let want = matmul(&Nd::new(&[1, 4], v.data.clone()), &m);
        assert_close(&got, &Nd::new(&[3], want.data), 1e-5, 1e-5, "vector @ matrix");
        let got = m.to_array().matmul(&w.to_array()).unwrap();
        let want = matmul(&m, &Nd::new(&[3, 1], w.data.clone()));
        assert_close(&got, &Nd::new(&[4], want.data), 1e-5, 1e-5, "matrix @ vector");
        // outer and inner.
        let got = v.to_array().outer(&w.to_array()).unwrap();
        let want = Nd::from_fn(&[4, 3], |i| v.data[i[0]] * w.data[i[1]]);
        assert_close(&got, &want, 1e-6, 0.0, "outer");
        let got = v.to_array().inner(&v.to_array()).unwrap();
        let want: f64 = v.data.iter().map(|x| x * x).sum();
        assert_close(&got, &Nd::new(&[], vec![want]), 1e-5, 1e-6, "inner");
    }

    #[test]
    fn addmm_scales_and_adds(
        (a, b) in (1usize..5, 1usize..5, 1usize..5).prop_flat_map(|(m, k, n)| {
            (nd_in(Just(vec![m, k]), -2.0, 2.0), nd_in(Just(vec![k, n]), -2.0, 2.0))
        }),
        row in any::<bool>(),
        alpha in -2.0f32..2.0,
        beta in -2.0f32..2.0,
    ) {
        let (m, n) = (a.shape[0], b.shape[1]);
        // c broadcasts: a full matrix or one row.
        let cs = if row { vec![n] } else { vec![m, n] };
        let c = Nd::from_fn(&cs, |i| i.iter().sum::<usize>() as f64 * 0.25 - 1.0);
        let got = c.to_array().addmm(&a.to_array(), &b.to_array(), alpha, beta).unwrap();
        let ab = matmul(&a, &b);
        let want = ab.zip(&c, |p, c| f64::from(alpha) * p + f64::from(beta) * c);
        assert_close(&got, &want, 1e-5, 1e-5, "addmm");
    }

    #[test]
    fn vector_norms(x in nd_in(common::shape_min(1, 3, 4), -3.0, 3.0), keepdims in any::<bool>()) {
        let a = x.to_array();
        let ords: [(f64, VectorNorm); 4] = [
            (2.0, |v| v.iter().map(|x| x * x).sum::<f64>().sqrt()),
            (1.0, |v| v.iter().map(|x| x.abs()).sum()),
            (f64::INFINITY, |v| v.iter().fold(0.0, |m, x| m.max(x.abs()))),
            (3.0, |v| v.iter().map(|x| x.abs().powi(3)).sum::<f64>().cbrt()),
        ];
        for axis in 0..x.shape.len() {
            for (ord, f) in ords {
                let got = a.norm(ord, axis as i32, keepdims).unwrap();
                assert_close(&got, &x.reduce(&[axis], keepdims, f), 1e-5, 1e-5, &format!("norm {ord} axis {axis}"));
            }
        }
        let all: Vec<usize> = (0..x.shape.len()).collect();
        let got = a.norm(2.0, Axes::All, keepdims).unwrap();
        assert_close(&got, &x.reduce(&all, keepdims, ords[0].1), 1e-5, 1e-5, "norm over all axes");
    }

    #[test]
    fn tril_and_triu(x in nd_in(common::shape_min(2, 3, 5), -3.0, 3.0), k in -3i32..3) {
        let r = x.shape.len();
        let a = x.to_array();
        let lower = x.map_index(|idx, v| if (idx[r - 1] as i32) <= idx[r - 2] as i32 + k { v } else { 0.0 });
        assert_close(&a.tril(k).unwrap(), &lower, 0.0, 0.0, "tril");
        let upper = x.map_index(|idx, v| if (idx[r - 1] as i32) >= idx[r - 2] as i32 + k { v } else { 0.0 });
        assert_close(&a.triu(k).unwrap(), &upper, 0.0, 0.0, "triu");
    }

    #[test]
    fn rms_norm_and_layer_norm(
        x in nd_in(common::shape_min(1, 3, 6), -3.0, 3.0),
        w in prop::collection::vec(0.5f32..1.5, 6),
        bias in prop::collection::vec(-1.0f32..1.0, 6),
        eps in prop::sample::select(vec![1e-5f32, 1e-6, 1e-2]),
    ) {
        let r = x.shape.len();
        let d = x.shape[r - 1];
        let wa = Array::from_slice(&w[..d], &[d as i32]).unwrap();
        let ba = Array::from_slice(&bias[..d], &[d as i32]).unwrap();
        let e = f64::from(eps);
        let rms = x.map_lines(r - 1, |l| {
            let ms = l.iter().map(|v| v * v).sum::<f64>() / l.len() as f64;
            l.iter().enumerate().map(|(i, v)| v / (ms + e).sqrt() * f64::from(w[i])).collect()
        });
        let got = fast::rms_norm(&x.to_array(), Some(&wa), eps).unwrap();
        assert_close(&got, &rms, 1e-4, 1e-5, "rms_norm");
        let plain = x.map_lines(r - 1, |l| {
            let ms = l.iter().map(|v| v * v).sum::<f64>() / l.len() as f64;
            l.iter().map(|v| v / (ms + e).sqrt()).collect()
        });
        assert_close(&fast::rms_norm(&x.to_array(), None, eps).unwrap(), &plain, 1e-4, 1e-5, "rms_norm without weight");
        let ln = |affine: bool| {
            x.map_lines(r - 1, |l| {
                let n = l.len() as f64;
                let mean = l.iter().sum::<f64>() / n;
                let var = l.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                l.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let y = (v - mean) / (var + e).sqrt();
                        if affine { y * f64::from(w[i]) + f64::from(bias[i]) } else { y }
                    })
                    .collect()
            })
        };
        let got = fast::layer_norm(&x.to_array(), Some(&wa), Some(&ba), eps).unwrap();
        assert_close(&got, &ln(true), 1e-4, 1e-4, "layer_norm");
        let got = fast::layer_norm(&x.to_array(), None, None, eps).unwrap();
        assert_close(&got, &ln(false), 1e-4, 1e-4, "layer_norm without affine");
    }

    #[test]
    fn rope_rotates_pairs(
        x in (1usize..3, 1usize..3, 1usize..6, 1usize..5).prop_flat_map(|(b, h, l, d2)| {
            nd_in(Just(vec![b, h, l, 2 * d2 + 2]), -2.0, 2.0)
        }),
        partial in any::<bool>(),
        traditional in any::<bool>(),
        offset in 0usize..50,
        scale in prop::sample::select(vec![1.0f32, 0.5]),
    ) {
        let d_full = x.shape[3];
        // Rotate all features, or only the first `d - 2` of them.
        let dims = if partial { d_full - 2 } else { d_full };
        let base = 10000.0f32;
        let got = fast::rope(&x.to_array(), dims as i32, traditional, base, scale, offset as i32).unwrap();
        let want = rope_reference(&x, dims, traditional, f64::from(base), f64::from(scale), offset);
        assert_close(&got, &want, 1e-4, 1e-4, &format!("rope traditional={traditional} dims={dims}"));
        // An offset given as an array gives the same result.
        let off = Array::scalar(offset as i32).unwrap();
        let got = fast::rope_with_offsets(&x.to_array(), dims as i32, traditional, base, scale, &off).unwrap();
        assert_close(&got, &want, 1e-4, 1e-4, "rope with array offset");
    }

    #[test]
    fn sdpa_matches_naive_attention(
        (q, k, v) in (1usize..3, 1usize..3, 1usize..3, 1usize..5, 0usize..4, 1usize..5).prop_flat_map(
            |(b, hkv, group, l, extra, d)| {
                let s = l + extra;
                (
                    nd_in(Just(vec![b, hkv * group, l, d]), -1.5, 1.5),
                    nd_in(Just(vec![b, hkv, s, d]), -1.5, 1.5),
                    nd_in(Just(vec![b, hkv, s, d]), -1.5, 1.5),
                )
            },
        ),
        mask_bits in prop::collection::vec(any::<bool>(), 64),
    ) {
        let (l, s, d) = (q.shape[2], k.shape[2], q.shape[3]);
        let scale = 1.0 / (d as f64).sqrt();
        let (qa, ka, va) = (q.to_array(), k.to_array(), v.to_array());
        let none = |_: usize, _: usize, _: usize, _: usize| 0.0;
        let got = fast::scaled_dot_product_attention(&qa, &ka, &va, scale as f32, SdpaMask::None).unwrap();
        let want = sdpa_reference(&q, &k, &v, scale, |_, _, _, _| true, none);
        assert_close(&got, &want, 1e-4, 1e-5, "sdpa");
        // Causal: query i sees keys up to i + (S - L).
        let got = fast::scaled_dot_product_attention(&qa, &ka, &va, scale as f32, SdpaMask::Causal).unwrap();
        let want = sdpa_reference(&q, &k, &v, scale, |_, _, i, j| j <= i + (s - l), none);
        assert_close(&got, &want, 1e-4, 1e-5, "sdpa causal");
        // A boolean [L, S] mask (keep = true); the first key is always kept.
        let keep = |i: usize, j: usize| j == 0 || mask_bits[(i * s + j) % 64];
        let m: Vec<bool> = (0..l * s).map(|t| keep(t / s, t % s)).collect();
        let ma = Array::from_slice(&m, &[l as i32, s as i32]).unwrap();
        let got = fast::scaled_dot_product_attention(&qa, &ka, &va, scale as f32, SdpaMask::Array(&ma)).unwrap();
        let want = sdpa_reference(&q, &k, &v, scale, |_, _, i, j| keep(i, j), none);
        assert_close(&got, &want, 1e-4, 1e-5, "sdpa bool mask");
        // An additive float mask of shape [B, 1, L, S].
        let b = q.shape[0];
        let add = Nd::from_fn(&[b, 1, l, s], |i| if mask_bits[(i[0] * 7 + i[2] * s + i[3]) % 64] { -1.0 } else { 0.5 });
        let got = fast::scaled_dot_product_attention(&qa, &ka, &va, scale as f32, SdpaMask::Array(&add.to_array())).unwrap();
        let want = sdpa_reference(&q, &k, &v, scale, |_, _, _, _| true, |b, _, i, j| add.at(&[b, 0, i, j]));
        assert_close(&got, &want, 1e-4, 1e-5, "sdpa additive mask");
    }

    #[test]
    fn quantize_dequantize_error_bound(
        rows in 1usize..5,
        groups in 1usize..3,
        group_size in prop::sample::select(vec![32usize, 64, 128]),
        bits in prop::sample::select(vec![2i32, 3, 4, 5, 6, 8]),
        seed in any::<u64>(),
    ) {
        let cols = groups * group_size;
        let key = mlx_tensor::random::key(seed).unwrap();
        let w = mlx_tensor::random::normal(&[rows as i32, cols as i32], Dtype::F32, 0.0, 1.0, Some(&key)).unwrap();
        let q = w.quantize(group_size as i32, bits).unwrap();
        prop_assert_eq!(q.weight.dtype(), Dtype::U32);
        prop_assert_eq!(q.weight.shape().0, vec![rows as i32, (cols * bits as usize / 32) as i32]);
        prop_assert_eq!(q.scales.shape().0, vec![rows as i32, groups as i32]);
        let deq = q.dequantize().unwrap();
        prop_assert_eq!(deq.shape(), w.shape());
        let (wv, dv) = (w.to_vec::<f32>().unwrap(), deq.to_vec::<f32>().unwrap());
        let scales = q.scales.to_vec::<f32>().unwrap();
        let biases = q.biases.to_vec::<f32>().unwrap();
        let levels = ((1u32 << bits) - 1) as f32;
        for (g, group) in wv.chunks(group_size).enumerate() {
            let (lo, hi) = group.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            // MLX makes zero exactly representable: the bias is the extreme of
            // larger magnitude and the step is adjusted to reach zero, so the
            // levels may stop short of the other extreme by less than one
            // original step (max - min) / levels.
            let (bias, step) = (biases[g], scales[g]);
            let (first, last) = (bias.min(bias + levels * step), bias.max(bias + levels * step));
            for (i, &a) in group.iter().enumerate() {
                let b = dv[g * group_size + i];
                let err = (a - b).abs();
                prop_assert!(err <= (hi - lo) / levels * 1.001 + 1e-5, "{} vs {} ({} bits)", a, b, bits);
                if a >= first && a <= last {
                    // Inside the levels' range: rounding to the nearest level.
                    prop_assert!(err <= 0.5 * step.abs() * 1.001 + 1e-5, "{} vs {} (step {}, {} bits)", a, b, step, bits);
                }
            }
        }
        // Quantized matmul equals matmul with the dequantized matrix.
        let x = mlx_tensor::random::normal(&[3, cols as i32], Dtype::F32, 0.0, 1.0, Some(&mlx_tensor::random::split(&key, 2).unwrap().take(&Array::scalar(1u32).unwrap(), Some(0)).unwrap())).unwrap();
        let got = q.matmul(&x, true).unwrap();
        let want = x.matmul(&deq.t().unwrap()).unwrap();
        let want_nd = Nd::new(&common::ushape(&want), common::read(&want));
        assert_close(&got, &want_nd, 1e-4, 1e-3, "quantized_matmul transposed");
        // Without the transpose: x [.., rows] @ W [rows, cols].
        let xr = x.slice_axis(1, 0, Some(rows as i32), 1).unwrap();
        let got = q.matmul(&xr, false).unwrap();
        let want = xr.matmul(&deq).unwrap();
        let want_nd = Nd::new(&common::ushape(&want), common::read(&want));
        assert_close(&got, &want_nd, 1e-4, 1e-3, "quantized_matmul");
    }

    #[test]
    fn gather_mm_equals_take_then_matmul(
        experts in 1usize..4,
        picks in prop::collection::vec(0usize..100, 1..6),
        (m, k, n) in (1usize..4, 1usize..5, 1usize..4),
        seed in any::<u64>(),
    ) {
        let key = mlx_tensor::random::key(seed).unwrap();
        let keys = mlx_tensor::random::split(&key, 2).unwrap();
        let k0 = keys.take(&Array::scalar(0u32).unwrap(), Some(0)).unwrap();
        let k1 = keys.take(&Array::scalar(1u32).unwrap(), Some(0)).unwrap();
        let na = 3;
        let a = mlx_tensor::random::normal(&[na, m as i32, k as i32], Dtype::F32, 0.0, 1.0, Some(&k0)).unwrap();
        let b = mlx_tensor::random::normal(&[experts as i32, k as i32, n as i32], Dtype::F32, 0.0, 1.0, Some(&k1)).unwrap();
        let lhs: Vec<u32> = picks.iter().map(|&p| (p % na as usize) as u32).collect();
        let mut rhs: Vec<u32> = picks.iter().map(|&p| ((p / 3) % experts) as u32).collect();
        let li = Array::from_vec(lhs).unwrap();
        let check = |rhs: &[u32], sorted: bool| {
            let ri = Array::from_slice(rhs, &[rhs.len() as i32]).unwrap();
            let got = gather_mm(&a, &b, Some(&li), Some(&ri), sorted).unwrap();
            let want = a.take(&li, Some(0)).unwrap().matmul(&b.take(&ri, Some(0)).unwrap()).unwrap();
            let want = Nd::new(&common::ushape(&want), common::read(&want));
            assert_close(&got, &want, 1e-5, 1e-5, &format!("gather_mm sorted={sorted}"));
            // Without lhs indices, `a` supplies one matrix per index.
            let ap = a.take(&li, Some(0)).unwrap();
            let got = gather_mm(&ap, &b, None, Some(&ri), sorted).unwrap();
            assert_close(&got, &want, 1e-5, 1e-5, "gather_mm without lhs indices");
        };
        check(&rhs, false);
        rhs.sort();
        check(&rhs, true);
    }
}

#[test]
fn matmul_of_low_precision_and_views() {
    // bf16 matmul accumulates well: a 64-term dot product of ones is exact.
    let a = Array::ones(&[2, 64], Dtype::BF16).unwrap();
    let b = Array::ones(&[64, 3], Dtype::BF16).unwrap();
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.dtype(), Dtype::BF16);
    assert_eq!(c.to_vec::<f32>().unwrap(), vec![64.0; 6]);
    // Transposed and broadcast operands (views) multiply correctly.
    let x = Nd::from_fn(&[3, 4], |i| (i[0] * 4 + i[1]) as f64 * 0.5 - 2.0);
    let xt = x.to_array().t().unwrap();
    let got = xt.matmul(&x.to_array()).unwrap();
    let want = matmul(&x.permute(&[1, 0]), &x);
    assert_close(&got, &want, 1e-6, 1e-6, "xᵀx");
    let batch = x.to_array().broadcast_to(&[2, 3, 4]).unwrap();
    let got = batch.matmul(&xt).unwrap();
    let want = matmul(&x, &x.permute(&[1, 0]));
    assert_close(
        &got.take(&Array::scalar(1u32).unwrap(), Some(0)).unwrap(),
        &want,
        1e-6,
        1e-6,
        "broadcast batch",
    );
}
