//! One pcap file per capture point (`<node>_<iface>.pcap`, nanosecond timestamps,
//! Ethernet), readable by `tshark -r` and Wireshark.

use crate::kernel::capture::{Frame, Point};
use crate::plan::Plan;
use anyhow::{Context, Result};
use pcap_file::DataLink;
use pcap_file::TsResolution;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

pub fn file_name(node: &str, iface: &str) -> String {
    format!("{node}_{iface}.pcap")
}

pub fn write(dir: &Path, points: &[Point], plan: &Plan, frames: &[Frame]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut files = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let node = plan
            .namespaces
            .iter()
            .find(|n| n.name == p.ns)
            .map_or(p.ns.as_str(), |n| n.node.as_str());
        let path = dir.join(file_name(node, &p.iface));
        let f = File::create(&path).with_context(|| format!("create {}", path.display()))?;
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::NanoSecond,
            snaplen: 65_535,
            ..Default::default()
        };
        let mut w = PcapWriter::with_header(BufWriter::new(f), header)
            .with_context(|| format!("write {}", path.display()))?;
        for fr in frames.iter().filter(|f| f.point == i) {
            w.write_packet(&PcapPacket::new(fr.ts, fr.data.len() as u32, &fr.data))
                .with_context(|| format!("write {}", path.display()))?;
        }
        files.push(path);
    }
    Ok(files)
}
