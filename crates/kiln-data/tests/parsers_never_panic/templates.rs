//! Chat templates: random ones built from Jinja fragments, and mutated fixture templates.

use super::model_dirs::jinja_templates;
use super::*;

/// Pieces of Jinja: delimiters, statements, the variables transformers passes, loop helpers,
/// filters, Python methods, the helpers (`raise_exception`, `strftime_now`), literals and text.
/// `range(99999)` nested twice runs into the template fuel (an error after ~0.3 s). No bare `ns`:
/// `{% set ns.a = ns %}` makes a namespace that holds itself, and printing it overflows the
/// stack inside minijinja 3.1 (see the `tojson` regression test below).
const FRAGMENTS: &[&str] = &[
    "{%",
    "{%-",
    "%}",
    "-%}",
    "+%}",
    "{%+",
    "{{",
    "{{-",
    "}}",
    "-}}",
    "{#",
    "#}",
    " ",
    "\n",
    "for",
    "in",
    "endfor",
    "if",
    "elif",
    "else",
    "endif",
    "set",
    "=",
    "macro",
    "endmacro",
    "call",
    "endcall",
    "filter",
    "endfilter",
    "with",
    "endwith",
    "raw",
    "endraw",
    "block",
    "endblock",
    "extends",
    "include",
    "import",
    "from",
    "recursive",
    "break",
    "continue",
    "generation",
    "endgeneration",
    "{% generation %}",
    "{% endgeneration %}",
    "{%- generation -%}",
    "{%-%}",
    "{%%}",
    "{%- -%}",
    "{%+%}",
    "messages",
    "message",
    "m",
    "x",
    "loop",
    "loop.index0",
    "loop.first",
    "loop.last",
    "loop.previtem",
    "loop.nextitem",
    "loop.length",
    "loop.cycle('a', 'b')",
    "loop(messages)",
    "loop(m)",
    "bos_token",
    "eos_token",
    "pad_token",
    "unk_token",
    "add_generation_prompt",
    "tools",
    "documents",
    "date_string",
    "messages[0]",
    "messages[1:]",
    "messages[-1]",
    "messages[0]['role']",
    "message['content']",
    "m.content",
    "m.role",
    "m['role']",
    "namespace(found=false)",
    "ns.found",
    "range(3)",
    "range(99999)",
    "range(-2)",
    "range(0, 10, 0)",
    "raise_exception('bad conversation')",
    "raise_exception(m)",
    "raise_exception()",
    "strftime_now('%d %b %Y')",
    "strftime_now('%')",
    "strftime_now(3)",
    "strftime_now()",
    "|",
    "trim",
    "tojson",
    "tojson(indent=2)",
    "tojson(sort_keys=true)",
    "tojson(indent=-1)",
    "tojson(foo=1)",
    "upper",
    "lower",
    "title",
    "capitalize",
    "length",
    "first",
    "last",
    "join(', ')",
    "replace('a', 'b')",
    "default('x')",
    "safe",
    "string",
    "int",
    "float",
    "list",
    "items",
    "dictsort",
    "reverse",
    "selectattr('role', 'equalto', 'user')",
    "rejectattr('role')",
    "map(attribute='content')",
    "indent(2)",
    "abs",
    "round",
    "batch(2)",
    "slice(2)",
    "unique",
    "sum",
    "min",
    "max",
    "sort",
    "count",
    "wordcount",
    "format(1)",
    ".strip()",
    ".lstrip('<')",
    ".rstrip()",
    ".split()",
    ".split('')",
    ".split(',', -5)",
    ".startswith('x')",
    ".endswith(1)",
    ".upper()",
    ".items()",
    ".keys()",
    ".values()",
    ".get('role')",
    ".get()",
    ".replace('a', 'b', -1)",
    ".count('')",
    ".find('a')",
    ".title()",
    ".splitlines()",
    ".join(messages)",
    ".isdigit()",
    ".format(1, 2)",
    ".center(3)",
    ".zfill(3)",
    ".partition('a')",
    ".index('zz')",
    ".pop()",
    ".append(1)",
    "(",
    ")",
    "[",
    "]",
    ",",
    ":",
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "**",
    "~",
    "==",
    "!=",
    "<",
    ">=",
    "not",
    "and",
    "or",
    "is",
    "is defined",
    "is none",
    "is string",
    "is mapping",
    "is iterable",
    "is divisibleby(0)",
    "0",
    "1",
    "-1",
    "2",
    "3",
    "0.5",
    "1e308",
    "none",
    "None",
    "true",
    "False",
    "'x'",
    "\"y\"",
    "'\\n'",
    "'<|eot_id|>'",
    "'<|start_header_id|>'",
    "'<|im_start|>'",
    "'<|im_end|>'",
    "'\u{E000}'",
    "'\u{E001}'",
    "{}",
    "{'a': 1}",
    "[]",
    "[1, 2]",
    "'a' * 3",
    "'ab'[5]",
    "'ab'[::-1]",
    "1 / 0",
    "1 // 0",
    "1 % 0",
    "2 ** 64",
    "Hello ",
    "é😀",
    "\u{E000}",
    "<|eot_id|>",
    "{% for message in messages %}",
    "{% endfor %}",
    "{% if add_generation_prompt %}",
    "{% endif %}",
    "{{ message['content'] }}",
    "{{ message['role'] }}",
    "{{ '<|eot_id|>' }}",
    "{{ bos_token }}",
    "{{ eos_token }}",
    "{% set ns = namespace(found=false) %}",
    "{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}",
    "{% macro f(a) %}{{ f(a) }}{% endmacro %}{{ f(1) }}",
    "{% for i in range(3) %}{% for j in range(3) %}{{ i * j }}{% endfor %}{% endfor %}",
    "{{ messages | tojson }}",
    "{{ raise_exception('no system role') }}",
];

fn random_template() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(select(FRAGMENTS), 0..32),
        any::<bool>(),
    )
        .prop_map(|(parts, spaced)| parts.join(if spaced { " " } else { "" }))
}

/// Special tokens as a template sees them (a random subset of the usual ones, odd values too).
fn specials() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        select(vec!["bos_token", "eos_token", "pad_token", "unk_token"]),
        select(vec![
            "<|begin_of_text|>",
            "<|eot_id|>",
            "<|im_start|>",
            "<|im_end|>",
            "<|end_of_text|>",
            "",
            "not a token",
            "\u{E000}",
        ]),
        0..4,
    )
    .prop_map(|m| m.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
}

/// Compiles `text` through every entry point that takes a template and renders `msgs` with it.
fn compile_and_render(
    text: String,
    tok: &Tokenizer,
    tok_dir: &str,
    specials: BTreeMap<String, String>,
    eos: Vec<u32>,
    msgs: &[Message],
) {
    let source = TemplateSource {
        text: text.clone(),
        origin: "fragments.jinja".into(),
    };
    if let Ok(t) = ChatTemplate::from_jinja(&source, tok, specials, eos) {
        exercise(&t, tok, msgs);
        let dir = Scratch::new();
        let _ = t.save_files(&dir.0);
    }
    let dir = Scratch::new();
    let file = dir.write("template.jinja", &text);
    if let Ok(t) = ChatTemplate::load(&TemplateChoice::File(file), Some(&fixture(tok_dir)), tok) {
        exercise(&t, tok, msgs);
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn random_templates_compile_and_render_or_fail_cleanly(
        text in random_template(),
        tok_dir in select(TOKENIZER_DIRS),
        specials in specials(),
        eos in prop::collection::vec(0u32..2000, 0..3),
        msgs in conversation(),
    ) {
        let tok = tokenizer(tok_dir);
        within(move || compile_and_render(text, &tok, tok_dir, specials, eos, &msgs));
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn mutated_fixture_templates_compile_and_render_or_fail_cleanly(
        base in any::<Index>(),
        inserts in prop::collection::vec((any::<Index>(), select(FRAGMENTS)), 0..4),
        bytes in byte_edits(),
        tok_dir in select(TOKENIZER_DIRS),
        specials in specials(),
        msgs in conversation(),
    ) {
        let mut text = base.get(jinja_templates()).clone();
        for (at, piece) in &inserts {
            let mut p = at.index(text.len() + 1);
            while !text.is_char_boundary(p) {
                p -= 1;
            }
            text.insert_str(p, piece);
        }
        let text = String::from_utf8_lossy(&apply_bytes(text.into_bytes(), &bytes)).into_owned();
        let tok = tokenizer(tok_dir);
        within(move || compile_and_render(text, &tok, tok_dir, specials, vec![], &msgs));
    }
}
