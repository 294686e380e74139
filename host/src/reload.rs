//! Hot reload for `wsplug serve`: on SIGHUP, and with `--watch` when the
//! config file or a component file changes, the routes are read and
//! compiled again. New connections get the new routes; open connections
//! keep the instance they have until they close. A reload that fails (a
//! component that does not compile or is not a handler, a bad config file)
//! changes nothing: it is logged and the previous routes keep serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::signal::unix::Signal;
use wsplug::{App, Config, Routes, Runtime};

/// How often `--watch` looks at the files.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// The files a reload watches (the config file, if any, and the routes'
/// components) as they were when the config was read: taken before the
/// routes are compiled, so that any change from then on is seen.
pub struct FirstLook {
    config_file: Option<PathBuf>,
    first: Config,
    watched: Watched,
}

impl FirstLook {
    /// The files of `first`, read from `config_file`, as they are now.
    pub fn now(config_file: Option<PathBuf>, first: &Config) -> Self {
        let watched = Watched::files(config_file.iter().cloned().chain(components(first)));
        Self { config_file, first: first.clone(), watched }
    }
}

/// Reloads `app`'s routes from what `read_config` returns whenever asked
/// (`hangup`: SIGHUP) or, with `watch`, whenever a file it was read from
/// changes: the config file, if any, or a component of the routes (as
/// `first_look` saw them; its config is the one `app` was started with).
pub async fn reload_when_asked(
    read_config: impl Fn() -> anyhow::Result<Config> + Send + Sync + 'static,
    mut hangup: Signal,
    runtime: Arc<Runtime>,
    app: App,
    first_look: FirstLook,
    watch: bool,
) -> anyhow::Result<()> {
    let FirstLook { config_file, first, mut watched } = first_look;
    let read_config = Arc::new(read_config);
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    loop {
        let why = tokio::select! {
            _ = hangup.recv() => "SIGHUP",
            _ = tick.tick(), if watch => {
                if !watched.changed() {
                    continue;
                }
                "a watched file changed"
            }
        };
        // The files as they are before they are read: a change made while
        // the reload runs differs from this, and triggers the next one.
        let before = watched.again();
        let (read_config, runtime, current) = (read_config.clone(), runtime.clone(), app.routes());
        // Compiling takes a while; the server goes on meanwhile.
        let reloaded = tokio::task::spawn_blocking(move || {
            let config = read_config()?;
            let (routes, changes) = Routes::reload(&runtime, &config.routes, &current)?;
            anyhow::Ok((config, routes, changes))
        })
        .await?;
        match reloaded {
            Ok((config, routes, changes)) => {
                app.replace_routes(routes);
                tracing::info!(
                    added = ?changes.added,
                    replaced = ?changes.replaced,
                    removed = ?changes.removed,
                    unchanged = ?changes.unchanged,
                    "reloaded the routes ({why})"
                );
                for advice in config.advice() {
                    tracing::warn!("{advice}");
                }
                if host_settings_differ(&first, &config) {
                    tracing::warn!(
                        "the config's host-wide settings (all but its routes) changed: a reload takes only the \
                     routes; the rest takes effect at the next start"
                    );
                }
                watched = before.with(config_file.iter().cloned().chain(components(&config)));
            }
            Err(err) => {
                let err = one_line(&format!("{err:#}"));
                tracing::warn!("reload refused ({why}); the previous routes keep serving: {err}");
                // Not again until something changes.
                watched = before;
            }
        }
    }
}

/// Whether `new` differs from `first` in anything but its routes.
fn host_settings_differ(first: &Config, new: &Config) -> bool {
    let routes_aside = Config { routes: first.routes.clone(), ..new.clone() };
    routes_aside != *first
}

fn components(config: &Config) -> impl Iterator<Item = PathBuf> + '_ {
    config.routes.iter().map(|route| route.component.clone())
}

/// Files and what they looked like (modification time and size; `None` if
/// missing).
struct Watched(Vec<(PathBuf, Option<(SystemTime, u64)>)>);

impl Watched {
    fn files(paths: impl Iterator<Item = PathBuf>) -> Self {
        Self(paths.map(|path| (stamp(&path), path)).map(|(stamp, path)| (path, stamp)).collect())
    }

    /// The same files as they are now.
    fn again(&self) -> Self {
        Self::files(self.0.iter().map(|(path, _)| path.clone()))
    }

    /// `paths`, as they were in `self` if it has them, else as they are now.
    fn with(self, paths: impl Iterator<Item = PathBuf>) -> Self {
        Self(
            paths
                .map(|path| {
                    let seen =
                        self.0.iter().find(|(known, _)| *known == path).map_or_else(|| stamp(&path), |(_, seen)| *seen);
                    (path, seen)
                })
                .collect(),
        )
    }

    fn changed(&self) -> bool {
        self.0.iter().any(|(path, seen)| stamp(path) != *seen)
    }
}

/// An error as one log line: a TOML error's caret diagram (the lines
/// `  |`, `4 | component = `, `  |     ^`) left out, the rest joined, so
/// that line-based log collectors keep it whole. The line and column stay
/// in its first line.
fn one_line(text: &str) -> String {
    let diagram = |line: &str| {
        line.trim_start().trim_start_matches(|c: char| c.is_ascii_digit()).starts_with(" |")
            || line.trim_start().starts_with('|')
    };
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|line| !line.is_empty() && !diagram(line)).collect();
    lines.join(": ")
}

fn stamp(path: &PathBuf) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_toml_error_is_logged_on_one_line_without_its_diagram() {
        let err = toml::from_str::<Config>("[[route]]\npath = \"/a\"\ncomponent = \n").unwrap_err();
        let logged = one_line(&format!("bad config file wsplug.toml: {err}"));
        assert!(!logged.contains('\n'), "{logged}");
        assert!(logged.starts_with("bad config file wsplug.toml: TOML parse error at line 3, column 13: "), "{logged}");
        assert!(!logged.contains('|') && logged.ends_with("expected literal string"), "{logged}");
    }

    #[test]
    fn only_settings_besides_the_routes_count_as_host_wide() {
        let first = config("max-connections = 100\n[[route]]\npath = \"/a\"\ncomponent = \"a.wasm\"\n");
        assert!(!host_settings_differ(&first, &first.clone()));
        let routes_changed =
            config("max-connections = 100\n[[route]]\npath = \"/b\"\ncomponent = \"b.wasm\"\nidle-timeout = 5\n");
        assert!(!host_settings_differ(&first, &routes_changed));
        let host_changed = config("max-connections = 200\n[[route]]\npath = \"/a\"\ncomponent = \"a.wasm\"\n");
        assert!(host_settings_differ(&first, &host_changed));
    }
}
