//! Bounded AMF0 decoder for RTMP commands and `onMetaData`.
//!
//! Produces `rml_amf0::Amf0Value` so decoded values and the values `rml_rtmp` encodes for our
//! replies are one type. Written here rather than using `rml_amf0::deserialize`, which recurses
//! once per nesting level with no limit: 4 bytes per level, so an 8 MiB message nests two
//! million deep and overflows the stack, aborting the whole process.
//!
//! Limits: nesting depth [`MAX_DEPTH`]; every length is checked against the bytes present before
//! anything is allocated, so a value never costs more memory than a small multiple of its encoded
//! size. Tolerated quirks seen from encoders: an object without its end marker at the very end of
//! the input, a stray object-end marker at the top level (ends decoding), invalid UTF-8 (replaced).
//! Date becomes a Number (ms), long string and XML document become strings, typed objects become
//! objects, references become Undefined. AMF3 values (marker 0x11) are refused.

use std::collections::HashMap;

use rml_rtmp::rml_amf0::Amf0Value;

/// Deepest nesting of objects/arrays accepted. Metadata objects nest 2–3 deep.
pub const MAX_DEPTH: usize = 16;

/// Why AMF0 bytes could not be decoded; closes the connection as a protocol error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmfError {
    #[error("truncated AMF0 value at byte {0}")]
    Truncated(usize),
    #[error("unsupported AMF0 marker 0x{marker:02x} at byte {at}")]
    UnsupportedMarker { marker: u8, at: usize },
    #[error("AMF0 values nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("AMF0 object property with an empty name at byte {0}")]
    EmptyPropertyName(usize),
}

/// Decode every top-level value in `data`.
pub fn decode_all(data: &[u8]) -> Result<Vec<Amf0Value>, AmfError> {
    let mut reader = Reader { data, pos: 0 };
    let mut values = Vec::new();
    while reader.pos < data.len() {
        if data[reader.pos] == OBJECT_END {
            break;
        }
        values.push(reader.value(0)?);
    }
    Ok(values)
}

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const REFERENCE: u8 = 0x07;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0A;
const DATE: u8 = 0x0B;
const LONG_STRING: u8 = 0x0C;
const UNSUPPORTED: u8 = 0x0D;
const XML_DOCUMENT: u8 = 0x0F;
const TYPED_OBJECT: u8 = 0x10;

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], AmfError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or(AmfError::Truncated(self.pos))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, AmfError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, AmfError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, AmfError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64, AmfError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    fn string(&mut self, len: usize) -> Result<String, AmfError> {
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value, AmfError> {
        let at = self.pos;
        let marker = self.u8()?;
        Ok(match marker {
            NUMBER => Amf0Value::Number(self.f64()?),
            BOOLEAN => Amf0Value::Boolean(self.u8()? != 0),
            STRING => {
                let len = self.u16()? as usize;
                Amf0Value::Utf8String(self.string(len)?)
            }
            LONG_STRING | XML_DOCUMENT => {
                let len = self.u32()? as usize;
                Amf0Value::Utf8String(self.string(len)?)
            }
            OBJECT => Amf0Value::Object(self.properties(depth + 1)?),
            ECMA_ARRAY => {
                let _count_hint = self.u32()?;
                Amf0Value::Object(self.properties(depth + 1)?)
            }
            TYPED_OBJECT => {
                let len = self.u16()? as usize;
                self.take(len)?; // class name
                Amf0Value::Object(self.properties(depth + 1)?)
            }
            STRICT_ARRAY => {
                if depth + 1 > MAX_DEPTH {
                    return Err(AmfError::TooDeep);
                }
                let count = self.u32()? as usize;
                // Every element takes at least one byte: never trust the count beyond that.
                let remaining = self.data.len() - self.pos;
                if count > remaining {
                    return Err(AmfError::Truncated(self.pos));
                }
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Amf0Value::StrictArray(items)
            }
            DATE => {
                let ms = self.f64()?;
                self.take(2)?; // time zone, unused
                Amf0Value::Number(ms)
            }
            NULL => Amf0Value::Null,
            UNDEFINED | UNSUPPORTED => Amf0Value::Undefined,
            REFERENCE => {
                self.u16()?;
                Amf0Value::Undefined
            }
            marker => return Err(AmfError::UnsupportedMarker { marker, at }),
        })
    }

    fn properties(&mut self, depth: usize) -> Result<HashMap<String, Amf0Value>, AmfError> {
        if depth > MAX_DEPTH {
            return Err(AmfError::TooDeep);
        }
        let mut properties = HashMap::new();
        loop {
            if self.pos == self.data.len() {
                // Object end marker missing at the end of the message: tolerated.
                return Ok(properties);
            }
            let at = self.pos;
            let len = self.u16()? as usize;
            if len == 0 {
                if self.u8()? == OBJECT_END {
                    return Ok(properties);
                }
                return Err(AmfError::EmptyPropertyName(at));
            }
            let name = self.string(len)?;
            let value = self.value(depth)?;
            properties.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Vec<u8> {
        let mut b = vec![STRING];
        b.extend((text.len() as u16).to_be_bytes());
        b.extend(text.as_bytes());
        b
    }

    fn n(v: f64) -> Vec<u8> {
        let mut b = vec![NUMBER];
        b.extend(v.to_be_bytes());
        b
    }

    fn key(name: &str) -> Vec<u8> {
        let mut b = (name.len() as u16).to_be_bytes().to_vec();
        b.extend(name.as_bytes());
        b
    }

    #[test]
    fn decodes_a_connect_command() {
        let mut b = s("connect");
        b.extend(n(1.0));
        b.push(OBJECT);
        b.extend(key("app"));
        b.extend(s("live"));
        b.extend(key("tcUrl"));
        b.extend(s("rtmp://h/live"));
        b.extend([0, 0, OBJECT_END]);
        let values = decode_all(&b).unwrap();
        assert_eq!(values.len(), 3);
        assert_eq!(values[0], Amf0Value::Utf8String("connect".into()));
        assert_eq!(values[1], Amf0Value::Number(1.0));
        let Amf0Value::Object(props) = &values[2] else {
            panic!("not an object")
        };
        assert_eq!(props["app"], Amf0Value::Utf8String("live".into()));
    }

    #[test]
    fn decodes_ecma_arrays_strict_arrays_dates_and_long_strings() {
        let mut b = vec![ECMA_ARRAY, 0, 0, 0, 1];
        b.extend(key("width"));
        b.extend(n(640.0));
        b.extend([0, 0, OBJECT_END]);
        b.extend([STRICT_ARRAY, 0, 0, 0, 2]);
        b.extend(n(1.0));
        b.push(NULL);
        b.push(DATE);
        b.extend(5.0f64.to_be_bytes());
        b.extend([0, 0]);
        b.extend([LONG_STRING, 0, 0, 0, 2, b'h', b'i']);
        let values = decode_all(&b).unwrap();
        assert_eq!(values.len(), 4);
        assert_eq!(
            values[1],
            Amf0Value::StrictArray(vec![Amf0Value::Number(1.0), Amf0Value::Null])
        );
        assert_eq!(values[2], Amf0Value::Number(5.0));
        assert_eq!(values[3], Amf0Value::Utf8String("hi".into()));
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing_far() {
        // 2 MiB of nested objects: rml_amf0 would overflow the stack here.
        let mut b = Vec::new();
        for _ in 0..500_000 {
            b.push(OBJECT);
            b.extend(key("a"));
        }
        assert_eq!(decode_all(&b), Err(AmfError::TooDeep));
        let mut arrays = Vec::new();
        for _ in 0..100_000 {
            arrays.extend([STRICT_ARRAY, 0, 0, 0, 1]);
        }
        assert_eq!(decode_all(&arrays), Err(AmfError::TooDeep));
    }

    #[test]
    fn lengths_beyond_the_input_are_truncation_errors() {
        assert_eq!(
            decode_all(&[STRING, 0xFF, 0xFF, b'a']),
            Err(AmfError::Truncated(3))
        );
        assert!(matches!(
            decode_all(&[LONG_STRING, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(AmfError::Truncated(_))
        ));
        assert!(matches!(
            decode_all(&[STRICT_ARRAY, 0xFF, 0xFF, 0xFF, 0xFF, NULL]),
            Err(AmfError::Truncated(_))
        ));
        assert!(matches!(
            decode_all(&[NUMBER, 1, 2]),
            Err(AmfError::Truncated(_))
        ));
    }

    #[test]
    fn amf3_and_unknown_markers_are_refused() {
        assert_eq!(
            decode_all(&[0x11, 0x01]),
            Err(AmfError::UnsupportedMarker {
                marker: 0x11,
                at: 0
            })
        );
        assert!(decode_all(&[0x42]).is_err());
    }

    #[test]
    fn an_object_missing_its_end_marker_at_the_end_is_tolerated() {
        let mut b = vec![OBJECT];
        b.extend(key("x"));
        b.extend(n(1.0));
        let values = decode_all(&b).unwrap();
        assert_eq!(values.len(), 1);
    }

    #[test]
    fn empty_property_name_without_end_marker_is_an_error() {
        let b = vec![OBJECT, 0, 0, NULL];
        assert_eq!(decode_all(&b), Err(AmfError::EmptyPropertyName(1)));
    }
}
