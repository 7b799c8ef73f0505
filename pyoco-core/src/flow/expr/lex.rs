//! Tokens of the expression language.

use serde_json::Value;

use super::{ExprError, error, py_repr};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum T {
    Num(Value),
    Str(String),
    Name(String),
    /// `$ctx` or `$env`.
    Ref(String),
    Op(&'static str),
    End,
}

impl T {
    pub(super) fn describe(&self) -> String {
        match self {
            T::Num(v) => format!("number {v}"),
            T::Str(s) => format!("string {}", py_repr(&Value::String(s.clone()))),
            T::Name(n) => format!("'{n}'"),
            T::Ref(r) => format!("'${r}'"),
            T::Op(op) => format!("'{op}'"),
            T::End => "the end of the expression".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Tok {
    pub(super) tok: T,
    pub(super) at: usize,
}

const OPS: &[&str] = &[
    "**", "==", "!=", "<=", ">=", "//", "&&", "||", "<", ">", "+", "-", "*", "/", "%", "(", ")",
    ".", "=", "!", "[", "]", "{", "}", ",", ":", "&", "|", "^", "~", "@",
];

pub(super) fn lex(src: &str) -> Result<Vec<Tok>, ExprError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out: Vec<Tok> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i;
        let after_dot = matches!(
            out.last(),
            Some(Tok {
                tok: T::Op("."),
                ..
            })
        );
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let tok = if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let mut float = false;
            if !after_dot && i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit()
            {
                float = true;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if !after_dot && i < chars.len() && matches!(chars[i], 'e' | 'E') {
                let mut j = i + 1;
                if j < chars.len() && matches!(chars[j], '+' | '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    float = true;
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let text: String = chars[start..i].iter().collect();
            if after_dot {
                T::Name(text)
            } else if float {
                let f: f64 = text.parse().map_err(|_| error(at, "invalid number"))?;
                T::Num(
                    serde_json::Number::from_f64(f)
                        .map(Value::Number)
                        .ok_or_else(|| error(at, "number out of range"))?,
                )
            } else {
                let n: i64 = text
                    .parse()
                    .map_err(|_| error(at, "integer out of range"))?;
                T::Num(Value::from(n))
            }
        } else if c == '_' || c.is_alphabetic() {
            let start = i;
            while i < chars.len() && (chars[i] == '_' || chars[i].is_alphanumeric()) {
                i += 1;
            }
            T::Name(chars[start..i].iter().collect())
        } else if c == '$' {
            i += 1;
            let start = i;
            while i < chars.len() && (chars[i] == '_' || chars[i].is_ascii_alphanumeric()) {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            if name != "ctx" && name != "env" {
                return Err(error(
                    at,
                    format!("unknown reference '${name}' (expected $ctx.<path> or $env.<NAME>)"),
                ));
            }
            T::Ref(name)
        } else if c == '"' || c == '\'' {
            i += 1;
            let mut s = String::new();
            loop {
                let Some(&d) = chars.get(i) else {
                    return Err(error(at, "unterminated string"));
                };
                i += 1;
                if d == c {
                    break;
                }
                if d == '\\' {
                    let Some(&e) = chars.get(i) else {
                        return Err(error(at, "unterminated string"));
                    };
                    i += 1;
                    match e {
                        'n' => s.push('\n'),
                        't' => s.push('\t'),
                        'r' => s.push('\r'),
                        '\\' | '\'' | '"' => s.push(e),
                        other => {
                            s.push('\\');
                            s.push(other);
                        }
                    }
                } else {
                    s.push(d);
                }
            }
            T::Str(s)
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) else {
                return Err(error(
                    at,
                    format!("unexpected character '{}'", c.escape_debug()),
                ));
            };
            i += op.chars().count();
            T::Op(op)
        };
        out.push(Tok { tok, at });
    }
    out.push(Tok {
        tok: T::End,
        at: chars.len(),
    });
    Ok(out)
}
