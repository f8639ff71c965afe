//! What may name a namespace, a replica and a shared breaker, and the Redis
//! keys built from them. Every key lives under `cb:<namespace>:`.

use crate::FleetError;

/// The longest namespace, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 64;
/// The longest replica id, in bytes.
pub const MAX_REPLICA_ID_LEN: usize = 64;
/// The longest breaker name shared through the fleet, in bytes (as the admin API).
pub const MAX_NAME_LEN: usize = 256;

fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// Checks a namespace: 1 to 64 ASCII letters, digits, `_`, `-` or `.`.
pub(crate) fn check_namespace(ns: &str) -> Result<(), FleetError> {
    if ns.is_empty() || ns.len() > MAX_NAMESPACE_LEN || !ns.chars().all(plain) {
        return Err(FleetError::invalid(
            "namespace",
            format!("{ns:?}"),
            "1 to 64 ASCII letters, digits, `_`, `-` or `.`",
        ));
    }
    Ok(())
}

/// Checks a replica id: 1 to 64 ASCII letters, digits, `_`, `-`, `.` or `:`.
pub(crate) fn check_replica_id(id: &str) -> Result<(), FleetError> {
    if id.is_empty() || id.len() > MAX_REPLICA_ID_LEN || !id.chars().all(|c| plain(c) || c == ':') {
        return Err(FleetError::invalid(
            "replica_id",
            format!("{id:?}"),
            "1 to 64 ASCII letters, digits, `_`, `-`, `.` or `:`",
        ));
    }
    Ok(())
}

/// `true` for a breaker name the fleet shares: 1 to 256 bytes, no control
/// characters. Other breakers stay local (with a warning).
pub fn is_shareable_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && !name.chars().any(char::is_control)
}

/// A default replica id: the host name (if `HOSTNAME` says it) and the process id.
pub(crate) fn default_replica_id() -> String {
    let host: String = std::env::var("HOSTNAME")
        .unwrap_or_default()
        .chars()
        .filter(|c| plain(*c))
        .take(40)
        .collect();
    let host = if host.is_empty() {
        "replica".to_owned()
    } else {
        host
    };
    format!("{host}:{}:{:04x}", std::process::id(), fastrand::u16(..))
}

/// The URL with any user name and password replaced by `***`, for logs and `Debug`.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<not a URL>".to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://***@{}{path}", &authority[at + 1..]),
        None => format!("{scheme}://{authority}{path}"),
    }
}

/// Checks the URL's scheme (and that TLS is compiled in for `rediss://`).
pub(crate) fn check_url(url: &str) -> Result<(), FleetError> {
    let shown = redact(url);
    if url.contains('#') {
        return Err(FleetError::invalid(
            "url",
            shown,
            "a URL without a `#` fragment (`#insecure`, which turns certificate checks off, is refused: \
             trust a private CA with `tls_root_ca_pem`)",
        ));
    }
    match url.split_once("://").map(|(s, _)| s) {
        Some("redis") => Ok(()),
        Some("rediss") if cfg!(feature = "tls") => Ok(()),
        Some("rediss") => Err(FleetError::invalid(
            "url",
            shown,
            "redis://...; rediss:// (TLS) needs cb-fleet's feature `tls`",
        )),
        _ => Err(FleetError::invalid("url", shown, "a redis:// or rediss:// URL")),
    }
}

/// The Redis keys of one namespace.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(namespace: &str) -> Self {
        Keys {
            prefix: format!("cb:{namespace}:"),
        }
    }
    /// The pub/sub channel of the namespace.
    pub(crate) fn channel(&self) -> String {
        format!("{}events", self.prefix)
    }
    /// The set of shared breaker names.
    pub(crate) fn names(&self) -> String {
        format!("{}names", self.prefix)
    }
    /// The capped stream of transitions.
    pub(crate) fn log(&self) -> String {
        format!("{}log", self.prefix)
    }
    /// The prefix of per-breaker keys: `<prefix>b:<name>`, `...:open:<name>`, `...:lease:<name>`.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }
    /// Breaker `name`'s three keys: its hash, its open marker (expires when
    /// the open duration ends) and its lease set.
    pub(crate) fn breaker(&self, name: &str) -> [String; 3] {
        [
            format!("{}b:{name}", self.prefix),
            format!("{}open:{name}", self.prefix),
            format!("{}lease:{name}", self.prefix),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_shown() {
        assert_eq!(
            redact("redis://user:pa55@10.0.0.1:6379/0"),
            "redis://***@10.0.0.1:6379/0"
        );
        assert_eq!(redact("redis://:p@ss@h:1"), "redis://***@h:1");
        assert_eq!(redact("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
        assert_eq!(redact("nonsense"), "<not a URL>");
        let err = check_url("http://u:secret@h/").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
        let err = check_url("rediss://u:secret@h:1/#insecure")
            .unwrap_err()
            .to_string();
        assert!(err.contains("#insecure") && !err.contains("secret"), "{err}");
        assert_eq!(
            check_url("rediss://h:1/").is_ok(),
            cfg!(feature = "tls"),
            "rediss:// only with feature `tls`"
        );
    }

    #[test]
    fn namespaces_and_ids_are_checked() {
        assert!(check_namespace("checkout-v2.eu_1").is_ok());
        for bad in ["", "a b", "a:b", "a*", &"x".repeat(65), "é"] {
            let e = check_namespace(bad).unwrap_err().to_string();
            assert!(e.contains("namespace"), "{e}");
        }
        assert!(check_replica_id("pod-7:1234").is_ok());
        assert!(check_replica_id("a|b").is_err());
        assert!(check_replica_id(&default_replica_id()).is_ok());
        assert!(is_shareable_name("openai|gpt 4"));
        assert!(!is_shareable_name("a\nb"));
        assert!(!is_shareable_name(""));
    }
}
