//! Answers about a lab without sending a packet: can FROM reach TO, and why not
//! (`reach`, AWS's Reachability Analyzer), and which of AWS Security Hub's controls the lab
//! fails (`audit`).
//!
//! The analysis does not model AWS a second time: it walks the same Plan that `up` applies
//! (the route tables as kernel tables, the NAT and security groups as the nftables IR)
//! with the simulator `trace` uses (`trace::path`), then names what the packet met in
//! AWS's words. That is what lets `reach --verify` hold it against real packets.

pub mod audit;
pub mod matrix;
pub mod reach;
pub mod spans;
