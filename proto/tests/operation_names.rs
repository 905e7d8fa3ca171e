//! Operation names are told apart in one place: [`Operation::parse`] over the table in
//! `proto/src/operation.rs`. This test reads every Rust source of the workspace and fails if any
//! other file matches an operation name as text — a `"shadow.create" =>` arm, an
//! `op == "sync.fetch"` comparison, a `starts_with("shadow.")` prefix test, or a name built with
//! `format!("sync.{…}")` — and if `docs/rpc.md` leaves an operation out.

use std::path::{Path, PathBuf};

use jit_proto::Operation;

/// The namespaces of the operation names (`shadow.`, `sync.`, …).
fn namespaces() -> Vec<String> {
    let mut all: Vec<String> = Operation::ALL
        .iter()
        .map(|op| {
            let name = op.as_str();
            name[..=name.find('.').expect("a dotted name")].to_owned()
        })
        .collect();
    all.sort();
    all.dedup();
    all
}

/// The string literals on a line of code, with the text before and after each.
fn literals(line: &str) -> Vec<(&str, &str, &str)> {
    let mut found = Vec::new();
    let mut rest = line;
    let mut consumed = 0;
    while let Some(open) = rest.find('"') {
        let after_open = &rest[open + 1..];
        let Some(close) = after_open.find('"') else {
            break;
        };
        let start = consumed + open;
        let end = start + 1 + close + 1;
        found.push((&line[..start], &line[start + 1..end - 1], &line[end..]));
        consumed = end;
        rest = &line[end..];
    }
    found
}

/// Why `line` matches an operation name as text, if it does.
fn matches_a_name(line: &str, namespaces: &[String]) -> Option<String> {
    let code = line.trim_start();
    if code.starts_with("//") {
        return None;
    }
    for (before, literal, after) in literals(line) {
        let is_name = Operation::parse(literal).is_some();
        let before = before.trim_end();
        let after = after.trim_start();
        if is_name
            && (after.starts_with("=>")
                || after.starts_with("==")
                || after.starts_with("!=")
                || after.starts_with('|')
                || before.ends_with("==")
                || before.ends_with("!=")
                || before.ends_with('|')
                || before.contains("matches!("))
        {
            return Some(format!("compares the operation name {literal:?}"));
        }
        if namespaces.iter().any(|ns| literal == ns) {
            return Some(format!("tests the operation prefix {literal:?}"));
        }
        if namespaces
            .iter()
            .any(|ns| literal.starts_with(ns.as_str()) && literal[ns.len()..].starts_with('{'))
        {
            return Some(format!("builds an operation name from {literal:?}"));
        }
    }
    None
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                rust_sources(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_detector_flags_matches_on_names_and_passes_labels() {
    let ns = namespaces();
    for bad in [
        r#"        "shadow.create" => {"#,
        r#"        "history.reset" | "history.rebase" => {"#,
        r#"    if op == "sync.fetch" {"#,
        r#"    if ["shadow.", "collapse."].iter().any(|p| op.starts_with(p)) {"#,
        r#"    let suffix = op.strip_prefix("sync.").unwrap_or(op);"#,
        r#"    let op = format!("sync.{suffix}");"#,
        r#"    matches!(op, "mh.status")"#,
    ] {
        assert!(matches_a_name(bad, &ns).is_some(), "not flagged: {bad}");
    }
    for fine in [
        r#"    store.operation("shadow.create", |op| {"#,
        r#"    // "shadow.create" => is how it used to be"#,
        r#"    let path = "checkout.json";"#,
        r#"    kernel.invoke(Operation::CreateSws, &args)"#,
    ] {
        assert_eq!(matches_a_name(fine, &ns), None, "flagged: {fine}");
    }
}

#[test]
fn no_operation_name_is_matched_outside_the_decoder() {
    let root = workspace();
    let table = root.join("proto/src/operation.rs");
    let this = root.join("proto/tests/operation_names.rs");
    let mut sources = Vec::new();
    rust_sources(&root, &mut sources);
    assert!(sources.len() > 100, "found only {} sources", sources.len());
    let ns = namespaces();
    let mut offences = Vec::new();
    for path in sources.iter().filter(|p| **p != table && **p != this) {
        let text = std::fs::read_to_string(path).expect("read");
        for (n, line) in text.lines().enumerate() {
            if let Some(why) = matches_a_name(line, &ns) {
                offences.push(format!(
                    "{}:{}: {why}",
                    path.strip_prefix(&root).unwrap_or(path).display(),
                    n + 1
                ));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "operation names are matched outside Operation::parse:\n{}",
        offences.join("\n")
    );
}

#[test]
fn docs_rpc_lists_every_operation() {
    let doc = std::fs::read_to_string(workspace().join("docs/rpc.md")).expect("docs/rpc.md");
    let missing: Vec<&str> = Operation::ALL
        .iter()
        .map(|op| op.as_str())
        .filter(|name| !doc.contains(&format!("`{name}`")))
        .collect();
    assert!(missing.is_empty(), "docs/rpc.md lacks {missing:?}");
}
