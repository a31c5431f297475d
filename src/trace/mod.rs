//! Hop-by-hop packet traces from real captures, and live NAT translation tables.
