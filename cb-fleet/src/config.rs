//! Fleet settings from the config file's `[fleet]` table and the environment.

use std::path::Path;

use crate::{Fleet, FleetBuilder, FleetError};

/// What `share_interval` may be, for errors.
const SHARE_INTERVAL_RANGE: &str = "a duration of at least 10 ms, such as \"1s\" or \"250ms\"";

/// Reads `[fleet]` from `path` (if given), then `CB_FLEET_URL`,
/// `CB_FLEET_NAMESPACE`, `CB_FLEET_REPLICA_ID`, `CB_FLEET_OPEN_QUORUM`,
/// `CB_FLEET_SHARE_FAILURES`, `CB_FLEET_SHARE_INTERVAL` and
/// `CB_FLEET_CLUSTER` from `env` on
/// top (`name_ttl` is read from the file only: cb-runtime refuses other
/// `CB_FLEET_*` names). A bad value is an error naming the key or the
/// variable it came from, and the allowed range.
pub(crate) fn settings(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<FleetBuilder>, FleetError> {
    let (mut url, mut namespace, mut replica, mut name_ttl) = (None, None, None, None);
    // Each with the name of where it came from, for errors.
    let mut quorum: Option<(String, &'static str)> = None;
    let mut share: Option<bool> = None;
    // With `cluster`, `url` may list several nodes, comma-separated.
    let mut cluster: Option<bool> = None;
    let mut share_interval: Option<(String, &'static str)> = None;
    if let Some(path) = path {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            FleetError::invalid("config file", format!("{shown}: {e}"), "a readable TOML file")
        })?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| {
            FleetError::invalid("config file", format!("{shown}: {}", e.message()), "a TOML file")
        })?;
        if let Some(fleet) = table.get("fleet") {
            let fleet = fleet.as_table().ok_or_else(|| {
                FleetError::invalid("fleet", format!("{shown}: not a table"), "a [fleet] table")
            })?;
            for (key, value) in fleet {
                if key == "share_failures" || key == "cluster" {
                    let on = value.as_bool().ok_or_else(|| {
                        FleetError::invalid(
                            if key == "cluster" {
                                "cluster"
                            } else {
                                "share_failures"
                            },
                            format!("{shown}: [fleet] `{key}` is not a boolean"),
                            "true or false",
                        )
                    })?;
                    *(if key == "cluster" {
                        &mut cluster
                    } else {
                        &mut share
                    }) = Some(on);
                    continue;
                }
                if key == "share_interval" {
                    let text = value.as_str().map(str::to_owned).ok_or_else(|| {
                        FleetError::invalid(
                            "share_interval",
                            format!("{shown}: [fleet] `share_interval` is not a string"),
                            SHARE_INTERVAL_RANGE,
                        )
                    })?;
                    share_interval = Some((text, "share_interval"));
                    continue;
                }
                if key == "open_quorum" {
                    // A TOML integer (a string of digits is taken too).
                    let text = match value {
                        toml::Value::Integer(n) => n.to_string(),
                        toml::Value::String(t) => t.clone(),
                        other => format!("a TOML {}", other.type_str()),
                    };
                    quorum = Some((text, "open_quorum"));
                    continue;
                }
                let slot = match key.as_str() {
                    "url" => &mut url,
                    "namespace" => &mut namespace,
                    "replica_id" => &mut replica,
                    "name_ttl" => &mut name_ttl,
                    _ => {
                        return Err(FleetError::invalid(
                            "fleet key",
                            format!("{shown}: [fleet] key `{key}`"),
                            "one of `url`, `namespace`, `replica_id`, `name_ttl`, `open_quorum`, `share_failures`, `share_interval`, `cluster`",
                        ))
                    }
                };
                let text = value.as_str().ok_or_else(|| {
                    FleetError::invalid(
                        "fleet key",
                        format!("{shown}: [fleet] `{key}` is not a string"),
                        "a string",
                    )
                })?;
                *slot = Some(text.to_owned());
            }
        }
    }
    for (var, slot) in [
        ("CB_FLEET_URL", &mut url),
        ("CB_FLEET_NAMESPACE", &mut namespace),
        ("CB_FLEET_REPLICA_ID", &mut replica),
    ] {
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            *slot = Some(v);
        }
    }
    if let Some(v) = env("CB_FLEET_OPEN_QUORUM").filter(|v| !v.is_empty()) {
        quorum = Some((v, "CB_FLEET_OPEN_QUORUM"));
    }
    for (var, slot) in [
        ("CB_FLEET_SHARE_FAILURES", &mut share),
        ("CB_FLEET_CLUSTER", &mut cluster),
    ] {
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            *slot = Some(match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(FleetError::invalid(
                        var,
                        format!("{:?}", v.chars().take(40).collect::<String>()),
                        "true or false (or 1 or 0)",
                    ))
                }
            });
        }
    }
    if let Some(v) = env("CB_FLEET_SHARE_INTERVAL").filter(|v| !v.is_empty()) {
        share_interval = Some((v, "CB_FLEET_SHARE_INTERVAL"));
    }
    let Some(url) = url else {
        return Ok(None);
    };
    let cluster = cluster.unwrap_or(false);
    if cluster {
        for node in url.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            crate::names::check_url(node)?;
        }
    } else {
        crate::names::check_url(&url)?;
    }
    let namespace = namespace.ok_or_else(|| {
        FleetError::invalid(
            "namespace",
            "nothing".to_owned(),
            "a namespace with the URL: CB_FLEET_NAMESPACE or `namespace` in [fleet]",
        )
    })?;
    crate::names::check_namespace(&namespace)?;
    let mut builder = Fleet::builder(&url).cluster(cluster).namespace(&namespace);
    if let Some(id) = replica {
        crate::names::check_replica_id(&id)?;
        builder = builder.replica_id(&id);
    }
    if let Some((text, from)) = quorum {
        let n = text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| crate::check_open_quorum(*n).is_ok())
            .ok_or_else(|| {
                FleetError::invalid(
                    from,
                    format!("{:?}", text.chars().take(40).collect::<String>()),
                    "a number of replicas from 1 to 10000",
                )
            })?;
        builder = builder.open_quorum(n);
    }
    if let Some(on) = share {
        builder = builder.share_failures(on);
    }
    if let Some((text, from)) = share_interval {
        let every = cb_runtime::parse_duration(&text)
            .ok()
            .filter(|d| *d >= crate::MIN_SHARE_INTERVAL)
            .ok_or_else(|| {
                FleetError::invalid(
                    from,
                    format!("{:?}", text.chars().take(40).collect::<String>()),
                    SHARE_INTERVAL_RANGE,
                )
            })?;
        builder = builder.share_interval(every);
    }
    if let Some(text) = name_ttl {
        let ttl = cb_runtime::parse_duration(&text)
            .ok()
            .filter(|d| *d >= std::time::Duration::from_secs(1))
            .ok_or_else(|| {
                FleetError::invalid(
                    "name_ttl",
                    format!("{:?}", text.chars().take(40).collect::<String>()),
                    "a duration of at least 1 s, such as \"168h\" or \"30m\"",
                )
            })?;
        builder = builder.name_ttl(ttl);
    }
    Ok(Some(builder))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile_path::TempPath {
        tempfile_path::TempPath::new(text)
    }

    /// A file removed on drop, without a tempfile dependency.
    mod tempfile_path {
        pub struct TempPath(pub std::path::PathBuf);
        impl TempPath {
            pub fn new(text: &str) -> Self {
                let p = std::env::temp_dir().join(format!(
                    "cb-fleet-{}-{}.toml",
                    std::process::id(),
                    fastrand::u64(..)
                ));
                std::fs::write(&p, text).unwrap();
                TempPath(p)
            }
        }
        impl Drop for TempPath {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn file_then_environment() {
        let f = file("[defaults]\nopen_duration = \"1s\"\n[fleet]\nurl = \"redis://u:secret@127.0.0.1:1/\"\nnamespace = \"shop\"\n");
        let none = |_: &str| None;
        let b = settings(Some(&f.0), &none).unwrap().unwrap();
        assert_eq!(b.namespace.as_deref(), Some("shop"));
        assert!(!format!("{b:?}").contains("secret"));
        let env = |k: &str| (k == "CB_FLEET_NAMESPACE").then(|| "other".to_owned());
        let b = settings(Some(&f.0), &env).unwrap().unwrap();
        assert_eq!(b.namespace.as_deref(), Some("other"));
        assert!(settings(None, &none).unwrap().is_none(), "no URL: fleet mode off");
        let f = file("[fleet]\nurl = \"redis://h/\"\nnamespace = \"x\"\nname_ttl = \"48h\"\n");
        let b = settings(Some(&f.0), &none).unwrap().unwrap();
        assert_eq!(b.name_ttl, std::time::Duration::from_secs(2 * 86_400));
        assert_eq!(b.open_quorum, 1, "default: any replica's open opens the fleet");
        let f = file("[fleet]\nurl = \"redis://h/\"\nnamespace = \"x\"\nopen_quorum = 3\n");
        let b = settings(Some(&f.0), &none).unwrap().unwrap();
        assert_eq!(b.open_quorum, 3);
        let f = file("[fleet]\nurl = \"redis://h/\"\nnamespace = \"x\"\nshare_failures = true\nshare_interval = \"250ms\"\n");
        let b = settings(Some(&f.0), &none).unwrap().unwrap();
        assert!(b.share_failures);
        assert_eq!(b.share_interval, std::time::Duration::from_millis(250));
        for (bad, field) in [
            ("share_failures = \"yes\"", "`share_failures`"),
            ("share_interval = \"1ms\"", "`share_interval`"),
        ] {
            let f = file(&format!(
                "[fleet]\nurl = \"redis://h/\"\nnamespace = \"x\"\n{bad}\n"
            ));
            let e = settings(Some(&f.0), &none).unwrap_err().to_string();
            assert!(e.contains(field), "{bad}: {e}");
        }
    }

    #[test]
    fn a_bad_open_quorum_names_the_field_and_the_range() {
        let none = |_: &str| None;
        for bad in ["0", "-1", "\"many\"", "10001", "1.5"] {
            let f = file(&format!(
                "[fleet]\nurl = \"redis://h/\"\nnamespace = \"x\"\nopen_quorum = {bad}\n"
            ));
            let e = settings(Some(&f.0), &none).unwrap_err().to_string();
            assert!(
                e.contains("`open_quorum`") && e.contains("1 to 10000"),
                "{bad}: {e}"
            );
        }
    }

    /// An environment of `pairs`, with a fleet URL and namespace.
    fn env_of<'a>(pairs: &'a [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k: &str| match k {
            "CB_FLEET_URL" => Some("redis://h/".to_owned()),
            "CB_FLEET_NAMESPACE" => Some("x".to_owned()),
            _ => pairs.iter().find(|(v, _)| *v == k).map(|(_, t)| (*t).to_owned()),
        }
    }

    #[test]
    fn quorum_and_sharing_come_from_the_environment_over_the_file() {
        let b = settings(
            None,
            &env_of(&[
                ("CB_FLEET_OPEN_QUORUM", "3"),
                ("CB_FLEET_SHARE_FAILURES", "true"),
                ("CB_FLEET_SHARE_INTERVAL", "250ms"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(b.open_quorum, 3);
        assert!(b.share_failures);
        assert_eq!(b.share_interval, std::time::Duration::from_millis(250));
        let f = file("[fleet]\nurl = \"redis://h/\"\nnamespace = \"x\"\nopen_quorum = 2\nshare_failures = true\nshare_interval = \"2s\"\n");
        let env = env_of(&[
            ("CB_FLEET_OPEN_QUORUM", "5"),
            ("CB_FLEET_SHARE_FAILURES", "0"),
            ("CB_FLEET_SHARE_INTERVAL", "100ms"),
        ]);
        let b = settings(Some(&f.0), &env).unwrap().unwrap();
        assert_eq!(b.open_quorum, 5, "the environment wins over the file");
        assert!(!b.share_failures);
        assert_eq!(b.share_interval, std::time::Duration::from_millis(100));
        let b = settings(Some(&f.0), &env_of(&[("CB_FLEET_OPEN_QUORUM", "")]))
            .unwrap()
            .unwrap();
        assert_eq!(b.open_quorum, 2, "an empty variable leaves the file's value");
        let b = settings(None, &env_of(&[])).unwrap().unwrap();
        assert_eq!(
            (b.open_quorum, b.share_failures, b.share_interval),
            (1, false, crate::DEFAULT_SHARE_INTERVAL),
            "the defaults"
        );
    }

    #[test]
    fn a_bad_open_quorum_variable_names_it_and_the_range() {
        for bad in ["0", "-1", "many", "10001", "1.5", "4294967296"] {
            let pairs = [("CB_FLEET_OPEN_QUORUM", bad)];
            let e = settings(None, &env_of(&pairs)).unwrap_err().to_string();
            assert!(
                e.contains("`CB_FLEET_OPEN_QUORUM`") && e.contains("1 to 10000"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn a_bad_share_failures_variable_names_it_and_the_values() {
        for bad in ["yes", "on", "2", "tru"] {
            let pairs = [("CB_FLEET_SHARE_FAILURES", bad)];
            let e = settings(None, &env_of(&pairs)).unwrap_err().to_string();
            assert!(
                e.contains("`CB_FLEET_SHARE_FAILURES`") && e.contains("true or false"),
                "{bad}: {e}"
            );
        }
        for good in ["TRUE", "False", "1", "0"] {
            let pairs = [("CB_FLEET_SHARE_FAILURES", good)];
            assert!(settings(None, &env_of(&pairs)).is_ok(), "{good}");
        }
    }

    #[test]
    fn cluster_mode_comes_from_the_file_or_the_environment_with_a_list_of_nodes() {
        let none = |_: &str| None;
        let f =
            file("[fleet]\nurl = \"redis://a:7000, redis://b:7000\"\nnamespace = \"x\"\ncluster = true\n");
        let b = settings(Some(&f.0), &none).unwrap().unwrap();
        assert!(b.cluster);
        assert_eq!(b.url, "redis://a:7000, redis://b:7000");
        let f = file("[fleet]\nurl = \"redis://a:7000\"\nnamespace = \"x\"\n");
        assert!(
            !settings(Some(&f.0), &none).unwrap().unwrap().cluster,
            "default: one server"
        );
        let b = settings(None, &env_of(&[("CB_FLEET_CLUSTER", "1")]))
            .unwrap()
            .unwrap();
        assert!(b.cluster);
        let e = settings(None, &env_of(&[("CB_FLEET_CLUSTER", "yes")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`CB_FLEET_CLUSTER`") && e.contains("true or false"),
            "{e}"
        );
        let f = file("[fleet]\nurl = \"redis://a:7000\"\nnamespace = \"x\"\ncluster = \"on\"\n");
        let e = settings(Some(&f.0), &none).unwrap_err().to_string();
        assert!(e.contains("`cluster`") && e.contains("true or false"), "{e}");
        // A bad node URL in the list is named.
        let f = file("[fleet]\nurl = \"redis://a:7000,http://b\"\nnamespace = \"x\"\ncluster = true\n");
        let e = settings(Some(&f.0), &none).unwrap_err().to_string();
        assert!(e.contains("http://b"), "{e}");
    }

    #[test]
    fn a_bad_share_interval_variable_names_it_and_the_range() {
        for bad in ["1ms", "9ms", "0s", "1", "soon", "-1s"] {
            let pairs = [("CB_FLEET_SHARE_INTERVAL", bad)];
            let e = settings(None, &env_of(&pairs)).unwrap_err().to_string();
            assert!(
                e.contains("`CB_FLEET_SHARE_INTERVAL`") && e.contains("at least 10 ms"),
                "{bad}: {e}"
            );
        }
        let pairs = [("CB_FLEET_SHARE_INTERVAL", "10ms")];
        let b = settings(None, &env_of(&pairs)).unwrap().unwrap();
        assert_eq!(
            b.share_interval,
            crate::MIN_SHARE_INTERVAL,
            "the lower bound is allowed"
        );
    }

    #[test]
    fn bad_settings_name_the_field() {
        let none = |_: &str| None;
        let f = file("[fleet]\nurl = \"redis://h/\"\nnamespce = \"x\"\n");
        let e = settings(Some(&f.0), &none).unwrap_err().to_string();
        assert!(e.contains("namespce") && e.contains("one of"), "{e}");
        let f = file("[fleet]\nurl = \"redis://h/\"\n");
        let e = settings(Some(&f.0), &none).unwrap_err().to_string();
        assert!(e.contains("namespace"), "{e}");
        let env = |k: &str| match k {
            "CB_FLEET_URL" => Some("redis://h/".to_owned()),
            "CB_FLEET_NAMESPACE" => Some("bad space".to_owned()),
            _ => None,
        };
        let e = settings(None, &env).unwrap_err().to_string();
        assert!(e.contains("`namespace`"), "{e}");
        let f = file("[fleet]\nurl = \"redis://h/\"\nnamespace = \"x\"\nname_ttl = \"500ms\"\n");
        let e = settings(Some(&f.0), &none).unwrap_err().to_string();
        assert!(e.contains("`name_ttl`") && e.contains("at least 1 s"), "{e}");
    }
}
