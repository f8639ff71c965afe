//! [`FleetBuilder`]: how a fleet is set up (its settings, checked at
//! [`join`](FleetBuilder::join)) and joined: the shared state, the registry's
//! coordinator and the background task.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cb_runtime::Registry;
use tokio::sync::{mpsc, oneshot};

use crate::{
    check_open_quorum, coord, ledger, names, server, task, tls, Fleet, FleetError, Link, Local, Metrics,
    Shared, DEFAULT_IO_TIMEOUT, DEFAULT_LEASE_TTL, DEFAULT_NAME_TTL, DEFAULT_QUEUE_CAPACITY,
    DEFAULT_SHARE_INTERVAL, MIN_SHARE_INTERVAL,
};

/// Sets up a [`Fleet`]; from [`Fleet::builder`].
#[derive(Clone)]
pub struct FleetBuilder {
    pub(crate) url: String,
    pub(crate) namespace: Option<String>,
    pub(crate) replica_id: Option<String>,
    pub(crate) lease_ttl: Duration,
    pub(crate) io_timeout: Duration,
    pub(crate) name_ttl: Duration,
    pub(crate) queue: usize,
    pub(crate) open_quorum: u32,
    pub(crate) share_failures: bool,
    pub(crate) share_interval: Duration,
    pub(crate) cluster: bool,
    pub(crate) tls: tls::TlsSettings,
}

impl fmt::Debug for FleetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetBuilder")
            .field("url", &names::redact(&self.url))
            .field("namespace", &self.namespace)
            .field("replica_id", &self.replica_id)
            .finish_non_exhaustive()
    }
}

impl FleetBuilder {
    /// A setup with every default, for the server (or cluster nodes) at `url`.
    pub(crate) fn new(url: String) -> Self {
        FleetBuilder {
            url,
            namespace: None,
            replica_id: None,
            lease_ttl: DEFAULT_LEASE_TTL,
            io_timeout: DEFAULT_IO_TIMEOUT,
            name_ttl: DEFAULT_NAME_TTL,
            queue: DEFAULT_QUEUE_CAPACITY,
            open_quorum: 1,
            share_failures: false,
            share_interval: DEFAULT_SHARE_INTERVAL,
            cluster: false,
            tls: tls::TlsSettings::default(),
        }
    }

    /// Required: the key prefix shared by one service's replicas (1 to 64
    /// ASCII letters, digits, `_`, `-`, `.`). Namespaces do not see each other.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_owned());
        self
    }

    /// This replica's id, in the transition log and in messages (default:
    /// `HOSTNAME`, the process id and a random suffix).
    pub fn replica_id(mut self, id: &str) -> Self {
        self.replica_id = Some(id.to_owned());
        self
    }

    /// How long a probe lease lives without renewal (default 3 s; at least
    /// 300 ms): a crashed replica's probe lease expires within this.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(300));
        self
    }

    /// How long one Redis command or connection attempt may take before the
    /// fleet counts as disconnected (default 500 ms).
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// How long Redis keeps a breaker's name, state and transition log after
    /// the last replica that has the breaker stopped (default a week; at
    /// least 1 s). Replicas renew the names they have every quarter of it
    /// (at most hourly), in batches, and forget names nobody renewed, a
    /// bounded batch at a time: per-tenant breakers of tenants long gone
    /// leave Redis.
    pub fn name_ttl(mut self, ttl: Duration) -> Self {
        self.name_ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// The background task's queue length (default 4096; at least 1). A
    /// message that finds it full is dropped and counted, and what it said
    /// (an open, a close, probe results) is kept per breaker and sent when the
    /// task catches up: the fleet's state converges anyway. Only transition
    /// log entries are lost.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue = n.max(1);
        self
    }

    /// How many distinct replicas must open a breaker on their own, within
    /// its open duration, before the fleet opens it (default 1: any
    /// replica's open opens every replica). Until then a replica's open
    /// stays local ([`Fleet::local_open`]): a replica with a broken path to
    /// a healthy dependency cannot open the whole fleet. A fleet-wide
    /// [`Fleet::force_open`] ignores the quorum. See "Open quorum" in the
    /// crate docs. 0 is refused by [`join`](Self::join).
    pub fn open_quorum(mut self, n: u32) -> Self {
        self.open_quorum = n;
        self
    }

    /// Shares call counts (default `false`): every replica reports its
    /// calls, failures (timeouts included) and slow calls to Redis in
    /// batches, off the call path (the background task reads the breakers'
    /// totals every [`share_interval`](Self::share_interval): at most one
    /// round trip per breaker per interval, none for a breaker without
    /// calls), and the fleet opens a breaker when the counts of all
    /// replicas together cross its thresholds (rates over its window with
    /// its `minimum_calls`, and `failure_threshold` consecutive failures,
    /// which a success reported by any replica resets), before any one
    /// replica would. See "Shared failure counts" in the crate docs.
    pub fn share_failures(mut self, on: bool) -> Self {
        self.share_failures = on;
        self
    }

    /// How often each replica reports its call counts with
    /// [`share_failures`](Self::share_failures) (default 1 s; at least 10 ms).
    pub fn share_interval(mut self, every: Duration) -> Self {
        self.share_interval = every.max(MIN_SHARE_INTERVAL);
        self
    }

    /// Joins a Redis Cluster (default `false`: one server) through the
    /// builder's URL, a node of the cluster; [`Fleet::cluster_builder`]
    /// gives several. Every key and channel of a namespace lives in one
    /// hash slot (`cb:{<namespace>}:...`), so the scripts stay atomic, on
    /// that slot's master; messages use sharded pub/sub (`SSUBSCRIBE`,
    /// Redis 7). When the slot's master fails over, calls go on with local
    /// state and the replica resynchronises once the cluster answers again.
    /// See "Redis Cluster" in the crate docs.
    pub fn cluster(mut self, on: bool) -> Self {
        self.cluster = on;
        self
    }

    /// Feature `tls`: trusts the CA certificates in `pem` (one or more PEM
    /// `CERTIFICATE` blocks) for the `rediss://` server, instead of the
    /// built-in Mozilla roots (webpki-roots). Use it for a private or
    /// self-signed CA; the server's certificate must still name the URL's
    /// host (DNS name or IP address) in its subject alternative names.
    /// Checked in [`join`](Self::join): unreadable PEM, or a `redis://` URL,
    /// is an error naming this setting.
    #[cfg(feature = "tls")]
    pub fn tls_root_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls.root_ca = Some(pem.into());
        self
    }

    /// Feature `tls`: the client certificate chain and private key (PEM) to
    /// present to a server that asks for one (`tls-auth-clients yes`, mutual
    /// TLS). The key is never logged or shown in errors.
    #[cfg(feature = "tls")]
    pub fn tls_client_identity_pem(
        mut self,
        cert_chain: impl Into<Vec<u8>>,
        key: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls.identity = Some((cert_chain.into(), key.into()));
        self
    }

    /// Joins the fleet with every breaker of `registry`, present and future.
    ///
    /// Connects and adopts the fleet's state before it returns (waiting at
    /// most about [`io_timeout`](Self::io_timeout) per step). An unreachable
    /// server is not an error: the fleet starts unconnected and keeps
    /// reconnecting in the background. Errors: a bad URL, namespace or
    /// replica id. Needs a tokio runtime.
    pub async fn join(self, registry: &'static Registry) -> Result<Fleet, FleetError> {
        if !self.cluster {
            names::check_url(&self.url)?;
        }
        let namespace = self.namespace.clone().ok_or_else(|| {
            FleetError::invalid(
                "namespace",
                "nothing".to_owned(),
                "a namespace: call `.namespace(..)`",
            )
        })?;
        names::check_namespace(&namespace)?;
        let replica = self.replica_id.clone().unwrap_or_else(names::default_replica_id);
        names::check_replica_id(&replica)?;
        check_open_quorum(self.open_quorum)?;
        let server = if self.cluster {
            let urls: Vec<String> = self
                .url
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect();
            server::Server::cluster(&urls, &self.tls)?
        } else {
            server::Server::single(&self.url, &self.tls)?
        };
        let (tx, rx) = mpsc::channel(self.queue);
        let metrics = Metrics::new(&namespace);
        let instance = format!("{replica}:{:08x}", fastrand::u32(..));
        let shared = Arc::new(Shared {
            keys: names::Keys::new(&namespace),
            namespace,
            replica,
            url_shown: names::redact(&self.url),
            lease_ttl: self.lease_ttl,
            io_timeout: self.io_timeout,
            name_ttl: self.name_ttl,
            open_quorum: self.open_quorum,
            share_interval: self.share_failures.then_some(self.share_interval),
            publish: server.publish(),
            link: Arc::new(Link {
                connected: AtomicBool::new(false),
                tx,
                dropped: AtomicU64::new(0),
                metrics,
                dirty: ledger::Dirty::default(),
                instance,
            }),
            local: Mutex::new(Local::default()),
            malformed: AtomicU64::new(0),
            registry,
            joined: AtomicBool::new(false),
        });
        // Attach first: the first synchronisation then covers every breaker,
        // and shares an open made before the join.
        registry.coordinate(Arc::new(coord::Coord(Arc::clone(&shared))));
        shared.joined.store(true, Ordering::Release);
        let (first_tx, first_rx) = oneshot::channel();
        let handle = tokio::spawn(task::run(Arc::clone(&shared), server, rx, first_tx));
        // The first attempt: connected and synchronised, or given up.
        let _ = tokio::time::timeout(self.io_timeout * 4 + Duration::from_millis(100), first_rx).await;
        Ok(Fleet { shared, handle })
    }
}
