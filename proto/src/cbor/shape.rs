//! The shape of CBOR bytes, checked before decoding and without allocating: how many items
//! they would decode to and how deep they nest. A server refuses (or charges for) a request by
//! its shape before the decoder builds it in memory.

use super::MAX_DEPTH;

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
        super::super::encode(value).unwrap()
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
        super::super::decode(ok).unwrap();
    }
}
