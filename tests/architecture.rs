//! Structural rules of the source tree that the compiler does not check: no import
//! cycles between a crate's top-level modules, and one implementation of each
//! shared mechanism. The crate-level direction (contimgctl links neither libhdf5
//! nor axum) is enforced by the workspace's Cargo manifests and checked with
//! `cargo tree`/`ldd` in the lint stage of ./ops/test.sh.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The member crates: every directory under src/ with its own Cargo.toml.
fn member_crates() -> Vec<PathBuf> {
    let mut crates: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("src"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    crates.sort();
    crates
}

/// Code lines of a file: comments and everything from `#[cfg(test)]` on are
/// dropped (unit tests may reach anywhere).
fn code_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let code = line.split("//").next().unwrap_or("");
        lines.push(code.to_string());
    }
    lines
}

/// Names following `prefix` in `line` (`crate::queue::X` → `queue`).
fn referenced_modules(line: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find(prefix) {
        let after = &rest[at + prefix.len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.push(name);
        }
        rest = after;
    }
    found
}

/// The top-level module a file of a crate belongs to (`queue/reader.rs` →
/// `queue`, `lib.rs` → none).
fn top_module(crate_dir: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(crate_dir).ok()?;
    let first = relative.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// Edges `module → module it uses` between a crate's top-level modules.
fn module_graph(crate_dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(crate_dir) {
        let Some(module) = top_module(crate_dir, &file) else {
            continue;
        };
        // In a top-level file `super::` is the crate root; deeper, it is a parent
        // inside the same top-level module.
        let depth = file.strip_prefix(crate_dir).unwrap().components().count();
        let node = graph.entry(module.clone()).or_default();
        for line in code_lines(&file) {
            let mut used = referenced_modules(&line, "crate::");
            if depth == 1 {
                used.extend(referenced_modules(&line, "super::"));
            }
            for target in used {
                let is_module = crate_dir.join(format!("{target}.rs")).is_file()
                    || crate_dir.join(&target).is_dir();
                if target != module && is_module {
                    node.insert(target);
                }
            }
        }
    }
    graph
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn no_import_cycles_between_the_top_level_modules_of_a_crate() {
    let mut cycles = Vec::new();
    for crate_dir in member_crates() {
        if let Some(cycle) = find_cycle(&module_graph(&crate_dir)) {
            cycles.push(format!(
                "{}: {}",
                crate_dir.file_name().unwrap().to_string_lossy(),
                cycle.join(" → ")
            ));
        }
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph
        .entry("queue".into())
        .or_default()
        .insert("names".into());
    graph
        .entry("names".into())
        .or_default()
        .insert("queue".into());
    graph
        .entry("config".into())
        .or_default()
        .insert("names".into());
    let cycle = find_cycle(&graph).expect("a cycle");
    assert_eq!(cycle.first(), cycle.last());
    assert!(cycle.contains(&"queue".to_string()) && cycle.contains(&"names".to_string()));
}

/// Occurrences of `needle` in code (not comments, not unit tests) of src/, except
/// in the files listed as the one place allowed.
fn occurrences_outside(needle: &str, allowed: &[&str]) -> Vec<String> {
    let root = workspace_root();
    let mut found = Vec::new();
    for file in rust_files(&root.join("src")) {
        let relative = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .to_string();
        if allowed.contains(&relative.as_str()) {
            continue;
        }
        for (number, line) in code_lines(&file).iter().enumerate() {
            if line.contains(needle) {
                found.push(format!("{relative}:{}: {}", number + 1, line.trim()));
            }
        }
    }
    found
}

/// There were three atomic-write helpers, one without the directory fsync that
/// makes the rename durable. Renames and fsyncs of files we write belong in
/// `contimg_core::fsutil`.
#[test]
fn files_are_replaced_atomically_in_one_place_only() {
    let mut found = Vec::new();
    for needle in ["fs::rename(", ".sync_all()", "create_new(true)"] {
        found.extend(occurrences_outside(needle, &["src/core/fsutil.rs"]));
    }
    assert!(
        found.is_empty(),
        "use contimg_core::fsutil instead of renaming/fsyncing by hand:\n{}",
        found.join("\n")
    );
}

/// The quoted names of a TypeScript string-union type in the dashboard's API types.
fn typescript_union(type_name: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(workspace_root().join("frontend/src/api/types.ts")).unwrap();
    let start = text
        .find(&format!("export type {type_name} ="))
        .unwrap_or_else(|| panic!("frontend/src/api/types.ts has no type {type_name}"));
    let body = &text[start..];
    let body = &body[..body.find(';').unwrap()];
    body.split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The dashboard spells the API's vocabularies as TypeScript unions; a variant added
/// on the Rust side must reach them (the alert union had missed three rules).
#[test]
fn the_dashboard_knows_every_alert_rule_and_group_state() {
    let rules: BTreeSet<String> = contimg::control::alerts::AlertRule::ALL
        .iter()
        .map(|rule| rule.as_str().to_string())
        .collect();
    assert_eq!(typescript_union("AlertRule"), rules);
    let states: BTreeSet<String> = contimg::queue::GroupState::ALL
        .iter()
        .map(|state| state.as_str().to_string())
        .collect();
    assert_eq!(typescript_union("GroupState"), states);
}

/// Socket activation goes through sd-notify (which checks LISTEN_PID and unsets the
/// variables), and user ids and sysconf values through nix, not hand-rolled FFI.
#[test]
fn no_hand_rolled_activation_or_raw_libc_for_what_nix_wraps() {
    let mut found = Vec::new();
    for needle in [
        "SD_LISTEN_FDS_START",
        "from_raw_fd(3)",
        "libc::geteuid",
        "libc::getegid",
        "libc::getuid",
        "libc::sysconf",
    ] {
        found.extend(occurrences_outside(needle, &[]));
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
