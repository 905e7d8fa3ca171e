//! Calling the kernel: through the daemon's socket when one is running, or in-process through the
//! same [`Service`] when none is. Either way a call is one request and one response.
//!
//! A daemon closes a connection that stays idle past its idle timeout (`--rpc-idle-timeout`), so
//! a long-lived client (the watcher) looks before each request whether its connection was closed
//! and, if so, connects again. Closing happens only between requests — never once a request's
//! first byte has arrived — so a request sent on a fresh connection is never one the daemon
//! already read.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ciborium::value::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::protocol::{read_frame, write_frame, Request, Response};
use super::service::Service;
use super::SOCKET;
use crate::cbor;
use crate::command::Operation;
use crate::error::{Error, Result};
use crate::repo::Repository;

/// A connection to the kernel.
pub enum Kernel {
    /// A running daemon.
    Daemon {
        /// The connection.
        stream: UnixStream,
        /// The socket's path, to connect again after the daemon closed an idle connection.
        socket: PathBuf,
        /// Logical clock of this client.
        ts: u64,
    },
    /// No daemon: the operations run in this process.
    InProcess {
        /// The dispatcher.
        service: Service,
        /// Logical clock of this client.
        ts: u64,
    },
}

impl Kernel {
    /// Connects to the universe containing `start`: its daemon if one answers, else in-process.
    pub fn connect(start: &Path) -> Result<Kernel> {
        let repo = Repository::discover(start)?;
        let socket = repo.jit_dir().join(SOCKET);
        match UnixStream::connect(&socket) {
            Ok(stream) => Ok(Kernel::Daemon {
                stream,
                socket,
                ts: 0,
            }),
            // A daemon runs but does not let this user in: say so, rather than go around it.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(Error::io(&socket, e))
            }
            Err(_) => Ok(Kernel::InProcess {
                service: Service::new(Arc::new(repo)),
                ts: 0,
            }),
        }
    }

    /// Connects to a daemon's socket directly (no fallback).
    pub fn daemon(socket: &Path) -> Result<Kernel> {
        let stream = UnixStream::connect(socket).map_err(|e| Error::io(socket, e))?;
        Ok(Kernel::Daemon {
            stream,
            socket: socket.to_path_buf(),
            ts: 0,
        })
    }

    /// The repository when the kernel runs in this process (for direct reads, which must not
    /// open the same LMDB environment a second time); `None` through a daemon.
    pub fn local_repo(&self) -> Option<&Repository> {
        match self {
            Kernel::Daemon { .. } => None,
            Kernel::InProcess { service, .. } => Some(service.repo()),
        }
    }

    /// Whether calls go to a daemon.
    pub fn is_daemon(&self) -> bool {
        matches!(self, Kernel::Daemon { .. })
    }

    /// Sends one request; an error response becomes [`Error::Remote`].
    pub fn call(&mut self, op: Operation, payload: Value) -> Result<Value> {
        let response = match self {
            Kernel::Daemon { stream, socket, ts } => {
                match waiting(stream) {
                    Waiting::Nothing => {}
                    Waiting::Closed => {
                        tracing::debug!(socket = %socket.display(), "the daemon closed an idle connection: connecting again");
                        *stream =
                            UnixStream::connect(&*socket).map_err(|e| Error::io(&*socket, e))?;
                    }
                    // The daemon answered before being asked: it refused the connection
                    // (`permission_denied`, `too_many_connections`) and closes it. That refusal
                    // is this call's answer.
                    Waiting::Bytes => return answer(read_answer(stream)?),
                }
                *ts += 1;
                let request = Request {
                    op: op.as_str().to_owned(),
                    payload,
                    ts: *ts,
                };
                if let Err(error) = write_frame(stream, &request.encode()?) {
                    // A refusal sent on accept may be waiting behind a closed connection.
                    return match read_answer(stream) {
                        Ok(refusal) => answer(refusal),
                        Err(_) => Err(error),
                    };
                }
                read_answer(stream)?
            }
            Kernel::InProcess { service, ts } => {
                *ts += 1;
                service.handle(Request {
                    op: op.as_str().to_owned(),
                    payload,
                    ts: *ts,
                })
            }
        };
        answer(response)
    }

    /// A typed call: serializes `args`, deserializes the result.
    pub fn invoke<A: Serialize, R: DeserializeOwned>(
        &mut self,
        op: Operation,
        args: &A,
    ) -> Result<R> {
        let result = self.call(op, cbor::to_value(args)?)?;
        Ok(cbor::from_value(result)?)
    }
}

/// A response as this call's result: an error response becomes [`Error::Remote`].
fn answer(response: Response) -> Result<Value> {
    match response {
        Response::Ok(result) => Ok(result),
        Response::Err(body) => Err(Error::Remote {
            code: body.code,
            message: body.message,
            details: body.details,
        }),
    }
}

/// Reads the next answer on `stream`.
fn read_answer(stream: &mut UnixStream) -> Result<Response> {
    let body = read_frame(stream)?
        .ok_or_else(|| Error::InvalidInput("the daemon closed the connection".into()))?;
    Ok(Response::decode(&body)?)
}

/// What is waiting to be read on a connection between calls.
enum Waiting {
    /// Nothing: the connection is idle and open.
    Nothing,
    /// The end of the stream (the daemon closed an idle connection) or an error.
    Closed,
    /// Bytes nobody asked for: a refusal the daemon sent before closing.
    Bytes,
}

/// Looks at what is waiting on `stream`, without waiting and without consuming it.
fn waiting(stream: &UnixStream) -> Waiting {
    use nix::errno::Errno;
    use nix::sys::socket::{recv, MsgFlags};
    use std::os::fd::AsRawFd;

    let mut byte = [0u8; 1];
    let fd = stream.as_fd();
    match recv(
        fd.as_raw_fd(),
        &mut byte,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Err(Errno::EAGAIN) | Err(Errno::EINTR) => Waiting::Nothing,
        Ok(0) | Err(_) => Waiting::Closed,
        Ok(_) => Waiting::Bytes,
    }
}
