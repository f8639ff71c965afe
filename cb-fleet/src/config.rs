//! Fleet settings from the config file's `[fleet]` table and the environment.

use std::path::Path;

use crate::{Fleet, FleetBuilder, FleetError};

/// Reads `[fleet]` from `path` (if given), then `CB_FLEET_URL`,
/// `CB_FLEET_NAMESPACE` and `CB_FLEET_REPLICA_ID` from `env` on top
/// (`name_ttl` is read from the file only).
pub(crate) fn settings(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<FleetBuilder>, FleetError> {
    let (mut url, mut namespace, mut replica, mut name_ttl) = (None, None, None, None);
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
                let slot = match key.as_str() {
                    "url" => &mut url,
                    "namespace" => &mut namespace,
                    "replica_id" => &mut replica,
                    "name_ttl" => &mut name_ttl,
                    _ => {
                        return Err(FleetError::invalid(
                            "fleet key",
                            format!("{shown}: [fleet] key `{key}`"),
                            "one of `url`, `namespace`, `replica_id`, `name_ttl`",
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
    let Some(url) = url else {
        return Ok(None);
    };
    crate::names::check_url(&url)?;
    let namespace = namespace.ok_or_else(|| {
        FleetError::invalid(
            "namespace",
            "nothing".to_owned(),
            "a namespace with the URL: CB_FLEET_NAMESPACE or `namespace` in [fleet]",
        )
    })?;
    crate::names::check_namespace(&namespace)?;
    let mut builder = Fleet::builder(&url).namespace(&namespace);
    if let Some(id) = replica {
        crate::names::check_replica_id(&id)?;
        builder = builder.replica_id(&id);
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
