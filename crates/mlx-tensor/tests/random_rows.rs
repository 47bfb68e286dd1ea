//! Random draws with one key per row: row `i` of a batched draw is exactly
//! the single-key draw with key `i`, whatever the other keys, and badly
//! shaped keys are typed errors.

mod common;

use mlx_tensor::random::{self, key};
use mlx_tensor::{Array, Dtype, Error};
use proptest::prelude::*;

/// The shapes each row draws.
const SHAPES: [&[i32]; 3] = [&[], &[5], &[2, 3]];

fn bits(a: &Array) -> Vec<u32> {
    a.to_vec::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

fn row(a: &Array, i: i32) -> Array {
    a.take(&Array::scalar(i as u32).unwrap(), Some(0)).unwrap()
}

proptest! {
    #![proptest_config(common::cases(8))]

    #[test]
    fn each_row_draws_what_its_key_draws_alone(seed in any::<u64>(), b in 1i32..5) {
        let keys = random::split(&key(seed).unwrap(), b).unwrap();
        for shape in SHAPES {
            let gumbel = random::gumbel_rows(&keys, shape, Dtype::F32).unwrap();
            let uniform = random::uniform_rows(&keys, shape, Dtype::F32).unwrap();
            let mut full = vec![b];
            full.extend_from_slice(shape);
            prop_assert_eq!(gumbel.shape().0, full.clone());
            prop_assert_eq!(uniform.shape().0, full);
            for i in 0..b {
                let k = row(&keys, i);
                let alone = random::gumbel(shape, Dtype::F32, Some(&k)).unwrap();
                prop_assert_eq!(bits(&row(&gumbel, i)), bits(&alone), "gumbel row {} of {:?}", i, shape);
                let alone = random::uniform(0.0, 1.0, shape, Dtype::F32, Some(&k)).unwrap();
                prop_assert_eq!(bits(&row(&uniform, i)), bits(&alone), "uniform row {} of {:?}", i, shape);
            }
        }
    }

    #[test]
    fn each_key_splits_as_it_splits_alone(seed in any::<u64>(), b in 1i32..5, num in 1i32..4) {
        let keys = random::split(&key(seed).unwrap(), b).unwrap();
        let split = random::split_rows(&keys, num).unwrap();
        prop_assert_eq!(split.shape().0, vec![b, num, 2]);
        let (next, sub) = random::split2_rows(&keys).unwrap();
        for i in 0..b {
            let k = row(&keys, i);
            let alone = random::split(&k, num).unwrap();
            prop_assert_eq!(row(&split, i).to_vec::<u32>().unwrap(), alone.to_vec::<u32>().unwrap());
            let (n, s) = random::split2(&k).unwrap();
            prop_assert_eq!(row(&next, i).to_vec::<u32>().unwrap(), n.to_vec::<u32>().unwrap());
            prop_assert_eq!(row(&sub, i).to_vec::<u32>().unwrap(), s.to_vec::<u32>().unwrap());
        }
    }
}

#[test]
fn a_row_does_not_depend_on_the_other_keys() {
    let keys = random::split(&key(3).unwrap(), 3).unwrap();
    let other = random::split(&key(4).unwrap(), 3).unwrap();
    // Row 1 of `keys` among different neighbours.
    let mixed = mlx_tensor::concatenate(
        &[
            &row(&other, 0).reshape(&[1, 2]).unwrap(),
            &row(&keys, 1).reshape(&[1, 2]).unwrap(),
        ],
        0,
    )
    .unwrap();
    let a = random::gumbel_rows(&keys, &[7], Dtype::F32).unwrap();
    let b = random::gumbel_rows(&mixed, &[7], Dtype::F32).unwrap();
    assert_eq!(bits(&row(&a, 1)), bits(&row(&b, 1)));
    assert_ne!(bits(&row(&a, 0)), bits(&row(&b, 0)));
}

#[test]
fn keys_must_be_u32_rows_of_two() {
    let one = key(0).unwrap();
    let wide = Array::from_slice(&[0u32; 6], &[2, 3]).unwrap();
    let floats = Array::from_slice(&[0f32; 4], &[2, 2]).unwrap();
    let empty = Array::from_slice::<u32>(&[], &[0, 2]).unwrap();
    for bad in [&one, &wide, &floats, &empty] {
        for err in [
            random::gumbel_rows(bad, &[3], Dtype::F32).err(),
            random::uniform_rows(bad, &[3], Dtype::F32).err(),
            random::split_rows(bad, 2).err(),
        ] {
            assert!(
                matches!(err, Some(Error::Invalid { ref message, .. }) if message.contains("u32[B, 2]")),
                "{err:?}"
            );
        }
    }
}
