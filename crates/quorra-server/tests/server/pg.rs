//! A private PostgreSQL server for the tests: Debian's binaries, a new cluster in a
//! temporary directory, on a free loopback port; stopped and removed when dropped.
//! `scripts/test` installs the `postgresql` package.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A running PostgreSQL server.
pub(crate) struct PgServer {
    bin: PathBuf,
    dir: PathBuf,
    /// Its TCP port on 127.0.0.1.
    pub(crate) port: u16,
}

/// The newest installed PostgreSQL's binaries.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|version| version.file_name()?.to_str()?.parse::<u32>().ok())
    });
    versions.pop().expect(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); \
         ./scripts/test installs Debian's postgresql package",
    )
}

fn root() -> bool {
    rustix::process::geteuid().is_root()
}

impl PgServer {
    /// Creates a cluster and starts it; panics with the server's log if it cannot.
    pub(crate) fn start() -> PgServer {
        let dir = crate::common::fresh_dir("pg");
        std::fs::create_dir_all(&dir).unwrap();
        // PostgreSQL refuses to run as root: as root, the server runs as `postgres`.
        if root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success());
        }
        let mut server = PgServer {
            bin: bin_dir(),
            dir,
            port: crate::common::free_port(),
        };
        let data = server.dir.join("data");
        server.run(
            "initdb",
            &[
                "-D",
                path(&data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let log = server.dir.join("server.log");
        // A port found free may be taken by a parallel test before the server binds it:
        // then try another.
        for attempt in 1..=3 {
            let options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                server.port,
                path(&server.dir)
            );
            let started = server.command(
                "pg_ctl",
                &[
                    "-D",
                    path(&data),
                    "-o",
                    &options,
                    "-l",
                    path(&log),
                    "-w",
                    "start",
                ],
            );
            if started.status.success() {
                return server;
            }
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                attempt < 3 && log_text.contains("could not bind"),
                "PostgreSQL did not start: {log_text}"
            );
            server.port = crate::common::free_port();
        }
        unreachable!("the loop returns or panics")
    }

    fn command(&self, program: &str, args: &[&str]) -> Output {
        let binary = self.bin.join(program);
        let mut command = if root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(binary);
            command
        } else {
            Command::new(binary)
        };
        command.args(args).current_dir(&self.dir).output().unwrap()
    }

    fn run(&self, program: &str, args: &[&str]) -> String {
        let output = self.command(program, args);
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Runs SQL with psql and returns its unaligned, tuples-only output.
    pub(crate) fn psql(&self, sql: &str) -> String {
        let port = self.port.to_string();
        self.run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
        )
    }

    /// The URL quorra's origin config takes.
    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl PgServer {
    /// Stops the server (fast shutdown: connections are closed); it stays stopped.
    pub(crate) fn stop(&self) {
        let data = self.dir.join("data");
        self.run("pg_ctl", &["-D", path(&data), "-m", "fast", "-w", "stop"]);
    }
}

fn path(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.command("pg_ctl", &["-D", path(&data), "-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
