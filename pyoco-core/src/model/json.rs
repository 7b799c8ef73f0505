//! JSON the way Python has it. Reading: `json.dumps` emits `NaN`, `Infinity` and `-Infinity`
//! for non-finite floats, which is not JSON; we read those tokens as `null` (JSON has no other
//! spelling for them) and parse everything else strictly. Writing: [`dumps`] gives the bytes
//! of `json.dumps`' defaults, for outputs that scripts written against the original compare.

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::ser::Formatter;

/// JSON as Python's `json.dumps(obj)` writes it by default: `", "` and `": "` separators and
/// everything outside printable ASCII escaped as `\uXXXX` (`ensure_ascii`). A value that
/// cannot be serialized (a map with non-string keys) is `null`.
pub fn dumps<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    if value.serialize(&mut ser).is_err() {
        return "null".into();
    }
    // The formatter writes only ASCII, so this cannot fail.
    String::from_utf8(out).unwrap_or_default()
}

/// The separators and escapes of `json.dumps`' defaults.
#[derive(Debug, Default)]
struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // serde_json already escaped quotes, backslashes and control characters; what is left
        // outside printable ASCII (DEL included, as Python's `[^\ -~]`) is escaped as UTF-16
        // units, as `ensure_ascii` does.
        for c in fragment.chars() {
            if (' '..='~').contains(&c) {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// Parses `bytes`, accepting Python's non-finite float tokens as `null`.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(first) => match replace_non_finite(bytes) {
            Some(fixed) => serde_json::from_slice(&fixed),
            None => Err(first),
        },
    }
}

/// Returns a copy with every `NaN`/`Infinity`/`-Infinity` token outside strings replaced by
/// `null`, or `None` when there was none.
fn replace_non_finite(bytes: &[u8]) -> Option<Vec<u8>> {
    const TOKENS: [&[u8]; 3] = [b"-Infinity", b"Infinity", b"NaN"];
    let mut out = Vec::with_capacity(bytes.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut replaced = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            out.push(b);
            i += 1;
            continue;
        }
        if let Some(tok) = TOKENS.iter().find(|t| bytes[i..].starts_with(t)) {
            out.extend_from_slice(b"null");
            i += tok.len();
            replaced = true;
            continue;
        }
        out.push(b);
        i += 1;
    }
    replaced.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn dumps_writes_what_python_json_dumps_writes() {
        let v = json!({"s": "é\u{1F600}\u{7f}\n\"", "n": [1, 2.5, null], "o": {}});
        assert_eq!(
            dumps(&v),
            r#"{"s": "\u00e9\ud83d\ude00\u007f\n\"", "n": [1, 2.5, null], "o": {}}"#
        );
    }

    #[test]
    fn python_non_finite_tokens_read_as_null() {
        let v: Value =
            from_slice(br#"{"a":NaN,"b":[Infinity,-Infinity],"s":"NaN \"Infinity\""}"#).unwrap();
        assert_eq!(
            v,
            json!({"a": null, "b": [null, null], "s": "NaN \"Infinity\""})
        );
    }

    #[test]
    fn escaped_unicode_and_plain_json_pass() {
        let v: Value = from_slice(br#"{"t":"\u00e9\ud83d\ude00"}"#).unwrap();
        assert_eq!(v["t"], "é😀");
        assert!(from_slice::<Value>(b"{nope").is_err());
    }
}
