//! Where each key of a TOML text is written, from the parser's own spans (the protocol of
//! `toml::Spanned`, read by hand so implicit tables such as `dkim` in `[[dkim.keys]]` work), so
//! a configuration error can name the line of a key, and the key at an error's position.
//!
//! The text is read a second time into a tree that keeps only spans: every key's span and its
//! value's span, tables recursed into, arrays and scalars kept whole (an error inside an array
//! is reported against the array's key).

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One key as written in the text.
#[derive(Debug, Clone)]
struct Entry {
    /// The key's path from the root, e.g. `["smtp", "listen"]`.
    path: Vec<String>,
    /// The key itself (for `[smtp]`, the `smtp` inside the header).
    key: Range<usize>,
    /// Its value (for a table written as `[smtp]`, what the parser reports for the table).
    value: Range<usize>,
}

/// The spans of every key in one TOML text.
#[derive(Debug, Clone)]
pub struct Spans {
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
    entries: Vec<Entry>,
}

impl Spans {
    /// Reads the spans of `text`; `None` when it does not parse (the caller reports that
    /// error from the real parse).
    pub fn of(text: &str) -> Option<Spans> {
        let Node::Table(root) = toml::from_str::<Node>(text).ok()? else {
            return None;
        };
        let mut entries = Vec::new();
        walk(&root, &mut Vec::new(), &mut entries);
        Some(Spans {
            line_starts: line_starts(text),
            entries,
        })
    }

    /// An empty map, for text whose spans cannot be read: every line lookup fails.
    pub fn none(text: &str) -> Spans {
        Spans {
            line_starts: line_starts(text),
            entries: Vec::new(),
        }
    }

    /// The 1-based line of byte `offset`.
    pub fn line_at(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }

    /// The 1-based line where `path` is written; for a key missing from the text, the line of
    /// the nearest enclosing table that is written (e.g. the `[tls]` header for `tls.key`).
    pub fn line_of(&self, path: &[String]) -> Option<usize> {
        (1..=path.len()).rev().find_map(|n| {
            let entry = self.entries.iter().find(|e| e.path[..] == path[..n])?;
            Some(self.line_at(entry.key.start))
        })
    }

    /// The line of a dotted key such as `smtp.listen` (see [`Spans::line_of`]).
    pub fn line_of_dotted(&self, key: &str) -> Option<usize> {
        let path: Vec<String> = key.split('.').map(str::to_string).collect();
        self.line_of(&path)
    }

    /// The most deeply nested key whose key or value covers byte `offset`: the key an error
    /// at that position is about.
    pub fn key_at(&self, offset: usize) -> Option<Vec<String>> {
        let covers = |r: &Range<usize>| r.contains(&offset) || (r.is_empty() && r.start == offset);
        self.entries
            .iter()
            .filter(|e| covers(&e.key) || covers(&e.value))
            .max_by_key(|e| (e.path.len(), usize::MAX - e.value.len()))
            .map(|e| e.path.clone())
    }
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

fn walk(table: &[(Key, Value)], path: &mut Vec<String>, out: &mut Vec<Entry>) {
    for (key, value) in table {
        path.push(key.name.clone());
        // A key or value without a span (an implicit table, `dkim` of `[[dkim.keys]]`) is
        // placed at its first inner key.
        let inner_start = match &value.node {
            Node::Table(inner) => inner
                .iter()
                .find_map(|(k, v)| k.span.clone().or_else(|| v.span.clone())),
            Node::Leaf => None,
        };
        let value_span = value.span.clone().or(inner_start).unwrap_or(0..0);
        out.push(Entry {
            path: path.clone(),
            key: key.span.clone().unwrap_or_else(|| value_span.clone()),
            value: value_span,
        });
        if let Node::Table(inner) = &value.node {
            walk(inner, path, out);
        }
        path.pop();
    }
}

/// A TOML value reduced to its shape: tables keep their keys' and values' spans.
enum Node {
    Table(Vec<(Key, Value)>),
    Leaf,
}

/// A value and, where the parser has it, its span (an implicit table has none).
struct Value {
    node: Node,
    span: Option<Range<usize>>,
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(
            SPANNED_NAME,
            &[SPANNED_START, SPANNED_END, SPANNED_VALUE],
            ValueVisitor,
        )
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Value, E> {
        Ok(Value {
            node: Node::Leaf,
            span: None,
        })
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Value, E> {
        Ok(Value {
            node: Node::Leaf,
            span: None,
        })
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Value, E> {
        Ok(Value {
            node: Node::Leaf,
            span: None,
        })
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Value, E> {
        Ok(Value {
            node: Node::Leaf,
            span: None,
        })
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Value, E> {
        Ok(Value {
            node: Node::Leaf,
            span: None,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        let node = NodeVisitor.visit_seq(seq)?;
        Ok(Value { node, span: None })
    }

    /// Either the span protocol (start, end, value) or, for a value the parser has no span
    /// for, the table itself.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Some(first) = map.next_key::<Key>()? else {
            return Ok(Value {
                node: Node::Table(Vec::new()),
                span: None,
            });
        };
        if first.name != SPANNED_START {
            let mut entries = vec![(first, map.next_value::<Value>()?)];
            while let Some(key) = map.next_key::<Key>()? {
                entries.push((key, map.next_value::<Value>()?));
            }
            return Ok(Value {
                node: Node::Table(entries),
                span: None,
            });
        }
        let start = map.next_value::<usize>()?;
        let (mut end, mut node) = (start, Node::Leaf);
        while let Some(field) = map.next_key::<String>()? {
            match field.as_str() {
                SPANNED_END => end = map.next_value::<usize>()?,
                SPANNED_VALUE => node = map.next_value::<Node>()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value {
            node,
            span: Some(start..end),
        })
    }
}

/// A key and, where the parser has it, its span. The parser gives a key inside a dotted
/// array-of-tables header (`[[dkim.keys]]`) as a plain string, which `Spanned<String>` refuses;
/// such a key takes its value's span (the walk does that).
struct Key {
    name: String,
    span: Option<Range<usize>>,
}

// The field names through which the toml deserializer hands out spans (serde_spanned's
// private protocol, which `toml::Spanned` itself uses).
const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(
            SPANNED_NAME,
            &[SPANNED_START, SPANNED_END, SPANNED_VALUE],
            KeyVisitor,
        )
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML key")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Key, E> {
        Ok(Key {
            name: name.to_string(),
            span: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Key, A::Error> {
        let (mut start, mut end, mut name) = (None, None, None);
        while let Some(field) = map.next_key::<String>()? {
            match field.as_str() {
                SPANNED_START => start = Some(map.next_value::<usize>()?),
                SPANNED_END => end = Some(map.next_value::<usize>()?),
                SPANNED_VALUE => name = Some(map.next_value::<String>()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field("key"))?;
        Ok(Key {
            name,
            span: start.zip(end).map(|(s, e)| s..e),
        })
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Leaf)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Node::Leaf)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            entries.push((key, map.next_value::<Value>()?));
        }
        Ok(Node::Table(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(dotted: &str) -> Vec<String> {
        dotted.split('.').map(str::to_string).collect()
    }

    #[test]
    fn lines_of_keys_and_keys_at_offsets() {
        let text = "# comment\n[server]\nhostname = \"mx\"\n\n[smtp]\nlisten = [\"a\",\n  \"b\"]\n\
                    [relay]\nroutes = { \"x.test\" = \"h:25\" }\n";
        let spans = Spans::of(text).expect("parses");
        let cases: &[(&str, Option<usize>)] = &[
            ("server", Some(2)),
            ("server.hostname", Some(3)),
            ("smtp.listen", Some(6)),
            ("relay.routes", Some(9)),
            // Missing keys: the line of the nearest table that is written.
            ("server.shards", Some(2)),
            ("tls.cert", None),
        ];
        for (key, line) in cases {
            assert_eq!(spans.line_of_dotted(key), *line, "{key}");
        }
        let at = |needle: &str| spans.key_at(text.find(needle).expect("needle"));
        assert_eq!(at("\"mx\""), Some(path("server.hostname")));
        assert_eq!(at("hostname"), Some(path("server.hostname")));
        assert_eq!(at("\"b\""), Some(path("smtp.listen")));
        assert_eq!(
            at("\"h:25\""),
            Some(vec!["relay".into(), "routes".into(), "x.test".into()])
        );
        assert_eq!(spans.line_at(0), 1);
        assert_eq!(spans.line_at(text.find("[smtp]").expect("smtp")), 5);
    }

    #[test]
    fn arrays_of_tables_keep_the_lines_of_other_keys() {
        let text = "[server]\nhostname = \"mx\"\n\n[[dkim.keys]]\ndomain = \"a\"\n\n\
                    [[dkim.keys]]\ndomain = \"b\"\n\n[unsubscribe]\nbase_url = \"x\"\n";
        let spans = Spans::of(text).expect("parses");
        assert_eq!(spans.line_of_dotted("server.hostname"), Some(2));
        assert_eq!(spans.line_of_dotted("dkim.keys"), Some(4));
        assert_eq!(spans.line_of_dotted("unsubscribe.base_url"), Some(11));
    }

    #[test]
    fn unparsable_text_has_no_spans() {
        assert!(Spans::of("[smtp\n").is_none());
        assert_eq!(Spans::none("a\nb").line_of_dotted("a"), None);
    }
}
