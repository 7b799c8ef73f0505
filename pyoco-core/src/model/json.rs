//! Reading JSON written by Python: `json.dumps` emits `NaN`, `Infinity` and `-Infinity` for
//! non-finite floats, which is not JSON. We read those tokens as `null` (JSON has no other
//! spelling for them) and parse everything else strictly.

use serde::de::DeserializeOwned;

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
