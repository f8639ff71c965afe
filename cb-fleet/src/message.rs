//! The messages replicas publish to each other, and their parsing.
//!
//! One line of UTF-8, `|`-separated: `v1|<kind>|<replica>|<ms>|<level>|<name>`.
//! The name comes last and may itself hold `|`. Kinds: `open` (open for `ms`
//! more milliseconds at backoff level `level`), `close` (probes succeeded),
//! and the fleet-wide manual commands `reset`, `forced_open`, `disabled`.
//! Anything else is refused with an error, never a panic: a hostile or
//! corrupt message is dropped and counted.

use std::fmt;

use crate::names::{is_shareable_name, MAX_REPLICA_ID_LEN};

/// The longest message accepted, in bytes.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// What a message says about one breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Open for `ms` more milliseconds, at backoff level `level`.
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

/// One parsed message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// What happened.
    pub kind: Kind,
    /// The replica that sent it.
    pub replica: String,
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
    let mut parts = text.splitn(6, '|');
    let mut next = |what| parts.next().ok_or(ParseError(what));
    if next("no version")? != "v1" {
        return Err(ParseError("unknown version"));
    }
    let kind = next("no kind")?;
    let replica = next("no replica")?;
    let ms: u64 = next("no duration")?
        .parse()
        .map_err(|_| ParseError("bad duration"))?;
    let level: u32 = next("no level")?.parse().map_err(|_| ParseError("bad level"))?;
    let name = next("no name")?;
    if replica.is_empty() || replica.len() > MAX_REPLICA_ID_LEN {
        return Err(ParseError("bad replica id"));
    }
    if !is_shareable_name(name) {
        return Err(ParseError("bad breaker name"));
    }
    let kind = match kind {
        // At most a day: a larger value is corrupt, not an open duration.
        "open" if ms <= 86_400_000 => Kind::Open { ms, level },
        "open" => return Err(ParseError("open duration over a day")),
        "close" => Kind::Close,
        "reset" => Kind::Reset,
        "forced_open" => Kind::ForcedOpen,
        "disabled" => Kind::Disabled,
        _ => return Err(ParseError("unknown kind")),
    };
    Ok(Message {
        kind,
        replica: replica.to_owned(),
        name: name.to_owned(),
    })
}

/// Writes a message (as the Lua scripts do; for tests and tools).
pub fn encode(m: &Message) -> String {
    let (kind, ms, level) = match m.kind {
        Kind::Open { ms, level } => ("open", ms, level),
        Kind::Close => ("close", 0, 0),
        Kind::Reset => ("reset", 0, 0),
        Kind::ForcedOpen => ("forced_open", 0, 0),
        Kind::Disabled => ("disabled", 0, 0),
    };
    format!("v1|{kind}|{}|{ms}|{level}|{}", m.replica, m.name)
}

/// The fuzzing entry point: parses `data` as a message and checks what a
/// parsed message promises (it re-encodes to a message that parses the same).
/// Never panics on any input, unless that promise is broken.
#[doc(hidden)]
pub fn fuzz_check(data: &[u8]) {
    if let Ok(m) = parse(data) {
        let again = parse(encode(&m).as_bytes()).expect("an encoded message parses");
        assert_eq!(again, m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_refusals() {
        let m = parse(b"v1|open|pod-1|1500|2|openai|gpt").unwrap();
        assert_eq!(m.kind, Kind::Open { ms: 1500, level: 2 });
        assert_eq!((m.replica.as_str(), m.name.as_str()), ("pod-1", "openai|gpt"));
        assert_eq!(parse(encode(&m).as_bytes()).unwrap(), m);
        for bad in [
            &b""[..],
            b"v2|open|r|1|0|n",
            b"v1|open|r|-1|0|n",
            b"v1|open|r|1|0|",
            b"v1|open||1|0|n",
            b"v1|boom|r|1|0|n",
            b"v1|open|r|99999999999|0|n",
            b"v1|open|r|1|0|a\nb",
            b"v1|open|r|1",
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
            fuzz_check(format!("v1|{kind}|{replica}|{ms}|{level}|{name}").as_bytes());
        }
    }
}
