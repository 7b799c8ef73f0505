//! Tests of the graph language: the plain DAG part (precedence, joins, statements, errors)
//! and the control constructs.
#![allow(clippy::unwrap_used)]

use super::*;

fn g(src: &str) -> Graph {
    match parse(src) {
        Ok(graph) => graph,
        Err(e) => panic!("{src:?} failed: {e}"),
    }
}

/// The condition of `name`, rendered with names for readable assertions.
fn cond(graph: &Graph, name: &str) -> String {
    fn render(graph: &Graph, c: &Cond) -> String {
        match c {
            Cond::Task(i) => graph.nodes[*i].clone(),
            Cond::All(items) => format!(
                "All({})",
                items
                    .iter()
                    .map(|c| render(graph, c))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Cond::Any(items) => format!(
                "Any({})",
                items
                    .iter()
                    .map(|c| render(graph, c))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
    let i = graph
        .index_of(name)
        .unwrap_or_else(|| panic!("no node {name}"));
    match &graph.conditions[i] {
        None => "root".into(),
        Some(c) => render(graph, c),
    }
}

fn err(src: &str) -> (usize, usize, String) {
    match parse(src) {
        Err(GraphError::Syntax {
            line,
            column,
            message,
        }) => (line, column, message),
        other => panic!("{src:?}: expected a syntax error, got {other:?}"),
    }
}

#[test]
fn single_task_and_chain() {
    let graph = g("a");
    assert_eq!(graph.nodes, vec!["a"]);
    assert_eq!(graph.conditions, vec![None]);
    let graph = g("a >> b >> c");
    assert_eq!(graph.nodes, vec!["a", "b", "c"]);
    assert_eq!(cond(&graph, "a"), "root");
    assert_eq!(cond(&graph, "b"), "a");
    assert_eq!(cond(&graph, "c"), "b");
    assert_eq!(graph.dependencies(2), vec![1]);
    assert_eq!(graph.dependencies(0), Vec::<usize>::new());
    assert_eq!(graph.dependencies(99), Vec::<usize>::new());
    assert_eq!(graph.index_of("zzz"), None);
}

#[test]
fn fan_out_fan_in() {
    let graph = g("a >> (b & c) >> d");
    assert_eq!(graph.nodes, vec!["a", "b", "c", "d"]);
    assert_eq!(cond(&graph, "b"), "a");
    assert_eq!(cond(&graph, "c"), "a");
    assert_eq!(cond(&graph, "d"), "All(b,c)");
    assert_eq!(graph.dependencies(3), vec![1, 2]);
}

#[test]
fn or_join() {
    let graph = g("(a | b) >> c");
    assert_eq!(cond(&graph, "c"), "Any(a,b)");
    let graph = g("a >> (b | c) >> d");
    assert_eq!(cond(&graph, "b"), "a");
    assert_eq!(cond(&graph, "c"), "a");
    assert_eq!(cond(&graph, "d"), "Any(b,c)");
}

#[test]
fn precedence() {
    // `a & b >> c` is `a & (b >> c)`: a stays unconnected.
    let graph = g("a & b >> c");
    assert_eq!(cond(&graph, "a"), "root");
    assert_eq!(cond(&graph, "c"), "b");
    // `&` binds tighter than `|`: (a & b) | c.
    let graph = g("(a & b | c) >> d");
    assert_eq!(cond(&graph, "d"), "Any(All(a,b),c)");
    let graph = g("(a | b & c) >> d");
    assert_eq!(cond(&graph, "d"), "Any(a,All(b,c))");
    // `a >> b | c >> d`: (a >> b) | (c >> d).
    let graph = g("(a >> b | c >> d) >> e");
    assert_eq!(cond(&graph, "b"), "a");
    assert_eq!(cond(&graph, "d"), "c");
    assert_eq!(cond(&graph, "e"), "Any(b,d)");
    // Heads of `A & B` get the left condition.
    let graph = g("x >> (a >> b & c)");
    assert_eq!(cond(&graph, "a"), "x");
    assert_eq!(cond(&graph, "b"), "a");
    assert_eq!(cond(&graph, "c"), "x");
}

#[test]
fn flattening() {
    let graph = g("(a & b & c) >> d");
    assert_eq!(cond(&graph, "d"), "All(a,b,c)");
    let graph = g("(a | (b | c)) >> d");
    assert_eq!(cond(&graph, "d"), "Any(a,b,c)");
    let graph = g("((a >> b) & c) >> d");
    assert_eq!(cond(&graph, "b"), "a");
    assert_eq!(cond(&graph, "d"), "All(b,c)");
}

#[test]
fn nested_parentheses() {
    let graph = g("((a)) >> ((b & (c | d)) >> (e))");
    assert_eq!(cond(&graph, "b"), "a");
    assert_eq!(cond(&graph, "c"), "a");
    assert_eq!(cond(&graph, "d"), "a");
    assert_eq!(cond(&graph, "e"), "All(b,Any(c,d))");
    let graph = g("(a >> (b >> (c >> d))) >> e");
    assert_eq!(cond(&graph, "d"), "c");
    assert_eq!(cond(&graph, "e"), "d");
}

#[test]
fn multiple_statements_and_the_same_node() {
    let graph = g("a >> c\nb >> c; c >> d");
    assert_eq!(graph.nodes, vec!["a", "c", "b", "d"]);
    assert_eq!(cond(&graph, "c"), "All(a,b)");
    assert_eq!(cond(&graph, "d"), "c");
    // Repeated edges do not duplicate conditions.
    let graph = g("a >> b\na >> b");
    assert_eq!(cond(&graph, "b"), "a");
    let graph = g("(a & b) >> c\n(b & d) >> c");
    assert_eq!(cond(&graph, "c"), "All(a,b,d)");
    let graph = g("(a | b) >> c\nd >> c");
    assert_eq!(cond(&graph, "c"), "All(Any(a,b),d)");
    // A lone task in a later statement changes nothing.
    let graph = g("a >> b\nb");
    assert_eq!(cond(&graph, "b"), "a");
}

#[test]
fn flow_tail() {
    let graph = g("flow >> a >> b");
    assert_eq!(cond(&graph, "a"), "root");
    assert_eq!(cond(&graph, "b"), "a");
    let graph = g("flow >> a\nflow >> b\nflow >> (c & d)\nflow >> e");
    assert_eq!(cond(&graph, "b"), "a");
    assert_eq!(cond(&graph, "c"), "b");
    assert_eq!(cond(&graph, "d"), "b");
    assert_eq!(cond(&graph, "e"), "All(c,d)");
    // Statements without `flow` do not move the tail.
    let graph = g("flow >> a; x >> y; flow >> b");
    assert_eq!(cond(&graph, "b"), "a");
    assert_eq!(cond(&graph, "y"), "x");
    // `|` stays an OR-join in a flow chain.
    let graph = g("flow >> (a | b)\nflow >> c");
    assert_eq!(cond(&graph, "c"), "Any(a,b)");
    // `flow >> a & b` is `(flow >> a) & b`.
    let graph = g("flow >> x\nflow >> a & b\nflow >> c");
    assert_eq!(cond(&graph, "a"), "x");
    assert_eq!(cond(&graph, "b"), "root");
    assert_eq!(cond(&graph, "c"), "All(a,b)");
}

#[test]
fn comments_blank_statements_and_continuations() {
    let src = "# header\n\n  a >> b   # trailing\n;;\n\n# only a comment\nb >>\n  # comment between\n  c &\n  d\n";
    let graph = g(src);
    assert_eq!(graph.nodes, vec!["a", "b", "c", "d"]);
    assert_eq!(cond(&graph, "b"), "a");
    assert_eq!(cond(&graph, "c"), "b");
    assert_eq!(cond(&graph, "d"), "root");
    // Line breaks inside parentheses do not end the statement.
    let graph = g("a >> (\n  b\n  & c\n) >> d\r\n");
    assert_eq!(cond(&graph, "d"), "All(b,c)");
    let graph = g("_x1 >> Y_2");
    assert_eq!(graph.nodes, vec!["_x1", "Y_2"]);
}

#[test]
fn empty() {
    assert_eq!(parse(""), Err(GraphError::Empty));
    assert_eq!(parse("  \n# nothing\n ; ;\n"), Err(GraphError::Empty));
    assert_eq!(GraphError::Empty.to_string(), "empty graph");
}

#[test]
fn syntax_errors() {
    let cases: &[(&str, usize, usize, &str)] = &[
        (
            "a >> >> b",
            1,
            6,
            "expected a task name or '(' but found '>>'",
        ),
        (
            "a >> b >> >> c",
            1,
            11,
            "expected a task name or '(' but found '>>'",
        ),
        ("a > b", 1, 3, "unexpected '>' (the operator is '>>')"),
        ("a >", 1, 3, "unexpected '>' (the operator is '>>')"),
        ("a >> b!", 1, 7, "unexpected character '!'"),
        (
            "a >> my-task",
            1,
            8,
            "unexpected character '-' (task names in the graph must be identifiers: letters, digits and '_')",
        ),
        (
            "1a",
            1,
            1,
            "unexpected character '1' (task names cannot start with a digit)",
        ),
        ("a >> é", 1, 6, "unexpected character 'é'"),
        (
            "a >>",
            1,
            3,
            "expected a task name or '(' after '>>' but reached the end of the input",
        ),
        (
            "a &\n\n",
            1,
            3,
            "expected a task name or '(' after '&' but reached the end of the input",
        ),
        (
            "x\na |",
            2,
            3,
            "expected a task name or '(' after '|' but reached the end of the input",
        ),
        (
            "a >> ; b",
            1,
            6,
            "expected a task name or '(' but found ';'",
        ),
        (">> a", 1, 1, "expected a task name or '(' but found '>>'"),
        ("& a", 1, 1, "expected a task name or '(' but found '&'"),
        (
            "a b",
            1,
            3,
            "missing operator between 'a' and 'b' (expected '>>', '&' or '|')",
        ),
        (
            "a\nb c",
            2,
            3,
            "missing operator between 'b' and 'c' (expected '>>', '&' or '|')",
        ),
        (
            "a (b)",
            1,
            3,
            "missing operator between 'a' and '(' (expected '>>', '&' or '|')",
        ),
        (
            "(a) b",
            1,
            5,
            "missing operator between ')' and 'b' (expected '>>', '&' or '|')",
        ),
        (
            "(a b)",
            1,
            4,
            "missing operator between 'a' and 'b' (expected '>>', '&' or '|')",
        ),
        ("(a >> b", 1, 1, "unclosed '(' (no matching ')')"),
        ("x >> (a >>\n b\n", 1, 6, "unclosed '(' (no matching ')')"),
        ("a >> b)", 1, 7, "unmatched ')'"),
        ("a >> )", 1, 6, "expected a task name or '(' but found ')'"),
        ("a >> ()", 1, 6, "empty parentheses '()'"),
        (
            "(a; b)",
            1,
            3,
            "expected ')' to close the '(' at line 1, column 1 but found ';'",
        ),
        ("a >> flow", 1, 6, "`flow` may only start a statement"),
        ("(flow >> a)", 1, 2, "`flow` may only start a statement"),
        ("flow", 1, 1, "`flow` must be followed by '>>'"),
        ("  flow & a", 1, 3, "`flow` must be followed by '>>'"),
        (
            "flow >>",
            1,
            6,
            "expected a task name or '(' after '>>' but reached the end of the input",
        ),
    ];
    for &(src, line, column, message) in cases {
        assert_eq!(
            err(src),
            (line, column, message.to_string()),
            "source {src:?}"
        );
    }
    let e = parse("a >> >> b").err();
    assert_eq!(
        e.map(|e| e.to_string()).as_deref(),
        Some("line 1, column 6: expected a task name or '(' but found '>>'")
    );
}

#[test]
fn nesting_limit() {
    let ok = format!("{}a{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
    assert_eq!(g(&ok).nodes, vec!["a"]);
    let deep = format!(
        "{}a{}",
        "(".repeat(MAX_NESTING + 1),
        ")".repeat(MAX_NESTING + 1)
    );
    let (line, column, message) = err(&deep);
    assert_eq!((line, column), (1, MAX_NESTING + 1));
    assert!(message.contains("nested too deeply"), "{message}");
}

#[test]
fn size_limit() {
    let left: Vec<String> = (0..400).map(|i| format!("a{i}")).collect();
    let right: Vec<String> = (0..400).map(|i| format!("b{i}")).collect();
    let src = format!("({}) >> ({})", left.join(" & "), right.join(" & "));
    let (_, _, message) = err(&src);
    assert!(message.starts_with("graph too large"), "{message}");
}

#[test]
fn cycles() {
    let cycle = |src: &str| match parse(src) {
        Err(GraphError::Cycle { path }) => path,
        other => panic!("{src:?}: expected a cycle, got {other:?}"),
    };
    assert_eq!(cycle("a >> a"), vec!["a", "a"]);
    assert_eq!(cycle("a >> b >> a"), vec!["a", "b", "a"]);
    assert_eq!(cycle("a >> b >> c\nc >> a"), vec!["a", "b", "c", "a"]);
    assert_eq!(cycle("x >> a >> b\nb >> a"), vec!["a", "b", "a"]);
    assert_eq!(cycle("(a | b) >> c >> (a & d)"), vec!["a", "c", "a"]);
    assert_eq!(cycle("flow >> a\nflow >> b\nb >> a"), vec!["a", "b", "a"]);
    assert_eq!(
        parse("a >> b >> a").map_err(|e| e.to_string()),
        Err("cycle detected: a -> b -> a".to_string())
    );
    // A diamond is not a cycle.
    g("a >> (b & c) >> d\na >> d");
}

#[test]
fn eval_is_three_valued() {
    let states = [Some(true), Some(false), None];
    let state = |i: usize| states[i];
    let (ok, failed, pending) = (Cond::Task(0), Cond::Task(1), Cond::Task(2));
    assert_eq!(ok.eval(&state), Some(true));
    assert_eq!(failed.eval(&state), Some(false));
    assert_eq!(pending.eval(&state), None);

    let all = |v: &[&Cond]| Cond::All(v.iter().map(|c| (*c).clone()).collect());
    let any = |v: &[&Cond]| Cond::Any(v.iter().map(|c| (*c).clone()).collect());
    assert_eq!(all(&[&ok, &ok]).eval(&state), Some(true));
    assert_eq!(all(&[&ok, &pending]).eval(&state), None);
    assert_eq!(all(&[&pending, &failed]).eval(&state), Some(false));
    assert_eq!(any(&[&failed, &failed]).eval(&state), Some(false));
    assert_eq!(any(&[&failed, &pending]).eval(&state), None);
    assert_eq!(any(&[&pending, &ok]).eval(&state), Some(true));
    // Nested: Any(All(ok, pending), failed) is undecided; All(Any(ok, pending), ok) holds.
    assert_eq!(any(&[&all(&[&ok, &pending]), &failed]).eval(&state), None);
    assert_eq!(all(&[&any(&[&ok, &pending]), &ok]).eval(&state), Some(true));
    assert_eq!(
        all(&[&any(&[&failed, &failed]), &pending]).eval(&state),
        Some(false)
    );
    // Vacuous cases.
    assert_eq!(Cond::All(vec![]).eval(&state), Some(true));
    assert_eq!(Cond::Any(vec![]).eval(&state), Some(false));
}

#[test]
fn tasks_are_unique_and_ordered() {
    let c = Cond::All(vec![
        Cond::Task(3),
        Cond::Any(vec![Cond::Task(1), Cond::Task(3)]),
        Cond::Task(0),
    ]);
    assert_eq!(c.tasks(), vec![3, 1, 0]);
}

// ---------------------------------------------------------------------------------------
// Control constructs

fn program(src: &str) -> Block {
    match g(src).control {
        Some(block) => block,
        None => panic!("{src:?}: expected control-flow mode"),
    }
}

fn control(step: &Step) -> &Control {
    match step {
        Step::Control(c) => c,
        Step::Task(t) => panic!("expected a control construct, got task {t}"),
    }
}

/// The steps of a block as labels, with their conditions as label lists.
fn shape(block: &Block) -> Vec<String> {
    fn render(block: &Block, c: &Cond) -> String {
        match c {
            Cond::Task(i) => block.steps[*i].label().to_string(),
            Cond::All(items) => format!(
                "All({})",
                items
                    .iter()
                    .map(|c| render(block, c))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            Cond::Any(items) => format!(
                "Any({})",
                items
                    .iter()
                    .map(|c| render(block, c))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
    block
        .steps
        .iter()
        .zip(&block.conditions)
        .map(|(s, c)| match c {
            None => s.label().to_string(),
            Some(c) => format!("{} <- {}", s.label(), render(block, c)),
        })
        .collect()
}

#[test]
fn switch_cases_and_default() {
    let src = "flow >> a >> switch(\"$ctx.params.mode\")[\"x\" >> b, 1 >> c >> d, \"*\" >> e] >> f";
    let graph = g(src);
    assert!(graph.is_control_flow());
    assert_eq!(graph.nodes, vec!["a", "b", "c", "d", "e", "f"]);
    assert!(graph.conditions.iter().all(Option::is_none));
    let top = program(src);
    let label = "switch(\"$ctx.params.mode\")[\"x\" >> b, 1 >> c >> d, \"*\" >> e]";
    assert_eq!(
        shape(&top),
        vec![
            "a".to_string(),
            format!("{label} <- a"),
            format!("f <- {label}")
        ]
    );
    let ControlKind::Switch { on, cases, default } = &control(&top.steps[1]).kind else {
        panic!("not a switch");
    };
    assert_eq!(on.source(), "$ctx.params.mode");
    let values: Vec<&serde_json::Value> = cases.iter().map(|(v, _)| v).collect();
    assert_eq!(values, vec![&serde_json::json!("x"), &serde_json::json!(1)]);
    assert_eq!(shape(&cases[1].1), vec!["c", "d <- c"]);
    assert_eq!(cases[1].1.tails, Some(Cond::Task(1)));
    assert_eq!(shape(default.as_ref().unwrap()), vec!["e"]);
    // Values: strings in either quote, ints, floats, booleans; trailing comma; line breaks.
    let top = program(
        "switch('v')[\n  'a' >> x,\n  -2 >> y,\n  2.5 >> z,\n  True >> t,\n  false >> u,\n]",
    );
    let ControlKind::Switch { cases, default, .. } = &control(&top.steps[0]).kind else {
        panic!("not a switch");
    };
    let values: Vec<&serde_json::Value> = cases.iter().map(|(v, _)| v).collect();
    assert_eq!(
        values,
        vec![
            &serde_json::json!("a"),
            &serde_json::json!(-2),
            &serde_json::json!(2.5),
            &serde_json::json!(true),
            &serde_json::json!(false)
        ]
    );
    assert!(default.is_none());
    // A case fragment is a whole fragment: `"a" >> x & y` runs x and y.
    let top = program("switch(\"k\")[\"a\" >> (p >> q) & r]");
    let ControlKind::Switch { cases, .. } = &control(&top.steps[0]).kind else {
        panic!("not a switch");
    };
    assert_eq!(shape(&cases[0].1), vec!["p", "q <- p", "r"]);
    // `switch` not followed by '(' is still a task name.
    let graph = g("switch >> a");
    assert_eq!(graph.nodes, vec!["switch", "a"]);
    assert!(!graph.is_control_flow());
}

#[test]
fn repeat_foreach_until_and_their_precedence() {
    let top = program("a[3]");
    let ControlKind::Repeat { count, body } = &control(&top.steps[0]).kind else {
        panic!("not a repeat");
    };
    assert_eq!((*count, shape(body)), (3, vec!["a".to_string()]));

    let top = program("x >> (a >> b & c)[\"$ctx.params.items as it\"] >> y");
    assert_eq!(
        shape(&top),
        vec![
            "x",
            "(a >> b & c)[\"$ctx.params.items as it\"] <- x",
            "y <- (a >> b & c)[\"$ctx.params.items as it\"]"
        ]
    );
    let ControlKind::Foreach { over, alias, body } = &control(&top.steps[1]).kind else {
        panic!("not a foreach");
    };
    assert_eq!(over.source(), "$ctx.params.items");
    assert_eq!(alias.as_deref(), Some("it"));
    assert_eq!(shape(body), vec!["a", "b <- a", "c"]);
    assert_eq!(
        body.tails,
        Some(Cond::All(vec![Cond::Task(1), Cond::Task(2)]))
    );
    // Without an alias the whole string is the source.
    let top = program("a['params.items']");
    let ControlKind::Foreach { over, alias, .. } = &control(&top.steps[0]).kind else {
        panic!("not a foreach");
    };
    assert_eq!((over.source(), alias.as_deref()), ("params.items", None));

    let top = program("a % \"$ctx.results.a >= 3\"");
    let ControlKind::Until { cond, max_iter, .. } = &control(&top.steps[0]).kind else {
        panic!("not an until");
    };
    assert_eq!((cond.source(), *max_iter), ("$ctx.results.a >= 3", 1000));
    let top = program("a % (\n 'results.a > 2',\n 5\n)");
    let ControlKind::Until { max_iter, .. } = &control(&top.steps[0]).kind else {
        panic!("not an until");
    };
    assert_eq!(*max_iter, 5);

    // Subscripts bind tighter than `%`, which binds tighter than `>>`, `&`, `|`.
    assert_eq!(
        shape(&program("a >> b % 'params.c'")),
        vec!["a", "b % 'params.c' <- a"]
    );
    assert_eq!(shape(&program("a & b[2]")), vec!["a", "b[2]"]);
    let top = program("a[2] % 'params.c'");
    let ControlKind::Until { body, .. } = &control(&top.steps[0]).kind else {
        panic!("not an until");
    };
    assert_eq!(shape(body), vec!["a[2]"]);
    let top = program("a[2][3]");
    let ControlKind::Repeat { count: 3, body } = &control(&top.steps[0]).kind else {
        panic!("not an outer repeat of 3");
    };
    assert!(matches!(
        &control(&body.steps[0]).kind,
        ControlKind::Repeat { count: 2, .. }
    ));
    // `%` continues on the next line like the other operators.
    assert_eq!(shape(&program("a %\n  'params.x'")), vec!["a % 'params.x'"]);
}

#[test]
fn control_steps_join_like_tasks_and_statements_keep_their_meaning() {
    let top = program("a >> c\nb >> c\nflow >> d[2]\nflow >> e");
    assert_eq!(
        shape(&top),
        vec!["a", "c <- All(a,b)", "b", "d[2]", "e <- d[2]"]
    );
    let top = program("(a[2] | b) >> c");
    assert_eq!(shape(&top), vec!["a[2]", "b", "c <- Any(a[2],b)"]);
    // Every occurrence of a construct is a step of its own; tasks are shared per scope.
    let top = program("a[2] >> a[2] >> a");
    assert_eq!(shape(&top), vec!["a[2]", "a[2] <- a[2]", "a <- a[2]"]);
    let graph = g("a[2] >> a[2] >> a");
    assert_eq!(graph.nodes, vec!["a"]);
}

#[test]
fn expressions_are_bound_to_their_scope() {
    // An alias is visible in its body only, bare or as $ctx.<alias>; loops in loops.
    g("(a >> switch(\"it\")[1 >> b] >> switch('$ctx.it.k')[1 >> c])['params.xs as it']");
    g("(a % '$ctx.loop.iteration > 2 and it')['xs as it']");
    g("switch('$ctx.loops')[1 >> a][2]");
    // A lone name is a param for switch and foreach, `$ctx.<name>` for until.
    let cases: &[(&str, usize, usize, &str)] = &[
        (
            "a % 'done'",
            1,
            6,
            "unknown context '$ctx.done' (expected params, results, loop, loops or a foreach alias in scope)",
        ),
        (
            "switch(\"$ctx.it\")[1 >> a] >> b['xs as it']",
            1,
            9,
            "unknown context '$ctx.it' (expected params, results, loop, loops or a foreach alias in scope)",
        ),
        (
            "switch('$ctx.loop.index')['1' >> a]",
            1,
            9,
            "$ctx.loop is only available inside repeat, foreach and until",
        ),
        (
            "a % '$ctx.scratch.x'",
            1,
            6,
            "$ctx.scratch is not supported",
        ),
        (
            "a['foo.bar as x'] % 'x'",
            1,
            4,
            "unknown context '$ctx.foo' (expected params, results, loop, loops or a foreach alias in scope)",
        ),
        (
            "a['xs as x'] % 'x'",
            1,
            17,
            "unknown context '$ctx.x' (expected params, results, loop, loops or a foreach alias in scope)",
        ),
        (
            "a % 'x == 1'",
            1,
            6,
            "unknown name 'x' (use $ctx.params.x, $ctx.results.<task> or a foreach alias)",
        ),
    ];
    for &(src, line, column, message) in cases {
        assert_eq!(
            err(src),
            (line, column, message.to_string()),
            "source {src:?}"
        );
    }
}

#[test]
fn control_syntax_errors() {
    let cases: &[(&str, usize, usize, &str)] = &[
        (
            "switch('len($ctx.params.x)')[1 >> a]",
            1,
            12,
            "function calls are not allowed",
        ),
        (
            "a % '$ctx.params.x[0]'",
            1,
            19,
            "subscripts are not allowed (use a dotted path: $ctx.results.t.key)",
        ),
        ("a % 'lambda: 1'", 1, 6, "lambda is not allowed"),
        (
            "a % \"'s'.upper\"",
            1,
            9,
            "attribute access is only allowed on $ctx/$env references",
        ),
        (
            "a % \"1 +\"",
            1,
            9,
            "expected a value but found the end of the expression",
        ),
        (
            "flow >> a\nflow >> b % \"\\\"x\\\" if y\"",
            2,
            20,
            "unexpected 'if' after the expression",
        ),
        (
            "a[-1]",
            1,
            3,
            "expected a repeat count (a whole number >= 0) or a foreach string \"<expr> as <name>\" but found '-1'",
        ),
        (
            "a[]",
            1,
            3,
            "expected a repeat count (a whole number >= 0) or a foreach string \"<expr> as <name>\" but found ']'",
        ),
        ("a[2", 1, 4, "expected ']' but found the end of the input"),
        (
            "a['xs as params']",
            1,
            10,
            "'params' cannot be a foreach alias (reserved name)",
        ),
        (
            "a['xs as not']",
            1,
            10,
            "'not' cannot be a foreach alias (reserved name)",
        ),
        (
            "a['xs as my-x']",
            1,
            10,
            "foreach alias 'my-x' is not an identifier",
        ),
        (
            "switch('x')[]",
            1,
            13,
            "expected a switch case: a value (string, number, true or false) or \"*\", then '>>' and a fragment but found ']'",
        ),
        (
            "switch('x')[b >> c]",
            1,
            13,
            "expected a switch case: a value (string, number, true or false) or \"*\", then '>>' and a fragment but found 'b'",
        ),
        (
            "switch('x')['a' c]",
            1,
            17,
            "expected '>>' after the case value but found 'c'",
        ),
        (
            "switch('x')['a' >> c 'b' >> d]",
            1,
            22,
            "expected ',' or ']' after a switch case but found the string \"b\"",
        ),
        (
            "switch('x')[1 >> a, True >> b]",
            1,
            21,
            "duplicate switch case True",
        ),
        (
            "switch('x')['*' >> a, \"*\" >> b]",
            1,
            23,
            "duplicate switch case \"*\"",
        ),
        (
            "switch(x)[1 >> a]",
            1,
            8,
            "expected the switch expression as a string but found 'x'",
        ),
        (
            "switch('x') >> a",
            1,
            13,
            "expected '[' and the switch cases but found '>>'",
        ),
        (
            "a % ('c')",
            1,
            9,
            "expected ',' and the maximum iterations but found ')'",
        ),
        (
            "a % ('c', 0)",
            1,
            11,
            "expected the maximum iterations (a whole number >= 1) but found '0'",
        ),
        (
            "a % b",
            1,
            3,
            "'%' must be followed by a condition string or (\"<condition>\", <max_iter>), found 'b'",
        ),
        ("a % 'x", 1, 5, "unterminated string"),
        (
            "a >> 'x'",
            1,
            6,
            "expected a task name or '(' but found the string \"x\"",
        ),
        ("a >> 1", 1, 6, "expected a task name or '(' but found '1'"),
        ("a]", 1, 2, "unmatched ']'"),
        // The examples of spec/flow-yaml.md.
        ("a % \"len(x) > 1\"", 1, 9, "function calls are not allowed"),
        (
            "a % \"done\"",
            1,
            6,
            "unknown context '$ctx.done' (expected params, results, loop, loops or a foreach alias in scope)",
        ),
        (
            "switch(\"x\")[1 >> a, True >> b]",
            1,
            21,
            "duplicate switch case True",
        ),
    ];
    for &(src, line, column, message) in cases {
        assert_eq!(
            err(src),
            (line, column, message.to_string()),
            "source {src:?}"
        );
    }
}

#[test]
fn cycles_and_nesting_in_control_flow() {
    let cycle = |src: &str| match parse(src) {
        Err(GraphError::Cycle { path }) => path,
        other => panic!("{src:?}: expected a cycle, got {other:?}"),
    };
    assert_eq!(cycle("(a >> b >> a)[2]"), vec!["a", "b", "a"]);
    assert_eq!(cycle("a >> b[2] >> a"), vec!["a", "b[2]", "a"]);
    // The same task in a body and around it is not a cycle: they are separate steps.
    g("a >> (b >> a)[2]");

    let ok = format!("a{}", "[1]".repeat(MAX_NESTING));
    g(&ok);
    let deep = format!("a{}", "[1]".repeat(MAX_NESTING + 1));
    let (_, _, message) = err(&deep);
    assert!(
        message.contains("control constructs nested too deeply"),
        "{message}"
    );
    let long = format!("a % '{}1'", "-".repeat(200));
    let (_, _, message) = err(&long);
    assert!(message.contains("nested too deeply"), "{message}");
    // Labels are shortened.
    let top = program(&format!(
        "({})[2]",
        (0..30)
            .map(|i| format!("t{i}"))
            .collect::<Vec<_>>()
            .join(" >> ")
    ));
    assert!(top.steps[0].label().ends_with("..."));
    assert_eq!(top.steps[0].label().chars().count(), 60);
}

#[test]
fn the_drawing_has_an_edge_per_dependency_also_through_control_constructs() {
    assert_eq!(
        g("a >> (b & c) >> d").drawing(),
        serde_json::json!({"nodes": ["a", "b", "c", "d"],
            "edges": [["a", "b"], ["a", "c"], ["b", "d"], ["c", "d"]]})
    );
    // Into and out of a repeated body (no back edge).
    assert_eq!(
        g("start >> (a >> b)[2] >> end").drawing()["edges"],
        serde_json::json!([["start", "a"], ["b", "end"], ["a", "b"]])
    );
    // The cases of a switch side by side between what comes before and after.
    let switch = g("a >> switch(\"$ctx.params.mode\")[\"x\" >> b, 1 >> c >> d, \"*\" >> e] >> f");
    assert_eq!(
        switch.drawing()["edges"],
        serde_json::json!([
            ["a", "b"],
            ["a", "c"],
            ["a", "e"],
            ["b", "f"],
            ["d", "f"],
            ["e", "f"],
            ["c", "d"]
        ])
    );
}
