//! Shape manipulation, indexing, sorting and views against naive
//! implementations over random shapes. Views (transposes, broadcasts,
//! strided slices) are read back with `to_vec` without an explicit copy, so
//! these tests also check that read-back follows logical order.

mod common;

use common::{Nd, assert_close, cases, dims, nd_in, numel, shape, shape_min, strides, unravel};
use mlx_tensor::{Array, Dtype, concatenate, stack};
use proptest::prelude::*;

/// An `Nd` whose values are its flat positions (so every element is distinct).
fn iota(shape: &[usize]) -> Nd {
    Nd::new(shape, (0..numel(shape)).map(|i| i as f64).collect())
}

/// Python's slice of `0..n` with `start`, `stop` and a positive `step`.
fn python_slice(n: usize, start: i32, stop: Option<i32>, step: usize) -> Vec<usize> {
    let n = n as i32;
    let norm = |i: i32| if i < 0 { (i + n).max(0) } else { i.min(n) };
    let (b, e) = (norm(start), norm(stop.unwrap_or(n)));
    (b.max(0)..e.max(b))
        .step_by(step)
        .map(|i| i as usize)
        .collect()
}

/// `x` with the indices of `axis` replaced by `picks` (a gather).
fn gather_axis(x: &Nd, axis: usize, picks: &[usize]) -> Nd {
    let mut shape = x.shape.clone();
    shape[axis] = picks.len();
    Nd::from_fn(&shape, |idx| {
        let mut src = idx.to_vec();
        src[axis] = picks[idx[axis]];
        x.at(&src)
    })
}

fn shape_and_axis(min_rank: usize) -> impl Strategy<Value = (Nd, usize)> {
    nd_in(shape_min(min_rank, 4, 4), -5.0, 5.0).prop_flat_map(|x| {
        let r = x.shape.len();
        (Just(x), 0..r)
    })
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn reshape_transpose_swap_move(
        s in shape_min(1, 4, 4).prop_flat_map(|s| (Just(s.clone()), Just(s).prop_shuffle())),
        perm in Just((0..4usize).collect::<Vec<_>>()).prop_shuffle(),
        pick in (0usize..4, 0usize..4),
    ) {
        let (s, shuffled) = s;
        let x = iota(&s);
        let a = x.to_array();
        let r = s.len();
        // Reshape to the shuffled dimensions: same data, new shape.
        let got = a.reshape(&dims(&shuffled)).unwrap();
        assert_close(&got, &Nd::new(&shuffled, x.data.clone()), 0.0, 0.0, "reshape");
        let got = a.reshape(&[-1]).unwrap();
        assert_close(&got, &Nd::new(&[x.data.len()], x.data.clone()), 0.0, 0.0, "reshape -1");
        // Transpose by a random permutation of this rank.
        let p: Vec<usize> = perm.into_iter().filter(|&i| i < r).collect();
        let got = a.transpose(&p.iter().map(|&i| i as i32).collect::<Vec<_>>()).unwrap();
        assert_close(&got, &x.permute(&p), 0.0, 0.0, "transpose");
        let rev: Vec<usize> = (0..r).rev().collect();
        assert_close(&a.t().unwrap(), &x.permute(&rev), 0.0, 0.0, "t");
        // swapaxes / moveaxis.
        let (i, j) = (pick.0 % r, pick.1 % r);
        let mut sw: Vec<usize> = (0..r).collect();
        sw.swap(i, j);
        assert_close(&a.swapaxes(i as i32, j as i32 - r as i32).unwrap(), &x.permute(&sw), 0.0, 0.0, "swapaxes");
        let mut mv: Vec<usize> = (0..r).filter(|&k| k != i).collect();
        mv.insert(j, i);
        assert_close(&a.moveaxis(i as i32, j as i32).unwrap(), &x.permute(&mv), 0.0, 0.0, "moveaxis");
    }

    #[test]
    fn expand_squeeze_flatten(x in nd_in(shape(3, 4), -5.0, 5.0), at in 0usize..4, range in (0usize..4, 0usize..4)) {
        let a = x.to_array();
        let r = x.shape.len();
        let at = at % (r + 1);
        let mut expanded = x.shape.clone();
        expanded.insert(at, 1);
        let e = a.expand_dims(&[at as i32]).unwrap();
        assert_close(&e, &Nd::new(&expanded, x.data.clone()), 0.0, 0.0, "expand_dims");
        assert_close(&e.squeeze(&[at as i32]).unwrap(), &x, 0.0, 0.0, "squeeze axis");
        let all_ones: Vec<usize> = x.shape.iter().cloned().filter(|&d| d != 1).collect();
        assert_close(&e.squeeze(&[]).unwrap(), &Nd::new(&all_ones, x.data.clone()), 0.0, 0.0, "squeeze all");
        if r > 0 {
            let (lo, hi) = (range.0 % r, range.1 % r);
            let (lo, hi) = (lo.min(hi), lo.max(hi));
            let mut flat: Vec<usize> = x.shape[..lo].to_vec();
            flat.push(x.shape[lo..=hi].iter().product());
            flat.extend_from_slice(&x.shape[hi + 1..]);
            let got = a.flatten(lo as i32, hi as i32 - r as i32).unwrap();
            assert_close(&got, &Nd::new(&flat, x.data.clone()), 0.0, 0.0, "flatten");
        }
    }

    #[test]
    fn broadcast_to_reads_back_logically((sa, sb) in common::broadcast_pair()) {
        let x = iota(&sa);
        let out = common::broadcast_shapes(&sa, &sb);
        let got = x.to_array().broadcast_to(&dims(&out)).unwrap();
        assert_close(&got, &x.broadcast_to(&out), 0.0, 0.0, "broadcast_to");
    }

    #[test]
    fn concatenate_stack_split(
        (x, axis) in shape_and_axis(1),
        extra in prop::collection::vec(1usize..4, 1..3),
        parts in 1usize..4,
    ) {
        // Concatenate arrays that differ along `axis`.
        let mut pieces = vec![x.clone()];
        for (k, &len) in extra.iter().enumerate() {
            let mut s = x.shape.clone();
            s[axis] = len;
            pieces.push(Nd::from_fn(&s, |idx| 100.0 * (k + 1) as f64 + idx.iter().sum::<usize>() as f64));
        }
        let arrays: Vec<Array> = pieces.iter().map(Nd::to_array).collect();
        let refs: Vec<&Array> = arrays.iter().collect();
        let got = concatenate(&refs, axis as i32).unwrap();
        let total: usize = pieces.iter().map(|p| p.shape[axis]).sum();
        let mut s = x.shape.clone();
        s[axis] = total;
        let want = Nd::from_fn(&s, |idx| {
            let mut i = idx[axis];
            for p in &pieces {
                if i < p.shape[axis] {
                    let mut src = idx.to_vec();
                    src[axis] = i;
                    return p.at(&src);
                }
                i -= p.shape[axis];
            }
            unreachable!()
        });
        assert_close(&got, &want, 0.0, 0.0, "concatenate");

        // Stack copies of x at every position.
        for at in 0..=x.shape.len() {
            let y = x.map(|v| v + 1.0).f32_exact();
            let got = stack(&[&x.to_array(), &y.to_array()], at as i32).unwrap();
            let mut s = x.shape.clone();
            s.insert(at, 2);
            let want = Nd::from_fn(&s, |idx| {
                let mut src = idx.to_vec();
                let which = src.remove(at);
                if which == 0 { x.at(&src) } else { y.at(&src) }
            });
            assert_close(&got, &want, 0.0, 0.0, "stack");
        }

        // Split `want` (whose axis is `total` long) into equal parts, then at indices.
        let wa = want.to_array();
        let t = want.shape[axis];
        let remainder = t % parts;
        if remainder == 0 {
            let pieces = wa.split(parts as i32, axis as i32).unwrap();
            prop_assert_eq!(pieces.len(), parts);
            let len = t / parts;
            for (k, p) in pieces.iter().enumerate() {
                let picks: Vec<usize> = (k * len..(k + 1) * len).collect();
                assert_close(p, &gather_axis(&want, axis, &picks), 0.0, 0.0, "split");
            }
        } else {
            prop_assert!(wa.split(parts as i32, axis as i32).is_err());
        }
        let cuts = [x.shape[axis]];
        let halves = wa.split_at(&[cuts[0] as i32], axis as i32).unwrap();
        prop_assert_eq!(halves.len(), 2);
        assert_close(&halves[0], &x, 0.0, 0.0, "split_at first");
        prop_assert_eq!(halves[1].shape()[axis], (t - cuts[0]) as i32);
    }

    #[test]
    fn slice_axis_with_steps(
        (x, axis) in shape_and_axis(1),
        start in -6i32..6,
        stop in prop::option::of(-6i32..6),
        step in 1usize..4,
    ) {
        let got = x.to_array().slice_axis(axis as i32, start, stop, step as i32).unwrap();
        let picks = python_slice(x.shape[axis], start, stop, step);
        assert_close(&got, &gather_axis(&x, axis, &picks), 0.0, 0.0, "slice_axis");
        // A strided slice of a transpose, read back without a copy.
        let r = x.shape.len();
        let rev: Vec<usize> = (0..r).rev().collect();
        let xt = x.permute(&rev);
        let got = x.to_array().t().unwrap().slice_axis((r - 1 - axis) as i32, start, stop, step as i32).unwrap();
        assert_close(&got, &gather_axis(&xt, r - 1 - axis, &picks), 0.0, 0.0, "slice of transpose");
    }

    #[test]
    fn slice_update_and_narrow((x, axis) in shape_and_axis(1), start in 0usize..4, len in 0usize..4) {
        let n = x.shape[axis];
        let start = start % n;
        let len = len.min(n - start);
        let a = x.to_array();
        let picks: Vec<usize> = (start..start + len).collect();
        let narrowed = a.narrow(axis as i32, start as i32, len as i32).unwrap();
        assert_close(&narrowed, &gather_axis(&x, axis, &picks), 0.0, 0.0, "narrow");
        let r = x.shape.len();
        let mut lo = vec![0i32; r];
        let mut hi = dims(&x.shape);
        lo[axis] = start as i32;
        hi[axis] = (start + len) as i32;
        let update = narrowed.add_scalar(1000.0).unwrap();
        let got = a.slice_update(&update, &lo, &hi, &vec![1; r]).unwrap();
        let want = Nd::from_fn(&x.shape, |idx| {
            let v = x.at(idx);
            if idx[axis] >= start && idx[axis] < start + len { f64::from((v + 1000.0) as f32) } else { v }
        });
        assert_close(&got, &want, 0.0, 0.0, "slice_update");
    }

    #[test]
    fn pad_repeat_tile_roll(
        (x, axis) in shape_and_axis(1),
        low in 0usize..3,
        high in 0usize..3,
        reps in 1usize..4,
        tiles in prop::collection::vec(1usize..3, 0..5),
        shift in -7i32..7,
    ) {
        let a = x.to_array();
        // pad
        let mut s = x.shape.clone();
        s[axis] += low + high;
        let want = Nd::from_fn(&s, |idx| {
            let i = idx[axis];
            if i < low || i >= low + x.shape[axis] { -7.5 } else {
                let mut src = idx.to_vec();
                src[axis] = i - low;
                x.at(&src)
            }
        });
        let got = a.pad(&[axis as i32], &[low as i32], &[high as i32], -7.5).unwrap();
        assert_close(&got, &want, 0.0, 0.0, "pad");
        // repeat along an axis and flattened
        let picks: Vec<usize> = (0..x.shape[axis]).flat_map(|i| std::iter::repeat_n(i, reps)).collect();
        assert_close(&a.repeat(reps as i32, Some(axis as i32)).unwrap(), &gather_axis(&x, axis, &picks), 0.0, 0.0, "repeat");
        let flat: Vec<f64> = x.data.iter().flat_map(|&v| std::iter::repeat_n(v, reps)).collect();
        assert_close(&a.repeat(reps as i32, None).unwrap(), &Nd::new(&[flat.len()], flat), 0.0, 0.0, "repeat flat");
        // tile (reps may have more or fewer entries than the rank)
        let rank = x.shape.len().max(tiles.len());
        let mut base = vec![1; rank - x.shape.len()];
        base.extend_from_slice(&x.shape);
        let mut tr = vec![1; rank - tiles.len()];
        tr.extend_from_slice(&tiles);
        let out: Vec<usize> = base.iter().zip(&tr).map(|(b, t)| b * t).collect();
        let xb = Nd::new(&base, x.data.clone());
        let want = Nd::from_fn(&out, |idx| {
            let src: Vec<usize> = idx.iter().zip(&base).map(|(i, b)| i % b).collect();
            xb.at(&src)
        });
        let got = a.tile(&tiles.iter().map(|&t| t as i32).collect::<Vec<_>>()).unwrap();
        assert_close(&got, &want, 0.0, 0.0, "tile");
        // roll along an axis and flattened
        let n = x.shape[axis] as i32;
        let picks: Vec<usize> = (0..n).map(|i| (i - shift).rem_euclid(n) as usize).collect();
        assert_close(&a.roll(shift, Some(axis as i32)).unwrap(), &gather_axis(&x, axis, &picks), 0.0, 0.0, "roll");
        let len = x.data.len() as i32;
        let flat: Vec<f64> = (0..len).map(|i| x.data[(i - shift).rem_euclid(len) as usize]).collect();
        let got = a.roll(shift, None).unwrap();
        assert_close(&got.reshape(&[-1]).unwrap(), &Nd::new(&[flat.len()], flat), 0.0, 0.0, "roll flat");
    }

    #[test]
    fn take_and_take_along_axis(
        (x, axis) in shape_and_axis(1),
        raw in prop::collection::vec(0usize..1000, 1..7),
        m in 1usize..4,
    ) {
        let a = x.to_array();
        let n = x.shape[axis];
        let picks: Vec<usize> = raw.iter().map(|r| r % n).collect();
        let idx = Array::from_slice(&picks.iter().map(|&p| p as u32).collect::<Vec<_>>(), &[picks.len() as i32]).unwrap();
        assert_close(&a.take(&idx, Some(axis as i32)).unwrap(), &gather_axis(&x, axis, &picks), 0.0, 0.0, "take");
        // Indices of rank 2 insert two axes.
        let odd = picks.len() % 2;
        if odd == 0 {
            let idx2 = idx.reshape(&[2, -1]).unwrap();
            let got = a.take(&idx2, Some(axis as i32)).unwrap();
            let mut s = x.shape.clone();
            s.splice(axis..=axis, [2, picks.len() / 2]);
            assert_eq!(common::ushape(&got), s);
        }
        // Negative indices count from the end.
        let neg: Vec<i32> = picks.iter().map(|&p| p as i32 - n as i32).collect();
        let nidx = Array::from_slice(&neg, &[neg.len() as i32]).unwrap();
        assert_close(&a.take(&nidx, Some(axis as i32)).unwrap(), &gather_axis(&x, axis, &picks), 0.0, 0.0, "take negative");
        // Flat take.
        let total = x.data.len();
        let flat: Vec<usize> = raw.iter().map(|r| r % total).collect();
        let fidx = Array::from_slice(&flat.iter().map(|&p| p as i32).collect::<Vec<_>>(), &[flat.len() as i32]).unwrap();
        let want = Nd::new(&[flat.len()], flat.iter().map(|&p| x.data[p]).collect());
        assert_close(&a.take(&fidx, None).unwrap(), &want, 0.0, 0.0, "take flat");
        // take_along_axis with `m` indices per line.
        let mut s = x.shape.clone();
        s[axis] = m;
        let ind = Nd::from_fn(&s, |idx| ((raw[idx.iter().sum::<usize>() % raw.len()] + idx[axis]) % n) as f64);
        let got = a.take_along_axis(&ind.to_array_as(Dtype::I32), axis as i32).unwrap();
        let want = Nd::from_fn(&s, |idx| {
            let mut src = idx.to_vec();
            src[axis] = ind.at(idx) as usize;
            x.at(&src)
        });
        assert_close(&got, &want, 0.0, 0.0, "take_along_axis");
    }

    #[test]
    fn put_along_axis_and_scatter_add(
        (x, axis) in shape_and_axis(1),
        keys in prop::collection::vec(0.0f64..1.0, 256),
        m in 1usize..4,
    ) {
        let a = x.to_array();
        let n = x.shape[axis];
        let m = m.min(n);
        let mut s = x.shape.clone();
        s[axis] = m;
        // Distinct positions per line: the first `m` of a random permutation.
        let line_perm = |idx: &[usize]| -> Vec<usize> {
            let mut base = idx.to_vec();
            base[axis] = 0;
            let seed = common::ravel(&base, &x.shape);
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&i, &j| keys[(seed * 7 + i) % 256].total_cmp(&keys[(seed * 7 + j) % 256]));
            order
        };
        let ind = Nd::from_fn(&s, |idx| line_perm(idx)[idx[axis]] as f64);
        let vals = Nd::from_fn(&s, |idx| 1000.0 + idx.iter().sum::<usize>() as f64);
        let got = a.put_along_axis(&ind.to_array_as(Dtype::U32), &vals.to_array(), axis as i32).unwrap();
        let mut want = x.clone();
        for flat in 0..numel(&s) {
            let idx = unravel(flat, &s);
            let mut dst = idx.clone();
            dst[axis] = ind.at(&idx) as usize;
            want.data[common::ravel(&dst, &x.shape)] = vals.at(&idx);
        }
        assert_close(&got, &want, 0.0, 0.0, "put_along_axis");
        // scatter_add_axis: duplicate indices accumulate.
        let dup = Nd::from_fn(&s, |idx| ((keys[idx.iter().sum::<usize>() % 256] * n as f64) as usize % n) as f64);
        let got = a.scatter_add_axis(&dup.to_array_as(Dtype::I32), &vals.to_array(), axis as i32).unwrap();
        let mut want = x.clone();
        for flat in 0..numel(&s) {
            let idx = unravel(flat, &s);
            let mut dst = idx.clone();
            dst[axis] = dup.at(&idx) as usize;
            want.data[common::ravel(&dst, &x.shape)] += vals.at(&idx);
        }
        assert_close(&got, &want, 1e-6, 0.0, "scatter_add_axis");
    }

    #[test]
    fn sort_partition_topk((x, axis) in shape_and_axis(1), kth in 0usize..4) {
        // Random f32 values are distinct with overwhelming probability.
        let a = x.to_array();
        let n = x.shape[axis];
        let kth = kth % n;
        let sorted = x.map_lines(axis, |l| {
            let mut v = l.to_vec();
            v.sort_by(f64::total_cmp);
            v
        });
        assert_close(&a.sort(axis as i32).unwrap(), &sorted, 0.0, 0.0, "sort");
        let order = x.map_lines(axis, |l| {
            let mut idx: Vec<usize> = (0..l.len()).collect();
            idx.sort_by(|&i, &j| l[i].total_cmp(&l[j]));
            idx.into_iter().map(|i| i as f64).collect()
        });
        let arg = a.argsort(axis as i32 - x.shape.len() as i32).unwrap();
        prop_assert_eq!(arg.dtype(), Dtype::U32);
        assert_close(&arg, &order, 0.0, 0.0, "argsort");
        // argpartition: a permutation with the kth element in place, smaller before, larger after.
        let part = a.argpartition(kth as i32, axis as i32).unwrap();
        let gathered = a.take_along_axis(&part, axis as i32).unwrap();
        let g = Nd::new(&x.shape, common::read(&gathered));
        let p = Nd::new(&x.shape, common::read(&part));
        let stride = strides(&x.shape)[axis];
        for start in 0..x.data.len() {
            if unravel(start, &x.shape)[axis] != 0 {
                continue;
            }
            let line: Vec<f64> = (0..n).map(|i| g.data[start + i * stride]).collect();
            let mut idx: Vec<usize> = (0..n).map(|i| p.data[start + i * stride] as usize).collect();
            let pivot = line[kth];
            let sorted_line: Vec<f64> = (0..n).map(|i| sorted.data[start + i * stride]).collect();
            prop_assert_eq!(pivot, sorted_line[kth]);
            prop_assert!(line[..kth].iter().all(|&v| v <= pivot));
            prop_assert!(line[kth + 1..].iter().all(|&v| v >= pivot));
            idx.sort();
            prop_assert_eq!(idx, (0..n).collect::<Vec<_>>());
        }
        let vpart = a.partition(kth as i32, axis as i32).unwrap();
        assert_close(&vpart, &g, 0.0, 0.0, "partition equals gathered argpartition");
        // topk: the k largest values of each line, in some order.
        let k = kth + 1;
        let top = a.topk(k as i32, axis as i32).unwrap();
        let mut s = x.shape.clone();
        s[axis] = k;
        prop_assert_eq!(common::ushape(&top), s.clone());
        let top_sorted = top.sort(axis as i32).unwrap();
        let picks: Vec<usize> = (n - k..n).collect();
        assert_close(&top_sorted, &gather_axis(&sorted, axis, &picks), 0.0, 0.0, "topk");
    }

    #[test]
    fn views_read_back_in_logical_order(x in nd_in(shape_min(2, 3, 5), -5.0, 5.0)) {
        let a = x.to_array();
        let r = x.shape.len();
        let rev: Vec<usize> = (0..r).rev().collect();
        // Transposed view.
        let t = a.t().unwrap();
        prop_assert_eq!(t.to_vec::<f32>().unwrap().iter().map(|&v| f64::from(v)).collect::<Vec<_>>(), x.permute(&rev).data);
        // Bytes of a view are in logical order too.
        let bytes = t.to_bytes().unwrap();
        let from_bytes: Vec<f64> = bytes.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect();
        prop_assert_eq!(from_bytes, x.permute(&rev).data);
        // A broadcast view with a new leading axis, then a strided slice of it, then its transpose.
        let mut bs = vec![3];
        bs.extend_from_slice(&x.shape);
        let b = a.broadcast_to(&dims(&bs)).unwrap();
        let s = b.slice_axis(1, 0, None, 2).unwrap();
        let picks: Vec<usize> = (0..x.shape[0]).step_by(2).collect();
        let want = gather_axis(&x.broadcast_to(&bs), 1, &picks);
        assert_close(&s, &want, 0.0, 0.0, "strided slice of broadcast");
        let srev: Vec<usize> = (0..=r).rev().collect();
        assert_close(&s.t().unwrap(), &want.permute(&srev), 0.0, 0.0, "transpose of that");
        // Conversions of a view.
        let as_i = t.to_vec::<i32>().unwrap();
        let want_i: Vec<i32> = x.permute(&rev).data.iter().map(|&v| v as i32).collect();
        prop_assert_eq!(as_i, want_i);
    }
}
