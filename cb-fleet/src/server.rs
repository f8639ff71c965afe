//! How the background task reaches Redis: one server, or a Redis Cluster.
//!
//! * One server: a multiplexed connection for commands and scripts, and a
//!   pub/sub connection `SUBSCRIBE`d to the namespace's channel; scripts
//!   `PUBLISH`.
//! * A Redis Cluster (redis-rs's `cluster-async`): one cluster connection,
//!   which routes every command by its key. Every key of a namespace has the
//!   hash tag `{<namespace>}`, so every script and pipeline runs in one slot,
//!   on that slot's master. The channel is sharded (`SSUBSCRIBE`, and scripts
//!   `SPUBLISH`, Redis 7): a message goes to the slot's shard alone rather
//!   than to every node over the cluster bus. The connection speaks RESP3,
//!   and its messages come as pushes.
//!
//! A cluster connection reconnects to moved slots and failed-over masters
//! by itself and subscribes again, but messages published meanwhile are
//! not replayed. So a node's disconnection, or a second subscription
//! confirmation, ends the task's message stream: the task then reconnects
//! and resynchronises (reads every breaker's fleet state), as after any
//! lost connection. Calls never wait for any of this.

use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Cmd, Msg, Pipeline, ProtocolVersion, PushInfo, PushKind, RedisFuture, Value,
};

use crate::names::redact;
use crate::scripts::Publish;
use crate::tls::{self, TlsSettings};
use crate::FleetError;

/// The channel's messages, in either mode.
pub(crate) type Messages = Pin<Box<dyn Stream<Item = Msg> + Send>>;

/// Where the fleet's Redis is.
pub(crate) enum Server {
    /// One server (or a primary with replicas behind one address).
    Single(redis::Client),
    /// A Redis Cluster, reached first through any of these nodes.
    Cluster {
        /// The seed nodes' URLs.
        urls: Vec<String>,
        /// TLS material for `rediss://` nodes.
        #[cfg_attr(not(feature = "tls"), allow(dead_code))]
        tls: TlsSettings,
    },
}

impl Server {
    /// One server at `url`.
    pub(crate) fn single(url: &str, tls: &TlsSettings) -> Result<Self, FleetError> {
        tls::client(url, tls).map(Server::Single)
    }

    /// A cluster reached through `urls` (each checked as a single server's
    /// URL would be; all of one scheme).
    pub(crate) fn cluster(urls: &[String], tls: &TlsSettings) -> Result<Self, FleetError> {
        let Some(first) = urls.first() else {
            return Err(FleetError::invalid(
                "urls",
                "no URL".to_owned(),
                "at least one redis:// URL of a cluster node",
            ));
        };
        let scheme = |u: &str| u.split_once("://").map(|(s, _)| s.to_owned());
        for url in urls {
            crate::names::check_url(url)?;
            tls::client(url, tls)?;
            if scheme(url) != scheme(first) {
                return Err(FleetError::invalid(
                    "urls",
                    redact(url),
                    "URLs of one scheme: every node redis://, or every node rediss://",
                ));
            }
        }
        let server = Server::Cluster {
            urls: urls.to_vec(),
            tls: tls.clone(),
        };
        // The cluster client checks what it needs of the URLs now, not on
        // the first connection.
        if let Server::Cluster { urls, tls } = &server {
            cluster_builder(urls, tls, Duration::from_secs(1))?
                .build()
                .map_err(|e| {
                    FleetError::invalid("urls", format!("{} ({e})", redact(first)), "cluster node URLs")
                })?;
        }
        Ok(server)
    }

    /// How scripts publish on this server.
    pub(crate) fn publish(&self) -> Publish {
        match self {
            Server::Single(_) => Publish::Plain,
            Server::Cluster { .. } => Publish::Sharded,
        }
    }

    /// A connection for commands, and the messages of `channel`, subscribed
    /// before this returns. Each step waits at most `io`.
    pub(crate) async fn connect(&self, io: Duration, channel: &str) -> redis::RedisResult<(Con, Messages)> {
        match self {
            Server::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(io)
                    .set_response_timeout(io);
                let con = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(channel).await?;
                Ok((Con::Single(con), Box::pin(pubsub.into_on_message())))
            }
            Server::Cluster { urls, tls } => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<PushInfo>();
                let client = cluster_builder(urls, tls, io)
                    .map_err(|e| {
                        redis::RedisError::from((
                            redis::ErrorKind::InvalidClientConfig,
                            "cluster",
                            e.to_string(),
                        ))
                    })?
                    .push_sender(tx)
                    .build()?;
                let mut con = client.get_async_connection().await?;
                con.ssubscribe(channel).await?;
                Ok((Con::Cluster(con), sharded_messages(rx)))
            }
        }
    }
}

/// The cluster client's settings: RESP3 (pushes), the fleet's timeouts,
/// few retries (the task reconnects by itself), and TLS material.
fn cluster_builder(
    urls: &[String],
    tls: &TlsSettings,
    io: Duration,
) -> Result<ClusterClientBuilder, FleetError> {
    let builder = ClusterClientBuilder::new(urls.to_vec())
        .use_protocol(ProtocolVersion::RESP3)
        .connection_timeout(io)
        .response_timeout(io)
        .retries(2)
        .min_retry_wait(10)
        .max_retry_wait(io.as_millis().max(10) as u64);
    #[cfg(feature = "tls")]
    let builder = if tls.is_set() {
        builder.certs(tls::certificates(tls)?)
    } else {
        builder
    };
    #[cfg(not(feature = "tls"))]
    let _ = tls;
    Ok(builder)
}

/// The sharded channel's messages, from the cluster connection's pushes.
/// Ends at a node's disconnection, or when the subscription is made again
/// (after a failover or a moved slot): messages may have been missed, and
/// the task resynchronises.
fn sharded_messages(rx: tokio::sync::mpsc::UnboundedReceiver<PushInfo>) -> Messages {
    Box::pin(futures_util::stream::unfold(
        (rx, false),
        |(mut rx, mut subscribed)| async move {
            loop {
                let push = rx.recv().await?;
                match push.kind {
                    PushKind::SMessage | PushKind::Message => {
                        if let Some(msg) = Msg::from_push_info(push) {
                            return Some((msg, (rx, subscribed)));
                        }
                    }
                    PushKind::SSubscribe if !subscribed => subscribed = true,
                    PushKind::SSubscribe | PushKind::Disconnection => return None,
                    _ => {}
                }
            }
        },
    ))
}

/// A connection for commands and scripts, in either mode.
pub(crate) enum Con {
    /// To one server.
    Single(MultiplexedConnection),
    /// To a cluster: each command goes to its key's slot's master.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Con {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Con::Single(con) => con.req_packed_command(cmd),
            Con::Cluster(con) => con.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Con::Single(con) => con.req_packed_commands(pipeline, offset, count),
            Con::Cluster(con) => con.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Con::Single(con) => con.get_db(),
            Con::Cluster(con) => con.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(urls: &[&str]) -> Result<Server, FleetError> {
        let urls: Vec<String> = urls.iter().map(|u| (*u).to_owned()).collect();
        Server::cluster(&urls, &TlsSettings::default())
    }

    fn field(e: FleetError) -> &'static str {
        match e {
            FleetError::Invalid { field, .. } => field,
            other => panic!("not a bad setting: {other}"),
        }
    }

    #[test]
    fn a_cluster_needs_urls_of_one_valid_scheme() {
        assert!(matches!(
            cluster(&["redis://10.0.0.1:6379", "redis://10.0.0.2:6379"]),
            Ok(Server::Cluster { .. })
        ));
        assert_eq!(field(cluster(&[]).err().unwrap()), "urls");
        assert_eq!(field(cluster(&["http://10.0.0.1"]).err().unwrap()), "url");
        let e = cluster(&["redis://u:secret@10.0.0.1:6379", "redis://10.0.0.2:6379#x"])
            .err()
            .unwrap();
        assert!(!e.to_string().contains("secret"), "{e}");
        if cfg!(feature = "tls") {
            let e = cluster(&["redis://10.0.0.1:6379", "rediss://10.0.0.2:6379"])
                .err()
                .unwrap();
            assert!(e.to_string().contains("one scheme"), "{e}");
        }
    }

    #[test]
    fn a_cluster_publishes_sharded_and_one_server_plain() {
        assert_eq!(
            cluster(&["redis://10.0.0.1:6379"]).unwrap().publish(),
            Publish::Sharded
        );
        let single = Server::single("redis://10.0.0.1:6379", &TlsSettings::default()).unwrap();
        assert_eq!(single.publish(), Publish::Plain);
    }
}
