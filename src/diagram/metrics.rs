//! Text widths for laying out the SVG without a font engine.
//!
//! The tables are the advance widths (in thousandths of an em) of DejaVu Sans, the font
//! most Linux systems pick for `sans-serif`. It is wider than Arial or Helvetica, so a
//! box sized with these numbers also fits its text in a browser that picks either.

/// Advance widths of ' ' to '~' in DejaVu Sans Book.
const REGULAR: [u16; 95] = [
    317, 400, 459, 837, 636, 950, 779, 274, 390, 390, 500, 837, 317, 360, 317, 336, 636, 636, 636,
    636, 636, 636, 636, 636, 636, 636, 336, 336, 837, 837, 837, 530, 1000, 684, 686, 698, 770, 631,
    575, 774, 751, 294, 294, 655, 557, 862, 748, 787, 603, 787, 694, 634, 610, 731, 684, 988, 685,
    610, 685, 390, 336, 390, 837, 500, 500, 612, 634, 549, 634, 615, 352, 634, 633, 277, 277, 579,
    277, 974, 633, 611, 634, 634, 411, 520, 392, 633, 591, 817, 591, 591, 524, 636, 336, 636, 837,
];

/// Advance widths of ' ' to '~' in DejaVu Sans Bold.
const BOLD: [u16; 95] = [
    348, 456, 520, 837, 695, 1001, 872, 306, 457, 457, 522, 837, 379, 415, 379, 365, 695, 695, 695,
    695, 695, 695, 695, 695, 695, 695, 399, 399, 837, 837, 837, 580, 1000, 773, 762, 733, 830, 683,
    683, 820, 836, 372, 372, 774, 637, 995, 836, 850, 732, 850, 770, 720, 682, 812, 773, 1103, 770,
    724, 725, 457, 365, 457, 837, 500, 500, 674, 715, 592, 715, 678, 435, 715, 711, 342, 342, 665,
    342, 1041, 711, 687, 715, 715, 493, 595, 478, 711, 651, 923, 645, 651, 582, 711, 365, 711, 837,
];

fn char_width(c: char, bold: bool) -> u32 {
    let table = if bold { &BOLD } else { &REGULAR };
    match c {
        ' '..='~' => u32::from(table[c as usize - 32]),
        '·' => u32::from(table[0]),
        '→' | '←' | '↔' => 837,
        // Anything else (accents, CJK, symbols): a full em keeps boxes large enough.
        _ => 1000,
    }
}

/// Width in pixels of `text` at `size` pixels, rounded up.
pub fn text_width(text: &str, size: i32, bold: bool) -> i32 {
    let milli: u32 = text.chars().map(|c| char_width(c, bold)).sum();
    let px = u64::from(milli) * size.max(0) as u64;
    px.div_ceil(1000) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_follow_the_font() {
        assert_eq!(text_width("", 12, false), 0);
        // "10.0.2.238": seven digits and three dots, 54.03 px rounded up.
        assert_eq!(text_width("10.0.2.238", 10, false), 55);
        assert!(text_width("web", 12, true) > text_width("web", 12, false));
        assert_eq!(text_width("한", 10, false), 10);
    }
}
