//! Shapes and axis selections.

use std::fmt;

/// The dimensions of an array (MLX uses 32-bit dimensions).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<i32>);

impl Shape {
    /// The dimensions.
    pub fn dims(&self) -> &[i32] {
        &self.0
    }

    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.0.len()
    }

    /// Number of elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.0.iter().map(|&d| d.max(0) as usize).product()
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

impl From<&[i32]> for Shape {
    fn from(dims: &[i32]) -> Self {
        Shape(dims.to_vec())
    }
}

impl From<Vec<i32>> for Shape {
    fn from(dims: Vec<i32>) -> Self {
        Shape(dims)
    }
}

impl<const N: usize> From<[i32; N]> for Shape {
    fn from(dims: [i32; N]) -> Self {
        Shape(dims.to_vec())
    }
}

impl std::ops::Deref for Shape {
    type Target = [i32];
    fn deref(&self) -> &[i32] {
        &self.0
    }
}

/// Which axes a reduction runs over: all of them, or a list (negative
/// values count from the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Axes {
    /// Every axis (the result is a scalar unless `keepdims`).
    All,
    /// The listed axes.
    These(Vec<i32>),
}

impl Axes {
    pub(crate) fn parts(&self) -> (&[i32], bool) {
        match self {
            Axes::All => (&[], true),
            Axes::These(axes) => (axes, false),
        }
    }
}

impl From<i32> for Axes {
    fn from(axis: i32) -> Self {
        Axes::These(vec![axis])
    }
}

impl From<&[i32]> for Axes {
    fn from(axes: &[i32]) -> Self {
        Axes::These(axes.to_vec())
    }
}

impl From<Vec<i32>> for Axes {
    fn from(axes: Vec<i32>) -> Self {
        Axes::These(axes)
    }
}

impl<const N: usize> From<[i32; N]> for Axes {
    fn from(axes: [i32; N]) -> Self {
        Axes::These(axes.to_vec())
    }
}

impl From<Option<i32>> for Axes {
    fn from(axis: Option<i32>) -> Self {
        match axis {
            Some(axis) => Axes::These(vec![axis]),
            None => Axes::All,
        }
    }
}
