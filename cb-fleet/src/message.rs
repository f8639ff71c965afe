//! The messages replicas publish to each other, and their parsing.
//!
//! One line of UTF-8, `|`-separated:
//! `v2|<kind>|<replica>|<version>|<period>|<ms>|<level>|<name>`.
//! The name comes last and may itself hold `|`. `version` is the breaker's
//! fleet version that the script which published the message gave the
//! change (see the crate documentation's consistency model); `period` the
//! version that started the current open period. Kinds: `open` (open for
//! `ms` more milliseconds at backoff level `level`; `ms` 0 is the fleet's
//! half-open), `close` (probes succeeded), and the fleet-wide manual
//! commands `reset`, `forced_open`, `disabled`.
//! Anything else is refused with an error, never a panic: a hostile or
//! corrupt message is dropped and counted.

use std::fmt;

use crate::names::{is_shareable_name, MAX_REPLICA_ID_LEN};

/// The longest message accepted, in bytes.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// The longest open a message carries, in milliseconds: the bound of every
/// open ([`cb_runtime::MAX_OPEN_DURATION`], a day), which also bounds
/// `open_duration`, `open_backoff`'s cap and `open_for`. A larger value is
/// corrupt, never an open period a replica can make.
pub const MAX_OPEN_MS: u64 = cb_runtime::MAX_OPEN_DURATION.as_millis() as u64;

/// What a message says about one breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Open for `ms` more milliseconds, at backoff level `level` (`ms` 0:
    /// the open duration has ended, the fleet is half-open).
    Open {
        /// Milliseconds the circuit stays open, from when the message was sent.
        ms: u64,
        /// Reopens since the circuit last closed, fleet-wide.
        level: u32,
    },
    /// Probes succeeded: closed everywhere.
    Close,
    /// A fleet-wide reset.
    Reset,
    /// A fleet-wide force-open.
    ForcedOpen,
    /// A fleet-wide disable.
    Disabled,
}

/// The wire word of each kind but `open`: one line per kind.
const WORDS: [(&str, Kind); 4] = [
    ("close", Kind::Close),
    ("reset", Kind::Reset),
    ("forced_open", Kind::ForcedOpen),
    ("disabled", Kind::Disabled),
];

impl Kind {
    /// The kind's wire word, as the scripts store and publish it.
    pub fn word(&self) -> &'static str {
        match self {
            Kind::Open { .. } => "open",
            other => WORDS.iter().find(|(_, k)| k == other).map_or("open", |(w, _)| w),
        }
    }

    /// The kind of `word`, with `ms` and `level` for an open.
    pub fn from_word(word: &str, ms: u64, level: u32) -> Option<Kind> {
        if word == "open" {
            return Some(Kind::Open { ms, level });
        }
        WORDS.iter().find(|(w, _)| *w == word).map(|(_, k)| *k)
    }
}

/// One parsed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// What happened.
    pub kind: Kind,
    /// The replica that sent it.
    pub replica: String,
    /// The breaker's fleet version after this change (from Redis).
    pub version: u64,
    /// The version that started the breaker's current open period.
    pub period: u64,
    /// The breaker's name.
    pub name: String,
}

/// Why a message was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(&'static str);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed fleet message: {}", self.0)
    }
}

impl std::error::Error for ParseError {}

/// Parses one message's payload.
pub fn parse(payload: &[u8]) -> Result<Message, ParseError> {
    if payload.len() > MAX_MESSAGE_LEN {
        return Err(ParseError("too long"));
    }
    let text = std::str::from_utf8(payload).map_err(|_| ParseError("not UTF-8"))?;
    let mut parts = text.splitn(8, '|');
    let mut next = |what| parts.next().ok_or(ParseError(what));
    if next("no version tag")? != "v2" {
        return Err(ParseError("unknown format version"));
    }
    let kind = next("no kind")?;
    let replica = next("no replica")?;
    let version: u64 = next("no version")?
        .parse()
        .map_err(|_| ParseError("bad version"))?;
    let period: u64 = next("no period")?.parse().map_err(|_| ParseError("bad period"))?;
    let ms: u64 = next("no duration")?
        .parse()
        .map_err(|_| ParseError("bad duration"))?;
    let level: u32 = next("no level")?.parse().map_err(|_| ParseError("bad level"))?;
    let name = next("no name")?;
    if replica.is_empty() || replica.len() > MAX_REPLICA_ID_LEN || replica.contains('|') {
        return Err(ParseError("bad replica id"));
    }
    if !is_shareable_name(name) {
        return Err(ParseError("bad breaker name"));
    }
    // A larger value is corrupt, not an open period a replica can make.
    if kind == "open" && ms > MAX_OPEN_MS {
        return Err(ParseError("open duration over the bound of every open (a day)"));
    }
    let kind = Kind::from_word(kind, ms, level).ok_or(ParseError("unknown kind"))?;
    Ok(Message {
        kind,
        replica: replica.to_owned(),
        version,
        period,
        name: name.to_owned(),
    })
}

/// Writes a message (as the Lua scripts do; for tests and tools).
pub fn encode(m: &Message) -> String {
    let (ms, level) = match m.kind {
        Kind::Open { ms, level } => (ms, level),
        _ => (0, 0),
    };
    format!(
        "v2|{}|{}|{}|{}|{ms}|{level}|{}",
        m.kind.word(),
        m.replica,
        m.version,
        m.period,
        m.name
    )
}

/// The fuzzing entry point (the `fleet_message` target of `fuzz/`, and the
/// property tests below): `data` is a payload read from the fleet's channel,
/// and also, split on `|`, rows of what the sync script and the other
/// scripts read back from a breaker's hash and open key (`state`, `level`,
/// the open key's PTTL). Panics only when a promise breaks:
///
/// - `parse` never panics; a refusal says it is a malformed fleet message;
/// - an accepted message has a sendable replica id and a shareable name,
///   opens for at most [`MAX_OPEN_MS`], re-encodes within [`MAX_MESSAGE_LEN`] to a
///   message that parses to the same value, and that encoding is canonical
///   (it re-encodes to itself);
/// - whatever Redis holds, the view read from it never panics, and applying
///   it to a breaker leaves that breaker in the view's state.
#[doc(hidden)]
pub fn fuzz_check(data: &[u8]) {
    match parse(data) {
        Ok(m) => {
            assert!(!m.replica.is_empty() && m.replica.len() <= MAX_REPLICA_ID_LEN);
            assert!(!m.replica.contains('|'), "replica {:?}", m.replica);
            assert!(is_shareable_name(&m.name), "name {:?}", m.name);
            if let Kind::Open { ms, .. } = m.kind {
                assert!(ms <= MAX_OPEN_MS, "open for {ms} ms");
            }
            let text = encode(&m);
            assert!(
                text.len() <= MAX_MESSAGE_LEN,
                "re-encoded, {} bytes: peers refuse it",
                text.len()
            );
            let again = parse(text.as_bytes()).expect("an encoded message parses");
            assert_eq!(again, m);
            assert_eq!(encode(&again), text, "the encoding is not canonical");
        }
        Err(e) => assert!(e.to_string().starts_with("malformed fleet message: "), "{e}"),
    }
    let text = String::from_utf8_lossy(data);
    let fields: Vec<&str> = text.split('|').take(64).collect();
    for row in fields.windows(3) {
        fuzz_stored_state(row[0], row[1], row[2]);
    }
}

/// A breaker's state as the scripts read it from Redis (`HGET state`,
/// `HGET level`, `PTTL` of the open key, each possibly corrupt), made a view
/// as `sync` does it and applied to a fresh breaker.
fn fuzz_stored_state(state: &str, level: &str, pttl: &str) {
    use cb_runtime::{clock::ManualClock, CircuitBreaker, Config, State};
    let level: i64 = level.parse().unwrap_or(0);
    let pttl: i64 = pttl.parse().unwrap_or(-2);
    let Some(view) = crate::View::from_fleet(state, pttl, level, 1, 1) else {
        assert!(!matches!(
            state,
            "open" | "close" | "reset" | "forced_open" | "disabled"
        ));
        return;
    };
    let clock = ManualClock::new();
    let config = Config::builder()
        .clock(clock.clock())
        .build()
        .expect("the default config");
    let breaker = CircuitBreaker::new("fleet-fuzz", config);
    view.apply(&breaker);
    let now = breaker.state();
    match view.kind {
        // Open for `pttl` ms (none if the key is gone): due for probes at once.
        Kind::Open { .. } => assert!(matches!(now, State::Open | State::HalfOpen), "{now}"),
        // A closed view of a closed breaker changes nothing.
        Kind::Close | Kind::Reset => assert_eq!(now, State::Closed),
        Kind::ForcedOpen => assert_eq!(now, State::ForcedOpen),
        Kind::Disabled => assert_eq!(now, State::Disabled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_refusals() {
        let m = parse(b"v2|open|pod-1|17|12|1500|2|openai|gpt").unwrap();
        assert_eq!(m.kind, Kind::Open { ms: 1500, level: 2 });
        assert_eq!((m.version, m.period), (17, 12));
        assert_eq!((m.replica.as_str(), m.name.as_str()), ("pod-1", "openai|gpt"));
        assert_eq!(parse(encode(&m).as_bytes()).unwrap(), m);
        for word in ["close", "reset", "forced_open", "disabled"] {
            let m = parse(format!("v2|{word}|r|3|3|0|0|n").as_bytes()).unwrap();
            assert_eq!(m.kind.word(), word);
        }
        for bad in [
            &b""[..],
            b"v1|open|r|1|0|n",
            b"v2|open|r|x|1|1|0|n",
            b"v2|open|r|1|1|-1|0|n",
            b"v2|open|r|1|1|1|0|",
            b"v2|open||1|1|1|0|n",
            b"v2|boom|r|1|1|1|0|n",
            b"v2|open|r|1|1|99999999999|0|n",
            b"v2|open|r|1|1|1|0|a\nb",
            b"v2|open|r|1",
            b"\xff\xfe",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            fuzz_check(&data);
        }

        #[test]
        fn near_valid_messages_never_panic(
            kind in "(open|close|reset|forced_open|disabled|x)",
            replica in "[a-z:|]{0,70}",
            ms in "[0-9-]{0,25}",
            level in "[0-9a]{0,12}",
            name in "\\PC{0,300}",
        ) {
            fuzz_check(format!("v2|{kind}|{replica}|7|7|{ms}|{level}|{name}").as_bytes());
        }
    }
}
