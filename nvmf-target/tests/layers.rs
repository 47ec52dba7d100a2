//! The crate's modules depend on each other one way (STYLE "Layering inside a target"): this
//! test reads every file under `src/`, collects the `crate::` paths it names (in `use` items,
//! grouped `use crate::{a, b::c}` included, and in expressions), maps each file to its top-level
//! module (`tcp/io.rs` is `tcp`) and fails naming the cycle if the module graph has one.
//! Comments are ignored (a doc link is not a dependency), and so are `#[cfg(test)] mod` blocks
//! (a unit test may reach across layers to check what it tests against; it builds no layer).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module of a file under `src/` (`None` for the crate roots).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib" && name != "main").then_some(name)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source without `//` comments (string literals holding `//` are rare enough here; one
/// would only hide a dependency after it on the same line).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| l.find("//").map_or(l, |i| &l[..i]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` without its `#[cfg(test)] mod name { .. }` blocks (braces counted; a brace inside a
/// string literal of a test module could end the skip early, which only adds edges).
fn strip_test_modules(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let is_mod = trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ");
        let open = trimmed.find('{');
        let semi = trimmed.find(';');
        match (is_mod, open) {
            (true, Some(o)) if semi.is_none_or(|s| s > o) => {
                let body = &trimmed[o..];
                let mut depth = 0usize;
                let mut end = body.len();
                for (j, c) in body.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = j + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                rest = &body[end..];
            }
            _ => {
                out.push_str("#[cfg(test)]");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Top-level modules named after `crate::` in `text`.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the first identifier of each top-level item.
            let mut depth = 0usize;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_alphabetic() || c == '_') => {
                        out.insert(ident_at(&group[j..]).to_string());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let id = ident_at(after);
            if !id.is_empty() {
                out.insert(id.to_string());
            }
        }
        rest = after;
    }
    out
}

/// A cycle in `graph`, as the modules along it with the first repeated at the end.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        mark: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        mark.insert(n.to_string(), Mark::Open);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            match mark.get(m.as_str()).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let at = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut c = stack[at..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                Mark::New => {
                    if let Some(c) = visit(m, g, mark, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        mark.insert(n.to_string(), Mark::Done);
        None
    }
    let mut mark = BTreeMap::new();
    for n in graph.keys() {
        if mark.get(n.as_str()).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(n, graph, &mut mark, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// The module graph of `src`: module → modules it names (itself excluded).
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let Some(m) = module_of(src, f) else { continue };
        let text = std::fs::read_to_string(f).expect("read source");
        let deps = graph.entry(m.clone()).or_default();
        for r in crate_refs(&strip_test_modules(&strip_comments(&text))) {
            if r != m && modules.contains(&r) {
                deps.insert(r);
            }
        }
    }
    graph
}

#[test]
fn the_parser_sees_plain_grouped_and_nested_paths_and_finds_a_cycle() {
    let refs = crate_refs(
        "use crate::a::X;\nuse crate::{b, c::{D, E}, d::F};\nlet x = crate::e::f();\n// crate::g\n",
    );
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        ["a", "b", "c", "d", "e", "g"],
        "comments are stripped by the caller, not here"
    );
    assert!(crate_refs(&strip_comments("// crate::g\n")).is_empty());
    let with_tests = "use crate::a::X;\n#[cfg(test)]\nmod tests {\n    fn f() { crate::b::g(); }\n}\nuse crate::c;\n#[cfg(test)]\nuse crate::d;\n";
    assert_eq!(
        crate_refs(&strip_test_modules(with_tests))
            .into_iter()
            .collect::<Vec<_>>(),
        ["a", "c", "d"],
        "a test module is skipped, a cfg(test) use is not"
    );
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let mut dag = g.clone();
    dag.insert("c".into(), BTreeSet::new());
    assert_eq!(find_cycle(&dag), None);
}

#[test]
fn nvmf_target_src_has_no_import_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(
        graph.len() > 10,
        "the scan found the crate's modules: {graph:?}"
    );
    // The layering the crate is built on: the transports use the poll-group context, the
    // reactor uses the transports, the RPC and the lifecycle sit on top.
    for (from, to) in [
        ("tcp", "pollgroup"),
        ("nvm", "pollgroup"),
        ("reactor", "tcp"),
        ("target", "reactor"),
        ("target", "rpc"),
        ("rpc", "shared"),
    ] {
        assert!(
            graph.get(from).is_some_and(|d| d.contains(to)),
            "expected {from} -> {to} in {graph:#?}"
        );
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import circle in nvmf-target/src: {}\nmodule graph: {graph:#?}",
            cycle.join(" -> ")
        );
    }
}
