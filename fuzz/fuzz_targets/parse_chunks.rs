//! See `meterflow_fuzz::parse_chunks`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meterflow_fuzz::parse_chunks(data));
