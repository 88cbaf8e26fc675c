//! `cargo xtask props`: every property test of the workspace (each is named `props_*`, which a test below holds
//! them to) with many more cases than a normal run, in release mode.

use crate::{cargo, sh};

pub fn run(cases: u32) -> anyhow::Result<()> {
    sh(cargo().env("PROPTEST_CASES", cases.to_string()).args(["test", "--workspace", "--release", "props_"]))
}

/// The names of the test functions inside every `proptest! { … }` block of `source`, found by matching braces
/// (braces inside the blocks' strings come in pairs, as in regexes like `\PC{1,50}`).
#[cfg(test)]
fn property_tests(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = source;
    while let Some(start) = rest.find("proptest! {") {
        let body = &rest[start + "proptest! {".len()..];
        let mut depth = 1usize;
        let mut end = body.len();
        for (i, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = i;
                break;
            }
        }
        let block = &body[..end];
        for piece in block.split("fn ").skip(1) {
            let name: String = piece.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                names.push(name);
            }
        }
        rest = &body[end..];
    }
    names
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() && name != "target" && name != ".git" {
                rust_files(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }

    /// `cargo xtask props` runs the tests named `props_*`: a property test named otherwise would escape it and only
    /// ever run its default cases (as the lifecycle's and the store's did).
    #[test]
    fn every_property_test_of_the_workspace_is_named_for_cargo_xtask_props() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut files = Vec::new();
        for dir in ["src", "crates", "tests", "benches", "xtask"] {
            rust_files(&root.join(dir), &mut files);
        }
        let mut all = 0;
        let mut escaped = Vec::new();
        // This file holds the scanner, whose own tests write blocks to scan.
        files.retain(|file| !file.ends_with("xtask/src/props.rs"));
        for file in &files {
            let source = std::fs::read_to_string(file).unwrap();
            for name in super::property_tests(&source) {
                all += 1;
                if !name.starts_with("props_") {
                    escaped.push(format!("{}: {name}", file.strip_prefix(root).unwrap().display()));
                }
            }
        }
        assert!(all >= 18, "found only {all} property tests: is the scan still finding them?");
        assert!(escaped.is_empty(), "property tests cargo xtask props would not run:\n{}", escaped.join("\n"));
    }

    #[test]
    fn the_scan_finds_the_tests_of_a_block_with_braces_in_its_strings() {
        let source = r#"
            proptest! {
                #![proptest_config(ProptestConfig::with_cases(9))]
                #[test]
                fn props_a(text in "\\PC{1,50}") { if true { } }
                #[test]
                fn stray(x in 0..3) {}
            }
            fn outside() {}
        "#;
        assert_eq!(super::property_tests(source), ["props_a", "stray"]);
    }
}
