//! Reading RPC frames from an untrusted peer without trusting it: the announced length is checked
//! before anything is allocated, the body grows only as its bytes arrive (a peer that announces
//! 64 MiB and stalls holds what it sent, not what it announced), and [`items`] counts what a
//! body would decode to — walking its CBOR heads, allocating nothing — so the server can refuse
//! or charge for it before decoding.

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::cbor::MAX_DEPTH;

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

/// Why a body's shape is refused before decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// More items than allowed.
    #[error("the request holds more than {0} CBOR items")]
    TooManyItems(usize),
    /// Nested deeper than the decoder accepts.
    #[error("the request nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Not CBOR the decoder could read (it says precisely why).
    #[error("malformed CBOR")]
    Malformed,
}

/// Counts the CBOR items in `bytes` (every integer, string, array, map, key and value is one),
/// refusing more than `max_items` or nesting deeper than the decoder's limit. Allocates nothing
/// but the nesting stack; it does not check canonical form — the decoder does.
pub fn items(bytes: &[u8], max_items: usize) -> Result<usize, ShapeError> {
    let mut pos = 0usize;
    let mut count = 0usize;
    // Items still expected by each open container.
    let mut open: Vec<u64> = Vec::new();
    let mut expected: u64 = 1;
    loop {
        while expected == 0 {
            match open.pop() {
                Some(outer) => expected = outer,
                None => return Ok(count),
            }
        }
        expected -= 1;
        count += 1;
        if count > max_items {
            return Err(ShapeError::TooManyItems(max_items));
        }
        let initial = *bytes.get(pos).ok_or(ShapeError::Malformed)?;
        pos += 1;
        let info = initial & 0x1f;
        let width = match info {
            0..=23 => 0,
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => return Err(ShapeError::Malformed),
        };
        let arg_bytes = bytes.get(pos..pos + width).ok_or(ShapeError::Malformed)?;
        pos += width;
        let n = if width == 0 {
            info as u64
        } else {
            arg_bytes.iter().fold(0u64, |n, b| (n << 8) | *b as u64)
        };
        let remaining = (bytes.len() - pos) as u64;
        match initial >> 5 {
            2 | 3 => {
                if n > remaining {
                    return Err(ShapeError::Malformed);
                }
                pos += n as usize;
            }
            4 | 5 => {
                let members = if initial >> 5 == 5 {
                    n.checked_mul(2).ok_or(ShapeError::Malformed)?
                } else {
                    n
                };
                if members > remaining {
                    return Err(ShapeError::Malformed);
                }
                if open.len() >= MAX_DEPTH {
                    return Err(ShapeError::TooDeep);
                }
                open.push(expected);
                expected = members;
            }
            6 => return Err(ShapeError::Malformed),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciborium::value::Value;

    fn encoded(value: &Value) -> Vec<u8> {
        crate::cbor::encode(value).unwrap()
    }

    #[test]
    fn items_counts_every_item() {
        let value = Value::Map(vec![
            (
                Value::Text("a".into()),
                Value::Array(vec![1.into(), 2.into()]),
            ),
            (Value::Text("b".into()), Value::Bytes(vec![0; 300])),
        ]);
        assert_eq!(items(&encoded(&value), 100), Ok(7));
        assert_eq!(items(&encoded(&value), 6), Err(ShapeError::TooManyItems(6)));
        assert_eq!(items(&[0x82, 0x01], 10), Err(ShapeError::Malformed));
    }

    #[test]
    fn items_refuses_deep_nesting() {
        let mut bytes = vec![0x81; MAX_DEPTH + 1];
        bytes.push(0x00);
        assert_eq!(items(&bytes, 1000), Err(ShapeError::TooDeep));
        let ok = &bytes[1..];
        assert_eq!(items(ok, 1000), Ok(MAX_DEPTH + 1));
        crate::cbor::decode(ok).unwrap();
    }

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
                            let _ = crate::cbor::decode(&body);
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
