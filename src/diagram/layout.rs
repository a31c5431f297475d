//! Geometry of the SVG: every box, text line and wire in whole pixels.
//!
//! The algorithm:
//! 1. **Grid.** One column per availability zone (name order). Rows hold the public
//!    subnets first, then the private ones, so the k-th public subnet of every AZ lines up.
//! 2. **Cards.** Each subnet stacks its cards: NAT gateways, instances (up to four; past
//!    four, three and a "+N more" card), database servers. Every text line is measured
//!    with the font table in `metrics`, so a card is as wide as its longest line; all
//!    columns are as wide as the widest subnet header or card, a row as its tallest subnet.
//! 3. **Wires run in lanes**, never across a box: each AZ box keeps a gutter left and
//!    right of its subnets with one vertical lane per wire group (left: security-group and
//!    replication wires to databases; right: NAT routes and the NAT gateway's way to the
//!    internet gateway), and the gap under each row keeps one horizontal lane per group
//!    that changes column there, plus a row for wire labels. A wire leaves its card
//!    sideways into the gutter, runs along lanes and enters its target sideways, so it
//!    only ever crosses the padding of the two subnets it connects. Wires of one group
//!    (same target) share lanes and read as a bus.
//! 4. **Frames.** AZ boxes sit side by side in the VPC, above a panel summarizing the
//!    route tables and RDS endpoints; the VPC is widened when needed so the internet
//!    gateway, centred on its top edge, clears the cloud, region and VPC labels; the
//!    internet box is centred above the gateway; a legend explains the wire styles.

use super::metrics::text_width;
use super::{
    Facts, MAX_HOSTS, database_servers_in, instances_in, nat_gateways_in, route_text, shown,
    table_users, zones,
};
use crate::topology::{Lab, PublicIp};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

impl Rect {
    pub fn right(&self) -> i32 {
        self.x + self.w
    }
    pub fn bottom(&self) -> i32 {
        self.y + self.h
    }
    /// True when the two rectangles share interior area (touching edges don't count).
    #[cfg(test)]
    pub fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.right() && o.x < self.right() && self.y < o.bottom() && o.y < self.bottom()
    }
}

/// What a box is, which decides how `svg` paints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Cloud,
    Region,
    Vpc,
    Az,
    PublicSubnet,
    PrivateSubnet,
    Internet,
    Panel,
    Card(Kind),
    Badge(Kind),
}

/// The kind of a card, shown by its badge and border colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ec2,
    Nat,
    Rds,
    Igw,
    Host,
    More,
}

impl Kind {
    pub fn badge(self) -> &'static str {
        match self {
            Kind::Ec2 => "EC2",
            Kind::Nat => "NAT",
            Kind::Rds => "RDS",
            Kind::Igw => "IGW",
            Kind::Host => "HOST",
            Kind::More => "",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Shape {
    pub rect: Rect,
    pub style: Style,
}

/// Text colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Main,
    Dim,
    Good,
    Badge,
    Wire(WireKind),
}

#[derive(Debug, Clone)]
pub struct Span {
    pub text: String,
    pub bold: bool,
    pub tone: Tone,
}

/// One line of text: spans of one size.
#[derive(Debug, Clone)]
pub struct Line {
    pub size: i32,
    pub spans: Vec<Span>,
}

impl Line {
    fn new(size: i32) -> Line {
        Line {
            size,
            spans: Vec::new(),
        }
    }
    fn span(mut self, text: impl Into<String>, bold: bool, tone: Tone) -> Line {
        self.spans.push(Span {
            text: text.into(),
            bold,
            tone,
        });
        self
    }
    fn bold(self, text: impl Into<String>) -> Line {
        self.span(text, true, Tone::Main)
    }
    fn main(self, text: impl Into<String>) -> Line {
        self.span(text, false, Tone::Main)
    }
    fn dim(self, text: impl Into<String>) -> Line {
        self.span(text, false, Tone::Dim)
    }
    pub fn width(&self) -> i32 {
        self.spans
            .iter()
            .map(|s| text_width(&s.text, self.size, s.bold))
            .sum()
    }
    /// Height of the line in a stack: the font size plus leading.
    fn height(&self) -> i32 {
        line_height(self.size)
    }
    #[cfg(test)]
    pub fn text(&self) -> String {
        self.spans.iter().map(|s| s.text.as_str()).collect()
    }
}

fn line_height(size: i32) -> i32 {
    size + size / 3 + 2
}

/// A placed line of text; `x` is its left end, or its centre when `middle`.
#[derive(Debug, Clone)]
pub struct Text {
    pub x: i32,
    pub baseline: i32,
    pub middle: bool,
    pub line: Line,
}

impl Text {
    /// The area the glyphs may cover: a full em above the baseline, a quarter below.
    #[cfg(test)]
    pub fn bbox(&self) -> Rect {
        let w = self.line.width();
        let x = if self.middle { self.x - w / 2 } else { self.x };
        let s = self.line.size;
        Rect {
            x,
            y: self.baseline - s,
            w,
            h: s + s / 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WireKind {
    Internet,
    NatRoute,
    NatEgress,
    SgAllow,
    Replication,
}

impl WireKind {
    fn legend(self) -> &'static str {
        match self {
            WireKind::Internet => "internet ↔ internet gateway",
            WireKind::NatRoute => "private subnet's route 0.0.0.0/0 → NAT gateway",
            WireKind::NatEgress => "NAT gateway → internet gateway (leaves as its Elastic IP)",
            WireKind::SgAllow => {
                "database port allowed by a security group rule naming the source's group"
            }
            WireKind::Replication => "Multi-AZ replication, primary → standby",
        }
    }
}

/// An orthogonal polyline; wires with the same `group` share lanes (a bus to one target).
#[derive(Debug, Clone)]
pub struct Wire {
    pub kind: WireKind,
    pub group: String,
    pub points: Vec<(i32, i32)>,
    pub start_arrow: bool,
    pub end_arrow: bool,
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub width: i32,
    pub height: i32,
    pub title: String,
    /// Frames, painted first.
    pub containers: Vec<Shape>,
    /// Cards and badges, painted over the wires.
    pub nodes: Vec<Shape>,
    pub wires: Vec<Wire>,
    pub texts: Vec<Text>,
}

const MARGIN: i32 = 24;
/// Padding of the cloud, region and VPC frames.
const PAD: i32 = 14;
/// Distance between parallel lanes.
const LANE: i32 = 10;
const AZ_GAP: i32 = 18;
const AZ_HEAD: i32 = 34;
const SUB_PAD: i32 = 10;
const SUB_HEAD: i32 = 49;
const CARD_GAP: i32 = 8;
const CARD_PAD: i32 = 8;
const BADGE_W: i32 = 34;
const BADGE_H: i32 = 16;
const GAP_PAD: i32 = 6;
const LABEL_SIZE: i32 = 10;
const MAX_DB_NODES: usize = 3;
const MAX_SGS: usize = 2;
const MAX_ROUTES: usize = 5;

/// Something a wire can start or end at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Anchor {
    Subnet(usize),
    Nat(usize),
    Instance(usize),
    /// Database and whether this is its standby.
    Db(usize, bool),
}

struct Card {
    kind: Kind,
    anchor: Option<Anchor>,
    lines: Vec<Line>,
}

impl Card {
    fn text_dx(&self) -> i32 {
        if self.kind == Kind::More {
            CARD_PAD
        } else {
            CARD_PAD + BADGE_W + 8
        }
    }
    fn width(&self) -> i32 {
        self.text_dx() + self.lines.iter().map(Line::width).max().unwrap_or(0) + CARD_PAD
    }
    fn height(&self) -> i32 {
        let text: i32 = self.lines.iter().map(Line::height).sum();
        let badge = if self.kind == Kind::More { 0 } else { BADGE_H };
        2 * (CARD_PAD - 1) + text.max(badge)
    }
    fn place(&self, r: Rect, out: &mut Layout) {
        out.nodes.push(Shape {
            rect: r,
            style: Style::Card(self.kind),
        });
        if self.kind != Kind::More {
            let badge = Rect {
                x: r.x + CARD_PAD,
                y: r.y + CARD_PAD - 1,
                w: BADGE_W,
                h: BADGE_H,
            };
            out.nodes.push(Shape {
                rect: badge,
                style: Style::Badge(self.kind),
            });
            out.texts.push(Text {
                x: badge.x + BADGE_W / 2,
                baseline: badge.y + 12,
                middle: true,
                line: Line::new(9).span(self.kind.badge(), true, Tone::Badge),
            });
        }
        let mut top = r.y + CARD_PAD - 1;
        for line in &self.lines {
            out.texts.push(Text {
                x: r.x + self.text_dx(),
                baseline: top + line.size,
                middle: false,
                line: line.clone(),
            });
            top += line.height();
        }
    }
}

fn more_card(n: usize, what: &str) -> Card {
    Card {
        kind: Kind::More,
        anchor: None,
        lines: vec![Line::new(11).dim(format!("+{n} more {what}"))],
    }
}

fn sg_lines(lab: &Lab, groups: &[usize]) -> Vec<Line> {
    let mut lines: Vec<Line> = groups
        .iter()
        .take(if groups.len() > MAX_SGS {
            MAX_SGS - 1
        } else {
            MAX_SGS
        })
        .map(|&g| Line::new(11).dim("SG ").main(&lab.security_groups[g].name))
        .collect();
    if groups.len() > MAX_SGS {
        lines.push(Line::new(11).dim(format!(
            "+{} more security groups",
            groups.len() - lines.len()
        )));
    }
    lines
}

/// The cards of one subnet, in drawing order.
fn subnet_cards(lab: &Lab, s: usize) -> Vec<Card> {
    let mut cards = Vec::new();
    for (k, n) in nat_gateways_in(lab, s) {
        let eip = &lab.elastic_ips[n.elastic_ip];
        cards.push(Card {
            kind: Kind::Nat,
            anchor: Some(Anchor::Nat(k)),
            lines: vec![
                Line::new(12).bold(&n.name),
                Line::new(11)
                    .dim("NAT gateway · ")
                    .main(n.private_ip.to_string()),
                Line::new(11)
                    .dim("EIP ")
                    .span(eip.address.to_string(), true, Tone::Main)
                    .dim(format!(" ({})", eip.name)),
            ],
        });
    }
    let (instances, hidden) = instances_in(lab, s);
    for &i in &instances {
        let inst = &lab.instances[i];
        let mut lines = vec![
            Line::new(12).bold(&inst.name),
            Line::new(11)
                .dim("private ")
                .main(inst.private_ip.to_string()),
        ];
        match &inst.public_ip {
            PublicIp::None => {}
            PublicIp::Auto { address } => lines.push(
                Line::new(11)
                    .dim("public ")
                    .main(address.to_string())
                    .dim(" (auto)"),
            ),
            PublicIp::Elastic { eip, address } => lines.push(
                Line::new(11)
                    .dim("public ")
                    .main(address.to_string())
                    .dim(format!(" (EIP {})", lab.elastic_ips[*eip].name)),
            ),
        }
        lines.extend(sg_lines(lab, &inst.security_groups));
        cards.push(Card {
            kind: Kind::Ec2,
            anchor: Some(Anchor::Instance(i)),
            lines,
        });
    }
    if hidden > 0 {
        cards.push(more_card(hidden, "instances"));
    }
    let nodes = database_servers_in(lab, s);
    let n = shown(nodes.len(), MAX_DB_NODES);
    for &(d, standby, node) in &nodes[..n] {
        let db = &lab.databases[d];
        let role = if standby {
            Line::new(11)
                .dim(format!("{} {} · ", db.engine, db.name))
                .span("standby", true, Tone::Dim)
        } else {
            Line::new(11)
                .dim(format!("{} {} · ", db.engine, db.name))
                .span("primary", true, Tone::Good)
        };
        let mut lines = vec![
            Line::new(12).bold(&node.name),
            role,
            Line::new(11)
                .dim("private ")
                .main(node.private_ip.to_string()),
        ];
        if let Some(p) = node.public_ip {
            lines.push(Line::new(11).dim("public ").main(p.to_string()));
        }
        lines.extend(sg_lines(lab, &db.security_groups));
        cards.push(Card {
            kind: Kind::Rds,
            anchor: Some(Anchor::Db(d, standby)),
            lines,
        });
    }
    if n < nodes.len() {
        cards.push(more_card(nodes.len() - n, "database servers"));
    }
    cards
}

struct Block {
    header: [Line; 2],
    cards: Vec<Card>,
    w: i32,
    h: i32,
}

fn subnet_block(lab: &Lab, s: usize) -> Block {
    let subnet = &lab.subnets[s];
    let mut kind = Line::new(11)
        .main(subnet.cidr.to_string())
        .dim(if subnet.public {
            " · public subnet"
        } else {
            " · private subnet"
        });
    if let Some(acl) = super::text::acl_note(lab, s) {
        kind = kind.dim(format!(" · {acl}"));
    }
    let header = [Line::new(13).bold(&subnet.name), kind];
    let cards = subnet_cards(lab, s);
    let inner = header
        .iter()
        .map(Line::width)
        .chain(cards.iter().map(Card::width))
        .max()
        .unwrap_or(0);
    let stack: i32 =
        cards.iter().map(Card::height).sum::<i32>() + CARD_GAP * (cards.len() as i32 - 1).max(0);
    let h = if cards.is_empty() {
        SUB_HEAD
    } else {
        SUB_HEAD + stack + SUB_PAD
    };
    Block {
        header,
        cards,
        w: inner + 2 * SUB_PAD,
        h,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// A wire before placement: which cards it joins and which lanes it will use.
struct Route {
    kind: WireKind,
    group: String,
    side: Side,
    src: Anchor,
    /// Where on the source's side the wire leaves, in percent of its height.
    src_at: i32,
    dst: Anchor,
    dst_at: i32,
    label: Option<String>,
    /// Gap (below row `g - 1`) whose lane the wire changes column in.
    gap: Option<usize>,
    /// Gap and label row of the wire's label.
    label_slot: Option<(usize, usize)>,
}

fn anchor_subnet(lab: &Lab, a: Anchor) -> usize {
    match a {
        Anchor::Subnet(s) => s,
        Anchor::Nat(n) => lab.nat_gateways[n].subnet,
        Anchor::Instance(i) => lab.instances[i].subnet,
        Anchor::Db(d, false) => lab.databases[d].primary.subnet,
        Anchor::Db(d, true) => lab.databases[d].standby.as_ref().map_or(0, |n| n.subnet),
    }
}

fn routes(facts: &Facts, drawn: &BTreeSet<Anchor>) -> Vec<Route> {
    let mut out = Vec::new();
    let mut push = |kind, group: String, side, src, src_at, dst, dst_at, label: Option<String>| {
        if drawn.contains(&src) && drawn.contains(&dst) {
            out.push(Route {
                kind,
                group,
                side,
                src,
                src_at,
                dst,
                dst_at,
                label,
                gap: None,
                label_slot: None,
            });
        }
    };
    for &(s, n) in &facts.nat_routes {
        let (src, dst) = (Anchor::Subnet(s), Anchor::Nat(n));
        push(
            WireKind::NatRoute,
            format!("nat{n}"),
            Side::Right,
            src,
            0,
            dst,
            70,
            None,
        );
    }
    for a in &facts.sg_allows {
        let label = format!("{} allowed by SG", a.short());
        let (src, dst) = (Anchor::Instance(a.instance), Anchor::Db(a.database, false));
        let group = format!("sg{}", a.database);
        push(
            WireKind::SgAllow,
            group,
            Side::Left,
            src,
            50,
            dst,
            35,
            Some(label),
        );
    }
    for &d in &facts.replicas {
        let (src, dst) = (Anchor::Db(d, false), Anchor::Db(d, true));
        let label = Some("replication".to_string());
        push(
            WireKind::Replication,
            format!("rep{d}"),
            Side::Left,
            src,
            70,
            dst,
            70,
            label,
        );
    }
    out
}

/// Distinct groups in first-use order.
fn lane_groups<'a>(groups: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for g in groups {
        if !out.iter().any(|o| o == g) {
            out.push(g.to_string());
        }
    }
    out
}

/// Where each subnet sits: its (column, row); public rows come first.
struct Grid {
    cell: Vec<(usize, usize)>,
    ncols: usize,
    nrows: usize,
}

impl Grid {
    fn new(lab: &Lab, zones: &[(String, Vec<usize>)]) -> Grid {
        let count = |public: bool| {
            zones
                .iter()
                .map(|(_, subs)| {
                    subs.iter()
                        .filter(|&&s| lab.subnets[s].public == public)
                        .count()
                })
                .max()
                .unwrap_or(0)
        };
        let n_pub = count(true);
        let mut cell = vec![(0, 0); lab.subnets.len()];
        for (c, (_, subs)) in zones.iter().enumerate() {
            let (mut p, mut q) = (0, n_pub);
            for &s in subs {
                let row = if lab.subnets[s].public {
                    &mut p
                } else {
                    &mut q
                };
                cell[s] = (c, *row);
                *row += 1;
            }
        }
        Grid {
            cell,
            ncols: zones.len(),
            nrows: n_pub + count(false),
        }
    }

    fn of(&self, lab: &Lab, a: Anchor) -> (usize, usize) {
        self.cell[anchor_subnet(lab, a)]
    }
}

/// The lanes wires run in: vertical ones in the gutters left and right of every column
/// (innermost first), horizontal ones in the gaps under the rows, and label rows per gap.
struct Lanes {
    left: Vec<String>,
    right: Vec<String>,
    /// Groups that change column in gap `g` (gap `g` lies under row `g - 1`).
    gaps: Vec<Vec<String>>,
    label_rows: Vec<i32>,
}

impl Lanes {
    /// Assigns every route its gap and label slot.
    fn plan(lab: &Lab, grid: &Grid, routes: &mut [Route], egress: bool) -> Lanes {
        let side = |routes: &[Route], side| {
            lane_groups(
                routes
                    .iter()
                    .filter(|r| r.side == side)
                    .map(|r| r.group.as_str()),
            )
        };
        let left = side(routes, Side::Left);
        // The way up to the internet gateway is innermost, so NAT routes entering a NAT
        // gateway below its exit never cross it.
        let mut right: Vec<String> = Vec::new();
        if egress {
            right.push("igw".into());
        }
        right.extend(side(routes, Side::Right));
        let mut gaps: Vec<Vec<String>> = vec![Vec::new(); grid.nrows + 1];
        let mut labels: Vec<BTreeMap<usize, usize>> = vec![BTreeMap::new(); grid.nrows + 1];
        let mut labelled: BTreeSet<(String, usize)> = BTreeSet::new();
        for r in routes.iter_mut() {
            let (ca, ra) = grid.of(lab, r.src);
            let (cb, rb) = grid.of(lab, r.dst);
            // The gap next to the target's row, on the source's side.
            let g = if rb > ra { rb } else { rb + 1 };
            if ca != cb {
                if !gaps[g].contains(&r.group) {
                    gaps[g].push(r.group.clone());
                }
                r.gap = Some(g);
            }
            // One label per group and gap: the wires of a group share their last lanes.
            if r.label.is_some() && (ca, ra) != (cb, rb) && labelled.insert((r.group.clone(), g)) {
                let n = labels[g].entry(cb).or_insert(0);
                r.label_slot = Some((g, *n));
                *n += 1;
            }
        }
        let label_rows = labels
            .iter()
            .map(|m| m.values().copied().max().unwrap_or(0) as i32)
            .collect();
        Lanes {
            left,
            right,
            gaps,
            label_rows,
        }
    }

    fn gutter(lanes: usize) -> i32 {
        if lanes == 0 {
            12
        } else {
            (lanes as i32 + 1) * LANE
        }
    }

    fn left_gutter(&self) -> i32 {
        Lanes::gutter(self.left.len())
    }

    fn right_gutter(&self) -> i32 {
        Lanes::gutter(self.right.len())
    }

    /// Height of gap `g` (gap 0 holds the AZ label).
    fn gap_height(&self, g: usize, last: bool) -> i32 {
        if g == 0 {
            return AZ_HEAD;
        }
        let used = 2 * GAP_PAD
            + self.label_rows[g] * line_height(LABEL_SIZE)
            + self.gaps[g].len() as i32 * LANE;
        used.max(if last { 12 } else { 20 })
    }
}

/// Position of the `i`-th lane of a list.
fn lane_index(list: &[String], group: &str) -> i32 {
    list.iter().position(|g| g == group).unwrap_or(0) as i32
}

/// The AZ area, measured: what is drawn in it and how big its parts are.
struct Area {
    grid: Grid,
    zones: Vec<(String, Vec<usize>)>,
    blocks: Vec<Block>,
    lanes: Lanes,
    /// Width of every subnet column (all AZs are drawn alike).
    col_w: i32,
    row_h: Vec<i32>,
}

impl Area {
    fn az_w(&self) -> i32 {
        self.lanes.left_gutter() + self.col_w + self.lanes.right_gutter()
    }

    fn width(&self) -> i32 {
        let n = self.grid.ncols as i32;
        n * self.az_w() + AZ_GAP * (n - 1).max(0)
    }
}

/// The AZ area, placed: x of each subnet column, y of each gap.
struct Columns {
    sub_x: Vec<i32>,
    col_w: i32,
    gap_top: Vec<i32>,
    y: i32,
    h: i32,
}

impl Columns {
    fn lane_x(&self, lanes: &Lanes, side: Side, group: &str, c: usize) -> i32 {
        match side {
            Side::Left => self.sub_x[c] - LANE * (lane_index(&lanes.left, group) + 1),
            Side::Right => {
                self.sub_x[c] + self.col_w + LANE * (lane_index(&lanes.right, group) + 1)
            }
        }
    }

    fn gap_lane_y(&self, lanes: &Lanes, g: usize, group: &str) -> i32 {
        self.gap_top[g]
            + GAP_PAD
            + lanes.label_rows[g] * line_height(LABEL_SIZE)
            + lane_index(&lanes.gaps[g], group) * LANE
            + LANE / 2
    }

    fn label_baseline(&self, g: usize, row: usize) -> i32 {
        self.gap_top[g] + GAP_PAD + row as i32 * line_height(LABEL_SIZE) + LABEL_SIZE
    }
}

fn az_label(az: &str) -> Line {
    Line::new(12).dim("Availability Zone ").bold(az)
}

/// Sizes the AZ area: equal columns as wide as the widest subnet, AZ label or wire
/// label; rows as tall as their tallest subnet.
fn measure(
    grid: Grid,
    zones: Vec<(String, Vec<usize>)>,
    blocks: Vec<Block>,
    lanes: Lanes,
    routes: &[Route],
) -> Area {
    let mut col_w = blocks.iter().map(|b| b.w).max().unwrap_or(0);
    for (az, _) in &zones {
        // The AZ label must end before the right gutter, where lanes climb to the band.
        col_w = col_w.max(10 + az_label(az.as_str()).width() + 6 - lanes.left_gutter());
    }
    for r in routes {
        if let (Some(label), Some(_)) = (&r.label, r.label_slot) {
            col_w = col_w.max(label_line(r.kind, label).width() + 8);
        }
    }
    let mut row_h = vec![0; grid.nrows];
    for (s, b) in blocks.iter().enumerate() {
        let r = grid.cell[s].1;
        row_h[r] = row_h[r].max(b.h);
    }
    Area {
        grid,
        zones,
        blocks,
        lanes,
        col_w,
        row_h,
    }
}

/// Places the AZ boxes, subnets and cards from (`x`, `y`); records each anchor's box.
fn place_columns(
    lab: &Lab,
    area: &Area,
    (x, y): (i32, i32),
    rects: &mut BTreeMap<Anchor, Rect>,
    out: &mut Layout,
) -> Columns {
    let Area {
        grid,
        zones,
        blocks,
        lanes,
        col_w,
        row_h,
    } = area;
    let (col_w, az_w) = (*col_w, area.az_w());
    let lg = lanes.left_gutter();
    let az_x: Vec<i32> = (0..grid.ncols)
        .map(|c| x + c as i32 * (az_w + AZ_GAP))
        .collect();
    let sub_x: Vec<i32> = az_x.iter().map(|x| x + lg).collect();
    let mut row_y = Vec::with_capacity(grid.nrows);
    let mut gap_top = vec![y; grid.nrows + 1];
    let mut yy = y + lanes.gap_height(0, grid.nrows == 0);
    for r in 0..grid.nrows {
        row_y.push(yy);
        yy += row_h[r];
        gap_top[r + 1] = yy;
        yy += lanes.gap_height(r + 1, r + 1 == grid.nrows);
    }
    let h = yy - y;
    for (c, (az, _)) in zones.iter().enumerate() {
        let rect = Rect {
            x: az_x[c],
            y,
            w: az_w,
            h,
        };
        out.containers.push(Shape {
            rect,
            style: Style::Az,
        });
        out.texts.push(label_at(az_x[c] + 10, y + 21, az_label(az)));
    }
    for (s, b) in blocks.iter().enumerate() {
        let (c, r) = grid.cell[s];
        let rect = Rect {
            x: sub_x[c],
            y: row_y[r],
            w: col_w,
            h: row_h[r],
        };
        rects.insert(Anchor::Subnet(s), rect);
        let style = if lab.subnets[s].public {
            Style::PublicSubnet
        } else {
            Style::PrivateSubnet
        };
        out.containers.push(Shape { rect, style });
        let mut top = rect.y + 8;
        for line in &b.header {
            out.texts
                .push(label_at(rect.x + SUB_PAD, top + line.size, line.clone()));
            top += line.height();
        }
        let mut cy = rect.y + SUB_HEAD;
        for card in &b.cards {
            let r = Rect {
                x: rect.x + SUB_PAD,
                y: cy,
                w: rect.w - 2 * SUB_PAD,
                h: card.height(),
            };
            card.place(r, out);
            if let Some(a) = card.anchor {
                rects.insert(a, r);
            }
            cy += r.h + CARD_GAP;
        }
    }
    Columns {
        sub_x,
        col_w,
        gap_top,
        y,
        h,
    }
}

/// The wire of a route: out of the source sideways into its gutter lane, along a gap
/// lane when it changes column, up or down the target column's lane, into the target.
fn route_wire(
    lab: &Lab,
    grid: &Grid,
    cols: &Columns,
    lanes: &Lanes,
    rects: &BTreeMap<Anchor, Rect>,
    r: &Route,
) -> Wire {
    let (src, dst) = (rects[&r.src], rects[&r.dst]);
    let (ca, cb) = (grid.of(lab, r.src).0, grid.of(lab, r.dst).0);
    let at = |a: Anchor, rect: Rect, pct: i32| match a {
        // Beside the subnet's name.
        Anchor::Subnet(_) => rect.y + 16,
        _ => rect.y + rect.h * pct / 100,
    };
    let (sy, dy) = (at(r.src, src, r.src_at), at(r.dst, dst, r.dst_at));
    let lane = |c| cols.lane_x(lanes, r.side, &r.group, c);
    let (sx, dx) = match r.side {
        Side::Left => (src.x, dst.x),
        Side::Right => (src.right(), dst.right()),
    };
    let mut points = vec![(sx, sy), (lane(ca), sy)];
    if let Some(g) = r.gap {
        let gy = cols.gap_lane_y(lanes, g, &r.group);
        points.push((lane(ca), gy));
        points.push((lane(cb), gy));
    }
    points.push((lane(cb), dy));
    points.push((dx, dy));
    points.dedup();
    Wire {
        kind: r.kind,
        group: r.group.clone(),
        points,
        start_arrow: false,
        end_arrow: true,
    }
}

/// The route tables and endpoints panel at (`x`, `y`); returns its bottom.
fn place_panel(panel: Vec<Line>, x: i32, y: i32, w: i32, out: &mut Layout) -> i32 {
    let h = 10 + panel.iter().map(Line::height).sum::<i32>() + 6;
    out.containers.push(Shape {
        rect: Rect { x, y, w, h },
        style: Style::Panel,
    });
    let mut top = y + 10;
    for line in panel {
        let lh = line.height();
        out.texts.push(label_at(x + 12, top + line.size, line));
        top += lh;
    }
    y + h
}

/// One sample of each wire kind in use, flowing in rows under the cloud; returns the
/// bottom and the right edge.
fn place_legend(y: i32, wrap: i32, out: &mut Layout) -> (i32, i32) {
    let kinds: BTreeSet<WireKind> = out.wires.iter().map(|w| w.kind).collect();
    if kinds.is_empty() {
        return (y, 0);
    }
    let (mut x, mut y, mut right) = (MARGIN, y + 12, 0);
    for k in kinds {
        let line = Line::new(11).dim(k.legend());
        let w = 30 + line.width();
        if x > MARGIN && x + w > wrap {
            x = MARGIN;
            y += line_height(11) + 4;
        }
        out.wires.push(Wire {
            kind: k,
            group: format!("legend-{k:?}"),
            points: vec![(x, y - 4), (x + 24, y - 4)],
            start_arrow: false,
            end_arrow: k != WireKind::Replication,
        });
        out.texts.push(label_at(x + 30, y, line));
        right = right.max(x + w);
        x += w + 20;
    }
    (y + 4, right)
}

/// The title, the summary and the description from the top margin; returns the y under
/// them and their right edge.
fn place_title(lab: &Lab, out: &mut Layout) -> (i32, i32) {
    let mut lines = vec![
        Line::new(18).bold(&lab.name).dim(" — architecture"),
        Line::new(12).dim(summary_text(lab)),
    ];
    if let Some(d) = &lab.description {
        lines.push(Line::new(12).main(truncate(d, 120)));
    }
    let (mut y, mut right) = (MARGIN, 0);
    for line in lines {
        right = right.max(MARGIN + line.width());
        let h = line.height();
        out.texts.push(label_at(MARGIN, y + line.size, line));
        y += h;
    }
    (y + 10, right)
}

pub fn layout(lab: &Lab) -> Layout {
    let facts = Facts::of(lab);
    let zones = zones(lab);
    let grid = Grid::new(lab, &zones);
    let mut out = Layout {
        width: 0,
        height: 0,
        title: format!("{}: VPC {} in {}", lab.name, lab.vpc.name, lab.region),
        containers: Vec::new(),
        nodes: Vec::new(),
        wires: Vec::new(),
        texts: Vec::new(),
    };

    // Measure: cards, wires and lanes, columns, frames.
    let blocks: Vec<Block> = (0..lab.subnets.len())
        .map(|s| subnet_block(lab, s))
        .collect();
    let mut drawn: BTreeSet<Anchor> = (0..lab.subnets.len()).map(Anchor::Subnet).collect();
    drawn.extend(
        blocks
            .iter()
            .flat_map(|b| b.cards.iter().filter_map(|c| c.anchor)),
    );
    let mut routes = routes(&facts, &drawn);
    let igw = lab.internet_gateway.as_ref();
    let egress: Vec<usize> = facts
        .nat_egress
        .iter()
        .copied()
        .filter(|&k| drawn.contains(&Anchor::Nat(k)))
        .collect();
    let lanes = Lanes::plan(lab, &grid, &mut routes, !egress.is_empty());
    let area = measure(grid, zones, blocks, lanes, &routes);
    let cols_w = area.width();

    let cloud_label = Line::new(13).bold("AWS Cloud");
    let region_label = Line::new(13).bold("Region ").main(&lab.region);
    let vpc_label = Line::new(13)
        .bold("VPC ")
        .main(&lab.vpc.name)
        .dim(" · ")
        .main(lab.vpc.cidr.to_string());
    let igw_card = igw.map(|name| Card {
        kind: Kind::Igw,
        anchor: None,
        lines: vec![
            Line::new(12).bold(name),
            Line::new(11).dim("internet gateway"),
        ],
    });
    let (igw_w, igw_h) = igw_card
        .as_ref()
        .map_or((0, 0), |c| (c.width(), c.height()));
    let panel = panel_lines(lab);
    let panel_w = panel.iter().map(Line::width).max().unwrap_or(0) + 24;
    let mut vpc_w = (cols_w + 2 * PAD)
        .max(panel_w + 2 * PAD)
        .max(vpc_label.width() + 24);
    if igw.is_some() {
        // Label ends relative to the VPC's left edge: the gateway, centred on the VPC's
        // top edge, and the wire down to it must clear all three.
        let reach = [
            12 - 2 * PAD + cloud_label.width(),
            12 - PAD + region_label.width(),
            12 + vpc_label.width(),
        ];
        vpc_w = vpc_w.max(2 * (reach.into_iter().max().unwrap_or(0) + 16) + igw_w);
    }

    // Place, top to bottom: title, internet, cloud ⊃ region ⊃ VPC, columns, panel.
    let (mut y, mut right_edge) = place_title(lab, &mut out);
    let vpc_x = MARGIN + 2 * PAD;
    let igw_cx = vpc_x + vpc_w / 2;
    let mut inet = None;
    if igw.is_some() || !lab.internet.is_empty() {
        let r = place_internet(lab, igw.is_some(), igw_cx, y, &mut out);
        right_edge = right_edge.max(r.right());
        y = r.bottom() + 44;
        inet = Some(r);
    }
    let cloud_y = y;
    let region_y = cloud_y + 32;
    let vpc_y = region_y + 32 + igw_h / 2;
    out.texts
        .push(label_at(MARGIN + 12, cloud_y + 21, cloud_label));
    out.texts
        .push(label_at(MARGIN + PAD + 12, region_y + 21, region_label));
    out.texts.push(label_at(vpc_x + 12, vpc_y + 21, vpc_label));
    // The band under the VPC's label where NAT gateways' wires run to the gateway.
    let band_y = (vpc_y + 34).max(vpc_y + igw_h / 2 + 10) + 2;
    let az_y = if egress.is_empty() {
        band_y - 2
    } else {
        band_y + 14
    };
    let mut rects: BTreeMap<Anchor, Rect> = BTreeMap::new();
    let cols_x = vpc_x + (vpc_w - cols_w) / 2;
    let cols = place_columns(lab, &area, (cols_x, az_y), &mut rects, &mut out);
    let (grid, lanes) = (&area.grid, &area.lanes);
    let mut bottom = if grid.ncols == 0 {
        az_y
    } else {
        cols.y + cols.h
    };
    if !panel.is_empty() {
        bottom = place_panel(panel, vpc_x + PAD, bottom + 16, vpc_w - 2 * PAD, &mut out);
    }
    let vpc = Rect {
        x: vpc_x,
        y: vpc_y,
        w: vpc_w,
        h: bottom + PAD - vpc_y,
    };
    let region = Rect {
        x: MARGIN + PAD,
        y: region_y,
        w: vpc_w + 2 * PAD,
        h: vpc.bottom() + PAD - region_y,
    };
    let cloud = Rect {
        x: MARGIN,
        y: cloud_y,
        w: vpc_w + 4 * PAD,
        h: region.bottom() + PAD - cloud_y,
    };
    right_edge = right_edge.max(cloud.right());
    // Frames go under everything else, outermost first.
    let frames = [
        (cloud, Style::Cloud),
        (region, Style::Region),
        (vpc, Style::Vpc),
    ];
    out.containers
        .splice(0..0, frames.map(|(rect, style)| Shape { rect, style }));

    // The internet gateway on the VPC's top edge, and the wires.
    if let Some(card) = &igw_card {
        let r = Rect {
            x: igw_cx - igw_w / 2,
            y: vpc_y - igw_h / 2,
            w: igw_w,
            h: igw_h,
        };
        card.place(r, &mut out);
        if let Some(inet) = inet {
            out.wires.push(Wire {
                kind: WireKind::Internet,
                group: "internet".into(),
                points: vec![(igw_cx, inet.bottom()), (igw_cx, r.y)],
                start_arrow: true,
                end_arrow: true,
            });
        }
        for &k in &egress {
            let nat = rects[&Anchor::Nat(k)];
            let c = grid.cell[lab.nat_gateways[k].subnet].0;
            let lx = cols.lane_x(lanes, Side::Right, "igw", c);
            let sy = nat.y + nat.h * 30 / 100;
            out.wires.push(Wire {
                kind: WireKind::NatEgress,
                group: "igw".into(),
                points: vec![
                    (nat.right(), sy),
                    (lx, sy),
                    (lx, band_y),
                    (igw_cx, band_y),
                    (igw_cx, r.bottom()),
                ],
                start_arrow: false,
                end_arrow: true,
            });
        }
    }
    for r in &routes {
        out.wires
            .push(route_wire(lab, grid, &cols, lanes, &rects, r));
        if let (Some(label), Some((g, row))) = (&r.label, r.label_slot) {
            let c = grid.of(lab, r.dst).0;
            out.texts.push(label_at(
                cols.sub_x[c] + 4,
                cols.label_baseline(g, row),
                label_line(r.kind, label),
            ));
        }
    }

    let (bottom, legend_right) =
        place_legend(cloud.bottom() + 12, cloud.right().max(640), &mut out);
    out.width = right_edge.max(legend_right) + MARGIN;
    out.height = bottom + MARGIN;
    out
}

fn label_at(x: i32, baseline: i32, line: Line) -> Text {
    Text {
        x,
        baseline,
        middle: false,
        line,
    }
}

fn label_line(kind: WireKind, text: &str) -> Line {
    Line::new(LABEL_SIZE).span(text, false, Tone::Wire(kind))
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max - 1).collect();
        format!("{cut}…")
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "region ap-northeast-2 · 4 subnets in 2 AZs · 2 instances · 1 NAT gateway · 1 database".
fn summary_text(lab: &Lab) -> String {
    let azs: BTreeSet<&str> = lab.subnets.iter().map(|s| s.az.as_str()).collect();
    let mut parts = vec![
        format!("region {}", lab.region),
        format!(
            "{} in {}",
            plural(lab.subnets.len(), "subnet", "subnets"),
            plural(azs.len(), "AZ", "AZs")
        ),
        plural(lab.instances.len(), "instance", "instances"),
    ];
    if !lab.nat_gateways.is_empty() {
        parts.push(plural(
            lab.nat_gateways.len(),
            "NAT gateway",
            "NAT gateways",
        ));
    }
    if !lab.databases.is_empty() {
        parts.push(plural(lab.databases.len(), "database", "databases"));
    }
    parts.join(" · ")
}

/// The route tables and RDS endpoints, one line each.
fn panel_lines(lab: &Lab) -> Vec<Line> {
    let mut lines = Vec::new();
    if !lab.route_tables.is_empty() {
        lines.push(Line::new(12).bold("Route tables"));
    }
    for (t, table) in lab.route_tables.iter().enumerate() {
        let subnets = table_users(lab, t);
        let mut routes: Vec<String> = table
            .routes
            .iter()
            .take(MAX_ROUTES)
            .map(|r| route_text(lab, r))
            .collect();
        if table.routes.len() > MAX_ROUTES {
            routes.push(format!("+{} more", table.routes.len() - MAX_ROUTES));
        }
        lines.push(
            Line::new(11)
                .bold(&table.name)
                .dim(format!(" ({subnets}): "))
                .main(routes.join("  ·  ")),
        );
    }
    if !lab.databases.is_empty() {
        lines.push(Line::new(12).bold("RDS endpoints"));
    }
    for db in &lab.databases {
        let az = if db.standby.is_some() {
            "Multi-AZ"
        } else {
            "Single-AZ"
        };
        lines.push(
            Line::new(11)
                .bold(&db.name)
                .dim(format!(" ({}, {az}): ", db.engine))
                .main(format!("{}:{}", db.endpoint, db.port))
                .dim(" → primary ")
                .main(&db.primary.name),
        );
    }
    lines
}

/// Draws the internet box centred on `cx` (clamped to the margin) and returns it.
fn place_internet(lab: &Lab, has_igw: bool, cx: i32, y: i32, out: &mut Layout) -> Rect {
    let mut cards: Vec<Card> = Vec::new();
    let n = shown(lab.internet.len(), MAX_HOSTS);
    for h in &lab.internet[..n] {
        let mut lines = vec![
            Line::new(12).bold(&h.name),
            Line::new(11).main(h.ip.to_string()),
        ];
        if h.my_ip {
            lines.push(Line::new(11).span("my IP", true, Tone::Good));
        } else if !h.services.is_empty() {
            let s: Vec<&str> = h.services.iter().map(|s| s.as_str()).collect();
            lines.push(Line::new(11).dim(format!("serves {}", s.join(", "))));
        }
        cards.push(Card {
            kind: Kind::Host,
            anchor: None,
            lines,
        });
    }
    if n < lab.internet.len() {
        cards.push(more_card(lab.internet.len() - n, "hosts"));
    }
    let mut label = Line::new(13).bold("Internet");
    if !has_igw {
        label = label.dim("  (the VPC has no internet gateway)");
    }
    let cards_w = cards.iter().map(Card::width).sum::<i32>() + 12 * (cards.len() as i32 - 1).max(0);
    let cards_h = cards.iter().map(Card::height).max().unwrap_or(0);
    let w = (cards_w + 24).max(label.width() + 24);
    let h = if cards.is_empty() {
        32
    } else {
        32 + cards_h + 12
    };
    let r = Rect {
        x: (cx - w / 2).max(MARGIN),
        y,
        w,
        h,
    };
    out.containers.push(Shape {
        rect: r,
        style: Style::Internet,
    });
    out.texts.push(label_at(r.x + 12, y + 21, label));
    let mut x = r.x + (w - cards_w) / 2;
    for card in &cards {
        let cr = Rect {
            x,
            y: y + 32,
            w: card.width(),
            h: cards_h,
        };
        card.place(cr, out);
        x += cr.w + 12;
    }
    r
}
