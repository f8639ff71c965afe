//! Where a registry's transition history is read back from: a durable log
//! kept outside the process (the `cb-postgres` crate's `Store`), which
//! implements [`TransitionSource`] and is handed to
//! [`Registry::set_transition_source`](crate::Registry::set_transition_source).
//! The admin API's `GET /circuit-breakers/{name}/transitions` answers from it.
//! cb-runtime itself stores no history and knows no database.

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use crate::state::State;

/// One transition as a durable log stored it, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredTransition {
    /// The breaker's name (a keyed breaker's family name).
    pub name: String,
    /// The breaker's key in its family; `None` for an unkeyed breaker.
    pub key: Option<String>,
    /// The state it left.
    pub from: State,
    /// The state it entered.
    pub to: State,
    /// Why, in the words of [`Reason::as_str`](crate::Reason::as_str)
    /// (`"consecutive failures"`, ...), or the log's own word for a state it
    /// applied itself (cb-postgres writes `"restored from the store"`).
    pub reason: String,
    /// The replica whose breaker made the transition.
    pub replica_id: String,
    /// When it happened, on the log's clock (a database's `now()`).
    pub occurred_at: SystemTime,
}

impl StoredTransition {
    /// A stored transition (for implementers of [`TransitionSource`]).
    pub fn new(
        name: impl Into<String>,
        key: Option<String>,
        from: State,
        to: State,
        reason: impl Into<String>,
        replica_id: impl Into<String>,
        occurred_at: SystemTime,
    ) -> Self {
        StoredTransition {
            name: name.into(),
            key,
            from,
            to,
            reason: reason.into(),
            replica_id: replica_id.into(),
            occurred_at,
        }
    }

    /// The [`Reason`](crate::Reason) whose words [`reason`](Self::reason) is,
    /// when it is one.
    pub fn reason(&self) -> Option<crate::Reason> {
        crate::Reason::from_words(&self.reason)
    }
}

/// The future a [`TransitionSource`] answers with.
pub type TransitionsFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<StoredTransition>, String>> + Send + 'a>>;

/// A durable transition log that the admin API reads.
pub trait TransitionSource: Send + Sync + 'static {
    /// A short word for where the history comes from (`"postgres"`), shown
    /// in the admin API's answer.
    fn source(&self) -> &'static str;

    /// The last `limit` transitions of breaker `name` (every key of a
    /// family), newest first; `Err` with a message when the log cannot be
    /// read now.
    fn transitions<'a>(&'a self, name: &'a str, limit: usize) -> TransitionsFuture<'a>;
}
