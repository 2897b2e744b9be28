//! cargo-fuzz entry point; the target and what it checks: `netnat_fuzz::targets::pcap_reader`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netnat_fuzz::targets::pcap_reader::fuzz_one(data));
