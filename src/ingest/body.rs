//! Request bytes to a JSON value: JSON bodies, URL query strings, and the sniffing that tells JSON
//! from XML. XML itself is converted in `xml`.
//!
//! Everything here that fails is [`IngestError::Malformed`] (HTTP 400), with the parser's message
//! and where it stopped, but for well-formed XML where JSON was expected: that is a document of
//! the wrong kind (422). Whether a JSON value is of the right *format* is the parsers' business.

use percent_encoding::percent_decode;
use serde_json::{Map, Value};

use super::IngestError;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The body without a UTF-8 byte-order mark and without leading whitespace.
fn content(body: &[u8]) -> &[u8] {
    let body = body.strip_prefix(BOM).unwrap_or(body);
    let start = body.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(body.len());
    &body[start..]
}

/// True when the body holds nothing but whitespace.
pub(crate) fn is_blank(body: &[u8]) -> bool {
    content(body).is_empty()
}

/// True when the first meaningful byte is `<`: the body is XML (Tikal can send either, and raw
/// TCP/UDP carries no content type, so the bytes decide).
pub(crate) fn looks_like_xml(body: &[u8]) -> bool {
    content(body).first() == Some(&b'<')
}

/// Parses a JSON body. An empty body is malformed too: there is no document. Well-formed XML
/// is a document, just not of a format that takes JSON: that is [`IngestError::Invalid`] (422),
/// as SPEC §3 has it, and says what came instead.
pub(crate) fn json(body: &[u8]) -> Result<Value, IngestError> {
    let text = body.strip_prefix(BOM).unwrap_or(body);
    if is_blank(text) {
        return Err(IngestError::Malformed("empty body: expected a JSON document".into()));
    }
    // serde_json's message ends with "at line L column C".
    serde_json::from_slice(text).map_err(|e| {
        match looks_like_xml(text).then(|| super::xml::parse(text)).and_then(Result::ok) {
            Some(doc) => IngestError::Invalid(format!(
                "this format takes JSON, and the body is XML (root element <{}>)",
                super::lenient::short_name(&doc.root)
            )),
            None => IngestError::Malformed(format!("malformed JSON: {e}")),
        }
    })
}

/// Decodes a query string (`a=1&b=x%2Fy`, `+` for space) into a JSON object of strings.
///
/// A repeated key keeps its last value, as a repeated JSON key does. A pair that is not valid
/// UTF-8 once decoded is malformed; the error gives the pair's byte offset in the query.
pub(crate) fn query(query: &str) -> Result<Value, IngestError> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut out = Map::new();
    let mut offset = 0;
    for pair in query.split('&') {
        let at = offset;
        offset += pair.len() + 1;
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_component(k, at)?;
        if key.is_empty() {
            continue;
        }
        out.insert(key, Value::String(decode_component(v, at)?));
    }
    Ok(Value::Object(out))
}

fn decode_component(part: &str, at: usize) -> Result<String, IngestError> {
    let spaced = part.replace('+', " ");
    percent_decode(spaced.as_bytes()).decode_utf8().map(|s| s.into_owned()).map_err(|e| {
        IngestError::Malformed(format!(
            "malformed query string: the pair at byte {at} is not valid UTF-8 once percent-decoded ({e})"
        ))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn malformed(e: IngestError) -> String {
        match e {
            IngestError::Malformed(m) => m,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn sniffs_xml_and_blank_bodies() {
        assert!(looks_like_xml(b"<job/>"));
        assert!(looks_like_xml(b"\xEF\xBB\xBF \n <job/>"));
        assert!(!looks_like_xml(b" {\"a\":1}"));
        assert!(!looks_like_xml(b""));
        assert!(is_blank(b" \r\n\t"));
        assert!(!is_blank(b" x"));
    }

    #[test]
    fn malformed_json_reports_line_and_column() {
        let e = malformed(json(b"{\n  \"a\": 1,\n  \"b\": }").unwrap_err());
        assert!(e.starts_with("malformed JSON: "), "{e}");
        assert!(e.contains("line 3 column"), "{e}");
        let e = malformed(json(b"{\"a\": ").unwrap_err());
        assert!(e.contains("EOF") && e.contains("line 1 column"), "{e}");
    }

    #[test]
    fn well_formed_xml_where_json_belongs_is_the_wrong_kind_not_malformed() {
        match json(b"<?xml version='1.0'?>\n<job><name>x</name></job>") {
            Err(IngestError::Invalid(m)) => assert!(m.contains("XML") && m.contains("<job>"), "{m}"),
            other => panic!("{other:?}"),
        }
        let e = malformed(json(b"<job><name>x</job>").unwrap_err());
        assert!(e.starts_with("malformed JSON: "), "broken XML is no document at all: {e}");
    }

    #[test]
    fn empty_json_body_is_malformed_with_a_clear_message() {
        assert_eq!(malformed(json(b"").unwrap_err()), "empty body: expected a JSON document");
        assert!(json(b"  \n").is_err());
    }

    #[test]
    fn json_accepts_gson_escapes_and_a_bom() {
        let v =
            json(b"\xEF\xBB\xBF{\"n\":\"pageId\\u003d42 \\u0026 \\u003cb\\u003e \\u0027x\\u0027\"}").unwrap();
        assert_eq!(v["n"], "pageId=42 & <b> 'x'");
    }

    #[test]
    fn query_strings_decode_to_an_object_of_strings() {
        let v =
            query("BUILD_URL=https%3A%2F%2Fci%2Fjob%2Fx%2F1%2F&NODE_LABELS=built-in+master&E=&F&&=x&A=1&A=2")
                .unwrap();
        assert_eq!(
            v,
            json!({"BUILD_URL": "https://ci/job/x/1/", "NODE_LABELS": "built-in master", "E": "", "F": "", "A": "2"})
        );
        assert_eq!(query("?a=%E6%9E%97").unwrap(), json!({"a": "林"}));
        assert_eq!(query("").unwrap(), json!({}));
    }

    #[test]
    fn query_with_bad_utf8_is_malformed_with_offset() {
        let e = malformed(query("a=1&b=%FF%FE").unwrap_err());
        assert!(e.contains("byte 4"), "{e}");
    }
}
