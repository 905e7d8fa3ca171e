//! The RPC's side of the command layer: a request's `op` text becomes an [`Operation`] (the
//! one parser of names is in `jit-proto`), its payload a [`crate::command::Command`], run for a
//! local caller; the answer or the error goes back as a [`Response`]. Every operation's payload
//! and answer is listed in `docs/rpc.md`.

use std::sync::Arc;

use super::protocol::{Request, Response};
use crate::command::{self, Caller, Operation};
use crate::error::{Error, Result};
use crate::repo::Repository;

/// Serves RPC requests against one repository.
#[derive(Clone)]
pub struct Service {
    repo: Arc<Repository>,
}

impl Service {
    /// A service for `repo`.
    pub fn new(repo: Arc<Repository>) -> Service {
        Service { repo }
    }

    /// The repository served.
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// Handles one request. Never panics on input; every failure is an error response (a merge
    /// conflict's lists the conflicts in its details).
    pub fn handle(&self, request: Request) -> Response {
        match self.run(request) {
            Ok(result) => Response::Ok(result),
            Err(error) => crate::rpc::protocol::error_response(&error),
        }
    }

    fn run(&self, request: Request) -> Result<ciborium::value::Value> {
        let operation = Operation::parse(&request.op)
            .ok_or_else(|| Error::InvalidInput(format!("unknown operation {:?}", request.op)))?;
        // The payload moves into the command: a `shadow.stage` of 64 MiB is not copied.
        command::run(&self.repo, &Caller::Local, operation, request.payload)
    }
}
