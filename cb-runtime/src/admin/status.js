// The cb status page: reads the admin JSON API every couple of seconds and
// renders every breaker. Self-contained, no framework.
//
// Every piece of data from the API reaches the page through textContent or
// setAttribute, never as markup: a breaker named `<script>` shows as text.
// The admin token lives in the variable `token` below and nowhere else: not
// in a URL, a cookie or the browser's storage. Reloading forgets it.
"use strict";

(function () {
  const REFRESH_MS = 2000;
  const STATES = {
    closed: "Closed",
    open: "Open",
    throttled: "Throttled",
    half_open: "Half-open",
    forced_open: "Forced open",
    disabled: "Disabled",
    degraded: "Degraded",
  };
  const ACTIONS = {
    reset: { label: "Reset", verb: "Reset", effect: "closes it and clears its window" },
    "force-open": { label: "Force open", verb: "Force open", effect: "refuses every call until it is reset" },
    disable: { label: "Disable", verb: "Disable", effect: "lets every call through until it is reset" },
  };

  let token = null; // the bearer token, in memory only
  let pending = null; // { label, path: { path, query }, action } waiting in the dialog
  const expanded = new Set(); // the families whose keys are shown
  let lastGood = null; // when the API last answered

  const byId = (id) => document.getElementById(id);

  // An element with its text; data only ever goes in as text.
  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function percent(rate) {
    return typeof rate === "number" ? (rate * 100).toFixed(1) + " %" : "n/a";
  }

  function duration(ms) {
    const s = Math.max(0, ms) / 1000;
    if (s < 60) return s.toFixed(1) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min " + Math.floor(s % 60) + " s";
    return Math.floor(m / 60) + " h " + (m % 60) + " min";
  }

  function stateWord(state) {
    return STATES[state] || String(state);
  }

  function show(id, on) {
    byId(id).hidden = !on;
  }

  function notice(text, kind) {
    const n = byId("notice");
    n.textContent = text;
    n.className = "banner " + kind;
    n.hidden = false;
  }

  // ---- rendering -----------------------------------------------------------

  function totals(stats) {
    const list = el("ul", "totals");
    const items = [
      ["calls", stats.calls],
      ["succeeded", stats.successes],
      ["failed", stats.failures],
      ["timed out", stats.timeouts],
      ["rejected", stats.rejected],
      ["ignored", stats.ignored],
      ["cancelled", stats.cancelled],
      ["throttled", stats.throttled],
      ["slow", stats.slow_calls],
    ];
    // Fallbacks by reason (refusal, timeout, failure, throttled, error); absent from an older server.
    const fallbacks = Object.values(stats.fallbacks || {}).reduce((a, n) => a + n, 0);
    items.push(["fallbacks", fallbacks]);
    // Protection modes; absent from an older server, shown once they count.
    if (stats.saturated > 0 || stats.concurrent_calls > 0) {
      items.push(["saturated", stats.saturated]);
      items.push(["in flight", stats.concurrent_calls]);
    }
    for (const [label, n] of items) {
      list.append(el("li", "total", label + " " + n));
    }
    return list;
  }

  // The state the page shows: an open breaker that waits out a rate limit is
  // "throttled", apart from one open for failures.
  function shownState(b) {
    return b.state === "open" && b.throttled === true ? "throttled" : b.state;
  }

  // The API path of a breaker's actions: an unkeyed breaker's, or one key's of a
  // family. A key goes in the query: as a path segment a key `..` (or `%2e%2e`)
  // would resolve to the whole family's action.
  function breakerPath(b) {
    if (typeof b.key === "string") {
      return { path: "families/" + encodeURIComponent(b.name) + "/key", query: "?key=" + encodeURIComponent(b.key) };
    }
    return { path: "circuit-breakers/" + encodeURIComponent(b.name), query: "" };
  }

  function breakerLabel(b) {
    return typeof b.key === "string" ? b.name + " \u203a " + b.key : b.name;
  }

  function actionCell(label, path) {
    const actions = el("td", "actions");
    for (const [action, a] of Object.entries(ACTIONS)) {
      const button = el("button", "action " + action, a.label);
      button.type = "button";
      button.setAttribute("data-action", action);
      button.addEventListener("click", () => ask(label, path, action));
      actions.append(button);
    }
    return actions;
  }

  function row(b, fetchedAt) {
    const keyed = typeof b.key === "string";
    const shown = shownState(b);
    const tr = el("tr", "state-" + shown + (keyed ? " key-row" : ""));
    tr.setAttribute("data-name", breakerLabel(b));
    tr.setAttribute("data-state", shown);
    if (keyed) {
      tr.setAttribute("data-family", b.name);
      tr.setAttribute("data-key", b.key);
      tr.append(el("td", "name key", b.key));
    } else {
      tr.append(el("td", "name", b.name));
    }

    const state = el("td");
    const badge = el("span", "state", stateWord(shown));
    if (b.open_reason) badge.setAttribute("title", "Reason: " + b.open_reason);
    state.append(badge);
    if (b.open_reason && (b.state === "open" || b.state === "half_open")) {
      state.append(el("div", "reason muted", b.open_reason === "throttled" ? "rate limit, not an outage" : b.open_reason));
    }
    // Shadow mode: it refuses nothing; say so, and what it would have refused.
    if (b.mode === "shadow") {
      tr.setAttribute("data-mode", "shadow");
      state.append(el("div", "shadow", "shadow: would have refused " + b.stats.shadow_rejected));
    }
    // Adaptive throttling: never open; the share of calls it refuses now.
    if (b.trip === "adaptive" && typeof b.stats.refusal_share === "number") {
      state.append(el("div", "adaptive muted", "adaptive: refusing " + percent(b.stats.refusal_share)));
    }
    // Served through cb-fleet's admin router: an open that stays on this
    // replica, below the fleet's open quorum.
    if (b.fleet && b.fleet.open === "local") {
      state.append(el("div", "fleet-local muted", typeof b.fleet.note === "string" ? b.fleet.note :
        "local open, awaiting quorum " + b.fleet.opens + "/" + b.fleet.quorum));
    }
    // The last health check, when the breaker has one: when it ran and how it ended.
    if (b.last_health_check && typeof b.last_health_check.at_ms === "number") {
      const ago = Math.max(0, Date.now() - b.last_health_check.at_ms);
      state.append(el("div", "health-check muted",
        "last check " + (b.last_health_check.passed ? "passed" : "failed") + " " + duration(ago) + " ago"));
    }
    tr.append(state);

    const s = b.stats;
    const inWindow = " (" + s.failures_in_window + " of " + s.calls_in_window + " in window)";
    tr.append(el("td", "num failure-rate", percent(s.failure_rate) + inWindow));
    tr.append(el("td", "num slow-rate", percent(s.slow_call_rate)));

    const t = el("td");
    t.append(totals(s));
    tr.append(t);

    const left = el("td", "num open-left");
    if (typeof b.open_remaining_ms === "number") {
      left.setAttribute("data-deadline", String(fetchedAt + b.open_remaining_ms));
      left.textContent = duration(b.open_remaining_ms) + " left";
    } else if (b.state === "forced_open") {
      left.textContent = "until reset";
    } else if (typeof b.ramp_share === "number") {
      left.textContent = "ramping up: " + percent(b.ramp_share) + " admitted";
    } else if (b.state === "half_open") {
      left.textContent = "probing (" + s.half_open_in_flight + " in flight)" +
        (b.throttled === true ? " after a rate limit" : "");
    } else {
      left.textContent = "\u2014";
    }
    tr.append(left);

    tr.append(actionCell(breakerLabel(b), breakerPath(b)));
    return tr;
  }

  // A family of keyed breakers: one row, with a count of open keys, that
  // expands to a row per key.
  function familyRows(f, fetchedAt) {
    const keys = Array.isArray(f.keys) ? f.keys : [];
    // A family closed as a whole but with keys open, throttled or probing
    // reads as degraded at a glance, not as a green row.
    const shown = f.status === "degraded" ? "degraded" : f.state;
    const tr = el("tr", "family state-" + shown);
    tr.setAttribute("data-name", f.name);
    tr.setAttribute("data-family", f.name);
    tr.setAttribute("data-state", shown);
    const open = expanded.has(f.name);

    const name = el("td", "name");
    const toggle = el("button", "expand", (open ? "\u25be " : "\u25b8 ") + f.name);
    toggle.type = "button";
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
    toggle.addEventListener("click", () => {
      if (expanded.has(f.name)) expanded.delete(f.name);
      else expanded.add(f.name);
      refreshNow();
    });
    name.append(toggle);
    tr.append(name);

    const state = el("td");
    state.append(el("span", "state", stateWord(shown)));
    tr.append(state);
    const count = el("td", "num open-keys", f.open_keys + " of " + keys.length + " keys open");
    count.setAttribute("colspan", "3");
    // The keys that are not closed, named without expanding the row.
    const named = [
      ["open", Array.isArray(f.open) ? f.open : []],
      ["throttled", Array.isArray(f.throttled) ? f.throttled : []],
      ["half-open", Array.isArray(f.half_open) ? f.half_open : []],
    ];
    for (const [word, list] of named) {
      if (list.length === 0) continue;
      const shownKeys = list.slice(0, 5).join(", ") + (list.length > 5 ? " and " + (list.length - 5) + " more" : "");
      count.append(el("div", "key-list key-list-" + word, word + ": " + shownKeys));
    }
    const unguarded = f.unguarded_calls && typeof f.unguarded_calls.full === "number" ?
      f.unguarded_calls.full + f.unguarded_calls.bad_key : 0;
    if (unguarded > 0 || f.evictions > 0) {
      count.append(el("div", "muted", f.evictions + " evicted, " + unguarded + " calls unguarded"));
    }
    tr.append(count);
    const left = el("td", "num open-left");
    if (typeof f.open_remaining_ms === "number") {
      left.setAttribute("data-deadline", String(fetchedAt + f.open_remaining_ms));
      left.textContent = duration(f.open_remaining_ms) + " left";
    } else {
      left.textContent = "\u2014";
    }
    tr.append(left);
    tr.append(actionCell(f.name + " (every key)", { path: "families/" + encodeURIComponent(f.name), query: "" }));
    const rows = [tr];
    if (open) {
      for (const k of keys) rows.push(row(k, fetchedAt));
    }
    return rows;
  }

  function render(data) {
    const fetchedAt = Date.now();
    const breakers = Array.isArray(data.circuit_breakers) ? data.circuit_breakers : [];
    const families = Array.isArray(data.families) ? data.families : [];
    const counts = {};
    for (const b of breakers) counts[shownState(b)] = (counts[shownState(b)] || 0) + 1;
    for (const f of families) {
      for (const k of Array.isArray(f.keys) ? f.keys : []) counts[shownState(k)] = (counts[shownState(k)] || 0) + 1;
    }
    const parts = Object.keys(STATES)
      .filter((s) => counts[s])
      .map((s) => counts[s] + " " + stateWord(s).toLowerCase());
    byId("summary").textContent =
      breakers.length + (breakers.length === 1 ? " breaker" : " breakers") +
      (families.length ? ", " + families.length + (families.length === 1 ? " family" : " families") : "") +
      (parts.length ? ": " + parts.join(", ") : "");

    const fleet = byId("fleet");
    if (data.fleet && typeof data.fleet === "object") {
      fleet.replaceChildren(
        el("span", null, "Fleet \u201c" + data.fleet.namespace + "\u201d: "),
        el("span", data.fleet.connected ? "fleet-up" : "fleet-down",
          data.fleet.connected ? "connected" : "disconnected (breakers run on local state)"),
      );
      fleet.hidden = false;
    } else {
      fleet.hidden = true;
    }

    const body = document.querySelector("#breakers tbody");
    const rows = breakers.map((b) => row(b, fetchedAt));
    for (const f of families) rows.push(...familyRows(f, fetchedAt));
    body.replaceChildren(...rows);
    show("empty", breakers.length === 0 && families.length === 0);
  }

  // Counts the time left open down between refreshes.
  function tick() {
    const now = Date.now();
    for (const cell of document.querySelectorAll("td.open-left[data-deadline]")) {
      const left = Number(cell.getAttribute("data-deadline")) - now;
      cell.textContent = left > 0 ? duration(left) + " left" : "probing soon";
    }
  }

  async function refresh() {
    try {
      const response = await fetch("circuit-breakers", {
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      if (!response.ok) throw new Error("HTTP " + response.status + " " + response.statusText);
      render(await response.json());
      lastGood = new Date();
      byId("updated").textContent = "Updated " + lastGood.toLocaleTimeString() + ", every " + REFRESH_MS / 1000 + " s.";
      show("load-error", false);
    } catch (e) {
      const since = lastGood ? " Showing data from " + lastGood.toLocaleTimeString() + "." : "";
      byId("load-error").textContent = "Could not read the breakers: " + e.message + "." + since;
      show("load-error", true);
    } finally {
      setTimeout(refresh, REFRESH_MS);
    }
  }

  // ---- actions -------------------------------------------------------------

  function ask(name, path, action) {
    pending = { name, path, action };
    const a = ACTIONS[action];
    byId("dialog-title").textContent = a.verb + " \u201c" + name + "\u201d?";
    byId("dialog-what").textContent = a.verb + " " + a.effect + ".";
    show("token-field", token === null);
    show("token-held", token !== null);
    byId("token").value = "";
    show("dialog", true);
    (token === null ? byId("token") : byId("dialog-confirm")).focus();
  }

  function closeDialog() {
    pending = null;
    byId("token").value = "";
    show("dialog", false);
  }

  function setToken(value) {
    token = value;
    show("token-state", token !== null);
  }

  async function confirmAction() {
    if (!pending) return;
    const { name, path, action } = pending;
    if (token === null) {
      // An empty field sends no Authorization header: the server refuses it.
      setToken(byId("token").value.trim() === "" ? null : byId("token").value.trim());
    }
    const sent = token;
    closeDialog();
    const headers = { Accept: "application/json" };
    if (sent !== null) headers.Authorization = "Bearer " + sent;
    let response;
    try {
      response = await fetch(
        path.path + "/" + action + path.query,
        { method: "POST", headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" },
      );
    } catch (e) {
      notice(ACTIONS[action].verb + " \u201c" + name + "\u201d failed: " + e.message, "error");
      return;
    }
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    const reason = body && body.error && body.error.message ? ": " + body.error.message : "";
    if (response.ok) {
      notice(
        ACTIONS[action].verb + " \u201c" + name + "\u201d: done, " +
          stateWord(body && body.previous_state).toLowerCase() + " \u2192 " +
          stateWord(body && body.state).toLowerCase() + ".",
        "ok",
      );
    } else if (response.status === 401) {
      setToken(null);
      notice(
        "Refused: 401 Unauthorized" + reason + ". " +
          (sent === null ? "No token was sent." : "The token was not accepted and has been forgotten."),
        "error",
      );
    } else if (response.status === 403) {
      notice("Refused: 403 Forbidden" + reason + ".", "error");
    } else {
      notice(ACTIONS[action].verb + " \u201c" + name + "\u201d failed: HTTP " + response.status + reason + ".", "error");
    }
    refreshNow();
  }

  let refreshing = null;
  function refreshNow() {
    // One extra read after an action, without waiting for the next tick.
    if (refreshing) return;
    refreshing = fetch("circuit-breakers", { cache: "no-store", headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : null))
      .then((data) => data && render(data))
      .catch(() => {})
      .finally(() => (refreshing = null));
  }

  document.addEventListener("DOMContentLoaded", () => {
    byId("dialog-confirm").addEventListener("click", confirmAction);
    byId("dialog-cancel").addEventListener("click", closeDialog);
    byId("forget-token").addEventListener("click", () => {
      setToken(null);
      notice("The admin token was forgotten.", "ok");
    });
    byId("token").addEventListener("keydown", (e) => {
      if (e.key === "Enter") confirmAction();
      if (e.key === "Escape") closeDialog();
    });
    setInterval(tick, 250);
    refresh();
  });
})();
