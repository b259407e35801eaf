//! See `meterflow_fuzz::dates`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meterflow_fuzz::dates(data));
