//! Checks of the layout the module docs promise, read from the source: the `ssr` modules
//! use each other without a cycle, SQL is written only in `ssr/store`, and no service
//! takes the whole `AppState`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn ssr_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ssr")
}

/// The source without `//` comments (so docs naming a module are not uses of it).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level `ssr` module each file belongs to, and the modules it uses: paths
/// `crate::ssr::X`, and `super::X` resolved from where the file sits.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = ssr_dir();
    let top: BTreeSet<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_stem()?.to_str()?.to_string();
            (name != "mod" && name != "architecture").then_some(name)
        })
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&root) {
        let rel = file.strip_prefix(&root).unwrap();
        let parts: Vec<&str> = rel.iter().map(|p| p.to_str().unwrap()).collect();
        let owner = parts[0].trim_end_matches(".rs").to_string();
        if owner == "mod" || owner == "architecture" {
            continue;
        }
        let text = code(&file);
        let mut uses = BTreeSet::new();
        let prefixes = [
            "crate::ssr::".to_string(),
            "super::".repeat(depth_to_ssr(&parts)),
        ];
        for prefix in &prefixes {
            for (i, _) in text.match_indices(prefix.as_str()) {
                let rest = &text[i + prefix.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                // `super::{a, b}` lists.
                let names: Vec<String> = if rest.starts_with('{') {
                    rest[1..rest.find('}').unwrap_or(1)]
                        .split(',')
                        .map(|n| n.trim().split("::").next().unwrap_or("").to_string())
                        .collect()
                } else {
                    vec![name]
                };
                for n in names {
                    if top.contains(&n) && n != owner {
                        uses.insert(n);
                    }
                }
            }
        }
        graph.entry(owner).or_default().extend(uses);
    }
    graph
}

/// `super::` steps from a file (path parts under `ssr/`) up to `ssr` itself.
fn depth_to_ssr(parts: &[&str]) -> usize {
    match parts {
        [_] => 1,
        [.., last] if *last == "mod.rs" => parts.len() - 1,
        _ => parts.len(),
    }
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_ssr_modules_use_each_other_without_a_cycle() {
    let graph = module_graph();
    // The reading itself works: known edges are seen.
    assert!(graph["cards"].contains("store"), "{graph:?}");
    assert!(graph["runs"].contains("cards"), "{graph:?}");
    assert!(
        graph["store"].iter().all(|m| m == "clock"),
        "the store uses only the clock: {:?}",
        graph["store"]
    );
    assert_eq!(
        find_cycle(&graph),
        None,
        "import cycle; the graph: {graph:#?}"
    );
    // And a cycle would be found.
    let mut broken = graph.clone();
    broken.get_mut("store").unwrap().insert("cards".into());
    assert!(find_cycle(&broken).is_some());
}

/// SQL: sqlx calls, or statement keywords inside string literals.
fn sql_lines(path: &Path) -> Vec<String> {
    let statement = |l: &str| {
        [
            "\"SELECT ",
            "\"INSERT INTO",
            "\"UPDATE ",
            "\"DELETE FROM",
            "\"CREATE TABLE",
        ]
        .iter()
        .any(|k| l.contains(k))
    };
    code(path)
        .lines()
        .filter(|l| l.contains("sqlx::query") || statement(l))
        .map(|l| format!("{}: {}", path.display(), l.trim()))
        .collect()
}

#[test]
fn sql_is_written_only_in_the_store() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let store = ssr_dir().join("store");
    let mut files = rust_files(&manifest.join("src"));
    files.extend(rust_files(&manifest.join("../server/src")));
    let outside: Vec<String> = files
        .iter()
        .filter(|f| !f.starts_with(&store) && !f.ends_with("architecture.rs"))
        .flat_map(|f| sql_lines(f))
        .collect();
    assert!(
        outside.is_empty(),
        "SQL outside app/src/ssr/store:\n{}",
        outside.join("\n")
    );
    // The check sees SQL where there is some.
    assert!(!sql_lines(&store.join("runs.rs")).is_empty());
}

#[test]
fn no_service_takes_the_whole_app_state() {
    let allowed = ["state.rs", "context.rs", "architecture.rs"];
    let offenders: Vec<String> = rust_files(&ssr_dir())
        .iter()
        .filter(|f| !allowed.iter().any(|a| f.ends_with(a)))
        .filter(|f| code(f).contains("AppState"))
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "services naming AppState: {offenders:?}"
    );
}
