//! Reading thinking and tool calls out of completions.

mod common;

use mlx_lm::text::tools::{
    CompletionTags, extract_tool_calls, parse_completion, parse_completion_with,
    parse_tool_call_body, split_thinking,
};
use mlx_lm::{ChatTemplateOptions, ToolCallStatus};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

#[test]
fn json_calls_with_object_or_string_arguments() {
    let parsed = parse_completion(
        "I'll look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"東京\", \"days\": 3}}\n</tool_call>\n\
         <tool_call>\n{\"name\": \"search\", \"arguments\": \"{\\\"q\\\": \\\"rust\\\"}\"}\n</tool_call>",
    );
    assert_eq!(parsed.text, "I'll look.");
    assert_eq!(parsed.thinking, None);
    assert_eq!(parsed.tool_calls.len(), 2);
    let first = &parsed.tool_calls[0];
    assert_eq!(first.name.as_deref(), Some("get_weather"));
    assert_eq!(first.arguments, json!({"city": "東京", "days": 3}));
    assert!(first.is_ok());
    assert!(first.raw.starts_with("<tool_call>") && first.raw.ends_with("</tool_call>"));
    let second = &parsed.tool_calls[1];
    assert_eq!(second.arguments, json!({"q": "rust"}));
    assert_eq!(second.status, ToolCallStatus::Ok);
}

#[test]
fn malformed_calls_are_reported_not_fatal() {
    let parsed = parse_completion(
        "<tool_call>{\"name\": \"a\", \"arguments\": {</tool_call>\
         <tool_call>{\"arguments\": {}}</tool_call>\
         <tool_call>{\"name\": \"b\", \"arguments\": \"not json\"}</tool_call>\
         <tool_call>[1, 2]</tool_call>\
         <tool_call>{\"name\": \"c\"}</tool_call>\
         <tool_call>{\"name\": \"d\", \"parameters\": {\"x\": 1}}</tool_call>\
         <tool_call>{\"name\": \"e\", \"arguments\": [1]}</tool_call>",
    );
    let statuses: Vec<&ToolCallStatus> = parsed.tool_calls.iter().map(|c| &c.status).collect();
    assert!(matches!(statuses[0], ToolCallStatus::InvalidJson { .. }));
    assert_eq!(statuses[1], &ToolCallStatus::MissingName);
    assert!(
        matches!(statuses[2], ToolCallStatus::InvalidJson { message } if message.contains("arguments"))
    );
    assert_eq!(parsed.tool_calls[2].name.as_deref(), Some("b"));
    assert_eq!(parsed.tool_calls[2].arguments, json!("not json"));
    assert!(matches!(statuses[3], ToolCallStatus::InvalidJson { .. }));
    assert_eq!(statuses[4], &ToolCallStatus::Ok);
    assert_eq!(parsed.tool_calls[4].arguments, json!({}));
    assert_eq!(parsed.tool_calls[5].arguments, json!({"x": 1}));
    assert!(matches!(statuses[6], ToolCallStatus::InvalidJson { .. }));
    assert_eq!(parsed.text, "");
}

#[test]
fn xml_style_calls() {
    let parsed = parse_completion(
        "<tool_call>\n<function=run_code>\n<parameter=language>\npython\n</parameter>\n\
         <parameter=code>\nprint('hi')\nprint(2)\n</parameter>\n<parameter=timeout>\n30\n</parameter>\n\
         <parameter=flags>\n{\"fast\": true}\n</parameter>\n</function>\n</tool_call>",
    );
    let call = &parsed.tool_calls[0];
    assert_eq!(call.name.as_deref(), Some("run_code"));
    assert_eq!(
        call.arguments,
        json!({"language": "python", "code": "print('hi')\nprint(2)", "timeout": 30, "flags": {"fast": true}})
    );
    assert!(call.is_ok());

    let nameless = parse_tool_call_body("<function=><parameter=x>1</parameter></function>");
    assert_eq!(nameless.status, ToolCallStatus::MissingName);
    assert_eq!(nameless.arguments, json!({"x": 1}));

    let sloppy = parse_tool_call_body("<function=f>\n<parameter=a>\none\n<parameter=b>two");
    assert_eq!(sloppy.name.as_deref(), Some("f"));
    assert_eq!(sloppy.arguments, json!({"a": "one", "b": "two"}));
}

#[test]
fn thinking_forms() {
    let closed = parse_completion("<think>\nstep 1\nstep 2\n</think>\n\nThe answer is 4.");
    assert_eq!(closed.thinking.as_deref(), Some("step 1\nstep 2"));
    assert_eq!(closed.text, "The answer is 4.");

    // The prompt ended with "<think>\n": the completion starts inside thinking.
    let inside = parse_completion("Let me think.\n</think>\n\nDone.");
    assert_eq!(inside.thinking.as_deref(), Some("Let me think."));
    assert_eq!(inside.text, "Done.");

    let unclosed = parse_completion("Preamble <think> still thinking <tool_call>{\"name\": \"x\"}");
    assert_eq!(
        unclosed.thinking.as_deref(),
        Some("still thinking <tool_call>{\"name\": \"x\"}")
    );
    assert_eq!(unclosed.text, "Preamble");
    assert!(
        unclosed.tool_calls.is_empty(),
        "calls inside thinking are not calls"
    );

    let empty = parse_completion("<think>\n\n</think>\n\nHi");
    assert_eq!(empty.thinking.as_deref(), Some(""));
    assert_eq!(empty.text, "Hi");

    let none = parse_completion("  plain answer \n");
    assert_eq!(none.thinking, None);
    assert_eq!(none.text, "plain answer");

    let two = split_thinking("<think>a</think>x<think>b</think>y");
    assert_eq!(two, (Some("a\n\nb".to_string()), "xy".to_string()));
}

#[test]
fn unterminated_call_at_the_end() {
    let (text, calls) =
        extract_tool_calls("ok <tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n");
    assert_eq!(text, "ok ");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].status, ToolCallStatus::Unterminated);
    assert_eq!(calls[0].name.as_deref(), Some("f"));
    assert_eq!(calls[0].arguments, json!({"a": 1}));
}

#[test]
fn custom_tags() {
    let tags = CompletionTags {
        think_start: "<reasoning>".into(),
        think_end: "</reasoning>".into(),
        tool_call_start: "[CALL]".into(),
        tool_call_end: "[/CALL]".into(),
    };
    let parsed = parse_completion_with(
        "<reasoning>hmm</reasoning>Sure[CALL]{\"name\": \"f\", \"arguments\": {}}[/CALL]",
        &tags,
    );
    assert_eq!(parsed.thinking.as_deref(), Some("hmm"));
    assert_eq!(parsed.text, "Sure");
    assert_eq!(parsed.tool_calls[0].name.as_deref(), Some("f"));
}

#[test]
fn parsed_calls_render_back_through_the_chat_template() {
    let completion = "<think>\nNeed data.\n</think>\n\nChecking.\n<tool_call>\n\
        {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>";
    let parsed = parse_completion(completion);
    let message = parsed.to_assistant_message();
    assert_eq!(message["reasoning_content"], "Need data.");
    let msgs = [json!({"role": "user", "content": "Weather?"}), message];
    let prompt = common::qwen3()
        .apply_chat_template(&msgs, &ChatTemplateOptions::default())
        .expect("renders");
    let expected = format!("<|im_start|>assistant\n{completion}<|im_end|>\n");
    assert!(prompt.ends_with(&expected), "{prompt}");
}

// --- properties -------------------------------------------------------------

/// Text made of tag fragments and arbitrary pieces, to hit every branch.
fn tag_soup() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("<think>".to_string()),
        Just("</think>".to_string()),
        Just("<tool_call>".to_string()),
        Just("</tool_call>".to_string()),
        Just("<function=".to_string()),
        Just("</function>".to_string()),
        Just("<parameter=".to_string()),
        Just("</parameter>".to_string()),
        Just(">".to_string()),
        Just("{\"name\": \"f\", \"arguments\": ".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("\"".to_string()),
        Just("\n".to_string()),
        Just("<".to_string()),
        Just("é😀".to_string()),
        any::<String>(),
    ];
    prop::collection::vec(fragment, 0..16).prop_map(|parts| parts.concat())
}

fn identifier() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,15}"
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        prop::collection::vec(any::<i32>(), 0..4).prop_map(|v| json!(v)),
    ]
}

fn arguments() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((identifier(), leaf()), 0..6)
        .prop_map(|pairs| pairs.into_iter().collect())
}

/// XML-form string values that do not read as JSON and keep their text.
fn plain_text() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z ,.!?']{0,20}".prop_filter("not JSON literals", |s| {
        serde_json::from_str::<Value>(s).is_err() && !s.ends_with('\n')
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_and_raws_come_from_the_input(text in tag_soup()) {
        let parsed = parse_completion(&text);
        for call in &parsed.tool_calls {
            prop_assert!(text.contains(&call.raw));
            if call.is_ok() {
                prop_assert!(call.name.is_some());
            }
        }
        prop_assert_eq!(parsed.text.trim(), parsed.text.as_str());
        let _ = parsed.to_assistant_message();
    }

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        let parsed = parse_completion(&text);
        prop_assert!(parsed.tool_calls.iter().all(|c| text.contains(&c.raw)));
    }

    #[test]
    fn json_calls_round_trip(
        before in "[a-zA-Z .]{0,20}",
        calls in prop::collection::vec((identifier(), arguments(), any::<bool>()), 1..4),
    ) {
        let mut completion = before.clone();
        for (name, args, as_string) in &calls {
            let args = Value::Object(args.clone());
            let args = if *as_string { Value::String(args.to_string()) } else { args };
            let body = json!({"name": name, "arguments": args});
            completion.push_str(&format!("\n<tool_call>\n{body}\n</tool_call>"));
        }
        let parsed = parse_completion(&completion);
        prop_assert_eq!(parsed.text, before.trim());
        prop_assert_eq!(parsed.tool_calls.len(), calls.len());
        for (call, (name, args, _)) in parsed.tool_calls.iter().zip(&calls) {
            prop_assert_eq!(&call.status, &ToolCallStatus::Ok);
            prop_assert_eq!(call.name.as_deref(), Some(name.as_str()));
            prop_assert_eq!(&call.arguments, &Value::Object(args.clone()));
        }
    }

    #[test]
    fn xml_calls_round_trip(
        name in identifier(),
        params in prop::collection::vec((identifier(), prop_oneof![
            plain_text().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
        ]), 0..5),
    ) {
        let mut body = format!("<tool_call>\n<function={name}>\n");
        let mut expected = Map::new();
        for (key, value) in &params {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            body.push_str(&format!("<parameter={key}>\n{text}\n</parameter>\n"));
            expected.insert(key.clone(), value.clone());
        }
        body.push_str("</function>\n</tool_call>");
        let parsed = parse_completion(&body);
        prop_assert_eq!(parsed.tool_calls.len(), 1);
        let call = &parsed.tool_calls[0];
        prop_assert_eq!(&call.status, &ToolCallStatus::Ok);
        prop_assert_eq!(call.name.as_deref(), Some(name.as_str()));
        prop_assert_eq!(&call.arguments, &Value::Object(expected));
    }
}
