use super::LabArgs;
use crate::diagram;
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// A standalone SVG picture, laid out by vpclab
    Svg,
    /// Graphviz dot source (render with `dot -Tsvg` or `dot -Tpng`)
    Dot,
    /// A Mermaid flowchart (paste into Markdown that renders Mermaid)
    Mermaid,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    lab: LabArgs,
    /// Diagram format [default: from the --output extension (.dot/.gv, .mmd/.mermaid),
    /// otherwise svg]
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Write the diagram to PATH instead of standard output
    #[arg(short, long, value_name = "PATH")]
    output: Option<PathBuf>,
}

/// The format an output file's extension asks for, if it names one.
fn format_of(path: &Path) -> anyhow::Result<Option<Format>> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    Ok(match ext.as_str() {
        "svg" => Some(Format::Svg),
        "dot" | "gv" => Some(Format::Dot),
        "mmd" | "mermaid" => Some(Format::Mermaid),
        "png" | "pdf" | "jpg" | "jpeg" => anyhow::bail!(
            "vpclab writes SVG, dot or Mermaid, not .{ext}\n  hint: write an SVG and convert it, e.g. `vpclab diagram -o lab.svg && rsvg-convert -o lab.png lab.svg`"
        ),
        _ => None,
    })
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let from_ext = match &a.output {
        Some(p) => format_of(p)?,
        None => None,
    };
    let Some(loaded) = a.lab.load()? else {
        return Ok(ExitCode::FAILURE);
    };
    let format = match a.format.or(from_ext).unwrap_or(Format::Svg) {
        Format::Svg => diagram::Format::Svg,
        Format::Dot => diagram::Format::Dot,
        Format::Mermaid => diagram::Format::Mermaid,
    };
    let text = diagram::render(&loaded.lab, format);
    match &a.output {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::write(p, text).with_context(|| format!("write {}", p.display()))?;
        }
        _ => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .context("write the diagram to standard output")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
