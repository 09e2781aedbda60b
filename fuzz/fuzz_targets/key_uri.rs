#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(u) = sshca_signer::KeyUri::parse(s) {
            let again = sshca_signer::KeyUri::parse(&u.to_string()).expect("display must re-parse");
            assert_eq!(again, u);
        }
    }
});
