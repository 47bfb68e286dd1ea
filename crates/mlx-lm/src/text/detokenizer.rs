//! Turning generated token ids into text as they arrive.
//!
//! Byte-level tokenizers can split one character over several tokens (most
//! CJK characters and emoji take two to four), so decoding token by token
//! would print broken characters. [`StreamingDetokenizer`] holds text back
//! while it ends in an incomplete character and releases it once the
//! character is complete; [`StreamingDetokenizer::finalize`] flushes what is
//! left. For tokenizers whose decoding of a sequence extends the decoding of
//! its prefixes (byte-level BPE like Qwen's, WordPiece, SentencePiece-style
//! metaspace), the concatenated deltas equal [`Tokenizer::decode`] of all
//! the ids.
//!
//! ```no_run
//! # use mlx_lm::Tokenizer;
//! # fn generated_ids() -> Vec<u32> { vec![] }
//! let tok = Tokenizer::from_dir("models/Qwen3-0.6B")?;
//! let mut detok = tok.detokenizer(true);
//! for id in generated_ids() {
//!     if let Some(delta) = detok.push(id)? {
//!         print!("{delta}");
//!     }
//! }
//! if let Some(rest) = detok.finalize()? {
//!     print!("{rest}");
//! }
//! # Ok::<(), mlx_lm::Error>(())
//! ```

use crate::error::Result;
use crate::text::tokenizer::Tokenizer;

const REPLACEMENT: char = '\u{FFFD}';

/// Incremental decoder of a stream of token ids into text deltas that are
/// always whole characters.
///
/// It decodes a short window of recent ids: the ids of the last emitted
/// delta (as context, so that decoders that treat the start of a text
/// specially see the same thing as a full decode) and the ids not yet
/// emitted.
///
/// # Why not `tokenizers::DecodeStream`
///
/// The tokenizers crate's streaming decoder (`Tokenizer::decode_stream`)
/// uses the same window and, on the Qwen3 tokenizer, returns the same
/// delta as [`StreamingDetokenizer::push`] for every id (a property test
/// over random sequences of encoded multi-byte text, arbitrary and special
/// ids, with and without `skip_special_tokens`: `decode_stream_steps_equal_ours`
/// in `tests/detokenizer.rs`). It has no flush, though: text held back
/// while a character is incomplete is lost when the stream ends there.
/// Counterexample: the ids of `"a"` followed by the first token of `"🧮"`
/// (a generation cut by `max_tokens` inside the character) decode to
/// `"a\u{FFFD}"`; `DecodeStream` gives `"a"` and then nothing, while
/// [`StreamingDetokenizer::finalize`] returns the missing `"\u{FFFD}"`, so
/// the streamed text always equals [`Tokenizer::decode`] of the ids. The
/// same happens when an end-of-sequence token skipped with
/// `skip_special_tokens` follows the incomplete character. It also borrows
/// its tokenizer, where this type owns a (shared) handle to it and can be
/// cloned, reset and stored in a generation stream.
#[derive(Clone, Debug)]
pub struct StreamingDetokenizer {
    tokenizer: Tokenizer,
    skip_special_tokens: bool,
    /// Context ids, then pending ids.
    window: Vec<u32>,
    /// Number of context ids at the start of `window`.
    context_len: usize,
    /// Decoding of the context ids.
    context_text: String,
    /// Number of ids pushed since the start or the last reset.
    count: usize,
}

impl StreamingDetokenizer {
    /// A detokenizer for `tokenizer`; `skip_special_tokens` leaves special
    /// tokens (like end-of-turn markers) out of the text.
    pub fn new(tokenizer: Tokenizer, skip_special_tokens: bool) -> Self {
        StreamingDetokenizer {
            tokenizer,
            skip_special_tokens,
            window: Vec::new(),
            context_len: 0,
            context_text: String::new(),
            count: 0,
        }
    }

    /// Adds one id; returns the new text it completes, or `None` while the
    /// text so far ends inside a character (or the id adds no text).
    pub fn push(&mut self, id: u32) -> Result<Option<String>> {
        self.window.push(id);
        self.count += 1;
        let text = self.decode_window()?;
        if text.ends_with(REPLACEMENT) {
            return Ok(None);
        }
        let delta = new_text(&self.context_text, &text);
        if delta.is_empty() {
            return Ok(None);
        }
        let delta = delta.to_string();
        // The ids just emitted become the context for what follows.
        self.window.drain(..self.context_len);
        self.context_len = self.window.len();
        self.context_text = self.decode_window()?;
        Ok(Some(delta))
    }

    /// Adds several ids; returns the text they complete (possibly empty).
    pub fn push_many(&mut self, ids: &[u32]) -> Result<String> {
        let mut out = String::new();
        for &id in ids {
            if let Some(delta) = self.push(id)? {
                out.push_str(&delta);
            }
        }
        Ok(out)
    }

    /// Returns the text held back (an incomplete character becomes U+FFFD)
    /// and starts over.
    pub fn finalize(&mut self) -> Result<Option<String>> {
        let text = self.decode_window()?;
        let rest = new_text(&self.context_text, &text).to_string();
        self.reset();
        Ok((!rest.is_empty()).then_some(rest))
    }

    /// Forgets everything, including held-back text.
    pub fn reset(&mut self) {
        self.window.clear();
        self.context_len = 0;
        self.context_text.clear();
        self.count = 0;
    }

    /// `true` when ids have been pushed whose text is not emitted yet.
    pub fn has_pending(&self) -> bool {
        self.window.len() > self.context_len
    }

    /// Number of ids pushed since the start or the last reset.
    pub fn len(&self) -> usize {
        self.count
    }

    /// `true` when no id was pushed since the start or the last reset.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn decode_window(&self) -> Result<String> {
        self.tokenizer
            .decode(&self.window, self.skip_special_tokens)
    }
}

/// The part of `text` after `context`. When `text` does not extend
/// `context` (a decoder that rewrites earlier text), the part after their
/// longest common prefix.
fn new_text<'a>(context: &str, text: &'a str) -> &'a str {
    if let Some(rest) = text.strip_prefix(context) {
        return rest;
    }
    let common = context
        .char_indices()
        .zip(text.chars())
        .find(|((_, a), b)| a != b)
        .map_or(context.len().min(text.len()), |((i, _), _)| i);
    text.get(common..).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::new_text;

    #[test]
    fn new_text_after_context() {
        assert_eq!(new_text("ab", "abc"), "c");
        assert_eq!(new_text("", "x"), "x");
        assert_eq!(new_text("abé", "abz!"), "z!");
        assert_eq!(new_text("abc", "ab"), "");
    }
}
