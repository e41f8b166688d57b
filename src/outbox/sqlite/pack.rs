//! How an event's JSON is stored in `events.body`: packed with LZ4 (block format, its length in
//! front) as a BLOB since schema version 7, and as TEXT before. The event, with the payload it
//! came from, is most of what each webhook writes; packed, the benchmark's Flow event takes
//! 1 130 bytes instead of 1 840, and the log and its checkpoints copy that much less.

use std::borrow::Cow;

use rusqlite::types::ValueRef;

/// More than any event's JSON: payloads are limited to `server.max_body_bytes` long before.
const MAX_UNPACKED: usize = 256 << 20;

/// An event's JSON, packed for its row.
pub fn pack(json: &str) -> Vec<u8> {
    lz4_flex::block::compress_prepend_size(json.as_bytes())
}

/// An event's JSON from its row, packed or (written before version 7) text. A row with no event
/// gives "".
pub fn unpack(body: ValueRef<'_>) -> Result<Cow<'_, str>, String> {
    match body {
        ValueRef::Text(text) => std::str::from_utf8(text).map(Cow::Borrowed).map_err(|e| e.to_string()),
        ValueRef::Blob(packed) => {
            // The length in front decides the allocation: check it first.
            let (size, block) = lz4_flex::block::uncompressed_size(packed).map_err(|e| e.to_string())?;
            if size > MAX_UNPACKED {
                return Err(format!("a packed body that claims {size} bytes"));
            }
            let json = lz4_flex::block::decompress(block, size).map_err(|e| e.to_string())?;
            String::from_utf8(json).map(Cow::Owned).map_err(|e| e.to_string())
        }
        ValueRef::Null => Ok(Cow::Borrowed("")),
        other => Err(format!("a {:?} where the event's body belongs", other.data_type())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_json_unpacks_to_the_same_text() {
        let json = r#"{"source":"flow","status":"failure","raw":{"task":{"name":"单元测试"}}}"#;
        let packed = pack(json);
        assert_eq!(unpack(ValueRef::Blob(&packed)).unwrap(), json);
        assert_eq!(unpack(ValueRef::Text(json.as_bytes())).unwrap(), json);
        assert_eq!(unpack(ValueRef::Null).unwrap(), "");
    }

    #[test]
    fn a_damaged_packed_body_is_an_error() {
        let mut packed = pack(&"x".repeat(1000));
        assert!(unpack(ValueRef::Blob(&[0xff, 0xff, 0xff, 0xff, 0])).is_err(), "implausible length");
        assert!(unpack(ValueRef::Blob(&[1, 0])).is_err(), "no length");
        packed.truncate(packed.len() / 2);
        assert!(unpack(ValueRef::Blob(&packed)).is_err(), "cut short");
        assert!(unpack(ValueRef::Integer(3)).is_err());
    }
}
