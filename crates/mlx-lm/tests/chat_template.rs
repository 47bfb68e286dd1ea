//! Chat templates against transformers' `apply_chat_template` (golden
//! fixtures from `scripts/fixtures/gen_chat_fixtures.py`), and the engine's edges.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use mlx_lm::{ChatTemplate, ChatTemplateOptions, ChatTemplates, Error, Tokenizer};
use serde_json::{Value, json};

use common::{fixture, qwen3, temp_dir, write_file};
use tempfile::TempDir;

/// The render options a fixture case describes.
fn options(case: &Value) -> ChatTemplateOptions {
    let mut opts = ChatTemplateOptions::default()
        .add_generation_prompt(case["add_generation_prompt"].as_bool().unwrap_or(false))
        .continue_final_message(case["continue_final_message"].as_bool().unwrap_or(false));
    if let Some(tools) = case["tools"].as_array() {
        opts = opts.tools(tools.clone());
    }
    if let Some(yes) = case["enable_thinking"].as_bool() {
        opts = opts.enable_thinking(yes);
    }
    if let Some(kwargs) = case["kwargs"].as_object() {
        for (k, v) in kwargs {
            opts = opts.kwarg(k.clone(), v.clone());
        }
    }
    opts
}

fn messages(case: &Value) -> Vec<Value> {
    case["messages"].as_array().cloned().unwrap_or_default()
}

#[test]
fn qwen3_template_matches_transformers() {
    let fixtures = fixture("chat_templates.json");
    let cases = fixtures["qwen3"].as_array().expect("qwen3 cases");
    assert!(cases.len() >= 8);
    let tok = qwen3();
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let result = tok.apply_chat_template(&messages(case), &options(case));
        match case.get("expected").and_then(Value::as_str) {
            Some(expected) => {
                let got = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(got, expected, "case {name}");
                let ids: Vec<u32> = serde_json::from_value(case["expected_ids"].clone())
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                let got_ids = tok
                    .apply_chat_template_ids(&messages(case), &options(case))
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(got_ids, ids, "ids of case {name}");
            }
            None => {
                let err = result.expect_err(name);
                assert!(matches!(err, Error::TemplateRender { .. }), "{name}: {err}");
            }
        }
    }
}

#[test]
fn jinja_features_match_transformers() {
    let fixtures = fixture("chat_templates.json");
    let cases = fixtures["custom"].as_array().expect("custom cases");
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let source = case["template"].as_str().expect("template");
        let template = ChatTemplate::named(name, source)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .with_special_tokens(qwen3().special_tokens());
        let result = template.render(&messages(case), &options(case));
        match (case.get("expected"), case.get("expected_error")) {
            (Some(expected), _) => {
                let got = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(got, expected.as_str().unwrap_or_default(), "case {name}");
            }
            (None, Some(message)) => match result {
                Err(Error::TemplateRaised { message: got, .. }) => {
                    assert_eq!(got, message.as_str().unwrap_or_default(), "case {name}");
                }
                other => panic!("{name}: expected a raised error, got {other:?}"),
            },
            (None, None) => panic!("{name}: fixture has no expectation"),
        }
    }
}

#[test]
fn strftime_now_uses_the_given_time() {
    let template = ChatTemplate::new("Today: {{ strftime_now('%d %b %Y') }}").expect("compiles");
    let when = UNIX_EPOCH + Duration::from_secs(1_735_689_600); // 2025-01-01T00:00:00Z
    let opts = ChatTemplateOptions::default().now(when);
    let msgs = [json!({"role": "user", "content": "x"})];
    assert_eq!(
        template.render(&msgs, &opts).expect("renders"),
        "Today: 01 Jan 2025"
    );
    // Without a fixed time the clock is used: a four-digit year appears.
    let live = template
        .render(&msgs, &ChatTemplateOptions::default())
        .expect("renders");
    assert!(live.len() == "Today: 01 Jan 2025".len(), "{live}");
}

#[test]
fn bad_input_is_a_typed_error() {
    let template = ChatTemplate::new("{{ messages[0].content }}").expect("compiles");
    let opts = ChatTemplateOptions::default();
    assert!(matches!(
        template.render(&[], &opts),
        Err(Error::InvalidChatInput { .. })
    ));
    assert!(matches!(
        template.render(&[json!("not an object")], &opts),
        Err(Error::InvalidChatInput { .. })
    ));
    let both = ChatTemplateOptions::default()
        .add_generation_prompt(true)
        .continue_final_message(true);
    assert!(matches!(
        template.render(&[json!({"role": "user", "content": "x"})], &both),
        Err(Error::InvalidChatInput { .. })
    ));
    let no_text = ChatTemplateOptions::default().continue_final_message(true);
    assert!(matches!(
        template.render(&[json!({"role": "user"})], &no_text),
        Err(Error::InvalidChatInput { .. })
    ));
}

#[test]
fn syntax_and_render_errors_name_the_template() {
    match ChatTemplate::named("broken", "{% for x in %}") {
        Err(Error::TemplateSyntax { name, message }) => {
            assert_eq!(name, "broken");
            assert!(!message.is_empty());
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
    let template = ChatTemplate::named("t", "{{ messages[0].content.nope() }}").expect("compiles");
    match template.render(
        &[json!({"role": "user", "content": "x"})],
        &ChatTemplateOptions::default(),
    ) {
        Err(Error::TemplateRender { name, .. }) => assert_eq!(name, "t"),
        other => panic!("expected a render error, got {other:?}"),
    }
    let raised =
        ChatTemplate::new("{{ raise_exception('no ' ~ messages[0].role) }}").expect("compiles");
    let err = raised
        .render(
            &[json!({"role": "tool", "content": "x"})],
            &ChatTemplateOptions::default(),
        )
        .expect_err("raises");
    assert_eq!(err.to_string(), "chat template `default` raised: no tool");
}

#[test]
fn continue_final_message_with_content_blocks() {
    let template = ChatTemplate::new(
        "{% for m in messages %}[{{ m.role }}]{% for b in m.content %}{{ b.text }}{% endfor %}[/]{% endfor %}",
    )
    .expect("compiles");
    let msgs = [
        json!({"role": "user", "content": [{"type": "text", "text": "hi"}]}),
        json!({"role": "assistant", "content": [{"type": "text", "text": "Once upon"}, {"type": "image"}]}),
    ];
    let opts = ChatTemplateOptions::default().continue_final_message(true);
    assert_eq!(
        template.render(&msgs, &opts).expect("renders"),
        "[user]hi[/][assistant]Once upon"
    );
}

#[test]
fn named_templates_are_selected_like_transformers() {
    let templates = ChatTemplates::from_sources([
        ("default".to_string(), "D{{ messages|length }}".to_string()),
        ("tool_use".to_string(), "T{{ tools|length }}".to_string()),
        (
            "rag".to_string(),
            "R{% for d in documents %}{{ d.title }}{% endfor %}".to_string(),
        ),
    ]);
    let msgs = [json!({"role": "user", "content": "x"})];
    let plain = ChatTemplateOptions::default();
    assert_eq!(templates.render(&msgs, &plain).expect("default"), "D1");
    let tools = ChatTemplateOptions::default().tools(vec![json!({"name": "f"})]);
    assert_eq!(templates.render(&msgs, &tools).expect("tool_use"), "T1");
    let rag = ChatTemplateOptions::default()
        .template_name("rag")
        .documents(vec![json!({"title": "A"}), json!({"title": "B"})]);
    assert_eq!(templates.render(&msgs, &rag).expect("rag"), "RAB");
    match templates.select(Some("nope"), false) {
        Err(Error::ChatTemplateNotFound { name, available }) => {
            assert_eq!(name, "nope");
            assert_eq!(available, ["default", "tool_use", "rag"]);
        }
        other => panic!("expected not found, got {other:?}"),
    }
    let no_default = ChatTemplates::from_sources([
        ("a".to_string(), "A".to_string()),
        ("b".to_string(), "B".to_string()),
    ]);
    assert!(matches!(
        no_default.select(None, false),
        Err(Error::NoChatTemplate { .. })
    ));
    assert!(matches!(
        ChatTemplates::new().select(None, false),
        Err(Error::NoChatTemplate { .. })
    ));
}

#[test]
fn a_template_that_does_not_compile_fails_only_when_used() {
    let templates = ChatTemplates::from_sources([
        ("default".to_string(), "fine".to_string()),
        ("bad".to_string(), "{% if %}".to_string()),
    ]);
    let msgs = [json!({"role": "user", "content": "x"})];
    assert_eq!(
        templates
            .render(&msgs, &ChatTemplateOptions::default())
            .expect("ok"),
        "fine"
    );
    for _ in 0..2 {
        assert!(matches!(
            templates.select(Some("bad"), false),
            Err(Error::TemplateSyntax { ref name, .. }) if name == "bad"
        ));
    }
}

/// A minimal model directory built from our own small tokenizer.
fn tiny_dir(config: &str) -> TempDir {
    let dir = temp_dir("templates");
    let tok = mlx_lm::text::vocab::VocabTokenizerBuilder::char_level("abc".chars())
        .eos("</s>")
        .build()
        .expect("builds");
    tok.save_dir(dir.path()).expect("saves");
    write_file(dir.path(), "tokenizer_config.json", config);
    dir
}

#[test]
fn templates_load_from_config_list_and_jinja_files() {
    let msgs = [json!({"role": "user", "content": "x"})];
    let opts = ChatTemplateOptions::default();

    let list = r#"{"eos_token": "</s>", "chat_template": [
        {"name": "default", "template": "L{{ eos_token }}"},
        {"name": "tool_use", "template": "LT"}]}"#;
    let dir = tiny_dir(list);
    let tok = Tokenizer::from_dir(dir.path()).expect("loads");
    assert_eq!(tok.chat_templates().names(), ["default", "tool_use"]);
    assert_eq!(
        tok.apply_chat_template(&msgs, &opts).expect("renders"),
        "L</s>"
    );

    // chat_template.jinja and additional_chat_templates/ win over the config.
    write_file(
        dir.path(),
        "chat_template.jinja",
        "J{{ messages[0].content }}\n",
    );
    write_file(dir.path(), "additional_chat_templates/extra.jinja", "E");
    let tok = Tokenizer::from_dir(dir.path()).expect("loads");
    assert_eq!(tok.chat_templates().names(), ["default", "extra"]);
    assert_eq!(
        tok.apply_chat_template(&msgs, &opts).expect("renders"),
        "Jx"
    );
    let extra = ChatTemplateOptions::default().template_name("extra");
    assert_eq!(
        tok.apply_chat_template(&msgs, &extra).expect("renders"),
        "E"
    );

    let bad = tiny_dir(r#"{"chat_template": 42}"#);
    match Tokenizer::from_dir(bad.path()) {
        Err(Error::InvalidConfig { path, field, .. }) => {
            assert!(path.ends_with("tokenizer_config.json"));
            assert_eq!(field, "chat_template");
        }
        other => panic!("expected an invalid config, got {other:?}"),
    }
}
