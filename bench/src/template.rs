//! Address templates: `{n}` in an address becomes a per-message (or per-session) number.

/// Replaces every `{n}` in `template` with `n`.
pub fn expand(template: &str, n: u64) -> String {
    template.replace("{n}", &n.to_string())
}

/// The `{n}` for recipient `index` of message `message` (both from 0), numbered from 1.
/// With `spread` N the numbers cycle through 1..=N; without, every recipient gets a fresh number.
pub fn recipient_number(message: u64, index: u64, per_message: u64, spread: Option<u64>) -> u64 {
    let k = message * per_message + index;
    match spread {
        Some(n) if n > 0 => k % n + 1,
        _ => k + 1,
    }
}

/// The recipients of message `message` (from 0).
pub fn recipients(
    template: &str,
    message: u64,
    per_message: u64,
    spread: Option<u64>,
) -> Vec<String> {
    (0..per_message)
        .map(|i| expand(template, recipient_number(message, i, per_message, spread)))
        .collect()
}

/// The local part of an address (`u1@example.test` → `u1`); the whole string if it has no `@`.
pub fn local_part(address: &str) -> &str {
    address.rsplit_once('@').map_or(address, |(local, _)| local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_templates() {
        assert_eq!(expand("u{n}@example.test", 7), "u7@example.test");
        assert_eq!(expand("fixed@example.test", 7), "fixed@example.test");
        assert_eq!(expand("{n}-{n}", 3), "3-3");
    }

    #[test]
    fn numbers_recipients() {
        // (message, index, per_message, spread, want)
        let cases = [
            (0, 0, 1, Some(20), 1),
            (19, 0, 1, Some(20), 20),
            (20, 0, 1, Some(20), 1),
            (1, 1, 3, Some(4), 1),
            (0, 0, 1, None, 1),
            (41, 0, 1, None, 42),
            (2, 1, 2, None, 6),
            (5, 0, 1, Some(0), 6),
        ];
        for (m, i, per, spread, want) in cases {
            assert_eq!(
                recipient_number(m, i, per, spread),
                want,
                "{m} {i} {per} {spread:?}"
            );
        }
        assert_eq!(
            recipients("u{n}@x.test", 1, 2, Some(3)),
            vec!["u3@x.test".to_string(), "u1@x.test".to_string()]
        );
    }

    #[test]
    fn finds_local_parts() {
        assert_eq!(local_part("u1@example.test"), "u1");
        assert_eq!(local_part("a@b@c"), "a@b");
        assert_eq!(local_part("plain"), "plain");
    }
}
