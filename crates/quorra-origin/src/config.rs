//! The file shapes of origins and namespaces, as the TOML config spells them, and
//! [`check`], which turns them into a [`Catalog`] or refuses them naming the field.
//!
//! ```toml
//! [origins.main]
//! url = "sqlite:///var/lib/quorra/demo.db"   # or postgres://..., or http://svc/items/{key}
//! pool = 16
//! timeout = "2s"
//!
//! [[namespaces]]
//! name = "users"
//! prefix = "user:"
//! ttl = "10m"
//! ttl-jitter = 0.1
//! negative-ttl = "5s"
//! stale-while-revalidate = "30s"
//! origin = "main"
//! load = "SELECT v FROM users WHERE k = $1"
//! ```
//!
//! Every field and its default is listed in `docs/namespaces.md`.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use crate::namespace::{
    Catalog, Namespace, OriginConfig, OriginKind, WriteBehindPolicy, WriteMode,
};

/// Default connections per origin.
pub const DEFAULT_POOL: usize = 16;
/// Default time a load may take before the client gets an error.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default lifetime of a loaded value.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);
/// Default TTL jitter: each TTL is `ttl * (1 ± 0.1)`.
pub const DEFAULT_TTL_JITTER: f64 = 0.1;
/// Default time the origin's "no such row" is remembered.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Default time between write-behind flushes.
pub const DEFAULT_WRITE_BEHIND_INTERVAL: Duration = Duration::from_secs(1);
/// Default keys a write-behind flush writes together.
pub const DEFAULT_WRITE_BEHIND_BATCH: usize = 500;
/// Default most keys waiting for the origin per namespace and node.
pub const DEFAULT_WRITE_BEHIND_MAX_PENDING: usize = 100_000;
/// Most connections an origin's pool may have.
pub const MAX_POOL: usize = 1024;

/// `[origins.NAME]`: a database that namespaces load from.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct OriginSpec {
    /// `sqlite:///path/to/file.db` or `postgres://user@host:port/db`.
    pub url: String,
    /// Most connections [default: 16].
    pub pool: Option<usize>,
    /// Longest a load may take, e.g. `2s` or `500ms` [default: 2s].
    pub timeout: Option<String>,
}

/// `[[namespaces]]`: a key prefix with a policy.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NamespaceSpec {
    /// Its name, unique; shown by `QUORRA NAMESPACES`, INFO and metrics.
    pub name: String,
    /// Keys that start with it belong here; the longest matching prefix wins.
    pub prefix: String,
    /// Lifetime of a loaded value [default: 10m].
    pub ttl: Option<String>,
    /// Each TTL is `ttl * (1 ± ttl-jitter)`, uniformly; 0 to 1 [default: 0.1].
    pub ttl_jitter: Option<f64>,
    /// How long the origin's "no such row" is remembered; `0s` turns it off
    /// [default: 5s].
    pub negative_ttl: Option<String>,
    /// The `[origins.NAME]` it loads from.
    pub origin: String,
    /// The query that loads a key: `$1` is the key without the prefix; it returns no
    /// row, or one row of one text or blob column. Not used with an HTTP origin.
    #[serde(default)]
    pub load: String,
    /// `none`; `through`: SET and DEL write the origin before the cache; `behind`: they
    /// are acknowledged once cached and written to the origin in batches
    /// [default: none].
    pub write: Option<String>,
    /// With `write = "through"`: the statement that writes a key, `$1` the key without
    /// the prefix, `$2` the value.
    pub store: Option<String>,
    /// With `write = "through"` or `"behind"`: the statement that deletes a key, `$1`
    /// the key without the prefix [default: none, DEL removes only the cached value].
    pub delete: Option<String>,
    /// With `write = "behind"`: how often the primary flushes [default: 1s].
    pub write_behind_interval: Option<String>,
    /// With `write = "behind"`: keys a flush writes together, a batch at a time
    /// [default: 500].
    pub write_behind_batch: Option<usize>,
    /// With `write = "behind"`: most keys waiting for the origin on a node; a SET of a
    /// new key beyond it is refused [default: 100000].
    pub write_behind_max_pending: Option<usize>,
    /// How long past its TTL a loaded value is still served while one background
    /// refresh reloads it; `0s` turns it off [default: 0s].
    pub stale_while_revalidate: Option<String>,
}

/// A configuration refused, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    /// The field, as the file spells it: `namespaces.users.origin`.
    pub field: String,
    /// Why.
    pub reason: String,
}

fn refuse(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        reason: reason.into(),
    }
}

fn duration(field: &str, text: Option<&str>, default: Duration) -> Result<Duration, ConfigError> {
    match text {
        None => Ok(default),
        Some(text) => humantime::parse_duration(text).map_err(|error| {
            refuse(
                field,
                format!("{error}; write a duration such as \"10m\", \"2s\" or \"500ms\""),
            )
        }),
    }
}

/// Where an origin URL points.
fn origin_kind(field: &str, url: &str) -> Result<OriginKind, ConfigError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            return Err(refuse(
                field,
                "a SQLite origin needs a file: sqlite:///path/to/file.db",
            ));
        }
        return Ok(OriginKind::Sqlite(PathBuf::from(path)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // Read now so that a URL the driver cannot use stops the node at start.
        return match url.parse::<tokio_postgres::Config>() {
            Ok(_) => Ok(OriginKind::Postgres(url.to_owned())),
            Err(error) => Err(refuse(field, format!("invalid PostgreSQL URL: {error}"))),
        };
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return crate::http::check_template(url)
            .map(|()| OriginKind::Http(url.to_owned()))
            .map_err(|reason| refuse(field, reason));
    }
    Err(refuse(
        field,
        format!(
            "unsupported origin {url:?}: use sqlite:///path/file.db, postgres://user@host:port/db \
             or http://host:port/path/{{key}}"
        ),
    ))
}

/// Checks the origins and namespaces of a config file, giving the catalog a node runs
/// with, or the first field that is wrong.
pub fn check(
    origins: &BTreeMap<String, OriginSpec>,
    namespaces: &[NamespaceSpec],
) -> Result<Catalog, ConfigError> {
    let mut checked_origins = Vec::with_capacity(origins.len());
    for (name, spec) in origins {
        let field = |leaf: &str| format!("origins.{name}.{leaf}");
        let pool = spec.pool.unwrap_or(DEFAULT_POOL);
        if !(1..=MAX_POOL).contains(&pool) {
            return Err(refuse(
                field("pool"),
                format!("must be between 1 and {MAX_POOL}"),
            ));
        }
        let timeout = duration(&field("timeout"), spec.timeout.as_deref(), DEFAULT_TIMEOUT)?;
        if timeout.is_zero() {
            return Err(refuse(field("timeout"), "must be more than 0"));
        }
        checked_origins.push(OriginConfig {
            name: name.clone(),
            kind: origin_kind(&field("url"), &spec.url)?,
            pool,
            timeout,
        });
    }
    let mut names = HashSet::new();
    let mut prefixes = HashSet::new();
    let mut checked = Vec::with_capacity(namespaces.len());
    for (position, spec) in namespaces.iter().enumerate() {
        let label = if spec.name.is_empty() {
            format!("namespaces[{position}]")
        } else {
            format!("namespaces.{}", spec.name)
        };
        let field = |leaf: &str| format!("{label}.{leaf}");
        if spec.name.is_empty() {
            return Err(refuse(field("name"), "every namespace needs a name"));
        }
        if !spec
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(refuse(
                field("name"),
                "use letters, digits, '-' and '_' (it becomes a metrics label)",
            ));
        }
        if !names.insert(spec.name.as_str()) {
            return Err(refuse(field("name"), "another namespace has this name"));
        }
        if !prefixes.insert(spec.prefix.as_str()) {
            return Err(refuse(field("prefix"), "another namespace has this prefix"));
        }
        let Some(origin) = checked_origins.iter().position(|o| o.name == spec.origin) else {
            return Err(refuse(
                field("origin"),
                format!("no [origins.{}] in the file", spec.origin),
            ));
        };
        let http = matches!(checked_origins[origin].kind, OriginKind::Http(_));
        if spec.load.trim().is_empty() && !http {
            return Err(refuse(
                field("load"),
                "a namespace with an origin needs a load query",
            ));
        }
        let ttl = duration(&field("ttl"), spec.ttl.as_deref(), DEFAULT_TTL)?;
        if ttl.is_zero() {
            return Err(refuse(field("ttl"), "must be more than 0"));
        }
        let ttl_jitter = spec.ttl_jitter.unwrap_or(DEFAULT_TTL_JITTER);
        if !(0.0..=1.0).contains(&ttl_jitter) {
            return Err(refuse(field("ttl-jitter"), "must be between 0 and 1"));
        }
        let negative_ttl = duration(
            &field("negative-ttl"),
            spec.negative_ttl.as_deref(),
            DEFAULT_NEGATIVE_TTL,
        )?;
        let write = match spec.write.as_deref() {
            None | Some("none") => WriteMode::None,
            Some("through") => WriteMode::Through,
            Some("behind") => WriteMode::Behind,
            Some(other) => {
                return Err(refuse(
                    field("write"),
                    format!("{other:?} is not one of none, through, behind"),
                ));
            }
        };
        if http && write != WriteMode::None {
            return Err(refuse(
                field("write"),
                "HTTP origins are read-only: only write = \"none\"",
            ));
        }
        let store = spec.store.clone().filter(|text| !text.trim().is_empty());
        let delete = spec.delete.clone().filter(|text| !text.trim().is_empty());
        match write {
            WriteMode::Through | WriteMode::Behind if store.is_none() => {
                return Err(refuse(
                    field("store"),
                    format!(
                        "write = \"{}\" needs a store statement ($1 the key, $2 the value)",
                        write.as_str()
                    ),
                ));
            }
            WriteMode::None if store.is_some() || delete.is_some() => {
                let which = if store.is_some() { "store" } else { "delete" };
                return Err(refuse(
                    field(which),
                    "only used with write = \"through\" or \"behind\"; set write, or remove it",
                ));
            }
            _ => {}
        }
        let behind_only = [
            (
                "write-behind-interval",
                spec.write_behind_interval.is_some(),
            ),
            ("write-behind-batch", spec.write_behind_batch.is_some()),
            (
                "write-behind-max-pending",
                spec.write_behind_max_pending.is_some(),
            ),
        ];
        if let Some((name, _)) = behind_only
            .iter()
            .find(|(_, set)| *set && write != WriteMode::Behind)
        {
            return Err(refuse(field(name), "only used with write = \"behind\""));
        }
        let write_behind = WriteBehindPolicy {
            interval: duration(
                &field("write-behind-interval"),
                spec.write_behind_interval.as_deref(),
                DEFAULT_WRITE_BEHIND_INTERVAL,
            )?,
            batch: spec
                .write_behind_batch
                .unwrap_or(DEFAULT_WRITE_BEHIND_BATCH),
            max_pending: spec
                .write_behind_max_pending
                .unwrap_or(DEFAULT_WRITE_BEHIND_MAX_PENDING),
        };
        if write_behind.interval.is_zero() {
            return Err(refuse(
                field("write-behind-interval"),
                "must be more than 0",
            ));
        }
        if !(1..=100_000).contains(&write_behind.batch) {
            return Err(refuse(
                field("write-behind-batch"),
                "must be between 1 and 100000",
            ));
        }
        if write_behind.max_pending == 0 {
            return Err(refuse(
                field("write-behind-max-pending"),
                "must be at least 1",
            ));
        }
        let stale_while_revalidate = duration(
            &field("stale-while-revalidate"),
            spec.stale_while_revalidate.as_deref(),
            Duration::ZERO,
        )?;
        checked.push(Namespace {
            name: spec.name.clone(),
            prefix: Bytes::copy_from_slice(spec.prefix.as_bytes()),
            ttl,
            ttl_jitter,
            negative_ttl,
            stale_while_revalidate,
            origin,
            load: spec.load.clone(),
            write,
            store,
            delete,
            write_behind,
        });
    }
    Ok(Catalog::new(checked_origins, checked))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(url: &str) -> BTreeMap<String, OriginSpec> {
        BTreeMap::from([(
            "main".to_owned(),
            OriginSpec {
                url: url.to_owned(),
                ..OriginSpec::default()
            },
        )])
    }

    fn users() -> NamespaceSpec {
        NamespaceSpec {
            name: "users".into(),
            prefix: "user:".into(),
            origin: "main".into(),
            load: "SELECT v FROM users WHERE k = $1".into(),
            ..NamespaceSpec::default()
        }
    }

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let catalog = check(&origin("sqlite:///tmp/demo.db"), &[users()]).unwrap();
        let namespace = &catalog.namespaces()[0];
        assert_eq!(namespace.ttl, DEFAULT_TTL);
        assert_eq!(namespace.ttl_jitter, DEFAULT_TTL_JITTER);
        assert_eq!(namespace.negative_ttl, DEFAULT_NEGATIVE_TTL);
        let origin = &catalog.origins()[namespace.origin];
        assert_eq!(origin.pool, DEFAULT_POOL);
        assert_eq!(origin.timeout, DEFAULT_TIMEOUT);
        assert_eq!(origin.kind, OriginKind::Sqlite("/tmp/demo.db".into()));
    }

    #[test]
    fn a_bad_field_is_refused_by_name() {
        let sqlite = origin("sqlite:///tmp/demo.db");
        let cases: Vec<(BTreeMap<String, OriginSpec>, NamespaceSpec, &str)> = vec![
            (
                sqlite.clone(),
                NamespaceSpec {
                    origin: "nosuch".into(),
                    ..users()
                },
                "namespaces.users.origin",
            ),
            (
                sqlite.clone(),
                NamespaceSpec {
                    ttl: Some("ten minutes".into()),
                    ..users()
                },
                "namespaces.users.ttl",
            ),
            (
                sqlite.clone(),
                NamespaceSpec {
                    ttl_jitter: Some(1.5),
                    ..users()
                },
                "namespaces.users.ttl-jitter",
            ),
            (
                sqlite.clone(),
                NamespaceSpec {
                    write: Some("behind".into()),
                    ..users()
                },
                "namespaces.users.store",
            ),
            (
                sqlite.clone(),
                NamespaceSpec {
                    write: Some("sideways".into()),
                    ..users()
                },
                "namespaces.users.write",
            ),
            (
                sqlite.clone(),
                NamespaceSpec {
                    write_behind_batch: Some(10),
                    ..users()
                },
                "namespaces.users.write-behind-batch",
            ),
            (
                sqlite.clone(),
                NamespaceSpec {
                    write: Some("through".into()),
                    ..users()
                },
                "namespaces.users.store",
            ),
            (
                sqlite.clone(),
                NamespaceSpec {
                    delete: Some("DELETE FROM users WHERE k = $1".into()),
                    ..users()
                },
                "namespaces.users.delete",
            ),
            (
                sqlite.clone(),
                NamespaceSpec {
                    load: " ".into(),
                    ..users()
                },
                "namespaces.users.load",
            ),
            (
                sqlite.clone(),
                NamespaceSpec {
                    name: "a b".into(),
                    ..users()
                },
                "namespaces.a b.name",
            ),
            (origin("mysql://x"), users(), "origins.main.url"),
            (origin("sqlite://"), users(), "origins.main.url"),
            (
                origin("postgres://a@b:notaport/c"),
                users(),
                "origins.main.url",
            ),
        ];
        for (origins, namespace, field) in cases {
            let error = check(&origins, &[namespace]).unwrap_err();
            assert_eq!(error.field, field, "{error}");
        }
        let twice = check(&sqlite, &[users(), users()]).unwrap_err();
        assert_eq!(twice.field, "namespaces.users.name");
    }
}
