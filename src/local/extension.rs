//! Extension addresses: which `.qmail` files to look for, in which order, and the qmail
//! environment (`EXT`, `EXT2`..`EXT4`, `DEFAULT`) that the match gives a program.
//!
//! qmail-local's search for extension `a-b-c` is `.qmail-a-b-c`, `.qmail-a-b-default`,
//! `.qmail-a-default`, `.qmail-default`; with no extension it is `.qmail` alone. The separator
//! is `-` as in qmail, or another character (`+`) from `[local] extension_separator`; it is
//! also the one written in the file names (`.qmail-a+b+default` with `+`), so a file name says
//! which addresses it answers. As in qmail, a `.` in the extension is `:` in the file name (so
//! no file name the search makes can start a hidden or relative name), and the extension is
//! lowercased.

/// One `.qmail` file to try, and what a match means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The file name, e.g. `.qmail-a-b-default`.
    pub file: String,
    /// The part of the extension the `default` stands for (qmail's `DEFAULT`); `None` for an
    /// exact match.
    pub default: Option<String>,
}

/// The files to look for, first match wins. `ext` is the extension (`None` for a plain
/// address, which looks only at `.qmail`).
pub fn candidates(ext: Option<&str>, separator: char) -> Vec<Candidate> {
    let Some(ext) = ext else {
        return vec![Candidate {
            file: ".qmail".into(),
            default: None,
        }];
    };
    let name = file_part(ext);
    let mut out = vec![Candidate {
        file: format!(".qmail-{name}"),
        default: None,
    }];
    // Each separator, from the last, gives one `-default` wildcard for what follows it.
    let cuts: Vec<usize> = name.match_indices(separator).map(|(i, _)| i).collect();
    for &cut in cuts.iter().rev() {
        let sep_len = separator.len_utf8();
        out.push(Candidate {
            file: format!(".qmail-{}{separator}default", &name[..cut]),
            default: Some(ext.get(cut + sep_len..).unwrap_or_default().to_string()),
        });
    }
    out.push(Candidate {
        file: ".qmail-default".into(),
        default: Some(ext.to_string()),
    });
    out
}

/// The extension as it appears in a file name: lowercased, `.` written as `:`.
fn file_part(ext: &str) -> String {
    ext.to_lowercase().replace('.', ":")
}

/// qmail's `EXT`, `EXT2`, `EXT3`, `EXT4`: the extension, then what follows its first, second
/// and third separator (empty when there is none).
pub fn ext_variables(ext: &str, separator: char) -> [(&'static str, String); 4] {
    let mut parts = [String::new(), String::new(), String::new(), String::new()];
    parts[0] = ext.to_string();
    let mut rest = ext;
    for part in parts.iter_mut().skip(1) {
        match rest.split_once(separator) {
            Some((_, after)) => {
                *part = after.to_string();
                rest = after;
            }
            None => break,
        }
    }
    let [a, b, c, d] = parts;
    [("EXT", a), ("EXT2", b), ("EXT3", c), ("EXT4", d)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(ext: Option<&str>, sep: char) -> Vec<String> {
        candidates(ext, sep).into_iter().map(|c| c.file).collect()
    }

    #[test]
    fn qmail_search_order() {
        assert_eq!(files(None, '-'), [".qmail"]);
        assert_eq!(files(Some("list"), '-'), [".qmail-list", ".qmail-default"]);
        assert_eq!(
            files(Some("a-b-c"), '-'),
            [
                ".qmail-a-b-c",
                ".qmail-a-b-default",
                ".qmail-a-default",
                ".qmail-default"
            ]
        );
        assert_eq!(
            files(Some("Bob+News.Daily"), '+'),
            [
                ".qmail-bob+news:daily",
                ".qmail-bob+default",
                ".qmail-default"
            ]
        );
        // With `+` as the separator a `-` is just part of a name.
        assert_eq!(
            files(Some("mary-ann"), '+'),
            [".qmail-mary-ann", ".qmail-default"]
        );
    }

    #[test]
    fn default_names_what_the_wildcard_matched() {
        let c = candidates(Some("a-b-c"), '-');
        let defaults: Vec<Option<&str>> = c.iter().map(|c| c.default.as_deref()).collect();
        assert_eq!(defaults, [None, Some("c"), Some("b-c"), Some("a-b-c")]);
    }

    #[test]
    fn ext_variables_follow_qmail() {
        let vars = ext_variables("a-b-c-d-e", '-');
        assert_eq!(
            vars,
            [
                ("EXT", "a-b-c-d-e".to_string()),
                ("EXT2", "b-c-d-e".to_string()),
                ("EXT3", "c-d-e".to_string()),
                ("EXT4", "d-e".to_string()),
            ]
        );
        let vars = ext_variables("news", '+');
        assert_eq!(vars[0].1, "news");
        assert_eq!(vars[1].1, "");
    }
}
