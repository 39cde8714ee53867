#!/usr/bin/env python3
"""HF chat-template parity fixtures (Jinja templates rendered by transformers' apply_chat_template).

Writes checkpoint-like directories (tokenizer + template + generation config, no weights) under
tests/fixtures/templates/ and the expected renderings in tests/fixtures/templates/expected.json:

  llama3.0/         tokenizer_config.json "chat_template" = Meta-Llama-3-8B-Instruct's template
  llama3.1/         chat_template.jinja = Llama-3.1-8B-Instruct's template (tokenizer_config has none)
  llama3.2/         tokenizer_config.json "chat_template" = HF list form [{"name": "default", ...3.2...},
                    {"name": "tool_use", ...raises...}]; the "default" entry must be used
  chatml/           tiny tokenizer + <|im_start|>/<|im_end|>; chat_template.jinja = SmolLM2-135M-Instruct's
  generation_tags/  ChatML variant with {% generation %}...{% endgeneration %} around assistant content
  raises/           ChatML template that raise_exception()s when user/assistant roles do not alternate

The tokenizer is crates/kiln-data/assets/tokenizer.json (tiny byte-level BPE with Llama-3 special tokens).
Each directory is loaded with AutoTokenizer.from_pretrained(dir), so HF itself picks the template source
(chat_template.jinja first, else tokenizer_config.json chat_template; list form -> "default").

Per case: text = apply_chat_template(messages, tokenize=False, add_generation_prompt=..., **vars) (with
the strftime_now() global pinned to case["now"] when set), ids = encode(text, add_special_tokens=False), and
assistant_mask from this rule (Kiln implements the same): for each assistant message i,
P = render(messages[:i], add_generation_prompt=True), Q = render(messages[:i+1], False); Q starts with P and
the full rendering starts with Q; the span is [len(P), j + len(eot)) with j = Q.find(eot, len(P)) (or len(Q)
when there is no eot). A token is masked iff its offset range overlaps a span. straddles_turn_start is true when
some token starts before an assistant span and ends inside it (then no token boundary separates prompt and
completion; only the non-trimming ChatML templates with content starting in whitespace do this). generation_tags cases also store
HF's own return_assistant_tokens_mask result (hf_generation_mask).

Usage: .venv/bin/python scripts/make_template_fixtures.py
"""
import contextlib
import datetime
import json
import os
import pathlib
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import jinja2  # noqa: E402
import transformers  # noqa: E402
from tokenizers import AddedToken, Tokenizer  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402
from transformers.utils import chat_template_utils  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "crates/kiln-data/assets/tokenizer.json"
OUT = ROOT / "tests/fixtures/templates"

# Meta-Llama-3-8B-Instruct tokenizer_config.json "chat_template", verbatim (same as make_data_fixtures.py).
LLAMA30_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# meta-llama/Llama-3.1-8B-Instruct chat template, verbatim (tokenizer_config.json "chat_template").
LLAMA31_TEMPLATE = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\n\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

# meta-llama/Llama-3.2-1B-Instruct (and 3B) chat template, verbatim.
LLAMA32_TEMPLATE = r"""{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "26 Jul 2024" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message #}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\n\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\n\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\n\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\n\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\n\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""

# SmolLM2-135M-Instruct chat template, verbatim from the GGUF's tokenizer.chat_template metadata
# (scripts/real_model/fetch_smollm2.sh; the same string is written to <model>/chat_template.jinja).
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# ChatML with HF's generation block around assistant content + <|im_end|> (the "\n" stays outside).
GENERATION_TAGS_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\n' }}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)

# ChatML that rejects non-alternating conversations like the Llama-2 / Mistral templates do.
RAISES_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] %}{%- set loop_messages = messages[1:] %}"
    "{%- else %}{%- set system_message = false %}{%- set loop_messages = messages %}{%- endif %}"
    "{%- if system_message %}{{- '<|im_start|>system\n' + system_message + '<|im_end|>\n' }}{%- endif %}"
    "{%- for message in loop_messages %}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif %}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)

LLAMA_SPECIALS = {
    "bos_token": "<|begin_of_text|>",
    "eos_token": "<|eot_id|>",
    "pad_token": "<|finetune_right_pad_id|>",
}
CHATML_SPECIALS = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>"}


def m(role, content):
    return {"role": role, "content": content}


def rel(p):
    return str(p.relative_to(ROOT))


def write_json(path, obj):
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def dumps(obj):
    """indent=1 JSON, with lists of numbers kept on one line."""
    marks = {}

    def walk(o):
        if isinstance(o, dict):
            return {k: walk(v) for k, v in o.items()}
        if isinstance(o, list):
            if o and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in o):
                key = f"@@{len(marks)}@@"
                marks[key] = json.dumps(o, separators=(",", ":"))
                return key
            return [walk(v) for v in o]
        return o

    text = json.dumps(walk(obj), indent=1, ensure_ascii=False)
    for key, val in marks.items():
        text = text.replace(f'"{key}"', val, 1)
    return text + "\n"


def tokenizer_config(specials, chat_template=None):
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "clean_up_tokenization_spaces": False,
        "model_max_length": 131072,
        "model_input_names": ["input_ids", "attention_mask"],
        **specials,
    }
    if chat_template is not None:
        cfg["chat_template"] = chat_template
    return cfg


def make_dirs():
    """Writes the template directories; returns {name: eot}."""
    if OUT.exists():
        for child in OUT.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
    OUT.mkdir(parents=True, exist_ok=True)

    base = Tokenizer.from_file(str(TOKENIZER))
    llama_ids = {t: base.token_to_id(t) for t in ("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>")}
    assert llama_ids == {"<|begin_of_text|>": 0, "<|end_of_text|>": 1, "<|eot_id|>": 4}, llama_ids
    llama_gen = {"bos_token_id": llama_ids["<|begin_of_text|>"], "eos_token_id": [llama_ids["<|end_of_text|>"], llama_ids["<|eot_id|>"]]}

    chatml = Tokenizer.from_file(str(TOKENIZER))
    chatml.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in ("<|im_start|>", "<|im_end|>")]
    )
    im_start, im_end = chatml.token_to_id("<|im_start|>"), chatml.token_to_id("<|im_end|>")
    chatml_gen = {"bos_token_id": im_start, "eos_token_id": im_end}

    def llama_dir(name, cfg_template=None, jinja=None):
        d = OUT / name
        d.mkdir()
        shutil.copyfile(TOKENIZER, d / "tokenizer.json")
        write_json(d / "tokenizer_config.json", tokenizer_config(LLAMA_SPECIALS, cfg_template))
        if jinja is not None:
            (d / "chat_template.jinja").write_text(jinja, encoding="utf-8")
        write_json(d / "generation_config.json", llama_gen)

    def chatml_dir(name, jinja):
        d = OUT / name
        d.mkdir()
        chatml.save(str(d / "tokenizer.json"))
        write_json(d / "tokenizer_config.json", tokenizer_config(CHATML_SPECIALS))
        (d / "chat_template.jinja").write_text(jinja, encoding="utf-8")
        write_json(d / "generation_config.json", chatml_gen)

    llama_dir("llama3.0", cfg_template=LLAMA30_TEMPLATE)
    llama_dir("llama3.1", jinja=LLAMA31_TEMPLATE)
    llama_dir(
        "llama3.2",
        cfg_template=[
            {"name": "default", "template": LLAMA32_TEMPLATE},
            {"name": "tool_use", "template": "{{ raise_exception('not this one') }}"},
        ],
    )
    chatml_dir("chatml", SMOLLM2_TEMPLATE)
    chatml_dir("generation_tags", GENERATION_TAGS_TEMPLATE)
    chatml_dir("raises", RAISES_TEMPLATE)
    print(f"llama ids {llama_ids}; chatml <|im_start|> {im_start}, <|im_end|> {im_end}")
    return {
        "llama3.0": "<|eot_id|>",
        "llama3.1": "<|eot_id|>",
        "llama3.2": "<|eot_id|>",
        "chatml": "<|im_end|>",
        "generation_tags": "<|im_end|>",
        "raises": "<|im_end|>",
    }


MULTI = [
    m("system", "Answer in one short sentence."),
    m("user", "What is 2 plus 3?"),
    m("assistant", "2 plus 3 is 5."),
    m("user", "And 4 times 3?"),
    m("assistant", "4 times 3 is 12."),
]
MULTI_NOSYS = MULTI[1:]
UNICODE = [
    m("user", "  Qu'est-ce que c'est? naïve café 🙂\n"),
    m("assistant", "\n C'est un café — très bon! ☕  "),
]
WHITESPACE = [
    m("system", "  Be brief.  "),
    m("user", "\tHello there!\n\n"),
    m("assistant", "  Hi!  How can I help?\n"),
    m("user", " Tell me a joke. "),
    m("assistant", "\n\nWhy did the chicken cross the road?  "),
]
USER_ONLY = [m("user", "What colour is the sky?")]
SYSTEM_USER = [m("system", "You are a helpful assistant."), m("user", "How many legs does a spider have?")]

# (template, name, messages, add_generation_prompt values, vars, now)
CASES = [
    ("llama3.0", "user_only", USER_ONLY, (False, True), {}, None),
    ("llama3.0", "system_user", SYSTEM_USER, (False, True), {}, None),
    ("llama3.0", "multi_turn", MULTI, (False, True), {}, None),
    ("llama3.0", "unicode_whitespace", UNICODE, (False, True), {}, None),
    ("llama3.1", "user_only", USER_ONLY, (False, True), {}, None),
    ("llama3.1", "system_user", SYSTEM_USER, (False, True), {}, None),
    ("llama3.1", "multi_turn", MULTI, (False,), {}, None),
    ("llama3.1", "multi_turn_no_system", MULTI_NOSYS, (False,), {}, None),
    ("llama3.1", "date_string", SYSTEM_USER, (True,), {"date_string": "01 Jan 2026"}, None),
    ("llama3.1", "multi_turn_date_string", MULTI, (False,), {"date_string": "01 Jan 2026"}, None),
    ("llama3.1", "unicode_whitespace", UNICODE, (False,), {}, None),
    ("llama3.2", "user_only_now", USER_ONLY, (False, True), {}, "2026-11-28"),
    ("llama3.2", "system_user_now", SYSTEM_USER, (False, True), {}, "2026-11-28"),
    ("llama3.2", "multi_turn_now", MULTI, (False,), {}, "2026-03-05"),
    ("llama3.2", "date_string_beats_now", USER_ONLY, (True,), {"date_string": "01 Jan 2026"}, "2026-11-28"),
    ("chatml", "user_only_default_system", USER_ONLY, (False, True), {}, None),
    ("chatml", "system_user", SYSTEM_USER, (False, True), {}, None),
    ("chatml", "multi_turn", MULTI, (False, True), {}, None),
    ("chatml", "multi_turn_no_system", MULTI_NOSYS, (False,), {}, None),
    ("chatml", "whitespace", WHITESPACE, (False,), {}, None),
    ("chatml", "unicode_whitespace", UNICODE, (False,), {}, None),
    ("generation_tags", "multi_turn", MULTI, (False, True), {}, None),
    ("generation_tags", "whitespace", WHITESPACE, (False,), {}, None),
    ("generation_tags", "unicode_whitespace", UNICODE, (False,), {}, None),
    ("raises", "not_alternating", [m("user", "Hi"), m("user", "Hello?")], (True,), {}, None),
    ("raises", "assistant_first", [m("assistant", "Hi"), m("user", "Hello")], (False,), {}, None),
    ("raises", "valid", MULTI, (False, True), {}, None),
]


@contextlib.contextmanager
def pinned_now(now):
    """Pins the date that the template global strftime_now() sees.

    transformers 5.24 turns callables passed as template kwargs into inert "<function>" strings, so a
    strftime_now= kwarg cannot shadow the global; instead the module's `datetime` (which its strftime_now
    calls as datetime.now()) is swapped for one whose now() is `now` at midnight.
    """
    if now is None:
        yield
        return
    fixed = datetime.datetime.combine(datetime.date.fromisoformat(now), datetime.time())

    class _Pinned(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return fixed

    saved = chat_template_utils.datetime
    chat_template_utils.datetime = _Pinned
    try:
        yield
    finally:
        chat_template_utils.datetime = saved


def render(tok, messages, gen, vars_, now):
    with pinned_now(now):
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen, **vars_)


def assistant_spans(tok, messages, vars_, now, eot, text):
    full = render(tok, messages, False, vars_, now)
    assert text.startswith(full), "rendering with the generation prompt must extend the plain one"
    spans = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        p = render(tok, messages[:i], True, vars_, now)
        q = render(tok, messages[: i + 1], False, vars_, now)
        assert q.startswith(p), (p, q)
        assert full.startswith(q), (q, full)
        j = q.find(eot, len(p))
        spans.append((len(p), len(q) if j < 0 else j + len(eot)))
    return spans


def main():
    eots = make_dirs()
    tokenizers_cache = {}
    cases = []
    for tname, name, messages, gens, vars_, now in CASES:
        d = OUT / tname
        if tname not in tokenizers_cache:
            tokenizers_cache[tname] = AutoTokenizer.from_pretrained(str(d))
        tok = tokenizers_cache[tname]
        eot = eots[tname]
        for gen in gens:
            case = {
                "name": f"{tname}/{name}" + ("/gen" if gen else ""),
                "dir": rel(d),
                "messages": messages,
                "add_generation_prompt": gen,
                "vars": vars_,
                "now": now,
                "eot": eot,
                "text": "",
                "ids": [],
                "assistant_mask": [],
                "hf_generation_mask": None,
                "error": None,
                "straddles_turn_start": False,
            }
            try:
                text = render(tok, messages, gen, vars_, now)
            except jinja2.exceptions.TemplateError as e:
                case["error"] = str(e)
                cases.append(case)
                continue
            ids = tok.encode(text, add_special_tokens=False)
            enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
            assert enc["input_ids"] == ids
            spans = assistant_spans(tok, messages, vars_, now, eot, text)
            mask = [int(any(s < b and e > a for a, b in spans)) for s, e in enc["offset_mapping"]]
            # A token that starts in the prompt and ends inside an assistant turn (e.g. "\n\n" when
            # non-trimmed content starts with "\n" right after "assistant\n"): the prompt/completion
            # split cannot fall on a token boundary there.
            straddles = any(s < a < e for a, _ in spans for s, e in enc["offset_mapping"])
            case.update(text=text, ids=ids, assistant_mask=mask, straddles_turn_start=straddles)
            if tname == "generation_tags":
                kwargs = dict(vars_)
                out = tok.apply_chat_template(
                    messages,
                    tokenize=True,
                    return_dict=True,
                    return_assistant_tokens_mask=True,
                    add_generation_prompt=gen,
                    **kwargs,
                )
                assert list(out["input_ids"]) == ids, "HF tokenize=True ids differ from encode(text)"
                case["hf_generation_mask"] = [int(x) for x in out["assistant_masks"]]
                if case["hf_generation_mask"] != mask:
                    print(f"  note: {case['name']}: HF generation mask differs from the span rule")
            cases.append(case)
            print(f"{case['name']}: {len(ids)} ids, {sum(mask)} masked" + (", straddles a turn start" if straddles else ""))

    expected = {
        "generator": "scripts/make_template_fixtures.py",
        "transformers": transformers.__version__,
        "cases": cases,
    }
    path = OUT / "expected.json"
    path.write_text(dumps(expected), encoding="utf-8")
    print(f"wrote {rel(path)} ({len(cases)} cases)")


if __name__ == "__main__":
    main()
