//! `docs/codes.md` lists every code, in order, with its meaning, and nothing else.

use jit_proto::Code;

#[test]
fn the_codes_doc_lists_exactly_the_code_enum() {
    // Compiled in: the test reads the doc of the tree it was built from, with no file access
    // at run time.
    let doc = include_str!("../../docs/codes.md");
    let listed: Vec<(String, String)> = doc
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|row| {
            let (code, rest) = row.split_once("` | ")?;
            Some((code.to_owned(), rest.trim_end_matches(" |").to_owned()))
        })
        .collect();
    let expected: Vec<(String, String)> = Code::ALL
        .iter()
        .map(|c| (c.as_str().to_owned(), c.meaning().to_owned()))
        .collect();
    for (code, _) in &expected {
        assert!(
            listed.iter().any(|(c, _)| c == code),
            "{code} is missing from docs/codes.md"
        );
    }
    for (code, _) in &listed {
        assert!(
            Code::parse(code).is_some(),
            "docs/codes.md lists {code}, which is not a Code"
        );
    }
    assert_eq!(
        listed, expected,
        "docs/codes.md and Code::ALL differ in order or meaning"
    );
}
