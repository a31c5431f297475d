//! Problems found in a lab file, each pinned to the line and column that caused it.

use serde::Serialize;
use serde_saphyr::Location;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub line: u64,
    pub column: u64,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// `FILE:LINE:COLUMN: error: message`, then the hint on its own indented line.
    pub fn render(&self, file: &str) -> String {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let mut out = format!(
            "{file}:{}:{}: {kind}: {}",
            self.line, self.column, self.message
        );
        if let Some(hint) = &self.hint {
            out.push_str("\n  hint: ");
            out.push_str(hint);
        }
        out
    }
}

/// Collects every problem of one file so they are all reported together.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn error(&mut self, at: Location, message: impl Into<String>, hint: impl Into<String>) {
        self.push(Severity::Error, at, message.into(), hint.into());
    }

    pub fn warning(&mut self, at: Location, message: impl Into<String>, hint: impl Into<String>) {
        self.push(Severity::Warning, at, message.into(), hint.into());
    }

    fn push(&mut self, severity: Severity, at: Location, message: String, hint: String) {
        self.items.push(Diagnostic {
            severity,
            line: at.line(),
            column: at.column(),
            message,
            hint: (!hint.is_empty()).then_some(hint),
        });
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Error)
    }

    #[allow(dead_code, reason = "API for commands that print warnings apart")]
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    /// Errors and warnings in file order, so the output reads top to bottom.
    pub fn sorted(&self) -> Vec<&Diagnostic> {
        let mut all: Vec<&Diagnostic> = self.items.iter().collect();
        all.sort_by_key(|d| (d.line, d.column));
        all
    }

    pub fn render(&self, file: &str) -> String {
        self.sorted()
            .iter()
            .map(|d| d.render(file))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A diagnostic for a mistake that stops parsing (YAML syntax, an unknown or missing key, a
/// value of the wrong shape): serde-saphyr's message in the lab author's words, pointing at
/// the key or value at fault. `text` is the file, used to say what was found there.
pub fn parse_error(text: &str, e: &serde_saphyr::Error) -> Diagnostic {
    use serde_saphyr::{DefaultMessageFormatter, Error as E, MessageFormatter};
    let mut inner = e;
    while let E::WithSnippet { error, .. } | E::AliasError { error, .. } = inner {
        inner = error;
    }
    let at = e.location().unwrap_or(Location::UNKNOWN);
    let (mut line, mut column) = (at.line(), at.column());
    // Control characters are escaped so a message stays on one line; quotes are kept.
    let default = || {
        DefaultMessageFormatter
            .format_message(inner)
            .chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
    };
    let (message, hint) = match inner {
        E::DuplicateMappingKey { key: Some(k), .. } => (
            match earlier_key(text, line, column, k) {
                Some(first) => {
                    format!("key `{k}` appears twice in this map (first at line {first})")
                }
                None => format!("key `{k}` appears twice in this map"),
            },
            "each name may appear once in a map: rename or remove one of them".to_string(),
        ),
        E::Unexpected { expected, .. } => {
            let want = match *expected {
                "mapping start" => "a map (`key: value` pairs)",
                "sequence start" => "a list",
                "string scalar" => "a single value",
                other => other,
            };
            (
                format!(
                    "expected {want} here, found {}",
                    found_at(text, line, column)
                ),
                SHAPE_HINT.to_string(),
            )
        }
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => {
            // Reported at the key of a `key: value` pair: point at the value instead.
            column += value_offset(line_text(text, line), column);
            (
                format!(
                    "expected {expected} here, found {}",
                    serde_found(unexpected)
                ),
                SHAPE_HINT.to_string(),
            )
        }
        E::InvalidScalar { ty: "boolean", .. } => (
            format!(
                "expected `true` or `false` here, found {}",
                found_at(text, line, column)
            ),
            "write `true` or `false`".to_string(),
        ),
        E::SerdeMissingField { field, .. } => {
            let message = match enclosing_map(text, line, column) {
                Some((l, c, Some(key))) => {
                    (line, column) = (l, c);
                    format!("missing field `{field}` in `{key}`")
                }
                Some((l, c, None)) => {
                    (line, column) = (l, c);
                    format!("missing field `{field}`")
                }
                None => format!("missing field `{field}`"),
            };
            (
                message,
                "add the missing key; `vpclab validate` on labs/handson.yaml shows a complete example"
                    .to_string(),
            )
        }
        E::SerdeUnknownField { .. } => (
            default(),
            "remove the key or fix its spelling; the keys allowed here are listed above"
                .to_string(),
        ),
        _ => (
            default(),
            "check the YAML syntax around this position (indentation, brackets, quotes)"
                .to_string(),
        ),
    };
    Diagnostic {
        severity: Severity::Error,
        line,
        column,
        message,
        hint: Some(hint),
    }
}

const SHAPE_HINT: &str =
    "check the value's shape: a map uses `key: value`, a list uses `- item` or `[a, b]`";

/// The text of 1-based `line`, or "" past the end.
fn line_text(text: &str, line: u64) -> &str {
    line.checked_sub(1)
        .and_then(|i| text.lines().nth(i as usize))
        .unwrap_or("")
}

/// What the file has at a position, in words: "a list", "a map" or "`value`".
fn found_at(text: &str, line: u64, column: u64) -> String {
    let rest: String = line_text(text, line)
        .chars()
        .skip(column.saturating_sub(1) as usize)
        .collect();
    let rest = rest.trim_end();
    if rest.starts_with('[') || rest == "-" || rest.starts_with("- ") {
        return "a list".into();
    }
    if rest.starts_with('{') {
        return "a map".into();
    }
    // A block map starts with `key:` (then a value, or nothing on this line).
    let token: String = rest
        .chars()
        .take_while(|c| !matches!(c, ',' | '}' | ']' | '#'))
        .collect();
    let token = token.trim();
    if token.ends_with(':') || token.contains(": ") {
        return "a map".into();
    }
    if token.is_empty() {
        "nothing".into()
    } else {
        format!("`{token}`")
    }
}

/// serde's "what was found" (`sequence`, `map`, `string "x"`, `integer `5``) in words.
fn serde_found(unexpected: &str) -> String {
    match unexpected {
        "sequence" => "a list".into(),
        "map" => "a map".into(),
        "unit value" | "null" | "none" => "nothing".into(),
        other => match (other.find(['`', '"']), other.rfind(['`', '"'])) {
            (Some(a), Some(b)) if b > a => format!("`{}`", &other[a + 1..b]),
            _ => other.to_string(),
        },
    }
}

/// How far the value of `key: value` starting at `column` is from the key, or 0 when the
/// text there is not a key with a value on the same line.
fn value_offset(line: &str, column: u64) -> u64 {
    let rest: String = line
        .chars()
        .skip(column.saturating_sub(1) as usize)
        .collect();
    let key_len = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        .count();
    if key_len == 0 || !rest[key_len..].starts_with(": ") {
        return 0;
    }
    let after = &rest[key_len + 1..];
    let value = after.trim_start();
    if value.is_empty() || value.starts_with('#') {
        return 0;
    }
    (key_len + 1 + after.len() - value.len()) as u64
}

/// The line of an earlier `key:` at the same indentation in the same block map.
fn earlier_key(text: &str, line: u64, column: u64, key: &str) -> Option<u64> {
    let indent = column.checked_sub(1)? as usize;
    for l in (1..line).rev() {
        let t = line_text(text, l);
        let body = t.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let ind = t.len() - body.len();
        if ind < indent {
            return None; // left the map
        }
        if ind == indent {
            let name = body.split(':').next().unwrap_or("").trim();
            if name.trim_matches(|c| c == '"' || c == '\'') == key {
                return Some(l);
            }
        }
    }
    None
}

/// Where the map around a position starts, for "missing field" errors that serde reports
/// at the map's last key: the map's own key (`app` of `app: { ... }` or of a block `app:`)
/// with its line and column, or the map's first position when it is a list item.
fn enclosing_map(text: &str, line: u64, column: u64) -> Option<(u64, u64, Option<String>)> {
    let chars: Vec<char> = line_text(text, line).chars().collect();
    let col = (column.saturating_sub(1) as usize).min(chars.len());
    // A flow map on this line: the nearest unmatched `{` before the position.
    let mut depth = 0;
    for i in (0..col).rev() {
        match chars[i] {
            '}' => depth += 1,
            '{' if depth > 0 => depth -= 1,
            '{' => {
                let before: String = chars[..i].iter().collect();
                return Some(key_before(line, &before).unwrap_or((line, i as u64 + 1, None)));
            }
            _ => {}
        }
    }
    // A block map: the nearest line above that is indented less than the position.
    let indent = chars.iter().take_while(|c| **c == ' ').count();
    let first = chars
        .get(indent..)
        .is_some_and(|r| r.starts_with(&['-', ' ']));
    let indent = if first { indent + 2 } else { indent };
    if first {
        return Some((line, indent as u64 + 1, None));
    }
    for l in (1..line).rev() {
        let t = line_text(text, l);
        let body = t.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let ind = t.len() - body.len();
        if ind < indent {
            if body.starts_with("- ") {
                // The map is this list item, which starts with one of its own keys.
                return Some((l, ind as u64 + 3, None));
            }
            return key_before(l, t);
        }
    }
    None
}

/// `  app: ` → ("app", its line and column), for the text before a map's start.
fn key_before(line: u64, before: &str) -> Option<(u64, u64, Option<String>)> {
    let t = before.trim_end().strip_suffix(':')?;
    let body = t.trim_start();
    let body = body.strip_prefix("- ").unwrap_or(body);
    let start = t.len() - body.len();
    let key = body.trim_matches(|c| c == '"' || c == '\'');
    (!key.is_empty() && !key.contains([',', '{', '[', ':']))
        .then(|| (line, start as u64 + 1, Some(key.to_string())))
}
