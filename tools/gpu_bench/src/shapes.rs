//! Model shapes the benchmark builds (`--shape`) and the adapted models of
//! the `lora` and `qlora` GRPO settings.

use mlx_grpo::config::{GrpoConfig, attach_peft_adapters};
use mlx_lm::loader::{
    QuantizationSpec, SaveOptions, load_quantized_model, qwen3_0_6b_config, random_model,
    save_quantized_model,
};
use mlx_lm::models::{Model, ModelConfig, Qwen3Config};
use mlx_tensor::Dtype;

use crate::Res;

/// The Qwen3 shape named by `--shape` (`0.6b`, `4b` or `8b`, as in the
/// published configurations), with `layers` and `vocab` for `0.6b` (the
/// larger shapes keep their own layer count).
pub fn model_config(shape: &str, layers: i32, vocab: i32) -> Res<ModelConfig> {
    let ModelConfig::Qwen3(base) = qwen3_0_6b_config(layers, vocab) else {
        return Err("the 0.6B configuration is not a dense Qwen3".into());
    };
    let config = match shape {
        "0.6b" => base,
        "4b" => Qwen3Config {
            hidden_size: 2560,
            intermediate_size: 9728,
            num_hidden_layers: 36,
            num_attention_heads: 32,
            num_key_value_heads: Some(8),
            ..base
        },
        "8b" => Qwen3Config {
            hidden_size: 4096,
            intermediate_size: 12288,
            num_hidden_layers: 36,
            num_attention_heads: 32,
            num_key_value_heads: Some(8),
            tie_word_embeddings: false,
            ..base
        },
        other => return Err(format!("unknown --shape {other} (0.6b, 4b or 8b)").into()),
    };
    Ok(ModelConfig::Qwen3(config))
}

/// LoRA as the comparison runs it with PEFT: r = 16, alpha = 32, every
/// linear layer but the output layer, no dropout.
pub fn lora_settings(config: &GrpoConfig) -> GrpoConfig {
    GrpoConfig {
        use_peft: true,
        lora_r: 16,
        lora_alpha: 32.0,
        lora_dropout: 0.0,
        lora_target_modules: Some(vec!["all-linear".into()]),
        ..config.clone()
    }
}

/// A fresh random bf16 model of `config` with LoRA adapters (`lora`), or
/// the same model quantized to 4 bits (groups of 64, mlx-lm's default)
/// through a checkpoint in `scratch` and adapted (`qlora`).
pub fn adapted_model(
    config: &ModelConfig,
    grpo: &GrpoConfig,
    quantized: bool,
    scratch: &std::path::Path,
) -> Res<Model> {
    let dense = random_model(config, 0, Dtype::BF16)?;
    let mut model = if quantized {
        let spec = QuantizationSpec {
            group_size: 64,
            bits: 4,
        };
        save_quantized_model(&dense, scratch, spec, &SaveOptions::default())?;
        drop(dense);
        let model = load_quantized_model(scratch, None)?;
        std::fs::remove_dir_all(scratch)?;
        model
    } else {
        dense
    };
    attach_peft_adapters(&mut model, &lora_settings(grpo))?;
    Ok(model)
}
