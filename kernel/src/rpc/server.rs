//! The daemon's RPC server: one Unix socket in `.jit/`, one task per connection, kernel work on
//! tokio's blocking pool (LMDB calls block). One daemon per universe, enforced by an exclusive
//! lock on `.jit/daemon.lock` that the OS drops when the process dies — so a killed daemon never
//! blocks the next start, which removes the stale socket and binds again.

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::protocol::{ErrorBody, Request, Response, MAX_FRAME};
use super::service::Service;
use super::{LOCK, SOCKET};
use crate::error::{Error, Result};

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
        crate::filelock::exclusive(&file, &path, || {
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
    /// live daemon owns it).
    pub fn bind(&self) -> Result<UnixListener> {
        match std::fs::remove_file(&self.socket) {
            Ok(()) => tracing::info!(socket = %self.socket.display(), "removed a stale socket"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&self.socket, e)),
        }
        UnixListener::bind(&self.socket).map_err(|e| Error::io(&self.socket, e))
    }
}

impl Drop for DaemonLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Serves `service` on `listener` until `shutdown` completes.
pub async fn serve(service: Service, listener: UnixListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let service = service.clone();
                    tokio::spawn(async move {
                        if let Err(error) = connection(service, stream).await {
                            tracing::debug!(%error, "connection ended");
                        }
                    });
                }
                Err(error) => tracing::warn!(%error, "accept failed"),
            }
        }
    }
}

fn error_response(code: &str, message: String) -> Response {
    Response::Err(ErrorBody {
        code: code.into(),
        message,
        details: None,
    })
}

async fn connection(service: Service, mut stream: UnixStream) -> Result<()> {
    let io = |e| Error::io("<rpc socket>", e);
    loop {
        let mut len = [0u8; 4];
        match stream.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(io(e)),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            // The body cannot be skipped safely; answer and close the connection.
            let answer = error_response(
                "frame_too_large",
                format!("request of {len} bytes exceeds {MAX_FRAME}"),
            );
            write(&mut stream, &answer).await?;
            return Ok(());
        }
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await.map_err(io)?;
        let response = match Request::decode(&body) {
            Ok(request) => {
                let service = service.clone();
                tokio::task::spawn_blocking(move || service.handle(request))
                    .await
                    .unwrap_or_else(|e| {
                        error_response("internal", format!("operation panicked: {e}"))
                    })
            }
            Err(e) => error_response("bad_request", e.to_string()),
        };
        write(&mut stream, &response).await?;
    }
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
