//! The source tree keeps its shape: no module depends on a module that depends back on it, and
//! `unsafe` code lives only in `src/platform/`. Read from the `use crate::…`, `crate::…` and
//! `super::…` paths of every file under `src/` (test modules aside), the way a reader would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The module path of a file: `src/peer/reader.rs` is `peer::reader`, `src/peer/mod.rs` is `peer`,
/// `src/lib.rs` is the crate root (an empty path).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The file's code without its test modules (`#[cfg(test)] mod tests { … }` to the end of the
/// file, where this code base keeps them) and without comments.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines().map(|line| line.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Module paths `code` refers to: after `crate::` or `super::`, the path's segments.
fn referenced_paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", module[..module.len().saturating_sub(1)].to_vec())] {
        let mut rest = code;
        while let Some(at) = rest.find(prefix) {
            let before = rest[..at].chars().last();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let mut path = base.clone();
            let mut tail = rest;
            loop {
                let end = tail.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(tail.len());
                let segment = &tail[..end];
                if segment.is_empty() || tail[end..].starts_with('!') {
                    break;
                }
                path.push(segment.to_string());
                if !tail[end..].starts_with("::") {
                    break;
                }
                tail = &tail[end + 2..];
            }
            // `crate::a::{b, c}`: each of the group's members.
            if tail.starts_with('{') {
                let group = &tail[1..tail.find('}').unwrap_or(tail.len())];
                for member in group.split(',') {
                    let name = member.trim().split("::").next().unwrap_or("").trim();
                    if !name.is_empty() && name != "self" {
                        let mut member_path = path.clone();
                        member_path.push(name.to_string());
                        paths.push(member_path);
                    }
                }
            }
            paths.push(path);
        }
    }
    paths
}

#[test]
fn modules_form_no_cycle_and_unsafe_code_stays_in_platform() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = rust_files(&src);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        if file.file_name().is_some_and(|n| n == "main.rs" || n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let code = code_of(&text);
        if module.first().is_none_or(|top| top != "platform") {
            let unsafe_use =
                code.lines().find(|l| l.contains("unsafe {") || l.contains("unsafe extern") || l.contains("unsafe fn"));
            assert!(unsafe_use.is_none(), "{}: unsafe code outside src/platform/: {unsafe_use:?}", file.display());
        }
        for path in referenced_paths(&code, &module) {
            // The longest prefix of the path that is a module is what the file depends on.
            let target = (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains(p));
            if let Some(target) = target.filter(|t| !t.is_empty() && *t != module) {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    // Depth-first search for a path that comes back to where it started.
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        done: &mut BTreeSet<Vec<String>>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let cycle: Vec<String> = stack[at..].iter().chain([node]).map(|m| m.join("::")).collect();
            return Some(cycle);
        }
        if !done.insert(node.clone()) {
            return None;
        }
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, done, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for module in &modules {
        let cycle = visit(module, &edges, &mut done, &mut Vec::new());
        assert!(cycle.is_none(), "modules depend on each other in a circle: {}", cycle.unwrap().join(" -> "));
    }
    assert!(edges.len() > 20, "the dependency graph was not read: {edges:?}");
}
