//! Helpers for the validator's tests: the built-in lab with one edit, and where its errors
//! point.

use crate::topology::{BUILTIN_YAML, Source, check};

/// The built-in lab with one edit (the text must occur).
pub fn edit(old: &str, new: &str) -> String {
    assert!(BUILTIN_YAML.contains(old), "{old}");
    BUILTIN_YAML.replacen(old, new, 1)
}

pub fn errors(text: &str) -> Vec<(u64, u64, String)> {
    let (lab, d) = check(text, &Source::Builtin, None);
    let e: Vec<_> = d
        .errors()
        .map(|e| (e.line, e.column, e.message.clone()))
        .collect();
    assert_eq!(lab.is_none(), !e.is_empty());
    e
}

/// 1-based line and column of `needle` in the first line that contains `line_has`.
pub fn pos(text: &str, line_has: &str, needle: &str) -> (u64, u64) {
    let (i, l) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(line_has))
        .unwrap_or_else(|| panic!("no line with {line_has}"));
    (i as u64 + 1, l.find(needle).unwrap() as u64 + 1)
}

pub fn one_error(text: &str) -> (u64, u64, String) {
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:#?}");
    e.into_iter().next().unwrap()
}
