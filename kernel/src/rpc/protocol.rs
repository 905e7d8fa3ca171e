//! The RPC wire format (RFC-0007): every frame is a 4-byte big-endian length followed by that
//! many bytes of canonical CBOR.
//!
//! - Request: `{op: text, payload: any, ts: uint}` — `ts` is the caller's logical clock.
//! - Response: `{status: "ok", result: any}` or
//!   `{status: "error", error: {code: text, message: text, details?: any}}`.
//!
//! Error codes are stable (see [`crate::Error::code`], plus `bad_request`, `unknown_op`,
//! `frame_too_large` and `merge_conflict`, whose `details` list the conflicts).

use std::io::{Read, Write};

use ciborium::value::Value;

use crate::cbor::{self, fields};
use crate::error::{Error, Result};

/// Largest frame accepted in either direction (a patch with inline content can be large).
pub const MAX_FRAME: usize = 64 << 20;

/// A request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The operation, e.g. `shadow.apply_patch`.
    pub op: String,
    /// Its arguments.
    pub payload: Value,
    /// The caller's logical timestamp.
    pub ts: u64,
}

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub code: String,
    /// One-line human message.
    pub message: String,
    /// Structured details (conflicts, for `merge_conflict`).
    pub details: Option<Value>,
}

/// A response.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// The operation succeeded.
    Ok(Value),
    /// The operation was refused or failed; nothing was changed.
    Err(ErrorBody),
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

impl Request {
    /// Canonical bytes of the request.
    pub fn encode(&self) -> Result<Vec<u8>> {
        Ok(cbor::encode(&Value::Map(vec![
            (text("op"), text(&self.op)),
            (text("payload"), self.payload.clone()),
            (text("ts"), Value::Integer(self.ts.into())),
        ]))?)
    }

    /// Parses canonical request bytes.
    pub fn decode(bytes: &[u8]) -> Result<Request> {
        let value = cbor::decode(bytes)?;
        let map = fields::as_map(&value, "request")?;
        fields::only(map, &["op", "payload", "ts"])?;
        Ok(Request {
            op: fields::as_text(fields::require(map, "op")?, "op")?.to_owned(),
            payload: fields::require(map, "payload")?.clone(),
            ts: match fields::get(map, "ts") {
                Some(ts) => fields::as_u64(ts, "ts")?,
                None => 0,
            },
        })
    }
}

impl Response {
    /// The answer for a kernel error.
    pub fn from_error(error: &Error) -> Response {
        Response::Err(ErrorBody {
            code: error.code().to_owned(),
            message: error.to_string(),
            details: None,
        })
    }

    /// Canonical bytes of the response.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let value = match self {
            Response::Ok(result) => Value::Map(vec![
                (text("status"), text("ok")),
                (text("result"), result.clone()),
            ]),
            Response::Err(e) => {
                let mut error = vec![
                    (text("code"), text(&e.code)),
                    (text("message"), text(&e.message)),
                ];
                if let Some(details) = &e.details {
                    error.push((text("details"), details.clone()));
                }
                Value::Map(vec![
                    (text("status"), text("error")),
                    (text("error"), Value::Map(error)),
                ])
            }
        };
        Ok(cbor::encode(&value)?)
    }

    /// Parses canonical response bytes.
    pub fn decode(bytes: &[u8]) -> Result<Response> {
        let value = cbor::decode(bytes)?;
        let map = fields::as_map(&value, "response")?;
        match fields::as_text(fields::require(map, "status")?, "status")? {
            "ok" => Ok(Response::Ok(fields::require(map, "result")?.clone())),
            "error" => {
                let error = fields::as_map(fields::require(map, "error")?, "error")?;
                Ok(Response::Err(ErrorBody {
                    code: fields::as_text(fields::require(error, "code")?, "code")?.to_owned(),
                    message: fields::as_text(fields::require(error, "message")?, "message")?
                        .to_owned(),
                    details: fields::get(error, "details").cloned(),
                }))
            }
            other => Err(Error::InvalidInput(format!(
                "unknown response status {other:?}"
            ))),
        }
    }
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
