//! Canonical CBOR (RFC 8949 §4.2.1, "core deterministic encoding") for every hashed structure.
//!
//! `ciborium` alone is not canonical (it keeps map keys in insertion order), so everything that is
//! hashed goes through [`encode`] (or, for DAG nodes, through `Node::encode`, which writes the
//! same bytes field by field with the `write_*` helpers here and is tested against [`encode`]),
//! and every byte string read from outside goes through [`decode`],
//! a strict parser that rejects any input whose canonical re-encoding would differ: indefinite
//! lengths, non-minimal integer or length heads, unsorted or duplicate map keys, floats, tags,
//! undefined/simple values and trailing bytes. `ciborium::Value` is the shared data model, so the
//! serde bridge ([`to_value`], [`from_value`]) comes for free.

pub mod shape;

use ciborium::value::{Integer, Value};
use serde::{de::DeserializeOwned, Serialize};

/// Deepest nesting accepted on decode; bounds recursion on hostile input.
pub const MAX_DEPTH: usize = 64;

/// Why bytes or a value are not acceptable canonical CBOR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    /// The bytes are not well-formed CBOR at all.
    #[error("malformed CBOR at byte {offset}: {reason}")]
    Malformed {
        /// Byte offset where parsing failed.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// Well-formed CBOR, but not in canonical form.
    #[error("non-canonical CBOR at byte {offset}: {reason}")]
    NonCanonical {
        /// Byte offset of the offending item.
        offset: usize,
        /// Which canonical rule is broken.
        reason: &'static str,
    },
    /// A value that hashed data may not contain (floats, tags, undefined).
    #[error("CBOR value not allowed in hashed data: {0}")]
    Unsupported(&'static str),
    /// Two equal keys in one map.
    #[error("CBOR map has a duplicate key")]
    DuplicateKey,
    /// The value does not have the shape the schema expects.
    #[error("CBOR schema mismatch: {0}")]
    Schema(String),
}

/// Encodes `value` canonically into a fresh buffer.
pub fn encode(value: &Value) -> Result<Vec<u8>, CborError> {
    let mut out = Vec::with_capacity(64);
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Encodes `value` canonically, appending to `out`.
pub fn encode_into(value: &Value, out: &mut Vec<u8>) -> Result<(), CborError> {
    match value {
        Value::Integer(i) => {
            let i = i128::from(*i);
            if i >= 0 {
                write_head(out, 0, i as u64);
            } else {
                write_head(out, 1, (-1 - i) as u64);
            }
        }
        Value::Bytes(b) => {
            write_head(out, 2, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Text(s) => {
            write_head(out, 3, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            write_head(out, 4, items.len() as u64);
            for item in items {
                encode_into(item, out)?;
            }
        }
        Value::Map(entries) => encode_map(entries, out)?,
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Null => out.push(0xf6),
        Value::Float(_) => return Err(CborError::Unsupported("floating-point number")),
        Value::Tag(..) => return Err(CborError::Unsupported("tag")),
        _ => return Err(CborError::Unsupported("unknown value kind")),
    }
    Ok(())
}

/// Maps are written with keys sorted by their encoded bytes. Only the keys are buffered, so a map
/// holding a large byte string (a chunk) is not copied twice.
fn encode_map(entries: &[(Value, Value)], out: &mut Vec<u8>) -> Result<(), CborError> {
    let mut keys: Vec<(Vec<u8>, usize)> = Vec::with_capacity(entries.len());
    for (index, (key, _)) in entries.iter().enumerate() {
        keys.push((encode(key)?, index));
    }
    keys.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if keys.windows(2).any(|pair| pair[0].0 == pair[1].0) {
        return Err(CborError::DuplicateKey);
    }
    write_head(out, 5, entries.len() as u64);
    for (key_bytes, index) in keys {
        out.extend_from_slice(&key_bytes);
        encode_into(&entries[index].1, out)?;
    }
    Ok(())
}

/// Major type of an unsigned integer.
pub const UNSIGNED: u8 = 0;
/// Major type of an array.
pub const ARRAY: u8 = 4;
/// Major type of a map.
pub const MAP: u8 = 5;

/// Appends a byte string: for encoders that write a fixed schema without building a [`Value`].
pub fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_head(out, 2, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a text string (see [`write_bytes`]).
pub fn write_text(out: &mut Vec<u8>, text: &str) {
    write_head(out, 3, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

/// Writes a major type and argument with the shortest possible head.
pub fn write_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= u8::MAX as u64 {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= u16::MAX as u64 {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u32::MAX as u64 {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// Strictly decodes exactly one canonical CBOR item that spans all of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value, CborError> {
    let mut parser = Parser { bytes, pos: 0 };
    let value = parser.item(0)?;
    if parser.pos != bytes.len() {
        return Err(CborError::NonCanonical {
            offset: parser.pos,
            reason: "trailing bytes after the item",
        });
    }
    Ok(value)
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn malformed(&self, reason: &'static str) -> CborError {
        CborError::Malformed {
            offset: self.pos,
            reason,
        }
    }

    fn take(&mut self, n: usize) -> Result<&[u8], CborError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| self.malformed("unexpected end of input"))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    /// Reads an item head: (major type, argument), enforcing the shortest form.
    fn head(&mut self) -> Result<(u8, u64), CborError> {
        let start = self.pos;
        let initial = self.take(1)?[0];
        let major = initial >> 5;
        let info = initial & 0x1f;
        let non_minimal = CborError::NonCanonical {
            offset: start,
            reason: "integer or length not in its shortest form",
        };
        let n = match info {
            0..=23 => info as u64,
            24 => {
                let n = self.take(1)?[0] as u64;
                if n < 24 && major != 7 {
                    return Err(non_minimal);
                }
                n
            }
            25 => {
                let n = u16::from_be_bytes(self.array()?) as u64;
                if n <= u8::MAX as u64 && major != 7 {
                    return Err(non_minimal);
                }
                n
            }
            26 => {
                let n = u32::from_be_bytes(self.array()?) as u64;
                if n <= u16::MAX as u64 && major != 7 {
                    return Err(non_minimal);
                }
                n
            }
            27 => {
                let n = u64::from_be_bytes(self.array()?);
                if n <= u32::MAX as u64 && major != 7 {
                    return Err(non_minimal);
                }
                n
            }
            31 => {
                return Err(CborError::NonCanonical {
                    offset: start,
                    reason: "indefinite-length item",
                })
            }
            _ => {
                return Err(CborError::Malformed {
                    offset: start,
                    reason: "reserved additional information",
                })
            }
        };
        Ok((major, n))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CborError> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    /// A length that must fit in the remaining input (guards allocations on hostile input).
    fn length(&self, n: u64, min_item_size: usize) -> Result<usize, CborError> {
        let remaining = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_item_size as u64) > remaining {
            return Err(self.malformed("length exceeds the remaining input"));
        }
        Ok(n as usize)
    }

    fn item(&mut self, depth: usize) -> Result<Value, CborError> {
        if depth > MAX_DEPTH {
            return Err(self.malformed("nesting too deep"));
        }
        let start = self.pos;
        let (major, n) = self.head()?;
        Ok(match major {
            0 => Value::Integer(Integer::from(n)),
            1 => {
                let negative = -1i128 - n as i128;
                Value::Integer(
                    Integer::try_from(negative).map_err(|_| CborError::Malformed {
                        offset: start,
                        reason: "negative integer out of range",
                    })?,
                )
            }
            2 => {
                let len = self.length(n, 1)?;
                Value::Bytes(self.take(len)?.to_vec())
            }
            3 => {
                let len = self.length(n, 1)?;
                let raw = self.take(len)?;
                let text = std::str::from_utf8(raw).map_err(|_| CborError::Malformed {
                    offset: start,
                    reason: "text string is not valid UTF-8",
                })?;
                Value::Text(text.to_owned())
            }
            4 => {
                let len = self.length(n, 1)?;
                let mut items = Vec::with_capacity(len);
                for _ in 0..len {
                    items.push(self.item(depth + 1)?);
                }
                Value::Array(items)
            }
            5 => {
                let len = self.length(n, 2)?;
                let mut entries = Vec::with_capacity(len);
                let mut previous_key: Option<(usize, usize)> = None;
                for _ in 0..len {
                    let key_start = self.pos;
                    let key = self.item(depth + 1)?;
                    let key_span = (key_start, self.pos);
                    if let Some((a, b)) = previous_key {
                        let order = self.bytes[a..b].cmp(&self.bytes[key_span.0..key_span.1]);
                        match order {
                            std::cmp::Ordering::Less => {}
                            std::cmp::Ordering::Equal => return Err(CborError::DuplicateKey),
                            std::cmp::Ordering::Greater => {
                                return Err(CborError::NonCanonical {
                                    offset: key_start,
                                    reason: "map keys not in canonical (bytewise) order",
                                })
                            }
                        }
                    }
                    previous_key = Some(key_span);
                    let value = self.item(depth + 1)?;
                    entries.push((key, value));
                }
                Value::Map(entries)
            }
            6 => return Err(CborError::Unsupported("tag")),
            _ => match (self.bytes[start] & 0x1f, n) {
                (20, _) => Value::Bool(false),
                (21, _) => Value::Bool(true),
                (22, _) => Value::Null,
                (25..=27, _) => return Err(CborError::Unsupported("floating-point number")),
                _ => return Err(CborError::Unsupported("simple value or undefined")),
            },
        })
    }
}

/// A zero-copy reader over bytes already known to be canonical (for example, read back from the
/// store). It never panics on bad input, but it does not re-check canonical form: use [`decode`]
/// for anything from outside.
pub struct Reader<'a> {
    parser: Parser<'a>,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader {
            parser: Parser { bytes, pos: 0 },
        }
    }

    /// Current byte offset.
    pub fn position(&self) -> usize {
        self.parser.pos
    }

    /// Whether every byte has been read.
    pub fn is_at_end(&self) -> bool {
        self.remaining() == 0
    }

    /// How many bytes are left to read.
    pub fn remaining(&self) -> usize {
        self.parser.bytes.len() - self.parser.pos
    }

    /// Reads a head, expecting major type `major`; returns its argument.
    pub fn expect(&mut self, major: u8) -> Result<u64, CborError> {
        let (m, n) = self.parser.head()?;
        if m != major {
            return Err(self.parser.malformed("unexpected item type"));
        }
        Ok(n)
    }

    /// Reads a text string without copying.
    pub fn text(&mut self) -> Result<&'a str, CborError> {
        let n = self.expect(3)?;
        let len = self.parser.length(n, 1)?;
        let raw = self.take(len)?;
        std::str::from_utf8(raw).map_err(|_| self.parser.malformed("invalid UTF-8"))
    }

    /// Reads a byte string without copying.
    pub fn bytes(&mut self) -> Result<&'a [u8], CborError> {
        let n = self.expect(2)?;
        let len = self.parser.length(n, 1)?;
        self.take(len)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], CborError> {
        let bytes: &'a [u8] = self.parser.bytes;
        let start = self.parser.pos;
        self.parser.take(len)?;
        Ok(&bytes[start..start + len])
    }

    /// Skips one complete item.
    pub fn skip(&mut self) -> Result<(), CborError> {
        self.skip_at(0)
    }

    fn skip_at(&mut self, depth: usize) -> Result<(), CborError> {
        if depth > MAX_DEPTH {
            return Err(self.parser.malformed("nesting too deep"));
        }
        let (major, n) = self.parser.head()?;
        match major {
            2 | 3 => {
                let len = self.parser.length(n, 1)?;
                self.parser.take(len)?;
            }
            4 => {
                for _ in 0..self.parser.length(n, 1)? {
                    self.skip_at(depth + 1)?;
                }
            }
            5 => {
                for _ in 0..self.parser.length(n, 2)? {
                    self.skip_at(depth + 1)?;
                    self.skip_at(depth + 1)?;
                }
            }
            6 => return Err(CborError::Unsupported("tag")),
            _ => {}
        }
        Ok(())
    }
}

/// Converts any serde-serializable value into the CBOR data model.
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, CborError> {
    Value::serialized(value).map_err(|e| CborError::Schema(e.to_string()))
}

/// Converts a CBOR value into a serde-deserializable type, reporting schema mismatches.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, CborError> {
    value
        .deserialized()
        .map_err(|e| CborError::Schema(e.to_string()))
}

/// Serializes `value` straight to canonical bytes.
pub fn to_canonical_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CborError> {
    encode(&to_value(value)?)
}

/// Decodes canonical bytes straight into a serde type.
pub fn from_canonical_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CborError> {
    from_value(decode(bytes)?)
}

/// Small helpers for reading typed fields out of a decoded map.
pub mod fields {
    use super::{CborError, Value};

    /// Looks up a text key in a map value.
    pub fn get<'a>(map: &'a [(Value, Value)], key: &str) -> Option<&'a Value> {
        map.iter()
            .find(|(k, _)| matches!(k, Value::Text(t) if t == key))
            .map(|(_, v)| v)
    }

    /// A required field.
    pub fn require<'a>(map: &'a [(Value, Value)], key: &str) -> Result<&'a Value, CborError> {
        get(map, key).ok_or_else(|| CborError::Schema(format!("missing field {key:?}")))
    }

    /// Rejects maps with keys other than `allowed`.
    pub fn only(map: &[(Value, Value)], allowed: &[&str]) -> Result<(), CborError> {
        for (k, _) in map {
            match k {
                Value::Text(t) if allowed.contains(&t.as_str()) => {}
                other => return Err(CborError::Schema(format!("unexpected field {other:?}"))),
            }
        }
        Ok(())
    }

    /// A value as a map.
    pub fn as_map<'a>(v: &'a Value, what: &str) -> Result<&'a [(Value, Value)], CborError> {
        match v {
            Value::Map(m) => Ok(m),
            _ => Err(CborError::Schema(format!("{what} must be a map"))),
        }
    }

    /// A value as an array.
    pub fn as_array<'a>(v: &'a Value, what: &str) -> Result<&'a [Value], CborError> {
        match v {
            Value::Array(a) => Ok(a),
            _ => Err(CborError::Schema(format!("{what} must be an array"))),
        }
    }

    /// A value as a byte string.
    pub fn as_bytes<'a>(v: &'a Value, what: &str) -> Result<&'a [u8], CborError> {
        match v {
            Value::Bytes(b) => Ok(b),
            _ => Err(CborError::Schema(format!("{what} must be a byte string"))),
        }
    }

    /// A value as a text string.
    pub fn as_text<'a>(v: &'a Value, what: &str) -> Result<&'a str, CborError> {
        match v {
            Value::Text(t) => Ok(t),
            _ => Err(CborError::Schema(format!("{what} must be a text string"))),
        }
    }

    /// A value as an unsigned 64-bit integer.
    pub fn as_u64(v: &Value, what: &str) -> Result<u64, CborError> {
        match v {
            Value::Integer(i) => {
                u64::try_from(*i).map_err(|_| CborError::Schema(format!("{what} out of range")))
            }
            _ => Err(CborError::Schema(format!("{what} must be an integer"))),
        }
    }

    /// A value as a signed 64-bit integer.
    pub fn as_i64(v: &Value, what: &str) -> Result<i64, CborError> {
        match v {
            Value::Integer(i) => {
                i64::try_from(*i).map_err(|_| CborError::Schema(format!("{what} out of range")))
            }
            _ => Err(CborError::Schema(format!("{what} must be an integer"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn integers_use_shortest_heads() {
        let cases: [(i128, &[u8]); 8] = [
            (0, &[0x00]),
            (23, &[0x17]),
            (24, &[0x18, 24]),
            (255, &[0x18, 0xff]),
            (256, &[0x19, 0x01, 0x00]),
            (65536, &[0x1a, 0, 1, 0, 0]),
            (-1, &[0x20]),
            (-25, &[0x38, 24]),
        ];
        for (n, bytes) in cases {
            let v = Value::Integer(Integer::try_from(n).unwrap());
            assert_eq!(encode(&v).unwrap(), bytes, "{n}");
            assert_eq!(decode(bytes).unwrap(), v);
        }
    }

    #[test]
    fn map_keys_are_sorted_by_encoded_bytes() {
        // "b" (0x61 0x62) sorts before "aa" (0x62 ...) because the shorter head sorts first.
        let v = Value::Map(vec![
            (text("aa"), Value::Integer(1.into())),
            (text("b"), Value::Integer(2.into())),
        ]);
        let bytes = encode(&v).unwrap();
        assert_eq!(bytes, [0xa2, 0x61, b'b', 0x02, 0x62, b'a', b'a', 0x01]);
    }

    #[test]
    fn duplicate_keys_are_refused_both_ways() {
        let v = Value::Map(vec![
            (text("a"), Value::Null),
            (text("a"), Value::Bool(true)),
        ]);
        assert_eq!(encode(&v), Err(CborError::DuplicateKey));
        assert_eq!(
            decode(&[0xa2, 0x61, b'a', 0xf6, 0x61, b'a', 0xf5]),
            Err(CborError::DuplicateKey)
        );
    }

    #[test]
    fn floats_and_tags_are_refused() {
        assert!(encode(&Value::Float(1.0)).is_err());
        assert!(matches!(
            decode(&[0xf9, 0x3c, 0x00]),
            Err(CborError::Unsupported(_))
        ));
        assert!(matches!(
            decode(&[0xc1, 0x00]),
            Err(CborError::Unsupported(_))
        ));
    }

    #[test]
    fn hostile_lengths_do_not_allocate() {
        // A byte string claiming 2^64-1 bytes.
        let bytes = [0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(decode(&bytes), Err(CborError::Malformed { .. })));
        // An array claiming 2^32 items.
        let bytes = [0x9b, 0, 0, 0, 1, 0, 0, 0, 0];
        assert!(matches!(decode(&bytes), Err(CborError::Malformed { .. })));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let bytes = vec![0x81; 10_000];
        assert!(matches!(decode(&bytes), Err(CborError::Malformed { .. })));
    }
}
