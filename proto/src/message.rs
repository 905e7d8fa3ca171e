//! Request and response envelopes (RFC-0007), shared by the RPC and, for answers, the plane:
//!
//! - Request: `{op: text, payload: any, ts: uint}` — `ts` is the caller's logical clock.
//! - Response: `{status: "ok", result: any}` or
//!   `{status: "error", error: {code: text, message: text, details?: any}}`; the code is one of
//!   [`crate::Code`] (`merge_conflict`'s `details` list the conflicts).

use ciborium::value::Value;

use crate::cbor::{self, fields, CborError};
use crate::code::Code;

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
    pub fn encode(&self) -> Result<Vec<u8>, CborError> {
        cbor::encode(&Value::Map(vec![
            (text("op"), text(&self.op)),
            (text("payload"), self.payload.clone()),
            (text("ts"), Value::Integer(self.ts.into())),
        ]))
    }

    /// Parses canonical request bytes.
    pub fn decode(bytes: &[u8]) -> Result<Request, CborError> {
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
    /// Canonical bytes of the response.
    pub fn encode(&self) -> Result<Vec<u8>, CborError> {
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
        cbor::encode(&value)
    }

    /// Parses canonical response bytes.
    pub fn decode(bytes: &[u8]) -> Result<Response, CborError> {
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
            other => Err(CborError::Schema(format!(
                "unknown response status {other:?}"
            ))),
        }
    }
}

impl ErrorBody {
    /// An error answer with `code` and `message`, without details.
    pub fn new(code: Code, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code: code.as_str().to_owned(),
            message: message.into(),
            details: None,
        }
    }

    /// The code, if this build knows it (a newer peer may send one it does not).
    pub fn known_code(&self) -> Option<Code> {
        Code::parse(&self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_round_trip() {
        let request = Request {
            op: "status".into(),
            payload: Value::Map(vec![]),
            ts: 9,
        };
        assert_eq!(
            Request::decode(&request.encode().expect("enc")).expect("dec"),
            request
        );
        for response in [
            Response::Ok(Value::Integer(1.into())),
            Response::Err(ErrorBody::new(Code::Stale, "old")),
            Response::Err(ErrorBody {
                details: Some(Value::Array(vec![])),
                ..ErrorBody::new(Code::MergeConflict, "conflicts")
            }),
        ] {
            assert_eq!(
                Response::decode(&response.encode().expect("enc")).expect("dec"),
                response
            );
        }
        let bogus = cbor::encode(&Value::Map(vec![(text("status"), text("maybe"))])).expect("enc");
        assert!(Response::decode(&bogus).is_err());
    }
}
