//! A tiny HTTP/1.1 static file server on `127.0.0.1:<ephemeral>`, enough for
//! apt's `http` method: `GET` and `HEAD`, `Content-Length`,
//! `Connection: close`, 404 for anything missing, no path traversal. One
//! thread per connection. It can be told to hang (accept connections and
//! never answer) or to trickle (answer `200` and then one byte a second,
//! which no client's inactivity timeout catches) for timeout tests.
//! Dropping it stops it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

/// The longest request head read; anything longer gets a 400.
const MAX_HEAD: usize = 16 * 1024;
/// How long a connection may stay silent before it is dropped.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One request the server saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, … (empty when the request line was unreadable).
    pub method: String,
    /// The raw request target, e.g. `/patchman/dists/stable/InRelease`.
    pub path: String,
    /// The status answered; 0 when the server was hanging.
    pub status: u16,
}

#[derive(Debug)]
struct Shared {
    root: PathBuf,
    stop: AtomicBool,
    hang: AtomicBool,
    trickle: AtomicBool,
    log: Mutex<Vec<Request>>,
}

/// A running server; see the module documentation.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Serves the files under `root` on `127.0.0.1` at a free port, from a
    /// background thread.
    pub fn start(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let root = root
            .canonicalize()
            .with_context(|| format!("the HTTP server's root {}", root.display()))?;
        let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            root,
            stop: AtomicBool::new(false),
            hang: AtomicBool::new(false),
            trickle: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
        });
        let for_thread = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name(format!("http-{}", addr.port()))
            .spawn(move || accept_loop(listener, for_thread))?;
        Ok(HttpServer {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port>`, the base URL for
    /// [`AptRepo::list_line`](super::apt_repo::AptRepo::list_line).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// While `true`, new connections are accepted and then never answered
    /// (held open until the server stops); `false` serves again.
    pub fn set_hang(&self, hang: bool) {
        self.shared.hang.store(hang, Ordering::SeqCst);
    }

    /// While `true`, every new request is answered `200` with a large
    /// `Content-Length` and then one byte a second, until the client
    /// gives up, the server stops or this is set `false`.
    pub fn set_trickle(&self, trickle: bool) {
        self.shared.trickle.store(trickle, Ordering::SeqCst);
    }

    /// Every request seen so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared
            .log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept().
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let shared = Arc::clone(&shared);
        let _ = std::thread::Builder::new()
            .name("http-conn".into())
            .spawn(move || {
                let _ = serve(stream, &shared);
            });
    }
}

fn serve(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    if shared.hang.load(Ordering::SeqCst) {
        let mut reader = BufReader::new(stream.try_clone()?);
        let request = read_head(&mut reader).ok();
        log(shared, request.as_ref(), 0);
        // Hold the connection open, answering nothing, until the server stops.
        while !shared.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        return Ok(());
    }
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let head = read_head(&mut reader);
    if shared.trickle.load(Ordering::SeqCst) {
        log(shared, head.as_ref().ok(), 200);
        stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\
              Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        )?;
        while !shared.stop.load(Ordering::SeqCst) && shared.trickle.load(Ordering::SeqCst) {
            stream.write_all(b"x")?;
            std::thread::sleep(Duration::from_secs(1));
        }
        return Ok(());
    }
    let (status, body) = match &head {
        Err(_) => (400, None),
        Ok((method, _)) if method != "GET" && method != "HEAD" => (405, None),
        Ok((_, target)) => match resolve(&shared.root, target) {
            None => (404, None),
            Some(file) => match std::fs::read(&file) {
                Ok(bytes) => (200, Some(bytes)),
                Err(_) => (404, None),
            },
        },
    };
    log(shared, head.as_ref().ok(), status);
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let body = body.unwrap_or_else(|| format!("{status} {reason}\n").into_bytes());
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\n\
         Content-Type: application/octet-stream\r\nConnection: close\r\n",
        body.len()
    );
    if status == 405 {
        response.push_str("Allow: GET, HEAD\r\n");
    }
    response.push_str("\r\n");
    stream.write_all(response.as_bytes())?;
    if !matches!(&head, Ok((m, _)) if m == "HEAD") {
        stream.write_all(&body)?;
    }
    stream.flush()?;
    stream.shutdown(Shutdown::Write)?;
    // Drain what the client still sends until it closes: closing a socket
    // with unread input makes the kernel answer with RST, which can destroy
    // the response before the client has read it.
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut sink = [0u8; 4096];
    while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
    Ok(())
}

fn log(shared: &Shared, head: Option<&(String, String)>, status: u16) {
    let (method, path) = head.cloned().unwrap_or_default();
    if let Ok(mut l) = shared.log.lock() {
        l.push(Request {
            method,
            path,
            status,
        });
    }
}

/// Reads the request head; returns the method and the request target.
fn read_head(reader: &mut impl BufRead) -> std::io::Result<(String, String)> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad request");
    let mut first = String::new();
    let mut total = 0;
    loop {
        let mut line = String::new();
        let n = reader.by_ref().take(MAX_HEAD as u64).read_line(&mut line)?;
        total += n;
        if n == 0 || total > MAX_HEAD {
            return Err(bad());
        }
        if first.is_empty() {
            first = line;
            continue;
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = first.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/1.") => Ok((m.to_owned(), t.to_owned())),
        _ => Err(bad()),
    }
}

/// Maps a request target to a regular file under `root`, or `None` (404):
/// the query is dropped, `%XX` decoded, `.` and empty segments skipped, and
/// any `..`, NUL or backslash refused; the resolved file must still lie
/// under `root` once symlinks are followed.
pub fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next()?;
    let decoded = percent_decode(path.strip_prefix('/')?)?;
    if decoded.contains(['\0', '\\']) {
        return None;
    }
    // `.` and empty segments are harmless (apt asks for `<flat repo>/./InRelease`);
    // `..` is refused outright rather than normalised.
    let mut rel = PathBuf::new();
    for seg in decoded.split('/').filter(|s| !s.is_empty() && *s != ".") {
        if seg == ".." {
            return None;
        }
        rel.push(seg);
    }
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let file = root.join(rel).canonicalize().ok()?;
    (file.starts_with(root) && file.is_file()).then_some(file)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_refuses_traversal() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("a")).unwrap();
        std::fs::write(root.join("a/f_1%3a2.deb"), "x").unwrap();
        std::fs::write(root.join("a/f_1:2.deb"), "y").unwrap();
        // (request target, the file it names under `root`)
        for (target, file) in [
            ("/a/f_1%253a2.deb", "a/f_1%3a2.deb"),
            ("/a/f_1%3a2.deb?x=1", "a/f_1:2.deb"),
            ("/a/./f_1:2.deb", "a/f_1:2.deb"),
            ("//a//f_1:2.deb", "a/f_1:2.deb"),
        ] {
            assert_eq!(resolve(&root, target), Some(root.join(file)), "{target}");
        }
        for bad in [
            "/../etc/passwd",
            "/a/../a/f_1:2.deb",
            "/a/%2e%2e/a/f_1:2.deb",
            "/a/%2E%2E/a/f_1:2.deb",
            "/./../etc/passwd",
            "/",
            "/a",
            "/a/missing",
            "relative",
            "/a/f%",
            "/a/f%zz",
        ] {
            assert_eq!(resolve(&root, bad), None, "{bad}");
        }
    }
}
