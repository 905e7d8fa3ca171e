//! Reading RPC frames from an untrusted peer without trusting it: the announced length is checked
//! before anything is allocated, the body grows only as its bytes arrive (a peer that announces
//! 64 MiB and stalls holds what it sent, not what it announced), and [`items`] counts what a
//! body would decode to — walking its CBOR heads, allocating nothing — so the server can refuse
//! or charge for it before decoding.

use tokio::io::{AsyncRead, AsyncReadExt};

pub use jit_proto::cbor::shape::{items, ShapeError};

/// The body grows by at most this much per step.
const STEP: usize = 256 << 10;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced length is over the limit.
    #[error("frame of {len} bytes exceeds {max}")]
    TooLarge {
        /// Announced.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("the connection ended inside a frame")]
    Truncated,
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads a frame's 4-byte length; `None` at a clean end of stream. A length over `max` is
/// refused before anything is allocated.
pub async fn read_len<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<usize>, FrameError> {
    let mut head = [0u8; 4];
    let mut filled = 0;
    while filled < head.len() {
        match reader.read(&mut head[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(FrameError::Truncated),
            n => filled += n,
        }
    }
    let len = u32::from_be_bytes(head) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(Some(len))
}

/// Reads a body of `len` bytes, growing the buffer only as bytes arrive: its capacity never
/// exceeds `len`, nor twice what was received plus one step.
pub async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    len: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut body: Vec<u8> = Vec::new();
    while body.len() < len {
        if body.len() == body.capacity() {
            let grow = body.capacity().clamp(STEP, STEP * 16).min(len - body.len());
            body.reserve_exact(grow);
        }
        let room = body.capacity() - body.len();
        let start = body.len();
        body.resize(start + room, 0);
        let n = reader.read(&mut body[start..]).await?;
        body.truncate(start + n);
        if n == 0 {
            return Err(FrameError::Truncated);
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads every frame from `bytes` as the server does (length, body, item count), with a
    /// frame limit of `max`: returns the largest buffer capacity seen.
    fn read_all(bytes: &[u8], max: usize) -> usize {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut reader = bytes;
            let mut largest = 0;
            loop {
                let len = match read_len(&mut reader, max).await {
                    Ok(Some(len)) => len,
                    Ok(None) | Err(_) => return largest,
                };
                assert!(len <= max);
                match read_body(&mut reader, len).await {
                    Ok(body) => {
                        assert_eq!(body.len(), len);
                        largest = largest.max(body.capacity());
                        if let Ok(count) = items(&body, 1 << 16) {
                            assert!(count <= body.len());
                            // What passed the shape check decodes without trouble.
                            let _ = jit_proto::cbor::decode(&body);
                        }
                    }
                    Err(_) => return largest,
                }
            }
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Arbitrary bytes never panic the frame reader, and it never holds more than the
        /// frame limit.
        #[test]
        fn arbitrary_bytes_never_panic_nor_allocate_beyond_the_limit(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096),
            max in 0usize..2048,
        ) {
            let largest = read_all(&bytes, max);
            proptest::prop_assert!(largest <= max);
        }

        /// Frames whose lengths are plausible (so bodies are read) with arbitrary CBOR-ish
        /// bodies: the same, and the item count never panics.
        #[test]
        fn framed_arbitrary_bodies_never_panic(
            bodies in proptest::collection::vec(
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), 0..8),
            cut in 0usize..64,
        ) {
            let mut bytes = Vec::new();
            for body in &bodies {
                bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
                bytes.extend_from_slice(body);
            }
            bytes.truncate(bytes.len().saturating_sub(cut));
            let largest = read_all(&bytes, 512);
            proptest::prop_assert!(largest <= 512);
        }
    }
}
