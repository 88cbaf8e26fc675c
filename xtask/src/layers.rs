//! Tests of the code's shape that no compiler checks: ARCHITECTURE.md names only paths that exist, the modules
//! of shared vocabulary import no service, the desk or the app above them, and no two files import each other
//! round a circle (a module and its own submodules aside, which belong together).

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    fn root() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
    }

    fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                rust_files(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }

    /// The file's code without comment lines (doc comments name other modules freely).
    fn code(path: &Path) -> String {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
    }

    /// The module path of a file under `src`: `src/kafka/relay.rs` is `["kafka", "relay"]`, `src/lib.rs` `[]`.
    fn module_of(src: &Path, file: &Path) -> Vec<String> {
        let relative = file.strip_prefix(src).unwrap().with_extension("");
        let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
            parts.pop();
        }
        parts
    }

    /// The longest known module that `path` (a module path followed by item names) starts with.
    fn resolve(modules: &BTreeSet<Vec<String>>, path: &[String]) -> Option<Vec<String>> {
        (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|candidate| modules.contains(candidate))
    }

    /// Every module a file of the crate at `src` refers to by `crate::` or `super::` paths, by file.
    fn imports(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
        let mut files = Vec::new();
        rust_files(src, &mut files);
        let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(src, f)).collect();
        let mut graph = BTreeMap::new();
        for file in &files {
            let here = module_of(src, file);
            let is_mod = matches!(file.file_stem().and_then(|s| s.to_str()), Some("mod" | "lib" | "main"));
            let code = code(file);
            let mut targets = BTreeSet::new();
            let bytes: Vec<char> = code.chars().collect();
            let mut i = 0;
            while i < bytes.len() {
                let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
                let starts_word = i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_');
                if starts_word && (rest.starts_with("crate::") || rest.starts_with("super::")) {
                    let mut j = i;
                    while j < bytes.len() && (bytes[j].is_alphanumeric() || bytes[j] == '_' || bytes[j] == ':') {
                        j += 1;
                    }
                    let path: String = bytes[i..j].iter().collect();
                    let mut segments: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
                    // `super` is the parent of this file's module (a mod.rs is its own module's file).
                    let mut base: Vec<String> = if segments[0] == "crate" {
                        segments.remove(0);
                        Vec::new()
                    } else {
                        let mut base = here.clone();
                        let _ = is_mod;
                        while segments.first() == Some(&"super") {
                            segments.remove(0);
                            base.pop();
                        }
                        base
                    };
                    base.extend(segments.iter().map(|s| s.to_string()));
                    if let Some(target) = resolve(&modules, &base) {
                        targets.insert(target);
                    }
                    i = j;
                } else {
                    i += 1;
                }
            }
            graph.insert(here, targets);
        }
        graph
    }

    /// Whether `a` is `b` or lies within it (or the other way round): a module and its submodules belong together.
    fn related(a: &[String], b: &[String]) -> bool {
        a.starts_with(b) || b.starts_with(a)
    }

    /// The circles among unrelated files: each as the files round it.
    fn circles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<String> {
        let edges = |from: &Vec<String>| -> Vec<Vec<String>> {
            graph.get(from).into_iter().flatten().filter(|to| !related(from, to)).cloned().collect()
        };
        let mut found = BTreeMap::new();
        for start in graph.keys() {
            // Breadth-first from each of start's neighbours back to start: the shortest circle through it.
            let mut previous: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
            let mut queue: std::collections::VecDeque<Vec<String>> = edges(start).into_iter().collect();
            for next in &queue {
                previous.insert(next.clone(), start.clone());
            }
            while let Some(node) = queue.pop_front() {
                if &node == start {
                    let mut round = vec![start.join("::")];
                    let mut at = previous[start].clone();
                    while &at != start {
                        round.push(at.join("::"));
                        at = previous[&at].clone();
                    }
                    round.reverse();
                    let mut key = round.clone();
                    key.sort();
                    found.entry(key).or_insert_with(|| round.join(" -> "));
                    break;
                }
                for next in edges(&node) {
                    if !previous.contains_key(&next) {
                        previous.insert(next.clone(), node.clone());
                        queue.push_back(next);
                    }
                }
            }
        }
        found.into_values().collect()
    }

    #[test]
    fn no_two_files_of_franz_import_each_other_round_a_circle() {
        let graph = imports(&root().join("src"));
        assert!(graph.len() > 50, "the scan found {} files", graph.len());
        let circles = circles(&graph);
        assert!(circles.is_empty(), "import circles:\n{}", circles.join("\n"));
    }

    #[test]
    fn no_two_files_of_the_broker_import_each_other_round_a_circle() {
        let graph = imports(&root().join("crates/broker/src"));
        let circles = circles(&graph);
        assert!(circles.is_empty(), "import circles:\n{}", circles.join("\n"));
    }

    #[test]
    fn the_circle_finder_finds_a_circle_and_ignores_a_module_and_its_submodules() {
        let m = |p: &str| p.split("::").map(str::to_owned).collect::<Vec<_>>();
        let mut graph = BTreeMap::new();
        graph.insert(m("a"), BTreeSet::from([m("a::b")]));
        graph.insert(m("a::b"), BTreeSet::from([m("a")]));
        graph.insert(m("c"), BTreeSet::from([m("d")]));
        graph.insert(m("d"), BTreeSet::from([m("e")]));
        graph.insert(m("e"), BTreeSet::from([m("c")]));
        let found = circles(&graph);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains('c') && found[0].contains('d') && found[0].contains('e'), "{found:?}");
    }

    /// The shared vocabulary lies below the services, the desk, the subcommands and the app: it never imports them.
    #[test]
    fn the_shared_vocabulary_imports_no_service_desk_or_app() {
        let src = root().join("src");
        let below = [
            "schema.rs",
            "schema",
            "lifecycle.rs",
            "lifecycle",
            "discord",
            "terminal.rs",
            "files.rs",
            "attachments.rs",
            "clock.rs",
            "kafka",
            "store",
            "people.rs",
            "metrics.rs",
            "troubles.rs",
            "intake.rs",
            "config.rs",
            "config",
        ];
        let mut offenders = Vec::new();
        for entry in below {
            let mut files = Vec::new();
            let path = src.join(entry);
            if path.is_dir() {
                rust_files(&path, &mut files);
            } else {
                files.push(path);
            }
            for file in files {
                let code = code(&file);
                for above in ["crate::services", "crate::desk", "crate::cmd", "crate::app"] {
                    if code.contains(above) {
                        offenders.push(format!("{} uses {above}", file.strip_prefix(root()).unwrap().display()));
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "arrows pointing up:\n{}", offenders.join("\n"));
    }

    /// Every path ARCHITECTURE.md names in backticks exists, so the map matches the tree.
    #[test]
    fn every_path_architecture_md_names_exists() {
        let mut missing = Vec::new();
        let mut checked = 0;
        for doc in ["ARCHITECTURE.md", "crates/broker/ARCHITECTURE.md"] {
            let Ok(text) = std::fs::read_to_string(root().join(doc)) else { continue };
            let base = root().join(doc).parent().unwrap().to_path_buf();
            for (i, quoted) in text.split('`').enumerate() {
                let looks_like_path = i % 2 == 1
                    && !quoted.contains(' ')
                    && !quoted.contains('…')
                    && !quoted.contains('*')
                    && !quoted.contains('<')
                    && [
                        "src/",
                        "crates/",
                        "tests/",
                        "xtask/",
                        "benches/",
                        "fixtures/",
                        "scripts/",
                        "docker/",
                        "interop/",
                        ".ci/",
                    ]
                    .iter()
                    .any(|top| quoted.starts_with(top));
                if !looks_like_path {
                    continue;
                }
                checked += 1;
                let path = quoted.trim_end_matches(['.', ',', ':', ')']);
                if !root().join(path).exists() && !base.join(path).exists() {
                    missing.push(format!("{doc}: {path}"));
                }
            }
        }
        assert!(checked > 20, "only {checked} paths found: is the scan still finding them?");
        assert!(missing.is_empty(), "paths that do not exist:\n{}", missing.join("\n"));
    }
}
