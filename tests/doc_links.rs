//! Every relative link and every `#anchor` in the repository's Markdown
//! (README.md and the other `*.md` files outside `target/`) resolves: the
//! file exists, and the anchor is one of its headings as GitHub names them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The Markdown files of the repository, outside build output.
fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !matches!(&*name, "target" | ".git" | "node_modules") && !name.starts_with('.') {
                markdown_files(&path, out);
            }
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// The text outside fenced code blocks and inline code spans.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            out.push('\n');
            continue;
        }
        if fenced {
            out.push('\n');
            continue;
        }
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                out.push(c);
            }
        }
        out.push('\n');
    }
    out
}

/// GitHub's anchor for a heading: lowercase, punctuation other than `-` and
/// `_` dropped, spaces made `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of `text`'s headings, with GitHub's `-1`, `-2` for repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let heading = line.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        let base = slug(&heading.replace('`', ""));
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// The link targets of `text`: what follows `](` up to the closing `)`.
fn links(text: &str) -> Vec<String> {
    let text = prose(text);
    let mut out = Vec::new();
    let mut rest = &text[..];
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split_whitespace().next().unwrap_or("").to_owned();
        out.push(target);
        rest = &rest[end..];
    }
    out
}

/// The broken links of the document `file` with contents `text`.
fn broken(file: &Path, text: &str) -> Vec<String> {
    let mut bad = Vec::new();
    for target in links(text) {
        if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (&target[..], None),
        };
        let resolved = if path.is_empty() {
            file.to_path_buf()
        } else {
            file.parent().unwrap_or(Path::new(".")).join(path)
        };
        if !resolved.exists() {
            bad.push(format!("{}: `{target}`: no such file", file.display()));
            continue;
        }
        if let Some(anchor) = anchor {
            let same = path.is_empty();
            let target_text = if same {
                text.to_owned()
            } else {
                std::fs::read_to_string(&resolved).unwrap_or_default()
            };
            if resolved.extension().is_some_and(|e| e == "md") && !anchors(&target_text).contains(anchor) {
                bad.push(format!(
                    "{}: `{target}`: no heading with that anchor",
                    file.display()
                ));
            }
        }
    }
    bad
}

#[test]
fn every_relative_link_and_anchor_in_the_markdown_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    markdown_files(root, &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("README.md")),
        "the scan found no README.md: {files:?}"
    );
    let bad: Vec<String> = files
        .iter()
        .flat_map(|f| broken(f, &std::fs::read_to_string(f).unwrap()))
        .collect();
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

#[test]
fn the_check_finds_broken_links_and_anchors() {
    let dir = std::env::temp_dir().join(format!("cb-doc-links-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("other.md"), "# Other page\n\n## The `x` field: ranges\n").unwrap();
    let doc = "# Title\n\n## Fleet mode (crate `cb-fleet`)\n\n\
               [ok](#fleet-mode-crate-cb-fleet) [ok](other.md#the-x-field-ranges) [ok](other.md) \
               [web](https://example.com/#nothing)\n\
               [bad](#no-such-heading) [bad](missing.md) [bad](other.md#nope)\n\
               `[in code](#ignored)`\n\n```\n[fenced](#ignored)\n```\n";
    let file = dir.join("doc.md");
    std::fs::write(&file, doc).unwrap();
    let bad = broken(&file, doc);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(bad.len(), 3, "{bad:#?}");
    assert!(bad[0].contains("#no-such-heading"), "{bad:#?}");
    assert!(bad[1].contains("missing.md"), "{bad:#?}");
    assert!(bad[2].contains("other.md#nope"), "{bad:#?}");
}
