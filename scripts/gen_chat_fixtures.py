#!/usr/bin/env python3
"""Regenerate the golden fixtures of the text tests from Hugging Face transformers.

Writes two files under tests/fixtures/:

- chat_templates.json: conversations rendered with the Qwen3 chat template by
  `tokenizer.apply_chat_template(..., tokenize=False)`, plus small templates of
  our own that exercise Jinja features chat templates use. Each case holds its
  inputs and the expected text (or the expected error).
- tokenizer_cases.json: token ids of sample strings from `tokenizer.encode`
  and their decodings, plus the tokenizer's special-token facts.

Usage (needs `pip install transformers jinja2`; no model download, no torch):

    python scripts/gen_chat_fixtures.py [--assets DIR] [--out tests/fixtures]

DIR defaults to the repository's `assets/qwen3-tokenizer` (the tokenizer the
tests load).
"""

import argparse
import json
import sys
from pathlib import Path

import transformers
from transformers import AutoTokenizer

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def default_assets() -> Path:
    """The repository's copy of the Qwen3 tokenizer."""
    return ROOT / "assets" / "qwen3-tokenizer"


# --- inputs -----------------------------------------------------------------

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city, in °C.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. \"Paris\" or 東京"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}

SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search_web",
        "description": "Search the web & return the top <k> results.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "k": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
                "safe": {"type": "boolean", "default": True},
                "boost": {"type": "number", "default": 0.5},
            },
            "required": ["query"],
        },
    },
}

TOOLS = [WEATHER_TOOL, SEARCH_TOOL]

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def call(name, arguments, with_type=True):
    out = {"function": {"name": name, "arguments": arguments}}
    if with_type:
        out = {"type": "function", **out}
    return out


QWEN3_CASES = [
    {
        "name": "system_user_generation_prompt",
        "messages": [SYSTEM, {"role": "user", "content": "Hello! What can you do?"}],
        "add_generation_prompt": True,
    },
    {
        "name": "user_assistant_no_generation_prompt",
        "messages": [
            {"role": "user", "content": "Say hi."},
            {"role": "assistant", "content": "Hi!"},
        ],
        "add_generation_prompt": False,
    },
    {
        "name": "tools_with_system",
        "messages": [SYSTEM, {"role": "user", "content": "Weather in Paris?"}],
        "tools": TOOLS,
        "add_generation_prompt": True,
    },
    {
        "name": "tools_without_system",
        "messages": [{"role": "user", "content": "Find news about Rust."}],
        "tools": TOOLS,
        "add_generation_prompt": True,
    },
    {
        "name": "thinking_off",
        "messages": [{"role": "user", "content": "2+2?"}],
        "add_generation_prompt": True,
        "enable_thinking": False,
    },
    {
        "name": "thinking_on",
        "messages": [{"role": "user", "content": "2+2?"}],
        "add_generation_prompt": True,
        "enable_thinking": True,
    },
    {
        "name": "multi_turn_tool_calls",
        "messages": [
            SYSTEM,
            {"role": "user", "content": "Weather in Paris and Tokyo, then search for umbrellas."},
            {
                "role": "assistant",
                "content": "Let me check both cities.",
                "tool_calls": [
                    call("get_weather", {"city": "Paris", "unit": "celsius"}),
                    call("get_weather", {"city": "東京"}),
                ],
            },
            {"role": "tool", "name": "get_weather", "content": "{\"temp\": 18, \"sky\": \"cloudy\"}"},
            {"role": "tool", "name": "get_weather", "content": "{\"temp\": 24, \"sky\": \"rain\"}"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [call("search_web", {"query": "umbrella", "k": 2, "safe": True, "boost": 1e-05})],
            },
            {"role": "tool", "content": "1. Umbrella shop\n2. Rain gear"},
            {"role": "assistant", "content": "Paris is 18°C and cloudy; Tokyo 24°C with rain. Umbrellas: see above."},
        ],
        "tools": TOOLS,
        "add_generation_prompt": False,
    },
    {
        "name": "tool_call_string_arguments_and_generation_prompt",
        "messages": [
            {"role": "user", "content": "Search for 'jinja templates'."},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [call("search_web", "{\"query\": \"jinja templates\", \"k\": 5}", with_type=False)],
            },
            {"role": "tool", "content": "No results."},
        ],
        "tools": TOOLS,
        "add_generation_prompt": True,
    },
    {
        "name": "reasoning_content_last_turn",
        "messages": [
            {"role": "user", "content": "Is 17 prime?"},
            {
                "role": "assistant",
                "reasoning_content": "\nCheck divisors up to 4: 2, 3 do not divide 17.\n",
                "content": "\n\nYes, 17 is prime.",
            },
        ],
        "add_generation_prompt": False,
    },
    {
        "name": "reasoning_inline_think_tags",
        "messages": [
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "<think>\nEasy one.\n</think>\n\nParis."},
        ],
        "add_generation_prompt": False,
    },
    {
        "name": "history_reasoning_dropped",
        "messages": [
            {"role": "user", "content": "First question"},
            {"role": "assistant", "reasoning_content": "old thoughts", "content": "First answer"},
            {"role": "user", "content": "Second question"},
        ],
        "add_generation_prompt": True,
        "enable_thinking": True,
    },
    {
        "name": "thinking_field_alias",
        "messages": [
            {"role": "user", "content": "Why is the sky blue?"},
            {"role": "assistant", "thinking": "Rayleigh scattering.", "content": "Because of Rayleigh scattering."},
        ],
        "add_generation_prompt": False,
    },
    {
        "name": "unicode_and_special_characters",
        "messages": [
            {"role": "system", "content": "Réponds en français. 回答要简洁。🙂"},
            {"role": "user", "content": "Quote: \"x < y && y > z\" \\ back\tslash 👨‍👩‍👧"},
        ],
        "tools": [WEATHER_TOOL],
        "add_generation_prompt": True,
    },
    {
        "name": "second_system_message_and_tool_first",
        "messages": [
            {"role": "user", "content": "<tool_response>\nx\n</tool_response>"},
            {"role": "system", "content": "Mid-conversation instruction."},
            {"role": "user", "content": "Go on."},
        ],
        "add_generation_prompt": True,
    },
    {
        # null fields are dropped, and this template then reads a missing
        # `content`: the render fails (the error is the expected result).
        "name": "assistant_null_content_fails",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": None, "tool_calls": [call("get_weather", {"city": "Rome"})]},
        ],
        "add_generation_prompt": False,
    },
    {
        "name": "continue_final_message",
        "messages": [
            {"role": "user", "content": "Write a haiku."},
            {"role": "assistant", "content": "Autumn moonlight—"},
        ],
        "continue_final_message": True,
    },
    {
        "name": "tool_response_after_reasoning",
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "reasoning_content": "Need the tool.",
                "content": "",
                "tool_calls": [call("get_weather", {"city": "Oslo", "extra": {"nested": [1, 2.5, None, False]}})],
            },
            {"role": "tool", "content": "{\"temp\": -3}"},
        ],
        "tools": TOOLS,
        "add_generation_prompt": True,
    },
]

# Small templates of our own exercising the Jinja features chat templates use.
CUSTOM_CASES = [
    {
        "name": "tojson_options",
        "template": (
            "{{ messages[0] | tojson }}\n"
            "{{ messages[0] | tojson(indent=2) }}\n"
            "{{ messages[0] | tojson(sort_keys=true) }}\n"
            "{{ messages[0] | tojson(separators=(',', ':')) }}\n"
            "{{ messages[0] | tojson(ensure_ascii=true) }}\n"
            "{{ {'a': [], 'b': {}, 'c': [1.0, 2.5e-7, 1e16, -0.0, 12345678901234567890]} | tojson(indent=4) }}"
        ),
        "messages": [{"role": "user", "content": "héllo \"quoted\" <b> & 😀\n", "z": 1, "a": [True, None, 0.1]}],
    },
    {
        "name": "python_str_of_values",
        "template": (
            "{{ none }}|{{ true }}|{{ false }}|{{ 1.5 }}|{{ 1e-05 }}|{{ 3 }}|{{ [1, 'a', none, true] }}|"
            "{{ {'k': 'v', 'n': none} }}|{{ messages[0].missing }}|{{ ('t',) }}|{{ \"it's\" }}|{{ ['it\\'s'] }}"
        ),
        "messages": [{"role": "user", "content": "x"}],
    },
    {
        "name": "string_and_dict_methods",
        "template": (
            "{%- set m = messages[0] -%}\n"
            "{{ m.content.strip() }}|{{ m.content.lstrip() }}|{{ m.content.rstrip() }}|"
            "{{ m.content.strip().split(' ') | join(',') }}|{{ m.content.strip().startswith('a') }}|"
            "{{ m.content.strip().endswith('c') }}|{{ m.content.upper() }}|{{ m.content.replace('b', 'B') }}|"
            "{{ m.content.split('b')[-1].lstrip() }}|{{ m.content.strip('\\n ') }}|{{ m.content.title() }}\n"
            "{%- for k, v in m.items() %}[{{ k }}={{ v }}]{% endfor %}\n"
            "{{ m.get('role') }}/{{ m.get('nope', 'default') }}/{{ m.nope is defined }}/{{ m.role is string }}"
        ),
        "messages": [{"role": "user", "content": "  a b c\n"}],
    },
    {
        "name": "whitespace_control",
        "template": (
            "{% for m in messages %}\n"
            "    {% if m.role == 'user' %}\n"
            "U: {{ m.content }}\n"
            "    {% else %}\n"
            "A: {{ m.content }}\n"
            "    {% endif %}\n"
            "{% endfor %}\n"
            "{%- if add_generation_prompt %}\n"
            "A:\n"
            "{% endif %}\n"
        ),
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        "add_generation_prompt": True,
    },
    {
        "name": "loops_namespace_and_controls",
        "template": (
            "{%- set ns = namespace(count=0, last='') -%}\n"
            "{%- for m in messages -%}\n"
            "{%- if m.role == 'system' %}{% continue %}{% endif -%}\n"
            "{%- if loop.index > 3 %}{% break %}{% endif -%}\n"
            "{%- set ns.count = ns.count + 1 -%}{%- set ns.last = m.role -%}\n"
            "{{ loop.index0 }}:{{ loop.first }}:{{ loop.last }}:{{ loop.length }}:{{ loop.revindex }}:"
            "{{ loop.cycle('odd', 'even') }};\n"
            "{%- endfor -%}\n"
            "{{ ns.count }}/{{ ns.last }}/{{ messages[::-1][0].role }}/{{ messages|length }}/"
            "{{ messages|selectattr('role', 'equalto', 'user')|list|length }}/{{ messages|map(attribute='role')|join('+') }}"
        ),
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "u1"},
            {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "u2"},
            {"role": "assistant", "content": "a2"},
        ],
    },
    {
        "name": "special_tokens_and_kwargs",
        "template": "{{ bos_token is defined }}|{{ eos_token }}|{{ pad_token }}|{{ custom }}|{{ tools }}|{{ documents }}|{{ enable_thinking is defined }}",
        "messages": [{"role": "user", "content": "x"}],
        "kwargs": {"custom": {"nested": [1, "two"]}},
    },
    {
        "name": "generation_tags",
        "template": (
            "{% for m in messages %}"
            "{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}"
            "{% else %}{{ m.content }}{% endif %}\n"
            "{% endfor %}"
        ),
        "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
    },
    {
        "name": "raise_exception",
        "template": (
            "{% if messages[0].role != 'system' %}"
            "{{ raise_exception('Conversations must start with a system message') }}{% endif %}ok"
        ),
        "messages": [{"role": "user", "content": "x"}],
    },
    {
        "name": "macros_filters_and_block_set",
        "template": (
            "{%- macro render(m, prefix='>') -%}{{ prefix }}{{ m.role | upper }}:{{ m.content | trim }}{%- endmacro -%}\n"
            "{%- set header %}H{{ messages | length }}{% endset -%}\n"
            "{{ header }}|{% for m in messages %}{{ render(m) }}{{ render(m, prefix='#') if loop.last }}"
            "{% if loop.previtem is defined %}(after {{ loop.previtem.role }}){% endif %}{% endfor %}|"
            "{{ '%s=%d' | format('n', 3) }}|{{ missing | default('dflt') }}|{{ messages[-1].content | replace('x', 'y') }}|"
            "{{ messages | map(attribute='role') | unique | list | length }}|{{ tools | tojson(indent=2) }}|"
            "{{ (messages | last).content }}|{{ messages[0].content[1:3] }}|{{ 7 // 2 }}|{{ 7 / 2 }}|{{ 2 ** 10 }}|{{ 10 % 3 }}"
        ),
        "messages": [
            {"role": "user", "content": "  xyz  "},
            {"role": "assistant", "content": "ax"},
            {"role": "user", "content": "x-ray"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}],
    },
    {
        "name": "dict_and_tests",
        "template": (
            "{% set d = dict(b=1, a=2) %}{{ d | tojson }}|{{ d.items() | list | length }}|"
            "{{ 3 is number }}|{{ 'x' is string }}|{{ none is none }}|{{ [1] is iterable }}|"
            "{{ messages[0] is mapping }}|{{ 4 is even }}|{{ false is false }}|{{ 1 is true }}|{{ 'ab' in 'cabd' }}"
        ),
        "messages": [{"role": "user", "content": "x"}],
    },
]

ENCODE_STRINGS = [
    "Hello, world!",
    "  leading spaces,\ttabs\n\nand   runs of    spaces  ",
    "你好，世界！今天天气怎么样？",
    "🤖🚀 emoji 👍🏽 family 👨‍👩‍👧 flags 🇫🇷🇯🇵",
    "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n",
    "<think>\nreasoning\n</think>\n\n<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>",
    "def f(x):\n    return x ** 2  # square\n",
    "Café naïve façade — “quotes” … ½ € ©",
    "こんにちは、世界。안녕하세요 세계. مرحبا بالعالم",
    "12345 678.90 3.14159e-10 0x1F",
    "",
    "a",
    "\u200b zero\u00a0width",
]


def render_case(tok, case, template=None):
    kwargs = dict(case.get("kwargs", {}))
    if "enable_thinking" in case:
        kwargs["enable_thinking"] = case["enable_thinking"]
    try:
        text = tok.apply_chat_template(
            case["messages"],
            tools=case.get("tools"),
            add_generation_prompt=case.get("add_generation_prompt", False),
            continue_final_message=case.get("continue_final_message", False),
            chat_template=template,
            tokenize=False,
            **kwargs,
        )
        return {"expected": text}
    except Exception as exc:  # the template's own error, recorded as expected
        return {"expected_error": str(exc)}


def fixture_case(case, result, template=None):
    out = {"name": case["name"]}
    if template is not None:
        out["template"] = template
    out["messages"] = case["messages"]
    for key in ("tools", "add_generation_prompt", "enable_thinking", "continue_final_message", "kwargs"):
        if key in case:
            out[key] = case[key]
    out.update(result)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=Path, default=default_assets())
    parser.add_argument("--out", type=Path, default=ROOT / "crates" / "mlx-lm" / "tests" / "fixtures")
    args = parser.parse_args()

    tok = AutoTokenizer.from_pretrained(str(args.assets))
    args.out.mkdir(parents=True, exist_ok=True)

    chat_cases = []
    for case in QWEN3_CASES:
        result = render_case(tok, case)
        if "expected" in result:
            # The prompt's ids as `apply_chat_template(..., tokenize=True)` gives them.
            result["expected_ids"] = tok.encode(result["expected"], add_special_tokens=False)
        chat_cases.append(fixture_case(case, result))
    custom_cases = [fixture_case(c, render_case(tok, c, c["template"]), c["template"]) for c in CUSTOM_CASES]
    chat = {
        "generator": "scripts/gen_chat_fixtures.py",
        "transformers_version": transformers.__version__,
        "qwen3": chat_cases,
        "custom": custom_cases,
    }
    (args.out / "chat_templates.json").write_text(json.dumps(chat, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    encode_cases = []
    for text in ENCODE_STRINGS:
        ids = tok.encode(text)
        ids_plain = tok.encode(text, add_special_tokens=False)
        encode_cases.append(
            {
                "text": text,
                "ids": ids,
                "ids_without_special": ids_plain,
                "decoded": tok.decode(ids),
                "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
            }
        )
    facts = {
        "generator": "scripts/gen_chat_fixtures.py",
        "transformers_version": transformers.__version__,
        "len": len(tok),
        "eos_token": tok.eos_token,
        "eos_token_id": tok.eos_token_id,
        "pad_token": tok.pad_token,
        "pad_token_id": tok.pad_token_id,
        "bos_token_id": tok.bos_token_id,
        "all_special_ids": sorted(tok.all_special_ids),
        "cases": encode_cases,
    }
    (args.out / "tokenizer_cases.json").write_text(json.dumps(facts, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(chat_cases)} + {len(custom_cases)} chat cases and {len(encode_cases)} encode cases to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
