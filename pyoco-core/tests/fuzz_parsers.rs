//! Property tests of everything that parses client input: the YAML loader (with its node and
//! depth budget), flow.yaml validation and the graph language. Whatever the bytes, they return
//! an answer — never a panic, never more than the budget. Case counts are bounded so the suite
//! stays fast; `PROPTEST_CASES` raises them for a longer local run.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

use proptest::prelude::*;
use pyoco::flow::yaml_guard::{YamlLimits, load};
use serde_yaml::Value as Yaml;

/// Nodes of a loaded value, aliases expanded (what the budget bounds).
fn nodes(v: &Yaml) -> usize {
    1 + match v {
        Yaml::Sequence(s) => s.iter().map(nodes).sum(),
        Yaml::Mapping(m) => m.iter().map(|(k, v)| nodes(k) + nodes(v)).sum(),
        Yaml::Tagged(t) => nodes(&t.value),
        _ => 0,
    }
}

fn yaml_token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "a",
        "b",
        "x: ",
        "- ",
        "[",
        "]",
        "{",
        "}",
        ", ",
        ": ",
        "\n",
        "  ",
        "&a ",
        "&b ",
        "*a",
        "*b",
        "!!python/object:os.system ",
        "!x ",
        "!!str ",
        "'q'",
        "\"q\"",
        "1",
        "-1.5",
        "~",
        "? ",
        "<<: ",
        "---\n",
        "...\n",
        "#c\n",
        "|\n  t\n",
        ">\n  t\n",
        "%YAML 1.2\n",
    ])
}

fn graph_token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "a",
        "b",
        "c",
        "flow",
        " >> ",
        " & ",
        " | ",
        "(",
        ")",
        ";",
        "\n",
        "[3]",
        "[0]",
        "[\"items as x\"]",
        " % \"$ctx.params.n > 1\"",
        "switch",
        "{",
        "}",
        ":",
        "\"x\"",
        "#c",
        "  ",
        ">",
        "&&",
        "||",
    ])
}

fn small_limits() -> YamlLimits {
    YamlLimits {
        max_nodes: 500,
        max_depth: 16,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_is_loaded_or_refused_within_the_budget(text in "\\PC{0,400}") {
        if let Ok(v) = load(&text, small_limits()) {
            prop_assert!(nodes(&v) <= 500);
        }
    }

    #[test]
    fn yaml_shaped_text_is_loaded_or_refused_within_the_budget(
        tokens in prop::collection::vec(yaml_token(), 0..120)
    ) {
        let text: String = tokens.concat();
        if let Ok(v) = load(&text, small_limits()) {
            prop_assert!(nodes(&v) <= 500, "{} nodes from {text:?}", nodes(&v));
        }
    }

    #[test]
    fn flow_yaml_validation_never_panics(tokens in prop::collection::vec(yaml_token(), 0..120)) {
        let text = format!("flow:\n  graph: a\ntasks:\n  a:\n{}", tokens.concat());
        let _ = pyoco::parse_flow_yaml(text.as_bytes());
    }

    #[test]
    fn bundle_validation_never_panics(tokens in prop::collection::vec(yaml_token(), 0..120)) {
        let text = format!("workflows:\n  m:\n    flow: {{graph: a}}\n    tasks:\n{}", tokens.concat());
        let _ = pyoco::flow::yaml::bundle::parse_bundle(text.as_bytes(), small_limits());
        let _ = pyoco::flow::yaml::bundle::parse_bundle(tokens.concat().as_bytes(), small_limits());
    }

    #[test]
    fn graph_language_never_panics(tokens in prop::collection::vec(graph_token(), 0..60)) {
        let src: String = tokens.concat();
        let _ = pyoco::flow::graph::parse(&src);
    }

    #[test]
    fn deep_graphs_are_refused_not_overflowed(depth in 1usize..5000) {
        let src = format!("{}a{}", "(".repeat(depth), ")".repeat(depth));
        let _ = pyoco::flow::graph::parse(&src);
    }
}
