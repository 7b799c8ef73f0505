//! The client's views for people: `watch` live (plain lines when piped, spinners in a
//! pseudo-terminal, colour only there and never with NO_COLOR), shell completions, and an
//! example in every subcommand's `--help`.
#![allow(clippy::unwrap_used)] // tests may panic on broken expectations

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{CliStack, run_cli};
use pyoco::testkit::submit_yaml;

const FLOW: &str = r#"
flow:
  graph: a >> (b & c)
tasks:
  a: {callable: "pyoco:sleep", inputs: {seconds: 0.3}}
  b: {callable: "pyoco:echo", inputs: {value: 1}}
  c: {callable: "pyoco:echo", inputs: {value: 2}}
"#;

/// An SGR colour code such as `ESC[32m` (cursor movement is not colour).
fn has_colour(text: &str) -> bool {
    text.match_indices("\x1b[").any(|(i, _)| {
        let rest = &text[i + 2..];
        let code: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        rest[code.len()..].starts_with('m')
            && matches!(code.as_str(), "31" | "32" | "33" | "36" | "2")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_live_piped_prints_a_plain_line_per_task_change_and_a_summary() {
    let stack = CliStack::start().await;
    let run_id = submit_yaml(&stack.stack.client, FLOW, "live", None).await;
    let out = stack.cli(&["watch", &run_id, "--output", "live"]).await;
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        !out.stdout.contains('\x1b'),
        "escape codes in piped output: {out:?}"
    );
    let lines: Vec<&str> = out.stdout.lines().collect();
    for task in ["a", "b", "c"] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("  {task}  SUCCEEDED  "))),
            "{out:?}"
        );
    }
    // Each line starts with a wall-clock time, never a raw epoch float.
    for line in &lines[..lines.len() - 1] {
        let stamp = line.split("  ").next().unwrap();
        assert!(stamp.contains(':') && !stamp.contains('.'), "{line}");
    }
    let summary = lines.last().unwrap();
    assert!(
        summary.starts_with(&format!("COMPLETED {run_id} in ")),
        "{summary}"
    );
    assert!(summary.ends_with("· 3 tasks: 3 succeeded"), "{summary}");
    // Piped without --output, the original's JSON lines are unchanged.
    let json = stack.cli(&["watch", &run_id]).await;
    assert!(
        json.stdout.starts_with(r#"{"event": "snapshot""#),
        "{json:?}"
    );
    stack.stop().await;
}

/// Runs the client in a pseudo-terminal (util-linux `script`), as a person would.
async fn in_terminal(url: &str, run_id: &str, no_color: bool) -> String {
    in_terminal_run(&format!("watch {run_id}"), url, no_color).await
}

/// Runs `pyoco-client --server <url> <args>` in a pseudo-terminal; `args` may start with
/// shell commands run first (e.g. `stty cols 60;`).
async fn in_terminal_run(args: &str, url: &str, no_color: bool) -> String {
    let bin = env!("CARGO_BIN_EXE_pyoco-client");
    let command = match args.split_once(';') {
        Some((setup, rest)) => format!("{setup}; {bin} --server {url} {}", rest.trim()),
        None => format!("{bin} --server {url} {args}"),
    };
    let mut cmd = tokio::process::Command::new("script");
    cmd.args(["-qefc", &command, "/dev/null"])
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .env_remove("PYOCO_SERVER")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if no_color {
        cmd.env("NO_COLOR", "1");
    }
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("watch in a terminal did not finish in 60 s")
        .expect("run script(1) from util-linux");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_in_a_terminal_shows_live_tasks_in_colour_unless_no_color() {
    let stack = CliStack::start().await;
    let url = stack.stack.gateway.url();
    let run_id = submit_yaml(&stack.stack.client, FLOW, "live", None).await;
    let screen = in_terminal(&url, &run_id, false).await;
    assert!(
        !screen.contains(r#"{"event""#),
        "JSON on a terminal: {screen}"
    );
    for task in ["a", "b", "c"] {
        assert!(
            screen.contains(&format!("  {task}  SUCCEEDED  ")),
            "{screen}"
        );
    }
    assert!(
        screen.contains(&format!("COMPLETED {run_id} in ")) && screen.contains("3 succeeded"),
        "{screen}"
    );
    assert!(has_colour(&screen), "no colour on a terminal: {screen:?}");

    let plain = in_terminal(&url, &run_id, true).await;
    assert!(
        plain.contains(&format!("COMPLETED {run_id} in ")),
        "{plain}"
    );
    assert!(!has_colour(&plain), "colour despite NO_COLOR: {plain:?}");
    stack.stop().await;
}

/// `text` without ANSI escape sequences.
fn plain(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // ESC [ parameters final-byte
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_in_a_terminal_are_bordered_and_fit_its_width() {
    let stack = CliStack::start().await;
    let url = stack.stack.gateway.url();
    let run_id = submit_yaml(&stack.stack.client, FLOW, "table", None).await;
    stack.stack.wait_terminal(&run_id).await;
    let screen = plain(&in_terminal_run("stty cols 60; list --output table", &url, false).await);
    let lines: Vec<&str> = screen.lines().map(|l| l.trim_end_matches('\r')).collect();
    assert!(lines.len() >= 5, "{screen}");
    for line in &lines {
        assert!(
            line.chars().count() <= 60,
            "wider than the terminal: {line:?}\n{screen}"
        );
    }
    assert!(
        lines[0].starts_with('┌') && screen.contains("COMPLETED"),
        "{screen}"
    );
    // The run id is wrapped inside its column, not cut.
    let ids: String = lines
        .iter()
        .filter_map(|l| l.split('│').nth(1))
        .map(|c| c.split('┆').next().unwrap_or("").trim())
        .collect();
    assert!(ids.contains(&run_id), "{screen}");
    stack.stop().await;
}

#[tokio::test]
async fn completions_are_printed_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F _pyoco__client"),
        ("zsh", "#compdef pyoco-client"),
        ("fish", "complete -c pyoco-client"),
    ] {
        let out = run_cli(&["completions", shell]).await;
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(out.stdout.contains(marker), "{shell}: {}", out.stdout);
        assert!(out.stdout.contains("watch"), "{shell}");
    }
}

#[tokio::test]
async fn every_subcommand_help_has_an_example() {
    let top = run_cli(&["--help"]).await;
    let commands: Vec<String> = top
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect();
    assert!(commands.len() > 15, "{top:?}");
    for command in &commands {
        let help = run_cli(&[command, "--help"]).await;
        assert_eq!(help.code, Some(0), "{help:?}");
        assert!(
            help.stdout.contains("Example") && help.stdout.contains("pyoco-client "),
            "{command} --help has no example:\n{}",
            help.stdout
        );
    }
}
