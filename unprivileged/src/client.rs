//! Talking to the helper: connect, `Hello`, one request, its replies.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use interprocess::local_socket::traits::{Stream as _, StreamCommon as _};
use interprocess::local_socket::{GenericFilePath, Stream, ToFsName};
use patchman_shared::{
    read_frame, write_frame, Family, FrameError, Reply, Request, PROTOCOL_VERSION,
};

/// How long a reply may take. Updates are bounded by the helper's own
/// per-step timeouts; this only guards against a helper that hangs.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(3600);
const SHORT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a transient connection failure is retried.
const RETRY_FOR: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub enum ClientError {
    /// The socket could not be reached.
    Connect { socket: PathBuf, error: io::Error },
    /// The helper refused us: we are not the agent user.
    Denied { socket: PathBuf },
    /// Whoever serves the socket is not root, so not patchman-helper:
    /// another user bound the path first (or relays to the real helper).
    NotRoot { socket: PathBuf, uid: Option<u32> },
    /// The helper speaks another protocol version.
    Unsupported { ours: u32, helper: u32 },
    /// The connection broke or a frame was bad.
    Frame(FrameError),
    /// The helper answered something that does not fit the request.
    Unexpected(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect { socket, error } => {
                let hint = match error.kind() {
                    io::ErrorKind::PermissionDenied => {
                        " — is this user the agent user, in group patchman?"
                    }
                    io::ErrorKind::NotFound => {
                        " — is patchman-helper running (systemctl start patchman-helper.socket)?"
                    }
                    io::ErrorKind::ConnectionRefused => " — no helper is listening on it",
                    _ => "",
                };
                write!(f, "cannot reach the helper at {}: {error}{hint}", socket.display())
            }
            ClientError::Denied { socket } => write!(
                f,
                "the helper at {} refused this user: only the configured agent user is served",
                socket.display()
            ),
            ClientError::NotRoot { socket, uid } => {
                let who = uid.map_or_else(|| "an unknown user".to_string(), |u| format!("uid {u}"));
                write!(
                    f,
                    "the server at {} runs as {who}, not root: it is not patchman-helper; refusing to talk to it (who created that socket? the helper's is /run/patchman/helper.sock)",
                    socket.display()
                )
            }
            ClientError::Unsupported { ours, helper } => write!(
                f,
                "the helper speaks protocol {helper}, this agent {ours}: restart the agent after the update completes"
            ),
            ClientError::Frame(FrameError::Closed) => {
                write!(f, "the helper closed the connection (it may be restarting after an update)")
            }
            ClientError::Frame(e) => write!(f, "talking to the helper: {e}"),
            ClientError::Unexpected(r) => write!(f, "unexpected answer from the helper: {r}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// Worth retrying at once: the helper is restarting or shed us.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Connect { error, .. } => error.kind() == io::ErrorKind::ConnectionRefused,
            ClientError::Frame(FrameError::Closed) => true,
            ClientError::Frame(FrameError::Io(e)) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }
}

impl From<FrameError> for ClientError {
    fn from(e: FrameError) -> Self {
        ClientError::Frame(e)
    }
}

/// An open, greeted connection to the helper.
pub struct Client {
    stream: Stream,
    socket: PathBuf,
    pub family: Family,
    pub helper_version: String,
}

impl Client {
    /// Connects and exchanges `Hello`/`Welcome`. A helper that is
    /// restarting (after an update) or shedding idle connections closes
    /// without a word: that is retried for a few seconds.
    pub fn connect(socket: &Path) -> Result<Client, ClientError> {
        let deadline = std::time::Instant::now() + RETRY_FOR;
        loop {
            match Client::connect_once(socket) {
                Err(e) if e.is_transient() && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    fn connect_once(socket: &Path) -> Result<Client, ClientError> {
        let connect_err = |error| ClientError::Connect {
            socket: socket.to_path_buf(),
            error,
        };
        let name = socket
            .to_fs_name::<GenericFilePath>()
            .map_err(connect_err)?;
        let stream = Stream::connect(name).map_err(connect_err)?;
        // Before a byte is sent: the kernel recorded who listens on that
        // socket; the helper is root, anything else is an impostor (or a
        // relay) whose replies would be shown to a person as the helper's.
        let server_uid = stream.peer_creds().map_err(connect_err)?.euid();
        if server_uid != Some(0) {
            return Err(ClientError::NotRoot {
                socket: socket.to_path_buf(),
                uid: server_uid,
            });
        }
        stream
            .set_recv_timeout(Some(SHORT_TIMEOUT))
            .map_err(connect_err)?;
        stream
            .set_send_timeout(Some(SHORT_TIMEOUT))
            .map_err(connect_err)?;
        let mut client = Client {
            stream,
            socket: socket.to_path_buf(),
            family: patchman_shared::Family::Apt,
            helper_version: String::new(),
        };
        // A helper that denies us answers before reading: if our Hello
        // cannot be written, its `Denied` may still be waiting to be read.
        let sent = client.send(Request::Hello {
            protocol: PROTOCOL_VERSION,
        });
        let reply = match (sent, client.recv()) {
            (_, Ok(reply)) => reply,
            (Err(e), Err(_)) | (Ok(()), Err(e)) => return Err(e),
        };
        match reply {
            Reply::Welcome {
                family,
                helper_version,
                ..
            } => {
                client.family = family;
                client.helper_version = helper_version;
                Ok(client)
            }
            Reply::Unsupported { helper_protocol } => Err(ClientError::Unsupported {
                ours: PROTOCOL_VERSION,
                helper: helper_protocol,
            }),
            other => Err(client.unexpected(other)),
        }
    }

    fn send(&mut self, r: Request) -> Result<(), ClientError> {
        let mut s = &self.stream;
        Ok(write_frame(&mut s, &r)?)
    }

    fn recv(&mut self) -> Result<Reply, ClientError> {
        let mut s = &self.stream;
        Ok(read_frame(&mut s)?)
    }

    fn unexpected(&self, r: Reply) -> ClientError {
        match r {
            Reply::Denied => ClientError::Denied {
                socket: self.socket.clone(),
            },
            other => ClientError::Unexpected(format!("{other:?}")),
        }
    }

    /// Sends `request` and returns its final reply, passing every
    /// `Progress` frame to `on_progress` as it arrives.
    pub fn request(
        &mut self,
        request: Request,
        mut on_progress: impl FnMut(patchman_shared::Step),
    ) -> Result<Reply, ClientError> {
        self.stream
            .set_recv_timeout(Some(REPLY_TIMEOUT))
            .map_err(|e| ClientError::Frame(FrameError::Io(e)))?;
        self.send(request)?;
        loop {
            match self.recv()? {
                Reply::Progress(step) => on_progress(step),
                Reply::Denied => return Err(self.unexpected(Reply::Denied)),
                other => return Ok(other),
            }
        }
    }
}
