//! How a connection string is shown in errors and logs: rebuilt from what
//! the parser understood of it, never from its text, so no spelling of a
//! password reaches a message (`se/cret`, `se?cret`, `se#cret`, a
//! percent-encoded `%70assword=` parameter, a quoted key=value).

use tokio_postgres::config::Host;
use tokio_postgres::Config;

/// `url` as errors and logs show it: parsed, its password `***`. A string
/// that does not parse is not shown at all, only why it does not parse (the
/// parser's reason when it names no part of the string).
pub(crate) fn shown(url: &str) -> String {
    match url.parse::<Config>() {
        Ok(config) => shown_config(&config, url.contains("://")),
        Err(e) => format!("(a connection string that does not parse: {})", reason(&e)),
    }
}

/// The parser's reason, when it names only a known option; else a reason
/// that quotes nothing of the string (an unknown option's name or a
/// character may be a piece of a password that was not escaped).
fn reason(e: &tokio_postgres::Error) -> String {
    let text = match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    };
    let plain = [
        "invalid value for option",
        "unterminated parameter",
        "unexpected EOF",
    ];
    if plain.iter().any(|p| text.contains(p)) {
        text
    } else {
        "invalid configuration (an unknown option or character; a password with `&`, `=`, `'` or \
         `\\` must be percent-encoded in a URL and quoted in key=value pairs)"
            .to_owned()
    }
}

/// What `config` connects to, as a URL (`url`) or key=value pairs.
fn shown_config(config: &Config, url: bool) -> String {
    // The parser splits a URL's credentials at its first `@`: a host or a
    // database name that still holds one holds a piece of a password.
    let plain = |s: &str| {
        if s.contains('@') {
            "***".to_owned()
        } else {
            s.to_owned()
        }
    };
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(name) => plain(name),
                Host::Unix(path) => plain(&path.display().to_string()),
            };
            match ports.get(i).or(ports.first()) {
                Some(port) if url => format!("{host}:{port}"),
                _ => host,
            }
        })
        .collect();
    let user = config.get_user().map(plain);
    let password = config.get_password().is_some();
    let dbname = config.get_dbname().map(plain);
    if url {
        let credentials = match (&user, password) {
            (Some(user), true) => format!("{user}:***@"),
            (Some(user), false) => format!("{user}@"),
            (None, true) => ":***@".to_owned(),
            (None, false) => String::new(),
        };
        format!(
            "postgres://{credentials}{}/{}",
            hosts.join(","),
            dbname.unwrap_or_default()
        )
    } else {
        let mut pairs = Vec::new();
        if !hosts.is_empty() {
            pairs.push(format!("host={}", hosts.join(",")));
        }
        if !ports.is_empty() {
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            pairs.push(format!("port={}", ports.join(",")));
        }
        if let Some(user) = user {
            pairs.push(format!("user={user}"));
        }
        if let Some(dbname) = dbname {
            pairs.push(format!("dbname={dbname}"));
        }
        if password {
            pairs.push("password=***".to_owned());
        }
        pairs.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(
            shown("postgres://cb:s3cret@db:5432/app"),
            "postgres://cb:***@db:5432/app"
        );
        assert_eq!(shown("postgres://cb@db/app"), "postgres://cb@db:5432/app");
        assert_eq!(
            shown("postgres://cb:se/cret@db/app"),
            "postgres://cb:***@db:5432/app"
        );
        assert_eq!(
            shown("postgres://cb:se?cret@db/app"),
            "postgres://cb:***@db:5432/app"
        );
        assert_eq!(
            shown("postgres://cb:se#cret@db/app"),
            "postgres://cb:***@db:5432/app"
        );
        assert_eq!(
            shown("postgres://cb@db/app?sslmode=disable&%70assword=s3cret"),
            "postgres://cb:***@db:5432/app"
        );
        assert_eq!(
            shown("postgresql://db/app?password=s3cret"),
            "postgres://:***@db:5432/app"
        );
        // An unescaped `@` in the password: the parser takes `ss@db` for the
        // host; it is not shown.
        assert_eq!(
            shown("postgres://cb:p@ss@db/app"),
            "postgres://cb:***@***:5432/app"
        );
        assert_eq!(
            shown("host=db user=cb password='se cret' dbname=app"),
            "host=db user=cb dbname=app password=***"
        );
        assert_eq!(shown("host=db port=5433"), "host=db port=5433");
        // The parser ends the credentials at the first `@` of the string,
        // wherever it is: shown as understood (user `db/app?...`, host `b`).
        assert_eq!(
            shown("postgres://db/app?application_name=a@b"),
            "postgres://db/app?application_name=a@b:5432/"
        );
        // Does not parse: nothing of the string is shown.
        let bad = shown("postgres://cb@db/app?password=s3cret&=x");
        assert!(!bad.contains("s3cret") && bad.contains("does not parse"), "{bad}");
        let bad = shown("postgres://cb@db/app?password=s3&cret=x");
        assert!(!bad.contains("cret") && bad.contains("does not parse"), "{bad}");
        let bad = shown("postgres://cb@db:nope/app");
        assert!(bad.contains("invalid value for option `port`"), "{bad}");
    }
}
