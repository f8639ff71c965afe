//! Fleet mode across OS processes: `fleet_replica` run as several processes
//! against one redis-server. Skipped, saying why, when redis-server is
//! missing, unless CB_REQUIRE_REDIS=1.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cb_fleet::testing::redis_or_skip;

/// The `fleet_replica` example's binary, built by `cargo test` beside this
/// test's; built here when it is missing.
fn replica_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let path = dir.join(format!("fleet_replica{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", "fleet_replica"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success());
    }
    path
}

struct Replica {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Replica {
    fn start(url: &str, id: &str, mode: &str) -> Replica {
        let mut child = Command::new(replica_binary())
            .args([url, "procs", id, mode])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("fleet_replica starts");
        let out: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Replica { child, lines }
    }

    fn expect(&self, prefix: &str) -> String {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no `{prefix}` line from a replica"));
        assert!(line.starts_with(prefix), "expected `{prefix}`, got `{line}`");
        line
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_open_in_one_process_opens_the_others() {
    let Some(server) = redis_or_skip("an_open_in_one_process_opens_the_others") else {
        return;
    };
    let url = server.url();
    let watchers: Vec<Replica> = (0..3)
        .map(|i| Replica::start(&url, &format!("w{i}"), "watch"))
        .collect();
    for w in &watchers {
        w.expect("ready");
    }
    let mut tripper = Replica::start(&url, "t", "trip");
    tripper.expect("ready");
    writeln!(tripper.child.stdin.as_mut().unwrap(), "go").unwrap();
    tripper.expect("tripped");
    for w in &watchers {
        let line = w.expect("open ");
        let ms: u64 = line["open ".len()..].parse().unwrap();
        assert!(ms <= 30_000, "open for the time that remains: {ms} ms");
    }
    for mut w in watchers {
        assert!(w.child.wait().unwrap().success());
    }
    assert!(tripper.child.wait().unwrap().success());
}
