#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = patchman_helper::parse::rpm_query::parse_query(s);
        let _ = patchman_helper::parse::rpm_query::parse_file_query(s);
        let _ = patchman_helper::parse::rpm_query::parse_relations(s);
    }
});
