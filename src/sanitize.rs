//! Text captured from another program (a server's output, its log, an HTTP
//! body) made safe to show in a report or a JSON document: terminal control
//! sequences (colours, cursor moves, titles) and other control characters
//! are removed, so `--color never`, `NO_COLOR` and `--json` get plain text
//! whatever the program printed. Every place that shows captured output
//! goes through [`captured`]; text cut to a size is cut on a character
//! boundary ([`floor_char_boundary`]). Text put in an HTML page or an XML
//! document has its markup escaped by [`escape_markup`].

/// `text` without ANSI escape sequences or control characters (newlines
/// and tabs are kept).
pub fn captured(text: &str) -> String {
    console::strip_ansi_codes(text)
        .chars()
        .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
        .collect()
}

/// The largest character boundary of `s` at or below `at` (`s.len()` when
/// `at` is past the end): where `s` may be cut to at most `at` bytes.
pub fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// `s` for an HTML or XML document: `&`, `<` and `>` as entities, every
/// other character as `other` writes it (quotes in attribute values,
/// characters the format cannot carry).
pub fn escape_markup(s: &str, mut other: impl FnMut(char, &mut String)) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => other(c, &mut out),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::captured;

    #[test]
    fn colours_cursor_moves_titles_and_controls_are_removed() {
        assert_eq!(
            captured("\u{1b}[32m2024-01-01 | INFO\u{1b}[0m | ready\n"),
            "2024-01-01 | INFO | ready\n"
        );
        assert_eq!(captured("\u{1b}]0;title\u{7}text"), "text");
        assert_eq!(captured("a\u{1b}[2Kb\rc\u{8}\td\u{9b}"), "abc\td");
        assert_eq!(captured("plain\ttext\nnext"), "plain\ttext\nnext");
    }
}
