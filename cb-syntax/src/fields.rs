//! The configuration fields, by the names users write.

/// Every field a preset sets and a user may override: as an attribute
/// argument, as a key of a config file table, or as the `<FIELD>` of a
/// `CB_<NAME>_<FIELD>` environment variable (upper-cased there).
///
/// `preset` comes first: it chooses the base that the other fields override.
pub const FIELDS: [&str; 12] = [
    "preset",
    "failure_threshold",
    "failure_rate_threshold",
    "sliding_window",
    "minimum_calls",
    "slow_call_duration",
    "slow_call_rate_threshold",
    "open_duration",
    "half_open_max_calls",
    "success_threshold",
    "call_timeout",
    "open_backoff",
];
