//! Real `redis-server` processes for tests, examples and benchmarks (not part
//! of the stable API).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` on a free loopback port, without persistence, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    stopped: bool,
    /// With [`start_tls`](RedisServer::start_tls): the TLS port and its arguments.
    tls: Option<(u16, Vec<String>)>,
}

/// A running server for test `test`, or `None` (after saying why) when
/// `redis-server` is not on `PATH`. With `CB_REQUIRE_REDIS=1` a missing
/// server is a panic instead.
pub fn redis_or_skip(test: &str) -> Option<RedisServer> {
    redis_available(test).then(RedisServer::start)
}

/// `true` when `redis-server` is on `PATH`; otherwise says why test `test`
/// is skipped and returns `false`, or panics with `CB_REQUIRE_REDIS=1`.
pub fn redis_available(test: &str) -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("CB_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
            panic!("{test}: redis-server is not on PATH and CB_REQUIRE_REDIS=1 (install it: apt-get install -y redis-server)");
        }
        eprintln!("{test}: SKIPPED: redis-server is not on PATH (install it with `apt-get install -y redis-server`; CB_REQUIRE_REDIS=1 makes this a failure)");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers.
    pub fn start() -> Self {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            stopped: false,
            tls: None,
        };
        server.spawn();
        server
    }

    /// Starts a server that also listens with TLS on a second free port
    /// ([`tls_url`](Self::tls_url)), with the certificate, key and CA (PEM
    /// files) given; with `client_certs`, TLS clients must present a
    /// certificate signed by that CA. The plain port stays open for setup
    /// ([`command`](Self::command)). Needs a redis-server built with TLS
    /// (Debian's is).
    pub fn start_tls(
        cert: &std::path::Path,
        key: &std::path::Path,
        ca: &std::path::Path,
        client_certs: bool,
    ) -> Self {
        let tls_port = free_port();
        let path = |p: &std::path::Path| p.display().to_string();
        let args = vec![
            "--tls-port".to_owned(),
            tls_port.to_string(),
            "--tls-cert-file".to_owned(),
            path(cert),
            "--tls-key-file".to_owned(),
            path(key),
            "--tls-ca-cert-file".to_owned(),
            path(ca),
            "--tls-auth-clients".to_owned(),
            if client_certs { "yes" } else { "no" }.to_owned(),
        ];
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            stopped: false,
            tls: Some((tls_port, args)),
        };
        server.spawn();
        server
    }

    /// The TLS URL of a server from [`start_tls`](Self::start_tls).
    pub fn tls_url(&self) -> Option<String> {
        self.tls
            .as_ref()
            .map(|(port, _)| format!("rediss://127.0.0.1:{port}/"))
    }

    fn spawn(&mut self) {
        let tls_args = self.tls.as_ref().map(|(_, a)| a.clone()).unwrap_or_default();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(tls_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        self.stopped = false;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pings() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn pings(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Sends one command and returns the first line of the answer (such as
    /// `+OK`), for setting up tests (`ACL SETUSER ...`).
    pub fn command(&self, args: &[&str]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connects");
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).expect("writes");
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while s.read_exact(&mut byte).is_ok() && byte[0] != b'\n' {
            line.push(byte[0]);
        }
        String::from_utf8_lossy(&line).trim_end().to_owned()
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn pid(&self) -> String {
        self.child
            .as_ref()
            .map(|c| c.id().to_string())
            .unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.stopped {
                let _ = Command::new("kill").args(["-CONT", &c.id().to_string()]).status();
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port (after [`kill`](Self::kill)); empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGSTOP: the server hangs, its connections stay open.
    pub fn hang(&mut self) {
        let _ = Command::new("kill").args(["-STOP", &self.pid()]).status();
        self.stopped = true;
    }

    /// SIGCONT after [`hang`](Self::hang).
    pub fn resume(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.pid()]).status();
        self.stopped = false;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` every few milliseconds until it is true or `within` has passed;
/// returns whether it became true.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
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
