//! Property tests: configuration text, random or a real qtap.yaml with its lines deleted,
//! duplicated, re-indented or given odd values, and with its bytes mutated, either loads and
//! resolves or is an error; it never panics.

use super::tests::{QTAP_DEFAULT, QTAP_EXAMPLE};
use super::*;
use crate::fuzzing::{edits, mutate};
use proptest::prelude::*;

/// Values that stress YAML and the typed fields behind it.
const ODD_VALUES: &[&str] = &[
    "",
    "~",
    "-1",
    "0",
    "99999999999999999999999",
    "1e400",
    "[]",
    "{}",
    "[a, [b, {c: d}]]",
    "&anchor x",
    "*anchor",
    "!!binary aGVsbG8=",
    "'quoted'",
    "\"\\u00e9\\x00\"",
    "true",
    "|\n  block",
    "http.req.host == ",
    "{type: env, value: NOT_SET_ANYWHERE}",
    "full",
    "none",
];

#[derive(Debug, Clone)]
enum LineEdit {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Indent(usize, bool),
    Value(usize, usize),
}

fn line_edits() -> impl Strategy<Value = Vec<LineEdit>> {
    let e = prop_oneof![
        any::<usize>().prop_map(LineEdit::Delete),
        any::<usize>().prop_map(LineEdit::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| LineEdit::Swap(a, b)),
        (any::<usize>(), any::<bool>()).prop_map(|(a, b)| LineEdit::Indent(a, b)),
        (any::<usize>(), 0..ODD_VALUES.len()).prop_map(|(a, v)| LineEdit::Value(a, v)),
    ];
    proptest::collection::vec(e, 1..6)
}

fn apply(text: &str, edits: &[LineEdit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for e in edits {
        let n = lines.len();
        if n == 0 {
            break;
        }
        match *e {
            LineEdit::Delete(i) => {
                lines.remove(i % n);
            }
            LineEdit::Duplicate(i) => lines.insert(i % n, lines[i % n].clone()),
            LineEdit::Swap(a, b) => lines.swap(a % n, b % n),
            LineEdit::Indent(i, deeper) => {
                let l = &mut lines[i % n];
                if deeper {
                    l.insert_str(0, "  ");
                } else if let Some(rest) = l.strip_prefix("  ") {
                    *l = rest.to_string();
                }
            }
            LineEdit::Value(i, v) => {
                let l = &mut lines[i % n];
                let cut = l.find(": ").map(|c| c + 2).unwrap_or(l.len());
                l.truncate(cut);
                l.push_str(ODD_VALUES[v]);
            }
        }
    }
    lines.join("\n")
}

/// Loads and, when that works, resolves; either may fail, neither may panic.
fn load_and_resolve(text: &str) {
    if let Ok(l) = load_str(text, "fuzz") {
        let _ = resolve_in(&l.config, &l.origin, Path::new("/nonexistent/tapline-fuzz"));
    }
}

proptest! {
    #[test]
    fn fuzz_edited_qtap_configs_never_panic(example in any::<bool>(), e in line_edits()) {
        let text = apply(if example { QTAP_EXAMPLE } else { QTAP_DEFAULT }, &e);
        load_and_resolve(&text);
    }

    #[test]
    fn fuzz_byte_mutated_qtap_configs_never_panic(example in any::<bool>(), e in edits(8)) {
        let bytes = mutate((if example { QTAP_EXAMPLE } else { QTAP_DEFAULT }).as_bytes(), &e);
        load_and_resolve(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn fuzz_random_text_never_panics(text in any::<String>(), yamlish in "[a-z_:\\- \n\\[\\]{}&*!'\"|>#0-9]{0,200}") {
        load_and_resolve(&text);
        load_and_resolve(&yamlish);
    }
}

#[test]
fn the_unedited_examples_load_so_the_edits_start_from_valid_text() {
    for text in [QTAP_EXAMPLE, QTAP_DEFAULT] {
        let l = load_str(&apply(text, &[]), "fuzz");
        assert!(l.is_ok(), "{l:?}");
    }
}
