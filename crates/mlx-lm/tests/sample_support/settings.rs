//! Sampler and processor settings written with mlx-lm's keyword names in
//! the fixtures.

use mlx_lm::sample::{LogitsProcessorConfig, SamplerConfig};
use serde_json::Value;

/// Sampler settings from mlx-lm's `make_sampler` keyword names.
pub fn sampler_config(s: &Value) -> SamplerConfig {
    let mut cfg = SamplerConfig::default();
    let f = |k: &str| s.get(k).and_then(Value::as_f64);
    let u = |k: &str| s.get(k).and_then(Value::as_u64).map(|x| x as usize);
    if let Some(v) = f("temp") {
        cfg.temperature = v;
    }
    if let Some(v) = f("top_p") {
        cfg.top_p = v;
    }
    if let Some(v) = f("min_p") {
        cfg.min_p = v;
    }
    if let Some(v) = u("min_tokens_to_keep") {
        cfg.min_tokens_to_keep = v;
    }
    if let Some(v) = u("top_k") {
        cfg.top_k = v;
    }
    if let Some(v) = f("xtc_probability") {
        cfg.xtc_probability = v;
    }
    if let Some(v) = f("xtc_threshold") {
        cfg.xtc_threshold = v;
    }
    if let Some(v) = s.get("xtc_special_tokens").and_then(Value::as_array) {
        cfg.xtc_special_tokens = v.iter().map(|t| t.as_u64().unwrap() as u32).collect();
    }
    cfg
}

/// Processor settings from mlx-lm's `make_logits_processors` keyword names.
pub fn processor_config(s: &Value) -> LogitsProcessorConfig {
    let mut cfg = LogitsProcessorConfig::default();
    let f = |k: &str| s.get(k).and_then(Value::as_f64);
    let u = |k: &str| s.get(k).and_then(Value::as_u64).map(|x| x as usize);
    if let Some(b) = s.get("logit_bias").and_then(Value::as_array) {
        cfg.logit_bias = b
            .iter()
            .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap()))
            .collect();
    }
    cfg.repetition_penalty = f("repetition_penalty");
    cfg.presence_penalty = f("presence_penalty");
    cfg.frequency_penalty = f("frequency_penalty");
    if let Some(v) = u("repetition_context_size") {
        cfg.repetition_context_size = v;
    }
    if let Some(v) = u("presence_context_size") {
        cfg.presence_context_size = v;
    }
    if let Some(v) = u("frequency_context_size") {
        cfg.frequency_context_size = v;
    }
    cfg
}
