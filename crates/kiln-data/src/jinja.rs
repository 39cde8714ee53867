//! Hugging Face chat templates (Jinja) rendered with `minijinja`, the way transformers renders them.
//!
//! transformers compiles `chat_template` in a sandboxed Jinja2 environment with `trim_blocks` and
//! `lstrip_blocks`, the `loopcontrols` extension and a `{% generation %}` tag, and renders it with
//! `messages`, `tools` (None), `documents` (None), `add_generation_prompt`, the tokenizer's special
//! tokens (`bos_token`, `eos_token`, ...) and any extra keyword arguments. Globals:
//! `raise_exception(msg)`, `strftime_now(fmt)`, and the `tojson` filter (`json.dumps` with
//! `ensure_ascii=False`). This module reproduces that environment:
//!
//! - Python string/dict/list methods (`.strip()`, `.items()`, `.startswith()`, ...) come from
//!   `minijinja-contrib`'s pycompat callback; `trim` strips exactly like Python's `str.strip()`.
//! - `raise_exception` becomes [`Error::TemplateRaised`] with the template's message.
//! - Printing an undefined value (say `bos_token` when `tokenizer_config.json` has none) is an error,
//!   where Jinja2 would silently print nothing.
//! - `{% generation %}...{% endgeneration %}` blocks are tracked: their rendered byte spans are
//!   returned so assistant masks can come from the template itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

use crate::date::TemplateClock;
use crate::error::{Error, Result};
use crate::message::Message;

/// Private-use characters that mark the start and end of `{% generation %}` blocks in the raw
/// rendering; they are removed before the text is returned.
const GEN_START: char = '\u{E000}';
const GEN_END: char = '\u{E001}';
const TEMPLATE_NAME: &str = "chat_template";
/// minijinja fuel for one rendering: one unit per instruction and per 64 bytes of data created
/// or written. A template that never ends (`range(99999)` nested in another) or builds huge
/// values (`[1] * 100000000`, `indent(10**12)`) fails with an error instead of hanging or
/// exhausting memory. Real chat templates use a few hundred units per message, so this allows
/// conversations of hundreds of megabytes.
const TEMPLATE_FUEL: u64 = 10_000_000;
/// Largest `indent` of the `tojson` filter (templates use 2 or 4).
const MAX_TOJSON_INDENT: usize = 64;

/// The error a template's `raise_exception(msg)` produces, carried as the minijinja error's source.
#[derive(Debug)]
struct RaisedByTemplate(String);

impl std::fmt::Display for RaisedByTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedByTemplate {}

/// A compiled Hugging Face chat template.
#[derive(Debug)]
pub(crate) struct JinjaTemplate {
    env: Environment<'static>,
    /// Where the template came from (a file path), for error messages.
    origin: String,
    /// Whether the template has `{% generation %}` blocks.
    has_generation_tags: bool,
    /// The source as given.
    source: String,
}

/// One rendering: the text and the byte spans of `{% generation %}` blocks in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rendered {
    pub text: String,
    pub generation_spans: Vec<(usize, usize)>,
}

impl JinjaTemplate {
    /// Compiles `source`. `origin` names the file in errors.
    pub fn new(source: &str, origin: &str) -> Result<Self> {
        let original = source.to_string();
        let (source, has_generation_tags) = rewrite_generation_tags(source);
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(|e| template_error(origin, &e))?,
        );
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_unknown_method_callback(python_methods);
        env.add_filter("trim", |s: String| python_strip(&s).to_string());
        env.add_filter("tojson", tojson);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<Value, minijinja::Error> {
                Err(
                    minijinja::Error::new(ErrorKind::InvalidOperation, message.clone())
                        .with_source(RaisedByTemplate(message)),
                )
            },
        );
        env.add_template_owned(TEMPLATE_NAME, source)
            .map_err(|e| template_error(origin, &e))?;
        Ok(JinjaTemplate {
            env,
            origin: origin.to_string(),
            has_generation_tags,
            source: original,
        })
    }

    /// The Jinja source as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether `{% generation %}` blocks mark the assistant tokens.
    pub fn has_generation_tags(&self) -> bool {
        self.has_generation_tags
    }

    /// Renders `messages` with the given special tokens, extra variables and clock.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        special_tokens: &BTreeMap<String, String>,
        vars: &BTreeMap<String, serde_json::Value>,
        clock: TemplateClock,
    ) -> Result<Rendered> {
        for m in messages {
            if m.content.contains([GEN_START, GEN_END]) {
                return Err(Error::InvalidInput(format!(
                    "a {} message contains the private-use characters U+E000/U+E001 that mark \
                     generation blocks",
                    m.role
                )));
            }
        }
        let mut ctx: BTreeMap<String, Value> = special_tokens
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        ctx.insert("tools".into(), Value::from(()));
        ctx.insert("documents".into(), Value::from(()));
        for (k, v) in vars {
            ctx.insert(k.clone(), json_to_value(v));
        }
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_pairs([
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(m.content.as_str())),
                ])
            })
            .collect();
        ctx.insert("messages".into(), Value::from(msgs));
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        ctx.insert(
            "strftime_now".into(),
            Value::from_function(move |format: String| clock.now().strftime(&format)),
        );
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| template_error(&self.origin, &e))?;
        let raw = template
            .render(Value::from_pairs(ctx))
            .map_err(|e| render_error(&self.origin, &e))?;
        Ok(strip_generation_markers(&raw))
    }
}

/// Python's `str`/`dict`/`list` methods (minijinja-contrib's pycompat), with `str.strip()`,
/// `lstrip()` and `rstrip()` without arguments stripping Python's whitespace set (which includes
/// U+001C..U+001F, unlike Rust's `trim`).
fn python_methods(
    state: &mut minijinja::State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> std::result::Result<Value, minijinja::Error> {
    if let (Some(s), true) = (value.as_str(), args.is_empty()) {
        let ws = |c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c);
        match method {
            "strip" => return Ok(Value::from(s.trim_matches(ws))),
            "lstrip" => return Ok(Value::from(s.trim_start_matches(ws))),
            "rstrip" => return Ok(Value::from(s.trim_end_matches(ws))),
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// Maps a render error: `raise_exception` becomes [`Error::TemplateRaised`].
fn render_error(origin: &str, e: &minijinja::Error) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(raised) = err.downcast_ref::<RaisedByTemplate>() {
            return Error::TemplateRaised {
                origin: origin.to_string(),
                message: raised.0.clone(),
            };
        }
        source = err.source();
    }
    template_error(origin, e)
}

fn template_error(origin: &str, e: &minijinja::Error) -> Error {
    let mut message = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line() {
        let _ = write!(message, " (template line {line})");
    }
    if e.kind() == ErrorKind::OutOfFuel {
        let _ = write!(
            message,
            "; rendering took more than {TEMPLATE_FUEL} steps or built too much data (a loop \
             that does not end, or a huge value)"
        );
    }
    if e.kind() == ErrorKind::UndefinedError {
        message.push_str(
            "; a variable the template uses is not defined (a special token missing from \
             tokenizer_config.json, or a variable the caller must pass)",
        );
    }
    Error::Template {
        origin: origin.to_string(),
        message,
    }
}

/// Rewrites `{% generation %}` / `{% endgeneration %}` (with any whitespace control) into
/// `{% if true %}{{ MARKER }}{% endif %}` blocks that print the private-use markers: block tags
/// on both ends keep Jinja2's `-`/`+`, `trim_blocks` and `lstrip_blocks` semantics.
fn rewrite_generation_tags(source: &str) -> (String, bool) {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    let mut found = false;
    while let Some(start) = rest.find("{%") {
        // The closing `%}` is searched after the opening `{%` (in `{%}` they overlap).
        let Some(len) = rest[start + 2..].find("%}") else {
            break;
        };
        let end = start + 2 + len + 2;
        let tag = &rest[start + 2..start + 2 + len];
        let left = if tag.starts_with(['-', '+']) {
            &tag[..1]
        } else {
            ""
        };
        // A lone `-` or `+` (`{%-%}`) is the left control only.
        let body = &tag[left.len()..];
        let right = if body.ends_with(['-', '+']) {
            &body[body.len() - 1..]
        } else {
            ""
        };
        let inner = body[..body.len() - right.len()].trim();
        out.push_str(&rest[..start]);
        match inner {
            "generation" => {
                found = true;
                let _ = write!(
                    out,
                    "{{%{left} if true %}}{{{{ '{GEN_START}' }}}}{{% endif {right}%}}"
                );
            }
            "endgeneration" => {
                found = true;
                let _ = write!(
                    out,
                    "{{%{left} if true %}}{{{{ '{GEN_END}' }}}}{{% endif {right}%}}"
                );
            }
            _ => out.push_str(&rest[start..end]),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    (out, found)
}

/// Removes the generation markers, returning the clean text and the spans they delimited.
fn strip_generation_markers(raw: &str) -> Rendered {
    let mut text = String::with_capacity(raw.len());
    let mut spans = Vec::new();
    let mut open: Option<usize> = None;
    for c in raw.chars() {
        match c {
            GEN_START => open = Some(text.len()),
            GEN_END => {
                if let Some(s) = open.take() {
                    spans.push((s, text.len()));
                }
            }
            c => text.push(c),
        }
    }
    Rendered {
        text,
        generation_spans: spans,
    }
}

/// A JSON value as a template value (objects keep their key order).
pub(crate) fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (None, Some(u), _) => Value::from(u),
            (_, _, Some(f)) => Value::from(f),
            _ => Value::from(()),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => a.iter().map(json_to_value).collect(),
        serde_json::Value::Object(o) => {
            Value::from_pairs(o.iter().map(|(k, v)| (k.as_str(), json_to_value(v))))
        }
    }
}

/// Deepest nesting the `tojson` filter writes (JSON read by Kiln nests at most 128 levels).
const MAX_TOJSON_DEPTH: usize = 256;

/// HF's `tojson` filter: `json.dumps(x, ensure_ascii=False, indent=indent, sort_keys=sort_keys)`.
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<String, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    if let Some(n) = indent.filter(|&n| n > MAX_TOJSON_INDENT) {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("tojson: indent {n} is larger than {MAX_TOJSON_INDENT}"),
        ));
    }
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let _ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_py_json(&mut out, &value, indent, sort_keys.unwrap_or(false), 0)?;
    Ok(out)
}

fn write_py_json(
    out: &mut String,
    v: &Value,
    indent: Option<usize>,
    sort_keys: bool,
    level: usize,
) -> std::result::Result<(), minijinja::Error> {
    // A namespace can hold itself (`{% set ns.me = ns %}`): stop before the stack runs out, as
    // Python's `json.dumps` stops at a circular reference.
    if level > MAX_TOJSON_DEPTH {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "tojson: value nested deeper than {MAX_TOJSON_DEPTH} levels (a circular reference?)"
            ),
        ));
    }
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    // Python's separators: (', ', ': ') without indent, (',', ': ') with it.
    let item_sep = if indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if v.is_integer() {
                let _ = write!(out, "{v}");
            } else {
                let f = f64::try_from(v.clone())?;
                if f.is_nan() {
                    out.push_str("NaN");
                } else if f.is_infinite() {
                    out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
                } else {
                    let _ = write!(out, "{f:?}");
                }
            }
        }
        ValueKind::String => write_py_str(out, v.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                write_py_json(out, item, indent, sort_keys, level + 1)?;
            }
            if !items.is_empty() {
                newline(out, level);
            }
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if sort_keys {
                keys.sort();
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, level + 1);
                write_py_str(out, &k.to_string());
                out.push_str(": ");
                write_py_json(out, &v.get_item(k)?, indent, sort_keys, level + 1)?;
            }
            if !keys.is_empty() {
                newline(out, level);
            }
            out.push('}');
        }
        _ => write_py_str(out, &v.to_string()),
    }
    Ok(())
}

/// A JSON string as Python's `json.dumps(..., ensure_ascii=False)` writes it.
fn write_py_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Strips leading and trailing whitespace exactly like Python's `str.strip()` (which Jinja's `trim`
/// uses): Unicode `White_Space` plus the separators U+001C..U+001F.
pub fn python_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_strip_matches_python() {
        assert_eq!(python_strip("  a b \n\t"), "a b");
        assert_eq!(python_strip("\u{1f}x\u{1c}"), "x");
        assert_eq!(python_strip("\u{a0}x\u{3000}"), "x");
        assert_eq!(python_strip("\u{200b}x"), "\u{200b}x"); // zero-width space is not whitespace
    }
    use crate::date::DateTime;

    fn render(src: &str, msgs: &[Message], add_gen: bool) -> Result<Rendered> {
        let specials = BTreeMap::from([("bos_token".to_string(), "<s>".to_string())]);
        JinjaTemplate::new(src, "test.jinja")?.render(
            msgs,
            add_gen,
            &specials,
            &BTreeMap::new(),
            TemplateClock::Pinned(DateTime::date(2024, 7, 26).unwrap()),
        )
    }

    #[test]
    fn trim_blocks_and_python_methods() {
        let src = "{% for m in messages %}\n  {{ m.role.upper() }}:{{ m['content'].strip() }}|{{ m.content | trim }}\n{% endfor %}";
        let r = render(src, &[Message::user(" hi\u{1f}")], false).unwrap();
        // lstrip_blocks strips before block tags only; trim_blocks eats the newline after them.
        assert_eq!(r.text, "  USER:hi|hi\n");
    }

    #[test]
    fn helpers_and_errors() {
        let r = render("{{ bos_token }}{{ strftime_now('%d %b %Y') }}", &[], false).unwrap();
        assert_eq!(r.text, "<s>26 Jul 2024");
        let e = render("{{ raise_exception('no system role') }}", &[], false).unwrap_err();
        assert!(
            matches!(&e, Error::TemplateRaised { message, .. } if message == "no system role"),
            "{e}"
        );
        let e = render("{{ eos_token }}", &[], false).unwrap_err();
        assert!(e.to_string().contains("test.jinja"), "{e}");
        let e = render("{% if %}", &[], false).unwrap_err();
        assert!(matches!(e, Error::Template { .. }), "{e}");
        let r = render(
            "{{ {'a': [1, 2.5, none, true], 'b': 'x\"é'} | tojson }}|{{ [1] | tojson(indent=2) }}",
            &[],
            false,
        )
        .unwrap();
        assert_eq!(
            r.text,
            "{\"a\": [1, 2.5, null, true], \"b\": \"x\\\"é\"}|[\n  1\n]"
        );
        let r = render("{% for x in [1,2,3] %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}{{ tools is none }}", &[], false).unwrap();
        assert_eq!(r.text, "1True");
    }

    #[test]
    fn generation_tags_give_spans() {
        let src = "{% for m in messages %}{{ m.role }}: {% if m.role == 'assistant' %}{%- generation -%}  {{ m.content }}!{% endgeneration %}{% else %}{{ m.content }}{% endif %}\n{% endfor %}";
        let t = JinjaTemplate::new(src, "g").unwrap();
        assert!(t.has_generation_tags());
        let msgs = [Message::user("a"), Message::assistant("b")];
        let r = render(src, &msgs, false).unwrap();
        // As Jinja2: trim_blocks eats the newline after `{% endif %}`; `{%- generation -%}` strips
        // only the (empty) text right before it and the spaces after it.
        assert_eq!(r.text, "user: aassistant: b!");
        assert_eq!(
            &r.text[r.generation_spans[0].0..r.generation_spans[0].1],
            "b!"
        );
    }
}
