//! Small tokenizers built from a vocabulary list.

mod common;

use mlx_lm::text::vocab::VocabTokenizerBuilder;
use mlx_lm::{ChatTemplateOptions, Error, Tokenizer};
use serde_json::json;

use common::temp_dir;

const TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

fn arithmetic() -> Tokenizer {
    let mut chars: Vec<char> = "0123456789+-*= \n".chars().collect();
    chars.extend("abcdefghijklmnopqrstuvwxyz".chars());
    VocabTokenizerBuilder::char_level(chars)
        .unk("<unk>")
        .pad("<pad>")
        .eos("<|im_end|>")
        .special_token("<|im_start|>")
        .chat_template(TEMPLATE)
        .build()
        .expect("builds")
}

#[test]
fn char_level_encodes_one_id_per_character() {
    let tok = arithmetic();
    // 42 chars, then <unk>=42, <pad>=43, <|im_end|>=44, <|im_start|>=45.
    assert_eq!(tok.vocab_size(), 46);
    assert_eq!(tok.encode("1+2", false).expect("encodes"), [1, 10, 2]);
    assert_eq!(
        tok.encode("9 = x", false).expect("encodes"),
        [9, 14, 13, 14, 39]
    );
    assert_eq!(tok.encode("1?", false).expect("encodes"), [1, 42]);
    assert_eq!(
        tok.encode("<|im_start|>a<|im_end|>", false)
            .expect("encodes"),
        [45, 16, 44]
    );
    assert_eq!(
        tok.decode(&[45, 1, 10, 2, 44], false).expect("decodes"),
        "<|im_start|>1+2<|im_end|>"
    );
    assert_eq!(
        tok.decode(&[45, 1, 10, 2, 44], true).expect("decodes"),
        "1+2"
    );
    assert_eq!(tok.eos_token_ids(), [44]);
    assert_eq!(tok.pad_token_id(), Some(43));
    assert_eq!(tok.unk_token_id(), Some(42));
    assert_eq!(tok.special_token_ids(), [42, 43, 44, 45]);
}

#[test]
fn saved_directory_loads_back_the_same() {
    let tok = arithmetic();
    let dir = temp_dir("vocab");
    tok.save_dir(dir.path()).expect("saves");
    let loaded = Tokenizer::from_dir(dir.path()).expect("loads");
    let text = "<|im_start|>user\n12*3=36<|im_end|>";
    assert_eq!(
        loaded.encode(text, false).expect("encodes"),
        tok.encode(text, false).expect("encodes")
    );
    assert_eq!(loaded.special_tokens(), tok.special_tokens());
    assert_eq!(loaded.eos_token_ids(), tok.eos_token_ids());
    let msgs = [json!({"role": "user", "content": "1+1"})];
    let opts = ChatTemplateOptions::default().add_generation_prompt(true);
    let prompt = loaded.apply_chat_template(&msgs, &opts).expect("renders");
    assert_eq!(
        prompt,
        "<|im_start|>user\n1+1<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        prompt,
        tok.apply_chat_template(&msgs, &opts).expect("renders")
    );
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("tokenizer_config.json")).expect("reads"),
    )
    .expect("parses");
    assert_eq!(config["tokenizer_class"], "PreTrainedTokenizerFast");
    assert_eq!(config["eos_token"], "<|im_end|>");
}

#[test]
fn word_level_splits_words_and_punctuation() {
    let tok = VocabTokenizerBuilder::word_level(["the", "cat", "sat", ".", "<unk>"])
        .unk("<unk>")
        .eos("</s>")
        .build()
        .expect("builds");
    assert_eq!(
        tok.encode("the cat  sat.", false).expect("encodes"),
        [0, 1, 2, 3]
    );
    assert_eq!(tok.encode("the dog", false).expect("encodes"), [0, 4]);
    assert_eq!(
        tok.decode(&[0, 1, 2, 3, 5], true).expect("decodes"),
        "the cat sat ."
    );
    assert_eq!(tok.eos_token_id(), Some(5));
}

#[test]
fn without_unk_unknown_input_is_an_error_not_a_panic() {
    let tok = VocabTokenizerBuilder::char_level(["a"])
        .build()
        .expect("builds");
    assert!(matches!(
        tok.encode("b", false),
        Err(Error::Tokenizer { op: "encode", .. })
    ));
}

#[test]
fn invalid_vocabularies_are_rejected() {
    let cases = [
        VocabTokenizerBuilder::char_level(Vec::<String>::new()),
        VocabTokenizerBuilder::char_level(["a", "bc"]),
        VocabTokenizerBuilder::char_level(["a", "a"]),
        VocabTokenizerBuilder::word_level(["two words"]),
        VocabTokenizerBuilder::word_level([""]),
        VocabTokenizerBuilder::word_level(["x"]).special_token(""),
    ];
    for builder in cases {
        let debug = format!("{builder:?}");
        assert!(
            matches!(builder.build(), Err(Error::InvalidVocabulary { .. })),
            "{debug}"
        );
    }
}

#[test]
fn special_token_already_in_vocabulary_keeps_its_id() {
    let tok = VocabTokenizerBuilder::word_level(["<s>", "hi"])
        .bos("<s>")
        .build()
        .expect("builds");
    assert_eq!(tok.bos_token_id(), Some(0));
    assert_eq!(tok.vocab_size(), 2);
    assert_eq!(tok.encode("<s>hi", false).expect("encodes"), [0, 1]);
}
