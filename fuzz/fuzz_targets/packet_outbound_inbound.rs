//! cargo-fuzz entry point; the target and what it checks: `netnat_fuzz::targets::packet_outbound_inbound`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netnat_fuzz::targets::packet_outbound_inbound::fuzz_one(data));
