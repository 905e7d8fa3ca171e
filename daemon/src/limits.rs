//! What one RPC connection, and all of them together, may hold: timeouts, a connection cap and a
//! budget of bytes in flight. The server charges every frame to the budget before it allocates
//! for it (its announced length) and again before it decodes it (what the decoded values will
//! take), so memory stays bounded however many hostile connections send however large or slow
//! frames — a frame that does not fit waits for its share until its read deadline, then gets
//! `busy`.
//!
//! Frames up to [`SMALL_FRAME`] bytes are charged to a pool of their own, which large frames
//! cannot take: ordinary requests are served while large ones wait for room.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Frames up to this many bytes draw on the small-frame pool.
pub const SMALL_FRAME: usize = 64 << 10;

/// Bytes one decoded CBOR item may take in memory (a `Value` and its share of a container).
pub fn value_cost() -> usize {
    std::mem::size_of::<ciborium::value::Value>() + 16
}

/// The server's limits. [`Limits::default`] is what `jit up` uses unless told otherwise.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A connection with no frame started for this long is closed.
    pub idle_timeout: Duration,
    /// A frame must arrive whole within this long of its first byte, else the connection is
    /// closed.
    pub read_timeout: Duration,
    /// Connections served at once; more are answered `too_many_connections` and closed.
    pub max_connections: usize,
    /// Bytes that large frames may hold at once (received bytes plus their decoded values).
    pub budget: usize,
    /// Bytes that small frames may hold at once.
    pub small_budget: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            idle_timeout: Duration::from_secs(300),
            read_timeout: Duration::from_secs(30),
            max_connections: 256,
            budget: 256 << 20,
            small_budget: 32 << 20,
        }
    }
}

/// The shared pools a frame's bytes are charged to.
#[derive(Clone)]
pub struct Budget {
    large: Arc<Semaphore>,
    small: Arc<Semaphore>,
    large_total: usize,
    small_total: usize,
}

/// Why a charge was not granted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// More than the whole pool: it can never fit.
    TooLarge,
}

impl Budget {
    /// Pools of the sizes `limits` names.
    pub fn new(limits: &Limits) -> Budget {
        let clamp = |n: usize| n.min(Semaphore::MAX_PERMITS).min(u32::MAX as usize);
        let large_total = clamp(limits.budget);
        let small_total = clamp(limits.small_budget.max(SMALL_FRAME));
        Budget {
            large: Arc::new(Semaphore::new(large_total)),
            small: Arc::new(Semaphore::new(small_total)),
            large_total,
            small_total,
        }
    }

    /// Size of the pool a frame of `frame_len` bytes draws on.
    pub fn pool_size(&self, frame_len: usize) -> usize {
        if frame_len <= SMALL_FRAME {
            self.small_total
        } else {
            self.large_total
        }
    }

    /// Waits for `bytes` of the pool that a frame of `frame_len` bytes draws on. The permit
    /// gives them back when dropped.
    pub async fn charge(
        &self,
        frame_len: usize,
        bytes: usize,
    ) -> std::result::Result<OwnedSemaphorePermit, Refused> {
        let (pool, total) = if frame_len <= SMALL_FRAME {
            (&self.small, self.small_total)
        } else {
            (&self.large, self.large_total)
        };
        if bytes > total {
            return Err(Refused::TooLarge);
        }
        // `bytes <= total <= u32::MAX`, and the semaphore is never closed.
        pool.clone()
            .acquire_many_owned(bytes as u32)
            .await
            .map_err(|_| Refused::TooLarge)
    }
}
