//! The guide stays what the README promises: every chapter in
//! `docs/guide/` is included by `src/lib.rs`, so `cargo test --doc` compiles
//! its code blocks; no Rust block is skipped with `ignore`; and the README
//! stays short enough to read (the depth belongs in the guide).

use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The chapters: every `*.md` of `docs/guide/` but its index.
fn chapters() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("docs/guide"))
        .expect("docs/guide exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md") && n != "README.md")
        .collect();
    names.sort();
    names
}

#[test]
fn every_chapter_is_included_into_the_doctested_library() {
    let lib = std::fs::read_to_string(Path::new(ROOT).join("src/lib.rs")).unwrap();
    let chapters = chapters();
    assert!(chapters.len() >= 11, "the guide has its chapters: {chapters:?}");
    for chapter in &chapters {
        assert!(
            lib.contains(&format!("\"{chapter}\"")),
            "docs/guide/{chapter} is not included by src/lib.rs, so its code blocks are never compiled"
        );
    }
    let index = std::fs::read_to_string(Path::new(ROOT).join("docs/guide/README.md")).unwrap();
    for chapter in &chapters {
        assert!(
            index.contains(&format!("({chapter})")),
            "docs/guide/README.md does not list {chapter}"
        );
    }
}

/// The info string of every fenced block that opens in `text`.
fn fences(text: &str) -> Vec<String> {
    let mut open = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if let Some(info) = line.strip_prefix("```") {
            if !open {
                out.push(info.trim().to_owned());
            }
            open = !open;
        }
    }
    out
}

#[test]
fn no_rust_block_is_left_uncompiled() {
    let mut files = vec!["README.md".to_owned()];
    files.extend(chapters().into_iter().map(|c| format!("docs/guide/{c}")));
    files.push("docs/guide/README.md".to_owned());
    for file in files {
        let text = std::fs::read_to_string(Path::new(ROOT).join(&file)).unwrap();
        for info in fences(&text) {
            let words: Vec<&str> = info.split(',').map(str::trim).collect();
            let rust = info.is_empty() || words.contains(&"rust");
            assert!(
                !(rust && words.contains(&"ignore")),
                "{file}: a Rust block marked `{info}` is not compiled by cargo test --doc"
            );
        }
    }
}

#[test]
fn the_readme_stays_short() {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 250,
        "README.md has {lines} lines; move the depth into docs/guide/"
    );
    for command in ["cargo run --example llm_gateway", "cargo test --workspace"] {
        assert!(
            readme.contains(command),
            "the README's quick start lacks `{command}`"
        );
    }
    let ci = std::fs::read_to_string(Path::new(ROOT).join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == "cargo test --workspace"),
        "`.ci/run` no longer runs the README's test command"
    );
}
