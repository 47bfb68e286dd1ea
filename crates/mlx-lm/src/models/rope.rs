//! Rotary-embedding settings read from a Hugging Face config.

use serde_json::Value;

use super::config_checks::positive_finite;
use crate::{Error, Result};

/// Base and position scale of the rotary embeddings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RopeSettings {
    /// The base wavelength (`rope_theta`).
    pub base: f32,
    /// Positions are multiplied by this (`1 / factor` for linear scaling).
    pub scale: f32,
}

/// Resolves `rope_theta` / `rope_scaling` / `rope_parameters` (the nested
/// form of newer configs). Only the `default` and `linear` rope types are
/// supported; any other type is rejected.
pub(crate) fn rope_settings(
    theta: Option<f64>,
    scaling: Option<&Value>,
    parameters: Option<&Value>,
) -> Result<RopeSettings> {
    let nested_theta = match parameters.and_then(|p| p.get("rope_theta")) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_f64().ok_or_else(|| Error::ModelConfig {
            field: "rope_parameters.rope_theta".into(),
            message: format!("must be a number, got {v}"),
        })?),
    };
    let base = match (theta, nested_theta) {
        (Some(t), _) => {
            positive_finite("rope_theta", t)?;
            t
        }
        (None, Some(t)) => {
            positive_finite("rope_parameters.rope_theta", t)?;
            t
        }
        (None, None) => DEFAULT_ROPE_THETA,
    };
    let scaling = match scaling {
        Some(Value::Null) | None => parameters,
        other => other,
    };
    let mut scale = 1.0f32;
    if let Some(cfg) = scaling {
        let field = if parameters.is_some() && scaling == parameters {
            "rope_parameters"
        } else {
            "rope_scaling"
        };
        let kind = cfg
            .get("type")
            .or_else(|| cfg.get("rope_type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        match kind {
            "default" => {}
            "linear" => {
                let factor = cfg.get("factor").and_then(Value::as_f64).ok_or_else(|| {
                    Error::ModelConfig {
                        field: format!("{field}.factor"),
                        message: "linear rope scaling needs a numeric `factor`".into(),
                    }
                })?;
                positive_finite(&format!("{field}.factor"), factor)?;
                scale = (1.0 / factor) as f32;
            }
            other => {
                return Err(Error::ModelConfig {
                    field: format!("{field}.rope_type"),
                    message: format!(
                        "rope type `{other}` is not supported (supported: default, linear)"
                    ),
                });
            }
        }
    }
    Ok(RopeSettings {
        base: base as f32,
        scale,
    })
}

/// The base Hugging Face uses when a config gives none.
const DEFAULT_ROPE_THETA: f64 = 10_000.0;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_flat_and_nested_forms() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let flat = rope_settings(Some(1e6), None, None)?;
        assert_eq!(
            flat,
            RopeSettings {
                base: 1e6,
                scale: 1.0
            }
        );
        let nested = json!({"rope_theta": 5e5, "rope_type": "default"});
        assert_eq!(rope_settings(None, None, Some(&nested))?.base, 5e5);
        let linear = json!({"type": "linear", "factor": 4.0});
        assert_eq!(rope_settings(Some(1e4), Some(&linear), None)?.scale, 0.25);
        Ok(())
    }

    #[test]
    fn rejects_unsupported_types() {
        let yarn = json!({"rope_type": "yarn", "factor": 4.0});
        let err = rope_settings(Some(1e4), Some(&yarn), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("yarn"), "{err}");
    }
}
