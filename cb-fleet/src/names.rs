//! What may name a namespace, a replica and a shared breaker, and the Redis
//! keys built from them. Every key lives under `cb:{<namespace>}:`.

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

/// `true` for a breaker identity the fleet shares: a name of 1 to 256 bytes
/// without control characters, or a keyed breaker's identity
/// ([`CircuitBreaker::id`](cb_runtime::CircuitBreaker::id)): such a name,
/// U+001F ([`cb_runtime::family::ID_SEPARATOR`]) and a key of the same kind. U+001F
/// is the only control character allowed, and only once, so a key's identity
/// never equals an unkeyed name. Other breakers stay local (with a warning).
pub fn is_shareable_name(name: &str) -> bool {
    let plain = |s: &str| !s.is_empty() && s.len() <= MAX_NAME_LEN && !s.chars().any(char::is_control);
    match name.split_once(cb_runtime::family::ID_SEPARATOR) {
        None => plain(name),
        Some((family, key)) => plain(family) && plain(key),
    }
}

/// `true` for a keyed breaker's identity (`<family>\u{1f}<key>`).
pub(crate) fn is_key_identity(name: &str) -> bool {
    name.contains(cb_runtime::family::ID_SEPARATOR)
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

/// The URL as logs, errors and `Debug` show it: rebuilt from what the
/// Redis client parsed of it (scheme, host, port, database), never from its
/// text, with `***@` for any credentials. So no spelling of a password is
/// shown: an unencoded `/`, `?`, `#` or `@`, a percent-encoded one, or a
/// `password` query parameter (which the client ignores, and which is not
/// shown either: no query is). A URL that does not parse is not shown, only
/// its scheme and why. A comma-separated list of URLs (a cluster's nodes)
/// is shown URL by URL (a piece without `://` belongs to the one before it:
/// a comma in a password).
pub(crate) fn redact(url: &str) -> String {
    let mut pieces: Vec<String> = Vec::new();
    for piece in url.split(',') {
        match pieces.last_mut() {
            Some(last) if !piece.contains("://") => {
                last.push(',');
                last.push_str(piece);
            }
            _ => pieces.push(piece.to_owned()),
        }
    }
    let shown: Vec<String> = pieces.iter().map(|p| redact_one(p.trim())).collect();
    shown.join(",")
}

fn redact_one(url: &str) -> String {
    use redis::{ConnectionAddr, IntoConnectionInfo};
    const SCHEMES: [&str; 6] = ["redis", "rediss", "valkey", "valkeys", "unix", "redis+unix"];
    let Some(scheme) = url
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .filter(|s| SCHEMES.contains(&s.as_str()))
    else {
        // Another scheme: where it points, as parsed (no credentials, no query).
        return match url::Url::parse(url) {
            Ok(parsed) => {
                let host = parsed.host_str().unwrap_or_default();
                let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!("{}://{host}{port}", parsed.scheme())
            }
            Err(_) => "<not a URL>".to_owned(),
        };
    };
    let info = match url.into_connection_info() {
        Ok(info) => info,
        // The client's reasons are fixed sentences: they quote nothing.
        Err(e) => {
            return format!(
                "{scheme}://<a URL that does not parse ({e}); a password's `/`, `?`, `#` or `@` must be \
                 percent-encoded>"
            )
        }
    };
    let r = &info.redis;
    let credentials = if r.username.is_some() || r.password.is_some() {
        "***@"
    } else {
        ""
    };
    match &info.addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            let host = if host.contains(':') {
                format!("[{host}]") // IPv6
            } else {
                host.clone()
            };
            format!("{scheme}://{credentials}{host}:{port}/{}", r.db)
        }
        ConnectionAddr::Unix(path) => format!("{scheme}://{credentials}{}", path.display()),
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

/// The Redis keys of one namespace. Every key and channel is
/// `cb:{<namespace>}:...`: the braces are a Redis Cluster hash tag, so a
/// namespace lives in one slot and its scripts stay atomic in every mode.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(namespace: &str) -> Self {
        Keys {
            prefix: format!("cb:{{{namespace}}}:"),
        }
    }
    /// The pub/sub channel of the namespace.
    pub(crate) fn channel(&self) -> String {
        format!("{}events", self.prefix)
    }
    /// The sorted set of shared breaker names, scored by when a replica last
    /// had them (Redis time, ms): names unused for the name TTL are dropped.
    pub(crate) fn names(&self) -> String {
        format!("{}names", self.prefix)
    }
    /// The sorted set of names whose fleet state is not closed (open,
    /// half-open, forced open, disabled): what a joining replica must adopt.
    pub(crate) fn active(&self) -> String {
        format!("{}active", self.prefix)
    }
    /// The key that says which process uses replica id `id`.
    pub(crate) fn replica(&self, id: &str) -> String {
        format!("{}replica:{id}", self.prefix)
    }
    /// Breaker `name`'s keys: its hash (state, version, period, level,
    /// configuration), its open marker (expires when the open duration ends),
    /// its lease set, the set of probe reports counted in this period, the
    /// replicas counted towards its open quorum, the fleet's window of shared
    /// call counts, and its transition stream.
    pub(crate) fn breaker(&self, name: &str) -> BreakerKeys {
        let p = &self.prefix;
        BreakerKeys {
            hash: format!("{p}b:{name}"),
            open: format!("{p}open:{name}"),
            lease: format!("{p}lease:{name}"),
            done: format!("{p}done:{name}"),
            quorum: format!("{p}quorum:{name}"),
            window: format!("{p}win:{name}"),
            log: format!("{p}log:{name}"),
            check: format!("{p}check:{name}"),
        }
    }
}

/// One breaker's keys; see [`Keys::breaker`].
#[derive(Clone, Debug)]
pub(crate) struct BreakerKeys {
    pub(crate) hash: String,
    pub(crate) open: String,
    pub(crate) lease: String,
    pub(crate) done: String,
    pub(crate) quorum: String,
    pub(crate) window: String,
    pub(crate) log: String,
    /// The health-check lease: `<period>|<replica>`.
    pub(crate) check: String,
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
        assert_eq!(redact("redis://:p@ss@h:1"), "redis://***@h:1/0");
        for (url, secret) in [
            ("redis://user:pa/ss@h:6379/0", "pa/ss"),
            ("redis://:se/cr/et@h:6379/", "se/cr/et"),
            ("redis://:only-password@h:6379", "only-password"),
            ("rediss://u:tls/secret@h:6380/", "tls/secret"),
            ("redis://u:p%2Fct%40x@h/", "p%2Fct%40x"),
            ("redis://u:a@b/c@h:1/2", "a@b/c"),
            ("redis://u:one/1@h1:1/,redis://u:two,2@h2:2/", "one/1"),
            ("redis://:se?cret@h:6379", "se?cret"),
            ("redis://:se#cret@h:6379", "se#cret"),
            ("redis://h:6379/?password=s3cret", "s3cret"),
            ("redis://h:6379/0?protocol=resp2&%70assword=s3cret", "s3cret"),
            ("redis://:s%33cret@h:6379", "s3cret"),
        ] {
            let shown = redact(url);
            for piece in [secret, "cret", "u:", "ss@", "et@", "c@"] {
                assert!(!shown.contains(piece), "{url} shown as {shown}");
            }
        }
        let two = redact("redis://u:a/b@h1:1/,rediss://:c,d@h2:2/");
        let (first, second) = two.split_once(",rediss://").unwrap();
        assert!(first.starts_with("redis://<a URL that does not parse") && first.contains("percent-encoded"));
        assert_eq!(second == "***@h2:2/0", cfg!(feature = "tls"), "{two}");
        assert_eq!(redact("redis://u:p%2Fw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/0");
        assert_eq!(redact("nonsense"), "<not a URL>");
        assert_eq!(redact("http://u:s3cret@b:80/?password=x"), "http://b");
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
        assert!(is_shareable_name("openai\u{1f}gpt-4o"));
        assert!(is_key_identity("openai\u{1f}gpt-4o") && !is_key_identity("openai"));
        for bad in ["\u{1f}gpt-4o", "openai\u{1f}", "a\u{1f}b\u{1f}c", "a\u{1f}b\nc"] {
            assert!(!is_shareable_name(bad), "{bad:?}");
        }
        let long = "x".repeat(MAX_NAME_LEN);
        assert!(is_shareable_name(&format!("{long}\u{1f}{long}")));
        assert!(!is_shareable_name(&format!("{long}x\u{1f}k")));
    }
}
