//! See `meterflow_fuzz::decompress`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meterflow_fuzz::decompress(data));
