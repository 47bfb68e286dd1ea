//! The string-valued options of [`GrpoConfig`](super::GrpoConfig), spelled as
//! in TRL.

use std::fmt;
use std::str::FromStr;

/// Defines a string enum: `as_str`, `Display`, `FromStr` and serde, accepting
/// the canonical name and any listed aliases, and reporting the accepted names
/// on error.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $(
                $(#[$vmeta:meta])*
                $variant:ident = $text:literal $(| $alias:literal)*
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The canonical (TRL) spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text $(| $alias)* => Ok($name::$variant), )+
                    other => Err(format!(
                        "unknown {} `{}`; expected one of: {}",
                        stringify!($name),
                        other,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_enum! {
    /// Whether importance ratios are taken per token or once per sequence
    /// (TRL `importance_sampling_level`).
    pub enum ImportanceSamplingLevel {
        /// One ratio per token: `exp(logp - old_logp)`.
        Token = "token",
        /// One ratio per sequence: `exp` of the masked mean of the log-ratios (GSPO).
        Sequence = "sequence",
    }
}

string_enum! {
    /// How the rollout-versus-training correction treats its importance
    /// ratios `exp(old_logp - sampling_logp)` (TRL
    /// `vllm_importance_sampling_mode`): per token or one per sequence (the
    /// exponent summed over the sequence's tokens), and ratios outside
    /// `[clip_min, clip_max]` either clipped to the bounds or set to 0.
    pub enum ImportanceSamplingMode {
        /// Per-token ratios clipped to `[clip_min, clip_max]`.
        TokenTruncate = "token_truncate",
        /// Per-token ratios outside `[clip_min, clip_max]` set to 0.
        TokenMask = "token_mask",
        /// One ratio per sequence, clipped to `[clip_min, clip_max]`.
        SequenceTruncate = "sequence_truncate",
        /// One ratio per sequence, set to 0 outside `[clip_min, clip_max]`.
        SequenceMask = "sequence_mask",
    }
}

impl ImportanceSamplingMode {
    /// Whether one ratio covers a whole sequence (`sequence_*`).
    pub fn is_sequence_level(self) -> bool {
        matches!(self, Self::SequenceTruncate | Self::SequenceMask)
    }

    /// Whether out-of-range ratios are set to 0 (`*_mask`) rather than
    /// clipped (`*_truncate`).
    pub fn masks(self) -> bool {
        matches!(self, Self::TokenMask | Self::SequenceMask)
    }
}

string_enum! {
    /// What dynamic sampling does when its extra generation rounds are used
    /// up before the batch is full of informative groups.
    pub enum DynamicSamplingOnCap {
        /// Train on the informative groups found (a smaller batch), topped up
        /// with dropped groups only as far as every micro-batch needs one
        /// completion.
        TrainOnKept = "train_on_kept",
        /// Fill the batch to its full size with dropped (uniform-reward)
        /// groups, in the order they were drawn.
        PadWithDropped = "pad_with_dropped",
    }
}

string_enum! {
    /// The policy-loss formulation (TRL `loss_type`). See `LOSS_NOTES.md` for
    /// each one's formula and reduction.
    pub enum LossType {
        /// Clipped surrogate, mean over each sequence's tokens, then over sequences.
        Grpo = "grpo",
        /// Clipped surrogate, sum over tokens / active tokens of the whole generation batch.
        Dapo = "dapo",
        /// Clipped surrogate, sum / (batch size × `max_completion_length`).
        DrGrpo = "dr_grpo",
        /// Clipped surrogate, sum / active tokens of the micro-batch.
        Bnpo = "bnpo",
        /// Clipped importance weight (stop-gradient) × advantage × log-prob (MiniMax-M1).
        Cispo = "cispo",
        /// Soft sigmoid gate instead of hard clipping (SAPO).
        Sapo = "sapo",
        /// Length-unbiased sequence loss: per-sequence sum, mean over sequences.
        Luspo = "luspo",
        /// Gamma-weighted sequence-level soft policy optimisation (VESPO).
        Vespo = "vespo",
    }
}

string_enum! {
    /// How multiple reward functions are combined (TRL `multi_objective_aggregation`).
    pub enum MultiObjectiveAggregation {
        /// Weighted sum of the raw rewards, then normalised by `scale_rewards`.
        SumThenNormalize = "sum_then_normalize",
        /// Each function z-scored within its group, weighted sum, then z-scored over the batch (GDPO).
        NormalizeThenSum = "normalize_then_sum",
    }
}

string_enum! {
    /// Learning-rate schedule (transformers' `SchedulerType` names). Warmup is
    /// linear from 0 for every schedule that has one.
    pub enum LrSchedulerType {
        /// Linear warmup, then linear decay to 0.
        Linear = "linear",
        /// Linear warmup, then half-cosine decay to 0.
        Cosine = "cosine",
        /// Linear warmup, then cosine decay with hard restarts.
        CosineWithRestarts = "cosine_with_restarts",
        /// Linear warmup, then polynomial decay.
        Polynomial = "polynomial",
        /// Constant learning rate, no warmup.
        Constant = "constant",
        /// Linear warmup, then constant.
        ConstantWithWarmup = "constant_with_warmup",
        /// Linear warmup, then inverse square-root decay.
        InverseSqrt = "inverse_sqrt",
        /// Linear warmup, then cosine decay to a minimum learning rate.
        CosineWithMinLr = "cosine_with_min_lr",
        /// Warmup, stable phase, decay phase.
        WarmupStableDecay = "warmup_stable_decay",
    }
}

string_enum! {
    /// Optimizer. The transformers names of the same algorithms are accepted as
    /// aliases (`adamw_torch`, `adamw_torch_fused`, `adamw_hf` for AdamW).
    pub enum Optim {
        /// AdamW (decoupled weight decay); transformers' default.
        AdamW = "adamw" | "adamw_torch" | "adamw_torch_fused" | "adamw_hf",
        /// Adam with L2 weight decay folded into the gradient.
        Adam = "adam",
        /// Plain stochastic gradient descent.
        Sgd = "sgd",
    }
}

/// How rewards are scaled when forming advantages (TRL `scale_rewards`).
///
/// Deserializes from `"group"`, `"batch"`, `"none"`, or a boolean as TRL
/// accepts: `true` means `"group"` and `false` means `"none"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScaleRewards {
    /// Divide by each group's (Bessel-corrected) standard deviation + 1e-4.
    Group,
    /// Divide by the whole batch's standard deviation + 1e-4.
    Batch,
    /// Do not divide (Dr. GRPO).
    None,
}

impl ScaleRewards {
    /// Every value, in declaration order.
    pub const ALL: &'static [ScaleRewards] =
        &[ScaleRewards::Group, ScaleRewards::Batch, ScaleRewards::None];

    /// The canonical (TRL) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ScaleRewards::Group => "group",
            ScaleRewards::Batch => "batch",
            ScaleRewards::None => "none",
        }
    }
}

impl fmt::Display for ScaleRewards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ScaleRewards {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "group" | "true" | "True" => Ok(ScaleRewards::Group),
            "batch" => Ok(ScaleRewards::Batch),
            "none" | "false" | "False" => Ok(ScaleRewards::None),
            other => Err(format!(
                "unknown ScaleRewards `{other}`; expected one of: group, batch, none, true, false"
            )),
        }
    }
}

impl serde::Serialize for ScaleRewards {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ScaleRewards {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = ScaleRewards;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"group\", \"batch\", \"none\", true or false")
            }

            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(if v {
                    ScaleRewards::Group
                } else {
                    ScaleRewards::None
                })
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for &loss in LossType::ALL {
            assert_eq!(loss.as_str().parse::<LossType>(), Ok(loss));
        }
        for &scale in ScaleRewards::ALL {
            assert_eq!(scale.as_str().parse::<ScaleRewards>(), Ok(scale));
        }
        assert_eq!("dr_grpo".parse::<LossType>(), Ok(LossType::DrGrpo));
    }

    #[test]
    fn aliases_and_errors() {
        assert_eq!("adamw_torch_fused".parse::<Optim>(), Ok(Optim::AdamW));
        assert_eq!(Optim::AdamW.as_str(), "adamw");
        let err = "ppo".parse::<LossType>().unwrap_err();
        assert!(err.contains("`ppo`") && err.contains("dapo"), "{err}");
    }

    #[test]
    fn scale_rewards_accepts_booleans() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let g: ScaleRewards = serde_json::from_str("true")?;
        let n: ScaleRewards = serde_json::from_str("false")?;
        let b: ScaleRewards = serde_json::from_str("\"batch\"")?;
        assert_eq!(
            (g, n, b),
            (ScaleRewards::Group, ScaleRewards::None, ScaleRewards::Batch)
        );
        assert_eq!(serde_json::to_string(&ScaleRewards::None)?, "\"none\"");
        assert!(serde_json::from_str::<ScaleRewards>("\"sometimes\"").is_err());
        Ok(())
    }
}
