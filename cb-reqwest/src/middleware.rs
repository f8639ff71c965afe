//! The middleware: admission before the request is sent, the result counted
//! when its answer (or error) comes back.

use std::fmt;
use std::sync::{Arc, OnceLock};

use cb_runtime::{CallError, Config, Family, Outcome, Preset, Registry};
use http::Extensions;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use crate::classify::{Judge, Rule};

/// A user's key rule, as `.key_with(f)` takes it.
type KeyRule = Arc<dyn Fn(&Request) -> Option<String> + Send + Sync>;

/// What the family is made from, if it does not exist yet.
#[derive(Clone, Debug)]
enum Make {
    Preset(Preset),
    Config(Config),
}

/// A [`Middleware`] that puts every request through the circuit breaker of
/// its host (or of its [`key_with`](Self::key_with) key), one breaker per
/// key in the family named at [`new`](Self::new); see the
/// [crate documentation](crate).
///
/// Admitted requests come back unchanged (their responses, or their errors as
/// [`reqwest_middleware::Error::Reqwest`]). A refused one is never sent: it
/// ends with [`reqwest_middleware::Error::Middleware`] holding the
/// [`BreakerError`](cb_runtime::BreakerError), as does one abandoned at the
/// breaker's `call_timeout`.
///
/// ```
/// use std::time::Duration;
/// use cb_reqwest::CircuitBreakerMiddleware;
/// use cb_runtime::{Config, Outcome};
///
/// // One breaker per model, named by a header; a 404 (a model that does not
/// // exist) opens nothing, a 409 does.
/// let middleware = CircuitBreakerMiddleware::new("llm-doc")
///     .config(Config::builder().failure_threshold(5).open_duration(Duration::from_secs(30)).build()?)
///     .key_with(|request| {
///         let model = request.headers().get("x-model")?;
///         model.to_str().ok().map(str::to_owned)
///     })
///     .classify_with(|result| match result {
///         Ok(response) if response.status() == 409 => Outcome::Failure,
///         other => cb_reqwest::default_classify(other),
///     });
/// assert_eq!(middleware.family().name(), "llm-doc");
/// # Ok::<(), cb_runtime::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct CircuitBreakerMiddleware {
    name: String,
    make: Make,
    registry: &'static Registry,
    /// Fetched from (or made in) the registry on first use.
    family: OnceLock<Arc<Family>>,
    key: Option<KeyRule>,
    rule: Option<Rule>,
}

impl CircuitBreakerMiddleware {
    /// A middleware whose breakers are the family `name` of the global
    /// [`registry()`](cb_runtime::registry), made from
    /// [`Preset::HttpApi`] (then the config file and the environment) unless
    /// [`preset`](Self::preset) or [`config`](Self::config) says otherwise,
    /// and if it does not exist yet.
    ///
    /// The family is looked up on the first request (or the first
    /// [`family`](Self::family)): every middleware of one name shares it,
    /// and the first configuration wins.
    pub fn new(name: &str) -> Self {
        CircuitBreakerMiddleware {
            name: name.to_owned(),
            make: Make::Preset(Preset::HttpApi),
            registry: cb_runtime::registry(),
            family: OnceLock::new(),
            key: None,
            rule: None,
        }
    }

    /// The family is made from `preset` (and the config file's
    /// `[presets.<preset>]` table) if it does not exist yet.
    pub fn preset(mut self, preset: Preset) -> Self {
        self.make = Make::Preset(preset);
        self.family = OnceLock::new();
        self
    }

    /// The family is made from `config` if it does not exist yet.
    pub fn config(mut self, config: Config) -> Self {
        self.make = Make::Config(config);
        self.family = OnceLock::new();
        self
    }

    /// The family lives in `registry` instead of the global one.
    pub fn registry(mut self, registry: &'static Registry) -> Self {
        self.registry = registry;
        self.family = OnceLock::new();
        self
    }

    /// `f` chooses each request's key (a model named in a header or the
    /// path, a tenant); `None` falls back to [`default_key`](crate::default_key).
    pub fn key_with(mut self, f: impl Fn(&Request) -> Option<String> + Send + Sync + 'static) -> Self {
        self.key = Some(Arc::new(f));
        self
    }

    /// `f` decides how each request's result counts, instead of
    /// [`default_classify`](crate::default_classify). A response it calls
    /// [`Outcome::Throttled`] still opens the circuit for its
    /// [`retry_after`](crate::retry_after), and a 503 it calls a failure too.
    pub fn classify_with(
        mut self,
        f: impl Fn(&Result<Response, reqwest_middleware::Error>) -> Outcome + Send + Sync + 'static,
    ) -> Self {
        self.rule = Some(Arc::new(f));
        self
    }

    /// The family of breakers, one per key: from the registry, made there
    /// now if it does not exist yet.
    pub fn family(&self) -> &Arc<Family> {
        self.family.get_or_init(|| match &self.make {
            Make::Preset(preset) => self.registry.family_or_insert_preset(&self.name, *preset),
            Make::Config(config) => self.registry.family_or_insert(&self.name, || config.clone()),
        })
    }

    /// The key `request` goes through.
    fn key_of(&self, request: &Request) -> String {
        self.key
            .as_ref()
            .and_then(|f| f(request))
            .unwrap_or_else(|| crate::default_key(request))
    }
}

#[async_trait::async_trait]
impl Middleware for CircuitBreakerMiddleware {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let breaker = self.family().get_or_insert(&self.key_of(&request));
        let permit = match breaker.try_acquire_owned() {
            Ok(permit) => permit,
            // Never sent.
            Err(refusal) => return Err(reqwest_middleware::Error::Middleware(refusal.into())),
        };
        // The breaker's `call_timeout` applies; a panic below counts as a
        // failure, and a dropped request gives the permit back, counting nothing.
        let judge = Judge {
            rule: self.rule.as_ref(),
        };
        match permit.run_classified(next.run(request, extensions), judge).await {
            Ok(response) => Ok(response),
            Err(CallError::Inner(error)) => Err(error),
            Err(CallError::Rejected(e) | CallError::Timeout(e)) => {
                Err(reqwest_middleware::Error::Middleware(e.into()))
            }
        }
    }
}

impl fmt::Debug for CircuitBreakerMiddleware {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerMiddleware")
            .field("name", &self.name)
            .field("make", &self.make)
            .field("key_with", &self.key.is_some())
            .field("classify_with", &self.rule.is_some())
            .finish_non_exhaustive()
    }
}
