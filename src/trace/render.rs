//! The trace for people: a numbered hop table per leg, the write-up's steps under the hops
//! they happen at, the rule behind every translation, and where a blocked packet stopped.

use super::report::{
    Hop, LegReport, ListenerUse, Report, RuleRef, Step, Translation, ep, outcome_text,
};
use super::send::Outcome;
use std::fmt::Write;

fn rule_line(r: &RuleRef) -> String {
    let counted = match r.packets {
        Some(1) => " (counter +1 packet)".to_string(),
        Some(n) => format!(" (counter +{n} packets)"),
        None => String::new(),
    };
    let text = if r.rule.is_empty() {
        format!("comment \"{}\"", r.comment)
    } else {
        r.rule.clone()
    };
    format!("[{} {}] {text}{counted}", r.node, r.chain)
}

pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let port = r.port.map(|p| format!("/{p}")).unwrap_or_default();
    let _ = writeln!(
        s,
        "vpclab trace {} → {}: {}{port}, lab {}",
        r.from.node,
        r.to.spec,
        r.proto.as_str(),
        r.lab
    );
    let _ = writeln!(s, "  from  {} {}", r.from.node, r.from.ip);
    let _ = writeln!(
        s,
        "  to    {}{}: {}",
        r.to.ip,
        r.to.node
            .as_ref()
            .map(|n| format!(" on {n}"))
            .unwrap_or_default(),
        r.to.how
    );
    match (r.listener, &r.to.node) {
        (ListenerUse::Temporary, Some(n)) => {
            let _ = writeln!(
                s,
                "  nothing listened on {}{port} at {n}: vpclab listened there for the length of the trace",
                r.proto.as_str()
            );
        }
        (ListenerUse::Existing, Some(n)) => {
            let _ = writeln!(
                s,
                "  a service already listens on {}{port} at {n}",
                r.proto.as_str()
            );
        }
        _ => {}
    }
    let mut steps = r.steps.iter().peekable();
    let width = [r.request.as_ref(), r.reply.as_ref()]
        .into_iter()
        .flatten()
        .flat_map(|l| l.hops.iter())
        .map(|h| h.node.len() + h.iface.len() + 1)
        .max()
        .unwrap_or(10)
        .max(5);
    let addr_w = [r.request.as_ref(), r.reply.as_ref()]
        .into_iter()
        .flatten()
        .flat_map(|l| l.hops.iter())
        .flat_map(|h| [ep(h.src, h.sport).len(), ep(h.dst, h.dport).len()])
        .max()
        .unwrap_or(11)
        .max(11);
    for (title, leg) in [("Request", r.request.as_ref()), ("Reply", r.reply.as_ref())] {
        let Some(leg) = leg else { continue };
        let _ = writeln!(s, "\n{title} ({})", leg.packet);
        let _ = writeln!(
            s,
            "  {:>3}  {:<width$}  {:<3}  {:<addr_w$}  {:<addr_w$}  {:>8}",
            "#", "where", "dir", "source", "destination", "t (µs)"
        );
        leg_rows(&mut s, leg, width, addr_w, &mut steps);
    }
    if r.request.is_none() {
        let _ = writeln!(s, "\nThe request was not seen on any interface.");
    }
    let _ = writeln!(s);
    match &r.stopped {
        None => {
            let out = r.request.as_ref().map_or(0, |l| l.translations.len());
            let back = r.reply.as_ref().map_or(0, |l| l.translations.len());
            let answer = r.reply.as_ref().map(|l| l.packet.as_str()).unwrap_or("-");
            let refused = if r.outcome == Outcome::Refused {
                " (the port is closed: the reply is a refusal)"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "Result: reachable. {} answered ({answer}){refused} and the reply came back to {}; address translations: {out} on the way out, {back} on the way back. Trace took {:.0} ms.",
                r.to.node.as_deref().unwrap_or("the destination"),
                r.from.node,
                r.elapsed_ms
            );
        }
        Some(st) => {
            let seen = match st.last_seen {
                Some(n) => format!("last seen at hop {n}"),
                None => "never seen leaving".into(),
            };
            let _ = writeln!(
                s,
                "Result: NOT reachable ({}). The {} was {seen}, in {}.",
                outcome_text(&r.outcome),
                st.leg,
                st.node
            );
            let _ = writeln!(s, "  stopped by  {}", st.reason);
            if let Some(rule) = &st.rule {
                let _ = writeln!(s, "  rule        {}", rule_line(rule));
            }
            if let Some(code) = st.code {
                let _ = writeln!(s, "  code        {code}");
            }
        }
    }
    if !r.pcap.is_empty() {
        let dir = r.pcap[0]
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "pcap: {} files in {dir} (one per capture point)",
            r.pcap.len()
        );
    }
    s
}

fn leg_rows(
    s: &mut String,
    leg: &LegReport,
    width: usize,
    addr_w: usize,
    steps: &mut std::iter::Peekable<std::slice::Iter<'_, Step>>,
) {
    for h in &leg.hops {
        let t = leg.translations.iter().find(|t| t.hop == h.n);
        let mark = match t {
            Some(t) => format!("  ← {} translated", t.changed.join(" and ")),
            None => String::new(),
        };
        let again = if h.repeats > 0 {
            format!(" (+{} again)", h.repeats)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "  {:>3}  {:<width$}  {:<3}  {:<addr_w$}  {:<addr_w$}  {:>8.0}{again}{mark}",
            h.n,
            format!("{}/{}", h.node, h.iface),
            h.dir.as_str(),
            ep(h.src, h.sport),
            ep(h.dst, h.dport),
            h.t_us,
        );
        hop_notes(s, h, t, steps);
    }
}

fn hop_notes(
    s: &mut String,
    h: &Hop,
    t: Option<&Translation>,
    steps: &mut std::iter::Peekable<std::slice::Iter<'_, Step>>,
) {
    let pad = "       ";
    while let Some(st) = steps.next_if(|st| st.hop == h.n) {
        let _ = writeln!(s, "{pad}({}) {}", st.n, st.text);
    }
    if let Some(t) = t {
        for rule in &t.rules {
            let label = if t.by == "conntrack" {
                "conntrack reverses the mapping of"
            } else {
                "rule"
            };
            let _ = writeln!(s, "{pad}    {label} {}", rule_line(rule));
        }
        if let Some(m) = &t.mapping {
            let _ = writeln!(
                s,
                "{pad}    mapping (conntrack of {}): {}",
                t.node,
                mapping_text(m)
            );
        }
    }
    for a in &h.allowed_by {
        let _ = writeln!(s, "{pad}    allowed by \"{a}\"");
    }
}

/// "tcp 10.0.1.101:40001 → 203.0.113.60:80 is sent as 10.0.0.4:40001, ESTABLISHED, expires in 349 s"
fn mapping_text(m: &crate::kernel::conntrack::CtEntry) -> String {
    let (orig_src, sent_as, dst) = if m.proto == crate::trace::packet::ICMP {
        let id = |ip, id: Option<u16>| match id {
            Some(i) => format!("{ip} (echo id {i})"),
            None => format!("{ip}"),
        };
        (
            id(m.orig.src, m.orig.sport),
            id(m.reply.dst, m.reply.sport),
            m.orig.dst.to_string(),
        )
    } else {
        let ep = |ip, p: Option<u16>| p.map_or(format!("{ip}"), |p| format!("{ip}:{p}"));
        (
            ep(m.orig.src, m.orig.sport),
            ep(m.reply.dst, m.reply.dport),
            ep(m.orig.dst, m.orig.dport),
        )
    };
    let mut out = format!("{} {orig_src} → {dst} is sent as {sent_as}", m.proto_name());
    if let Some(state) = m.state_name() {
        out.push_str(&format!(", {state}"));
    }
    if let Some(t) = m.timeout {
        out.push_str(&format!(", expires in {t} s"));
    }
    out
}
