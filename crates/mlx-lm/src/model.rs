//! What a language model is: a forward pass (with or without a cache),
//! hidden states, logits, parameters and shapes. What decoding adds on top
//! (stacked weights, fused kernels) is [`crate::generate::Decoder`]'s.

use mlx_nn::{Module, ParamMap};
use mlx_tensor::{Array, Dtype};

use crate::cache::{BatchKVCache, KVCache, LayerCache};
use crate::models::Transformer;
use crate::{Error, Result};

/// A causal language model over token ids.
///
/// Weights are immutable during `forward`; the caller owns the per-layer
/// caches (one list per rollout or batch), created by
/// [`LanguageModel::new_cache`] / [`LanguageModel::new_batch_cache`].
pub trait LanguageModel: Module + Clone + Send {
    /// Logits `[B, L, vocab]` for token ids `[B, L]` (`i32` or `u32`).
    ///
    /// With `cache`, the tokens continue the cached sequence(s) and the keys
    /// and values are appended; the causal mask (and left padding of batch
    /// caches) is derived from the caches. The same computation with or
    /// without a cache, differentiable either way.
    ///
    /// The crate's models reject ids outside `0..vocab_size`
    /// ([`crate::Error::TokenOutOfRange`]) with one reduction over `tokens`.
    fn forward(&self, tokens: &Array, cache: Option<&mut [LayerCache]>) -> Result<Array> {
        self.logits_from_hidden(&self.forward_hidden(tokens, cache)?)
    }

    /// The last hidden states `[B, L, hidden]` before the output projection
    /// (for scoring without materialising all logits at once).
    fn forward_hidden(&self, tokens: &Array, cache: Option<&mut [LayerCache]>) -> Result<Array>;

    /// The last hidden states `[B, L, hidden]` of a batch without a cache
    /// whose row `i` starts with `left_padding[i]` padding tokens: padding
    /// is masked out of attention and each row's first real token gets
    /// position 0, so every row matches its own unpadded forward pass.
    fn forward_hidden_padded(&self, tokens: &Array, left_padding: &[i32]) -> Result<Array>;

    /// Projects hidden states to logits (the LM head, tied or not).
    fn logits_from_hidden(&self, hidden: &Array) -> Result<Array>;

    /// One empty single-sequence cache per layer.
    fn new_cache(&self) -> Vec<LayerCache> {
        (0..self.num_layers())
            .map(|_| LayerCache::Kv(KVCache::new()))
            .collect()
    }

    /// One empty batch cache per layer for sequences left-padded by `left_padding[i]`.
    fn new_batch_cache(&self, left_padding: &[i32]) -> Result<Vec<LayerCache>> {
        if left_padding.iter().any(|&p| p < 0) {
            return Err(Error::InvalidInput {
                message: format!("negative left padding {left_padding:?}"),
            });
        }
        Ok((0..self.num_layers())
            .map(|_| LayerCache::Batch(BatchKVCache::new(left_padding)))
            .collect())
    }

    /// Vocabulary size (the logits' last dimension).
    fn vocab_size(&self) -> i32;

    /// Number of transformer layers.
    fn num_layers(&self) -> usize;

    /// The dtype of the weights.
    fn dtype(&self) -> Dtype;

    /// Hidden states (as [`LanguageModel::forward_hidden_padded`], no
    /// cache) together with the model's auxiliary training loss, if it has
    /// one: for mixture-of-experts models the router load-balancing loss
    /// (unscaled), counting only tokens where `token_mask` (`[B, L]`, 1 =
    /// real token; default: everything after the left padding) is set.
    fn forward_hidden_with_aux(
        &self,
        tokens: &Array,
        left_padding: Option<&[i32]>,
        token_mask: Option<&Array>,
    ) -> Result<(Array, Option<Array>)>;

    /// The weight training gives the auxiliary loss (`router_aux_loss_coef`
    /// for mixture-of-experts models, 0 otherwise).
    fn aux_loss_coef(&self) -> f32 {
        0.0
    }

    /// All parameters by checkpoint name (as Hugging Face stores them:
    /// mixture-of-experts weights one tensor per expert).
    fn checkpoint_tensors(&self) -> Result<ParamMap>;

    /// `f(i, logits)` for the logits of each of `hidden_chunks` (as
    /// [`LanguageModel::logits_from_hidden`]), one chunk after the other,
    /// with the LM head and `f` under gradient checkpointing: the backward
    /// pass recomputes a chunk's logits and everything `f` derives from them
    /// instead of keeping them, and the chunks are chained so that only one
    /// chunk's vocabulary-sized arrays (and one chunk's LM-head gradient) are
    /// alive at a time in either pass. Values and gradients are those of the
    /// plain computation. The default computes without checkpointing.
    fn with_checkpointed_logit_chunks<F>(
        &self,
        hidden_chunks: &[Array],
        f: F,
    ) -> Result<Vec<Vec<Array>>>
    where
        F: Fn(usize, &Array) -> Result<Vec<Array>> + 'static,
    {
        hidden_chunks
            .iter()
            .enumerate()
            .map(|(i, h)| f(i, &self.logits_from_hidden(h)?))
            .collect()
    }

    /// Turns per-layer gradient checkpointing on or off (transformers'
    /// `gradient_checkpointing_enable`): cache-free forward passes (scoring
    /// and training) then keep only each layer's input for the backward
    /// pass and recompute the layer's activations there, trading about one
    /// more forward pass of compute for activation memory. Generation with a
    /// cache is unaffected. Models without support ignore it.
    fn set_gradient_checkpointing(&mut self, _enabled: bool) {}

    /// Whether per-layer gradient checkpointing is on
    /// ([`LanguageModel::set_gradient_checkpointing`]).
    fn gradient_checkpointing(&self) -> bool {
        false
    }

    /// The Qwen3-style layers, for [`crate::generate::Decoder`]'s fast
    /// decoding step (models without them decode through
    /// [`LanguageModel::forward`]).
    fn transformer(&self) -> Option<&Transformer> {
        None
    }

    /// Mutable access to the layers, for [`crate::generate::pack_weights`].
    fn transformer_mut(&mut self) -> Option<&mut Transformer> {
        None
    }
}
