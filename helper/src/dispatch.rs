//! The audit table: which request is allowed in which state of a
//! connection, and which handler answers it. A reviewer audits the helper
//! by reading [`route`] and the handlers it names.
//!
//! | state           | request            | answer                                   |
//! |-----------------|--------------------|------------------------------------------|
//! | (any, wrong uid)| —                  | `Denied`, close (nothing is read)        |
//! | AwaitingHello   | `Hello{ours}`      | `Welcome` → Ready                        |
//! | AwaitingHello   | `Hello{other}`     | `Unsupported`, close                     |
//! | AwaitingHello   | anything else      | `Failed(Protocol)`, close                |
//! | Ready           | `Status`           | [`family::status`] (read-only; at most 4 at once, else `Busy`) |
//! | Ready           | `Check`            | [`family::check`], exclusive, else `Busy`|
//! | Ready           | `Update`           | [`family::update`], exclusive, else `Busy`|
//! | Ready           | `Confirm`          | [`probation::confirm`], exclusive, else `Busy` (its rules: [`crate::probation`]) |
//! | Ready           | `Hello`            | `Failed(Protocol)`, close                |
//! | any             | bad frame          | `Failed(Protocol)` (best effort), close  |

use std::time::Instant;

use interprocess::local_socket::traits::Stream as _;
use interprocess::os::unix::uds_local_socket::Stream;
use patchman_shared::{Failure, FrameError, Reply, Request, PROTOCOL_VERSION};

use crate::server::{self, PeerEvent, Slots};
use crate::Helper;
use crate::{family, probation};

/// The time all progress frames of one request may cost, together.
pub const PROGRESS_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// Where a connection is in its short life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    AwaitingHello,
    Ready,
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Welcome,
    Unsupported,
    Status,
    Check,
    Update,
    Confirm,
    OutOfOrder,
}

/// THE table. Pure, so it is tested exhaustively below.
pub fn route(state: State, request: &Request) -> Route {
    match (state, request) {
        (State::AwaitingHello, Request::Hello { protocol }) if *protocol == PROTOCOL_VERSION => {
            Route::Welcome
        }
        (State::AwaitingHello, Request::Hello { .. }) => Route::Unsupported,
        (State::AwaitingHello, _) => Route::OutOfOrder,
        (State::Ready, Request::Status) => Route::Status,
        (State::Ready, Request::Check) => Route::Check,
        (State::Ready, Request::Update) => Route::Update,
        (State::Ready, Request::Confirm) => Route::Confirm,
        (State::Ready, Request::Hello { .. }) => Route::OutOfOrder,
    }
}

/// A connection being served.
pub(crate) struct Connection<'a> {
    pub stream: &'a Stream,
    pub id: u64,
    pub slots: &'a Slots,
}

impl Connection<'_> {
    fn send(&self, reply: &Reply) -> bool {
        match server::send(self.stream, reply) {
            Ok(()) => true,
            Err(e) => {
                // Debug: a flood of peers that hang up at once must not
                // become a flood of lines (the per-peer summary counts them).
                tracing::debug!(conn = self.id, error = %e, "cannot answer the peer");
                false
            }
        }
    }
}

/// Serves one connection from accept to close.
pub(crate) fn handle(helper: &Helper, conn: Connection<'_>) {
    let (uid, pid) = match server::peer(conn.stream) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(conn = conn.id, error = %e, "cannot read peer credentials; closing");
            return;
        }
    };
    let log = &helper.peer_log;
    if log.note(uid, PeerEvent::Connection) {
        tracing::debug!(conn = conn.id, peer_uid = uid, peer_pid = pid, "accepted");
    }
    if uid != helper.agent_uid {
        if log.note(uid, PeerEvent::Denied) {
            tracing::warn!(
                conn = conn.id,
                peer_uid = uid,
                peer_pid = pid,
                "denied: not the agent user"
            );
        }
        conn.send(&Reply::Denied);
        return;
    }
    let mut state = State::AwaitingHello;
    loop {
        conn.slots.set_idle(conn.id, true);
        let request = match server::read_request(conn.stream, &helper.limits) {
            Ok(r) => r,
            Err(FrameError::Closed) => return,
            Err(e) => {
                if log.note(uid, PeerEvent::BadFrame) {
                    tracing::warn!(conn = conn.id, peer_uid = uid, peer_pid = pid, error = %e, "bad or missing frame; closing");
                }
                if !matches!(e, FrameError::Io(_)) {
                    conn.send(&Reply::Failed(Failure::Protocol {
                        detail: e.to_string(),
                    }));
                }
                return;
            }
        };
        conn.slots.set_idle(conn.id, false);
        // One configuration for the whole request, whatever SIGHUP does.
        let _config = helper.pin_config();
        let started = Instant::now();
        let route = route(state, &request);
        let (outcome, keep_open) = match route {
            Route::Welcome => {
                state = State::Ready;
                let ok = conn.send(&Reply::Welcome {
                    protocol: PROTOCOL_VERSION,
                    helper_version: crate::VERSION.to_string(),
                    family: helper.family,
                });
                ("welcome".to_string(), ok)
            }
            Route::Unsupported => {
                conn.send(&Reply::Unsupported {
                    helper_protocol: PROTOCOL_VERSION,
                });
                ("unsupported protocol".to_string(), false)
            }
            Route::OutOfOrder => {
                conn.send(&Reply::Failed(Failure::Protocol {
                    detail: format!("{} is not allowed here", request.name()),
                }));
                ("out of order".to_string(), false)
            }
            Route::Status | Route::Check | Route::Update if helper.stopping() => {
                // Stopping (SIGTERM, or a replaced binary) waits only for
                // the update already running: nothing new starts.
                conn.send(&Reply::Busy);
                if log.note(uid, PeerEvent::Routine) {
                    log_request(uid, pid, &request, "busy: stopping", started);
                }
                continue;
            }
            Route::Status => {
                let Some(_slot) = helper.try_query() else {
                    conn.send(&Reply::Busy);
                    if log.note(uid, PeerEvent::Routine) {
                        log_request(uid, pid, &request, "busy", started);
                    }
                    continue;
                };
                let _quiet = crate::exec::QuietCommands::new();
                let reply = match family::status(helper) {
                    Ok(s) => Reply::Status(s),
                    Err(f) => Reply::Failed(f),
                };
                let outcome = outcome_of(&reply);
                (outcome, conn.send(&reply))
            }
            Route::Confirm => {
                let Some(_exclusive) = helper.try_exclusive() else {
                    conn.send(&Reply::Busy);
                    log_request(uid, pid, &request, "busy", started);
                    continue;
                };
                let reply = probation::confirm(helper)
                    .map(Reply::Confirmed)
                    .unwrap_or_else(Reply::Failed);
                let outcome = outcome_of(&reply);
                (outcome, conn.send(&reply))
            }
            Route::Check | Route::Update => {
                let Some(exclusive) = helper.try_exclusive() else {
                    conn.send(&Reply::Busy);
                    if log.note(uid, PeerEvent::Routine) {
                        log_request(uid, pid, &request, "busy", started);
                    }
                    continue;
                };
                // Progress frames are best effort: a peer that went away
                // does not stop an update midway (it finishes, or never
                // starts — never half).
                // All of them together may spend PROGRESS_BUDGET of the
                // update's time in sending, not a write timeout each: after
                // the first that fails or the budget, none is sent. The
                // budget counts time spent sending only, never the steps'
                // own time: a slow update still shows every step.
                let mut spent = std::time::Duration::ZERO;
                let mut peer_reading = true;
                let mut progress = |step| {
                    tracing::info!(conn = conn.id, step = ?step, "step");
                    let left = PROGRESS_BUDGET.saturating_sub(spent);
                    if !peer_reading || left.is_zero() {
                        peer_reading = false;
                        return;
                    }
                    let _ = conn.stream.set_send_timeout(Some(left));
                    let sending = Instant::now();
                    peer_reading = server::send(conn.stream, &Reply::Progress(step)).is_ok();
                    spent += sending.elapsed();
                };
                let reply = if route == Route::Check {
                    family::check(helper, &mut progress).map(Reply::Check)
                } else {
                    family::update(helper, &mut progress).map(Reply::Updated)
                }
                .unwrap_or_else(Reply::Failed);
                let _ = conn
                    .stream
                    .set_send_timeout(Some(helper.limits.write_timeout));
                let outcome = outcome_of(&reply);
                // Logged before the answer, so the log never lags behind
                // what the agent already printed.
                log_request(uid, pid, &request, &outcome, started);
                if matches!(&reply, Reply::Updated(r) if r.helper_restarting) {
                    // Keep the lock through the answer and the exit: no
                    // other update may start in a process about to end.
                    conn.send(&reply);
                    tracing::info!(
                        "a package changed: exiting so the next connection runs the new helper"
                    );
                    helper.exit(0);
                }
                // Released before the answer: a client that sends its
                // next request as soon as it reads this one (Check, then
                // Update) must not find the lock still held.
                drop(exclusive);
                if !conn.send(&reply) {
                    return;
                }
                continue;
            }
        };
        // Check and Update are logged above, always: the audit lines.
        if log.note(uid, PeerEvent::Routine) {
            log_request(uid, pid, &request, &outcome, started);
        }
        if !keep_open {
            return;
        }
    }
}

fn outcome_of(reply: &Reply) -> String {
    match reply {
        Reply::Failed(f) => format!("failed: {f}"),
        Reply::Updated(r) if r.changes.is_empty() => "up to date".into(),
        Reply::Updated(r) => format!("updated {} package(s)", r.changes.len()),
        Reply::Check(c) if c.update_available() => "update available".into(),
        Reply::Check(_) => "up to date".into(),
        Reply::Confirmed(c) => c.to_string(),
        _ => "ok".into(),
    }
}

fn log_request(uid: u32, pid: Option<i32>, request: &Request, outcome: &str, started: Instant) {
    tracing::info!(
        peer_uid = uid,
        peer_pid = pid,
        request = request.name(),
        outcome,
        duration_ms = started.elapsed().as_millis() as u64,
        "request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_exactly_as_documented() {
        use Route::*;
        let ours = Request::Hello {
            protocol: PROTOCOL_VERSION,
        };
        let other = Request::Hello {
            protocol: PROTOCOL_VERSION + 1,
        };
        // Every state against every request: a row per state, a column per
        // request.
        let requests = [
            ours,
            other,
            Request::Status,
            Request::Check,
            Request::Update,
            Request::Confirm,
        ];
        #[rustfmt::skip]
        let table = [
            //                      ours        other        Status      Check       Update      Confirm
            (State::AwaitingHello, [Welcome,    Unsupported, OutOfOrder, OutOfOrder, OutOfOrder, OutOfOrder]),
            (State::Ready,         [OutOfOrder, OutOfOrder,  Status,     Check,      Update,     Confirm]),
        ];
        for (state, routes) in table {
            for (req, want) in requests.iter().zip(routes) {
                assert_eq!(route(state, req), want, "{state:?} {req:?}");
            }
        }
    }
}
