//! Hostile input at the command line: the examples run as child processes
//! with bad flags, bad numbers, broken model directories, tokenizers,
//! datasets, configs and output paths. Every case must end with a non-zero
//! exit code (not a signal, no panic) within the time limit, and the last
//! line of stderr must be one `error: ...` line naming what was wrong.
//!
//! Valid runs of the same tiny fixtures (`control_*`) show that each broken
//! copy fails because of what was broken.

#[path = "hostile_cli/fixtures.rs"]
mod fixtures;
#[path = "hostile_cli/runner.rs"]
mod runner;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use fixtures::{
    TEMPLATE, case_dir, dataset, grpo_config, model, model_with_config, model_with_file,
    model_with_tokenizer, safetensors_bytes, save_tokenizer, scratch, text_file,
};
use fixtures::{fails, succeeds};
use runner::os;
use serde_json::json;

/// `generate` on `model` with a two-token prompt and two new tokens, plus `extra`.
fn generate_args(model: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args = os(&["--model"]);
    args.push(model.into());
    args.extend(os(&["--prompt-tokens", "1,2", "--max-tokens", "2"]));
    args.extend(os(extra));
    args
}

/// `grpo` on `model`, `data` and `config`, plus `extra`.
fn grpo_args(model: &Path, data: &Path, config: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args = os(&["--model"]);
    args.push(model.into());
    args.push("--dataset".into());
    args.push(data.into());
    args.push("--config".into());
    args.push(config.into());
    args.extend(os(extra));
    args
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("scratch paths are UTF-8")
}

// ---- Controls: the fixtures are valid. ----

#[test]
fn control_help_of_every_example() {
    for name in runner::EXAMPLES {
        let out = succeeds(name, os(&["--help"]));
        assert!(
            out.stdout.contains("Usage:"),
            "{name} --help:\n{}",
            out.stdout
        );
    }
}

#[test]
fn control_generate_runs() {
    succeeds("generate", generate_args(model(), &[]));
    succeeds(
        "generate",
        os(&[
            "--model",
            path_str(model_with_tokenizer()),
            "--prompt",
            "w5 w6",
            "--max-tokens",
            "2",
        ]),
    );
}

#[test]
fn control_chat_and_score_run() {
    let m = path_str(model_with_tokenizer());
    succeeds(
        "chat",
        os(&["--model", m, "--prompt", "w7 w8", "--max-tokens", "2"]),
    );
    succeeds("score", os(&["--model", m, "--tokens", "1,2,255"]));
}

#[test]
fn control_grpo_runs_one_step() {
    let config = grpo_config("control-grpo", &[]);
    succeeds(
        "grpo",
        grpo_args(model_with_tokenizer(), dataset(), &config, &[]),
    );
}

// ---- Flags. ----

#[test]
fn unknown_flag_in_every_example() {
    for name in runner::EXAMPLES {
        fails(name, os(&["--no-such-flag"]), &["--no-such-flag"]);
    }
}

#[test]
fn missing_value() {
    fails("generate", os(&["--max-tokens"]), &["--max-tokens"]);
    fails(
        "grpo",
        os(&["--dataset", "d.jsonl", "--model"]),
        &["--model"],
    );
    fails("score", os(&["--logits"]), &["--logits"]);
}

#[test]
fn missing_required_flag() {
    fails("grpo", os(&["--dataset", "d.jsonl"]), &["--model"]);
}

#[test]
fn non_utf8_arguments() {
    let bad = || OsString::from_vec(vec![b'm', 0xff, 0xfe]);
    for (name, flag) in [
        ("generate", "--prompt"),
        ("chat", "--model"),
        ("score", "--logits"),
        ("grpo", "--dataset"),
        ("grpo_arithmetic", "--output-dir"),
        ("blas_compare", "--n"),
    ] {
        let mut args = os(&[flag]);
        args.push(bad());
        fails(name, args, &["UTF-8"]);
    }
}

#[test]
fn temperature_nan() {
    fails("generate", os(&["--temp", "nan"]), &["--temp", "nan"]);
}

#[test]
fn temperature_negative_and_infinite() {
    fails("generate", os(&["--temp", "-1"]), &["--temp"]);
    fails("chat", os(&["--temp", "inf"]), &["--temp"]);
}

#[test]
fn top_p_above_one() {
    fails("generate", os(&["--top-p", "1.5"]), &["--top-p", "1.5"]);
    fails("chat", os(&["--top-p", "2"]), &["--top-p"]);
}

#[test]
fn min_p_negative() {
    fails("generate", os(&["--min-p", "-1"]), &["--min-p", "-1"]);
}

#[test]
fn max_tokens_negative() {
    fails(
        "generate",
        os(&["--max-tokens", "-3"]),
        &["--max-tokens", "-3"],
    );
}

#[test]
fn max_tokens_overflow() {
    fails(
        "generate",
        os(&["--max-tokens", "99999999999999999999"]),
        &["--max-tokens", "99999999999999999999"],
    );
}

#[test]
fn seed_negative() {
    fails("generate", os(&["--seed", "-1"]), &["--seed"]);
}

#[test]
fn unknown_dtype_flag() {
    fails("generate", os(&["--dtype", "f8"]), &["--dtype", "f8"]);
}

#[test]
fn prompt_tokens_not_numbers() {
    fails(
        "generate",
        os(&["--prompt-tokens", "1,x"]),
        &["--prompt-tokens", "x"],
    );
}

#[test]
fn logit_bias_not_a_number() {
    let args = generate_args(model(), &["--logit-bias", "{\"5\": \"a\"}"]);
    fails("generate", args, &["--logit-bias"]);
}

#[test]
fn score_temperature_zero_and_prompt_len_zero() {
    fails("score", os(&["--temperature", "0"]), &["--temperature"]);
    fails("score", os(&["--prompt-len", "0"]), &["--prompt-len"]);
}

#[test]
fn grpo_arithmetic_bad_numbers() {
    fails(
        "grpo_arithmetic",
        os(&["--lr", "nan"]),
        &["learning-rate", "nan"],
    );
    fails(
        "grpo_arithmetic",
        os(&["--steps", "-1"]),
        &["max-steps", "-1"],
    );
}

#[test]
fn grpo_unknown_reward() {
    let config = grpo_config("unknown-reward", &[]);
    let args = grpo_args(
        model_with_tokenizer(),
        dataset(),
        &config,
        &["--reward", "accuracy,bogus"],
    );
    fails("grpo", args, &["bogus"]);
}

#[test]
fn blas_compare_zero_size() {
    fails("blas_compare", os(&["--n", "0"]), &["--n"]);
}

// ---- Model directories. ----

#[test]
fn model_dir_missing() {
    let dir = scratch().join("no-such-model");
    fails("generate", generate_args(&dir, &[]), &["no-such-model"]);
}

#[test]
fn model_is_a_file() {
    let file = text_file("model-is-file", "model.bin", "not a directory");
    fails("generate", generate_args(&file, &[]), &[path_str(&file)]);
}

#[test]
fn model_without_config() {
    let dir = case_dir("model-without-config");
    fails("generate", generate_args(&dir, &[]), &["config.json"]);
}

#[test]
fn config_invalid_json() {
    let dir = model_with_file(
        "config-invalid-json",
        "config.json",
        b"{\"model_type\": \"qwen3\",",
    );
    fails("generate", generate_args(&dir, &[]), &["config.json"]);
}

#[test]
fn config_rope_theta_zero() {
    let dir = model_with_config("config-rope-theta-zero", |c| c["rope_theta"] = json!(0.0));
    fails("generate", generate_args(&dir, &[]), &["rope_theta"]);
}

#[test]
fn config_rms_norm_eps_negative() {
    let dir = model_with_config("config-eps-negative", |c| c["rms_norm_eps"] = json!(-1.0));
    fails("generate", generate_args(&dir, &[]), &["rms_norm_eps"]);
}

#[test]
fn config_max_position_embeddings_zero() {
    let dir = model_with_config("config-max-pos-zero", |c| {
        c["max_position_embeddings"] = json!(0)
    });
    fails(
        "generate",
        generate_args(&dir, &[]),
        &["max_position_embeddings"],
    );
}

#[test]
fn config_unknown_dtype() {
    let dir = model_with_config("config-unknown-dtype", |c| {
        c["torch_dtype"] = json!("float7")
    });
    fails("generate", generate_args(&dir, &[]), &["float7"]);
}

#[test]
fn config_vocab_size_zero() {
    let dir = model_with_config("config-vocab-zero", |c| c["vocab_size"] = json!(0));
    fails("generate", generate_args(&dir, &[]), &["vocab_size"]);
}

#[test]
fn config_heads_zero() {
    let dir = model_with_config("config-heads-zero", |c| c["num_attention_heads"] = json!(0));
    fails(
        "generate",
        generate_args(&dir, &[]),
        &["num_attention_heads"],
    );
}

#[test]
fn config_unknown_model_type() {
    let dir = model_with_config("config-model-type", |c| c["model_type"] = json!("gpt9"));
    fails("generate", generate_args(&dir, &[]), &["gpt9"]);
}

#[test]
fn safetensors_garbage() {
    let dir = model_with_file(
        "safetensors-garbage",
        "model.safetensors",
        b"\x07\x00\x00\x00\x00\x00\x00\x00garbage",
    );
    fails("generate", generate_args(&dir, &[]), &["model.safetensors"]);
}

#[test]
fn safetensors_huge_header_length() {
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    let dir = model_with_file("safetensors-huge-header", "model.safetensors", &bytes);
    fails("generate", generate_args(&dir, &[]), &["model.safetensors"]);
}

#[test]
fn safetensors_truncated() {
    let bytes = safetensors_bytes();
    let dir = model_with_file(
        "safetensors-truncated",
        "model.safetensors",
        &bytes[..bytes.len() / 2],
    );
    fails("generate", generate_args(&dir, &[]), &["model.safetensors"]);
}

#[test]
fn safetensors_missing() {
    let dir = model_with_config("safetensors-missing", |_| {});
    std::fs::remove_file(dir.join("model.safetensors")).expect("removing the weights");
    fails("generate", generate_args(&dir, &[]), &["model.safetensors"]);
}

#[test]
fn tokenizer_json_garbage() {
    let dir = model_with_file("tokenizer-garbage", "tokenizer.json", b"{\"model\": 17}");
    let args = os(&[
        "--model",
        path_str(&dir),
        "--prompt",
        "w5",
        "--max-tokens",
        "2",
    ]);
    fails("generate", args, &["tokenizer.json"]);
}

#[test]
fn tokenizer_json_garbage_in_chat() {
    let dir = model_with_file(
        "tokenizer-garbage-chat",
        "tokenizer.json",
        b"\x00\x01 not json",
    );
    let args = os(&[
        "--model",
        path_str(&dir),
        "--prompt",
        "w5",
        "--max-tokens",
        "2",
    ]);
    fails("chat", args, &["tokenizer.json"]);
}

#[test]
fn chat_template_fails_to_render() {
    let dir = model_with_config("template-fails", |_| {});
    save_tokenizer(&dir, 256, "{{ raise_exception('hostile template') }}");
    let args = os(&[
        "--model",
        path_str(&dir),
        "--prompt",
        "w5",
        "--max-tokens",
        "2",
    ]);
    fails("chat", args, &["hostile template"]);
}

#[test]
fn chat_template_syntax_error() {
    let dir = model_with_config("template-syntax", |_| {});
    save_tokenizer(&dir, 256, "{% for m in messages %}{{ m['content'] }");
    let args = os(&[
        "--model",
        path_str(&dir),
        "--prompt",
        "w5",
        "--max-tokens",
        "2",
    ]);
    fails("generate", args, &["template"]);
}

#[test]
fn tokenizer_larger_than_model_vocab() {
    let dir = model_with_config("tokenizer-too-large", |_| {});
    save_tokenizer(&dir, 300, TEMPLATE);
    let args = os(&[
        "--model",
        path_str(&dir),
        "--prompt",
        "w5",
        "--max-tokens",
        "2",
    ]);
    fails("generate", args, &["300", "256"]);
}

// ---- Token ids past the vocabulary (256 ids). ----

#[test]
fn generate_prompt_token_past_vocab() {
    let mut args = os(&["--model", path_str(model()), "--prompt-tokens", "1,256"]);
    args.extend(os(&["--max-tokens", "2"]));
    fails("generate", args, &["256"]);
}

#[test]
fn score_token_past_vocab() {
    fails(
        "score",
        os(&["--model", path_str(model()), "--tokens", "1,300"]),
        &["300"],
    );
}

#[test]
fn score_token_u32_max() {
    let args = os(&["--model", path_str(model()), "--tokens", "1,4294967295"]);
    fails("score", args, &["4294967295"]);
}

#[test]
fn score_token_past_u32() {
    let args = os(&["--model", path_str(model()), "--tokens", "1,4294967296"]);
    fails("score", args, &["--tokens", "4294967296"]);
}

#[test]
fn logit_bias_id_past_vocab() {
    let args = generate_args(model(), &["--logit-bias", "{\"1000\": 1.0}"]);
    fails("generate", args, &["--logit-bias", "1000"]);
}

#[test]
fn xtc_special_token_past_vocab() {
    let args = generate_args(model(), &["--xtc-special-tokens", "2,999"]);
    fails("generate", args, &["999"]);
}

// ---- Output paths. ----

#[test]
fn output_under_missing_parent() {
    let out = scratch().join("no-such-dir/logits.npy");
    let args = os(&[
        "--model",
        path_str(model()),
        "--tokens",
        "1,2,3",
        "--logits",
        path_str(&out),
    ]);
    fails("score", args, &["no-such-dir"]);
}

#[test]
fn output_under_a_file() {
    let file = text_file("output-under-file", "plain.txt", "a file, not a directory");
    let out = file.join("logits.npy");
    let args = os(&[
        "--model",
        path_str(model()),
        "--tokens",
        "1,2,3",
        "--logits",
        path_str(&out),
    ]);
    fails("score", args, &[path_str(&out)]);
}

#[test]
fn output_unwritable() {
    let out = Path::new("/proc/hostile-cli-logits.npy");
    let args = os(&[
        "--model",
        path_str(model()),
        "--tokens",
        "1,2,3",
        "--logits",
        path_str(out),
    ]);
    fails("score", args, &[path_str(out)]);
}

#[test]
fn grpo_output_dir_under_a_file() {
    let file = text_file("grpo-output-under-file", "plain.txt", "a file");
    let out = file.join("run");
    let config = grpo_config("grpo-output-under-file-cfg", &[]);
    let set = format!("output_dir={}", path_str(&out));
    let args = grpo_args(model_with_tokenizer(), dataset(), &config, &["--set", &set]);
    fails("grpo", args, &[path_str(&file)]);
}

#[test]
fn grpo_arithmetic_output_dir_under_a_file() {
    let file = text_file("arith-output-under-file", "plain.txt", "a file");
    let out = file.join("run");
    let args = os(&[
        "--sft-steps",
        "0",
        "--steps",
        "1",
        "--output-dir",
        path_str(&out),
    ]);
    fails("grpo_arithmetic", args, &[path_str(&file)]);
}

#[test]
fn chat_tools_missing_and_invalid() {
    let m = path_str(model_with_tokenizer());
    let missing = scratch().join("no-such-tools.json");
    let args = os(&[
        "--model",
        m,
        "--prompt",
        "w5",
        "--tools",
        path_str(&missing),
    ]);
    fails("chat", args, &["no-such-tools.json"]);
    let bad = text_file("tools-invalid", "tools.json", "[{\"type\": ");
    let args = os(&["--model", m, "--prompt", "w5", "--tools", path_str(&bad)]);
    fails("chat", args, &[path_str(&bad)]);
}

// ---- GRPO datasets. ----

fn grpo_dataset_fails(case: &str, data: &Path, needles: &[&str]) {
    let config = grpo_config(case, &[]);
    fails(
        "grpo",
        grpo_args(model_with_tokenizer(), data, &config, &[]),
        needles,
    );
}

#[test]
fn dataset_missing() {
    let data = scratch().join("no-such-data.jsonl");
    grpo_dataset_fails("dataset-missing", &data, &["no-such-data.jsonl"]);
}

#[test]
fn dataset_invalid_line() {
    let data = text_file(
        "dataset-invalid-line",
        "data.jsonl",
        "{\"prompt\": \"w5\", \"answer\": \"w6\"}\n{\"prompt\": \n",
    );
    grpo_dataset_fails("dataset-invalid-line-cfg", &data, &[path_str(&data), "2"]);
}

#[test]
fn dataset_missing_prompt_field() {
    let data = text_file(
        "dataset-no-prompt",
        "data.jsonl",
        "{\"question\": \"w5\", \"answer\": \"w6\"}\n",
    );
    grpo_dataset_fails("dataset-no-prompt-cfg", &data, &["prompt"]);
}

#[test]
fn dataset_prompt_wrong_type() {
    let data = text_file(
        "dataset-prompt-type",
        "data.jsonl",
        "{\"prompt\": 17, \"answer\": \"w6\"}\n",
    );
    grpo_dataset_fails("dataset-prompt-type-cfg", &data, &["prompt"]);
}

#[test]
fn dataset_empty() {
    let data = text_file("dataset-empty", "data.jsonl", "\n\n");
    grpo_dataset_fails("dataset-empty-cfg", &data, &[path_str(&data)]);
}

// ---- GRPO configs. ----

fn grpo_config_fails(case: &str, changes: &[(&str, &str)], needles: &[&str]) {
    let config = grpo_config(case, changes);
    fails(
        "grpo",
        grpo_args(model_with_tokenizer(), dataset(), &config, &[]),
        needles,
    );
}

#[test]
fn config_file_missing() {
    let config = scratch().join("no-such-config.toml");
    fails(
        "grpo",
        grpo_args(model_with_tokenizer(), dataset(), &config, &[]),
        &["no-such-config.toml"],
    );
}

#[test]
fn config_file_unsupported_format() {
    let config = text_file("config-yaml", "grpo.yaml", "num_generations: 2\n");
    fails(
        "grpo",
        grpo_args(model_with_tokenizer(), dataset(), &config, &[]),
        &["grpo.yaml"],
    );
}

#[test]
fn config_unknown_key() {
    grpo_config_fails(
        "config-unknown-key",
        &[("num_generation", "4")],
        &["num_generation"],
    );
}

#[test]
fn config_wrong_type() {
    grpo_config_fails(
        "config-wrong-type",
        &[("num_generations", "\"four\"")],
        &["num_generations"],
    );
}

#[test]
fn config_num_generations_zero() {
    grpo_config_fails(
        "config-num-gen-zero",
        &[("num_generations", "0")],
        &["num_generations"],
    );
}

#[test]
fn config_learning_rate_nan() {
    grpo_config_fails(
        "config-lr-nan",
        &[("learning_rate", "nan")],
        &["learning_rate"],
    );
}

#[test]
fn config_top_p_two() {
    grpo_config_fails("config-top-p-two", &[("top_p", "2.0")], &["top_p"]);
}

#[test]
fn config_max_completion_length_huge() {
    grpo_config_fails(
        "config-completion-huge",
        &[("max_completion_length", "1000000000000")],
        &["max_completion_length"],
    );
}

#[test]
fn config_temperature_negative() {
    grpo_config_fails(
        "config-temp-negative",
        &[("temperature", "-0.5")],
        &["temperature"],
    );
}

#[test]
fn set_without_equals() {
    let config = grpo_config("set-no-equals", &[]);
    let args = grpo_args(
        model_with_tokenizer(),
        dataset(),
        &config,
        &["--set", "num_generations"],
    );
    fails("grpo", args, &["num_generations"]);
}

#[test]
fn set_unknown_key() {
    let config = grpo_config("set-unknown-key", &[]);
    let args = grpo_args(
        model_with_tokenizer(),
        dataset(),
        &config,
        &["--set", "no_such_key=1"],
    );
    fails("grpo", args, &["no_such_key"]);
}

#[test]
fn set_wrong_type() {
    let config = grpo_config("set-wrong-type", &[]);
    let args = grpo_args(
        model_with_tokenizer(),
        dataset(),
        &config,
        &["--set", "learning_rate=fast"],
    );
    fails("grpo", args, &["learning_rate", "fast"]);
}

#[test]
fn grpo_arithmetic_set_invalid() {
    fails(
        "grpo_arithmetic",
        os(&["--set", "num_generations=0"]),
        &["num_generations"],
    );
    fails(
        "grpo_arithmetic",
        os(&["--set", "bogus_key=1"]),
        &["bogus_key"],
    );
}

#[test]
fn resume_from_missing_checkpoint() {
    let missing = scratch().join("no-such-checkpoint");
    let value = format!("{:?}", path_str(&missing));
    grpo_config_fails(
        "resume-missing",
        &[("resume_from_checkpoint", &value)],
        &["no-such-checkpoint"],
    );
}

#[test]
fn resume_from_garbage_checkpoint() {
    let dir = case_dir("resume-garbage-ckpt");
    for file in [
        "trainer_state.json",
        "optimizer.safetensors",
        "model.safetensors",
        "config.json",
    ] {
        std::fs::write(dir.join(file), b"\x00garbage").expect("writing a garbage checkpoint file");
    }
    let value = format!("{:?}", path_str(&dir));
    grpo_config_fails(
        "resume-garbage",
        &[("resume_from_checkpoint", &value)],
        &["resume-garbage-ckpt"],
    );
}

#[test]
fn grpo_model_without_tokenizer() {
    let config = grpo_config("grpo-no-tokenizer", &[]);
    fails(
        "grpo",
        grpo_args(model(), dataset(), &config, &[]),
        &["tokenizer.json"],
    );
}
