//! [`RewardMatrix`]: rewards per completion and per function.

use crate::error::{Error, Result};

/// Rewards of `num_samples` completions from each named function, row-major
/// `[num_samples, num_functions]`; NaN marks "not applicable".
#[derive(Debug, Clone, PartialEq)]
pub struct RewardMatrix {
    names: Vec<String>,
    num_samples: usize,
    values: Vec<f32>,
}

impl RewardMatrix {
    /// A matrix from row-major values; `values.len()` must be
    /// `num_samples * names.len()`.
    pub fn new(names: Vec<String>, num_samples: usize, values: Vec<f32>) -> Result<Self> {
        if values.len() != num_samples * names.len() {
            return Err(Error::RewardShape {
                message: format!(
                    "{} values for {} samples x {} functions",
                    values.len(),
                    num_samples,
                    names.len()
                ),
            });
        }
        Ok(Self {
            names,
            num_samples,
            values,
        })
    }

    /// A matrix from one column per function, all of the same length.
    pub fn from_columns(names: Vec<String>, columns: &[Vec<f32>]) -> Result<Self> {
        if names.len() != columns.len() {
            return Err(Error::RewardShape {
                message: format!("{} names for {} columns", names.len(), columns.len()),
            });
        }
        let num_samples = columns.first().map_or(0, Vec::len);
        if let Some((j, col)) = columns
            .iter()
            .enumerate()
            .find(|(_, c)| c.len() != num_samples)
        {
            return Err(Error::RewardShape {
                message: format!(
                    "column `{}` has {} rows, expected {num_samples}",
                    names[j],
                    col.len()
                ),
            });
        }
        let mut values = Vec::with_capacity(num_samples * columns.len());
        for i in 0..num_samples {
            values.extend(columns.iter().map(|c| c[i]));
        }
        Ok(Self {
            names,
            num_samples,
            values,
        })
    }

    /// The function names, in column order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Completions (rows).
    pub fn num_samples(&self) -> usize {
        self.num_samples
    }

    /// Functions (columns).
    pub fn num_functions(&self) -> usize {
        self.names.len()
    }

    /// All values, row-major.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The reward of completion `sample` from function `function`.
    pub fn get(&self, sample: usize, function: usize) -> Option<f32> {
        if sample < self.num_samples && function < self.names.len() {
            self.values
                .get(sample * self.names.len() + function)
                .copied()
        } else {
            None
        }
    }

    /// The rewards of one completion from every function.
    pub fn row(&self, sample: usize) -> Option<&[f32]> {
        let f = self.names.len();
        self.values.get(sample * f..(sample + 1) * f)
    }

    /// The rewards of one function for every completion.
    pub fn column(&self, function: usize) -> Option<Vec<f32>> {
        (function < self.names.len()).then(|| {
            self.values
                .iter()
                .skip(function)
                .step_by(self.names.len())
                .copied()
                .collect()
        })
    }

    /// Completions for which every function returned NaN (TRL warns about
    /// these and gives them zero advantage).
    pub fn unscorable_samples(&self) -> Vec<usize> {
        if self.names.is_empty() {
            return Vec::new();
        }
        self.values
            .chunks_exact(self.names.len())
            .enumerate()
            .filter(|(_, row)| row.iter().all(|v| v.is_nan()))
            .map(|(i, _)| i)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_accessors() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let m = RewardMatrix::from_columns(
            vec!["a".into(), "b".into()],
            &[vec![1.0, 2.0], vec![f32::NAN, 4.0]],
        )?;
        let v = m.values();
        assert!(v[0] == 1.0 && v[1].is_nan() && v[2] == 2.0 && v[3] == 4.0);
        assert_eq!(m.get(1, 1), Some(4.0));
        assert_eq!(m.get(2, 0), None);
        assert_eq!(m.row(1), Some(&[2.0, 4.0][..]));
        assert_eq!(m.column(0), Some(vec![1.0, 2.0]));
        assert_eq!(m.column(2), None);
        assert_eq!(m.unscorable_samples(), Vec::<usize>::new());
        let all_nan = RewardMatrix::new(vec!["a".into()], 2, vec![f32::NAN, 1.0])?;
        assert_eq!(all_nan.unscorable_samples(), vec![0]);
        Ok(())
    }

    #[test]
    fn shape_errors() {
        assert!(RewardMatrix::new(vec!["a".into()], 2, vec![1.0]).is_err());
        assert!(
            RewardMatrix::from_columns(vec!["a".into(), "b".into()], &[vec![1.0], vec![]]).is_err()
        );
        assert!(RewardMatrix::from_columns(vec!["a".into()], &[]).is_err());
    }
}
