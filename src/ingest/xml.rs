//! XML to JSON, following the conventions of XStream (the Java serializer behind Tikal's XML).
//!
//! The conversion is generic; it knows nothing of Jenkins. The rules, in order:
//! * an element with text only is a string, exactly as written (entities and CDATA resolved);
//!   a self-closing element (`<artifacts/>`, XStream's empty collection) is `null`;
//! * an element whose children are all `<entry>` pairs (`<entry><string>k</string><…>v</…></entry>`)
//!   is an object `{k: v}` — XStream's map;
//! * an element whose children all share one name is an array, when there are several of them or
//!   the name is an XStream item alias (`<string>`, `<int>`, `<map>`, …) — XStream's list;
//! * anything else is an object keyed by child name; a name that repeats collects an array.
//!
//! Values are never typed: `<number>128</number>` gives `"128"`, and the field readers accept
//! numeric strings. Attributes are dropped: XStream uses them only for type hints (`class`) and
//! object references. Comments, processing instructions and the declaration are ignored.

use std::collections::HashMap;

use quick_xml::events::Event as XmlEvent;
use quick_xml::Reader;
use serde_json::{Map, Value};

use super::IngestError;

/// Deeper documents are refused, so that conversion cannot exhaust the stack (serde_json stops
/// at the same depth).
const MAX_DEPTH: usize = 128;

/// Element names XStream uses for the items of a collection.
const ITEM_ALIASES: &[&str] = &[
    "string",
    "int",
    "long",
    "short",
    "byte",
    "char",
    "float",
    "double",
    "boolean",
    "big-int",
    "big-decimal",
    "map",
    "list",
    "set",
    "linked-list",
    "tree-map",
    "tree-set",
    "linked-hash-map",
    "linked-hash-set",
    "null",
    "url",
    "file",
    "date",
];

/// A converted document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct XmlDoc {
    /// The root element's name (`job` for Tikal).
    pub root: String,
    /// The root element's content, converted.
    pub value: Value,
}

/// Parses XML bytes and converts them. Errors are [`IngestError::Malformed`] with a byte offset.
pub(crate) fn parse(body: &[u8]) -> Result<XmlDoc, IngestError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        IngestError::Malformed(format!("malformed XML: invalid UTF-8 at byte {}", e.valid_up_to()))
    })?;
    let root = read_tree(text)?;
    Ok(XmlDoc { value: convert(&root), root: root.name })
}

#[derive(Debug)]
struct Element {
    name: String,
    children: Vec<Element>,
    text: String,
    self_closing: bool,
}

/// A malformed-XML error. The parser's own message may quote names from the body (a
/// mismatched end tag names both), so it is cut short: an answer or a log line never carries a
/// large part of what was sent.
fn malformed(position: u64, what: impl std::fmt::Display) -> IngestError {
    const MAX_CHARS: usize = 160;
    let what = what.to_string();
    let what = match what.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &what[..cut]),
        None => what,
    };
    IngestError::Malformed(format!("malformed XML at byte {position}: {what}"))
}

fn read_tree(text: &str) -> Result<Element, IngestError> {
    let mut reader = Reader::from_str(text);
    let mut open: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader.read_event().map_err(|e| malformed(reader.error_position(), e))?;
        let here = reader.buffer_position();
        match event {
            XmlEvent::Start(tag) => {
                check_new_element(&open, &root, here)?;
                let name = String::from_utf8_lossy(tag.name().as_ref()).into_owned();
                open.push(Element { name, children: Vec::new(), text: String::new(), self_closing: false });
            }
            XmlEvent::Empty(tag) => {
                check_new_element(&open, &root, here)?;
                let name = String::from_utf8_lossy(tag.name().as_ref()).into_owned();
                let element = Element { name, children: Vec::new(), text: String::new(), self_closing: true };
                attach(&mut open, &mut root, element);
            }
            XmlEvent::End(_) => {
                // quick-xml has already checked that the end tag matches the open one.
                if let Some(element) = open.pop() {
                    attach(&mut open, &mut root, element);
                }
            }
            XmlEvent::Text(t) => {
                let s = t.unescape().map_err(|e| malformed(here, e))?;
                add_text(&mut open, &s, here)?;
            }
            XmlEvent::CData(c) => {
                let s = String::from_utf8_lossy(&c.into_inner()).into_owned();
                add_text(&mut open, &s, here)?;
            }
            XmlEvent::Eof => break,
            XmlEvent::Comment(_) | XmlEvent::Decl(_) | XmlEvent::PI(_) | XmlEvent::DocType(_) => {}
        }
    }
    if let Some(unclosed) = open.last() {
        return Err(malformed(
            text.len() as u64,
            format!("element <{}> is not closed", super::lenient::short_name(&unclosed.name)),
        ));
    }
    root.ok_or_else(|| IngestError::Malformed("malformed XML: no root element".into()))
}

fn check_new_element(open: &[Element], root: &Option<Element>, here: u64) -> Result<(), IngestError> {
    if open.is_empty() && root.is_some() {
        return Err(malformed(here, "a second root element"));
    }
    if open.len() >= MAX_DEPTH {
        return Err(malformed(here, format!("elements nested deeper than {MAX_DEPTH} levels")));
    }
    Ok(())
}

fn attach(open: &mut [Element], root: &mut Option<Element>, element: Element) {
    match open.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn add_text(open: &mut [Element], s: &str, here: u64) -> Result<(), IngestError> {
    match open.last_mut() {
        Some(element) => element.text.push_str(s),
        None if s.trim().is_empty() => {}
        None => return Err(malformed(here, "text outside the root element")),
    }
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// How many elements `convert` was called on, for the test that it is each once.
    static CONVERTED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn convert(element: &Element) -> Value {
    #[cfg(test)]
    CONVERTED.with(|n| n.set(n.get() + 1));
    let Some(first) = element.children.first().map(|c| &c.name) else {
        return if element.self_closing { Value::Null } else { Value::String(element.text.clone()) };
    };
    if let Some(map) = as_entry_map(element) {
        return Value::Object(map);
    }
    let same_name = element.children.iter().all(|c| &c.name == first);
    if same_name && (element.children.len() > 1 || ITEM_ALIASES.contains(&first.as_str())) {
        return Value::Array(element.children.iter().map(convert).collect());
    }
    // Group children by name, in the order names first appear; a repeated name collects an array.
    let mut groups: Vec<(&str, Vec<Value>)> = Vec::new();
    let mut slot: HashMap<&str, usize> = HashMap::new();
    for child in &element.children {
        let value = convert(child);
        match slot.get(child.name.as_str()) {
            Some(&i) => groups[i].1.push(value),
            None => {
                slot.insert(&child.name, groups.len());
                groups.push((&child.name, vec![value]));
            }
        }
    }
    let mut object = Map::new();
    for (name, mut values) in groups {
        let value = if values.len() == 1 { values.remove(0) } else { Value::Array(values) };
        object.insert(name.to_string(), value);
    }
    let text = element.text.trim();
    if !text.is_empty() {
        object.insert("#text".into(), Value::String(text.to_string()));
    }
    Value::Object(object)
}

/// XStream's map: every child is an `<entry>` with a text key element and one value element.
/// The shape is decided before anything is converted, so each element is converted once (a
/// body of near-maps nested inside each other would otherwise cost twice per level).
fn as_entry_map(element: &Element) -> Option<Map<String, Value>> {
    let is_entry = |e: &Element| {
        e.name == "entry" && matches!(e.children.as_slice(), [key, _] if key.children.is_empty())
    };
    if !element.children.iter().all(is_entry) {
        return None;
    }
    Some(
        element
            .children
            .iter()
            .map(|entry| (entry.children[0].text.clone(), convert(&entry.children[1])))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn conv(xml: &str) -> Value {
        let doc = parse(xml.as_bytes()).unwrap();
        assert_eq!(doc.root, "r");
        doc.value
    }

    fn malformed(xml: &str) -> String {
        match parse(xml.as_bytes()).unwrap_err() {
            IngestError::Malformed(m) => m,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn near_maps_nested_deep_are_converted_in_linear_time() {
        // Each level is an <entry> that is not quite a map (a second child that is no entry):
        // converting the entry before knowing that would double the work per level.
        let levels = 20;
        let mut xml = String::from("<r>");
        for _ in 0..levels {
            xml.push_str("<a><entry><k>x</k>");
        }
        xml.push_str("<v/>");
        for _ in 0..levels {
            xml.push_str("</entry><b/></a>");
        }
        xml.push_str("</r>");
        CONVERTED.with(|n| n.set(0));
        let v = conv(&xml);
        // <r>, then <a>, <entry>, <k> and <b> per level, and the innermost <v/>.
        let elements = 1 + levels * 4 + 1;
        assert_eq!(CONVERTED.with(|n| n.get()), elements, "each element converted once");
        let mut at = &v;
        for _ in 0..levels {
            at = &at["a"]["entry"];
        }
        assert_eq!(at["k"], "x");
        assert!(at["v"].is_null() && at.get("v").is_some(), "the innermost value: {at}");
    }

    #[test]
    fn leaves_are_strings_kept_exactly() {
        let v = conv(
            "<r>\n  <number>128</number>\n  <log>line 1\nline 2\n</log>\n  <notes>  padded </notes>\n</r>",
        );
        assert_eq!(v, json!({"number": "128", "log": "line 1\nline 2\n", "notes": "  padded "}));
    }

    #[test]
    fn empty_elements_are_null_or_empty_string() {
        assert_eq!(conv("<r><artifacts/><log></log></r>"), json!({"artifacts": null, "log": ""}));
        assert_eq!(conv("<r/>"), Value::Null);
        assert_eq!(conv("<r></r>"), json!(""));
    }

    #[test]
    fn entities_and_cdata_are_resolved() {
        let v = conv("<r><a>R42 &amp; hotfix: &lt;b&gt; &apos;x&apos; &quot;y&quot; &#x41;&#66;</a><b><![CDATA[<raw> & ]]></b></r>");
        assert_eq!(v, json!({"a": "R42 & hotfix: <b> 'x' \"y\" AB", "b": "<raw> & "}));
    }

    #[test]
    fn entry_pairs_are_maps_with_nested_maps() {
        let xml = "<r><parameters class=\"linked-hash-map\">\n<entry><string>DEPLOY_ENV</string><string>staging</string></entry>\n\
                   <entry><string>target/a.jar</string><map><entry><string>archive</string><string>https://x/a.jar</string></entry></map></entry>\n\
                   </parameters></r>";
        let v = conv(xml);
        assert_eq!(
            v,
            json!({"parameters": {"DEPLOY_ENV": "staging", "target/a.jar": {"archive": "https://x/a.jar"}}})
        );
    }

    #[test]
    fn item_aliases_make_lists_even_with_one_item() {
        assert_eq!(conv("<r><culprits><string>jdoe</string></culprits></r>"), json!({"culprits": ["jdoe"]}));
        assert_eq!(
            conv("<r><changes><string>a</string><string>b</string></changes></r>"),
            json!({"changes": ["a", "b"]})
        );
        assert_eq!(conv("<r><one><only>x</only></one></r>"), json!({"one": {"only": "x"}}));
        assert_eq!(conv("<r><item>1</item><item>2</item></r>"), json!(["1", "2"]));
    }

    #[test]
    fn repeated_names_among_others_collect_arrays() {
        let v = conv("<r><a>1</a><b>x</b><a>2</a><a>3</a></r>");
        assert_eq!(v, json!({"a": ["1", "2", "3"], "b": "x"}));
        let v = conv("<r><n><string>p</string></n><n><string>q</string></n><m/></r>");
        assert_eq!(v, json!({"n": [["p"], ["q"]], "m": null}));
    }

    #[test]
    fn declaration_comments_and_attributes_are_ignored() {
        let v = conv("<?xml version=\"1.0\"?>\n<!-- hi --><r id=\"1\"><a k=\"v\">x</a><!-- c --></r>\n");
        assert_eq!(v, json!({"a": "x"}));
    }

    #[test]
    fn mixed_text_is_kept_under_a_text_key() {
        assert_eq!(conv("<r>hello <b>x</b></r>"), json!({"b": "x", "#text": "hello"}));
    }

    #[test]
    fn malformed_documents_report_a_byte_position() {
        let long = "n".repeat(100_000);
        for xml in [format!("<r><{long}>"), format!("<r><{long}>x</{long}x></r>")] {
            let e = malformed(&xml);
            assert!(e.len() < 300, "{} bytes of error", e.len());
        }
        let e = malformed("<r><a>x</b></r>");
        assert!(e.starts_with("malformed XML at byte ") && e.contains("</b>"), "{e}");
        let e = malformed("<r><a>x</a>");
        assert_eq!(e, "malformed XML at byte 11: element <r> is not closed");
        assert!(malformed("<r/><r/>").contains("second root"));
        assert!(malformed("<r>&bogus;</r>").starts_with("malformed XML at byte "));
        assert!(malformed("<r>x</r>tail").contains("outside the root"));
        assert_eq!(malformed("<!-- only a comment -->"), "malformed XML: no root element");
        assert!(malformed("<r><a").contains("byte 3"), "{}", malformed("<r><a"));
        assert!(parse(b"<r>\xFF</r>").is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}{}", "<a>".repeat(MAX_DEPTH + 1), "</a>".repeat(MAX_DEPTH + 1));
        assert!(malformed(&deep).contains("nested deeper"));
        let ok = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
        assert!(parse(ok.as_bytes()).is_ok());
    }
}
