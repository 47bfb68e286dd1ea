//! Streaming detokenization with the real Qwen3 tokenizer: deltas are whole
//! characters and add up to the full decode.

mod common;

use mlx_lm::{StreamingDetokenizer, Tokenizer};
use proptest::prelude::*;

use common::qwen3;

const REPLACEMENT: char = '\u{FFFD}';

/// Streams `ids` one by one; returns every delta and the final flush.
fn stream(tok: &Tokenizer, ids: &[u32], skip_special: bool) -> Vec<String> {
    let mut detok = tok.detokenizer(skip_special);
    let mut deltas = Vec::new();
    for &id in ids {
        if let Some(delta) = detok.push(id).expect("push") {
            deltas.push(delta);
        }
    }
    if let Some(rest) = detok.finalize().expect("finalize") {
        deltas.push(rest);
    }
    deltas
}

const SAMPLES: [&str; 6] = [
    "你好，世界！今天天气怎么样？我们去公园散步吧。",
    "🤖🚀 emoji 👍🏽 family 👨‍👩‍👧 flags 🇫🇷🇯🇵 end",
    "Mixed: Café, 東京, 서울, مرحبا, ½ € — “ok” 😀😃😄",
    "<|im_start|>assistant\n<think>\n思考中…\n</think>\n\n答案是 42。<|im_end|>",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 ∀x∈ℝ: x²≥0 🧮",
    "",
];

#[test]
fn deltas_add_up_to_the_full_decode() {
    let tok = qwen3();
    for text in SAMPLES {
        let ids = tok.encode(text, false).expect("encodes");
        for skip in [false, true] {
            let deltas = stream(tok, &ids, skip);
            let full = tok.decode(&ids, skip).expect("decodes");
            assert_eq!(deltas.concat(), full, "{text:?} skip={skip}");
            for delta in &deltas {
                assert!(
                    !delta.contains('\u{FFFD}'),
                    "broken character in {delta:?} of {text:?}"
                );
            }
        }
    }
}

#[test]
fn an_emoji_split_over_tokens_is_held_back_until_complete() {
    let tok = qwen3();
    let ids = tok.encode("🇫🇷", false).expect("encodes");
    assert!(ids.len() > 1, "the flag takes several tokens: {ids:?}");
    let mut detok = tok.detokenizer(false);
    let mut deltas = Vec::new();
    for (i, &id) in ids.iter().enumerate() {
        let delta = detok.push(id).expect("push");
        if i + 1 < ids.len() {
            assert!(detok.has_pending() || delta.is_some());
        }
        deltas.extend(delta);
    }
    assert_eq!(deltas.concat(), "🇫🇷");
    assert_eq!(detok.len(), ids.len());
    assert_eq!(detok.finalize().expect("finalize"), None);
    assert!(detok.is_empty());
}

#[test]
fn finalize_flushes_an_incomplete_character() {
    let tok = qwen3();
    let ids = ["🧮", "🫠", "𝕞", "龘"]
        .iter()
        .map(|c| tok.encode(c, false).expect("encodes"))
        .find(|ids| ids.len() > 1)
        .expect("a character split over tokens");
    let mut detok = tok.detokenizer(false);
    assert_eq!(detok.push(ids[0]).expect("push"), None);
    assert!(detok.has_pending());
    let rest = detok.finalize().expect("finalize").expect("something held");
    assert!(rest.contains('\u{FFFD}'), "{rest:?}");
    assert!(!detok.has_pending());
}

#[test]
fn special_tokens_are_skipped_or_kept() {
    let tok = qwen3();
    let ids = tok.encode("hi<|im_end|>", false).expect("encodes");
    assert_eq!(stream(tok, &ids, true).concat(), "hi");
    assert_eq!(stream(tok, &ids, false).concat(), "hi<|im_end|>");
}

#[test]
fn push_many_and_reset() {
    let tok = qwen3();
    let ids = tok.encode("长城 and 🚀", false).expect("encodes");
    let mut detok = StreamingDetokenizer::new(tok.clone(), false);
    let mut text = detok.push_many(&ids).expect("push");
    text.extend(detok.finalize().expect("finalize"));
    assert_eq!(text, "长城 and 🚀");
    detok.push_many(&ids[..1]).expect("push");
    detok.reset();
    assert!(detok.is_empty() && !detok.has_pending());
    assert_eq!(detok.finalize().expect("finalize"), None);
}

/// Strings mixing ASCII, CJK, emoji (with modifiers and joiners) and other
/// scripts, so that byte-level tokens split characters often.
fn mixed_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-zA-Z0-9 .,!?\n]{1,6}",
        "[\u{4e00}-\u{9fff}]{1,4}",
        "[\u{1f300}-\u{1f6ff}]{1,3}",
        Just("👨‍👩‍👧".to_string()),
        Just("👍🏽".to_string()),
        "[\u{0400}-\u{04ff}\u{0600}-\u{06ff}\u{ac00}-\u{d7a3}]{1,4}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn streaming_equals_decoding(text in mixed_text()) {
        let tok = qwen3();
        let ids = tok.encode(&text, false).expect("encodes");
        let deltas = stream(tok, &ids, false);
        let full = tok.decode(&ids, false).expect("decodes");
        prop_assert_eq!(&deltas.concat(), &full);
        // (Not always `text` itself: the tokenizer normalizes to NFC.)
        for delta in &deltas {
            prop_assert!(!delta.is_empty());
            let broken = delta.contains(REPLACEMENT) && !full.contains(REPLACEMENT);
            prop_assert!(!broken, "broken character in {:?}", delta);
        }
    }

    #[test]
    fn arbitrary_ids_never_fail(ids in prop::collection::vec(0u32..152_000, 0..40)) {
        let tok = qwen3();
        let deltas = stream(tok, &ids, false);
        prop_assert_eq!(deltas.concat(), tok.decode(&ids, false).expect("decodes"));
    }
}

// `tokenizers::DecodeStream`, the tokenizers crate's own streaming decoder,
// against ours: it emits the same deltas token by token, but has no flush,
// so the text of a trailing incomplete character is lost (see
// `StreamingDetokenizer`'s documentation).

/// The raw `tokenizers` tokenizer of the same Qwen3 definition.
fn raw_qwen3() -> &'static tokenizers::Tokenizer {
    static RAW: std::sync::OnceLock<tokenizers::Tokenizer> = std::sync::OnceLock::new();
    RAW.get_or_init(|| {
        tokenizers::Tokenizer::from_file(common::qwen3_dir().join("tokenizer.json"))
            .expect("loading tokenizer.json")
    })
}

/// The step-by-step outputs of `DecodeStream` and of our `push` for `ids`,
/// and our `finalize`.
fn both_streams(
    ids: &[u32],
    skip_special: bool,
) -> (Vec<Option<String>>, Vec<Option<String>>, Option<String>) {
    let mut theirs = raw_qwen3().decode_stream(skip_special);
    let mut ours = qwen3().detokenizer(skip_special);
    let mut their_steps = Vec::new();
    let mut our_steps = Vec::new();
    for &id in ids {
        their_steps.push(theirs.step(id).expect("DecodeStream::step"));
        our_steps.push(ours.push(id).expect("push"));
    }
    (their_steps, our_steps, ours.finalize().expect("finalize"))
}

/// Token sequences mixing encoded text (multi-byte characters split over
/// tokens), arbitrary ids (special tokens included), and a cut that may
/// end inside a character.
fn token_sequences() -> impl Strategy<Value = Vec<u32>> {
    let vocab = u32::try_from(qwen3().vocab_size()).expect("vocabulary fits u32");
    let special = qwen3().token_to_id("<|endoftext|>").expect("<|endoftext|>")..vocab;
    let piece = prop_oneof![
        3 => mixed_text().prop_map(|text| qwen3().encode(&text, false).expect("encodes")),
        1 => prop::collection::vec(0..vocab, 1..6),
        1 => prop::collection::vec(special, 1..3),
    ];
    (
        prop::collection::vec(piece, 1..6),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(pieces, cut)| {
            let ids = pieces.concat();
            let keep = cut.index(ids.len() + 1);
            ids[..keep.max(1).min(ids.len())].to_vec()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn decode_stream_steps_equal_ours(ids in token_sequences(), skip_special in any::<bool>()) {
        let (theirs, ours, rest) = both_streams(&ids, skip_special);
        prop_assert_eq!(&theirs, &ours);
        // Ours plus the flush is the whole decode; DecodeStream lacks
        // exactly the flushed text.
        let full = qwen3().decode(&ids, skip_special).expect("decodes");
        let streamed: String = ours.into_iter().flatten().collect();
        prop_assert_eq!(format!("{streamed}{}", rest.clone().unwrap_or_default()), full);
        if let Some(rest) = rest {
            prop_assert!(rest.ends_with(REPLACEMENT), "{:?}", rest);
        }
    }
}

#[test]
fn decode_stream_loses_a_trailing_incomplete_character() {
    // "a" then the first token of "🧮" (F0 9F A7 AE), whose bytes end
    // inside the character: e.g. generation stopped by max_tokens there.
    let tok = qwen3();
    let abacus = tok.encode("🧮", false).expect("encodes");
    assert!(abacus.len() > 1, "🧮 takes several tokens: {abacus:?}");
    let mut ids = tok.encode("a", false).expect("encodes");
    ids.push(abacus[0]);
    let full = tok.decode(&ids, false).expect("decodes");
    assert_eq!(full, "a\u{FFFD}");

    let (theirs, ours, rest) = both_streams(&ids, false);
    assert_eq!(theirs, [Some("a".to_string()), None]);
    assert_eq!(ours, theirs);
    // DecodeStream has nothing more to give: its text is "a", not the
    // decode of the ids; ours flushes the held-back bytes.
    assert_eq!(rest.as_deref(), Some("\u{FFFD}"));

    // The same when an end-of-turn token follows, skipped.
    ids.push(tok.token_to_id("<|im_end|>").expect("<|im_end|>"));
    assert_eq!(tok.decode(&ids, true).expect("decodes"), "a\u{FFFD}");
    let (theirs, ours, rest) = both_streams(&ids, true);
    assert_eq!(theirs, [Some("a".to_string()), None, None]);
    assert_eq!(ours, theirs);
    assert_eq!(rest.as_deref(), Some("\u{FFFD}"));
}
