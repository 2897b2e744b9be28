//! netnat-capture: packet I/O backends behind one trait.

pub mod pcap;
