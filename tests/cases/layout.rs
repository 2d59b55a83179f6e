//! The shape of the source tree that docs/architecture.md promises: no import cycle
//! between the crate's top-level modules, the proxy names tapes only through the
//! observer, and `unsafe` only where wasmtime or the OS require it (the list in
//! architecture.md, "`unsafe` in src/"). A change that breaks one of these must change
//! the document too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comment lines.
fn code(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(str::to_string)
        .collect()
}

/// The top-level module a file of `src/` belongs to (`None`: the crate roots).
fn module_of(src: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.trim_end_matches(".rs").to_string();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

/// Module → the top-level modules its code names through `crate::`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let uses = graph.entry(module.clone()).or_default();
        for line in code(&file) {
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    uses.insert(name);
                }
            }
        }
    }
    graph
}

/// A cycle through `graph`, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_modules_import_each_other_without_a_cycle() {
    let graph = imports();
    assert!(graph.len() > 10, "the scan found the modules: {graph:?}");
    if let Some(found) = cycle(&graph) {
        panic!("an import cycle: {}", found.join(" → "));
    }
}

#[test]
fn the_proxy_knows_tapes_only_through_the_observer() {
    let graph = imports();
    let proxy = &graph["proxy"];
    assert!(proxy.contains("observe"), "{proxy:?}");
    assert!(!proxy.contains("tape"), "the proxy names tape: {proxy:?}");
    // Tapes and the MCP rules do not reach back into the proxy.
    for module in ["tape", "mcp", "observe", "http"] {
        assert!(!graph[module].contains("proxy"), "{module} names the proxy");
    }
}

#[test]
fn unsafe_code_is_only_where_wasmtime_or_the_os_require_it() {
    // Each file's `unsafe` blocks, as docs/architecture.md lists and justifies them.
    let allowed: BTreeMap<&str, usize> = [
        // `Component::deserialize` of a precompiled component from the compile cache.
        ("plugin/cache.rs", 1),
        // `TypedFunc::new_unchecked` for `on-event`, `on-events` (0.1) and `on-message`
        // (0.2), type-checked once when the instance was made.
        ("plugin/loaded.rs", 3),
        // `Command::pre_exec` setting the parent-death signal of a stdio server
        // process (the OS offers it only between fork and exec).
        ("upstream/stdio/process.rs", 1),
    ]
    .into();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut found = BTreeMap::new();
    for file in &files {
        let count = code(file)
            .iter()
            .map(|l| {
                l.matches("unsafe {").count()
                    + l.matches("unsafe impl").count()
                    + l.matches("unsafe fn").count()
            })
            .sum::<usize>();
        if count > 0 {
            let rel = file
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            found.insert(rel, count);
        }
    }
    let found: BTreeMap<&str, usize> = found.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(found, allowed);
}
