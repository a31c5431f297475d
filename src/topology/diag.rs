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

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Warning)
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
