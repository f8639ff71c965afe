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
    /// With [`start_tls`](RedisServer::start_tls): the TLS port.
    tls_port: Option<u16>,
    /// In a [`RedisCluster`]: the cluster bus port.
    bus_port: Option<u16>,
    /// More `redis-server` arguments (TLS files, cluster mode), without ports.
    args: Vec<String>,
    /// The server's log, read when it does not start.
    log: std::path::PathBuf,
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

/// A loopback port that is free now and that this process has not handed
/// out before.
///
/// It is chosen below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`): a port the kernel picks for
/// `bind(0)` is one it may also give to an outgoing connection (a cluster
/// node's bus link, a client) before the server binds it, which is how a
/// cluster test once failed to start a node. A server that still loses its
/// port to another process is started again on another one
/// ([`RedisServer::start`]).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let ephemeral_low = ephemeral_low().unwrap_or(32768);
    let (low, high) = if ephemeral_low > 12_000 {
        (10_000, ephemeral_low - 1)
    } else {
        (ephemeral_low.max(1024), u16::MAX)
    };
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = fastrand::u16(low..=high);
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
}

/// The first port of the kernel's ephemeral range, when it can be read.
fn ephemeral_low() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
}

/// How many times a new server is started on new ports when it exits
/// before answering (its port was taken between choosing and binding).
const START_ATTEMPTS: usize = 5;

impl RedisServer {
    /// Starts a server on a free loopback port and waits until it answers.
    pub fn start() -> Self {
        Self::start_with(false, false, Vec::new())
    }

    /// Starts a server with `args`, and a TLS port and a cluster bus port
    /// when asked for, every port free.
    fn start_with(tls: bool, cluster_bus: bool, args: Vec<String>) -> Self {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            stopped: false,
            tls_port: tls.then(free_port),
            bus_port: cluster_bus.then(free_port),
            args,
            log: std::env::temp_dir().join(format!(
                "cb-redis-{}-{:08x}.log",
                std::process::id(),
                fastrand::u32(..)
            )),
        };
        for attempt in 1..=START_ATTEMPTS {
            match server.spawn() {
                Ok(()) => return server,
                Err(why) if attempt == START_ATTEMPTS => panic!("{why}"),
                Err(_) => {
                    server.port = free_port();
                    server.tls_port = server.tls_port.map(|_| free_port());
                    server.bus_port = server.bus_port.map(|_| free_port());
                }
            }
        }
        unreachable!("the last attempt returns or panics")
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
        let path = |p: &std::path::Path| p.display().to_string();
        let args = vec![
            "--tls-cert-file".to_owned(),
            path(cert),
            "--tls-key-file".to_owned(),
            path(key),
            "--tls-ca-cert-file".to_owned(),
            path(ca),
            "--tls-auth-clients".to_owned(),
            if client_certs { "yes" } else { "no" }.to_owned(),
        ];
        Self::start_with(true, false, args)
    }

    /// The TLS URL of a server from [`start_tls`](Self::start_tls).
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port.map(|port| format!("rediss://127.0.0.1:{port}/"))
    }

    /// Runs `redis-server` and waits until it answers; `Err` (with its
    /// log) when it exits first or does not answer within 10 s.
    fn spawn(&mut self) -> Result<(), String> {
        let mut ports = vec!["--port".to_owned(), self.port.to_string()];
        if let Some(tls) = self.tls_port {
            ports.extend(["--tls-port".to_owned(), tls.to_string()]);
        }
        if let Some(bus) = self.bus_port {
            ports.extend(["--cluster-port".to_owned(), bus.to_string()]);
        }
        let _ = std::fs::remove_file(&self.log);
        let child = Command::new("redis-server")
            .args(&ports)
            .args([
                "--bind",
                "127.0.0.1",
                "--logfile",
                &self.log.display().to_string(),
            ])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        self.stopped = false;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pings() {
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() >= deadline {
                self.kill();
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                return Err(format!(
                    "redis-server did not answer on port {} ({}); the end of its log:\n{}",
                    self.port,
                    match exited {
                        Some(status) => format!("it exited: {status}"),
                        None => "for 10 s".to_owned(),
                    },
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
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
        if let Err(why) = self.spawn() {
            panic!("{why}");
        }
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
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A registry of its own, leaked, that reads no environment: what one
/// replica of a fleet simulated in this process has.
pub fn replica() -> &'static cb_runtime::Registry {
    Box::leak(Box::new(cb_runtime::Registry::with_env(Vec::new)))
}

/// Joins `registry` to the fleet in namespace `ns` on `server`, as replica
/// `id`, with every other setting at its default; panics if the setup is
/// refused (an unreachable server is not refused: see
/// [`FleetBuilder::join`](crate::FleetBuilder::join)).
pub async fn join(
    server: &RedisServer,
    ns: &str,
    id: &str,
    registry: &'static cb_runtime::Registry,
) -> crate::Fleet {
    crate::Fleet::builder(&server.url())
        .namespace(ns)
        .replica_id(id)
        .join(registry)
        .await
        .expect("join")
}

/// [`join`] with the short lease (900 ms) and I/O timeout (300 ms) of tests
/// that wait for leases to lapse and for a lost server to be noticed within
/// a few seconds.
pub async fn join_quick(
    server: &RedisServer,
    ns: &str,
    id: &str,
    registry: &'static cb_runtime::Registry,
) -> crate::Fleet {
    crate::Fleet::builder(&server.url())
        .namespace(ns)
        .replica_id(id)
        .lease_ttl(Duration::from_millis(900))
        .io_timeout(Duration::from_millis(300))
        .join(registry)
        .await
        .expect("join")
}

/// `n` replicas in this process, each its own (leaked) registry joined to a
/// fleet in namespace `ns` on `server`, with replica ids `r0`, `r1`, ...;
/// `configure` sets each builder's other settings. For examples and benches
/// that simulate a fleet.
pub async fn replicas(
    server: &RedisServer,
    ns: &str,
    n: usize,
    configure: impl Fn(crate::FleetBuilder) -> crate::FleetBuilder,
) -> Vec<(crate::Fleet, &'static cb_runtime::Registry)> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let registry = replica();
        let builder = crate::Fleet::builder(&server.url())
            .namespace(ns)
            .replica_id(&format!("r{i}"));
        let fleet = configure(builder)
            .join(registry)
            .await
            .expect("a replica joins the fleet");
        out.push((fleet, registry));
    }
    out
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

/// Which traffic a [`Proxy`] holds back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// Nothing: everything flows.
    None,
    /// What the server sends on subscriber connections (pub/sub messages).
    Messages,
    /// What the server sends on the other connections (replies to commands
    /// and scripts, which still run).
    Replies,
}

#[derive(Default)]
struct ProxyState {
    hold: Option<Traffic>,
    refuse: bool,
    /// Chunks read from the server and held back now.
    waiting: usize,
    streams: Vec<TcpStream>,
}

/// A TCP proxy on a free loopback port in front of a server, for tests
/// that need a deterministic interleaving: it can hold back pub/sub
/// messages or command replies (the commands still reach the server and
/// run), cut every connection, and refuse new ones.
pub struct Proxy {
    port: u16,
    state: std::sync::Arc<(std::sync::Mutex<ProxyState>, std::sync::Condvar)>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

type ProxyShared = std::sync::Arc<(std::sync::Mutex<ProxyState>, std::sync::Condvar)>;

fn proxy_lock(state: &ProxyShared) -> std::sync::MutexGuard<'_, ProxyState> {
    state.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Proxy {
    /// Starts a proxy to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("bound").port();
        let state: ProxyShared = Default::default();
        let shared = std::sync::Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if proxy_lock(&shared).refuse {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut st = proxy_lock(&shared);
                    for s in [&client, &server] {
                        if let Ok(c) = s.try_clone() {
                            st.streams.push(c);
                        }
                    }
                }
                let subscriber = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let (Ok(c_read), Ok(s_write)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                let flag = std::sync::Arc::clone(&subscriber);
                std::thread::spawn(move || Self::upstream(c_read, s_write, &flag));
                let st = std::sync::Arc::clone(&shared);
                std::thread::spawn(move || Self::downstream(server, client, &subscriber, &st));
            }
        });
        Proxy { port, state }
    }

    fn upstream(mut from: TcpStream, mut to: TcpStream, subscriber: &std::sync::atomic::AtomicBool) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).to_ascii_uppercase();
                    if text.contains("SUBSCRIBE") {
                        subscriber.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
        let _ = from.shutdown(std::net::Shutdown::Both);
    }

    fn downstream(
        mut from: TcpStream,
        mut to: TcpStream,
        subscriber: &std::sync::atomic::AtomicBool,
        state: &ProxyShared,
    ) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let mine = if subscriber.load(std::sync::atomic::Ordering::SeqCst) {
                        Traffic::Messages
                    } else {
                        Traffic::Replies
                    };
                    {
                        let mut st = proxy_lock(state);
                        if st.hold == Some(mine) {
                            st.waiting += 1;
                            while st.hold == Some(mine) {
                                st = state
                                    .1
                                    .wait(st)
                                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                            }
                            st.waiting -= 1;
                        }
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Both);
        let _ = from.shutdown(std::net::Shutdown::Both);
    }

    /// The proxy's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Holds back `traffic` from now on (what is held is delivered, in
    /// order, by [`release`](Self::release)). `Traffic::None` releases.
    pub fn hold(&self, traffic: Traffic) {
        proxy_lock(&self.state).hold = (traffic != Traffic::None).then_some(traffic);
        self.state.1.notify_all();
    }

    /// Delivers what is held, and holds nothing more.
    pub fn release(&self) {
        self.hold(Traffic::None);
    }

    /// How many chunks from the server are held back now: more than 0 once
    /// a held reply or message exists (a client is waiting for it).
    pub fn waiting(&self) -> usize {
        proxy_lock(&self.state).waiting
    }

    /// Closes every connection now (the clients see the server go away).
    pub fn cut(&self) {
        let streams = std::mem::take(&mut proxy_lock(&self.state).streams);
        for s in streams {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// With `true`, new connections are closed at once (the server looks
    /// down); with `false`, they are served again.
    pub fn refuse(&self, on: bool) {
        proxy_lock(&self.state).refuse = on;
    }
}

/// A Redis Cluster of `redis-server` processes on free loopback ports, in
/// a temporary directory (the nodes' `nodes.conf`), made with
/// `redis-cli --cluster create`; killed and removed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    dir: std::path::PathBuf,
    /// The nodes, masters first (as `redis-cli --cluster create` was given them).
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// `masters` masters with `replicas` replicas each, every slot
    /// assigned, once every node says `cluster_state:ok`. Failure detection
    /// is fast (`cluster-node-timeout` 1 s).
    pub fn start(masters: usize, replicas: usize) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cb-cluster-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|i| {
                let args = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &dir.join(format!("nodes-{i}.conf")).display().to_string(),
                    "--cluster-node-timeout",
                    "1000",
                    "--dir",
                    &dir.display().to_string(),
                ];
                RedisServer::start_with(false, true, args.iter().map(|a| (*a).to_owned()).collect())
            })
            .collect();
        let cluster = RedisCluster { dir, nodes };
        let mut create: Vec<String> = vec!["--cluster".into(), "create".into()];
        create.extend(cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())));
        create.extend([
            "--cluster-replicas".into(),
            replicas.to_string(),
            "--cluster-yes".into(),
        ]);
        let out = Command::new("redis-cli")
            .args(&create)
            .output()
            .expect("redis-cli runs (package redis-tools, installed with redis-server)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            cluster.wait_formed(masters * replicas, Duration::from_secs(20)),
            "the cluster did not form: {}",
            cluster.cli(0, &["cluster", "nodes"])
        );
        cluster
    }

    /// `true` once the new cluster has formed, as every node sees it: state
    /// ok, every node known and connected (none failing or in handshake),
    /// `replicas` of them replicas, and each replica's link to its master up.
    /// `cluster_state:ok` alone comes before the replicas are attached, and
    /// a test that fails a master over, or reaches the cluster through a
    /// replica, needs them.
    fn wait_formed(&self, replicas: usize, within: Duration) -> bool {
        let total = self.nodes.len();
        let is_replica = |line: &str| {
            line.split_whitespace()
                .nth(2)
                .is_some_and(|flags| flags.split(',').any(|f| f == "slave" || f == "replica"))
        };
        eventually(within, || {
            (0..total).all(|i| {
                if !self.cli(i, &["cluster", "info"]).contains("cluster_state:ok") {
                    return false;
                }
                let nodes = self.cli(i, &["cluster", "nodes"]);
                let lines: Vec<&str> = nodes.lines().filter(|l| !l.trim().is_empty()).collect();
                let settled = lines.len() == total
                    && lines.iter().all(|l| {
                        l.split_whitespace().nth(7) == Some("connected")
                            && !l.contains("fail")
                            && !l.contains("handshake")
                            && !l.contains("noaddr")
                    })
                    && lines.iter().filter(|l| is_replica(l)).count() == replicas;
                let me_replica = lines.iter().any(|l| l.contains("myself") && is_replica(l));
                settled
                    && (!me_replica
                        || self
                            .cli(i, &["info", "replication"])
                            .contains("master_link_status:up"))
            })
        })
    }

    /// The URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// `redis-cli -p <node's port> <args>`, its output.
    pub fn cli(&self, node: usize, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.nodes[node].port().to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `true` once every live node reports `cluster_state:ok` and agrees on
    /// which node serves every slot.
    pub fn wait_ok(&self, within: Duration) -> bool {
        eventually(within, || {
            self.nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| n.child.is_some())
                .all(|(i, _)| self.cli(i, &["cluster", "info"]).contains("cluster_state:ok"))
        })
    }

    /// The index of the node that is the master of `key`'s slot, as node
    /// `asked` sees it.
    pub fn master_of(&self, asked: usize, key: &str) -> Option<usize> {
        let slot: u16 = self
            .cli(asked, &["cluster", "keyslot", key])
            .trim()
            .parse()
            .ok()?;
        self.cli(asked, &["cluster", "nodes"]).lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let is_live_master =
                fields.get(2)?.split(',').any(|f| f == "master") && !fields[2].contains("fail");
            let serves = fields.iter().skip(8).any(|range| match range.split_once('-') {
                Some((a, b)) => {
                    matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
                }
                None => range.parse::<u16>().ok() == Some(slot),
            });
            let port: u16 = fields.get(1)?.split(['@', ':']).nth(1)?.parse().ok()?;
            (is_live_master && serves).then(|| self.nodes.iter().position(|n| n.port() == port))?
        })
    }

    /// The indexes of the nodes replicating node `master`, as `master` sees it.
    pub fn replicas_of(&self, master: usize) -> Vec<usize> {
        let id = self.cli(master, &["cluster", "myid"]).trim().to_owned();
        self.cli(master, &["cluster", "replicas", &id])
            .lines()
            .filter_map(|line| {
                let port: u16 = line
                    .split_whitespace()
                    .nth(1)?
                    .split(['@', ':'])
                    .nth(1)?
                    .parse()
                    .ok()?;
                self.nodes.iter().position(|n| n.port() == port)
            })
            .collect()
    }

    /// The keys matching `pattern` held by node `node` (`SCAN`).
    pub fn keys(&self, node: usize, pattern: &str) -> Vec<String> {
        self.cli(node, &["--scan", "--pattern", pattern])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_below_the_ephemeral_range_and_never_given_twice() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "a port was handed out twice");
        if let Some(low) = ephemeral_low().filter(|low| *low > 12_000) {
            assert!(ports.iter().all(|p| *p < low), "{ports:?} vs {low}");
        }
    }

    #[test]
    fn a_server_whose_port_is_taken_says_why_and_a_new_one_moves_on() {
        if !redis_available("a_server_whose_port_is_taken_says_why_and_a_new_one_moves_on") {
            return;
        }
        let taken = TcpListener::bind("127.0.0.1:0").expect("a port");
        let mut server = RedisServer::start();
        let first = server.port();
        // The same server made to bind a port that is in use: the start
        // fails at once with redis-server's own reason, not after 10 s.
        server.kill();
        server.port = taken.local_addr().expect("bound").port();
        let why = server.spawn().expect_err("the port is taken");
        assert!(why.contains("it exited"), "{why}");
        assert!(why.to_lowercase().contains("address already in use"), "{why}");
        // What `start` does next: another port, and the server answers.
        server.port = free_port();
        server.spawn().expect("a free port");
        assert_ne!(server.port(), first);
        assert_eq!(server.command(&["PING"]), "+PONG");
    }
}
