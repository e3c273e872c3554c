#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nfsbridge::fuzzing::lease_protocol(data));
