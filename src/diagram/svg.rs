//! Writes a `Layout` as SVG by hand: plain elements and presentation attributes, which
//! every renderer (browsers, rsvg-convert, Inkscape) reads the same way.

use super::layout::{Kind, Layout, Shape, Style, Text, Tone, Wire, WireKind};
use std::collections::BTreeSet;
use std::fmt::Write;

/// Escapes text for XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

const INK: &str = "#16191f";
const DIM: &str = "#545b64";
const GOOD: &str = "#1d8102";

fn kind_color(k: Kind) -> &'static str {
    match k {
        Kind::Ec2 => "#c45500",
        Kind::Nat | Kind::Igw => "#7d3ccf",
        Kind::Rds => "#3b48cc",
        Kind::Host => "#545b64",
        Kind::More => "#879596",
    }
}

fn wire_color(k: WireKind) -> &'static str {
    match k {
        WireKind::Internet => "#232f3e",
        WireKind::NatRoute | WireKind::NatEgress => "#7d3ccf",
        WireKind::SgAllow => GOOD,
        WireKind::Replication => "#3b48cc",
    }
}

fn wire_name(k: WireKind) -> &'static str {
    match k {
        WireKind::Internet => "internet",
        WireKind::NatRoute => "nat-route",
        WireKind::NatEgress => "nat-egress",
        WireKind::SgAllow => "sg-allow",
        WireKind::Replication => "replication",
    }
}

fn tone_color(t: Tone) -> &'static str {
    match t {
        Tone::Main => INK,
        Tone::Dim => DIM,
        Tone::Good => GOOD,
        Tone::Badge => "#ffffff",
        Tone::Wire(k) => wire_color(k),
    }
}

/// (fill, stroke, stroke width, dash, corner radius)
fn paint(
    s: Style,
) -> (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    i32,
) {
    match s {
        Style::Cloud => ("#ffffff", "#232f3e", "1.5", None, 0),
        Style::Region => ("none", "#00a4a6", "1.2", Some("6 4"), 0),
        Style::Vpc => ("#fcfaff", "#8c4fff", "1.5", None, 0),
        Style::Az => ("none", "#6b7a90", "1.2", Some("5 4"), 6),
        Style::PublicSubnet => ("#eef6e7", "#7aa116", "1.2", None, 4),
        Style::PrivateSubnet => ("#e8f1fa", "#147eba", "1.2", None, 4),
        Style::Internet => ("#f4f5f6", "#545b64", "1.2", None, 10),
        Style::Panel => ("#ffffff", "#c6c9cc", "1", None, 4),
        Style::Card(Kind::More) => ("#ffffff", kind_color(Kind::More), "1", Some("4 3"), 4),
        Style::Card(k) => ("#ffffff", kind_color(k), "1.2", None, 4),
        Style::Badge(k) => (kind_color(k), "none", "0", None, 3),
    }
}

pub fn render(l: &Layout) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">"#,
        w = l.width,
        h = l.height
    );
    let _ = writeln!(s, "<title>{}</title>", escape(&l.title));
    let kinds: BTreeSet<WireKind> = l.wires.iter().map(|w| w.kind).collect();
    if !kinds.is_empty() {
        s.push_str("<defs>\n");
        for k in &kinds {
            let (c, n) = (wire_color(*k), wire_name(*k));
            let _ = writeln!(
                s,
                r#"<marker id="end-{n}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>"#
            );
            let _ = writeln!(
                s,
                r#"<marker id="start-{n}" viewBox="0 0 10 10" refX="0" refY="5" markerWidth="8" markerHeight="8" markerUnits="userSpaceOnUse" orient="auto"><path d="M10,0 L0,5 L10,10 z" fill="{c}"/></marker>"#
            );
        }
        s.push_str("</defs>\n");
    }
    let _ = writeln!(
        s,
        r##"<rect x="0" y="0" width="{}" height="{}" fill="#ffffff"/>"##,
        l.width, l.height
    );
    s.push_str("<g id=\"frames\">\n");
    for shape in &l.containers {
        rect(&mut s, shape);
    }
    s.push_str("</g>\n<g id=\"wires\" fill=\"none\">\n");
    // A white halo under each group makes crossings of different groups visible gaps,
    // while wires of one group (a bus to one target) join cleanly.
    let mut groups: Vec<&str> = Vec::new();
    for w in &l.wires {
        if !groups.contains(&w.group.as_str()) {
            groups.push(&w.group);
        }
    }
    for g in groups {
        let members: Vec<&Wire> = l.wires.iter().filter(|w| w.group == g).collect();
        for w in &members {
            let _ = writeln!(
                s,
                r##"<polyline points="{}" stroke="#ffffff" stroke-width="5"/>"##,
                points(w)
            );
        }
        for w in &members {
            wire(&mut s, w);
        }
    }
    s.push_str("</g>\n<g id=\"nodes\">\n");
    for shape in &l.nodes {
        rect(&mut s, shape);
    }
    s.push_str("</g>\n<g id=\"text\">\n");
    // `xml:space="preserve"` on each text keeps the spaces that separate its spans.
    for t in &l.texts {
        text(&mut s, t);
    }
    s.push_str("</g>\n</svg>\n");
    s
}

fn rect(s: &mut String, shape: &Shape) {
    let (fill, stroke, width, dash, rx) = paint(shape.style);
    let r = shape.rect;
    let _ = write!(
        s,
        r#"<rect x="{}" y="{}" width="{}" height="{}" rx="{rx}" fill="{fill}""#,
        r.x, r.y, r.w, r.h
    );
    if stroke != "none" {
        let _ = write!(s, r#" stroke="{stroke}" stroke-width="{width}""#);
    }
    if let Some(d) = dash {
        let _ = write!(s, r#" stroke-dasharray="{d}""#);
    }
    s.push_str("/>\n");
}

fn points(w: &Wire) -> String {
    let p: Vec<String> = w.points.iter().map(|(x, y)| format!("{x},{y}")).collect();
    p.join(" ")
}

fn wire(s: &mut String, w: &Wire) {
    let (c, n) = (wire_color(w.kind), wire_name(w.kind));
    let width = if w.kind == WireKind::Internet {
        "2"
    } else {
        "1.5"
    };
    let _ = write!(
        s,
        r#"<polyline class="{n}" points="{}" stroke="{c}" stroke-width="{width}""#,
        points(w)
    );
    match w.kind {
        WireKind::NatRoute => s.push_str(r#" stroke-dasharray="6 4""#),
        WireKind::Replication => s.push_str(r#" stroke-dasharray="3 3""#),
        _ => {}
    }
    if w.start_arrow {
        let _ = write!(s, r#" marker-start="url(#start-{n})""#);
    }
    if w.end_arrow {
        let _ = write!(s, r#" marker-end="url(#end-{n})""#);
    }
    s.push_str("/>\n");
}

fn text(s: &mut String, t: &Text) {
    let anchor = if t.middle {
        r#" text-anchor="middle""#
    } else {
        ""
    };
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" font-size="{}"{anchor} xml:space="preserve">"#,
        t.x, t.baseline, t.line.size
    );
    for span in &t.line.spans {
        let weight = if span.bold {
            r#" font-weight="bold""#
        } else {
            ""
        };
        let _ = write!(
            s,
            r#"<tspan fill="{}"{weight}>{}</tspan>"#,
            tone_color(span.tone),
            escape(&span.text)
        );
    }
    s.push_str("</text>\n");
}
