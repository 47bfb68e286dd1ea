//! Command-line overrides: `GrpoConfig::set("key", "value")`.

use serde_json::{Map, Value};

use super::GrpoConfig;
use crate::error::{Error, Result};

impl GrpoConfig {
    /// Sets one field from strings, as a command line gives them.
    ///
    /// The key is a field name; a leading `--` is ignored and `-` is read as
    /// `_`, so `--num-generations` works. The value is read as JSON when it
    /// parses as JSON and fits the field (`4`, `1e-6`, `true`, `[1.0, 0.5]`),
    /// otherwise as a plain string (`dapo`, `runs/qwen`); `none` or `null`
    /// clears an optional field, and a comma-separated list (`1.0,0.5`) fills a
    /// list field (a single value makes a one-element list). On error the
    /// config is left unchanged. Nothing is validated across fields here:
    /// call [`GrpoConfig::validate`] once all overrides are applied.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let key = normalize_key(key);
        let mut fields = self.as_json_map(&key, value)?;
        if !fields.contains_key(&key) {
            return Err(Error::UnknownConfigKey { key });
        }

        let mut first_error = None;
        for candidate in candidates(value) {
            fields.insert(key.clone(), candidate);
            match serde_json::from_value::<GrpoConfig>(Value::Object(fields.clone())) {
                Ok(updated) => {
                    *self = updated;
                    return Ok(());
                }
                Err(e) => {
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        Err(Error::InvalidConfigValue {
            key,
            value: value.to_string(),
            reason: first_error.unwrap_or_else(|| "no interpretation fits".to_string()),
        })
    }

    /// Applies `key=value` overrides in order (each as [`GrpoConfig::set`]),
    /// e.g. the trailing arguments of a command line: `--beta=0.04 loss_type=grpo`.
    pub fn apply_overrides<I, S>(&mut self, overrides: I) -> Result<()>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for item in overrides {
            let item = item.as_ref();
            let Some((key, value)) = item.split_once('=') else {
                return Err(Error::InvalidConfigValue {
                    key: item.to_string(),
                    value: String::new(),
                    reason: "expected `key=value`".to_string(),
                });
            };
            self.set(key, value)?;
        }
        Ok(())
    }

    fn as_json_map(&self, key: &str, value: &str) -> Result<Map<String, Value>> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(Error::InvalidConfigValue {
                key: key.to_string(),
                value: value.to_string(),
                reason: "config did not serialize to a map".to_string(),
            }),
            Err(e) => Err(Error::InvalidConfigValue {
                key: key.to_string(),
                value: value.to_string(),
                reason: e.to_string(),
            }),
        }
    }
}

fn normalize_key(key: &str) -> String {
    key.trim().trim_start_matches("--").replace('-', "_")
}

/// Readings of a command-line value, most specific first.
fn candidates(value: &str) -> Vec<Value> {
    let trimmed = value.trim();
    let mut out = Vec::with_capacity(3);
    if matches!(trimmed, "none" | "None" | "null") {
        out.push(Value::Null);
    } else if let Ok(json) = serde_json::from_str::<Value>(trimmed) {
        out.push(json);
    }
    out.push(Value::String(value.to_string()));
    if !trimmed.is_empty() {
        let items: Vec<Value> = trimmed
            .split(',')
            .map(|part| {
                let part = part.trim();
                serde_json::from_str(part).unwrap_or_else(|_| Value::String(part.to_string()))
            })
            .collect();
        out.push(Value::Array(items));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LossType, ScaleRewards};

    #[test]
    fn sets_typed_values() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let mut cfg = GrpoConfig::default();
        cfg.set("num_generations", "4")?;
        cfg.set("--learning-rate", "3e-6")?;
        cfg.set("loss_type", "cispo")?;
        cfg.set("scale_rewards", "false")?;
        cfg.set("epsilon_high", "0.28")?;
        cfg.set("reward_weights", "2")?;
        assert_eq!(cfg.reward_weights, Some(vec![2.0]));
        cfg.set("reward_weights", "1.0,0.5")?;
        cfg.set("output_dir", "123")?;
        assert_eq!(cfg.num_generations, 4);
        assert_eq!(cfg.learning_rate, 3e-6);
        assert_eq!(cfg.loss_type, LossType::Cispo);
        assert_eq!(cfg.scale_rewards, ScaleRewards::None);
        assert_eq!(cfg.epsilon_high, Some(0.28));
        assert_eq!(cfg.reward_weights, Some(vec![1.0, 0.5]));
        assert_eq!(cfg.output_dir, std::path::PathBuf::from("123"));
        cfg.set("epsilon_high", "none")?;
        assert_eq!(cfg.epsilon_high, None);
        Ok(())
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let mut cfg = GrpoConfig::default();
        let err = cfg.set("num_generation", "4").unwrap_err();
        assert!(matches!(err, Error::UnknownConfigKey { ref key } if key == "num_generation"));
        let err = cfg.set("num_generations", "four").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("num_generations") && text.contains("four"),
            "{text}"
        );
        let err = cfg.set("loss_type", "ppo").unwrap_err();
        assert!(err.to_string().contains("ppo"));
        assert_eq!(
            cfg,
            GrpoConfig::default(),
            "a failed set leaves the config unchanged"
        );
    }

    #[test]
    fn applies_key_value_pairs() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let mut cfg = GrpoConfig::default();
        cfg.apply_overrides(["--beta=0.04", "seed=7"])?;
        assert_eq!((cfg.beta, cfg.seed), (0.04, 7));
        assert!(cfg.apply_overrides(["beta"]).is_err());
        Ok(())
    }
}
