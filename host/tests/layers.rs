//! The layer guard: every module of `host/src` may use only modules in its own layer or
//! below ([`LAYERS`]), and the modules form no cycle. It reads the sources, so it sees every
//! form a reference takes: `use crate::a::b`, `use crate::{a, b::c}`, inline `crate::x::y`
//! paths, and `super::`/`self::` resolved against the file's (and inline `mod`'s) place.
//! Comments and string literals are skipped: a doc link is not a dependency.
//!
//! ARCHITECTURE.md explains the layers; a new top-level module goes into [`LAYERS`] first.

#![expect(
    clippy::expect_used,
    reason = "a test: a failure to read the sources is a failure"
)]
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers of `host/src`, lowest first. A module may use modules of its own layer (as
/// long as no cycle forms) or of a lower one, never of a higher one. `lib.rs` (the crate
/// root, which wires everything together) sits above them all.
const LAYERS: &[&[&str]] = &[
    // Leaves: plain helpers and the WIT contract's generated types.
    &["models", "net", "pricing", "wit"],
    // Persistence: the database thread and its rows.
    &["store"],
    // The validated configuration, the one error type, and the per-request record.
    &["config", "error", "observe"],
    // The plugin runtime; keys, budgets and spend.
    &["ledger", "plugins"],
    // The pipeline: admit, route, attempt, stream, settle (`gateway::upstream` inside).
    &["gateway"],
    // HTTP handlers.
    &["api"],
    // The router, connections, event loops, hot reload.
    &["server"],
    // Commands other than serving (`llmgate db ...`).
    &["db"],
];

/// One reference from a module to another top-level module.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    /// Top-level module of the referring file (`config` for `src/config/raw.rs`).
    from: String,
    /// Top-level module referred to.
    to: String,
    /// The referring file, relative to `host/`.
    file: String,
    /// The path as written, resolved (`crate::gateway::origin_of`).
    path: String,
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The module path of a file under `src/` (`src/a/mod.rs` and `src/a.rs` are `[a]`).
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .skip(1)
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if stem != "mod" && stem != "lib" {
            parts.push(stem.to_string());
        }
    }
    parts
}

/// The source with comments and string/char literals blanked out.
fn strip(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !prev_is_ident(&b, i) {
            // Raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (next == Some('\\') || b.get(i + 2) == Some(&'\'')) {
            // A char literal (not a lifetime).
            i += 1;
            if b.get(i) == Some(&'\\') {
                i += 1;
            }
            while i < b.len() && b[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

fn tokens(src: &str) -> Vec<String> {
    let b: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push(b[start..i].iter().collect());
        } else if c == ':' && b.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Parse the use tree (or plain path) that starts at `toks[i]` (the first token after a
/// `crate::`/`super::` prefix), appending each leaf path (prefixed by `base`) to `out`.
/// Returns the index after the tree.
fn parse_tree(toks: &[String], mut i: usize, base: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let mut path = base.to_vec();
    loop {
        match toks.get(i).map(String::as_str) {
            Some("{") => {
                i += 1;
                while toks.get(i).is_some_and(|t| t != "}") {
                    i = parse_tree(toks, i, &path, out);
                    if toks.get(i).is_some_and(|t| t == ",") {
                        i += 1;
                    }
                }
                return i + 1;
            }
            Some("*") => {
                out.push(path);
                return i + 1;
            }
            Some("self") => {
                i += 1;
            }
            Some(t) if is_ident(t) => {
                path.push(t.to_string());
                i += 1;
            }
            _ => {
                out.push(path);
                return i;
            }
        }
        if toks.get(i).is_some_and(|t| t == "::") {
            i += 1;
        } else {
            // `as alias` and anything else end the path.
            if toks.get(i).is_some_and(|t| t == "as") {
                i += 2;
            }
            out.push(path);
            return i;
        }
    }
}

/// Every module path a file refers to through `crate::`, `super::` or `self::`, resolved to
/// an absolute path in the crate.
fn references(module: &[String], src: &str) -> Vec<Vec<String>> {
    let toks = tokens(&strip(src));
    let mut out = Vec::new();
    // Inline `mod name { .. }` nesting: each open brace records whether it opened a module.
    let mut braces: Vec<Option<String>> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let here: Vec<String> = module
            .iter()
            .cloned()
            .chain(braces.iter().flatten().cloned())
            .collect();
        let t = toks[i].as_str();
        let at_path_start = i == 0 || toks[i - 1] != "::";
        match t {
            "{" => {
                let opened = (i >= 2 && toks[i - 2] == "mod").then(|| toks[i - 1].clone());
                braces.push(opened);
                i += 1;
            }
            "}" => {
                braces.pop();
                i += 1;
            }
            "crate" | "super" | "self"
                if at_path_start && toks.get(i + 1).is_some_and(|n| n == "::") =>
            {
                let mut base = match t {
                    "crate" => Vec::new(),
                    "super" => here[..here.len().saturating_sub(1)].to_vec(),
                    _ => here.clone(),
                };
                i += 2;
                while toks.get(i).is_some_and(|n| n == "super")
                    && toks.get(i + 1).is_some_and(|n| n == "::")
                {
                    base.pop();
                    i += 2;
                }
                i = parse_tree(&toks, i, &base, &mut out);
            }
            _ => i += 1,
        }
    }
    out
}

/// The edges between top-level modules in `files` (path relative to `host/`, source).
fn edges(files: &[(String, String)]) -> Vec<Edge> {
    let mut out = BTreeSet::new();
    for (file, src) in files {
        let rel = Path::new(file);
        let Ok(under_src) = rel.strip_prefix("host") else {
            continue;
        };
        if under_src == Path::new("src/main.rs") {
            continue; // the binary is a crate of its own
        }
        let module = module_path(under_src);
        let Some(from) = module.first() else {
            continue; // lib.rs: the root sits above every layer
        };
        for path in references(&module, src) {
            let Some(to) = path.first() else { continue };
            if to != from {
                out.insert(Edge {
                    from: from.clone(),
                    to: to.clone(),
                    file: file.clone(),
                    path: format!("crate::{}", path.join("::")),
                });
            }
        }
    }
    out.into_iter().collect()
}

/// What is wrong with the module graph of `files`: upward edges, unknown modules, cycles.
fn check(files: &[(String, String)]) -> Vec<String> {
    let edges = edges(files);
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for e in &edges {
        // One line per file and module used (the first path names it).
        if !seen.insert((&e.file, &e.to)) {
            continue;
        }
        match (layer_of(&e.from), layer_of(&e.to)) {
            (Some(a), Some(b)) if b > a => problems.push(format!(
                "{}: `{}` points up: `{}` (layer {a}) may not use `{}` (layer {b})",
                e.file, e.path, e.from, e.to
            )),
            (None, _) => problems.push(format!(
                "{}: module `{}` is in no layer (add it to LAYERS in host/tests/layers.rs)",
                e.file, e.from
            )),
            (_, None) => problems.push(format!(
                "{}: `{}` uses `{}`, which is in no layer (add it to LAYERS in host/tests/layers.rs)",
                e.file, e.path, e.to
            )),
            _ => {}
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        let hops: Vec<String> = cycle
            .windows(2)
            .map(|w| {
                let e = edges
                    .iter()
                    .find(|e| e.from == w[0] && e.to == w[1])
                    .expect("the cycle is made of edges");
                format!("{} → {} ({}: `{}`)", e.from, e.to, e.file, e.path)
            })
            .collect();
        problems.push(format!("import cycle: {}", hops.join(", ")));
    }
    problems
}

/// A cycle in the graph as its list of modules (first repeated at the end), if any.
fn find_cycle(edges: &[Edge]) -> Option<Vec<String>> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in edges {
        graph.entry(&e.from).or_default().insert(&e.to);
    }
    fn visit<'a>(
        n: &'a str,
        graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| *s == n) {
            let mut c: Vec<String> = stack[at..].iter().map(|s| s.to_string()).collect();
            c.push(n.to_string());
            return Some(c);
        }
        if !done.insert(n) {
            return None;
        }
        stack.push(n);
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, &graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

fn sources(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            sources(&p, root, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(root).expect("under the workspace");
            let src = std::fs::read_to_string(&p).expect("a readable source file");
            out.push((rel.to_string_lossy().into_owned(), src));
        }
    }
}

#[test]
fn host_layers_only_point_down_and_form_no_cycle() {
    let host = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = host.parent().expect("host/ is in the workspace");
    let mut files = Vec::new();
    sources(&host.join("src"), root, &mut files);
    assert!(files.len() > 20, "found only {} sources", files.len());
    let problems = check(&files);
    assert!(
        problems.is_empty(),
        "host/src breaks its layers (see ARCHITECTURE.md):\n{}",
        problems.join("\n")
    );
}

fn fake(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect()
}

#[test]
fn an_upward_use_is_named_with_its_file() {
    let p = check(&fake(&[(
        "host/src/config/mod.rs",
        "use crate::error::Error;\nfn f() { crate::gateway::origin_of(x); }",
    )]));
    assert_eq!(
        p,
        [
            "host/src/config/mod.rs: `crate::gateway::origin_of` points up: `config` (layer 2) may not use `gateway` (layer 4)"
        ]
    );
}

#[test]
fn groups_super_and_inline_modules_are_resolved() {
    // `super::super::` from a submodule, a `{..}` group, and `super::` inside `mod tests`.
    let p = check(&fake(&[
        (
            "host/src/plugins/provider.rs",
            "fn f() { super::super::gateway::origin_of(b); }",
        ),
        (
            "host/src/error.rs",
            "use crate::{wit::types::ErrorClass, ledger::{self, Ticket}};",
        ),
        (
            "host/src/store/mod.rs",
            "mod tests { use super::*; use super::super::api::x; }",
        ),
    ]));
    assert_eq!(p.len(), 3, "{p:#?}");
    assert!(
        p[0].contains("host/src/error.rs: `crate::ledger`"),
        "{p:#?}"
    );
    assert!(p[1].contains("host/src/plugins/provider.rs: `crate::gateway::origin_of`"));
    assert!(p[2].contains("host/src/store/mod.rs: `crate::api::x`"));
}

#[test]
fn a_cycle_within_a_layer_is_named() {
    let p = check(&fake(&[
        ("host/src/ledger/mod.rs", "use crate::plugins::Usage;"),
        (
            "host/src/plugins/mod.rs",
            "fn f() -> crate::ledger::Ticket { todo!() }",
        ),
    ]));
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(p[0].starts_with("import cycle: ledger → plugins"), "{p:#?}");
}

#[test]
fn comments_strings_and_unknown_modules() {
    let p = check(&fake(&[
        (
            "host/src/store/types.rs",
            "//! See [`crate::ledger`].\n/* crate::api */ const S: &str = \"crate::server\";\nconst R: &str = r#\"crate::api\"#; fn f<'a>(c: char) { let _ = '\"'; }",
        ),
        ("host/src/metrics.rs", "use crate::gateway::Stats;"),
        ("host/src/store/rows.rs", "use crate::telemetry::span;"),
    ]));
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(p[0].contains("module `metrics` is in no layer"), "{p:#?}");
    assert!(
        p[1].contains("`crate::telemetry::span` uses `telemetry`"),
        "{p:#?}"
    );
}
