//! Regressions: inputs the properties found, kept as plain tests.

use super::*;

/// `{%-%}` (found by `random_templates_compile_and_render_or_fail_cleanly`) and `{%}` made the
/// `{% generation %}` rewriting slice a tag backwards (`jinja::rewrite_generation_tags`): a
/// panic while compiling the template. Both are template syntax errors.
#[test]
fn lone_whitespace_control_and_overlapping_block_tags_are_template_errors() {
    let tok = tokenizer("templates/llama3.0");
    for text in [
        "{%-%}",
        "{%+%}",
        "{%}",
        "{%-}",
        "a{%}b",
        "{% if true %}x{%-%}{% endif %}",
    ] {
        let source = TemplateSource {
            text: text.into(),
            origin: "regression.jinja".into(),
        };
        let result = ChatTemplate::from_jinja(&source, &tok, BTreeMap::new(), vec![]);
        assert!(
            matches!(result, Err(kiln_data::Error::Template { .. })),
            "{text:?}: {result:?}"
        );
    }
    // The whitespace controls of generation tags still parse on both sides.
    let source = TemplateSource {
        text: "{% for m in messages %}{{ m.content }}{%- generation -%} {{ '<|eot_id|>' }} {%- endgeneration -%}{% endfor %}".into(),
        origin: "regression.jinja".into(),
    };
    let mut specials = BTreeMap::new();
    specials.insert("eos_token".to_string(), "<|eot_id|>".to_string());
    let t = ChatTemplate::from_jinja(&source, &tok, specials, vec![]).unwrap();
    assert_eq!(
        t.render(&[Message::assistant("x")], false).unwrap(),
        "x<|eot_id|>"
    );
}

/// A namespace that holds itself made the `tojson` filter recurse until the stack overflowed
/// (`jinja::write_py_json`; found while adding cycle-making fragments to the properties): the
/// process aborted. It is now a template error, like Python's "Circular reference detected".
#[test]
fn tojson_of_a_value_that_contains_itself_is_a_template_error() {
    let tok = tokenizer("templates/llama3.0");
    let mut specials = BTreeMap::new();
    specials.insert("eos_token".to_string(), "<|eot_id|>".to_string());
    for text in [
        "{% set ns = namespace(a=1) %}{% set ns.me = ns %}{{ ns | tojson }}",
        "{% set ns = namespace(a=1) %}{% set ns.me = [ns] %}{{ ns | tojson(indent=2) }}",
    ] {
        let source = TemplateSource {
            text: text.into(),
            origin: "regression.jinja".into(),
        };
        let (tok, specials) = (tok.clone(), specials.clone());
        let result = within(move || {
            ChatTemplate::from_jinja(&source, &tok, specials, vec![])
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        let err = result.unwrap_err();
        assert!(err.contains("circular reference"), "{text:?}: {err}");
    }
}

/// Templates that ran for minutes (a loop over 10^10 steps, `slice` into 10^12 lists) or aborted
/// the process on a failed allocation (`indent` / `tojson(indent=...)` of 10^12 spaces, a
/// string `replace` into 10^12 bytes) before renderings were given fuel (`jinja::TEMPLATE_FUEL`,
/// `jinja::MAX_TOJSON_INDENT`): each is now a template error within the time limit.
#[test]
fn runaway_templates_are_template_errors() {
    let tok = tokenizer("templates/llama3.0");
    let mut specials = BTreeMap::new();
    specials.insert("eos_token".to_string(), "<|eot_id|>".to_string());
    for text in [
        "{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}",
        "{{ [1, 2] | slice(1000000000000) | list }}",
        "{{ 'x\ny' | indent(1000000000000) }}",
        "{{ [1] | tojson(indent=1000000000000) }}",
        "{% set s = 'a' * 1000000 %}{{ s.replace('', s) }}",
        "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    ] {
        let source = TemplateSource {
            text: text.into(),
            origin: "regression.jinja".into(),
        };
        let (tok, specials) = (tok.clone(), specials.clone());
        let result =
            within(move || ChatTemplate::from_jinja(&source, &tok, specials, vec![]).map(|_| ()));
        assert!(
            matches!(result, Err(kiln_data::Error::Template { .. })),
            "{text:?}: {result:?}"
        );
    }
}

/// A `tokenizer.json` whose vocabulary has an id near `u32::MAX` loaded, and then
/// `Tokenizer::to_json` (tokenizers walks every id up to the largest) overflowed `u32::MAX + 1`
/// (a panic in debug builds), or for an id like 4e9 ran for minutes filling memory. Found by
/// `tokenizer_json_survives_mutations` (`PROPTEST_CASES=3000`): loading now rejects ids above
/// `kiln_data::tokenizer::MAX_TOKEN_ID`, naming the token.
#[test]
fn token_ids_near_u32_max_are_load_errors() {
    let text = fixture_text("templates/chatml/tokenizer.json");
    let v: Value = serde_json::from_str(&text).unwrap();
    let first = v["model"]["vocab"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    for id in [u64::from(u32::MAX), 4_000_000_000, 1 << 24] {
        let mut v = v.clone();
        v["model"]["vocab"][first.as_str()] = serde_json::json!(id);
        let json = v.to_string();
        let err = within(move || {
            let dir = Scratch::new();
            let from_file = Tokenizer::from_file(dir.write("tokenizer.json", &json)).map(|_| ());
            (from_file, Tokenizer::from_json_str(&json).map(|_| ()))
        });
        for result in [err.0, err.1] {
            let msg = result.unwrap_err().to_string();
            assert!(msg.contains(&id.to_string()), "{msg}");
        }
    }
    let mut v = v;
    v["model"]["vocab"][first.as_str()] = serde_json::json!((1 << 24) - 1);
    let tok = Tokenizer::from_json_str(&v.to_string()).unwrap();
    assert!(tok.to_json(false).is_ok());
}

/// tokenizers 0.23 panics on some malformed `tokenizer.json` files instead of failing: a
/// `decoder` value with a JSON error inside (`1e999`, a lone surrogate, nesting beyond serde's
/// limit) hits `expect("Helper")` in its decoder deserializer, and a
/// `model.continuing_subword_prefix` longer than a merge's token underflows
/// (`bpe/model.rs`). Found by `tokenizer_json_survives_mutations`; `Tokenizer::from_file` /
/// `from_json_str` now catch the panic and return a load error naming the file.
#[test]
fn tokenizers_crate_panics_are_load_errors() {
    let text = fixture_text("templates/chatml/tokenizer.json");
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["decoder"] = Value::String(MARK.into());
    let marked = v.to_string();
    let nested = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let mut inputs: Vec<String> = ["1e999", "\"\\ud800\"", nested.as_str(), "{\"type\": 1e999}"]
        .iter()
        .map(|raw| marked.replacen(&format!("\"{MARK}\""), raw, 1))
        .collect();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["model"]["continuing_subword_prefix"] = serde_json::json!("<|im_end|>");
    inputs.push(v.to_string());
    for json in inputs {
        let (from_file, from_str) = within(move || {
            let dir = Scratch::new();
            let path = dir.write("tokenizer.json", &json);
            (
                Tokenizer::from_file(&path).map(|_| ()),
                Tokenizer::from_json_str(&json).map(|_| ()),
            )
        });
        for result in [from_file, from_str] {
            assert!(
                matches!(&result, Err(kiln_data::Error::TokenizerLoad { message, .. }) if message.contains("panicked")),
                "{result:?}"
            );
        }
    }
}
