#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;

fn vars_eval(src: &str, aliases: &[&str], bare: Bare) -> Result<Value, String> {
    let params = json!({"x": 3, "xs": [1, 2, 3], "m": {"k": "v"}, "mode": "fast", "flag": true});
    let params = params.as_object().cloned().unwrap();
    let results: HashMap<String, Value> = [
        ("t".to_string(), json!({"k": 5, "list": ["a", "b"]})),
        ("count".to_string(), json!(2)),
    ]
    .into_iter()
    .collect();
    let frames = vec![
        json!({"type": "foreach", "index": 1, "iteration": 2, "count": 3, "item": {"name": "n1"}, "alias": "it"}),
        json!({"type": "repeat", "index": 0, "iteration": 1, "count": 2, "item": null, "alias": null}),
    ];
    let aliases: Vec<String> = aliases.iter().map(|a| a.to_string()).collect();
    let mut expr = parse(src).map_err(|e| format!("parse error at {}: {}", e.at, e.message))?;
    expr.bind(&aliases, true, bare)
        .map_err(|e| format!("bind error at {}: {}", e.at, e.message))?;
    expr.eval(&Vars {
        params: &params,
        results: &results,
        frames: &frames,
    })
}

fn ev(src: &str) -> Value {
    match vars_eval(src, &["it"], Bare::Params) {
        Ok(v) => v,
        Err(e) => panic!("{src:?}: {e}"),
    }
}

fn eval_err(src: &str) -> String {
    match vars_eval(src, &["it"], Bare::Params) {
        Ok(v) => panic!("{src:?}: expected an error, got {v}"),
        Err(e) => e,
    }
}

fn parse_err(src: &str) -> (usize, String) {
    match parse(src) {
        Ok(e) => panic!("{src:?}: expected a parse error, got {e:?}"),
        Err(e) => (e.at, e.message),
    }
}

#[test]
fn arithmetic_and_precedence_follow_python() {
    let cases: &[(&str, Value)] = &[
        ("1 + 2 * 3", json!(7)),
        ("(1 + 2) * 3", json!(9)),
        ("-2 ** 2", json!(-4)),
        ("2 ** 3 ** 2", json!(512)),
        ("2 ** -1", json!(0.5)),
        ("7 / 2", json!(3.5)),
        ("7 % 3", json!(1)),
        ("-7 % 3", json!(2)),
        ("7 % -3", json!(-2)),
        ("7.5 % 2", json!(1.5)),
        ("10 - 2 - 3", json!(5)),
        ("+3 - -3", json!(6)),
        ("1.5 + 1", json!(2.5)),
        ("True + 1", json!(2)),
        ("'a' + 'b'", json!("ab")),
        ("'ab' * 2", json!("abab")),
        ("1e3", json!(1000.0)),
        ("\"q\\\"x\"", json!("q\"x")),
        ("None", json!(null)),
        ("null", json!(null)),
        ("true and false", json!(false)),
    ];
    for (src, want) in cases {
        assert_eq!(&ev(src), want, "{src}");
    }
}

#[test]
fn logic_and_comparisons_follow_python() {
    let cases: &[(&str, Value)] = &[
        ("0 or 'x'", json!("x")),
        ("1 and 0", json!(0)),
        ("'' or None", json!(null)),
        ("not 1 == 2", json!(true)),
        ("not not 0", json!(false)),
        ("1 < 2 < 3", json!(true)),
        ("3 > 2 > 2", json!(false)),
        ("1 == 1.0", json!(true)),
        ("True == 1", json!(true)),
        ("None == null", json!(true)),
        ("'a' != 'b'", json!(true)),
        ("'abc' < 'abd'", json!(true)),
        ("2 <= 2 and 3 >= 4 or 5", json!(5)),
        ("'b' in 'abc'", json!(true)),
        ("2 in $ctx.params.xs", json!(true)),
        ("4 not in params.xs", json!(true)),
        ("'k' in params.m", json!(true)),
        ("1 + 1 == 2 and not params.flag", json!(false)),
    ];
    for (src, want) in cases {
        assert_eq!(&ev(src), want, "{src}");
    }
}

#[test]
fn references_read_params_results_loops_aliases_and_env() {
    // SAFETY-free: tests read PATH, which is always set for cargo.
    let path = std::env::var("PATH").unwrap_or_default();
    let cases: &[(&str, Value)] = &[
        ("$ctx.params.x", json!(3)),
        ("params.x + 1", json!(4)),
        ("ctx.params.mode", json!("fast")),
        ("$ctx.params.m.k", json!("v")),
        ("$ctx.results.t.k", json!(5)),
        ("results.t.list.1", json!("b")),
        ("$ctx.results.count >= 2", json!(true)),
        ("$ctx.loop.type", json!("repeat")),
        ("$ctx.loops.0.item.name", json!("n1")),
        ("it.name", json!("n1")),
        ("$ctx.it.name + '!'", json!("n1!")),
        ("$env.PATH", json!(path)),
        ("env.PATH == $env.PATH", json!(true)),
        // A lone name is a param (switch, foreach)...
        ("mode", json!("fast")),
        (
            "params",
            json!({"x": 3, "xs": [1, 2, 3], "m": {"k": "v"}, "mode": "fast", "flag": true}),
        ),
    ];
    for (src, want) in cases {
        assert_eq!(&ev(src), want, "{src}");
    }
    // ...or `$ctx.<name>` (until).
    assert_eq!(
        vars_eval("it", &["it"], Bare::Ctx),
        Ok(json!({"name": "n1"}))
    );
    assert_eq!(
        vars_eval("mode", &[], Bare::Ctx),
        Err("bind error at 0: unknown context '$ctx.mode' (expected params, results, loop, loops or a foreach alias in scope)".into())
    );
    assert_eq!(
        vars_eval("mode == 1", &[], Bare::Params),
        Err("bind error at 0: unknown name 'mode' (use $ctx.params.mode, $ctx.results.<task> or a foreach alias)".into())
    );
    let mut outside = parse("$ctx.loop.index").unwrap();
    assert_eq!(
        outside
            .bind(&[], false, Bare::Params)
            .map_err(|e| e.message),
        Err("$ctx.loop is only available inside repeat, foreach and until".into())
    );
}

#[test]
fn runtime_errors_explain_themselves() {
    let cases: &[(&str, &str)] = &[
        (
            "$ctx.params.nope",
            "'nope' is not a run param ($ctx.params)",
        ),
        ("$ctx.params.m.z", "'z' not found in $ctx.params.m"),
        ("results.t.list.7", "'7' not found in $ctx.results.t.list"),
        (
            "results.later",
            "task 'later' has no result yet ($ctx.results)",
        ),
        (
            "'a' < 1",
            "'<' not supported between instances of 'str' and 'int'",
        ),
        (
            "'a' + 1",
            "unsupported operand type(s) for +: 'str' and 'int'",
        ),
        ("1 / 0", "division by zero"),
        ("1 % 0", "modulo by zero"),
        ("1 in 3", "argument of type 'int' is not iterable"),
        (
            "1 in 'abc'",
            "'in <string>' requires string as left operand, not int",
        ),
        ("9223372036854775807 + 1", "integer overflow"),
        ("2 ** 64", "integer overflow"),
        ("-'a'", "bad operand type for unary -: 'str'"),
        ("0 ** -1", "0.0 cannot be raised to a negative power"),
        ("'x' * 2000000", "result too large"),
        (
            "$env.PYOCO_SURELY_UNSET_VARIABLE",
            "environment variable 'PYOCO_SURELY_UNSET_VARIABLE' is not set",
        ),
    ];
    for (src, want) in cases {
        assert_eq!(eval_err(src), *want, "{src}");
    }
}

#[test]
fn rejected_constructs_point_at_the_offending_character() {
    let cases: &[(&str, usize, &str)] = &[
        ("len(x)", 3, "function calls are not allowed"),
        ("$ctx.params.f(1)", 13, "function calls are not allowed"),
        (
            "x[0]",
            1,
            "subscripts are not allowed (use a dotted path: $ctx.results.t.key)",
        ),
        (
            "(1).real",
            3,
            "attribute access is only allowed on $ctx/$env references",
        ),
        (
            "'s'.upper",
            3,
            "attribute access is only allowed on $ctx/$env references",
        ),
        ("lambda: 1", 0, "lambda is not allowed"),
        ("[1, 2]", 0, "list literals are not allowed"),
        ("{}", 0, "dict and set literals are not allowed"),
        ("1 if x else 2", 2, "unexpected 'if' after the expression"),
        ("x = 1", 2, "unexpected '=' (use '==' to compare)"),
        ("a && b", 2, "unexpected '&' (use 'and')"),
        ("a || b", 2, "unexpected '|' (use 'or')"),
        ("!a", 0, "unexpected '!' (use 'not')"),
        ("a // 2", 2, "'//' is not supported (use '/')"),
        ("x is None", 2, "'is' is not supported (use '==' or '!=')"),
        ("x not 1", 2, "expected 'in' after 'not'"),
        (
            "1 +",
            3,
            "expected a value but found the end of the expression",
        ),
        ("(1", 2, "expected ')' but found the end of the expression"),
        (
            "",
            0,
            "expected a value but found the end of the expression",
        ),
        (
            "$foo.x",
            0,
            "unknown reference '$foo' (expected $ctx.<path> or $env.<NAME>)",
        ),
        ("$ctx", 0, "expected $ctx.<name>"),
        ("$env.A.B", 0, "expected $env.<NAME>"),
        (
            "$ctx.",
            5,
            "expected a key after '.' but found the end of the expression",
        ),
        ("'abc", 0, "unterminated string"),
        ("1 ? 2", 2, "unexpected character '?'"),
        ("and", 0, "unexpected 'and'"),
        ("99999999999999999999", 0, "integer out of range"),
    ];
    for (src, at, message) in cases {
        assert_eq!(parse_err(src), (*at, message.to_string()), "{src}");
    }
    let deep = format!("{}1{}", "(".repeat(70), ")".repeat(70));
    assert_eq!(parse_err(&deep).1, "expression nested too deeply");
    let long = vec!["1"; 100].join(" + ");
    assert_eq!(
        parse_err(&long).1,
        "expression too long (too many operators in a row)"
    );
}

#[test]
fn python_values() {
    let cases: &[(Value, &str)] = &[
        (json!(null), "None"),
        (json!(true), "True"),
        (json!(3), "3"),
        (json!(2.0), "2.0"),
        (json!(2.5), "2.5"),
        (json!("it's"), "\"it's\""),
        (json!("a\nb"), "'a\\nb'"),
        (json!([1, "x"]), "[1, 'x']"),
        (json!({"k": false}), "{'k': False}"),
    ];
    for (v, want) in cases {
        assert_eq!(py_repr(v), *want);
    }
    assert!(!truthy(&json!(0.0)) && !truthy(&json!([])) && !truthy(&json!({})));
    assert!(truthy(&json!("0")) && truthy(&json!([0])));
    assert!(py_eq(&json!([1, {"a": true}]), &json!([1.0, {"a": 1}])));
    assert!(!py_eq(&json!("1"), &json!(1)));
    assert_eq!(parse("1 +  2").unwrap().source(), "1 +  2");
}
