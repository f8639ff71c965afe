//! The tag a keyed breaker carries of its key, and how a thread's cache
//! recognizes a key without reading it.
//!
//! A breaker made by a [`Family`](crate::Family) for one key holds a
//! [`KeyTag`]: the key itself, and what the family's call path checks before it
//! reuses a breaker from a thread's cache. It lives apart from the family so
//! that a breaker can hold it without depending on the family.
//!
//! The call path compares a key with a cached breaker's through [`words`]: the
//! key's bytes packed into two words, which with the key's length say exactly
//! which key it is when it has at most [`SHORT`] bytes (models, deployments
//! and tenants mostly do). A short key is then hashed from those two words
//! with one multiplication, and compared with two, none of which reads the
//! cached key's bytes through another pointer. A key of 17 to 32 bytes is
//! hashed and compared in line too, from four word loads per side.

use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Weak};

/// What a keyed breaker carries of its key: the key, and what a thread's
/// cache of key breakers checks before it reuses the breaker for a call
/// (see the family's `lease` module), and its last use, for eviction.
pub(crate) struct KeyTag {
    pub(crate) key: Arc<str>,
    /// The id of the family that made the breaker (unique in the process).
    pub(crate) family: u64,
    /// The key's [`words`].
    pub(crate) words: [u64; 2],
    /// Set when the key leaves its family: a cached breaker is then never
    /// used for a new call.
    pub(crate) evicted: AtomicBool,
    /// The family's logical time of the key's last use.
    pub(crate) last_used: AtomicU64,
    /// The family that made the breaker: where the failure of a call in
    /// flight across the key's eviction is handed over (see the family's
    /// `handover` module).
    pub(crate) home: Option<Weak<dyn crate::home::Home>>,
    /// The breaker was made for one call only and was never in its family's
    /// map (the family was full of keys it may not forget, or the key breaks
    /// the name rule): nothing of it is handed over.
    pub(crate) detached: bool,
}

impl KeyTag {
    /// The tag of `key` in the family `family`, last used at `last_used`.
    pub(crate) fn new(key: Arc<str>, family: u64, last_used: u64) -> Self {
        KeyTag {
            words: words(key.as_bytes()),
            key,
            family,
            evicted: AtomicBool::new(false),
            last_used: AtomicU64::new(last_used),
            home: None,
            detached: false,
        }
    }

    /// The tag of a key of the family `home`.
    pub(crate) fn homed(mut self, home: Weak<dyn crate::home::Home>) -> Self {
        self.home = Some(home);
        self
    }

    /// The tag of a breaker made for one call, outside its family's map: it
    /// counts as evicted from the start, so no thread's cache reuses it.
    pub(crate) fn detached(mut self) -> Self {
        self.detached = true;
        self.evicted = AtomicBool::new(true);
        self
    }

    /// This tag is the family `family`'s `key`, whose [`words`] are `words`.
    /// It reads the tag's key bytes only for a key longer than [`SHORT`].
    #[inline(always)]
    pub(crate) fn is(&self, family: u64, key: &str, words: [u64; 2]) -> bool {
        self.family == family
            && self.words == words
            && self.key.len() == key.len()
            && (key.len() <= SHORT || same_long(self.key.as_bytes(), key.as_bytes()))
    }
}

/// The longest key that its [`words`] and length name exactly.
pub(crate) const SHORT: usize = 16;

/// The longest key over [`SHORT`] bytes that is still hashed and compared in
/// line, with four word loads per side (model names such as
/// `claude-3-5-sonnet-20241022` are 17 to 32 bytes long).
const MID: usize = 32;

/// A key's four words when it has [`SHORT`] to [`MID`] bytes: its first and
/// last 16 bytes, which cover it.
#[inline(always)]
fn mid_words(b: &[u8]) -> [u64; 4] {
    let n = b.len();
    [
        word_at(b, 0),
        word_at(b, 8),
        word_at(b, n - 16),
        word_at(b, n - 8),
    ]
}

/// The 8 bytes of `b` from `at` as one word.
#[inline(always)]
fn word_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
}

/// `a == b`, for two keys of one length over [`SHORT`] bytes: in line with
/// four word loads per side up to [`MID`] bytes, by `memcmp` beyond.
#[inline(always)]
fn same_long(a: &[u8], b: &[u8]) -> bool {
    if a.len() > MID || a.len() != b.len() {
        return a == b;
    }
    let (a, b) = (mid_words(a), mid_words(b));
    // Word by word, not `==` on the arrays, which compares them as 16-byte
    // vectors loaded from where the words were just stored as 8-byte ones.
    (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) == 0
}

/// A key's bytes in two words: for a key of up to [`SHORT`] bytes, with its
/// length, exactly the key (the words overlap for fewer than 16 bytes, and
/// every byte is in one of them); for a longer one, its first and last 8
/// bytes. At most four loads, no loop, no call.
#[inline(always)]
pub(crate) fn words(b: &[u8]) -> [u64; 2] {
    let n = b.len();
    let half = |at: usize| u64::from(u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or([0; 4])));
    match n {
        8.. => [word_at(b, 0), word_at(b, n - 8)],
        4..=7 => [half(0) | half(n - 4) << 32, 0],
        1..=3 => [
            u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16,
            0,
        ],
        0 => [0, 0],
    }
}

/// The hash of `key` (whose [`words`] are `words`) in the family `family`:
/// it picks the key's slot in a thread's cache. A short key's is one folded
/// multiplication of its words; up to [`MID`] bytes, two side by side of its
/// four words; a longer key's is foldhash of all its bytes. Each covers every
/// byte, so that keys that differ only in the middle spread too.
#[inline(always)]
pub(crate) fn hash(family: u64, key: &str, words: [u64; 2]) -> u64 {
    // foldhash's constants (digits of pi), to keep a zero word from zeroing a
    // product.
    let fold = |a: u64, b: u64| {
        let product = u128::from(a) * u128::from(b);
        product as u64 ^ (product >> 64) as u64
    };
    let n = key.len();
    // The first two words with the family and the length.
    let head = |w0: u64, w1: u64| {
        fold(
            w0 ^ family ^ 0x243f_6a88_85a3_08d3,
            w1 ^ family.rotate_left(32) ^ 0x1319_8a2e_0370_7344 ^ n as u64,
        )
    };
    if n <= SHORT {
        return head(words[0], words[1]);
    }
    if n > MID {
        return long_hash(family, key);
    }
    let w = mid_words(key.as_bytes());
    head(w[0], w[1])
        ^ fold(
            w[2] ^ family.rotate_left(16) ^ 0xa409_3822_299f_31d0,
            w[3] ^ 0x082e_fa98_ec4e_6c89,
        )
}

#[cold]
#[inline(never)]
fn long_hash(family: u64, key: &str) -> u64 {
    foldhash::fast::FixedState::with_seed(family).hash_one(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string of the given bytes up to `max` long.
    fn strings(alphabet: &[u8], max: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |&c| format!("{s}{}", c as char)))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn words_and_length_name_a_short_key_exactly() {
        // Every string of up to 5 bytes over 3 letters, and keys of 6 to 40
        // bytes that differ in one byte: two keys are the same key exactly
        // when `KeyTag::is` says so.
        let mut keys = strings(b"ab_", 5);
        for n in 6..=40 {
            let base: Vec<u8> = (0..n as u8).map(|i| b'a' + i % 26).collect();
            for flip in 0..n {
                let mut k = base.clone();
                k[flip] = b'_';
                keys.push(String::from_utf8(k).unwrap());
            }
            keys.push(String::from_utf8(base).unwrap());
        }
        let tags: Vec<KeyTag> = keys
            .iter()
            .map(|k| KeyTag::new(k.as_str().into(), 7, 0))
            .collect();
        for (tag, a) in tags.iter().zip(&keys) {
            for b in &keys {
                assert_eq!(tag.is(7, b, words(b.as_bytes())), a == b, "{a:?} {b:?}");
            }
            assert!(!tag.is(8, a, words(a.as_bytes())), "another family's key");
        }
    }
}
