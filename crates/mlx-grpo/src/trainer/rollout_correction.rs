//! The `sampling/*` metrics of the rollout-versus-training correction for
//! one generation batch (see [`crate::loss::RolloutCorrection`]).

use std::collections::BTreeMap;

use crate::config::GrpoConfig;
use crate::loss::SamplingStats;
use crate::trainer::{MicroBatch, Parallel};
use crate::{Error, Result};

/// TRL's `sampling/sampling_logp_difference/{mean,max}` and
/// `sampling/importance_sampling_ratio/{min,mean,max}` of a generation
/// batch's micro-batches: each process's statistics over all its
/// micro-batches, combined over the processes as TRL gathers them. Empty
/// when the correction is off.
pub fn sampling_metrics(
    micro_batches: &[MicroBatch],
    config: &GrpoConfig,
    parallel: Option<&Parallel>,
) -> Result<BTreeMap<String, f64>> {
    if !config.vllm_importance_sampling_correction {
        return Ok(BTreeMap::new());
    }
    let mut stats = SamplingStats::default();
    for mb in micro_batches {
        let (Some(old), Some(sampling), Some(ratio)) = (
            &mb.old_logps,
            &mb.sampling_logps,
            &mb.importance_sampling_ratio,
        ) else {
            return Err(Error::internal(
                "a micro-batch of a corrected rollout lacks its log-probabilities or ratio",
            ));
        };
        let mode = config.vllm_importance_sampling_mode;
        stats.merge(&SamplingStats::of_batch(
            mode, old, sampling, &mb.mask, ratio,
        )?);
    }
    let values = stats.values();
    let per_process: Vec<[f64; 5]> = match parallel {
        Some(p) if p.size() > 1 => {
            let local: Vec<f32> = values.iter().map(|&v| v as f32).collect();
            p.gather_rows(&local, 1, local.len())?
                .chunks_exact(5)
                .map(|row| std::array::from_fn(|i| f64::from(row[i])))
                .collect()
        }
        _ => vec![values],
    };
    Ok(SamplingStats::metrics(&per_process))
}
