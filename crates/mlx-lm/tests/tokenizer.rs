//! The tokenizer against transformers (golden ids from
//! `scripts/fixtures/gen_chat_fixtures.py`), model-directory loading, and its errors.

mod common;

use mlx_lm::text::vocab::VocabTokenizerBuilder;
use mlx_lm::{Error, Tokenizer};
use serde_json::Value;

use common::{fixture, qwen3, temp_dir, write_file};
use tempfile::TempDir;

fn ids(value: &Value) -> Vec<u32> {
    serde_json::from_value(value.clone()).expect("a list of ids")
}

#[test]
fn encode_and_decode_match_transformers() {
    let facts = fixture("tokenizer_cases.json");
    let tok = qwen3();
    for case in facts["cases"].as_array().expect("cases") {
        let text = case["text"].as_str().expect("text");
        assert_eq!(
            tok.encode(text, true).expect("encodes"),
            ids(&case["ids"]),
            "{text:?}"
        );
        assert_eq!(
            tok.encode(text, false).expect("encodes"),
            ids(&case["ids_without_special"]),
            "{text:?}"
        );
        let expected_ids = ids(&case["ids"]);
        assert_eq!(
            tok.decode(&expected_ids, false).expect("decodes"),
            case["decoded"],
            "{text:?}"
        );
        assert_eq!(
            tok.decode(&expected_ids, true).expect("decodes"),
            case["decoded_skip_special"],
            "{text:?}"
        );
    }
}

#[test]
fn special_tokens_match_transformers() {
    let facts = fixture("tokenizer_cases.json");
    let tok = qwen3();
    assert_eq!(tok.vocab_size() as u64, facts["len"].as_u64().expect("len"));
    assert_eq!(
        tok.special_tokens().eos.as_deref(),
        facts["eos_token"].as_str()
    );
    assert_eq!(
        tok.special_tokens().pad.as_deref(),
        facts["pad_token"].as_str()
    );
    assert_eq!(
        tok.eos_token_id().map(u64::from),
        facts["eos_token_id"].as_u64()
    );
    assert_eq!(
        tok.pad_token_id().map(u64::from),
        facts["pad_token_id"].as_u64()
    );
    assert_eq!(tok.bos_token_id(), None);
    assert!(facts["bos_token_id"].is_null());
    assert_eq!(tok.special_token_ids(), ids(&facts["all_special_ids"]));
    assert_eq!(tok.eos_token_ids(), [151_645]);
    assert!(tok.is_eos(151_645) && !tok.is_eos(151_643));
    assert!(tok.is_special(151_644) && !tok.is_special(9707));
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(151_645));
    assert_eq!(tok.id_to_token(151_645).as_deref(), Some("<|im_end|>"));
    assert_eq!(tok.token_to_id("<think>"), Some(151_667));
    assert_eq!(tok.id_to_token(u32::MAX), None);
    let named = tok.special_tokens().named();
    assert_eq!(
        named,
        [("eos_token", "<|im_end|>"), ("pad_token", "<|endoftext|>")]
    );
    assert_eq!(tok.chat_templates().names(), ["default"]);
}

#[test]
fn batch_encoding_equals_single_encoding() {
    let tok = qwen3();
    let texts = ["a", "你好", "", "<|im_start|>x"];
    let batch = tok.encode_batch(&texts, false).expect("encodes");
    for (text, got) in texts.iter().zip(batch) {
        assert_eq!(got, tok.encode(text, false).expect("encodes"));
    }
}

#[test]
fn out_of_vocabulary_ids_decode_without_failing() {
    let tok = qwen3();
    let text = tok
        .decode(&[9707, 151_935, u32::MAX], false)
        .expect("decodes");
    assert_eq!(text, "Hello");
}

#[test]
fn tokenizer_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
    assert_send_sync::<mlx_lm::StreamingDetokenizer>();
    assert_send_sync::<mlx_lm::ChatTemplate>();
    let tok = qwen3().clone();
    let handle = std::thread::spawn(move || tok.encode("hi", false).map(|ids| ids.len()));
    assert_eq!(handle.join().ok().and_then(Result::ok), Some(1));
}

/// A small model directory: our own tokenizer saved, with extra files.
fn tiny_model_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = temp_dir("tokenizer");
    VocabTokenizerBuilder::char_level("abc".chars())
        .eos("<eos>")
        .pad("<pad>")
        .special_token("<eot>")
        .special_token("<eom>")
        .build()
        .expect("builds")
        .save_dir(dir.path())
        .expect("saves");
    for (name, contents) in files {
        write_file(dir.path(), name, contents);
    }
    dir
}

#[test]
fn eos_ids_gather_config_generation_config_and_eos_token() {
    // Ids: a=0 b=1 c=2 <eos>=3 <pad>=4 <eot>=5 <eom>=6.
    let dir = tiny_model_dir(&[
        ("config.json", r#"{"eos_token_id": [5, 3]}"#),
        (
            "generation_config.json",
            r#"{"eos_token_id": 6, "bos_token_id": 0}"#,
        ),
    ]);
    let tok = Tokenizer::from_dir(dir.path()).expect("loads");
    assert_eq!(tok.eos_token_ids(), [5, 3, 6]);
    assert_eq!(tok.eos_token_id(), Some(3));
    assert_eq!(tok.pad_token_id(), Some(4));

    let nested = tiny_model_dir(&[("config.json", r#"{"text_config": {"eos_token_id": 5}}"#)]);
    let tok = Tokenizer::from_dir(nested.path()).expect("loads");
    assert_eq!(tok.eos_token_ids(), [5, 3]);

    let extra = tok.with_eos_token_ids([6, 5]);
    assert_eq!(extra.eos_token_ids(), [5, 3, 6]);
}

#[test]
fn loading_errors_name_the_file() {
    let empty = temp_dir("empty");
    match Tokenizer::from_dir(empty.path()) {
        Err(Error::MissingFile { path, .. }) => assert!(path.ends_with("tokenizer.json")),
        other => panic!("expected a missing file, got {other:?}"),
    }

    let bad_json = tiny_model_dir(&[("tokenizer_config.json", "{not json")]);
    match Tokenizer::from_dir(bad_json.path()) {
        Err(Error::Json { path, .. }) => assert!(path.ends_with("tokenizer_config.json")),
        other => panic!("expected a JSON error, got {other:?}"),
    }

    let bad_eos = tiny_model_dir(&[("config.json", r#"{"eos_token_id": "two"}"#)]);
    match Tokenizer::from_dir(bad_eos.path()) {
        Err(Error::InvalidConfig { path, field, .. }) => {
            assert!(path.ends_with("config.json"));
            assert_eq!(field, "eos_token_id");
        }
        other => panic!("expected an invalid config, got {other:?}"),
    }

    let negative = tiny_model_dir(&[("generation_config.json", r#"{"eos_token_id": [1, -2]}"#)]);
    assert!(matches!(
        Tokenizer::from_dir(negative.path()),
        Err(Error::InvalidConfig { .. })
    ));

    let unknown = tiny_model_dir(&[("tokenizer_config.json", r#"{"eos_token": "<nope>"}"#)]);
    match Tokenizer::from_dir(unknown.path()) {
        Err(Error::UnknownSpecialToken {
            field,
            token,
            origin,
        }) => {
            assert_eq!(field, "eos_token");
            assert_eq!(token, "<nope>");
            assert!(origin.ends_with("tokenizer_config.json"));
        }
        other => panic!("expected an unknown token, got {other:?}"),
    }

    let bad_token = tiny_model_dir(&[("tokenizer_config.json", r#"{"pad_token": 3}"#)]);
    assert!(matches!(
        Tokenizer::from_dir(bad_token.path()),
        Err(Error::InvalidConfig { .. })
    ));

    let broken = tiny_model_dir(&[("tokenizer.json", r#"{"model": {"type": "Nope"}}"#)]);
    match Tokenizer::from_dir(broken.path()) {
        Err(Error::InvalidTokenizerFile { path, .. }) => assert!(path.ends_with("tokenizer.json")),
        other => panic!("expected an invalid tokenizer file, got {other:?}"),
    }
    let message = Tokenizer::from_file(broken.path().join("tokenizer.json"))
        .expect_err("fails")
        .to_string();
    assert!(message.contains("tokenizer.json"), "{message}");
}

#[test]
fn added_token_objects_in_tokenizer_config_are_read() {
    let dir = tiny_model_dir(&[(
        "tokenizer_config.json",
        r#"{"eos_token": {"__type": "AddedToken", "content": "<eos>", "special": true},
            "pad_token": null, "additional_special_tokens": ["<eot>", {"content": "<eom>"}]}"#,
    )]);
    let tok = Tokenizer::from_dir(dir.path()).expect("loads");
    assert_eq!(tok.special_tokens().eos.as_deref(), Some("<eos>"));
    assert_eq!(tok.special_tokens().pad, None);
    assert_eq!(tok.special_tokens().additional, ["<eot>", "<eom>"]);
}

#[test]
fn padding_and_truncation_in_tokenizer_json_do_not_apply_to_encode() {
    let dir = tiny_model_dir(&[]);
    let path = dir.path().join("tokenizer.json");
    let mut definition: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("reads")).expect("parses");
    definition["padding"] = serde_json::json!({
        "strategy": {"Fixed": 8}, "direction": "Right", "pad_to_multiple_of": null,
        "pad_id": 4, "pad_type_id": 0, "pad_token": "<pad>"
    });
    definition["truncation"] = serde_json::json!({
        "direction": "Right", "max_length": 1, "strategy": "LongestFirst", "stride": 0
    });
    write_file(dir.path(), "tokenizer.json", &definition.to_string());
    let tok = Tokenizer::from_dir(dir.path()).expect("loads");
    assert_eq!(tok.encode("abc", true).expect("encodes"), [0, 1, 2]);
}

#[test]
fn legacy_special_tokens_map_is_read() {
    let dir = tiny_model_dir(&[
        ("tokenizer_config.json", r#"{"eos_token": "<eos>"}"#),
        (
            "special_tokens_map.json",
            r#"{"pad_token": {"content": "<pad>"}, "eos_token": "<eot>"}"#,
        ),
    ]);
    let tok = Tokenizer::from_dir(dir.path()).expect("loads");
    assert_eq!(tok.special_tokens().pad.as_deref(), Some("<pad>"));
    assert_eq!(tok.special_tokens().eos.as_deref(), Some("<eot>"));
    assert_eq!(tok.eos_token_id(), Some(5));

    // With `added_tokens_decoder` the tokenizer config alone counts.
    let modern = tiny_model_dir(&[
        (
            "tokenizer_config.json",
            r#"{"eos_token": "<eos>", "added_tokens_decoder": {}}"#,
        ),
        ("special_tokens_map.json", r#"{"eos_token": "<eot>"}"#),
    ]);
    let tok = Tokenizer::from_dir(modern.path()).expect("loads");
    assert_eq!(tok.special_tokens().eos.as_deref(), Some("<eos>"));
}

#[test]
fn bare_tokenizer_file_loads_without_specials() {
    let dir = tiny_model_dir(&[]);
    let tok = Tokenizer::from_file(dir.path().join("tokenizer.json")).expect("loads");
    assert_eq!(tok.eos_token_id(), None);
    assert!(tok.eos_token_ids().is_empty());
    assert!(tok.chat_templates().is_empty());
    // Added tokens marked special in tokenizer.json still count as special.
    assert!(tok.is_special(3));
}
