//! Stage one of a write: what arrived is checked — size, signature, shape (`jit_proto::verify`
//! against the agent registry) and the sender's rate — and refusals are answered at once; the
//! rest goes on to the deliverer in arrival order.

use std::sync::mpsc;

use jit_kernel::agents;
use jit_kernel::rpc::protocol::{ErrorBody, Response};
use jit_kernel::Repository;
use zenoh::query::Query;

use super::options::{PlaneOptions, MAX_BATCH};
use super::work::{answer, Accepted, Work};
use crate::ratelimit::RateLimiter;

/// A write as it arrived: the query to answer, its key (namespace stripped) and its bytes
/// (none if there are more than [`agents::MAX_MESSAGE`]: it is refused unread).
pub(super) struct Arrived {
    query: Query,
    key: String,
    bytes: Vec<u8>,
    /// The payload's size.
    size: usize,
}

pub(super) fn arrived(namespace: &str, query: Query) -> Arrived {
    let key = strip(namespace, query.key_expr().as_str()).to_owned();
    let size = query.payload().map_or(0, |p| p.len());
    // An oversized payload is not copied: it is refused by its size.
    let bytes = match query.payload() {
        Some(payload) if size <= agents::MAX_MESSAGE => payload.to_bytes().to_vec(),
        _ => Vec::new(),
    };
    Arrived {
        query,
        key,
        bytes,
        size,
    }
}

/// Receives everything queued on `rx` behind `first`, up to `limit` items in all.
fn drain<T>(rx: &mpsc::Receiver<Vec<T>>, mut first: Vec<T>, limit: usize) -> Vec<T> {
    while first.len() < limit {
        match rx.try_recv() {
            Ok(more) => first.extend(more),
            Err(_) => break,
        }
    }
    first
}

/// Signatures, shapes and rate limits; refusals are answered here, the rest go on in order.
/// A refusal's audit record is queued for the deliverer before the refusal is answered, so a
/// settle that follows the answer finds the record committed.
pub(super) fn verify_stage(
    repo: &Repository,
    options: &PlaneOptions,
    arrived: mpsc::Receiver<Vec<Arrived>>,
    accepted: mpsc::Sender<Work>,
) {
    let mut limiter = RateLimiter::new(options.rate, options.burst);
    while let Ok(first) = arrived.recv() {
        let batch = drain(&arrived, first, MAX_BATCH);
        let mut refused = Vec::new();
        let mut answers = Vec::new();
        let batch: Vec<Arrived> = batch
            .into_iter()
            .filter_map(|arrived| {
                if arrived.size <= agents::MAX_MESSAGE {
                    return Some(arrived);
                }
                let refusal = Response::Err(ErrorBody {
                    code: jit_kernel::Code::TooLarge.as_str().to_owned(),
                    message: format!(
                        "message of {} bytes exceeds {}",
                        arrived.size,
                        agents::MAX_MESSAGE
                    ),
                    details: None,
                });
                answers.push((arrived.query, refusal.clone()));
                refused.push((arrived.key, None, refusal));
                None
            })
            .collect();
        let messages: Vec<(&str, &[u8])> = batch
            .iter()
            .map(|a| (a.key.as_str(), a.bytes.as_slice()))
            .collect();
        let verdicts = agents::check_all(repo.store(), &messages);
        let mut passed = Vec::with_capacity(batch.len());
        for (
            Arrived {
                query, key, bytes, ..
            },
            verdict,
        ) in batch.into_iter().zip(verdicts)
        {
            match verdict {
                Err(agents::Refused { response, sender }) => {
                    answers.push((query, response.clone()));
                    refused.push((key, sender, response));
                }
                Ok(verified) if !limiter.allow(&verified.envelope.sender) => {
                    let refusal = Response::Err(ErrorBody {
                        code: jit_kernel::Code::RateLimited.as_str().to_owned(),
                        message: format!("{} is over its rate limit", verified.envelope.sender),
                        details: None,
                    });
                    answers.push((query, refusal.clone()));
                    refused.push((key, Some(verified.envelope.sender), refusal));
                }
                Ok(verified) => passed.push(Accepted {
                    query,
                    key,
                    bytes,
                    verified,
                }),
            }
        }
        let stopped = !refused.is_empty() && accepted.send(Work::Audit(refused)).is_err();
        for (query, refusal) in &answers {
            answer(query, refusal);
        }
        if stopped {
            break;
        }
        if !passed.is_empty() && accepted.send(Work::Deliver(passed)).is_err() {
            break;
        }
    }
}

fn strip<'k>(namespace: &str, key: &'k str) -> &'k str {
    if namespace.is_empty() {
        return key;
    }
    key.strip_prefix(namespace.trim_end_matches('/'))
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(key)
}
