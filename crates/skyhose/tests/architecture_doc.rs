//! `docs/architecture.md` matches the code: its "Modules by stage" section
//! names every module of every crate (`crates/*/src/**/*.rs`) in that
//! crate's paragraph, and every module, file or item it names there exists.
//!
//! A name in backticks is read as:
//! - a path with `/` (`cmd/run.rs`, `migrations/*.sql`): a file or folder of
//!   the crate's `src`, the crate, or the repository; `*` matches any file
//!   name in its folder (URL paths, URLs and npm packages are not checked);
//! - a path with `::` (`stream::reader`): a module of any crate, or an item
//!   named in the sources of the module before the last `::`;
//! - a bare lowercase name (`worker`, `find_block`): a module of the crate,
//!   or a name that occurs in its sources (a function, a table, a flag), or
//!   failing that in another crate's (what the crate calls there);
//! - anything else (types, SQL, prose in backticks) is not checked.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .expect("the crate is two levels below the repository root")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable source folder") {
        let path = entry.expect("folder entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

struct Crate {
    dir: PathBuf,
    /// Module paths relative to the crate root, `a::b`.
    modules: BTreeSet<String>,
    /// Every source file's text, by module path.
    sources: Vec<(String, String)>,
}

fn read_crate(dir: &Path) -> Crate {
    let src = dir.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut modules = BTreeSet::new();
    let mut sources = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let mut parts: Vec<String> = relative
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|last| last == "mod") {
            parts.pop();
        }
        let module = parts.join("::");
        let is_root = matches!(module.as_str(), "lib" | "main");
        if !is_root {
            modules.insert(module.clone());
        }
        let text = fs::read_to_string(&file).expect("readable source file");
        sources.push((if is_root { String::new() } else { module }, text));
    }
    Crate {
        dir: dir.to_path_buf(),
        modules,
        sources,
    }
}

fn occurs_as_word(text: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// The crate paragraphs of the "Modules by stage" section: each starts with
/// `**Name (`crates/<dir>`)**` and runs to the next one.
fn paragraphs(doc: &str) -> Vec<(String, String)> {
    let start = doc
        .find("## Modules by stage")
        .expect("a \"Modules by stage\" section");
    let section = &doc[start..];
    let end = section[2..]
        .find("\n## ")
        .map_or(section.len(), |at| at + 2);
    let section = &section[..end];
    let mut out: Vec<(String, String)> = Vec::new();
    for line in section.lines() {
        if let Some(rest) = line.strip_prefix("**") {
            if let Some(at) = rest.find("(`crates/") {
                let name = &rest[at + "(`crates/".len()..];
                let name = name.split('`').next().unwrap_or_default();
                out.push((name.to_owned(), String::new()));
            }
        }
        if let Some((_, text)) = out.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

fn code_spans(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

fn is_lower_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
}

fn path_exists(bases: &[&Path], path: &str) -> bool {
    bases.iter().any(|base| match path.rsplit_once('*') {
        None => base.join(path).exists(),
        Some((prefix, suffix)) => {
            let (folder, name_start) = prefix.rsplit_once('/').unwrap_or(("", prefix));
            fs::read_dir(base.join(folder)).is_ok_and(|entries| {
                entries.filter_map(Result::ok).any(|entry| {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    name.starts_with(name_start) && name.ends_with(suffix)
                })
            })
        }
    })
}

#[test]
fn architecture_doc_names_every_module_and_only_what_exists() {
    let root = repo_root();
    let doc = fs::read_to_string(root.join("docs/architecture.md")).expect("architecture doc");
    let mut crates = Vec::new();
    for entry in fs::read_dir(root.join("crates")).expect("crates folder") {
        let dir = entry.expect("folder entry").path();
        if dir.join("src").is_dir() {
            let name = dir
                .file_name()
                .expect("named folder")
                .to_string_lossy()
                .into_owned();
            crates.push((name, read_crate(&dir)));
        }
    }
    crates.sort_by(|a, b| a.0.cmp(&b.0));
    let paragraphs = paragraphs(&doc);
    let all_modules: BTreeSet<&str> = crates
        .iter()
        .flat_map(|(_, krate)| krate.modules.iter().map(String::as_str))
        .collect();
    let mut problems = Vec::new();
    for (name, krate) in &crates {
        let Some((_, text)) = paragraphs.iter().find(|(dir, _)| dir == name) else {
            problems.push(format!("no paragraph for crates/{name}"));
            continue;
        };
        let spans = code_spans(text);
        let as_path = |span: &str| {
            span.trim_end_matches('/')
                .trim_end_matches(".rs")
                .replace('/', "::")
        };
        for module in &krate.modules {
            let leaf = module.rsplit("::").next().unwrap_or(module);
            let named = spans
                .iter()
                .any(|span| *span == leaf || as_path(span) == *module);
            if !named {
                problems.push(format!("crates/{name}: module {module} is not named"));
            }
        }
        let src = krate.dir.join("src");
        let bases = [src.as_path(), krate.dir.as_path(), root.as_path()];
        for span in spans {
            let known = if span.contains('/') {
                if span.starts_with(['/', '@']) || span.contains("://") {
                    continue;
                }
                !span.contains('<') && path_exists(&bases, span)
            } else if span.contains("::") {
                if !span.split("::").all(is_lower_ident) || span.starts_with("skyhose") {
                    continue;
                }
                let (parent, item) = span.rsplit_once("::").unwrap_or_default();
                all_modules.contains(span)
                    || crates.iter().any(|(_, other)| {
                        other.sources.iter().any(|(module, text)| {
                            (module == parent || module.starts_with(&format!("{parent}::")))
                                && occurs_as_word(text, item)
                        })
                    })
            } else if is_lower_ident(span) {
                krate
                    .modules
                    .iter()
                    .any(|m| m.rsplit("::").next() == Some(span))
                    || crates.iter().any(|(_, other)| {
                        other
                            .sources
                            .iter()
                            .any(|(_, text)| occurs_as_word(text, span))
                    })
            } else {
                continue;
            };
            if !known {
                problems.push(format!("crates/{name}: `{span}` names nothing that exists"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/architecture.md and the code disagree:\n{}",
        problems.join("\n")
    );
}
