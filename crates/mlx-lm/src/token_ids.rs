//! Checks that token ids are rows of a model's embedding table before they
//! reach a gather, which would read out of bounds (a crash, or silently
//! random output for ids just past the end).
//!
//! Ids given on the host (`&[u32]`: prompts, padding ids) are checked where
//! they enter, at no device cost; ids in arrays are checked by the models'
//! public forward passes with one reduction. Ids the crate produces itself
//! (sampled tokens, already checked prompts) go through
//! [`crate::generate::Decoder`] as [`CheckedTokens`], which skips the
//! reduction so that decoding never waits for it.

use mlx_tensor::{Array, Axes, Dtype, eval};

use crate::error::{Error, Result};
use crate::model::LanguageModel;
use crate::text::tokenizer::Tokenizer;

/// Token ids known to be rows of the embedding table they are used with:
/// made by [`CheckedTokens::new`] (which checks) or by the crate for ids it
/// produced itself.
#[derive(Debug, Clone)]
pub struct CheckedTokens(Array);

impl CheckedTokens {
    /// Checks every id of `tokens` (an integer array) against a vocabulary
    /// of `vocab_size` ids ([`check_token_array`]).
    pub fn new(tokens: &Array, vocab_size: i32) -> Result<Self> {
        check_token_array(tokens, vocab_size)?;
        Ok(CheckedTokens(tokens.clone()))
    }

    /// Ids the crate produced itself: sampled from the model's own logits
    /// (so below its vocabulary size) or copied from host ids that
    /// [`check_ids`] accepted.
    pub(crate) fn known(tokens: Array) -> Self {
        CheckedTokens(tokens)
    }

    /// The ids.
    pub fn array(&self) -> &Array {
        &self.0
    }
}

/// Checks host ids against a vocabulary of `vocab_size` ids; the error
/// names `what` and the first bad id's position.
pub fn check_ids(ids: &[u32], vocab_size: i32, what: &str) -> Result<()> {
    match ids
        .iter()
        .position(|&t| i64::from(t) >= i64::from(vocab_size))
    {
        None => Ok(()),
        Some(pos) => Err(Error::TokenOutOfRange {
            location: format!("{what}, position {pos}"),
            id: i64::from(ids[pos]),
            vocab_size: i64::from(vocab_size),
        }),
    }
}

/// Checks that `tokens` is an integer array whose ids all lie in
/// `0..vocab_size` (one min/max reduction and a wait for it).
pub fn check_token_array(tokens: &Array, vocab_size: i32) -> Result<()> {
    let dtype = tokens.dtype();
    if !dtype.is_integer() {
        return Err(Error::InvalidInput {
            message: format!(
                "token ids must be an integer array, got {}",
                tokens.describe()
            ),
        });
    }
    if tokens.size() == 0 {
        return Ok(());
    }
    let max = tokens.max(Axes::All, false)?.as_type(Dtype::I64)?;
    let min = tokens.min(Axes::All, false)?.as_type(Dtype::I64)?;
    eval(&[&max, &min])?;
    let (max, min) = (max.item::<i64>()?, min.item::<i64>()?);
    let bad = if min < 0 {
        min
    } else if max >= i64::from(vocab_size) {
        max
    } else {
        return Ok(());
    };
    Err(Error::TokenOutOfRange {
        location: format!("tokens {}", tokens.describe()),
        id: bad,
        vocab_size: i64::from(vocab_size),
    })
}

/// Checks that every id `tokenizer` can produce (added tokens included)
/// has a row in `model`'s embedding table: a tokenizer with more ids than
/// the model's `vocab_size` is an error naming both sizes. (A model may have
/// more rows than the tokenizer has ids, as Qwen3's 151,936 for 151,669.)
pub fn check_tokenizer_fits<M: LanguageModel>(model: &M, tokenizer: &Tokenizer) -> Result<()> {
    let vocab_size = model.vocab_size();
    match tokenizer.max_token_id() {
        Some(max) if i64::from(max) >= i64::from(vocab_size) => Err(Error::TokenizerDoesNotFit {
            max_token_id: max,
            tokenizer_ids: tokenizer.vocab_size(),
            vocab_size: i64::from(vocab_size),
        }),
        _ => Ok(()),
    }
}
