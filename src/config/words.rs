//! Turns serde's and toml's messages into words an operator reads: `invalid type: string
//! "two", expected usize` becomes `must be a whole number, not text ("two")`.
//!
//! serde's messages are stable in shape (`invalid type: X, expected Y`, `unknown field `k`,
//! expected one of ...`, ...); anything not recognised passes through unchanged.

/// The operator's version of one deserialization message (first line only: toml adds a second
/// line of parser detail to syntax errors, which is kept).
pub fn plain(message: &str) -> String {
    let message = message.trim_end();
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        return format!(
            "must be {}, not {}",
            expected_words(expected),
            found_words(found)
        );
    }
    if let Some(rest) = message.strip_prefix("invalid value: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        let expected = expected_words(expected);
        return match found.strip_prefix("integer ") {
            Some(n) if n.trim_matches('`').starts_with('-') => {
                format!("must be {expected}, not negative ({})", n.trim_matches('`'))
            }
            Some(n) => format!("must be {expected}; {} is too large", n.trim_matches('`')),
            None => format!("must be {expected}, not {}", found_words(found)),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let (field, known) = rest.split_once(", expected ").unwrap_or((rest, ""));
        let known = known
            .trim_start_matches("one of ")
            .trim_start_matches("a field named ");
        return if known.is_empty() {
            format!("unknown key {field}: this section has no keys")
        } else {
            format!("unknown key {field} (a misspelling?); known keys here: {known}")
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let (value, known) = rest.split_once(", expected ").unwrap_or((rest, ""));
        let known = known.trim_start_matches("one of ");
        return format!("{value} is not a choice here; choose one of {known}");
    }
    if let Some(field) = message.strip_prefix("missing field ") {
        return format!("{field} is required here");
    }
    if let Some(key) = message.strip_prefix("duplicate key ") {
        return format!("{key} is set twice");
    }
    message.to_string()
}

/// What serde says it expected, as a phrase that follows "must be".
fn expected_words(expected: &str) -> String {
    let e = expected.trim();
    let words = match e {
        "usize" | "u64" | "u32" | "u16" | "u8" | "a nonnegative integer" => "a whole number",
        "isize" | "i64" | "i32" | "i16" | "i8" | "an integer" => "a whole number",
        "f64" | "f32" | "a float" => "a number",
        "a boolean" | "bool" => "true or false",
        "a string" | "a borrowed string" | "a character" | "char" => "text in quotes",
        "path string" | "a path" => "a path in quotes",
        "a sequence" => "a list in brackets, e.g. [\"...\"]",
        "a map" => "a table",
        _ if e.starts_with("struct ") => "a table of settings",
        _ if e.starts_with("a sequence") => "a list in brackets, e.g. [\"...\"]",
        _ if e.starts_with("one of ") => return format!("one of {}", &e["one of ".len()..]),
        _ => return e.to_string(),
    };
    words.to_string()
}

/// What serde says it found, as a phrase that follows "not".
fn found_words(found: &str) -> String {
    let f = found.trim();
    if let Some(s) = f.strip_prefix("string ") {
        return format!("text ({s})");
    }
    if let Some(n) = f.strip_prefix("integer ") {
        return format!("a number ({})", n.trim_matches('`'));
    }
    if let Some(n) = f.strip_prefix("floating point ") {
        return format!("a fraction ({})", n.trim_matches('`'));
    }
    if let Some(b) = f.strip_prefix("boolean ") {
        return b.trim_matches('`').to_string();
    }
    match f {
        "sequence" => "a list".to_string(),
        "map" => "a table".to_string(),
        _ => f.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn serde_messages_in_operator_words() {
        let cases: &[(&str, &str)] = &[
            (
                "invalid type: string \"two\", expected usize",
                "must be a whole number, not text (\"two\")",
            ),
            (
                "invalid type: integer `5`, expected a sequence",
                "must be a list in brackets, e.g. [\"...\"], not a number (5)",
            ),
            (
                "invalid type: string \"yes\", expected a boolean",
                "must be true or false, not text (\"yes\")",
            ),
            (
                "invalid type: integer `3`, expected a string",
                "must be text in quotes, not a number (3)",
            ),
            (
                "invalid type: floating point `1.5`, expected u64",
                "must be a whole number, not a fraction (1.5)",
            ),
            (
                "invalid value: integer `-1`, expected u32",
                "must be a whole number, not negative (-1)",
            ),
            (
                "invalid value: integer `70000`, expected u16",
                "must be a whole number; 70000 is too large",
            ),
            (
                "unknown field `bogus`, expected one of `hostname`, `shards`",
                "unknown key `bogus` (a misspelling?); known keys here: `hostname`, `shards`",
            ),
            (
                "unknown variant `maybe`, expected one of `always`, `never`",
                "`maybe` is not a choice here; choose one of `always`, `never`",
            ),
            ("missing field `listen`", "`listen` is required here"),
            ("invalid table header", "invalid table header"),
        ];
        for (serde, operator) in cases {
            assert_eq!(plain(serde), *operator, "{serde}");
        }
    }
}
