//! Element types: bf16/f16 conversions round like the `half` crate (to
//! nearest, ties to even), `to_vec` converts between dtypes like `as` casts,
//! `item` reads one-element arrays, and construction checks its inputs.

mod common;

use mlx_tensor::{Array, Dtype, Element, Error, bf16, f16};
use proptest::prelude::*;

fn roundtrip<T: Element + PartialEq + std::fmt::Debug>(values: &[T]) {
    let a = Array::from_slice(values, &[values.len() as i32]).unwrap();
    assert_eq!(a.dtype(), T::DTYPE);
    assert_eq!(a.to_vec::<T>().unwrap(), values, "{}", T::DTYPE);
}

/// Any `f32` that is not NaN (infinities, subnormals and zeros included).
fn any_f32() -> impl Strategy<Value = f32> {
    any::<u32>()
        .prop_map(f32::from_bits)
        .prop_filter("not NaN", |v| !v.is_nan())
}

proptest! {
    #![proptest_config(common::cases(128))]

    #[test]
    fn f32_to_bf16_and_f16_rounds_like_half(values in prop::collection::vec(any_f32(), 1..64)) {
        let a = Array::from_slice(&values, &[values.len() as i32]).unwrap();
        let b = a.as_type(Dtype::BF16).unwrap().to_vec::<bf16>().unwrap();
        let h = a.as_type(Dtype::F16).unwrap().to_vec::<f16>().unwrap();
        // to_vec converts too, with the same rounding.
        let b2 = a.to_vec::<bf16>().unwrap();
        for (i, &v) in values.iter().enumerate() {
            prop_assert_eq!(b[i].to_bits(), bf16::from_f32(v).to_bits(), "bf16 of {:e}", v);
            prop_assert_eq!(h[i].to_bits(), f16::from_f32(v).to_bits(), "f16 of {:e}", v);
            prop_assert_eq!(b2[i].to_bits(), b[i].to_bits());
        }
    }

    #[test]
    fn bf16_and_f16_widen_exactly(bits in prop::collection::vec(any::<u16>(), 1..64)) {
        let b: Vec<bf16> = bits.iter().map(|&x| bf16::from_bits(x)).filter(|v| !v.is_nan()).collect();
        let h: Vec<f16> = bits.iter().map(|&x| f16::from_bits(x)).filter(|v| !v.is_nan()).collect();
        if !b.is_empty() {
            roundtrip(&b);
            let wide = Array::from_slice(&b, &[b.len() as i32]).unwrap().to_vec::<f32>().unwrap();
            let want: Vec<f32> = b.iter().map(|v| v.to_f32()).collect();
            prop_assert_eq!(wide, want);
        }
        if !h.is_empty() {
            roundtrip(&h);
            let wide = Array::from_slice(&h, &[h.len() as i32]).unwrap().to_vec::<f32>().unwrap();
            let want: Vec<f32> = h.iter().map(|v| v.to_f32()).collect();
            prop_assert_eq!(wide, want);
        }
    }

    #[test]
    fn integer_and_float_conversions(values in prop::collection::vec(-1.0e6f32..1.0e6, 1..32)) {
        let a = Array::from_slice(&values, &[values.len() as i32]).unwrap();
        // Float to integer truncates toward zero, like `as`.
        let ints = a.to_vec::<i32>().unwrap();
        prop_assert_eq!(ints.clone(), values.iter().map(|&v| v as i32).collect::<Vec<_>>());
        let i64s = a.to_vec::<i64>().unwrap();
        prop_assert_eq!(i64s, values.iter().map(|&v| v as i64).collect::<Vec<_>>());
        // Integer to float is exact in this range.
        let back = Array::from_slice(&ints, &[ints.len() as i32]).unwrap().to_vec::<f32>().unwrap();
        prop_assert_eq!(back, ints.iter().map(|&v| v as f32).collect::<Vec<_>>());
        // f32 to f64 widens exactly.
        let wide = a.to_vec::<f64>().unwrap();
        prop_assert_eq!(wide, values.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
        // Non-zero is true.
        let bools = a.to_vec::<bool>().unwrap();
        prop_assert_eq!(bools, values.iter().map(|&v| v != 0.0).collect::<Vec<_>>());
    }

    #[test]
    fn every_element_type_round_trips(
        u in prop::collection::vec(any::<u64>(), 1..16),
        i in prop::collection::vec(any::<i64>(), 1..16),
        f in prop::collection::vec(any::<f64>().prop_filter("not NaN", |v| !v.is_nan()), 1..16),
        b in prop::collection::vec(any::<bool>(), 1..16),
    ) {
        roundtrip(&u.iter().map(|&x| x as u8).collect::<Vec<_>>());
        roundtrip(&u.iter().map(|&x| x as u16).collect::<Vec<_>>());
        roundtrip(&u.iter().map(|&x| x as u32).collect::<Vec<_>>());
        roundtrip(&u);
        roundtrip(&i.iter().map(|&x| x as i8).collect::<Vec<_>>());
        roundtrip(&i.iter().map(|&x| x as i16).collect::<Vec<_>>());
        roundtrip(&i.iter().map(|&x| x as i32).collect::<Vec<_>>());
        roundtrip(&i);
        roundtrip(&f.iter().map(|&x| x as f32).collect::<Vec<_>>());
        roundtrip(&f);
        roundtrip(&b);
    }
}

#[test]
fn half_rounding_ties_to_even() {
    // 1 + 2^-8 lies halfway between two bf16 values; ties go to the even one.
    let tie_down = 1.0f32 + 2f32.powi(-8);
    let tie_up = 1.0f32 + 3.0 * 2f32.powi(-8);
    let a = Array::from_slice(&[tie_down, tie_up, 65520.0, 1e-8, -0.0], &[5]).unwrap();
    let b = a.to_vec::<bf16>().unwrap();
    assert_eq!(b[0], bf16::from_f32(1.0));
    assert_eq!(b[1], bf16::from_f32(1.0 + 4.0 * 2f32.powi(-8)));
    let h = a.to_vec::<f16>().unwrap();
    // 65520 is the f16 overflow threshold: it rounds to infinity.
    assert!(h[2].is_infinite());
    assert_eq!(h[3].to_bits(), f16::from_f32(1e-8).to_bits());
    assert_eq!(h[4].to_bits(), f16::NEG_ZERO.to_bits());
}

#[test]
fn item_reads_one_element() {
    assert_eq!(Array::scalar(7i32).unwrap().item::<i32>().unwrap(), 7);
    assert_eq!(Array::scalar(2.5f32).unwrap().item::<f64>().unwrap(), 2.5);
    assert!(Array::scalar(true).unwrap().item::<bool>().unwrap());
    assert_eq!(
        Array::scalar(bf16::from_f32(1.5))
            .unwrap()
            .item::<f32>()
            .unwrap(),
        1.5
    );
    assert_eq!(
        Array::scalar(u64::MAX).unwrap().item::<u64>().unwrap(),
        u64::MAX
    );
    let one = Array::from_slice(&[3.0f32], &[1, 1, 1]).unwrap();
    assert_eq!(one.item::<f32>().unwrap(), 3.0);
    // A sum is a lazy scalar; item evaluates it.
    let s = Array::from_slice(&[1.0f32, 2.0, 3.0], &[3])
        .unwrap()
        .sum(0, false)
        .unwrap();
    assert_eq!(s.item::<f32>().unwrap(), 6.0);
    let many = Array::zeros(&[2, 2], Dtype::F32).unwrap();
    match many.item::<f32>() {
        Err(Error::NotScalar {
            op: "item",
            expected: 1,
            shape,
        }) => assert_eq!(shape, vec![2, 2]),
        other => panic!("expected NotScalar, got {other:?}"),
    }
    let empty = Array::zeros(&[0], Dtype::F32).unwrap();
    assert!(empty.item::<f32>().is_err());
}

#[test]
fn construction_checks_its_inputs() {
    let err = Array::from_slice(&[1.0f32, 2.0, 3.0], &[2, 2]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::DataLength {
                op: "from_slice",
                len: 3,
                expected: 4,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("[2, 2]"), "{err}");
    let err = Array::from_slice(&[1.0f32], &[-1]).unwrap_err();
    assert!(matches!(err, Error::OutOfRange { .. }), "{err}");
    let err = Array::from_bytes(&[0u8; 6], &[2], Dtype::F32).unwrap_err();
    assert!(err.to_string().contains("from_bytes"), "{err}");
    let a = Array::from_bytes(&[0, 0, 128, 63, 0, 0, 0, 64], &[2], Dtype::F32).unwrap();
    assert_eq!(a.to_vec::<f32>().unwrap(), [1.0, 2.0]);
    assert_eq!(a.nbytes(), 8);
    assert_eq!(a.size(), 2);
    assert_eq!(a.ndim(), 1);
    assert_eq!(a.dim(-1), Some(2));
    assert_eq!(a.dim(1), None);
    assert_eq!(a.describe(), "f32[2]");
    // view_as reinterprets bytes: one f32 is two u16.
    let v = a.view_as(Dtype::U16).unwrap();
    assert_eq!(v.shape().dims(), [4]);
    assert_eq!(v.to_vec::<u16>().unwrap(), [0, 0x3f80, 0, 0x4000]);
    // Scalars of a dtype, and creation functions.
    assert_eq!(
        Array::scalar_as(2.75, Dtype::BF16).unwrap().dtype(),
        Dtype::BF16
    );
    assert_eq!(
        Array::scalar_int_as(-3, Dtype::I8)
            .unwrap()
            .item::<i8>()
            .unwrap(),
        -3
    );
    assert_eq!(
        Array::full(&[2], 1.5, Dtype::F16)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        [1.5, 1.5]
    );
    assert_eq!(
        Array::arange(0.0, 5.0, 2.0, Dtype::I32)
            .unwrap()
            .to_vec::<i32>()
            .unwrap(),
        [0, 2, 4]
    );
    assert_eq!(
        Array::linspace(0.0, 1.0, 3, Dtype::F32)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        [0.0, 0.5, 1.0]
    );
    assert_eq!(
        Array::eye(2, 3, 1, Dtype::F32)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        [0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    );
    assert_eq!(
        Array::tri(2, 2, 0, Dtype::I32)
            .unwrap()
            .to_vec::<i32>()
            .unwrap(),
        [1, 0, 1, 1]
    );
    assert_eq!(a.ones_like().unwrap().to_vec::<f32>().unwrap(), [1.0, 1.0]);
    assert_eq!(Dtype::BF16.size_of(), 2);
    assert_eq!(Dtype::BF16.safetensors_name(), "BF16");
    assert!(Dtype::F16.is_float() && !Dtype::I32.is_float() && Dtype::U8.is_integer());
    // Clones are handles to one node.
    let c = a.clone();
    assert_eq!(c.id(), a.id());
    assert_eq!(format!("{c:?}"), "Array(f32[2])");
}
