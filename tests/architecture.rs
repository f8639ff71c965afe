//! The shape of cb-runtime's code: its modules depend on each other without
//! cycles, so each can be read, and changed, from the leaves up.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The names that follow `crate::` in `code`, and those listed in a
/// `use crate::{...}` group.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            found.extend(group.split(',').map(|p| ident(p.trim())));
        } else {
            found.insert(ident(rest));
        }
    }
    found.retain(|name| !name.is_empty() && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_'));
    found
}

/// cb-runtime's top-level modules, each with the top-level modules its code
/// names (comments left out: a doc link is no dependency).
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("cb-runtime/src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = top.trim_end_matches(".rs");
        let module = match top {
            "lib" | "tests" => continue,
            "private" => "__private",
            other => other,
        }
        .to_owned();
        let code: String = fs::read_to_string(&file)
            .unwrap()
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .map(|line| format!("{line}\n"))
            .collect();
        graph.entry(module).or_default().extend(crate_paths(&code));
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for (module, deps) in graph.iter_mut() {
        deps.retain(|d| modules.contains(d) && d != module);
    }
    graph
}

/// A cycle of `graph`, if it has one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        module: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut cycle = path[at..].to_vec();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for dep in &graph[module] {
            if let Some(cycle) = visit(graph, dep, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|module| visit(graph, module, &mut Vec::new(), &mut done))
}

#[test]
fn cb_runtime_modules_have_no_cycles() {
    let graph = module_graph();
    assert!(graph.len() > 20, "the scan found too few modules: {graph:?}");
    // The scan sees the dependencies that matter.
    assert!(graph["permit"].contains("breaker"), "{graph:?}");
    assert!(graph["metrics"].contains("registry"), "{graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        let listing: String = graph
            .iter()
            .map(|(m, deps)| {
                format!(
                    "  {m} -> {}\n",
                    deps.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        panic!("cycle: {}\n\nthe module graph:\n{listing}", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(m, deps)| (m.to_owned(), deps.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(find_cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
}

#[test]
fn crate_paths_reads_single_paths_and_groups() {
    let found = crate_paths("use crate::breaker::CircuitBreaker;\nuse crate::{registry, Outcome, state::State};\nlet x = crate::clock::now();");
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["breaker", "clock", "registry", "state"]
    );
}
