//! cargo-fuzz entry point; the target and what it checks: `netnat_fuzz::targets::operation_sequence`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| netnat_fuzz::targets::operation_sequence::fuzz_one(data));
