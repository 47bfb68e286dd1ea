//! What generation, scoring and training need from a language model.

use mlx_nn::{Module, ParamMap};
use mlx_tensor::{Array, Dtype};

use crate::cache::LayerCache;
use crate::Result;

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
    /// caches) is derived from the caches.
    fn forward(&self, tokens: &Array, cache: Option<&mut [LayerCache]>) -> Result<Array>;

    /// The last hidden states `[B, L, hidden]` before the output projection
    /// (for scoring without materialising all logits at once).
    fn forward_hidden(&self, tokens: &Array, cache: Option<&mut [LayerCache]>) -> Result<Array>;

    /// Projects hidden states to logits (the LM head, tied or not).
    fn logits_from_hidden(&self, hidden: &Array) -> Result<Array>;

    /// One empty single-sequence cache per layer.
    fn new_cache(&self) -> Vec<LayerCache>;

    /// One empty batch cache per layer for sequences left-padded by `left_padding[i]`.
    fn new_batch_cache(&self, left_padding: &[i32]) -> Result<Vec<LayerCache>>;

    /// Vocabulary size (the logits' last dimension).
    fn vocab_size(&self) -> i32;

    /// Number of transformer layers.
    fn num_layers(&self) -> usize;

    /// The dtype of the weights.
    fn dtype(&self) -> Dtype;

    /// Auxiliary training losses of the last forward pass (e.g. the MoE
    /// router's load-balancing loss), if the model has any.
    fn aux_loss(&self, _tokens: &Array) -> Result<Option<Array>> {
        Ok(None)
    }

    /// All parameters by checkpoint name (as Hugging Face stores them).
    fn checkpoint_tensors(&self) -> Result<ParamMap>;
}
