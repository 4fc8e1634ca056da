//! `probe`: a scriptable, deliberately misbehaving client of the helper's
//! socket, for tests that must act as a given uid (they run it with
//! `Command::uid`). Each argument is one action; each action prints one
//! line, so a test asserts on stdout.
//!
//! ```text
//! probe SOCKET ACTION...
//!   raw:HEX        write these bytes as they are
//!   hello[:N]      send Hello { protocol: N } (default: ours)
//!   req:NAME       send status | check | update | confirm
//!   recv           read one frame: `reply <Debug>`, `closed`, or `error <what>`
//!   final          read frames until one that is not Progress; print each
//!   drip:HEX:MS    write the bytes one at a time, MS ms apart
//!   sleep:MS       wait
//!   hold:N:MS      open N more connections, send nothing, keep them MS ms
//! ```
#![forbid(unsafe_code)]

use std::io::Write;

/// Prints a line; a reader that went away (a test that finished) is fine.
macro_rules! say {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use patchman_shared::{read_frame, write_frame, FrameError, Reply, Request, PROTOCOL_VERSION};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn recv(stream: &mut UnixStream) -> Option<Reply> {
    match read_frame::<Reply, _>(stream) {
        Ok(r) => {
            say!("reply {r:?}");
            Some(r)
        }
        Err(FrameError::Closed) => {
            say!("closed");
            None
        }
        Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            say!("closed");
            None
        }
        Err(e) => {
            say!("error {e}");
            None
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let socket = args.next().expect("usage: probe SOCKET ACTION...");
    let t0 = Instant::now();
    let mut stream = match UnixStream::connect(&socket) {
        Ok(s) => s,
        Err(e) => {
            say!("connect-error {:?}", e.kind());
            std::process::exit(3);
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut held = Vec::new();
    for action in args {
        let (verb, rest) = action.split_once(':').unwrap_or((action.as_str(), ""));
        match verb {
            "raw" => match stream.write_all(&hex(rest)) {
                Ok(()) => say!("sent {} bytes", rest.len() / 2),
                Err(e) => say!("write-error {:?}", e.kind()),
            },
            "hello" => {
                let protocol = rest.parse().unwrap_or(PROTOCOL_VERSION);
                let r = write_frame(&mut stream, &Request::Hello { protocol });
                say!(
                    "sent hello {protocol} {}",
                    if r.is_ok() { "ok" } else { "failed" }
                );
            }
            "req" => {
                let req = match rest {
                    "status" => Request::Status,
                    "check" => Request::Check,
                    "update" => Request::Update,
                    "confirm" => Request::Confirm,
                    other => panic!("unknown request {other}"),
                };
                let r = write_frame(&mut stream, &req);
                say!("sent {rest} {}", if r.is_ok() { "ok" } else { "failed" });
            }
            "recv" => {
                recv(&mut stream);
            }
            "final" => while let Some(Reply::Progress(_)) = recv(&mut stream) {},
            "drip" => {
                let (bytes, ms) = rest.split_once(':').expect("drip:HEX:MS");
                let gap = Duration::from_millis(ms.parse().expect("ms"));
                let mut sent = 0;
                for b in hex(bytes) {
                    if stream.write_all(&[b]).is_err() {
                        break;
                    }
                    sent += 1;
                    std::thread::sleep(gap);
                }
                say!("dripped {sent} bytes");
            }
            "sleep" => std::thread::sleep(Duration::from_millis(rest.parse().expect("ms"))),
            "hold" => {
                let (n, ms) = rest.split_once(':').expect("hold:N:MS");
                let n: usize = n.parse().expect("n");
                let mut ok = 0;
                for _ in 0..n {
                    if let Ok(s) = UnixStream::connect(&socket) {
                        held.push(s);
                        ok += 1;
                    }
                }
                say!("holding {ok} connections");
                std::thread::sleep(Duration::from_millis(ms.parse().expect("ms")));
            }
            other => panic!("unknown action {other}"),
        }
    }
    say!("elapsed_ms {}", t0.elapsed().as_millis());
}
