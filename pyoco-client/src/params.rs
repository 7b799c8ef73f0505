//! Parsing of `submit`'s run params (`--params-file`, `--params`, `--param k=v`) and `--tags`,
//! with the original's rules and error reasons. Pure: the caller reads files.

use serde_json::{Map, Value};

/// Decodes `--params`: it must be a JSON object.
pub fn parse_params_json(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("--params must be JSON object".into()),
        Err(e) => Err(format!("--params must be JSON object ({e})")),
    }
}

/// Decodes the content of `--params-file`: tried as JSON, then as YAML; the top level must be
/// an object.
pub fn parse_params_file(text: &str) -> Result<Map<String, Value>, String> {
    let value = match serde_json::from_str::<Value>(text) {
        Ok(v) => v,
        Err(_) => serde_yaml::from_str::<Value>(text)
            .map_err(|e| format!("--params-file is neither JSON nor YAML ({e})"))?,
    };
    match value {
        Value::Object(map) => Ok(map),
        _ => Err("--params-file must contain a JSON/YAML object".into()),
    }
}

/// Decodes one `--param key=value`. The value is JSON when it parses as JSON, else the raw
/// string; an empty value is `""`.
pub fn parse_param(raw: &str) -> Result<(String, Value), String> {
    let Some((key, value)) = raw.split_once('=') else {
        return Err(format!("--param must be key=value ('{raw}')"));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("--param key is empty ('{raw}')"));
    }
    let value = if value.is_empty() {
        Value::String(String::new())
    } else {
        serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()))
    };
    Ok((key.to_string(), value))
}

/// Merges the three sources last-wins: file, then `--params`, then each `--param` in order.
pub fn merge_params(
    file: Option<Map<String, Value>>,
    params: Option<Map<String, Value>>,
    param: &[String],
) -> Result<Map<String, Value>, String> {
    let mut out = file.unwrap_or_default();
    out.extend(params.unwrap_or_default());
    for raw in param {
        let (k, v) = parse_param(raw)?;
        out.insert(k, v);
    }
    Ok(out)
}

/// Splits `--tags a, b,,c` into `["a","b","c"]`; `None` when nothing is left (the option is then
/// not sent at all).
pub fn parse_tags(raw: Option<&str>) -> Option<Vec<String>> {
    let tags: Vec<String> = raw?
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    (!tags.is_empty()).then_some(tags)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing test may panic
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn param_values_follow_the_original_example() {
        let raw: Vec<String> = ["x=1", "s=abc", r#"j={"a":1}"#, "e="]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let merged = merge_params(None, None, &raw).unwrap();
        assert_eq!(
            serde_json::to_string(&merged).unwrap(),
            r#"{"x":1,"s":"abc","j":{"a":1},"e":""}"#
        );
    }

    #[test]
    fn param_value_may_contain_equals_and_key_is_trimmed() {
        assert_eq!(parse_param(" k =a=b").unwrap(), ("k".into(), json!("a=b")));
        assert_eq!(parse_param("b=true").unwrap(), ("b".into(), json!(true)));
        assert_eq!(parse_param("n=null").unwrap(), ("n".into(), Value::Null));
        assert_eq!(parse_param("l=[1,2]").unwrap(), ("l".into(), json!([1, 2])));
    }

    #[test]
    fn bad_params_are_rejected_with_the_original_reasons() {
        assert_eq!(
            parse_param("novalue").unwrap_err(),
            "--param must be key=value ('novalue')"
        );
        assert_eq!(
            parse_param("=1").unwrap_err(),
            "--param key is empty ('=1')"
        );
        assert_eq!(
            parse_params_json("[]").unwrap_err(),
            "--params must be JSON object"
        );
        assert!(
            parse_params_json("{nope")
                .unwrap_err()
                .starts_with("--params must be JSON object")
        );
        assert!(parse_params_file("- a\n- b\n").is_err());
        assert!(parse_params_file("just text").is_err());
    }

    #[test]
    fn merge_is_last_wins_file_then_params_then_param() {
        let file = parse_params_file("a: 1\nb: 1\nc: 1\n").unwrap();
        let params = parse_params_json(r#"{"b": 2, "c": 2}"#).unwrap();
        let merged = merge_params(Some(file), Some(params), &["c=3".to_string()]).unwrap();
        assert_eq!(Value::Object(merged), json!({"a": 1, "b": 2, "c": 3}));
    }

    #[test]
    fn params_file_accepts_json_and_yaml_objects() {
        assert_eq!(
            Value::Object(parse_params_file(r#"{"x": [1, 2]}"#).unwrap()),
            json!({"x": [1, 2]})
        );
        assert_eq!(
            Value::Object(parse_params_file("x:\n  y: hello\n").unwrap()),
            json!({"x": {"y": "hello"}})
        );
    }

    #[test]
    fn tags_are_split_trimmed_and_emptied() {
        assert_eq!(
            parse_tags(Some(" a, b,,c ,")),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(parse_tags(Some(" , ")), None);
        assert_eq!(parse_tags(None), None);
    }
}
