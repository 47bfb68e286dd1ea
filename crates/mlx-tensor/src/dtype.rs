//! Element types.

use std::fmt;

use half::{bf16, f16};
use mlx_ffi::ffi::DType;

/// The element type of an [`Array`](crate::Array).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// Boolean.
    Bool,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// IEEE half precision.
    F16,
    /// Brain floating point (8-bit exponent, 7-bit mantissa).
    BF16,
    /// Single precision.
    F32,
    /// Double precision (CPU only in MLX).
    F64,
    /// Complex number of two `f32`.
    C64,
}

impl Dtype {
    /// Size of one element in bytes.
    pub fn size_of(self) -> usize {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 => 1,
            Dtype::U16 | Dtype::I16 | Dtype::F16 | Dtype::BF16 => 2,
            Dtype::U32 | Dtype::I32 | Dtype::F32 => 4,
            Dtype::U64 | Dtype::I64 | Dtype::F64 | Dtype::C64 => 8,
        }
    }

    /// Whether the type is a (real or complex) floating-point type.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64 | Dtype::C64
        )
    }

    /// Whether the type is a signed or unsigned integer.
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            Dtype::U8
                | Dtype::U16
                | Dtype::U32
                | Dtype::U64
                | Dtype::I8
                | Dtype::I16
                | Dtype::I32
                | Dtype::I64
        )
    }

    /// The name used by safetensors headers (`F32`, `BF16`, `I64`, …).
    pub fn safetensors_name(self) -> &'static str {
        match self {
            Dtype::Bool => "BOOL",
            Dtype::U8 => "U8",
            Dtype::U16 => "U16",
            Dtype::U32 => "U32",
            Dtype::U64 => "U64",
            Dtype::I8 => "I8",
            Dtype::I16 => "I16",
            Dtype::I32 => "I32",
            Dtype::I64 => "I64",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::F32 => "F32",
            Dtype::F64 => "F64",
            Dtype::C64 => "C64",
        }
    }

    pub(crate) fn to_ffi(self) -> DType {
        match self {
            Dtype::Bool => DType::Bool,
            Dtype::U8 => DType::U8,
            Dtype::U16 => DType::U16,
            Dtype::U32 => DType::U32,
            Dtype::U64 => DType::U64,
            Dtype::I8 => DType::I8,
            Dtype::I16 => DType::I16,
            Dtype::I32 => DType::I32,
            Dtype::I64 => DType::I64,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::F32 => DType::F32,
            Dtype::F64 => DType::F64,
            Dtype::C64 => DType::C64,
        }
    }

    pub(crate) fn from_ffi(dtype: DType) -> Dtype {
        match dtype {
            DType::Bool => Dtype::Bool,
            DType::U8 => Dtype::U8,
            DType::U16 => Dtype::U16,
            DType::U32 => Dtype::U32,
            DType::U64 => Dtype::U64,
            DType::I8 => Dtype::I8,
            DType::I16 => Dtype::I16,
            DType::I32 => Dtype::I32,
            DType::I64 => Dtype::I64,
            DType::F16 => Dtype::F16,
            DType::BF16 => Dtype::BF16,
            DType::F64 => Dtype::F64,
            DType::C64 => Dtype::C64,
            _ => Dtype::F32,
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Dtype::Bool => "bool",
            Dtype::U8 => "u8",
            Dtype::U16 => "u16",
            Dtype::U32 => "u32",
            Dtype::U64 => "u64",
            Dtype::I8 => "i8",
            Dtype::I16 => "i16",
            Dtype::I32 => "i32",
            Dtype::I64 => "i64",
            Dtype::F16 => "f16",
            Dtype::BF16 => "bf16",
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
            Dtype::C64 => "c64",
        };
        f.write_str(name)
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A Rust type that is the element type of some [`Dtype`]: arrays are built
/// from and read back into slices of these.
pub trait Element: Copy + Send + Sync + 'static + sealed::Sealed {
    /// The matching dtype.
    const DTYPE: Dtype;
    /// Reads one element from its little-endian bytes (`DTYPE.size_of()` of them).
    fn from_le_bytes(bytes: &[u8]) -> Self;
    /// Appends the little-endian bytes of `self`.
    fn extend_le_bytes(self, out: &mut Vec<u8>);
}

macro_rules! element {
    ($t:ty, $d:expr, $n:expr) => {
        impl sealed::Sealed for $t {}
        impl Element for $t {
            const DTYPE: Dtype = $d;
            fn from_le_bytes(bytes: &[u8]) -> Self {
                let mut raw = [0u8; $n];
                raw.copy_from_slice(&bytes[..$n]);
                <$t>::from_le_bytes(raw)
            }
            fn extend_le_bytes(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}

element!(u8, Dtype::U8, 1);
element!(u16, Dtype::U16, 2);
element!(u32, Dtype::U32, 4);
element!(u64, Dtype::U64, 8);
element!(i8, Dtype::I8, 1);
element!(i16, Dtype::I16, 2);
element!(i32, Dtype::I32, 4);
element!(i64, Dtype::I64, 8);
element!(f16, Dtype::F16, 2);
element!(bf16, Dtype::BF16, 2);
element!(f32, Dtype::F32, 4);
element!(f64, Dtype::F64, 8);

impl sealed::Sealed for bool {}
impl Element for bool {
    const DTYPE: Dtype = Dtype::Bool;
    fn from_le_bytes(bytes: &[u8]) -> Self {
        bytes[0] != 0
    }
    fn extend_le_bytes(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
}
