//! The wire framing: a `u32` little-endian payload length, then a bincode 2
//! payload of exactly that many bytes.
//!
//! The length is checked against [`MAX_FRAME`] *before* anything is
//! allocated or read, and the decoder runs with the same hard limit, so a
//! peer can never make us allocate more than 64 KiB per frame, whatever the
//! lengths nested inside the payload claim.

use std::fmt;
use std::io::{self, Read, Write};

use bincode::{Decode, Encode};

/// Hard cap on a frame's payload, in bytes.
pub const MAX_FRAME: usize = 64 * 1024;

/// The one bincode configuration used on the wire. The limit bounds every
/// length the decoder reads (strings, vectors), not only the frame.
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME>()
}

/// Why a frame could not be read or written.
#[derive(Debug)]
pub enum FrameError {
    /// The peer closed the connection cleanly, between two frames.
    Closed,
    /// An I/O error, a timeout included, or a frame cut short.
    Io(io::Error),
    /// The length prefix was zero: no message encodes to nothing.
    Empty,
    /// The length prefix announced more than [`MAX_FRAME`] bytes.
    TooLarge(u32),
    /// The payload was not a valid message of the expected type.
    Malformed(String),
    /// The payload decoded, but did not use every byte of the frame.
    TrailingBytes { used: usize, len: usize },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Closed => write!(f, "connection closed by peer"),
            FrameError::Io(e) if is_timeout(e) => write!(f, "timed out on the connection"),
            FrameError::Io(e) => write!(f, "i/o error on the connection: {e}"),
            FrameError::Empty => write!(f, "empty frame"),
            FrameError::TooLarge(n) => {
                write!(f, "frame of {n} bytes exceeds the {MAX_FRAME}-byte limit")
            }
            FrameError::Malformed(e) => write!(f, "malformed message: {e}"),
            FrameError::TrailingBytes { used, len } => {
                write!(f, "message used {used} of the frame's {len} bytes")
            }
        }
    }
}

impl std::error::Error for FrameError {}

impl FrameError {
    /// Whether this is a read or write timeout on the socket.
    pub fn is_timeout(&self) -> bool {
        matches!(self, FrameError::Io(e) if is_timeout(e))
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Reads one frame and decodes it as a `T`.
///
/// Reads at most 4 + [`MAX_FRAME`] bytes and allocates at most
/// [`MAX_FRAME`] bytes, whatever the peer sends.
pub fn read_frame<T: Decode<()>, R: Read>(r: &mut R) -> Result<T, FrameError> {
    let mut header = [0u8; 4];
    let mut got = 0;
    while got < header.len() {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_le_bytes(header);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    // Checked before the allocation below: this is the only place that
    // sizes a buffer from peer input.
    if len as usize > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let len = len as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).map_err(FrameError::Io)?;
    decode_payload(&payload)
}

/// Decodes a complete payload (the bytes after the length prefix).
/// Exposed for the fuzz targets and tests; [`read_frame`] is the normal way.
pub fn decode_payload<T: Decode<()>>(payload: &[u8]) -> Result<T, FrameError> {
    if payload.is_empty() {
        return Err(FrameError::Empty);
    }
    if payload.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(payload.len() as u32));
    }
    let (value, used) = bincode::decode_from_slice(payload, config())
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if used != payload.len() {
        return Err(FrameError::TrailingBytes {
            used,
            len: payload.len(),
        });
    }
    Ok(value)
}

/// Encodes `value` and writes it as one frame, in one `write_all`.
pub fn write_frame<T: Encode, W: Write>(w: &mut W, value: &T) -> Result<(), FrameError> {
    let bytes = encode_frame(value)?;
    w.write_all(&bytes).map_err(FrameError::Io)?;
    w.flush().map_err(FrameError::Io)
}

/// Encodes `value` as a complete frame: length prefix and payload.
pub fn encode_frame<T: Encode>(value: &T) -> Result<Vec<u8>, FrameError> {
    let payload = bincode::encode_to_vec(value, config())
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if payload.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(payload.len() as u32));
    }
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}
