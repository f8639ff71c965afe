//! The admin status page (`GET /`) in a real browser: headless Chromium,
//! driven through chromedriver (WebDriver) by fantoccini.
//!
//! The test starts chromedriver itself on a free loopback port and the admin
//! router on another, and checks that a breaker that trips shows as open
//! within a few seconds, that reset without a token and with a wrong token
//! shows the 401 refusal, that reset with the token closes it, that a
//! router without a token shows the 403, and that a hostile name renders as
//! text, that a throttled breaker shows as "Throttled", apart from open, and
//! that the last health check and a ramp's admitted share are shown.
//! It saves a screenshot with an open, a throttled, a half-open and a closed
//! breaker and prints its path.
//!
//! Without `chromium` and `chromedriver` on the `PATH` (or named by
//! `CB_CHROMIUM` / `CB_CHROMEDRIVER`) it prints that it was skipped and why,
//! and passes, unless `CB_REQUIRE_BROWSER=1`, as in CI, where it fails.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cb_runtime::admin::{router, AdminAuth};
use cb_runtime::clock::ManualClock;
use cb_runtime::{CircuitBreaker, Config, Registry, State, Window};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const TOKEN: &str = "s3cret-operator-token";
/// A name that would run script if the page wrote it as HTML.
const HOSTILE: &str = r#"<script>alert("pwned")</script><img src=x onerror="alert(1)">&amp;"#;
/// How long the page may take to show a change: it refreshes every 2 s.
const SHOWS_WITHIN: Duration = Duration::from_secs(8);

type Outcome<T = ()> = Result<T, String>;

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

fn tool(var: &str, names: &[&str]) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)).filter(|p| p.is_file()),
        _ => on_path(names),
    }
}

/// chromedriver, killed when dropped, with the browser's profile directory.
struct Driver {
    child: Child,
    url: String,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

async fn start_driver(chromedriver: &Path) -> Outcome<Driver> {
    let port = cb_fleet::testing::free_port();
    let profile = std::env::temp_dir().join(format!(
        "cb-status-page-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&profile).map_err(|e| format!("profile dir: {e}"))?;
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", chromedriver.display()))?;
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        profile,
    };
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let status = format!("{}/status", driver.url);
    eventually(
        "chromedriver answers /status",
        Duration::from_secs(20),
        || async {
            match http.get(&status).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        },
    )
    .await?;
    Ok(driver)
}

async fn start_browser(driver: &Driver, chromium: &Path) -> Outcome<Client> {
    let args = [
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--no-proxy-server".to_owned(),
        "--window-size=1400,900".to_owned(),
        format!("--user-data-dir={}", driver.profile.display()),
    ];
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": chromium.display().to_string(), "args": args },
        "unhandledPromptBehavior": "ignore",
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .map_err(|e| format!("cannot open a WebDriver session: {e}"))
}

/// Serves the admin router for `registry` on a free loopback port.
async fn serve(registry: &'static Registry, auth: AdminAuth) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(registry, auth)).await.unwrap() });
    format!("http://{addr}/")
}

/// Polls `check` every 100 ms until it is `Ok`, for at most `within`.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> Outcome<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("{what}: not within {within:?}; last: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn wd<T>(r: Result<T, fantoccini::error::CmdError>) -> Outcome<T> {
    r.map_err(|e| format!("WebDriver: {e}"))
}

/// The page's rows: name, `data-state`, the state's word and its colour.
#[derive(Debug)]
struct Row {
    name: String,
    state: String,
    word: String,
    colour: String,
    name_children: u64,
    open_left: String,
}

async fn rows(client: &Client) -> Outcome<Vec<Row>> {
    let v = wd(client
        .execute(
            "return Array.from(document.querySelectorAll('#breakers tbody tr')).map(tr => {
                const badge = tr.querySelector('.state');
                const name = tr.querySelector('td.name');
                return [tr.getAttribute('data-name'), tr.getAttribute('data-state'), badge.textContent,
                        getComputedStyle(badge).color, name.childElementCount,
                        tr.querySelector('td.open-left').textContent];
            });",
            vec![],
        )
        .await)?;
    let rows = v.as_array().ok_or("rows: not an array")?;
    Ok(rows
        .iter()
        .map(|r| Row {
            name: r[0].as_str().unwrap_or_default().to_owned(),
            state: r[1].as_str().unwrap_or_default().to_owned(),
            word: r[2].as_str().unwrap_or_default().to_owned(),
            colour: r[3].as_str().unwrap_or_default().to_owned(),
            name_children: r[4].as_u64().unwrap_or(u64::MAX),
            open_left: r[5].as_str().unwrap_or_default().to_owned(),
        })
        .collect())
}

async fn row_of(client: &Client, name: &str) -> Outcome<Row> {
    rows(client)
        .await?
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| format!("no row for `{name}`"))
}

async fn shows_state(client: &Client, name: &str, state: &str, word: &str) -> Outcome<Row> {
    eventually(&format!("`{name}` shows as {word}"), SHOWS_WITHIN, || async {
        let row = row_of(client, name).await?;
        if row.state == state && row.word == word {
            Ok(row)
        } else {
            Err(format!("{row:?}"))
        }
    })
    .await
}

/// The row element of breaker `name`, found by its `data-name` attribute.
async fn row_element(client: &Client, name: &str) -> Outcome<Element> {
    for tr in wd(client.find_all(Locator::Css("#breakers tbody tr")).await)? {
        if wd(tr.attr("data-name").await)?.as_deref() == Some(name) {
            return Ok(tr);
        }
    }
    Err(format!("no row element for `{name}`"))
}

/// Clicks `action` on `name`'s row and answers the dialog with `token`
/// (typed when the dialog asks for one), then returns the notice shown.
async fn act(client: &Client, name: &str, action: &str, token: Option<&str>) -> Outcome<String> {
    // Clear the previous notice so the next one is this action's.
    wd(client
        .execute("document.getElementById('notice').hidden = true; document.getElementById('notice').textContent = '';", vec![])
        .await)?;
    // The rows are rebuilt on every refresh: a stale element is looked up again.
    eventually(&format!("click {action} on `{name}`"), SHOWS_WITHIN, || async {
        let row = row_element(client, name).await?;
        let button = wd(row
            .find(Locator::Css(&format!("button[data-action='{action}']")))
            .await)?;
        wd(button.click().await)
    })
    .await?;
    let dialog = wd(client.find(Locator::Id("dialog")).await)?;
    eventually("the dialog opens", SHOWS_WITHIN, || async {
        wd(dialog.is_displayed().await)?
            .then_some(())
            .ok_or_else(|| "hidden".to_owned())
    })
    .await?;
    let title = wd(wd(client.find(Locator::Id("dialog-title")).await)?.text().await)?;
    if !title.contains(name) {
        return Err(format!("the dialog's title `{title}` does not name `{name}`"));
    }
    if let Some(token) = token {
        let field = wd(client.find(Locator::Id("token")).await)?;
        wd(field.send_keys(token).await)?;
    }
    wd(wd(client.find(Locator::Id("dialog-confirm")).await)?
        .click()
        .await)?;
    eventually("a notice after the action", SHOWS_WITHIN, || async {
        let notice = wd(client.find(Locator::Id("notice")).await)?;
        let text = wd(notice.text().await)?;
        if wd(notice.is_displayed().await)? && !text.is_empty() {
            Ok(text)
        } else {
            Err("no notice yet".to_owned())
        }
    })
    .await
}

fn expect(ok: bool, why: impl Into<String>) -> Outcome {
    if ok {
        Ok(())
    } else {
        Err(why.into())
    }
}

/// The breakers: `payments` (tripped by the test, open for a minute), `search`
/// (half-open on a manual clock), `openai` (closed, with traffic) and one with
/// a hostile name.
async fn fixtures(registry: &'static Registry, clock: &ManualClock) -> Arc<CircuitBreaker> {
    let payments = registry.get_or_insert("payments", || {
        Config::builder()
            .failure_threshold(3)
            .open_duration(Duration::from_secs(60))
            .build()
            .unwrap()
    });
    let search = registry.get_or_insert("search", || {
        Config::builder()
            .failure_threshold(2)
            .open_duration(Duration::from_secs(30))
            .clock(clock.clock())
            .build()
            .unwrap()
    });
    for _ in 0..2 {
        let _ = search.call(async { Err::<(), _>("index down") }).await;
    }
    clock.advance(Duration::from_secs(31));
    let openai = registry.get_or_insert("openai", || {
        Config::builder()
            .sliding_window(Window::Count(20))
            .minimum_calls(5)
            .build()
            .unwrap()
    });
    for i in 0..10 {
        let _ = openai
            .call(async move {
                if i % 5 == 0 {
                    Err("rate limited")
                } else {
                    Ok(())
                }
            })
            .await;
    }
    registry.get_or_insert(HOSTILE, Config::default);
    // `anthropic` answered 429: open for a minute, throttled, not failing.
    let anthropic = registry.get_or_insert("anthropic", || {
        Config::builder()
            .throttle_duration(Duration::from_secs(60))
            .build()
            .unwrap()
    });
    anthropic
        .try_acquire()
        .unwrap()
        .record_outcome(cb_runtime::Outcome::Throttled);
    // A family of keyed breakers: `gpt-4o` open, `gpt-4o-mini` closed.
    let llm = registry.family_or_insert("llm", || Config::builder().failure_threshold(1).build().unwrap());
    let _ = llm
        .get_or_insert("gpt-4o")
        .call(async { Err::<(), _>("outage") })
        .await;
    let _ = llm
        .get_or_insert("gpt-4o-mini")
        .call(async { Ok::<_, ()>(()) })
        .await;
    // `inventory`: open, and its health check fails every 100 ms.
    let inventory = registry.get_or_insert("inventory", || {
        Config::builder()
            .failure_threshold(1)
            .open_duration(Duration::from_secs(3600))
            .health_check_interval(Duration::from_millis(100))
            .build()
            .unwrap()
    });
    inventory.set_health_check(|| async { false });
    let _ = inventory.call(async { Err::<(), _>("down") }).await;
    // `catalog`: closed a moment ago by a probe, ramping up over an hour
    // on the manual clock (so at 10 % for the whole test).
    let catalog = registry.get_or_insert("catalog", || {
        Config::builder()
            .failure_threshold(1)
            .open_duration(Duration::from_secs(10))
            .ramp_up(Duration::from_secs(3600))
            .clock(clock.clock())
            .build()
            .unwrap()
    });
    let _ = catalog.call(async { Err::<(), _>("down") }).await;
    clock.advance(Duration::from_secs(11));
    let _ = catalog.call(async { Ok::<_, ()>(()) }).await;
    payments
}

/// The text of breaker `name`'s row, once it contains `wanted`.
async fn row_reads(client: &Client, name: &str, wanted: &str) -> Outcome<String> {
    eventually(&format!("`{name}`'s row reads `{wanted}`"), SHOWS_WITHIN, || async {
        let text = wd(client
            .execute(
                "const tr = Array.from(document.querySelectorAll('#breakers tbody tr')).find(t => t.getAttribute('data-name') === arguments[0]);
                 return tr ? tr.textContent : '';",
                vec![json!(name)],
            )
            .await)?;
        let text = text.as_str().unwrap_or_default().to_owned();
        if text.contains(wanted) {
            Ok(text)
        } else {
            Err(format!("it reads `{text}`"))
        }
    })
    .await
}

async fn scenario(
    client: &Client,
    base: &str,
    locked_base: &str,
    registry: &'static Registry,
    payments: &CircuitBreaker,
) -> Outcome {
    // The page and its assets come with a restrictive CSP.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let page = http.get(base).send().await.map_err(|e| e.to_string())?;
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    expect(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        format!("the page's CSP is `{csp}`"),
    )?;

    wd(client.goto(base).await)?;
    let closed = shows_state(client, "payments", "closed", "Closed").await?;

    // The hostile name is text: the cell holds no element, and nothing ran.
    let hostile = row_of(client, HOSTILE).await?;
    expect(
        hostile.name_children == 0,
        format!("the hostile name made elements: {hostile:?}"),
    )?;
    let cell = wd(client
        .execute(
            "const tr = Array.from(document.querySelectorAll('#breakers tbody tr')).find(t => t.getAttribute('data-name') === arguments[0]);
             return [tr.querySelector('td.name').textContent, document.querySelectorAll('#breakers script, #breakers img').length];",
            vec![json!(HOSTILE)],
        )
        .await)?;
    expect(
        cell[0] == json!(HOSTILE),
        format!("the hostile name reads {}", cell[0]),
    )?;
    expect(
        cell[1] == json!(0),
        "the hostile name made a script or img element",
    )?;
    expect(
        client.get_alert_text().await.is_err(),
        "an alert is open: the hostile name ran",
    )?;

    // A breaker that trips shows as open within a few seconds, in words and colour.
    for _ in 0..3 {
        let _ = payments.call(async { Err::<(), _>("card network down") }).await;
    }
    expect(
        payments.state() == State::Open,
        "three failures did not open `payments`",
    )?;
    let open = shows_state(client, "payments", "open", "Open").await?;
    expect(
        open.colour != closed.colour,
        format!("open and closed have one colour: {}", open.colour),
    )?;
    expect(
        open.open_left.ends_with(" s left"),
        format!("time left open reads `{}`", open.open_left),
    )?;
    let half = shows_state(client, "search", "half_open", "Half-open").await?;
    expect(
        half.colour != open.colour && half.colour != closed.colour,
        "half-open has another state's colour",
    )?;
    // A rate limit is its own state on the page: not "Open", another colour.
    let throttled = shows_state(client, "anthropic", "throttled", "Throttled").await?;
    expect(
        throttled.colour != open.colour
            && throttled.colour != closed.colour
            && throttled.colour != half.colour,
        format!("throttled has another state's colour: {}", throttled.colour),
    )?;
    expect(
        throttled.open_left.ends_with(" s left"),
        format!("time left throttled reads `{}`", throttled.open_left),
    )?;

    // Recovery: the last health check, and the share a ramp admits.
    row_reads(client, "inventory", "last check failed").await?;
    row_reads(client, "catalog", "ramping up: 10").await?;

    // Reset without a token: refused with 401, still open.
    let notice = act(client, "payments", "reset", None).await?;
    expect(
        notice.contains("401") && notice.contains("No token was sent"),
        format!("without a token: `{notice}`"),
    )?;
    expect(
        payments.state() == State::Open,
        "reset without a token closed the breaker",
    )?;

    // The screenshot: open, half-open and closed breakers, and the refusal.
    let png = wd(client.screenshot().await)?;
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    std::fs::write(&path, &png).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("status page screenshot: {}", path.display());
    eprintln!("status page screenshot: {}", path.display());

    // A wrong token: 401, and the page forgets it.
    let notice = act(client, "payments", "reset", Some("not-the-token")).await?;
    expect(
        notice.contains("401") && notice.contains("not accepted"),
        format!("with a wrong token: `{notice}`"),
    )?;
    expect(
        payments.state() == State::Open,
        "reset with a wrong token closed the breaker",
    )?;

    // The right token: closed, and the page shows it.
    let notice = act(client, "payments", "reset", Some(TOKEN)).await?;
    expect(notice.contains("done"), format!("with the token: `{notice}`"))?;
    expect(
        payments.state() == State::Closed,
        "reset with the token left the breaker open",
    )?;
    shows_state(client, "payments", "closed", "Closed").await?;

    // The token stays in memory only: not in the URL, storage, cookies or the DOM.
    let leaks = wd(client
        .execute(
            "return [location.href, localStorage.length, sessionStorage.length, document.cookie,
                     document.getElementById('token').value, document.documentElement.outerHTML.includes(arguments[0])];",
            vec![json!(TOKEN)],
        )
        .await)?;
    expect(
        leaks == json!([base, 0, 0, "", "", false]),
        format!("the token leaked: {leaks}"),
    )?;
    // It is remembered for the next action, which asks no token again.
    let notice = act(client, HOSTILE, "force-open", None).await?;
    expect(
        notice.contains("done"),
        format!("a second action with the held token: `{notice}`"),
    )?;
    expect(
        registry.get(HOSTILE).unwrap().state() == State::ForcedOpen,
        "force-open did not apply",
    )?;
    shows_state(client, HOSTILE, "forced_open", "Forced open").await?;

    // A router with no token configured answers 403, shown as such.
    wd(client.goto(locked_base).await)?;
    shows_state(client, "payments", "closed", "Closed").await?;
    let notice = act(client, "payments", "disable", Some(TOKEN)).await?;
    expect(
        notice.contains("403") && notice.contains("disabled"),
        format!("mutations off: `{notice}`"),
    )?;
    expect(payments.state() == State::Closed, "the 403 changed the breaker")?;
    family_scenario(client, base, registry).await
}

/// A family of keyed breakers is one row with its count of open keys, which
/// expands to a row per key; one key and the whole family can be acted on.
async fn family_scenario(client: &Client, base: &str, registry: &'static Registry) -> Outcome {
    let family = registry.family("llm").ok_or("no family `llm`")?;
    wd(client.goto(base).await)?;
    // Closed as a whole, but with a key open: degraded at a glance, the open
    // key named without expanding the row.
    let row = shows_state(client, "llm", "degraded", "Degraded").await?;
    expect(row.open_left == "\u{2014}", format!("the family row: {row:?}"))?;
    let count = wd(client
        .execute(
            "const tr = document.querySelector('#breakers tbody tr.family[data-family=\"llm\"]');
             const cell = tr.querySelector('td.open-keys');
             return [cell.firstChild.textContent, cell.querySelector('.key-list-open').textContent,
                     document.querySelectorAll('tr.key-row').length];",
            vec![],
        )
        .await)?;
    expect(
        count == json!(["1 of 2 keys open", "open: gpt-4o", 0]),
        format!("the family row before expanding: {count}"),
    )?;
    // Expanded, a row per key, under the family.
    let toggle = wd(row_element(client, "llm")
        .await?
        .find(Locator::Css("button.expand"))
        .await)?;
    wd(toggle.click().await)?;
    shows_state(client, "llm \u{203a} gpt-4o", "open", "Open").await?;
    shows_state(client, "llm \u{203a} gpt-4o-mini", "closed", "Closed").await?;
    // One key, then the whole family.
    let notice = act(client, "llm \u{203a} gpt-4o", "reset", Some(TOKEN)).await?;
    expect(notice.contains("done"), format!("reset one key: `{notice}`"))?;
    expect(
        family.get("gpt-4o").map(|b| b.state()) == Some(State::Closed),
        "the key's reset did not apply",
    )?;
    shows_state(client, "llm \u{203a} gpt-4o", "closed", "Closed").await?;
    let notice = act(client, "llm", "force-open", None).await?;
    expect(
        notice.contains("done"),
        format!("force open the family: `{notice}`"),
    )?;
    expect(
        family.state() == State::ForcedOpen
            && family.breakers().iter().all(|b| b.state() == State::ForcedOpen),
        "the family's force-open did not apply to every key",
    )?;
    shows_state(client, "llm", "forced_open", "Forced open").await?;
    shows_state(client, "llm \u{203a} gpt-4o-mini", "forced_open", "Forced open").await?;
    Ok(())
}

/// Served through cb-fleet's admin router: an open below the fleet's open
/// quorum shows as local, with its count, and the mark goes once the fleet
/// opens. Needs redis-server (skipped without it unless CB_REQUIRE_REDIS=1).
async fn fleet_scenario(client: &Client) -> Outcome {
    let Some(server) = cb_fleet::testing::redis_or_skip("status_page_in_headless_chromium (fleet part)")
    else {
        return Ok(());
    };
    let replica = || -> &'static Registry { Box::leak(Box::new(Registry::with_env(Vec::new))) };
    let (ra, rb) = (replica(), replica());
    let join = |registry: &'static Registry, id: &'static str| {
        cb_fleet::Fleet::builder(&server.url())
            .namespace("status-page-quorum")
            .replica_id(id)
            .open_quorum(2)
            .join(registry)
    };
    let fa = Arc::new(join(ra, "a").await.map_err(|e| e.to_string())?);
    let _fb = join(rb, "b").await.map_err(|e| e.to_string())?;
    let config = || {
        Config::builder()
            .failure_threshold(1)
            .open_duration(Duration::from_secs(60))
            .build()
            .unwrap()
    };
    let a = ra.get_or_insert("quorum-pay", config);
    let b = rb.get_or_insert("quorum-pay", config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let admin = cb_fleet::admin::router(Arc::clone(&fa), ra, AdminAuth::bearer(TOKEN));
    tokio::spawn(async move { axum::serve(listener, admin).await.unwrap() });
    let base = format!("http://{addr}/");

    a.try_acquire().unwrap().record(false);
    eventually("a local open", Duration::from_secs(5), || async {
        expect(fa.local_open("quorum-pay").is_some(), "not local yet")
    })
    .await?;
    wd(client.goto(&base).await)?;
    let mark = "return (document.querySelector('#breakers tbody tr[data-name=\"quorum-pay\"] .fleet-local') || {}).textContent || '';";
    eventually("the local mark", Duration::from_secs(5), || async {
        let text = wd(client.execute(mark, vec![]).await)?;
        expect(
            text == json!("local open, awaiting quorum 1/2"),
            format!("the mark: {text}"),
        )
    })
    .await?;
    // A second replica's open reaches the quorum: the fleet's open, no mark.
    b.try_acquire().unwrap().record(false);
    eventually("the fleet's open", Duration::from_secs(5), || async {
        expect(fa.local_open("quorum-pay").is_none(), "still local")
    })
    .await?;
    eventually("the mark gone", Duration::from_secs(5), || async {
        wd(client.refresh().await)?;
        let text = wd(client.execute(mark, vec![]).await)?;
        expect(text == json!(""), format!("the mark: {text}"))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_headless_chromium() {
    let require = std::env::var("CB_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let chromium = tool("CB_CHROMIUM", &["chromium", "chromium-browser", "google-chrome"]);
    let chromedriver = tool("CB_CHROMEDRIVER", &["chromedriver"]);
    let (Some(chromium), Some(chromedriver)) = (chromium.clone(), chromedriver.clone()) else {
        let found = format!(
            "chromium {}, chromedriver {} (install Debian's `chromium` and `chromium-driver`, \
             or name them in CB_CHROMIUM / CB_CHROMEDRIVER)",
            if chromium.is_some() { "found" } else { "not found" },
            if chromedriver.is_some() {
                "found"
            } else {
                "not found"
            },
        );
        assert!(
            !require,
            "CB_REQUIRE_BROWSER=1 and the browser is missing: {found}"
        );
        println!("status_page_in_headless_chromium skipped: {found}");
        eprintln!("status_page_in_headless_chromium skipped: {found}");
        return;
    };

    let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    let clock = ManualClock::new();
    let payments = fixtures(registry, &clock).await;
    let base = serve(registry, AdminAuth::bearer(TOKEN)).await;
    let locked_base = serve(registry, AdminAuth::disabled()).await;

    let driver = start_driver(&chromedriver).await.unwrap();
    let client = start_browser(&driver, &chromium).await.unwrap();
    let mut outcome = scenario(&client, &base, &locked_base, registry, &payments).await;
    if outcome.is_ok() {
        outcome = fleet_scenario(&client).await;
    }
    let _ = client.close().await;
    drop(driver);
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
