//! See `meterflow_fuzz::envelope`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meterflow_fuzz::envelope(data));
