//! Key/value caches against mlx-lm's behaviour (expected values recorded
//! from mlx-lm 0.32.2's `cache.py` on the same update sequences).

use std::collections::HashMap;

use mlx_lm::cache::{
    AttentionMask, BatchKVCache, CACHE_STEP, KVCache, LayerCache, RotatingKVCache,
    load_prompt_cache, save_prompt_cache, trim_prompt_cache,
};
use mlx_tensor::{Array, Dtype};

/// `[1, 1, n, 1]` holding `start..start + n`.
fn seq(start: i32, n: i32) -> Array {
    Array::arange(f64::from(start), f64::from(start + n), 1.0, Dtype::F32)
        .unwrap()
        .reshape(&[1, 1, n, 1])
        .unwrap()
}

fn flat(a: &Array) -> Vec<f32> {
    a.to_vec::<f32>().unwrap()
}

fn mask_rows(m: &AttentionMask) -> Option<Vec<i32>> {
    match m {
        AttentionMask::Array(a) => Some(a.as_type(Dtype::I32).unwrap().to_vec::<i32>().unwrap()),
        _ => None,
    }
}

#[test]
fn kv_cache_grows_in_steps_and_trims() {
    let mut c = KVCache::new();
    let (k, v) = c.update_and_fetch(&seq(0, 3), &seq(100, 3)).unwrap();
    assert_eq!(flat(&k), vec![0.0, 1.0, 2.0]);
    assert_eq!(flat(&v), vec![100.0, 101.0, 102.0]);
    assert_eq!(c.offset(), 3);
    assert_eq!(c.nbytes(), 2 * CACHE_STEP as usize * 4);
    let (k, _) = c.update_and_fetch(&seq(3, 1), &seq(103, 1)).unwrap();
    assert_eq!(flat(&k), vec![0.0, 1.0, 2.0, 3.0]);
    assert_eq!(c.trim(2), 2);
    assert_eq!(c.offset(), 2);
    let (k, _) = c.update_and_fetch(&seq(50, 1), &seq(50, 1)).unwrap();
    assert_eq!(flat(&k), vec![0.0, 1.0, 50.0]);
    assert_eq!(c.trim(10), 3);
    assert_eq!(c.offset(), 0);
}

#[test]
fn kv_cache_crosses_the_step_boundary() {
    let mut c = KVCache::new();
    c.update_and_fetch(&seq(0, 250), &seq(0, 250)).unwrap();
    let (k, _) = c.update_and_fetch(&seq(250, 10), &seq(250, 10)).unwrap();
    assert_eq!(k.shape().dims(), &[1, 1, 260, 1]);
    let expected: Vec<f32> = (0..260).map(|x| x as f32).collect();
    assert_eq!(flat(&k), expected);
    // 250 positions fit the first step; the next update trims the buffer to
    // the 250 in use and appends a fresh step.
    assert_eq!(c.nbytes(), 2 * (250 + 256) * 4);
    assert!(matches!(c.make_mask(1), AttentionMask::None));
    assert!(matches!(c.make_mask(4), AttentionMask::Causal));
}

#[test]
fn rotating_cache_matches_mlx_lm() {
    let mut c = RotatingKVCache::new(4, 1).unwrap();
    // (tokens added, keys returned, offset, mask rows after the update)
    type Step = (i32, Vec<f32>, i32, Option<Vec<i32>>);
    let expected: Vec<Step> = vec![
        (
            3,
            vec![0.0, 1.0, 2.0],
            3,
            Some(vec![1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1]),
        ),
        (1, vec![0.0, 1.0, 2.0, 3.0], 4, None),
        (1, vec![0.0, 4.0, 2.0, 3.0], 5, None),
        (1, vec![0.0, 4.0, 5.0, 3.0], 6, None),
        (1, vec![0.0, 4.0, 5.0, 6.0], 7, None),
        (
            2,
            vec![0.0, 5.0, 6.0, 7.0, 8.0],
            9,
            Some(vec![1, 1, 1, 1, 0, 0, 1, 1, 1, 1]),
        ),
        (1, vec![0.0, 9.0, 7.0, 8.0], 10, None),
        (1, vec![0.0, 9.0, 10.0, 8.0], 11, None),
    ];
    let mut pos = 0;
    for (step, (n, keys, offset, mask)) in expected.into_iter().enumerate() {
        let (k, _) = c.update_and_fetch(&seq(pos, n), &seq(pos, n)).unwrap();
        pos += n;
        assert_eq!(flat(&k), keys, "step {step}");
        assert_eq!(c.offset(), offset, "step {step}");
        assert_eq!(mask_rows(&c.make_mask(n).unwrap()), mask, "step {step}");
    }
    assert!(!c.is_trimmable());
    assert_eq!(c.size(), 4);
}

#[test]
fn rotating_cache_rejects_bad_sizes() {
    assert!(RotatingKVCache::new(4, 4).is_err());
    assert!(RotatingKVCache::new(0, 0).is_err());
}

#[test]
fn batch_cache_masks_filters_and_extends_like_mlx_lm() {
    let mut b = BatchKVCache::new(&[1, 0, 2]);
    let keys = Array::arange(0.0, 12.0, 1.0, Dtype::F32)
        .unwrap()
        .reshape(&[3, 1, 4, 1])
        .unwrap();
    b.update_and_fetch(&keys, &Array::zeros(&[3, 1, 4, 1], Dtype::F32).unwrap())
        .unwrap();
    assert_eq!(b.offsets(), vec![3, 4, 2]);
    let mask = mask_rows(&b.make_mask(1).unwrap()).unwrap();
    assert_eq!(mask, vec![0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1]);

    b.filter(&[0, 2]).unwrap();
    assert_eq!(b.offset(), 3);
    assert_eq!(b.left_padding(), &[0, 1]);
    assert_eq!(b.offsets(), vec![3, 2]);
    let (k, _) = b.keys_and_values().unwrap();
    assert_eq!(flat(&k), vec![1.0, 2.0, 3.0, 9.0, 10.0, 11.0]);

    let mut other = BatchKVCache::new(&[0]);
    other
        .update_and_fetch(
            &Array::full(&[1, 1, 1, 1], 99.0, Dtype::F32).unwrap(),
            &Array::zeros(&[1, 1, 1, 1], Dtype::F32).unwrap(),
        )
        .unwrap();
    b.extend(&other).unwrap();
    assert_eq!(b.offset(), 3);
    assert_eq!(b.left_padding(), &[0, 1, 2]);
    assert_eq!(b.offsets(), vec![3, 2, 1]);
    let (k, _) = b.keys_and_values().unwrap();
    assert_eq!(
        flat(&k),
        vec![1.0, 2.0, 3.0, 9.0, 10.0, 11.0, 0.0, 0.0, 99.0]
    );
}

#[test]
fn batch_cache_extract_and_merge_round_trip() {
    let mut a = KVCache::new();
    a.update_and_fetch(&seq(0, 3), &seq(10, 3)).unwrap();
    let mut b = KVCache::new();
    b.update_and_fetch(&seq(5, 1), &seq(15, 1)).unwrap();
    let merged = BatchKVCache::merge(&[a, b]).unwrap();
    assert_eq!(merged.left_padding(), &[0, 2]);
    assert_eq!(merged.offsets(), vec![3, 1]);
    let one = merged.extract(1).unwrap();
    let (k, v) = one.keys_and_values().unwrap();
    assert_eq!(flat(&k), vec![5.0]);
    assert_eq!(flat(&v), vec![15.0]);
    assert_eq!(one.offset(), 1);
}

#[test]
fn batch_cache_right_padding_is_rolled_left() {
    let mut b = BatchKVCache::new(&[0, 0]);
    b.prepare(None, Some(&[0, 2])).unwrap();
    let keys = Array::arange(0.0, 6.0, 1.0, Dtype::F32)
        .unwrap()
        .reshape(&[2, 1, 3, 1])
        .unwrap();
    b.update_and_fetch(&keys, &keys).unwrap();
    b.finalize().unwrap();
    assert_eq!(b.left_padding(), &[0, 2]);
    assert_eq!(b.offsets(), vec![3, 1]);
    let (k, _) = b.keys_and_values().unwrap();
    // Row 1 held [3, pad, pad] at the start of its 256-position buffer; the
    // whole buffer rolls right by 2, so its unused (zero) tail wraps around.
    assert_eq!(flat(&k)[3..].to_vec(), vec![0.0, 0.0, 3.0]);
}

#[test]
fn prompt_cache_save_and_load_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = dir.join("cache.safetensors");
    let mut kv = KVCache::new();
    kv.update_and_fetch(&seq(0, 3), &seq(10, 3)).unwrap();
    let mut rot = RotatingKVCache::new(4, 1).unwrap();
    for i in 0..6 {
        rot.update_and_fetch(&seq(i, 1), &seq(i, 1)).unwrap();
    }
    let mut batch = BatchKVCache::new(&[1, 0]);
    let keys = Array::arange(0.0, 4.0, 1.0, Dtype::F32)
        .unwrap()
        .reshape(&[2, 1, 2, 1])
        .unwrap();
    batch.update_and_fetch(&keys, &keys).unwrap();
    let caches = vec![
        LayerCache::Kv(kv),
        LayerCache::Rotating(rot),
        LayerCache::Batch(batch),
        LayerCache::Kv(KVCache::new()),
    ];
    let meta = HashMap::from([("model".to_string(), "tiny".to_string())]);
    save_prompt_cache(&path, &caches, &meta).unwrap();
    let (loaded, loaded_meta) = load_prompt_cache(&path).unwrap();
    assert_eq!(loaded_meta, meta);
    assert_eq!(loaded.len(), 4);
    for (a, b) in caches.iter().zip(&loaded) {
        assert_eq!(a.offset(), b.offset());
        assert_eq!(a.size(), b.size());
        assert_eq!(a.is_empty(), b.is_empty());
    }
    let (LayerCache::Kv(kv), LayerCache::Rotating(rot), LayerCache::Batch(batch)) =
        (&loaded[0], &loaded[1], &loaded[2])
    else {
        panic!("cache kinds changed");
    };
    assert_eq!(
        flat(&kv.keys_and_values().unwrap().1),
        vec![10.0, 11.0, 12.0]
    );
    assert_eq!(
        flat(&rot.keys_and_values().unwrap().0),
        vec![0.0, 4.0, 5.0, 3.0]
    );
    assert_eq!(batch.offsets(), vec![1, 2]);
    // A loaded cache keeps working.
    let mut loaded = loaded;
    let (k, _) = loaded[0].update_and_fetch(&seq(3, 1), &seq(13, 1)).unwrap();
    assert_eq!(flat(&k), vec![0.0, 1.0, 2.0, 3.0]);
    assert_eq!(trim_prompt_cache(&mut loaded[..1], 1), 1);
}

#[test]
fn prompt_cache_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let path = dir.join("garbage.safetensors");
    std::fs::write(&path, b"not a safetensors file at all").unwrap();
    let err = load_prompt_cache(&path).unwrap_err().to_string();
    assert!(err.contains("garbage.safetensors"), "{err}");
}

#[test]
fn a_reserved_batch_cache_allocates_once_and_still_grows() {
    let update = |n: i32, tag: f64| {
        let k = Array::full(&[2, 1, n, 1], tag, Dtype::F32).unwrap();
        (k.clone(), k.mul_scalar(-1.0).unwrap())
    };
    let mut c = BatchKVCache::new(&[0, 1]);
    c.reserve(300);
    let (k, v) = update(5, 1.0);
    c.update_and_fetch(&k, &v).unwrap();
    // One allocation of exactly the reserved positions (keys and values).
    assert_eq!(c.nbytes(), 2 * 2 * 300 * 4);
    for step in 0..295 {
        let (k, v) = update(1, f64::from(step));
        c.update_and_fetch(&k, &v).unwrap();
    }
    assert_eq!(
        c.nbytes(),
        2 * 2 * 300 * 4,
        "no growth up to the reservation"
    );
    let (k, v) = update(1, 7.0);
    let (keys, _) = c.update_and_fetch(&k, &v).unwrap();
    assert_eq!(keys.shape().dims(), &[2, 1, 301, 1]);
    assert_eq!(
        c.nbytes(),
        2 * 2 * (300 + CACHE_STEP as usize) * 4,
        "beyond it, growth in steps"
    );
    assert_eq!(
        flat(&keys.slice_axis(2, 300, None, 1).unwrap()),
        vec![7.0, 7.0]
    );
    assert_eq!(c.offsets(), vec![301, 300]);
}

#[test]
fn a_batch_cache_reserved_for_its_prompt_grows_once_to_the_final_length() {
    let rows = |tag: f64, n: i32| {
        let k = Array::arange(tag, tag + f64::from(2 * n), 1.0, Dtype::F32)
            .unwrap()
            .reshape(&[2, 1, n, 1])
            .unwrap();
        (k.clone(), k.mul_scalar(-1.0).unwrap())
    };
    let mut c = BatchKVCache::new(&[0, 1]);
    c.reserve(3);
    let (k, v) = rows(0.0, 3);
    c.update_and_fetch(&k, &v).unwrap();
    assert_eq!(c.nbytes(), 2 * 2 * 3 * 4, "exactly the prompt's positions");

    // Rows repeated (row 1 twice, then row 0), then grown to 10 positions.
    c.filter(&[1, 1, 0]).unwrap();
    c.grow_to(10).unwrap();
    assert_eq!(c.nbytes(), 2 * 3 * 10 * 4);
    assert_eq!(c.left_padding(), &[1, 1, 0]);
    let (keys, values) = c.keys_and_values().unwrap();
    assert_eq!(
        flat(&keys),
        vec![3.0, 4.0, 5.0, 3.0, 4.0, 5.0, 0.0, 1.0, 2.0]
    );
    assert_eq!(flat(&values), flat(&keys.mul_scalar(-1.0).unwrap()));
    c.grow_to(4).unwrap();
    assert_eq!(c.nbytes(), 2 * 3 * 10 * 4, "never shrinks");

    // The next 7 positions fit without another allocation.
    for step in 0..7 {
        let k = Array::full(&[3, 1, 1, 1], f64::from(100 + step), Dtype::F32).unwrap();
        c.update_and_fetch(&k, &k).unwrap();
    }
    assert_eq!(c.nbytes(), 2 * 3 * 10 * 4);
    let (keys, _) = c.keys_and_values().unwrap();
    assert_eq!(keys.shape().dims(), &[3, 1, 10, 1]);
    assert_eq!(
        flat(&keys.slice_axis(0, 2, Some(3), 1).unwrap()),
        vec![
            0.0, 1.0, 2.0, 100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 106.0
        ]
    );

    // An empty cache reserves instead.
    let mut empty = BatchKVCache::new(&[0]);
    empty.grow_to(6).unwrap();
    let k = Array::full(&[1, 1, 2, 1], 1.0, Dtype::F32).unwrap();
    empty.update_and_fetch(&k, &k).unwrap();
    assert_eq!(empty.nbytes(), 2 * 6 * 4);
}
