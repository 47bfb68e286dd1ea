//! Data-parallel training: averaging gradients over the ranks of a group.
//!
//! [`average_gradients`] sums every gradient over all ranks and divides by
//! the number of ranks. Like `mlx.nn.average_gradients`, it does not run one
//! collective per tensor: gradients of one dtype are flattened and
//! concatenated into buckets of up to [`DEFAULT_BUCKET_BYTES`], each bucket
//! is summed with one `all_sum`, and the result is split back into the
//! original shapes. Every rank must pass gradients of the same names,
//! shapes and dtypes (the map's sorted order makes the buckets agree).

use mlx_tensor::distributed::{Group, all_sum};
use mlx_tensor::{Array, Dtype, concatenate};

use crate::{ParamMap, Result};

/// The bucket size of [`average_gradients`]: 64 MiB, as
/// `mlx.nn.average_gradients`' `all_reduce_size`.
pub const DEFAULT_BUCKET_BYTES: usize = 64 << 20;

/// Every gradient averaged over the ranks of `group`, in buckets of up to
/// [`DEFAULT_BUCKET_BYTES`]. Returns the gradients unchanged when the group
/// has one rank. The result is lazy: evaluate it (with the optimizer
/// update) on every rank.
pub fn average_gradients(grads: &ParamMap, group: &Group) -> Result<ParamMap> {
    average_gradients_in_buckets(grads, group, DEFAULT_BUCKET_BYTES)
}

/// [`average_gradients`] with buckets of up to `bucket_bytes` bytes (a
/// gradient larger than that is summed on its own).
pub fn average_gradients_in_buckets(
    grads: &ParamMap,
    group: &Group,
    bucket_bytes: usize,
) -> Result<ParamMap> {
    let ranks = group.size();
    if ranks <= 1 {
        return Ok(grads.clone());
    }
    let mut averaged = ParamMap::new();
    for bucket in gradient_buckets(grads, bucket_bytes)? {
        let members: Vec<(&String, &Array)> = bucket
            .iter()
            .filter_map(|name| grads.get_key_value(name))
            .collect();
        let mean = |summed: Array| summed.div_scalar(ranks as f64);
        if let [(name, grad)] = members.as_slice() {
            averaged.insert((*name).clone(), mean(all_sum(grad, group)?)?);
            continue;
        }
        let flat: Vec<Array> = members
            .iter()
            .map(|(_, g)| g.reshape(&[-1]))
            .collect::<mlx_tensor::Result<_>>()?;
        let joined = concatenate(&flat.iter().collect::<Vec<_>>(), 0)?;
        let summed = mean(all_sum(&joined, group)?)?;
        let mut offsets = Vec::with_capacity(members.len().saturating_sub(1));
        let mut offset: usize = 0;
        let all_but_last = members.split_last().map_or(&[][..], |(_, rest)| rest);
        for (_, grad) in all_but_last {
            offset = offset
                .checked_add(grad.size())
                .ok_or_else(|| too_large(offset))?;
            offsets.push(i32::try_from(offset).map_err(|_| too_large(offset))?);
        }
        let parts = summed.split_at(&offsets, 0)?;
        for ((name, grad), part) in members.iter().zip(parts) {
            averaged.insert((*name).clone(), part.reshape(&grad.shape().0)?);
        }
    }
    Ok(averaged)
}

/// The names of the gradients [`average_gradients_in_buckets`] sums
/// together, bucket by bucket: gradients of one dtype, in name order, as
/// many as fit in `bucket_bytes` (a larger gradient alone). Errors on a
/// gradient that is not floating point.
pub fn gradient_buckets(grads: &ParamMap, bucket_bytes: usize) -> Result<Vec<Vec<String>>> {
    let mut by_dtype: Vec<(Dtype, Vec<(&String, usize)>)> = Vec::new();
    for (name, grad) in grads {
        let dtype = grad.dtype();
        if !dtype.is_float() {
            return Err(crate::Error::Config(format!(
                "average_gradients: gradient `{name}` has dtype {dtype}, expected floating point"
            )));
        }
        let entry = match by_dtype.iter_mut().find(|(d, _)| *d == dtype) {
            Some(entry) => entry,
            None => {
                by_dtype.push((dtype, Vec::new()));
                let last = by_dtype.len() - 1;
                &mut by_dtype[last]
            }
        };
        entry.1.push((name, grad.nbytes()));
    }
    let mut buckets = Vec::new();
    for (_, members) in by_dtype {
        let mut current: Vec<String> = Vec::new();
        let mut current_bytes: usize = 0;
        for (name, bytes) in members {
            let fits = current_bytes
                .checked_add(bytes)
                .is_some_and(|total| total <= bucket_bytes);
            if !current.is_empty() && !fits {
                buckets.push(std::mem::take(&mut current));
                current_bytes = 0;
            }
            current.push(name.clone());
            current_bytes = current_bytes.saturating_add(bytes);
        }
        if !current.is_empty() {
            buckets.push(current);
        }
    }
    Ok(buckets)
}

fn too_large(elements: usize) -> crate::Error {
    crate::Error::Config(format!(
        "average_gradients: a bucket of {elements}+ elements does not fit MLX's 32-bit sizes; use smaller buckets"
    ))
}
