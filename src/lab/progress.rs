//! Progress lines for long steps, on stderr so stdout stays clean for `--json`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

pub struct Progress {
    enabled: bool,
    tty: bool,
}

impl Progress {
    pub fn new(enabled: bool) -> Self {
        Progress {
            enabled,
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn start(&mut self, step: &str) {
        if self.enabled && self.tty {
            eprint!("  {step:<12} ...");
            let _ = std::io::stderr().flush();
        }
    }

    pub fn done(&mut self, step: &str, what: &str, took: Duration) {
        if !self.enabled {
            return;
        }
        if self.tty {
            eprint!("\r");
        }
        eprintln!(
            "  {step:<12} {what} ({:.0} ms)",
            took.as_secs_f64() * 1000.0
        );
    }

    pub fn fail(&mut self) {
        if self.enabled && self.tty {
            eprintln!(" failed");
        }
    }

    pub fn note(&mut self, line: &str) {
        if self.enabled {
            eprintln!("{line}");
        }
    }
}

/// 65536 → "65,536": counts in progress lines and summaries.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut s = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            s.push(',');
        }
        s.push(c);
    }
    s
}
