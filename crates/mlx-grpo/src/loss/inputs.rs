//! [`LossInputs`]: the arrays of one micro-batch, and their validation.

use mlx_tensor::Array;

use super::settings::LossSettings;
use crate::error::{Error, Result};

/// Training or evaluation: evaluation neither splits the generation batch
/// across micro-steps nor accumulates gradients, so every `gradient
/// accumulation` divisor is 1 (TRL's `mode == "eval"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LossMode {
    /// Training (the default): divide for gradient accumulation.
    #[default]
    Train,
    /// Evaluation: no accumulation divisors.
    Eval,
}

/// The arrays of one micro-batch of `B` completions padded to `T` tokens.
///
/// Build it with [`LossInputs::new`] and the `with_*` methods. Inside the
/// gradient closure of a training step, `per_token_logps` (and `entropies`,
/// for the entropy bonus) come from the model so that the loss carries their
/// gradient; everything else is a constant recorded at generation time.
#[derive(Debug, Clone, Copy)]
pub struct LossInputs<'a> {
    /// `log_softmax(logits / temperature)` at the completion tokens, `[B, T]`
    /// float. The loss is differentiated through it.
    pub per_token_logps: &'a Array,
    /// One advantage per completion, `[B]` (also accepted: `[B, 1]`, or
    /// `[B, T]` for per-token advantages). Must be finite.
    pub advantages: &'a Array,
    /// Loss mask `[B, T]` (1 for tokens that count, 0 for padding; any
    /// numeric or bool dtype). Multiply a tool mask in before passing it.
    pub completion_mask: &'a Array,
    /// Log-probabilities of the policy that generated the batch, `[B, T]`;
    /// `None` uses `stop_gradient(per_token_logps)` (ratio 1, as TRL does when
    /// generation and optimisation are aligned).
    pub old_per_token_logps: Option<&'a Array>,
    /// Reference-model log-probabilities `[B, T]`; required when `beta != 0`.
    pub ref_per_token_logps: Option<&'a Array>,
    /// The sampler's own log-probabilities `[B, T]`, used by the off-policy
    /// mask instead of the old log-probabilities when given (TRL's
    /// `sampling_per_token_logps`).
    pub sampling_per_token_logps: Option<&'a Array>,
    /// Importance-sampling correction between the sampler and the old
    /// policy, `[B, T]` per token or `[B, 1]` per sequence (TRL's
    /// `importance_sampling_ratio`, see [`super::RolloutCorrection`]):
    /// multiplies the policy loss (all types but `vespo`), and enters
    /// VESPO's gamma weights.
    pub importance_sampling_ratio: Option<&'a Array>,
    /// Per-token entropies `[B, T]` of `softmax(logits / temperature)`. Needed
    /// for the entropy mask and the entropy bonus (through which they carry
    /// gradient); when present the `entropy` metric is logged.
    pub entropies: Option<&'a Array>,
    /// Active tokens of the whole generation batch (TRL's
    /// `num_items_in_batch`); required by `dapo`, `cispo` and `vespo`.
    pub num_items_in_batch: Option<f64>,
    /// Training or evaluation.
    pub mode: LossMode,
    /// Micro-batches of the current accumulation window, when it differs
    /// from the configured `gradient_accumulation_steps` (TRL's
    /// `current_gradient_accumulation_steps`, e.g. a short last window).
    pub gradient_accumulation_steps: Option<usize>,
    /// The entropy coefficient to apply to this micro-batch, overriding the
    /// configured `entropy_coef` (an adaptive controller's value, 0 when it
    /// gates the bonus off).
    pub entropy_coef: Option<f64>,
}

impl<'a> LossInputs<'a> {
    /// Inputs with the three required arrays and every option unset.
    pub fn new(
        per_token_logps: &'a Array,
        advantages: &'a Array,
        completion_mask: &'a Array,
    ) -> Self {
        Self {
            per_token_logps,
            advantages,
            completion_mask,
            old_per_token_logps: None,
            ref_per_token_logps: None,
            sampling_per_token_logps: None,
            importance_sampling_ratio: None,
            entropies: None,
            num_items_in_batch: None,
            mode: LossMode::Train,
            gradient_accumulation_steps: None,
            entropy_coef: None,
        }
    }

    /// Sets [`LossInputs::old_per_token_logps`].
    pub fn with_old_logps(mut self, old: &'a Array) -> Self {
        self.old_per_token_logps = Some(old);
        self
    }

    /// Sets [`LossInputs::ref_per_token_logps`].
    pub fn with_ref_logps(mut self, reference: &'a Array) -> Self {
        self.ref_per_token_logps = Some(reference);
        self
    }

    /// Sets [`LossInputs::sampling_per_token_logps`].
    pub fn with_sampling_logps(mut self, sampling: &'a Array) -> Self {
        self.sampling_per_token_logps = Some(sampling);
        self
    }

    /// Sets [`LossInputs::importance_sampling_ratio`].
    pub fn with_importance_sampling_ratio(mut self, ratio: &'a Array) -> Self {
        self.importance_sampling_ratio = Some(ratio);
        self
    }

    /// Sets [`LossInputs::entropies`].
    pub fn with_entropies(mut self, entropies: &'a Array) -> Self {
        self.entropies = Some(entropies);
        self
    }

    /// Sets [`LossInputs::num_items_in_batch`].
    pub fn with_num_items_in_batch(mut self, tokens: f64) -> Self {
        self.num_items_in_batch = Some(tokens);
        self
    }

    /// Sets [`LossInputs::mode`].
    pub fn with_mode(mut self, mode: LossMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets [`LossInputs::gradient_accumulation_steps`].
    pub fn with_gradient_accumulation_steps(mut self, steps: usize) -> Self {
        self.gradient_accumulation_steps = Some(steps);
        self
    }

    /// Sets [`LossInputs::entropy_coef`].
    pub fn with_entropy_coef(mut self, coef: f64) -> Self {
        self.entropy_coef = Some(coef);
        self
    }

    /// Checks shapes, dtypes and required inputs against `settings`, and that
    /// the advantages are finite (this reads the advantages back, a `[B]`
    /// array: cheap, but it evaluates them).
    ///
    /// [`GrpoLoss::compute`](super::GrpoLoss::compute) calls it; call it
    /// yourself to fail before building a model graph.
    pub fn validate(&self, settings: &LossSettings) -> Result<()> {
        self.validate_shapes(settings)?;
        check_finite_advantages(self.advantages)
    }

    /// [`LossInputs::validate`] without reading the advantages back.
    pub fn validate_shapes(&self, settings: &LossSettings) -> Result<()> {
        let logps = self.per_token_logps;
        let shape = logps.shape().0;
        if shape.len() != 2 {
            return Err(Error::LossInputShape {
                input: "per_token_logps",
                shape,
                expected: "[B, T] (two dimensions)".into(),
            });
        }
        if !logps.dtype().is_float() {
            return Err(Error::InvalidLossInput {
                input: "per_token_logps",
                reason: format!("dtype {} is not a float type", logps.dtype()),
            });
        }
        let (b, t) = (shape[0], shape[1]);
        let same = |input: &'static str, array: &Array| -> Result<()> {
            let got = array.shape().0;
            if got == shape {
                Ok(())
            } else {
                Err(Error::LossInputShape {
                    input,
                    shape: got,
                    expected: format!("{shape:?}, the shape of per_token_logps"),
                })
            }
        };
        same("completion_mask", self.completion_mask)?;
        let optional = [
            ("old_per_token_logps", self.old_per_token_logps),
            ("ref_per_token_logps", self.ref_per_token_logps),
            ("sampling_per_token_logps", self.sampling_per_token_logps),
            ("entropies", self.entropies),
        ];
        for (name, array) in optional {
            if let Some(array) = array {
                same(name, array)?;
            }
        }
        if let Some(ratio) = self.importance_sampling_ratio {
            let got = ratio.shape().0;
            if got != shape && got != [b, 1] {
                return Err(Error::LossInputShape {
                    input: "importance_sampling_ratio",
                    shape: got,
                    expected: format!(
                        "{shape:?} or [{b}, 1] for per_token_logps of shape {shape:?}"
                    ),
                });
            }
        }
        let adv = self.advantages.shape().0;
        let adv_ok = adv == [b] || adv == [b, 1] || adv == [b, t];
        if !adv_ok {
            return Err(Error::LossInputShape {
                input: "advantages",
                shape: adv,
                expected: format!(
                    "[{b}] (or [{b}, 1] or [{b}, {t}]) for per_token_logps of shape {shape:?}"
                ),
            });
        }
        self.check_required(settings)
    }

    fn check_required(&self, settings: &LossSettings) -> Result<()> {
        if settings.beta != 0.0 && self.ref_per_token_logps.is_none() {
            return Err(Error::MissingLossInput {
                input: "ref_per_token_logps",
                reason: format!(
                    "beta = {} adds a KL term to the reference model",
                    settings.beta
                ),
            });
        }
        if self.entropies.is_none() {
            if settings.uses_entropy_mask() {
                return Err(Error::MissingLossInput {
                    input: "entropies",
                    reason: format!(
                        "top_entropy_quantile = {} masks tokens by entropy",
                        settings.top_entropy_quantile
                    ),
                });
            }
            if settings.uses_entropy_bonus() {
                return Err(Error::MissingLossInput {
                    input: "entropies",
                    reason: "the entropy bonus is on (entropy_coef != 0 or use_adaptive_entropy)"
                        .into(),
                });
            }
        }
        if settings.needs_num_items_in_batch() {
            match self.num_items_in_batch {
                None => {
                    return Err(Error::MissingLossInput {
                        input: "num_items_in_batch",
                        reason: format!(
                            "loss_type = \"{}\" divides by the active tokens of the generation batch",
                            settings.loss_type
                        ),
                    });
                }
                Some(n) if !(n.is_finite() && n >= 0.0) => {
                    return Err(Error::InvalidLossInput {
                        input: "num_items_in_batch",
                        reason: format!("{n} is not a token count"),
                    });
                }
                Some(_) => {}
            }
        }
        if self.gradient_accumulation_steps == Some(0) {
            return Err(Error::InvalidLossInput {
                input: "gradient_accumulation_steps",
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// Errors with the first non-finite advantage.
fn check_finite_advantages(advantages: &Array) -> Result<()> {
    let values = advantages.to_vec::<f32>()?;
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFiniteAdvantage {
            index,
            value: values[index],
        }),
        None => Ok(()),
    }
}
