#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nfsbridge::fuzzing::sd_binary_check(data));
