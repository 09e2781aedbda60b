#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sshca::fuzzing::public_key(data));
