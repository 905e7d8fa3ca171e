//! The daemon's RPC server: one Unix socket in `.jit/` (0600, peers checked by
//! [`crate::access`]), one task per connection within [`crate::limits`], kernel work on tokio's
//! blocking pool (LMDB calls block). One daemon per universe, enforced by an exclusive
//! lock on `.jit/daemon.lock` that the OS drops when the process dies — so a killed daemon never
//! blocks the next start, which removes the stale socket and binds again.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout, timeout_at, Instant};

use crate::access::Access;
use crate::frame::{self, FrameError, ShapeError};
use crate::limits::{value_cost, Budget, Limits, Refused};
use jit_kernel::rpc::protocol::{ErrorBody, Request, Response, MAX_FRAME};
use jit_kernel::rpc::service::Service;
use jit_kernel::rpc::{LOCK, SOCKET};
use jit_kernel::{Code, Error, Result};

/// How long a refused or dropped peer gets to take its last answer.
const REFUSE_WRITE: Duration = Duration::from_millis(500);

/// Proof that this process is the universe's one daemon; the lock lasts as long as this value.
pub struct DaemonLock {
    _file: File,
    socket: PathBuf,
}

impl DaemonLock {
    /// Takes the daemon lock of the universe whose metadata is in `jit_dir`.
    pub fn acquire(jit_dir: &Path) -> Result<DaemonLock> {
        let path = jit_dir.join(LOCK);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        jit_kernel::filelock::exclusive(&file, &path, || {
            format!(
                "another jit daemon is already running for {}",
                jit_dir.display()
            )
        })?;
        Ok(DaemonLock {
            _file: file,
            socket: jit_dir.join(SOCKET),
        })
    }

    /// The socket path this daemon serves.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Binds the socket, replacing a stale one left by a dead daemon (we hold the lock, so no
    /// live daemon owns it). The socket is made inside a fresh 0700 directory, set to 0600 (0660
    /// and the group's, with an allowed group) and
    /// only then renamed into place, so whatever the umask there is no moment at which another
    /// user could connect.
    pub fn bind(&self, access: &Access) -> Result<UnixListener> {
        let dir = self.socket.with_extension("sock.d");
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&dir, e)),
        }
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(&dir, e))?;
        let private = dir.join("s");
        let listener = UnixListener::bind(&private).map_err(|e| Error::io(&private, e))?;
        let mode = match access.group() {
            Some(gid) => {
                std::os::unix::fs::chown(&private, None, Some(gid))
                    .map_err(|e| Error::io(&private, e))?;
                0o660
            }
            None => 0o600,
        };
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::io(&private, e))?;
        if std::fs::symlink_metadata(&self.socket).is_ok() {
            tracing::info!(socket = %self.socket.display(), "replacing a stale socket");
        }
        std::fs::rename(&private, &self.socket).map_err(|e| Error::io(&self.socket, e))?;
        std::fs::remove_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(listener)
    }
}

impl Drop for DaemonLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// How the server serves: its limits and whom it lets in.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Timeouts, connection cap, bytes in flight.
    pub limits: Limits,
    /// The peers allowed to connect.
    pub access: Access,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            limits: Limits::default(),
            access: Access::owner_only(),
        }
    }
}

/// Serves `service` on `listener` until `shutdown` completes.
pub async fn serve(
    service: Service,
    listener: UnixListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let limits = Arc::new(options.limits);
    let budget = Budget::new(&limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Err(answer) = admit(&options.access, &stream) {
                        refuse(stream, answer);
                        continue;
                    }
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(max = limits.max_connections, "refused a connection: too many connections");
                        refuse(stream, error_response(
                            Code::TooManyConnections,
                            format!("the daemon serves at most {} connections at once", limits.max_connections),
                        ));
                        continue;
                    };
                    let service = service.clone();
                    let limits = limits.clone();
                    let budget = budget.clone();
                    tokio::spawn(async move {
                        if let Err(error) = connection(service, stream, &limits, &budget).await {
                            tracing::debug!(%error, "connection ended");
                        }
                        drop(slot);
                    });
                }
                Err(error) => {
                    // Out of descriptors, typically: wait a little rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// Lets the peer in, or says why not (and logs it).
fn admit(access: &Access, stream: &UnixStream) -> std::result::Result<(), Response> {
    match stream.peer_cred() {
        Ok(cred) if access.allows(cred.uid(), cred.gid()) => Ok(()),
        Ok(cred) => {
            tracing::warn!(
                uid = cred.uid(),
                gid = cred.gid(),
                pid = cred.pid(),
                "refused a connection from a user not allowed to use this universe"
            );
            Err(error_response(
                Code::PermissionDenied,
                format!(
                    "uid {} may not use this universe's daemon (only its owner, root or an allowed group)",
                    cred.uid()
                ),
            ))
        }
        Err(error) => {
            tracing::warn!(%error, "refused a connection whose peer cannot be identified");
            Err(error_response(
                Code::PermissionDenied,
                format!("cannot identify the peer: {error}"),
            ))
        }
    }
}

/// Answers a refused connection if its socket takes the answer at once, and closes it (a fresh
/// connection's buffer always has room for it; nothing waits on a peer that was refused).
fn refuse(stream: UnixStream, answer: Response) {
    if let Ok(body) = answer.encode() {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        let _ = stream.try_write(&frame);
    }
}

fn error_response(code: Code, message: String) -> Response {
    Response::Err(ErrorBody::new(code, message))
}

/// Serves one connection: frames in, answers out, in order, within the limits.
async fn connection(
    service: Service,
    mut stream: UnixStream,
    limits: &Limits,
    budget: &Budget,
) -> Result<()> {
    let io = |e| Error::io("<rpc socket>", e);
    loop {
        // Idle until the next frame's first byte.
        let mut first = [0u8; 1];
        match tokio::time::timeout(limits.idle_timeout, stream.read(&mut first)).await {
            Err(_) => {
                tracing::debug!("closing an idle connection");
                return Ok(());
            }
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(io(e)),
        }
        // From its first byte, the whole frame has `read_timeout` to arrive.
        let deadline = Instant::now() + limits.read_timeout;
        let late = || {
            tracing::warn!(
                timeout = ?limits.read_timeout,
                "dropped a connection whose frame did not arrive in time"
            );
            error_response(
                Code::Timeout,
                format!("the frame did not arrive within {:?}", limits.read_timeout),
            )
        };
        let mut head = (&first[..]).chain(&mut stream);
        let len = match timeout_at(deadline, frame::read_len(&mut head, MAX_FRAME)).await {
            Err(_) => return answer_and_close(stream, late()).await,
            Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(len))) => len,
            Ok(Err(FrameError::TooLarge { len, max })) => {
                // The body cannot be skipped safely; answer and close the connection.
                let answer = error_response(
                    Code::FrameTooLarge,
                    format!("request of {len} bytes exceeds {max}"),
                );
                return answer_and_close(stream, answer).await;
            }
            Ok(Err(e)) => return Err(frame_error(e)),
        };
        // Its announced bytes are charged before any is read.
        let received = match timeout_at(deadline, budget.charge(len, len)).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(Refused::TooLarge)) => {
                let answer = error_response(
                    Code::FrameTooLarge,
                    format!("request of {len} bytes exceeds what the daemon may hold"),
                );
                return answer_and_close(stream, answer).await;
            }
            Err(_) => return answer_and_close(stream, busy()).await,
        };
        let body = match timeout_at(deadline, frame::read_body(&mut stream, len)).await {
            Err(_) => return answer_and_close(stream, late()).await,
            Ok(Ok(body)) => body,
            Ok(Err(e)) => return Err(frame_error(e)),
        };
        let response = match decode_charge(&body, len, budget, deadline).await {
            Ok(decoded) => {
                let service = service.clone();
                tokio::task::spawn_blocking(move || {
                    let response = match Request::decode(&body) {
                        Ok(request) => service.handle(request),
                        Err(e) => error_response(Code::BadRequest, e.to_string()),
                    };
                    drop((decoded, received));
                    response
                })
                .await
                .unwrap_or_else(|e| {
                    error_response(Code::Internal, format!("operation panicked: {e}"))
                })
            }
            Err(answer) => {
                drop(received);
                answer
            }
        };
        match timeout(limits.read_timeout, write(&mut stream, &response)).await {
            Ok(written) => written?,
            Err(_) => {
                tracing::warn!("dropped a connection that does not read its answers");
                return Ok(());
            }
        }
    }
}

/// Charges what decoding `body` will take, after checking its shape without decoding it.
async fn decode_charge(
    body: &[u8],
    len: usize,
    budget: &Budget,
    deadline: Instant,
) -> std::result::Result<OwnedSemaphorePermit, Response> {
    let cost = value_cost();
    let max_items = budget.pool_size(len) / cost;
    let items = match frame::items(body, max_items) {
        Ok(items) => items,
        Err(ShapeError::TooManyItems(max)) => {
            return Err(error_response(
                Code::TooManyItems,
                format!("the request holds more than {max} CBOR items"),
            ))
        }
        Err(e) => return Err(error_response(Code::BadRequest, e.to_string())),
    };
    match timeout_at(deadline, budget.charge(len, items.saturating_mul(cost))).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(Refused::TooLarge)) => Err(error_response(
            Code::TooManyItems,
            format!("the request's {items} CBOR items exceed what the daemon may hold"),
        )),
        Err(_) => Err(busy()),
    }
}

fn busy() -> Response {
    error_response(
        Code::Busy,
        "the daemon holds as many request bytes as it may; retry".into(),
    )
}

fn frame_error(error: FrameError) -> Error {
    match error {
        FrameError::Io(e) => Error::io("<rpc socket>", e),
        other => Error::InvalidInput(other.to_string()),
    }
}

/// Sends a last answer (if the peer takes it promptly) and ends the connection.
async fn answer_and_close(mut stream: UnixStream, answer: Response) -> Result<()> {
    let _ = tokio::time::timeout(REFUSE_WRITE, write(&mut stream, &answer)).await;
    Ok(())
}

async fn write(stream: &mut UnixStream, response: &Response) -> Result<()> {
    let body = response.encode()?;
    let io = |e| Error::io("<rpc socket>", e);
    stream
        .write_all(&(body.len() as u32).to_be_bytes())
        .await
        .map_err(io)?;
    stream.write_all(&body).await.map_err(io)?;
    stream.flush().await.map_err(io)
}
