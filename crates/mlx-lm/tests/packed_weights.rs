//! `generate::pack_weights`: the packed model decodes
//! exactly what the unpacked one does, keeps its parameter names and
//! values, and decoding no longer allocates a stacked copy of the weights.
//!
//! Its own test binary: it reads MLX's process-wide memory counters.

use mlx_lm::cache::LayerCache;
use mlx_lm::generate::{Decoder, pack_weights};
use mlx_lm::loader::{random_model, tiny_qwen3_config};
use mlx_lm::models::{Model, ModelConfig, Qwen3Config};
use mlx_lm::{CheckedTokens, LanguageModel};
use mlx_nn::{ModuleExt, VarBuilder};
use mlx_tensor::{Array, Dtype, memory};

type Res<T = ()> = Result<T, Box<dyn std::error::Error>>;

fn config() -> Res<ModelConfig> {
    let ModelConfig::Qwen3(base) = tiny_qwen3_config() else {
        return Err("tiny_qwen3_config is a Qwen3 configuration".into());
    };
    // Wide enough that the stacked weights (q/k/v and gate/up: 4 MiB a
    // layer in f32) stand out from a step's activations.
    Ok(ModelConfig::Qwen3(Qwen3Config {
        hidden_size: 256,
        intermediate_size: 1024,
        num_attention_heads: 8,
        num_key_value_heads: Some(4),
        head_dim: Some(32),
        num_hidden_layers: 3,
        ..base
    }))
}

/// The same parameters in a model that was never packed.
fn unpacked_copy(config: &ModelConfig, packed: &Model) -> Res<Model> {
    let mut plain = Model::new(config, &VarBuilder::random(99, Dtype::F32))?;
    let copies = packed
        .parameters()
        .into_iter()
        .map(|(name, a)| Ok((name, a.add_scalar(0.0)?)))
        .collect::<Res<_>>()?;
    plain.update(&copies)?;
    plain.eval_params()?;
    Ok(plain)
}

/// Ids `[1, n]` for the decoder.
fn ids(model: &Model, tokens: &[u32]) -> Res<CheckedTokens> {
    let input = Array::from_slice(tokens, &[1, tokens.len() as i32])?;
    Ok(CheckedTokens::new(&input, model.vocab_size())?)
}

/// Logits of a 5-token prompt and two single-token steps, with a cache.
fn decode(model: &Model) -> Res<Vec<f32>> {
    let decoder = Decoder::new(model)?;
    let mut cache: Vec<LayerCache> = model.new_cache();
    let mut out = Vec::new();
    for tokens in [&[3u32, 17, 250, 9, 41][..], &[77], &[5]] {
        out.extend(
            decoder
                .step(&ids(model, tokens)?, &mut cache)?
                .to_vec::<f32>()?,
        );
    }
    Ok(out)
}

/// Active memory the first decoding step adds (its results and the
/// decoder's stacked copies, if any, kept alive).
fn first_step_growth(model: &Model) -> Res<usize> {
    let input = ids(model, &[7])?;
    memory::clear_cache();
    let before = memory::active_memory();
    let decoder = Decoder::new(model)?;
    let mut cache = model.new_cache();
    let logits = decoder.step(&input, &mut cache)?;
    logits.eval()?;
    let grown = memory::active_memory().saturating_sub(before);
    drop((logits, cache, decoder));
    Ok(grown)
}

/// Whether the packed step needs at least the stacked copies' size less
/// than the unpacked one. The rest of the two steps (activations, cache
/// buffers) may differ by a few bytes of allocator rounding depending on
/// the machine (96 bytes on a 2-core runner), so 1% of the copies' size
/// is allowed for; a single layer's copy is a third of them.
fn saves_the_stacked_copies(packed_growth: usize, plain_growth: usize, stacked: usize) -> bool {
    packed_growth + stacked <= plain_growth + stacked / 100
}

#[test]
fn packed_weights_compute_the_same_without_a_stacked_copy() -> Res {
    let config = config()?;
    let packed = random_model(&config, 5, Dtype::F32)?;
    let plain = unpacked_copy(&config, &packed)?;

    // Same names, shapes and values.
    let (a, b) = (packed.parameters(), plain.parameters());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, x) in &a {
        assert_eq!(x.shape(), b[name].shape(), "{name}");
        assert_eq!(x.to_vec::<f32>()?, b[name].to_vec::<f32>()?, "{name}");
    }
    // Same logits, bit for bit (the same products over the same values).
    assert_eq!(decode(&packed)?, decode(&plain)?);

    // The stacked weights' size: q/k/v and gate/up of every layer.
    let stacked: usize = a
        .iter()
        .filter(|(n, _)| {
            ["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"]
                .iter()
                .any(|p| n.contains(p))
        })
        .map(|(_, x)| x.nbytes())
        .sum();
    let plain_growth = first_step_growth(&plain)?;
    let packed_growth = first_step_growth(&packed)?;
    assert!(
        plain_growth >= stacked,
        "unpacked: +{plain_growth} bytes, stacked copies {stacked}"
    );
    assert!(
        saves_the_stacked_copies(packed_growth, plain_growth, stacked),
        "packed: +{packed_growth} bytes, unpacked +{plain_growth}, stacked copies {stacked}"
    );

    // An update replaces the views: decoding stacks a copy again (still
    // correct), and packing again gives the memory back.
    let mut packed = packed;
    let name = "model.layers.0.self_attn.k_proj.weight";
    let mut changed = mlx_nn::ParamMap::new();
    changed.insert(name.to_string(), a[name].mul_scalar(1.5)?);
    packed.update(&changed)?;
    let mut plain = plain;
    plain.update(&changed)?;
    assert_eq!(decode(&packed)?, decode(&plain)?);
    pack_weights(&mut packed)?;
    assert_eq!(decode(&packed)?, decode(&plain)?);
    let (packed_growth, plain_growth) = (first_step_growth(&packed)?, first_step_growth(&plain)?);
    assert!(
        saves_the_stacked_copies(packed_growth, plain_growth, stacked),
        "repacked: +{packed_growth} bytes, unpacked +{plain_growth}, stacked copies {stacked}"
    );
    Ok(())
}
