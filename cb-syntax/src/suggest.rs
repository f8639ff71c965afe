//! "Did you mean" suggestions for misspelled keys, and lists of names for messages.

/// The candidate nearest to `word`, if it is close enough to be what the user meant.
pub fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1) || contains_part(word, c))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `true` when one is a `_`-separated part of the other (`threshold` for `failure_threshold`).
fn contains_part(word: &str, candidate: &str) -> bool {
    word.len() >= 4 && (candidate.contains(word) || word.contains(candidate))
}

/// Levenshtein distance between `a` and `b`, counted in chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// `a`, `b` and `c` — a list of names for an error message.
pub fn list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::{edit_distance, list, nearest};

    const KEYS: &[&str] = &["name", "preset", "failure_threshold", "call_timeout", "crate"];

    #[test]
    fn suggests_the_nearest_key() {
        assert_eq!(nearest("fail_threshold", KEYS), Some("failure_threshold"));
        assert_eq!(nearest("threshold", KEYS), Some("failure_threshold"));
        assert_eq!(nearest("nme", KEYS), Some("name"));
        assert_eq!(nearest("timeout", KEYS), Some("call_timeout"));
        assert_eq!(nearest("retries", KEYS), None);
    }

    #[test]
    fn distances_and_lists() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(list(&["a"]), "`a`");
        assert_eq!(list(&["a", "b", "c"]), "`a`, `b` and `c`");
    }
}
