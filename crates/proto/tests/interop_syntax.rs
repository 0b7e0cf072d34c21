//! Every line of the official syntax interop fixtures is a case: `*_valid.txt`
//! accepted, `*_invalid.txt` rejected.

use std::path::PathBuf;

use skyhose_proto::syntax::*;

fn lines(name: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/atproto-interop/syntax")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    // Whitespace is part of some cases, so lines are not trimmed.
    text.split('\n')
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn check(kind: &str, validate: fn(&str) -> Result<(), SyntaxError>) {
    let mut wrong = Vec::new();
    for case in lines(&format!("{kind}_syntax_valid.txt")) {
        if validate(&case).is_err() {
            wrong.push(format!("valid but rejected: {case:?}"));
        }
    }
    for case in lines(&format!("{kind}_syntax_invalid.txt")) {
        if validate(&case).is_ok() {
            wrong.push(format!("invalid but accepted: {case:?}"));
        }
    }
    assert!(wrong.is_empty(), "{kind}:\n{}", wrong.join("\n"));
}

#[test]
fn did() {
    check("did", validate_did);
}
#[test]
fn handle() {
    check("handle", validate_handle);
}
#[test]
fn at_identifier() {
    check("atidentifier", validate_at_identifier);
}
#[test]
fn nsid() {
    check("nsid", validate_nsid);
}
#[test]
fn at_uri() {
    check("aturi", validate_at_uri);
}
#[test]
fn tid() {
    check("tid", validate_tid);
}
#[test]
fn record_key() {
    check("recordkey", validate_record_key);
}
#[test]
fn datetime() {
    check("datetime", validate_datetime);
}
#[test]
fn cid() {
    check("cid", validate_cid);
}
#[test]
fn language() {
    check("language", validate_language);
}
#[test]
fn uri() {
    check("uri", validate_uri);
}
