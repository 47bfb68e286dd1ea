//! [`EntropyControl`]: the entropy coefficient across optimiser steps, static
//! or adaptive (TRL's `use_adaptive_entropy`).

use std::path::Path;

use super::output::EntropyWindow;
use crate::config::GrpoConfig;
use crate::error::{Error, Result};

/// The file of a checkpoint that holds the adaptive entropy controller's
/// state (TRL's name).
pub const ENTROPY_STATE_FILE: &str = "entropy_ctrl_state.json";

/// The entropy-bonus coefficient and, with adaptive control, its controller.
///
/// Static control (`use_adaptive_entropy = false`) always applies
/// `entropy_coef`. Adaptive control applies the coefficient only while the
/// previous optimiser step's entropy was at most `entropy_target` (no bonus
/// before the first measurement), and after each optimiser step moves it by
/// `entropy_coef_delta` up (entropy at or below the target) or down (above
/// it), within `[entropy_coef_min, entropy_coef_max]`. The step's entropy is
/// the token-weighted mean over every micro-batch of the accumulation window,
/// fed by [`EntropyControl::record`].
///
/// Per micro-batch: pass [`EntropyControl::applied_coef`] as
/// [`LossInputs::entropy_coef`](super::LossInputs::entropy_coef), then
/// [`EntropyControl::record`] the output's
/// [`entropy_window`](super::LossOutput::entropy_window). After the optimiser
/// step: [`EntropyControl::end_step`], and log [`EntropyControl::coef`] as
/// `entropy_coef`.
#[derive(Debug, Clone, PartialEq)]
pub struct EntropyControl {
    /// The current coefficient.
    coef: f64,
    /// The last optimiser step's window entropy (infinite before the first).
    last_entropy: f64,
    /// Entropy sum of the current window.
    window_sum: f64,
    /// Token count of the current window.
    window_tokens: f64,
    adaptive: bool,
    target: f64,
    delta: f64,
    min: f64,
    max: f64,
}

/// What a checkpoint keeps of an [`EntropyControl`] (TRL saves the same two
/// numbers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EntropyControlState {
    /// The current coefficient.
    pub entropy_coef: f64,
    /// The last optimiser step's window entropy (infinite before the first).
    pub last_world_entropy: f64,
}

impl EntropyControl {
    /// The controller of a training config, before the first step.
    pub fn from_config(cfg: &GrpoConfig) -> Self {
        Self {
            coef: cfg.entropy_coef,
            last_entropy: f64::INFINITY,
            window_sum: 0.0,
            window_tokens: 0.0,
            adaptive: cfg.use_adaptive_entropy,
            target: cfg.entropy_target,
            delta: cfg.entropy_coef_delta,
            min: cfg.entropy_coef_min,
            max: cfg.entropy_coef_max,
        }
    }

    /// Whether the coefficient adapts (`use_adaptive_entropy`).
    pub fn is_adaptive(&self) -> bool {
        self.adaptive
    }

    /// Whether the entropy bonus is on at all for this run.
    pub fn enabled(&self) -> bool {
        self.coef != 0.0 || self.adaptive
    }

    /// The current coefficient (TRL's logged `entropy_coef`).
    pub fn coef(&self) -> f64 {
        self.coef
    }

    /// The coefficient to apply to the micro-batches of the current step.
    pub fn applied_coef(&self) -> f64 {
        if !self.adaptive || self.last_entropy <= self.target {
            self.coef
        } else {
            0.0
        }
    }

    /// Adds one micro-batch's entropy totals to the current window.
    pub fn record_totals(&mut self, entropy_sum: f64, tokens: f64) {
        self.window_sum += entropy_sum;
        self.window_tokens += tokens;
    }

    /// Adds a loss output's entropy totals (evaluating them) to the window.
    pub fn record(&mut self, window: &EntropyWindow) -> Result<()> {
        let sum = f64::from(window.entropy_sum.item::<f32>()?);
        let tokens = f64::from(window.tokens.item::<f32>()?);
        self.record_totals(sum, tokens);
        Ok(())
    }

    /// Closes the optimiser step: with adaptive control, updates the
    /// coefficient from the window's mean entropy and returns that mean;
    /// resets the window. Returns `None` under static control.
    pub fn end_step(&mut self) -> Option<f64> {
        let (sum, tokens) = (self.window_sum, self.window_tokens);
        self.window_sum = 0.0;
        self.window_tokens = 0.0;
        if !self.adaptive {
            return None;
        }
        let entropy = sum / tokens.max(1.0);
        self.coef = if entropy <= self.target {
            (self.coef + self.delta).min(self.max)
        } else {
            (self.coef - self.delta).max(self.min)
        };
        self.last_entropy = entropy;
        Some(entropy)
    }

    /// The state to checkpoint.
    pub fn state(&self) -> EntropyControlState {
        EntropyControlState {
            entropy_coef: self.coef,
            last_world_entropy: self.last_entropy,
        }
    }

    /// Restores a checkpointed state (the current window is discarded).
    pub fn restore(&mut self, state: EntropyControlState) {
        self.coef = state.entropy_coef;
        self.last_entropy = state.last_world_entropy;
        self.window_sum = 0.0;
        self.window_tokens = 0.0;
    }
}

impl EntropyControlState {
    /// Writes the state to `checkpoint/entropy_ctrl_state.json` (an infinite
    /// `last_world_entropy`, before any measurement, as `null`).
    pub fn write(&self, checkpoint: &Path) -> Result<()> {
        let path = checkpoint.join(ENTROPY_STATE_FILE);
        let entropy = if self.last_world_entropy.is_finite() {
            serde_json::Value::from(self.last_world_entropy)
        } else {
            serde_json::Value::Null
        };
        let value = serde_json::json!({
            "entropy_coef": self.entropy_coef,
            "last_world_entropy": entropy,
        });
        std::fs::write(&path, value.to_string()).map_err(|e| Error::io(&path, e))
    }

    /// Reads the state a checkpoint holds, `None` when it has none.
    pub fn read(checkpoint: &Path) -> Result<Option<Self>> {
        let path = checkpoint.join(ENTROPY_STATE_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let bad = |message: String| Error::io(&path, std::io::Error::other(message));
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let entropy_coef = value
            .get("entropy_coef")
            .and_then(serde_json::Value::as_f64)
            .filter(|c| c.is_finite())
            .ok_or_else(|| bad("`entropy_coef` must be a finite number".into()))?;
        let last_world_entropy = match value.get("last_world_entropy") {
            None | Some(serde_json::Value::Null) => f64::INFINITY,
            Some(v) => v
                .as_f64()
                .ok_or_else(|| bad("`last_world_entropy` must be a number or null".into()))?,
        };
        Ok(Some(Self {
            entropy_coef,
            last_world_entropy,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adaptive() -> EntropyControl {
        let cfg = GrpoConfig {
            use_adaptive_entropy: true,
            entropy_coef: 0.01,
            entropy_target: 0.5,
            entropy_coef_delta: 0.01,
            entropy_coef_min: 0.0,
            entropy_coef_max: 0.025,
            ..GrpoConfig::default()
        };
        EntropyControl::from_config(&cfg)
    }

    #[test]
    fn static_control_always_applies_the_coefficient() {
        let cfg = GrpoConfig {
            entropy_coef: 0.03,
            ..GrpoConfig::default()
        };
        let mut control = EntropyControl::from_config(&cfg);
        assert!(control.enabled());
        assert_eq!(control.applied_coef(), 0.03);
        control.record_totals(10.0, 2.0);
        assert_eq!(control.end_step(), None);
        assert_eq!(control.applied_coef(), 0.03);
        assert!(!EntropyControl::from_config(&GrpoConfig::default()).enabled());
    }

    #[test]
    fn adaptive_control_gates_and_moves_within_bounds() {
        let mut control = adaptive();
        assert!(control.enabled());
        // No measurement yet: no bonus.
        assert_eq!(control.applied_coef(), 0.0);
        // Two micro-batches: token-weighted mean (0.3 * 2 + 0.6 * 2) / 4 = 0.45 <= 0.5.
        control.record_totals(0.6, 2.0);
        control.record_totals(1.2, 2.0);
        let entropy = control.end_step().unwrap_or(f64::NAN);
        assert!((entropy - 0.45).abs() < 1e-12);
        assert!((control.coef() - 0.02).abs() < 1e-12);
        assert_eq!(control.applied_coef(), control.coef());
        // Again low: capped at the maximum.
        control.record_totals(0.1, 1.0);
        control.end_step();
        assert!((control.coef() - 0.025).abs() < 1e-12);
        // High entropy: moves down and gates the bonus off.
        control.record_totals(9.0, 3.0);
        control.end_step();
        assert!((control.coef() - 0.015).abs() < 1e-12);
        assert_eq!(control.applied_coef(), 0.0);
        // An empty window has mean 0.
        assert_eq!(control.end_step(), Some(0.0));
        let state = control.state();
        let mut restored = adaptive();
        restored.restore(state);
        assert_eq!(restored.state(), state);
    }
}
