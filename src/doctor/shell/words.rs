//! The literal values a shell line's words hold, where the analysis can
//! know them without running anything: a word without its quotes, a PATH
//! value, a directory joined to the current one.

/// The word without its quotes, or `None` when the shell expands something
/// in it (`$…`, `` `…` ``, a glob or `~` are left to the shell).
pub(super) fn literal(word: &str) -> Option<String> {
    let mut in_single = false;
    let mut escaped = false;
    for c in word.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if !in_single => escaped = true,
            '\'' => in_single = !in_single,
            '$' | '`' if !in_single => return None,
            _ => {}
        }
    }
    match shell_words::split(word) {
        Ok(mut parts) if parts.len() == 1 => parts.pop(),
        Ok(parts) if parts.is_empty() => Some(String::new()),
        _ => None,
    }
}

/// A PATH value with `$PATH`/`${PATH}` kept as `$PATH` (the inherited
/// value) or replaced by what the line already set; `None` when it expands
/// anything else.
pub(super) fn expand_path(raw: &str, current: Option<&str>) -> Option<String> {
    let inherited = current.unwrap_or("$PATH");
    let unquoted = raw.replace('"', "");
    let replaced = unquoted
        .replace("${PATH}", "\u{0}")
        .replace("$PATH", "\u{0}");
    if replaced.contains('$') || replaced.contains('`') || replaced.contains('\'') {
        return None;
    }
    Some(replaced.replace('\u{0}', inherited))
}

/// `dir` from `base` (a literal path; `None` is the launcher's directory).
pub(super) fn join(base: Option<&str>, dir: &str) -> String {
    match base {
        Some(b) if !dir.starts_with('/') && !dir.starts_with('~') => {
            format!("{}/{dir}", b.trim_end_matches('/'))
        }
        _ => dir.to_string(),
    }
}
