//! What the fuzz targets share: how one input becomes a tool's output,
//! and the frame decoder run both ways.
#![forbid(unsafe_code)]

use bincode::Decode;
use patchman_helper::patchman_shared;

/// Splits a fuzz input into a tool's stdout and stderr (at the first
/// NUL; all stdout without one) and hands them to `check` once for each
/// exit status in `codes`. Input that is not UTF-8 is passed over: the
/// helper reads tool output lossily before any parser sees it.
pub fn tool_output(
    data: &[u8],
    codes: &[Option<i32>],
    mut check: impl FnMut(Option<i32>, &str, &str),
) {
    if let Ok(s) = std::str::from_utf8(data) {
        let (stdout, stderr) = s.split_once('\0').unwrap_or((s, ""));
        for &code in codes {
            check(code, stdout, stderr);
        }
    }
}

/// Feeds `data` to the frame reader (as a stream) and to the payload
/// decoder (as one frame's payload) for messages of type `T`.
pub fn frame<T: Decode<()>>(data: &[u8]) {
    let _ = patchman_shared::read_frame::<T, _>(&mut std::io::Cursor::new(data));
    let _ = patchman_shared::frame::decode_payload::<T>(data);
}
