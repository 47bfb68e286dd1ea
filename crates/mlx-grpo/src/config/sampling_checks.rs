//! Checks of the rollout-versus-training correction (TRL's
//! `GRPOConfig.__post_init__` and `GRPOTrainer.__init__` checks of the
//! `vllm_importance_sampling_*` fields), of dynamic sampling and of
//! overlapped generation.

use super::{GrpoConfig, LossType};

impl GrpoConfig {
    /// Problems of the `vllm_importance_sampling_*` fields: non-finite
    /// bounds, `clip_min >= clip_max`, a `*_truncate` mode with neither
    /// bound, and VESPO with a sequence-level mode (TRL's checks).
    pub(super) fn check_rollout_correction(&self, problems: &mut Vec<String>) {
        let (min, max) = (
            self.vllm_importance_sampling_clip_min,
            self.vllm_importance_sampling_clip_max,
        );
        for (name, bound) in [
            ("vllm_importance_sampling_clip_min", min),
            ("vllm_importance_sampling_clip_max", max),
        ] {
            if let Some(value) = bound.filter(|v| !v.is_finite()) {
                problems.push(format!("{name} = {value} but it must be finite (or none)"));
            }
        }
        if let (Some(lo), Some(hi)) = (min, max)
            && lo >= hi
        {
            problems.push(format!(
                "vllm_importance_sampling_clip_min ({lo}) must be less than \
                     vllm_importance_sampling_clip_max ({hi})"
            ));
        }
        if !self.vllm_importance_sampling_correction {
            return;
        }
        let mode = self.vllm_importance_sampling_mode;
        if !mode.masks() && min.is_none() && max.is_none() {
            problems.push(format!(
                "vllm_importance_sampling_mode = \"{mode}\" clips the ratios, so at least one of \
                 vllm_importance_sampling_clip_min or vllm_importance_sampling_clip_max must be set"
            ));
        }
        if self.loss_type == LossType::Vespo && mode.is_sequence_level() {
            problems.push(format!(
                "loss_type = \"vespo\" with vllm_importance_sampling_correction needs \
                 vllm_importance_sampling_mode \"token_truncate\" or \"token_mask\" (got \"{mode}\")"
            ));
        }
    }

    /// Dynamic sampling refills one process's generation batch from the
    /// shared prompt order, so it is single-process only.
    pub(super) fn check_dynamic_sampling(&self, processes: usize, problems: &mut Vec<String>) {
        if self.dynamic_sampling && processes > 1 {
            problems.push(format!(
                "dynamic_sampling = true is not supported with {processes} data-parallel processes; \
                 set dynamic_sampling = false or train in one process"
            ));
        }
    }

    /// Overlapped generation trains on completions sampled by weights one
    /// step old, which only the rollout correction's ratios account for.
    pub(super) fn check_overlap_generation(&self, problems: &mut Vec<String>) {
        if self.overlap_generation && !self.vllm_importance_sampling_correction {
            problems.push(
                "overlap_generation = true trains on completions sampled by the previous weights; \
                 set vllm_importance_sampling_correction = true so that the importance ratios \
                 correct for it"
                    .into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{DynamicSamplingOnCap, GrpoConfig, ImportanceSamplingMode, LossType};

    fn corrected() -> GrpoConfig {
        GrpoConfig {
            vllm_importance_sampling_correction: true,
            ..GrpoConfig::default()
        }
    }

    fn problems(cfg: &GrpoConfig) -> String {
        cfg.validate()
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn trl_names_and_defaults() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let d = GrpoConfig::default();
        assert!(!d.vllm_importance_sampling_correction);
        assert_eq!(
            d.vllm_importance_sampling_mode,
            ImportanceSamplingMode::SequenceMask
        );
        assert_eq!(d.vllm_importance_sampling_clip_max, Some(3.0));
        assert_eq!(d.vllm_importance_sampling_clip_min, None);
        assert!(!d.needs_old_logps());
        assert!(corrected().needs_old_logps());
        let cfg = GrpoConfig::from_toml_str(
            "vllm_importance_sampling_correction = true\n\
             vllm_importance_sampling_mode = \"token_truncate\"\n\
             vllm_importance_sampling_cap = 2.5\n\
             dynamic_sampling = true\n\
             dynamic_sampling_on_cap = \"pad_with_dropped\"\n",
        )?;
        assert_eq!(
            cfg.vllm_importance_sampling_mode,
            ImportanceSamplingMode::TokenTruncate
        );
        assert_eq!(cfg.vllm_importance_sampling_clip_max, Some(2.5));
        assert_eq!(
            cfg.dynamic_sampling_on_cap,
            DynamicSamplingOnCap::PadWithDropped
        );
        let mut cfg = GrpoConfig::default();
        cfg.set("--vllm-importance-sampling-mode", "token_mask")?;
        cfg.set("vllm_importance_sampling_clip_min", "0.5")?;
        cfg.set("vllm_importance_sampling_clip_max", "none")?;
        cfg.set("dynamic_sampling_max_extra_rounds", "2")?;
        assert_eq!(
            cfg.vllm_importance_sampling_mode,
            ImportanceSamplingMode::TokenMask
        );
        assert_eq!(
            (
                cfg.vllm_importance_sampling_clip_min,
                cfg.vllm_importance_sampling_clip_max
            ),
            (Some(0.5), None)
        );
        assert_eq!(cfg.dynamic_sampling_max_extra_rounds, 2);
        assert!(cfg.set("vllm_importance_sampling_mode", "token").is_err());
        Ok(())
    }

    #[test]
    fn rejects_what_trl_rejects() {
        let msg = problems(&GrpoConfig {
            vllm_importance_sampling_clip_min: Some(3.0),
            ..GrpoConfig::default()
        });
        assert!(msg.contains("clip_min (3) must be less than"), "{msg}");
        let msg = problems(&GrpoConfig {
            vllm_importance_sampling_mode: ImportanceSamplingMode::SequenceTruncate,
            vllm_importance_sampling_clip_max: None,
            ..corrected()
        });
        assert!(msg.contains("at least one of"), "{msg}");
        // Masking without bounds masks nothing but is allowed, as in TRL.
        let unbounded_mask = GrpoConfig {
            vllm_importance_sampling_mode: ImportanceSamplingMode::TokenMask,
            vllm_importance_sampling_clip_max: None,
            ..corrected()
        };
        assert_eq!(problems(&unbounded_mask), "");
        let msg = problems(&GrpoConfig {
            loss_type: LossType::Vespo,
            ..corrected()
        });
        assert!(
            msg.contains("vespo") && msg.contains("sequence_mask"),
            "{msg}"
        );
        let vespo_token = GrpoConfig {
            loss_type: LossType::Vespo,
            vllm_importance_sampling_mode: ImportanceSamplingMode::TokenTruncate,
            ..corrected()
        };
        assert_eq!(problems(&vespo_token), "");
        let msg = problems(&GrpoConfig {
            vllm_importance_sampling_clip_max: Some(f64::NAN),
            ..GrpoConfig::default()
        });
        assert!(msg.contains("must be finite"), "{msg}");
    }

    #[test]
    fn dynamic_sampling_is_single_process() {
        let cfg = GrpoConfig {
            dynamic_sampling: true,
            ..GrpoConfig::default()
        };
        assert!(cfg.validate().is_ok());
        let msg = cfg
            .validate_for_processes(2)
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string());
        assert!(msg.contains("dynamic_sampling"), "{msg}");
    }

    #[test]
    fn overlap_generation_needs_the_rollout_correction() {
        let uncorrected = GrpoConfig {
            overlap_generation: true,
            ..GrpoConfig::default()
        };
        let msg = problems(&uncorrected);
        assert!(
            msg.contains("overlap_generation")
                && msg.contains("vllm_importance_sampling_correction"),
            "{msg}"
        );
        let overlapped = GrpoConfig {
            overlap_generation: true,
            ..corrected()
        };
        assert_eq!(problems(&overlapped), "");
        assert!(!GrpoConfig::default().overlap_generation);
    }
}
