//! The [`LanguageModel`] of a model that is a [`Transformer`] plus its
//! configuration (Qwen3, Qwen3-MoE): every method that only forwards to
//! the transformer is written once, here.

use mlx_nn::{Module, ModuleExt, ParamMap};
use mlx_tensor::{Array, Dtype};

use super::Transformer;
use crate::cache::LayerCache;
use crate::{LanguageModel, Result};

/// A language model whose layers are a [`Transformer`]. Implementing it
/// (the transformer, and what differs between architectures: the auxiliary
/// loss and the checkpoint layout) implements [`LanguageModel`].
pub(crate) trait TransformerModel: Module + Clone + Send {
    /// The layers.
    fn inner(&self) -> &Transformer;

    /// The layers, mutably.
    fn inner_mut(&mut self) -> &mut Transformer;

    /// [`LanguageModel::forward_hidden_with_aux`]; no auxiliary loss unless
    /// the architecture has one.
    fn hidden_with_aux(
        &self,
        tokens: &Array,
        left_padding: Option<&[i32]>,
        _token_mask: Option<&Array>,
    ) -> Result<(Array, Option<Array>)> {
        Ok((self.inner().forward(tokens, None, left_padding)?.0, None))
    }

    /// [`LanguageModel::aux_loss_coef`].
    fn aux_coef(&self) -> f32 {
        0.0
    }

    /// [`LanguageModel::checkpoint_tensors`]; the parameters as they are
    /// unless the checkpoint stores them otherwise.
    fn checkpoint_layout(&self) -> Result<ParamMap> {
        Ok(self.parameters())
    }
}

impl<M: TransformerModel> LanguageModel for M {
    fn forward_hidden(&self, tokens: &Array, cache: Option<&mut [LayerCache]>) -> Result<Array> {
        Ok(self.inner().forward(tokens, cache, None)?.0)
    }
    fn forward_hidden_padded(&self, tokens: &Array, left_padding: &[i32]) -> Result<Array> {
        Ok(self.inner().forward(tokens, None, Some(left_padding))?.0)
    }
    fn forward_hidden_with_aux(
        &self,
        tokens: &Array,
        left_padding: Option<&[i32]>,
        token_mask: Option<&Array>,
    ) -> Result<(Array, Option<Array>)> {
        self.hidden_with_aux(tokens, left_padding, token_mask)
    }
    fn aux_loss_coef(&self) -> f32 {
        self.aux_coef()
    }
    fn logits_from_hidden(&self, hidden: &Array) -> Result<Array> {
        self.inner().logits(hidden)
    }
    fn with_checkpointed_logit_chunks<F>(&self, chunks: &[Array], f: F) -> Result<Vec<Vec<Array>>>
    where
        F: Fn(usize, &Array) -> Result<Vec<Array>> + 'static,
    {
        self.inner().checkpointed_logit_chunks(chunks, f)
    }
    fn vocab_size(&self) -> i32 {
        self.inner().vocab_size()
    }
    fn num_layers(&self) -> usize {
        self.inner().layers.len()
    }
    fn dtype(&self) -> Dtype {
        self.inner().dtype()
    }
    fn checkpoint_tensors(&self) -> Result<ParamMap> {
        self.checkpoint_layout()
    }
    fn set_gradient_checkpointing(&mut self, enabled: bool) {
        self.inner_mut().gradient_checkpointing = enabled;
    }
    fn gradient_checkpointing(&self) -> bool {
        self.inner().gradient_checkpointing
    }
    fn transformer(&self) -> Option<&Transformer> {
        Some(self.inner())
    }
    fn transformer_mut(&mut self) -> Option<&mut Transformer> {
        Some(self.inner_mut())
    }
}
