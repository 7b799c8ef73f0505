//! Python's operator semantics over JSON values: truthiness, `==` (`True == 1`,
//! `1 == 1.0`), ordering, `in`, arithmetic. Integers are 64-bit: an overflow is an error
//! where Python would switch to big integers.

use std::cmp::Ordering;

use serde_json::{Number, Value};

/// Results of `*` on strings and lists are capped so that an expression cannot eat memory.
const MAX_LEN: usize = 1_000_000;

#[derive(Debug, Clone, Copy)]
enum Num {
    I(i64),
    F(f64),
}

impl Num {
    fn f(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }
}

fn num(v: &Value) -> Option<Num> {
    match v {
        Value::Bool(b) => Some(Num::I(i64::from(*b))),
        Value::Number(n) => n.as_i64().map(Num::I).or_else(|| n.as_f64().map(Num::F)),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match num(v) {
        Some(Num::I(i)) => Some(i),
        _ => None,
    }
}

fn out(n: Num) -> Result<Value, String> {
    match n {
        Num::I(i) => Ok(Value::from(i)),
        Num::F(f) => Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| "float result is out of range".to_string()),
    }
}

/// Python's type name, for error messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Python's truth value.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(_) => num(v).is_some_and(|n| n.f() != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// Python's `==`.
pub fn py_eq(a: &Value, b: &Value) -> bool {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return match (x, y) {
            (Num::I(x), Num::I(y)) => x == y,
            _ => x.f() == y.f(),
        };
    }
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| py_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        _ => false,
    }
}

/// Python's `repr` of a string: single quotes unless the text has one and no double quote;
/// backslash, the quote, `\n`, `\r`, `\t` and other control characters escaped.
pub fn py_repr_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `repr`.
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            let s = f.to_string();
            if s.contains(['.', 'e', 'E']) {
                s
            } else {
                format!("{s}.0")
            }
        }
        Value::Number(n) => n.to_string(),
        Value::String(s) => py_repr_str(s),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(py_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", py_repr(&Value::String(k.clone())), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn unsupported(op: &str, a: &Value, b: &Value) -> String {
    format!(
        "unsupported operand type(s) for {op}: '{}' and '{}'",
        type_name(a),
        type_name(b)
    )
}

/// `<`, `<=`, `>`, `>=`: numbers, strings and lists (lexicographically).
pub fn compare(a: &Value, b: &Value, op: &str) -> Result<Ordering, String> {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return Ok(match (x, y) {
            (Num::I(x), Num::I(y)) => x.cmp(&y),
            _ => x.f().partial_cmp(&y.f()).unwrap_or(Ordering::Equal),
        });
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Array(x), Value::Array(y)) => {
            for (x, y) in x.iter().zip(y) {
                if !py_eq(x, y) {
                    return compare(x, y, op);
                }
            }
            Ok(x.len().cmp(&y.len()))
        }
        _ => Err(format!(
            "'{op}' not supported between instances of '{}' and '{}'",
            type_name(a),
            type_name(b)
        )),
    }
}

/// `item in container`.
pub fn contains(container: &Value, item: &Value) -> Result<bool, String> {
    match (container, item) {
        (Value::Array(items), _) => Ok(items.iter().any(|x| py_eq(x, item))),
        (Value::String(s), Value::String(sub)) => Ok(s.contains(sub.as_str())),
        (Value::String(_), other) => Err(format!(
            "'in <string>' requires string as left operand, not {}",
            type_name(other)
        )),
        (Value::Object(m), Value::String(k)) => Ok(m.contains_key(k)),
        (Value::Object(_), _) => Ok(false),
        (other, _) => Err(format!(
            "argument of type '{}' is not iterable",
            type_name(other)
        )),
    }
}

fn overflow() -> String {
    "integer overflow".to_string()
}

pub fn add(a: &Value, b: &Value) -> Result<Value, String> {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return match (x, y) {
            (Num::I(x), Num::I(y)) => x.checked_add(y).map(Value::from).ok_or_else(overflow),
            _ => out(Num::F(x.f() + y.f())),
        };
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => Ok(Value::String(format!("{x}{y}"))),
        (Value::Array(x), Value::Array(y)) => {
            Ok(Value::Array(x.iter().chain(y.iter()).cloned().collect()))
        }
        _ => Err(unsupported("+", a, b)),
    }
}

pub fn sub(a: &Value, b: &Value) -> Result<Value, String> {
    match (num(a), num(b)) {
        (Some(Num::I(x)), Some(Num::I(y))) => {
            x.checked_sub(y).map(Value::from).ok_or_else(overflow)
        }
        (Some(x), Some(y)) => out(Num::F(x.f() - y.f())),
        _ => Err(unsupported("-", a, b)),
    }
}

pub fn mul(a: &Value, b: &Value) -> Result<Value, String> {
    match (num(a), num(b)) {
        (Some(Num::I(x)), Some(Num::I(y))) => {
            return x.checked_mul(y).map(Value::from).ok_or_else(overflow);
        }
        (Some(x), Some(y)) => return out(Num::F(x.f() * y.f())),
        _ => {}
    }
    let (seq, times) = match (a, b) {
        (Value::String(_) | Value::Array(_), _) if int(b).is_some() => (a, int(b)),
        (_, Value::String(_) | Value::Array(_)) if int(a).is_some() => (b, int(a)),
        _ => return Err(unsupported("*", a, b)),
    };
    let times = usize::try_from(times.unwrap_or(0).max(0)).unwrap_or(usize::MAX);
    let len = match seq {
        Value::String(s) => s.len(),
        Value::Array(items) => items.len(),
        _ => 0,
    };
    if len.saturating_mul(times) > MAX_LEN {
        return Err("result too large".to_string());
    }
    Ok(match seq {
        Value::String(s) => Value::String(s.repeat(times)),
        Value::Array(items) => Value::Array(
            std::iter::repeat_n(items.iter(), times)
                .flatten()
                .cloned()
                .collect(),
        ),
        other => other.clone(),
    })
}

pub fn div(a: &Value, b: &Value) -> Result<Value, String> {
    match (num(a), num(b)) {
        (Some(_), Some(y)) if y.f() == 0.0 => Err("division by zero".to_string()),
        (Some(x), Some(y)) => out(Num::F(x.f() / y.f())),
        _ => Err(unsupported("/", a, b)),
    }
}

/// Python's `%`: the result has the sign of the divisor.
pub fn modulo(a: &Value, b: &Value) -> Result<Value, String> {
    match (num(a), num(b)) {
        (Some(_), Some(y)) if y.f() == 0.0 => Err("modulo by zero".to_string()),
        (Some(Num::I(x)), Some(Num::I(y))) => {
            let mut r = x.checked_rem(y).unwrap_or(0);
            if r != 0 && (r < 0) != (y < 0) {
                r += y;
            }
            Ok(Value::from(r))
        }
        (Some(x), Some(y)) => {
            let (x, y) = (x.f(), y.f());
            let mut r = x % y;
            if r != 0.0 && (r < 0.0) != (y < 0.0) {
                r += y;
            }
            out(Num::F(r))
        }
        _ => Err(unsupported("%", a, b)),
    }
}

pub fn pow(a: &Value, b: &Value) -> Result<Value, String> {
    match (num(a), num(b)) {
        (Some(Num::I(x)), Some(Num::I(y))) if y >= 0 => u32::try_from(y)
            .ok()
            .and_then(|y| x.checked_pow(y))
            .map(Value::from)
            .ok_or_else(overflow),
        (Some(x), Some(y)) => {
            let (x, y) = (x.f(), y.f());
            if x == 0.0 && y < 0.0 {
                return Err("0.0 cannot be raised to a negative power".to_string());
            }
            if x < 0.0 && y.fract() != 0.0 {
                return Err("a negative number cannot be raised to a fractional power".into());
            }
            out(Num::F(x.powf(y)))
        }
        _ => Err(unsupported("** or pow()", a, b)),
    }
}

pub fn neg(a: &Value) -> Result<Value, String> {
    match num(a) {
        Some(Num::I(x)) => x.checked_neg().map(Value::from).ok_or_else(overflow),
        Some(Num::F(x)) => out(Num::F(-x)),
        None => Err(format!("bad operand type for unary -: '{}'", type_name(a))),
    }
}

pub fn pos(a: &Value) -> Result<Value, String> {
    match num(a) {
        Some(n) => out(n),
        None => Err(format!("bad operand type for unary +: '{}'", type_name(a))),
    }
}
