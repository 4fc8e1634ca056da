#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use patchman_helper::patchman_shared;

fuzz_target!(|data: &[u8]| {
    let _ =
        patchman_shared::read_frame::<patchman_shared::Reply, _>(&mut std::io::Cursor::new(data));
    let _ = patchman_shared::frame::decode_payload::<patchman_shared::Reply>(data);
});
