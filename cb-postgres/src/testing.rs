//! Throwaway PostgreSQL servers for tests, examples and benchmarks (not part
//! of the stable API).
//!
//! [`PostgresServer::start`] runs `initdb` into a fresh temporary directory
//! and `pg_ctl start` on a free loopback port, with trust authentication on
//! 127.0.0.1 only and `fsync=off`. PostgreSQL refuses to run as root, so when
//! the tests run as root the server runs as `nobody` (through `runuser`),
//! owning its directory. The binaries are found on `PATH`, or in Debian's
//! `/usr/lib/postgresql/<version>/bin` (the newest). The server is stopped
//! and its directory removed on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The user the server runs as when the tests run as root.
const UNPRIVILEGED: &str = "nobody";

/// A PostgreSQL server on a free loopback port, stopped on drop.
#[derive(Debug)]
pub struct PostgresServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// `runuser -u nobody --` when running as root.
    as_user: Option<&'static str>,
    stopped: bool,
}

/// A running server for test `test`, or `None` (after saying why) when
/// PostgreSQL is not installed. With `CB_REQUIRE_POSTGRES=1` a missing
/// PostgreSQL is a panic instead.
pub fn postgres_or_skip(test: &str) -> Option<PostgresServer> {
    match find_bin() {
        Some(bin) => Some(PostgresServer::start_with(bin)),
        None => {
            if std::env::var("CB_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!(
                    "{test}: PostgreSQL (initdb, pg_ctl) is neither on PATH nor in /usr/lib/postgresql/*/bin, \
                     and CB_REQUIRE_POSTGRES=1 (install it: apt-get install -y postgresql)"
                );
            }
            eprintln!(
                "{test}: SKIPPED: PostgreSQL (initdb, pg_ctl) is neither on PATH nor in /usr/lib/postgresql/*/bin \
                 (install it with `apt-get install -y postgresql`; CB_REQUIRE_POSTGRES=1 makes this a failure)"
            );
            None
        }
    }
}

/// `true` when PostgreSQL's server binaries can be found.
pub fn postgres_available() -> bool {
    find_bin().is_some()
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`.
fn find_bin() -> Option<PathBuf> {
    let works = |dir: &Path| {
        dir.join("initdb").is_file()
            && dir.join("pg_ctl").is_file()
            && Command::new(dir.join("pg_ctl"))
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    };
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|d| works(d)) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, dir)| works(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// How many ports a new server is tried on before its start is a failure.
const START_ATTEMPTS: usize = 5;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PostgresServer {
    /// Starts a server (panics when PostgreSQL is not installed; see
    /// [`postgres_or_skip`]).
    pub fn start() -> Self {
        Self::start_with(find_bin().expect("PostgreSQL's initdb and pg_ctl"))
    }

    fn start_with(bin: PathBuf) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cb-postgres-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let as_user = is_root().then_some(UNPRIVILEGED);
        if let Some(user) = as_user {
            let ok = Command::new("chown")
                .args([user, &dir.display().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown {user} {}", dir.display());
        }
        let mut server = PostgresServer {
            bin,
            dir,
            port: free_port(),
            as_user,
            stopped: false,
        };
        let data = server.data().display().to_string();
        let out = server
            .command("initdb")
            .args([
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // A port free when chosen can be taken by another process before
        // the server binds it; then the server is started on another one.
        for attempt in 1..=START_ATTEMPTS {
            match server.pg_start() {
                Ok(()) => return server,
                Err(why) if attempt == START_ATTEMPTS => panic!("{why}"),
                Err(_) => server.port = free_port(),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// A command running binary `name` of the installation, as the server's user.
    fn command(&self, name: &str) -> Command {
        let program = self.bin.join(name);
        match self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `pg_ctl start`, waiting until the server accepts connections; `Err`
    /// with its log when it does not start.
    fn pg_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off \
             -c full_page_writes=off -c max_connections=50",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        let status = self
            .command("pg_ctl")
            .args([
                "-D",
                &self.data().display().to_string(),
                "-l",
                &log,
                "-w",
                "-t",
                "30",
            ])
            .args(["-o", &options, "start"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("pg_ctl runs");
        if status.success() {
            return Ok(());
        }
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        Err(format!("pg_ctl start failed on port {}: {log_text}", self.port))
    }

    /// The server's URL (user `postgres`, database `postgres`).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        let out = self
            .command("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args([
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                &format!("CREATE DATABASE \"{name}\""),
            ])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "CREATE DATABASE: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// The postmaster's process id (from `postmaster.pid`).
    fn postmaster(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// The postmaster and every process it started (backends, writers).
    fn processes(&self) -> Vec<u32> {
        let Some(pm) = self.postmaster() else {
            return Vec::new();
        };
        let mut pids = vec![pm];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(pm) {
                    pids.push(pid);
                }
            }
        }
        pids
    }

    fn signal(&self, signal: &str, pids: &[u32]) {
        if pids.is_empty() {
            return;
        }
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .args(pids.iter().map(u32::to_string))
            .stderr(Stdio::null())
            .status();
    }

    /// SIGSTOP to the postmaster and all its processes: the server hangs,
    /// its connections stay open and unanswered.
    pub fn hang(&mut self) {
        self.signal("STOP", &self.processes());
        self.stopped = true;
    }

    /// SIGCONT after [`hang`](Self::hang).
    pub fn resume(&mut self) {
        self.signal("CONT", &self.processes());
        self.stopped = false;
    }

    /// SIGKILL to every process of the server (a crash), waiting until they are gone.
    pub fn kill(&mut self) {
        let pids = self.processes();
        if self.stopped {
            self.signal("CONT", &pids);
            self.stopped = false;
        }
        self.signal("KILL", &pids);
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids.iter().any(|p| Path::new(&format!("/proc/{p}")).exists()) && Instant::now() < deadline {
            // A killed child stays a zombie until its parent (pg_ctl's
            // daemonised postmaster, also killed) is reaped by init.
            if pids.iter().all(|p| is_zombie(*p)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // A zombie postmaster (no reaper in some containers) still "exists"
        // for the lock file check: every process is dead, so the file goes.
        let _ = std::fs::remove_file(self.data().join("postmaster.pid"));
        let socket = self.dir.join(format!(".s.PGSQL.{}", self.port));
        let _ = std::fs::remove_file(socket.with_extension(format!("{}.lock", self.port)));
        let _ = std::fs::remove_file(socket);
    }

    /// Starts the server again, on the same port and data directory (after
    /// [`kill`](Self::kill)): its tables are kept, after crash recovery.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(why) = self.pg_start() {
            panic!("{why}");
        }
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|st| st == "Z")
        })
        .unwrap_or(true)
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.stopped {
            self.resume();
        }
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                &self.data().display().to_string(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let left = self.processes();
        self.signal("KILL", &left);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Polls `f` every 5 ms, sleeping on tokio's timer, until it is true or
/// `within` has passed; returns whether it became true (checked once more at
/// the deadline).
pub async fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    f()
}
