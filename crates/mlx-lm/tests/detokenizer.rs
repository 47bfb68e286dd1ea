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
