//! Transition events from every breaker of a registry, for alerting and for
//! keeping a log of transitions.
//!
//! [`Registry::subscribe`](crate::Registry::subscribe) hands out an [`Events`]
//! receiver. Each subscriber gets every event sent after it subscribed; one
//! that falls more than [`CAPACITY`] events behind skips the oldest and can
//! tell how many it missed ([`Events::missed`]). Sending never blocks a
//! breaker, and with no subscriber nothing is built.
//!
//! ```
//! use cb_runtime::{CircuitBreaker, Config, Registry, State};
//! use std::sync::Arc;
//!
//! let registry = Registry::new();
//! let mut events = registry.subscribe();
//! let breaker = registry.get_or_insert("payments", || Config::builder().failure_threshold(1).build().unwrap());
//! breaker.force_open();
//!
//! let event = events.try_recv().expect("one transition");
//! assert_eq!((event.name, event.from, event.to), ("payments", State::Closed, State::ForcedOpen));
//! assert_eq!(event.stats.state, State::ForcedOpen);
//! ```

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use futures_core::Stream;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use std::sync::{Arc, Weak};

use crate::breaker::CircuitBreaker;
use crate::hook::Hook;
use crate::state::State;
use crate::stats::Stats;
use crate::transition::Transition;

/// How many events a subscriber may fall behind before it misses some.
pub const CAPACITY: usize = 1024;

/// One transition of one breaker, with the breaker's stats just after it.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Event {
    /// The breaker's name (a keyed breaker's is its family's).
    pub name: &'static str,
    /// A keyed breaker's key; `None` for an unkeyed breaker.
    pub key: Option<Arc<str>>,
    /// The state it left.
    pub from: State,
    /// The state it entered.
    pub to: State,
    /// When, on the wall clock.
    pub time: SystemTime,
    /// The breaker's stats just after the transition (the window is cleared
    /// on opening: see `transition` for the counts that tripped it).
    pub stats: Stats,
    /// Everything the breaker said about the transition: the reason, how long
    /// it stays open, the window's counts that tripped it, the calls rejected
    /// while it was open.
    pub transition: Transition,
}

impl Event {
    pub(crate) fn new(transition: &Transition, stats: Stats) -> Self {
        Event {
            name: transition.name,
            key: transition.key.clone(),
            from: transition.from,
            to: transition.to,
            time: transition.wall_time,
            stats,
            transition: transition.clone(),
        }
    }

    /// The failure rate of the window that tripped the circuit, on opening
    /// from closed.
    pub fn failure_rate(&self) -> Option<f64> {
        let t = &self.transition;
        (t.calls_in_window > 0).then(|| t.failures_in_window as f64 / t.calls_in_window as f64)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.transition, f)
    }
}

/// The registry's hook that sends every breaker's transitions to the
/// subscribers: one channel per registry.
pub(crate) struct EventHook {
    sender: broadcast::Sender<Event>,
}

impl EventHook {
    pub(crate) fn new() -> Self {
        EventHook {
            sender: broadcast::channel(CAPACITY).0,
        }
    }

    /// A new subscription.
    pub(crate) fn subscribe(&self) -> Events {
        Events::new(self.sender.subscribe())
    }
}

impl Hook for EventHook {
    fn attach(&self, breaker: &Arc<CircuitBreaker>) {
        let weak: Weak<CircuitBreaker> = Arc::downgrade(breaker);
        let sender = self.sender.clone();
        breaker.on_transition(move |t| {
            // With no subscriber, nothing is built.
            if sender.receiver_count() > 0 {
                if let Some(b) = weak.upgrade() {
                    let _ = sender.send(Event::new(t, b.stats()));
                }
            }
        });
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

/// A subscription to a registry's transition events.
///
/// Receive with [`recv`](Self::recv) (async), [`try_recv`](Self::try_recv),
/// [`blocking_recv`](Self::blocking_recv), or turn it into a
/// [`Stream`] with [`into_stream`](Self::into_stream).
#[derive(Debug)]
pub struct Events {
    rx: broadcast::Receiver<Event>,
    missed: u64,
}

impl Events {
    pub(crate) fn new(rx: broadcast::Receiver<Event>) -> Self {
        Events { rx, missed: 0 }
    }

    /// The next event; `None` once the registry is gone.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(n)) => self.missed += n,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.try_recv() {
                Ok(event) => return Some(event),
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.missed += n,
                Err(_) => return None,
            }
        }
    }

    /// The next event, blocking this thread (not for use inside an async runtime).
    pub fn blocking_recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.blocking_recv() {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(n)) => self.missed += n,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Events this subscriber skipped because it fell more than [`CAPACITY`] behind.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// The events as a [`Stream`] (events missed by
    /// falling behind are skipped).
    pub fn into_stream(self) -> EventStream {
        EventStream {
            inner: BroadcastStream::new(self.rx),
        }
    }
}

/// A registry's transition events as a [`Stream`]; see [`Events::into_stream`].
#[derive(Debug)]
pub struct EventStream {
    inner: BroadcastStream<Event>,
}

impl Stream for EventStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        loop {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(_)))) => continue,
                Poll::Ready(Some(Ok(event))) => return Poll::Ready(Some(event)),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
