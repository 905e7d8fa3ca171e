//! The RPC wire format (RFC-0007): every frame is a 4-byte big-endian length followed by that
//! many bytes of canonical CBOR.
//!
//! The request and response envelopes are `jit_proto::message`'s; the codes are
//! `jit_proto::Code` (`docs/codes.md`).

use std::io::{Read, Write};

use crate::error::{Error, Result};

/// Largest frame accepted in either direction (a patch with inline content can be large).
pub const MAX_FRAME: usize = 64 << 20;

pub use jit_proto::message::{ErrorBody, Request, Response};

/// The answer for a kernel error: its code and message; a merge conflict's details list the
/// conflicts, and an error answered by another kernel goes on as it came.
pub fn error_response(error: &Error) -> Response {
    let body = match error {
        Error::Remote {
            code,
            message,
            details,
        } => ErrorBody {
            code: code.clone(),
            message: message.clone(),
            details: details.clone(),
        },
        other => ErrorBody {
            code: other.code().as_str().to_owned(),
            message: other.to_string(),
            details: match other {
                Error::MergeConflict(conflicts) => crate::cbor::to_value(conflicts).ok(),
                _ => None,
            },
        },
    };
    Response::Err(body)
}

/// Writes one frame.
pub fn write_frame(writer: &mut impl Write, body: &[u8]) -> Result<()> {
    if body.len() > MAX_FRAME {
        return Err(Error::InvalidInput(format!(
            "frame of {} bytes exceeds {MAX_FRAME}",
            body.len()
        )));
    }
    let io = |e| Error::io("<rpc socket>", e);
    writer
        .write_all(&(body.len() as u32).to_be_bytes())
        .map_err(io)?;
    writer.write_all(body).map_err(io)?;
    writer.flush().map_err(io)
}

/// Reads one frame; `None` at a clean end of stream.
pub fn read_frame(reader: &mut impl Read) -> Result<Option<Vec<u8>>> {
    let io = |e| Error::io("<rpc socket>", e);
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io(e)),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(Error::InvalidInput(format!(
            "frame of {len} bytes exceeds {MAX_FRAME}"
        )));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).map_err(io)?;
    Ok(Some(body))
}
