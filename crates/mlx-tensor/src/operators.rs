//! `std::ops` operators for arrays.
//!
//! Operators never panic: `&a + &b` returns `Result<Array>`, so shape errors
//! surface as `Err` (write `(&a + &b)?`). Scalars on the right are weakly
//! typed (`&x * 0.5` keeps a bf16 `x` in bf16). Library code in this workspace
//! calls the named methods ([`Array::add`], …) instead.

use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::{Array, Result};

macro_rules! binary_operator {
    ($trait:ident, $method:ident, $array_fn:ident, $scalar_fn:ident) => {
        impl $trait<&Array> for &Array {
            type Output = Result<Array>;
            #[track_caller]
            fn $method(self, rhs: &Array) -> Result<Array> {
                self.$array_fn(rhs)
            }
        }
        impl $trait<Array> for Array {
            type Output = Result<Array>;
            #[track_caller]
            fn $method(self, rhs: Array) -> Result<Array> {
                (&self).$array_fn(&rhs)
            }
        }
        impl $trait<&Array> for Array {
            type Output = Result<Array>;
            #[track_caller]
            fn $method(self, rhs: &Array) -> Result<Array> {
                (&self).$array_fn(rhs)
            }
        }
        impl $trait<f64> for &Array {
            type Output = Result<Array>;
            #[track_caller]
            fn $method(self, rhs: f64) -> Result<Array> {
                self.$scalar_fn(rhs)
            }
        }
    };
}

binary_operator!(Add, add, add, add_scalar);
binary_operator!(Sub, sub, subtract, sub_scalar);
binary_operator!(Mul, mul, multiply, mul_scalar);
binary_operator!(Div, div, divide, div_scalar);

impl Neg for &Array {
    type Output = Result<Array>;
    #[track_caller]
    fn neg(self) -> Result<Array> {
        self.negative()
    }
}

impl Neg for Array {
    type Output = Result<Array>;
    #[track_caller]
    fn neg(self) -> Result<Array> {
        self.negative()
    }
}
