// The ARR sessions dashboard: reads this app's own API, never ARR directly. No library, no build step.
//
// The function key: the page itself holds no data and needs none; the API calls do. The key comes from
// .../api/dashboard?code=KEY (read once, then removed from the address bar) or from the form the page shows when
// the API answers 401. It is kept in this tab's sessionStorage (so a reload of the tab keeps working; closing the
// tab forgets it), and sent only as the x-functions-key header of this app's API calls. It is never logged, never
// written into the page, never put in a URL or a cookie. Locally (a host without keys) none is needed.
//
// Who you are: the name a person gives (in the start, stop, keep-overnight, override and claim dialogs) is kept in
// localStorage and sent as requestedBy. It is what the page knows of its user; the app records it as given.
//
// Pacing: GET /api/sessions asks ARR each time, so it is read at most every 15 seconds, and not at all while the
// page is hidden. GET /api/pools asks ARR too (which of a pool's sessions are Ready): it is read with it, at the same
// pace. The overrides of the nightly shutdown (Table Storage) are read with them, so that the sessions they keep are
// marked from the same moment. Usage, the budget, the schedules, history and cleanup runs come from Table Storage
// and are read every minute. A start is followed through its ready monitor at the pace the app's Retry-After asks for.
(() => {
  "use strict";

  const SESSIONS_EVERY_MS = 15000;
  const OTHERS_EVERY_MS = 60000;
  const MANUAL_MIN_MS = 5000;        // the refresh button does not read ARR more often than this either
  const MAX_BACKOFF_MS = 120000;
  const USAGE_DAYS = 30;
  const SOON_MINUTES = 10;
  const KEY_ITEM = "arr-dashboard.functionKey";   // sessionStorage: this tab only
  const NAME_ITEM = "arr-dashboard.name";         // localStorage: this browser

  // -- storage ------------------------------------------------------------------------------------------------------
  function store(kind) {
    try {
      return kind === "session" ? window.sessionStorage : window.localStorage;
    } catch {
      return null;  // storage turned off: the page still works, it just does not remember
    }
  }

  function readItem(kind, name) {
    try {
      const s = store(kind);
      return s ? s.getItem(name) : null;
    } catch {
      return null;
    }
  }

  function writeItem(kind, name, value) {
    try {
      const s = store(kind);
      if (!s) return;
      if (value) s.setItem(name, value);
      else s.removeItem(name);
    } catch { /* full or refused: not remembered */ }
  }

  // -- the key ------------------------------------------------------------------------------------------------------
  const script = document.currentScript;
  const apiBase = new URL("../", script ? script.src : new URL("dashboard/", location.href));
  let functionKey = (() => {
    const url = new URL(location.href);
    const value = url.searchParams.get("code");
    if (value !== null) {
      url.searchParams.delete("code");
      history.replaceState(history.state, "", url.pathname + url.search + url.hash);
      if (value) writeItem("session", KEY_ITEM, value);
    }
    return value || readItem("session", KEY_ITEM) || null;
  })();

  const savedName = () => (readItem("local", NAME_ITEM) || "").trim();
  const rememberName = (name) => writeItem("local", NAME_ITEM, name.trim());

  // -- small helpers ----------------------------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  const SVG_NS = "http://www.w3.org/2000/svg";

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("data-") || name.startsWith("aria-") || name === "scope" || name === "role") {
        node.setAttribute(name, String(value));
      } else node[name] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const hidden = (text) => el("span", { class: "visually-hidden", text });
  const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  const timeSecondsFormat = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
  const dayTimeFormat = new Intl.DateTimeFormat(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit" });
  const shortFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", hour: "2-digit",
    minute: "2-digit" });
  const dayFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", timeZone: "UTC" });

  const minutes = (n) => `${numberFormat.format(n)} min`;
  const sessionsText = (n) => `${numberFormat.format(n)} ${n === 1 ? "session" : "sessions"}`;
  const when = (iso) => (iso ? dateTimeFormat.format(new Date(iso)) : "—");

  function money(amount, currency) {
    if (amount === null || amount === undefined) return null;
    try {
      return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(amount);
    } catch {
      return `${amount.toFixed(2)} ${currency}`;
    }
  }

  // "the budget's 90% threshold is crossed" -> "The budget's 90% threshold is crossed." (a problem's detail, said
  // as a sentence of its own).
  function sentence(text) {
    const t = String(text || "").trim();
    if (!t) return "";
    return t[0].toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? "" : ".");
  }

  // -- messages -----------------------------------------------------------------------------------------------------
  let announceTimer = null;
  function announce(text) {
    const region = $("announcer");
    region.textContent = "";
    clearTimeout(announceTimer);
    announceTimer = setTimeout(() => { region.textContent = text; }, 50);
  }

  // What failed, by source ("sessions", "usage", "action", ...); a source's next success clears its message.
  const failures = new Map();

  function renderAlert() {
    const text = [...failures.values()].join(" ");
    if ($("alert").textContent !== text) $("alert").textContent = text;
    $("alert").classList.toggle("shown", text !== "");
  }

  function showError(source, text) {
    failures.set(source, text);
    renderAlert();
  }

  function clearError(source) {
    if (failures.delete(source)) renderAlert();
  }

  // -- the API ------------------------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, title, detail, retryAfter) {
      super(detail ? `${title}: ${detail}` : title);
      this.status = status;
      this.title = title;
      this.detail = detail || "";
      this.retryAfter = retryAfter;
    }
  }

  // A path under /api/, or a link the API gave (nextLink): always sent to this page's own origin, without `code`.
  function apiUrl(pathOrLink, params) {
    const given = new URL(pathOrLink, apiBase);
    const url = new URL(given.pathname + given.search, location.origin);
    url.searchParams.delete("code");
    for (const [name, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
    }
    return url;
  }

  // The answer, when it is a success (2xx); an ApiError otherwise. A 401 asks for the key.
  async function request(pathOrLink, { method = "GET", params, body, extraHeaders } = {}) {
    const headers = { ...(extraHeaders || {}), Accept: "application/json" };
    const sentKey = functionKey;
    if (sentKey) headers["x-functions-key"] = sentKey;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(apiUrl(pathOrLink, params), {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store", credentials: "same-origin", redirect: "error",
      });
    } catch {
      throw new ApiError(0, "The app could not be reached", "check the network and try again");
    }
    if (response.ok) return response;
    const retryAfter = Number(response.headers.get("Retry-After")) || null;
    if (response.status === 401) {
      // A refusal of a key no longer in use (a read still in flight when another key was entered) asks nothing.
      if (sentKey === functionKey) askForKey(functionKey ? "refused" : "missing");
      throw new ApiError(401, "The function key is missing or wrong", "enter it in the form at the top");
    }
    let title = `HTTP ${response.status}`;
    let detail = "";
    try {
      const problem = await response.json();
      title = problem.title || title;
      detail = problem.detail || "";
    } catch { /* not JSON (Azure's own answers have no body) */ }
    throw new ApiError(response.status, title, detail, retryAfter);
  }

  async function api(pathOrLink, options) {
    return (await request(pathOrLink, options)).json();
  }

  // -- asking for the key -------------------------------------------------------------------------------------------
  // `epoch` counts the keys entered: what a refresh begun under an earlier key finds must not steer the current one.
  const keyState = { needed: false, epoch: 0 };

  function askForKey(why) {
    const first = !keyState.needed;
    keyState.needed = true;
    clearTimeout(clock.timer);
    failures.clear();
    renderAlert();
    document.body.classList.add("needs-key");
    $("key-panel").hidden = false;
    $("forget-key").hidden = true;
    $("updated").textContent = "Waiting for the function key";
    $("key-message").textContent = {
      missing: "This app asks for a function key. Enter it to see and manage its sessions.",
      refused: "The app refused that function key. Check it and enter it again.",
      forgotten: "The key is forgotten in this tab. Enter it again to see and manage the sessions.",
    }[why];
    $("key-input").setAttribute("aria-invalid", why === "refused" ? "true" : "false");
    if (first) {
      $("key-input").value = "";
      $("key-input").focus();
      announce($("key-message").textContent);
    }
  }

  function useKey(value) {
    functionKey = value;
    writeItem("session", KEY_ITEM, value);
    keyState.needed = false;
    keyState.epoch += 1;
    document.body.classList.remove("needs-key");
    $("key-panel").hidden = true;
    $("key-input").value = "";
    $("forget-key").hidden = false;
    $("updated").textContent = "Loading…";
    clock.sessionsAt = 0;
    clock.othersAt = 0;
    clock.sessionsEvery = SESSIONS_EVERY_MS;
    historyState.pages = 0;
    refresh();
  }

  function forgetKey() {
    functionKey = null;
    writeItem("session", KEY_ITEM, null);
    askForKey("forgotten");
    for (const id of ["active", "overrides", "pools", "schedules", "history", "runs", "usage-table"]) {
      $(id).tBodies[0].replaceChildren();
    }
    for (const id of ["day-chart", "size-chart", "budget-bar"]) $(id).replaceChildren();
    state.sessions = new Map();
    state.loadedSessions = false;
    state.overrides = [];
    state.pools = [];
    $("pools-panel").hidden = true;
    $("schedules-panel").hidden = true;
    $("budget").hidden = true;
    $("key-input").focus();
  }

  function wireKey() {
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = $("key-input");
      const value = input.value.trim();
      if (!value) {
        input.setAttribute("aria-invalid", "true");
        input.setCustomValidity("Enter the function key.");
        input.reportValidity();
        return;
      }
      input.setCustomValidity("");
      useKey(value);
    });
    $("key-input").addEventListener("input", (event) => event.target.setCustomValidity(""));
    $("forget-key").addEventListener("click", forgetKey);
    $("forget-key").hidden = !functionKey;
  }

  // -- active sessions ----------------------------------------------------------------------------------------------
  const state = {
    sessions: new Map(),   // id -> session view, as last read
    nightly: undefined,    // the list's nightlyShutdown: null (none configured) or {nextAt, timeZone}
    loadedSessions: false,
    readAt: 0,             // Date.now() of the list the table shows
    overrides: [],         // the overrides of the nightly shutdown not yet ended, as last read (longest first)
    overridesKnown: true,  // false: an app from before overrides (their route is a 404)
    pools: [],             // the warm pools of ARR_POOLS, as last read
    poolsKnown: true,      // false: an app from before warm pools (their route is a 404)
  };

  function statusPill(status) {
    return el("span", { class: `pill pill-${status.toLowerCase()}`, text: status });
  }

  function timeLeft(session) {
    if (session.status !== "Ready" || session.remainingMinutes === null) {
      const lease = session.leaseMinutes === null ? "" : ` (lease ${minutes(session.leaseMinutes)})`;
      return el("span", {}, `Not started${lease}`);
    }
    const left = session.remainingMinutes;
    const end = new Date(state.readAt + left * 60000);
    const soon = left <= SOON_MINUTES;
    return el("span", { class: soon ? "warn" : "" },
      `${minutes(left)} left`, el("br"),
      el("span", { class: "small" }, `until ${timeFormat.format(end)}${soon ? " · ending soon" : ""}`));
  }

  // The override that keeps a session out of the nightly shutdown now (the one that lasts longest), or null: one
  // for its id, or one whose labels the session all has. The app decides the same way at each nightly stop.
  function coveringOverride(session) {
    const now = Date.now();
    const labels = session.labels || {};
    const found = state.overrides.filter((o) => new Date(o.until).getTime() > now && (o.sessionId
      ? o.sessionId === session.id
      : Object.keys(o.labels || {}).length > 0 && Object.entries(o.labels).every(([k, v]) => labels[k] === v)));
    return found.reduce((best, o) => (!best || new Date(o.until) > new Date(best.until) ? o : best), null);
  }

  const nextNightlyAt = () => (state.nightly ? new Date(state.nightly.nextAt) : null);

  // True when the next nightly shutdown leaves the session running: kept overnight, or an override lasts past it.
  function passesTheNight(session, cover) {
    const at = nextNightlyAt();
    return Boolean(session.keepAlive || (cover && at && new Date(cover.until) > at));
  }

  // "nightly shutdown stops it Tue 09:00 PM" when that comes before its lease ends and nothing keeps it: the
  // next automatic stop the page can tell (the lease end itself is the "until" above it).
  function nightlyStopHint(session, cover) {
    const at = nextNightlyAt();
    if (!at || passesTheNight(session, cover)) return null;
    if (session.status === "Ready" && session.remainingMinutes !== null
      && state.readAt + session.remainingMinutes * 60000 <= at.getTime()) return null;
    return el("span", { class: "small nightly-stop" }, el("br"),
      `the nightly shutdown stops it ${dayTimeFormat.format(at)}`);
  }

  function cell(label, ...content) {
    return el("td", { "data-label": label, role: "cell" }, ...content);
  }

  function activeRow(session) {
    const cover = coveringOverride(session);
    const tonight = state.nightly && state.overridesKnown && !passesTheNight(session, cover)
      ? el("button", { type: "button", class: "secondary", "data-action": "override", "data-id": session.id },
        "Keep", hidden(` session ${session.id}`), " tonight")
      : null;
    const keep = session.keepAlive
      ? el("button", { type: "button", class: "secondary", "data-action": "keep", "data-id": session.id,
        "data-keep": "false" }, "Don't keep", hidden(` session ${session.id}`), " overnight")
      : el("button", { type: "button", class: "secondary", "data-action": "keep", "data-id": session.id,
        "data-keep": "true" }, "Keep", hidden(` session ${session.id}`), " overnight");
    const actions = el("div", { class: "row-actions" },
      el("button", { type: "button", class: "secondary", "data-action": "extend", "data-id": session.id },
        "Extend", hidden(` session ${session.id}`)),
      tonight,
      keep,
      el("button", { type: "button", class: "danger", "data-action": "stop", "data-id": session.id },
        "Stop", hidden(` session ${session.id}`)));
    return el("tr", { "data-id": session.id, "data-override": cover ? cover.id : null, role: "row" },
      el("th", { scope: "row", role: "rowheader", "data-label": "Session" },
        el("span", { class: "mono", text: session.id })),
      cell("Status", statusPill(session.status),
        session.keepAlive ? el("span", { class: "small" }, " kept overnight") : null,
        cover ? el("span", { class: "small covered" }, el("br"), `kept by an override until ${when(cover.until)}`)
          : null),
      cell("Size", session.size || "—"),
      cell("Time left", timeLeft(session), nightlyStopHint(session, cover)),
      cell("Requested by", session.requestedBy || "not given"),
      cell("Actions", actions));
  }

  function renderActive() {
    const body = $("active").tBodies[0];
    const focused = document.activeElement;
    const focusKey = focused && focused.dataset && focused.dataset.action
      ? [focused.dataset.action, focused.dataset.id] : null;
    const sessions = [...state.sessions.values()].sort((a, b) => (b.createdAt || "").localeCompare(a.createdAt || ""));
    const rows = sessions.map(activeRow);
    if (rows.length === 0) {
      rows.push(el("tr", { class: "empty", role: "row" },
        el("td", { colSpan: 6, role: "cell", text: "No active sessions." })));
    }
    body.replaceChildren(...rows);
    $("active-caption").textContent = `Active sessions: ${sessions.length}`;
    if (focusKey) {
      const again = body.querySelector(`button[data-action="${focusKey[0]}"][data-id="${CSS.escape(focusKey[1])}"]`);
      if (again) again.focus();
    }
  }

  // When the next nightly shutdown runs, in the app's time zone (ARR_TIME_ZONE), with the zone's name.
  function nightlyText(nightly) {
    if (nightly === null) {
      return "No nightly shutdown is configured: sessions run until their lease ends or someone stops them.";
    }
    const at = new Date(nightly.nextAt);
    let local;
    try {
      local = new Intl.DateTimeFormat(undefined, {
        timeZone: nightly.timeZone, weekday: "short", month: "short", day: "numeric", hour: "2-digit",
        minute: "2-digit", timeZoneName: "long",
      }).format(at);
    } catch {
      local = `${dateTimeFormat.format(at)} (your time)`;  // a zone this browser does not know
    }
    const inMinutes = Math.max(0, Math.round((at.getTime() - Date.now()) / 60000));
    const left = inMinutes >= 60 ? `${Math.floor(inMinutes / 60)} h ${inMinutes % 60} min` : minutes(inMinutes);
    return `Next nightly shutdown: ${local} (${nightly.timeZone}), in ${left}. It stops every session that is `
      + "not kept overnight.";
  }

  function renderNightly() {
    const note = $("nightly-note");
    if (state.nightly === undefined) {  // an app that does not say
      note.hidden = true;
      return;
    }
    note.textContent = nightlyText(state.nightly);
    note.dataset.nextAt = state.nightly ? state.nightly.nextAt : "";
    note.hidden = false;
  }

  function announceChanges(before, after) {
    const news = [];
    for (const [id, session] of after) {
      const old = before.get(id);
      if (!old) news.push(`Session ${id} is ${session.status}.`);
      else if (old.status !== session.status) news.push(`Session ${id} is now ${session.status}.`);
    }
    for (const id of before.keys()) if (!after.has(id)) news.push(`Session ${id} is no longer active.`);
    if (news.length) announce(news.slice(0, 5).join(" ") + (news.length > 5 ? ` And ${news.length - 5} more.` : ""));
  }

  async function loadSessions() {
    const list = await api("sessions");
    const after = new Map(list.sessions.map((s) => [s.id, s]));
    if (state.loadedSessions) announceChanges(state.sessions, after);
    state.sessions = after;
    state.loadedSessions = true;
    state.readAt = Date.now();
    $("active-note").textContent = list.history === "ok"
      ? "Starting and Ready sessions, read from Azure Remote Rendering every 15 seconds while this page is visible."
      : "Session history is unavailable right now: who asked and why are not shown.";
    state.nightly = list.nightlyShutdown;
    renderNightly();
    renderActive();
    renderOverrides();
    clearError("active sessions");
  }

  // -- stop, extend, keep overnight ----------------------------------------------------------------------------------
  let dialogSession = null;
  let keepTo = null;       // the keepAlive the keep dialog asks for

  function openDialog(kind, id, button) {
    const session = state.sessions.get(id);
    if (!session) return;
    dialogSession = id;
    $(`${kind}-dialog`).returnValue = "";
    if (kind === "stop") {
      $("stop-text").textContent = `Session ${id} (${session.size || "unknown size"}, requested by `
        + `${session.requestedBy || "nobody named"}) will end at Azure Remote Rendering. Billing stops; it cannot be `
        + "restarted.";
      $("stop-reason").value = "";
      $("stop-name").value = savedName();
      $("stop-dialog").showModal();
    } else if (kind === "keep") {
      keepTo = button.dataset.keep === "true";
      const nightly = state.nightly === undefined ? "" : ` ${nightlyText(state.nightly)}`;
      $("keep-title").textContent = keepTo ? "Keep this session overnight?" : "Stop keeping this session overnight?";
      $("keep-text").textContent = (keepTo
        ? `Session ${id} will be left running by the nightly shutdown (its lease still ends it).`
        : `Session ${id} will be stopped by the nightly shutdown like any other.`) + nightly;
      $("keep-confirm").textContent = keepTo ? "Keep overnight" : "Don't keep overnight";
      $("keep-reason").value = "";
      $("keep-name").value = savedName();
      $("keep-dialog").showModal();
    } else {
      $("extend-text").textContent = session.leaseMinutes === null
        ? `Session ${id}.`
        : `Session ${id} has a lease of ${minutes(session.leaseMinutes)}.`;
      $("extend-minutes").value = "30";
      $("extend-dialog").showModal();
    }
  }

  function returnFocus(id, action) {
    const button = $("active").querySelector(`button[data-action="${action}"][data-id="${CSS.escape(id)}"]`);
    (button || $("active-heading")).focus();
  }

  // The name the person gave in a dialog: remembered for next time, sent as requestedBy (left out when none).
  function takeName(input) {
    const name = input.value.trim();
    rememberName(name);
    return name;
  }

  async function stopSession(id, reason, requestedBy) {
    const button = $("active").querySelector(`button[data-action="stop"][data-id="${CSS.escape(id)}"]`);
    if (button) button.disabled = true;
    try {
      const body = reason ? { reason } : {};
      if (requestedBy) body.requestedBy = requestedBy;
      const session = await api(`sessions/${encodeURIComponent(id)}/stop`, { method: "POST", body });
      state.sessions.delete(id);
      renderActive();
      $("active-heading").focus();
      clearError("action");
      announce(`Session ${id} is ${session.status}` + (session.stoppedBy ? `, stopped by ${session.stoppedBy}.` : "."));
      refreshTables();
    } catch (error) {
      if (button) button.disabled = false;
      showError("action", `Could not stop session ${id}. ${error.message}`);
      returnFocus(id, "stop");
    }
  }

  async function extendSession(id, add) {
    try {
      const session = await api(`sessions/${encodeURIComponent(id)}`, {
        method: "PATCH", body: { extendByMinutes: add },
      });
      if (state.sessions.has(id)) state.sessions.set(id, session);
      state.readAt = Date.now();
      renderActive();
      clearError("action");
      announce(`Session ${id} now has a lease of ${minutes(session.leaseMinutes)}.`);
    } catch (error) {
      showError("action", `Could not extend session ${id}. ${error.message}`);
    }
    returnFocus(id, "extend");
  }

  async function keepSession(id, keepAlive, reason, requestedBy) {
    try {
      const body = { keepAlive };
      if (requestedBy) body.requestedBy = requestedBy;
      if (reason) body.reason = reason;
      const session = await api(`sessions/${encodeURIComponent(id)}`, { method: "PATCH", body });
      if (state.sessions.has(id)) state.sessions.set(id, session);
      state.readAt = Date.now();
      renderActive();
      clearError("action");
      announce(session.keepAlive ? `Session ${id} is kept overnight.`
        : `Session ${id} is no longer kept overnight: the nightly shutdown stops it.`);
    } catch (error) {
      showError("action", `Could not change whether session ${id} is kept overnight. ${error.message}`);
    }
    returnFocus(id, "keep");
  }

  function wireDialogs() {
    for (const [dialog, action] of [[$("stop-dialog"), "stop"], [$("extend-dialog"), "extend"],
      [$("keep-dialog"), "keep"]]) {
      dialog.addEventListener("click", (event) => {
        if (event.target.closest("[data-close]")) dialog.close("cancel");
      });
      dialog.addEventListener("close", () => {
        if (dialog.returnValue !== "confirm" && dialogSession) returnFocus(dialogSession, action);
      });
    }
    $("stop-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = dialogSession;
      const reason = $("stop-reason").value.trim();
      const name = takeName($("stop-name"));
      $("stop-dialog").close("confirm");
      stopSession(id, reason || "stopped from the dashboard", name);
    });
    $("keep-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = dialogSession;
      const reason = $("keep-reason").value.trim();
      const name = takeName($("keep-name"));
      $("keep-dialog").close("confirm");
      keepSession(id, keepTo, reason, name);
    });
    $("extend-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = $("extend-minutes");
      const add = Number(input.value);
      if (!Number.isInteger(add) || add < 1 || add > 1440) {
        input.setAttribute("aria-invalid", "true");
        input.setCustomValidity("Enter whole minutes from 1 to 1440.");
        input.reportValidity();
        return;
      }
      input.removeAttribute("aria-invalid");
      input.setCustomValidity("");
      const id = dialogSession;
      $("extend-dialog").close("confirm");
      extendSession(id, add);
    });
    $("extend-minutes").addEventListener("input", (event) => {
      event.target.setCustomValidity("");
      event.target.removeAttribute("aria-invalid");
    });
    $("active").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (!button) return;
      if (button.dataset.action === "override") openOverride(button.dataset.id);
      else openDialog(button.dataset.action, button.dataset.id, button);
    });
  }

  // -- overrides of the nightly shutdown ------------------------------------------------------------------------------
  const NIGHT_CATCH_UP_MS = 12 * 3600000;  // the app still does a missed nightly shutdown this long after its time
  const DAY_MS = 24 * 3600000;
  const LABEL_KEY = /^[A-Za-z0-9_.:-]{1,64}$/;
  const overrideState = { sessionId: null, lifting: null };

  function scopeText(o) {
    if (o.sessionId) return `session ${o.sessionId}`;
    return `sessions labelled ${Object.entries(o.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ")}`;
  }

  function leftText(iso) {
    const m = Math.max(0, Math.floor((new Date(iso).getTime() - Date.now()) / 60000));
    if (m >= 1440) return `${Math.floor(m / 1440)} d ${Math.floor((m % 1440) / 60)} h`;
    return m >= 60 ? `${Math.floor(m / 60)} h ${m % 60} min` : minutes(m);
  }

  function overrideRow(o) {
    const keeps = o.sessionId
      ? el("span", {}, "Session ", el("span", { class: "mono", text: o.sessionId }))
      : el("span", {}, "Sessions labelled ", el("span", { class: "mono",
        text: Object.entries(o.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ") }));
    return el("tr", { "data-id": o.id, role: "row" },
      el("th", { scope: "row", role: "rowheader", "data-label": "Keeps" }, keeps),
      cell("Until", el("span", { class: "nowrap", text: when(o.until) }), el("br"),
        el("span", { class: "small", text: `in ${leftText(o.until)}` })),
      cell("Reason", o.reason || "not given"),
      cell("Requested by", o.requestedBy || "not given"),
      cell("Actions", el("button", { type: "button", class: "danger", "data-action": "lift", "data-id": o.id },
        "Lift", hidden(` override ${o.id}`))));
  }

  function renderOverrides() {
    const body = $("overrides").tBodies[0];
    const now = Date.now();
    const shown = state.overrides.filter((o) => new Date(o.until).getTime() > now);
    const rows = shown.map(overrideRow);
    if (rows.length === 0) {
      rows.push(el("tr", { class: "empty", role: "row" }, el("td", { colSpan: 5, role: "cell",
        text: state.nightly === null ? "No overrides."
          : "No overrides: the nightly shutdown stops every session that is not kept overnight." })));
    }
    const focused = document.activeElement;
    const focusId = focused && focused.dataset && focused.dataset.action === "lift" ? focused.dataset.id : null;
    body.replaceChildren(...rows);
    $("overrides-caption").textContent = `Overrides: ${shown.length}`;
    if (focusId) {
      const again = body.querySelector(`button[data-action="lift"][data-id="${CSS.escape(focusId)}"]`);
      if (again) again.focus();
    }
  }

  async function loadOverrides() {
    if (!state.overridesKnown) return;
    let list;
    try {
      list = await api("overrides");
    } catch (error) {
      if (error.status === 404 || error.status === 405) {  // an app from before overrides
        state.overridesKnown = false;
        state.overrides = [];
        $("overrides-note").textContent = "This version of the app has no overrides of the nightly shutdown.";
        $("override-open").hidden = true;
        renderOverrides();
        renderActive();
        return;
      }
      throw error;
    }
    state.overrides = list.overrides;
    renderOverrides();
    renderActive();
    clearError("overrides");
  }

  // The choices of "Until": through the next nightly shutdown (as a stop warning's keep-tonight link: until the
  // app no longer does that night's shutdown), then whole days. Each as an instant, said in this browser's time.
  function untilChoices() {
    const now = Date.now();
    const choices = [];
    const at = nextNightlyAt();
    if (at) {
      const until = new Date(at.getTime() + NIGHT_CATCH_UP_MS);
      choices.push([until, `Through the next shutdown: until ${shortFormat.format(until)}`]);
    }
    for (const [days, label] of [[1, "24 hours"], [3, "3 days"], [7, "7 days"], [30, "30 days"]]) {
      const until = new Date(now + days * DAY_MS);
      choices.push([until, `For ${label}: until ${shortFormat.format(until)}`]);
    }
    return choices;
  }

  // From a row's "Keep tonight" (sessionId given: that session) or the panel's "Add an override" (a choice of the
  // active sessions, or labels).
  function openOverride(sessionId) {
    const dialog = $("override-dialog");
    dialog.returnValue = "";
    overrideState.sessionId = sessionId;
    const scope = $("override-scope");
    scope.replaceChildren(...[...state.sessions.keys()].sort().map((id) =>
      el("option", { value: `session:${id}`, text: `Session ${id}` })),
    el("option", { value: "labels", text: "Every session with these labels" }));
    $("override-scope-field").hidden = Boolean(sessionId);
    $("override-labels-field").hidden = Boolean(sessionId) || scope.value !== "labels";
    $("override-labels").value = "";
    $("override-labels").removeAttribute("aria-invalid");
    $("override-labels").setCustomValidity("");
    $("override-until").replaceChildren(...untilChoices().map(([until, label]) =>
      el("option", { value: until.toISOString(), text: label })));
    $("override-name").value = savedName();
    $("override-reason").value = "";
    const after = "then the override ends by itself. A session's lease still ends it."
      + (state.nightly ? ` ${nightlyText(state.nightly)}` : "");
    if (sessionId) {
      $("override-title").textContent = `Keep session ${sessionId} tonight?`;
      $("override-text").textContent = `The nightly shutdown will leave session ${sessionId} running until the time `
        + `you choose; ${after}`;
      $("override-confirm").textContent = "Keep through the shutdown";
    } else {
      $("override-title").textContent = "Add an override of the nightly shutdown";
      $("override-text").textContent = "The nightly shutdown will leave these sessions (with labels: those started "
        + `later too) running until the time you choose; ${after}`;
      $("override-confirm").textContent = "Add override";
    }
    dialog.showModal();
  }

  // "team=viz, project=atrium" as labels; null (and the field marked) when it is not that.
  function parseLabels(input) {
    const labels = {};
    const parts = input.value.split(",").map((p) => p.trim()).filter((p) => p);
    for (const part of parts) {
      const at = part.indexOf("=");
      const key = at < 0 ? "" : part.slice(0, at).trim();
      if (!LABEL_KEY.test(key)) {
        input.setAttribute("aria-invalid", "true");
        input.setCustomValidity(`“${part}” is not key=value (a key is 1-64 letters, digits, _ . : or -).`);
        input.reportValidity();
        return null;
      }
      labels[key] = part.slice(at + 1).trim();
    }
    if (parts.length === 0) {
      input.setAttribute("aria-invalid", "true");
      input.setCustomValidity("Enter at least one label: key=value.");
      input.reportValidity();
      return null;
    }
    return labels;
  }

  function focusAfterOverride(sessionId) {
    const row = sessionId && $("active").querySelector(`tr[data-id="${CSS.escape(sessionId)}"]`);
    const target = row ? row.querySelector('button[data-action="override"], button[data-action="keep"]') : null;
    (target || (sessionId ? $("active-heading") : $("override-open"))).focus();
  }

  async function addOverride(body, sessionId) {
    try {
      const made = await api("overrides", { method: "POST", body });
      state.overrides = [...state.overrides.filter((o) => o.id !== made.id), made]
        .sort((a, b) => new Date(b.until) - new Date(a.until));
      renderOverrides();
      renderActive();
      clearError("action");
      announce(`The nightly shutdown leaves ${scopeText(made)} running until ${when(made.until)} (override `
        + `${made.id}).`);
    } catch (error) {
      showError("action", `Could not add the override. ${error.message}`);
    }
    focusAfterOverride(sessionId);
  }

  async function liftOverride(id) {
    const o = state.overrides.find((x) => x.id === id);
    try {
      const lifted = await api(`overrides/${encodeURIComponent(id)}`, { method: "DELETE" });
      announce(`Override ${id} is lifted: the next nightly shutdown stops ${scopeText(lifted)}, unless it is kept `
        + "overnight or another override keeps it.");
      clearError("action");
    } catch (error) {
      if (error.status !== 404) {
        showError("action", `Could not lift override ${id}. ${error.message}`);
        const button = $("overrides").querySelector(`button[data-action="lift"][data-id="${CSS.escape(id)}"]`);
        (button || $("overrides-heading")).focus();
        return;
      }
      announce(`Override ${id} had already ended or been lifted${o ? ` (${scopeText(o)})` : ""}.`);
    }
    state.overrides = state.overrides.filter((x) => x.id !== id);
    renderOverrides();
    renderActive();
    $("overrides-heading").focus();
  }

  function wireOverrides() {
    const dialog = $("override-dialog");
    const lift = $("lift-dialog");
    for (const d of [dialog, lift]) {
      d.addEventListener("click", (event) => {
        if (event.target.closest("[data-close]")) d.close("cancel");
      });
    }
    dialog.addEventListener("close", () => {  // cancelled: back to the button that opened it (rows are redrawn)
      if (dialog.returnValue === "confirm") return;
      if (overrideState.sessionId) returnFocus(overrideState.sessionId, "override");
      else $("override-open").focus();
    });
    lift.addEventListener("close", () => {
      if (lift.returnValue === "confirm" || !overrideState.lifting) return;
      const button = $("overrides").querySelector(
        `button[data-action="lift"][data-id="${CSS.escape(overrideState.lifting)}"]`);
      (button || $("overrides-heading")).focus();
    });
    $("override-scope").addEventListener("change", () => {
      $("override-labels-field").hidden = $("override-scope").value !== "labels";
    });
    $("override-labels").addEventListener("input", (event) => {
      event.target.setCustomValidity("");
      event.target.removeAttribute("aria-invalid");
    });
    $("override-open").addEventListener("click", () => openOverride(null));
    $("override-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const body = {};
      const sessionId = overrideState.sessionId;
      const scope = $("override-scope").value;
      if (sessionId) body.sessionId = sessionId;
      else if (scope.startsWith("session:")) body.sessionId = scope.slice("session:".length);
      else {
        const labels = parseLabels($("override-labels"));
        if (!labels) return;
        body.labels = labels;
      }
      body.until = $("override-until").value;
      const reason = $("override-reason").value.trim();
      if (reason) body.reason = reason;
      const name = takeName($("override-name"));
      if (name) body.requestedBy = name;
      dialog.close("confirm");
      addOverride(body, sessionId || body.sessionId || null);
    });
    $("overrides").addEventListener("click", (event) => {
      const button = event.target.closest('button[data-action="lift"]');
      if (!button) return;
      const o = state.overrides.find((x) => x.id === button.dataset.id);
      if (!o) return;
      overrideState.lifting = o.id;
      lift.returnValue = "";
      $("lift-text").textContent = `Override ${o.id} keeps ${scopeText(o)} out of the nightly shutdown until `
        + `${when(o.until)}${o.requestedBy ? ` (asked by ${o.requestedBy})` : ""}. Once it is lifted, the next nightly `
        + "shutdown stops what it keeps, unless kept overnight or by another override.";
      lift.showModal();
    });
    $("lift-form").addEventListener("submit", (event) => {
      event.preventDefault();
      lift.close("confirm");
      liftOverride(overrideState.lifting);
    });
  }

  // -- warm pools ---------------------------------------------------------------------------------------------------
  const DAY_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
  const CLAIM_ATTEMPTS = 2;  // a claim that got no answer (or a 429/502/503/504) is sent once more, same key
  const claimState = { pool: null };

  // "Mon–Fri", "Mon, Wed, Fri", "every day": three or more days in a row are joined.
  function daysText(days) {
    const known = DAY_NAMES.filter((d) => days.includes(d));
    if (known.length === 7) return "every day";
    if (known.length !== days.length) return days.join(", ");
    const parts = [];
    let run = [];
    for (const day of [...DAY_NAMES, ""]) {
      if (known.includes(day)) {
        run.push(day);
        continue;
      }
      if (run.length >= 3) parts.push(`${run[0]}–${run[run.length - 1]}`);
      else parts.push(...run);
      run = [];
    }
    return parts.join(", ");
  }

  // "Mon–Fri 08:30–18:00", "always", "Sat, Sun all day", "Mon–Fri 22:00–06:00 next day": in the pool's time zone.
  function windowText(pool) {
    const days = daysText(pool.days || []);
    if (pool.opens === pool.closes) return days === "every day" ? "Always" : `${days}, all day`;
    return `${days} ${pool.opens}–${pool.closes}${pool.closes < pool.opens ? " (to the next day)" : ""}`;
  }

  function poolRow(pool) {
    const cost = money(pool.costPerHour, pool.currency);
    return el("tr", { "data-pool": pool.name, role: "row" },
      el("th", { scope: "row", role: "rowheader", "data-label": "Pool" },
        el("span", { class: "mono", text: pool.name }), el("br"),
        el("span", { class: "small", text: `${pool.size}, ${pool.count} warm` })),
      cell("Window", el("span", { class: `pill ${pool.open ? "pill-ready" : "pill-stopped"}`,
        text: pool.open ? "Open" : "Closed" }), el("br"),
      el("span", { text: windowText(pool) }), el("br"),
      el("span", { class: "small", text: pool.timeZone })),
      el("td", { class: "num", "data-label": "Ready", role: "cell", "data-ready": pool.ready,
        text: numberFormat.format(pool.ready) }),
      el("td", { class: "num", "data-label": "Starting", role: "cell", text: numberFormat.format(pool.starting) }),
      el("td", { class: "num", "data-label": "Claimed", role: "cell", text: numberFormat.format(pool.claimed) }),
      cost === null
        ? el("td", { class: "num muted", "data-label": "Cost per hour", role: "cell", "data-cost": "unknown" },
          "not known", hidden(": no rate set"))
        : el("td", { class: "num", "data-label": "Cost per hour", role: "cell", text: `${cost} an hour` }),
      cell("Actions", el("button", { type: "button", "data-action": "claim", "data-pool": pool.name },
        "Claim", hidden(` a session from pool ${pool.name}`))));
  }

  function renderPools() {
    const panel = $("pools-panel");
    panel.hidden = !state.poolsKnown || state.pools.length === 0;  // no ARR_POOLS: nothing to show
    if (panel.hidden) return;
    const body = $("pools").tBodies[0];
    const focused = document.activeElement;
    const focusPool = focused && focused.dataset && focused.dataset.action === "claim" ? focused.dataset.pool : null;
    body.replaceChildren(...state.pools.map(poolRow));
    const open = state.pools.filter((p) => p.open).length;
    $("pools-caption").textContent = `Warm pools: ${state.pools.length}, ${open} open`;
    if (focusPool) {
      const again = body.querySelector(`button[data-action="claim"][data-pool="${CSS.escape(focusPool)}"]`);
      if (again) again.focus();
    }
  }

  async function loadPools() {
    if (!state.poolsKnown) return;
    let list;
    try {
      list = await api("pools");
    } catch (error) {
      if (error.status === 404 || error.status === 405) {  // an app from before warm pools
        state.poolsKnown = false;
        state.pools = [];
        renderPools();
        return;
      }
      throw error;
    }
    state.pools = list.pools;
    renderPools();
    clearError("warm pools");
  }

  function claimStatus(text, kind) {
    $("claim-status").hidden = false;
    $("claim-status").className = `start-status ${kind}`.trim();
    $("claim-status-text").textContent = text;
    $("claim-status").focus();
  }

  function openClaim(name) {
    const pool = state.pools.find((p) => p.name === name);
    if (!pool) return;
    claimState.pool = name;
    const dialog = $("claim-dialog");
    dialog.returnValue = "";
    $("claim-title").textContent = `Claim a session from pool ${name}?`;
    const cost = money(pool.costPerHour, pool.currency);
    $("claim-text").textContent = `${pool.ready} ${pool.size} ${pool.ready === 1 ? "session is" : "sessions are"} `
      + `Ready in pool ${name} now. The one you claim is yours at once: in history and usage, with at least the `
      + "lease you ask for, and billed until it is stopped (stop it in Active sessions when you are done). The pool "
      + `starts a replacement.${cost === null ? "" : ` A ${pool.size} session costs ${money(pool.costPerHour
        / pool.count, pool.currency)} an hour.`}`;
    for (const input of [$("claim-lease"), $("claim-name")]) {
      input.removeAttribute("aria-invalid");
      input.setCustomValidity("");
    }
    $("claim-lease").value = "";
    $("claim-name").value = savedName();
    dialog.showModal();
  }

  function newKey() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return `dashboard-${crypto.randomUUID()}`;
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return `dashboard-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
  }

  // One claim, with an Idempotency-Key of its own: sent again (same key, same body) when no answer came or the app
  // answered "not now", so that it never takes a second session.
  async function sendClaim(name, body) {
    const key = newKey();
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await api(`pools/${encodeURIComponent(name)}/claim`, {
          method: "POST", body, extraHeaders: { "Idempotency-Key": key },
        });
      } catch (error) {
        if (attempt >= CLAIM_ATTEMPTS || ![0, 429, 502, 503, 504].includes(error.status)) throw error;
        await sleep(Math.min(10, Math.max(2, error.retryAfter || 0)) * 1000);
      }
    }
  }

  async function claimPool(name, body) {
    const button = $("pools").querySelector(`button[data-action="claim"][data-pool="${CSS.escape(name)}"]`);
    if (button) button.disabled = true;
    claimStatus(`Claiming a session from pool ${name}…`, "");
    try {
      const session = await sendClaim(name, body);
      state.sessions.set(session.id, session);
      state.readAt = Date.now();
      renderActive();
      const pool = state.pools.find((p) => p.name === name);
      if (pool) {  // until the next read: one fewer Ready, one more claimed
        pool.ready = Math.max(0, pool.ready - 1);
        pool.claimed += 1;
      }
      renderPools();
      clearError("action");
      const left = session.remainingMinutes === null ? "" : `, ${minutes(session.remainingMinutes)} left on its lease`;
      const where = session.hostname ? ` Connect to ${session.hostname}:${session.handshakePort}.` : "";
      claimStatus(`Session ${session.id} from pool ${name} is yours (${session.requestedBy || body.requestedBy}): `
        + `${session.status}${left}.${where} It is billed until it is stopped: stop it in Active sessions when you `
        + "are done.", "ok");
      $("claim-status").dataset.session = session.id;
      announce(`Session ${session.id} from pool ${name} is yours.`);
      refreshTables();
    } catch (error) {
      if (error.status === 409 && error.title === "Pool empty") {
        claimStatus(`No session claimed: pool ${name} has none Ready now. ${error.detail || ""}`
          + `${error.retryAfter ? ` Try again in ${error.retryAfter} s.` : ""}`, "bad");
        announce(`No session claimed: pool ${name} has none Ready now.`);
      } else {
        claimStatus(`Could not claim a session from pool ${name}. ${error.message}`, "bad");
        announce(`Could not claim a session from pool ${name}.`);
      }
    } finally {
      const again = $("pools").querySelector(`button[data-action="claim"][data-pool="${CSS.escape(name)}"]`);
      if (again) again.disabled = false;
    }
  }

  function wirePools() {
    const dialog = $("claim-dialog");
    dialog.addEventListener("click", (event) => {
      if (event.target.closest("[data-close]")) dialog.close("cancel");
    });
    dialog.addEventListener("close", () => {
      if (dialog.returnValue === "confirm") return;
      const button = $("pools").querySelector(`button[data-action="claim"][data-pool="${CSS.escape(claimState.pool
        || "")}"]`);
      (button || $("pools-heading")).focus();
    });
    for (const input of [$("claim-lease"), $("claim-name")]) {
      input.addEventListener("input", (event) => {
        event.target.setCustomValidity("");
        event.target.removeAttribute("aria-invalid");
      });
    }
    $("pools").addEventListener("click", (event) => {
      const button = event.target.closest('button[data-action="claim"]');
      if (button) openClaim(button.dataset.pool);
    });
    $("claim-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const lease = $("claim-lease");
      const body = {};
      if (lease.value.trim() !== "") {
        const n = Number(lease.value);
        if (!Number.isInteger(n) || n < 1 || n > 1440) {
          lease.setAttribute("aria-invalid", "true");
          lease.setCustomValidity("Enter whole minutes from 1 to 1440, or leave it empty for the app's default.");
          lease.reportValidity();
          return;
        }
        body.leaseMinutes = n;
      }
      const nameInput = $("claim-name");
      const name = nameInput.value.trim();
      if (!name) {
        nameInput.setAttribute("aria-invalid", "true");
        nameInput.setCustomValidity("Enter your name: the session becomes yours.");
        nameInput.reportValidity();
        return;
      }
      body.requestedBy = takeName(nameInput);
      dialog.close("confirm");
      claimPool(claimState.pool, body);
    });
    $("claim-status-close").addEventListener("click", () => {
      $("claim-status").hidden = true;
      $("pools-heading").focus();
    });
  }

  // -- the monthly budget -------------------------------------------------------------------------------------------
  const ACTIONS = { notify: "a warning", "refuse-starts": "new starts refused", "stop-all": "every session stopped" };

  function monthText(budget) {
    try {
      return new Intl.DateTimeFormat(undefined, { month: "long", year: "numeric", timeZone: "UTC" })
        .format(new Date(`${budget.month}-01T00:00:00Z`));
    } catch {
      return budget.month;
    }
  }

  // A bar of the month's spend against the amount (up to 100%), with a mark at each threshold.
  function drawBudgetBar(budget) {
    const box = $("budget-bar");
    const width = Math.max(240, Math.floor(box.clientWidth || 600));
    const height = 22;
    const share = Math.min(100, Math.max(0, budget.percent));
    const bar = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-labelledby": "budget-bar-title", class: "budget-meter" });
    bar.append(svg("title", { id: "budget-bar-title" }, `${budget.percent}% of the month's budget spent`));
    bar.append(svg("rect", { x: 0, y: 3, width, height: 16, rx: 3, class: "track" }));
    bar.append(svg("rect", { x: 0, y: 3, width: (width * share) / 100, height: 16, rx: 3,
      class: `spent${budget.refusingStarts ? " over" : ""}` }));
    for (const t of budget.thresholds) {
      const x = Math.min(width - 1, (width * Math.min(100, t.percent)) / 100);
      bar.append(svg("line", { x1: x, x2: x, y1: 0, y2: height, class: `mark${t.crossed ? " crossed" : ""}`,
        "data-percent": t.percent }));
    }
    box.replaceChildren(bar);
  }

  let lastBudget = null;
  const budgetState = { none: false };  // the app said it has no budget (404): asked again on "Refresh now" only

  function renderBudget(budget) {
    lastBudget = budget;
    const box = $("budget");
    if (!budget) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    box.dataset.percent = budget.percent;
    box.dataset.refusing = String(budget.refusingStarts);
    const spent = money(budget.spent, budget.currency);
    const amount = money(budget.amount, budget.currency);
    $("budget-text").textContent = `Budget for ${monthText(budget)} (${budget.timeZone}): ${spent} of ${amount} `
      + `spent, ${budget.percent}%. `
      + (budget.refusingStarts ? "New starts are refused until the month ends." : "Starts are allowed.");
    $("budget-text").className = budget.refusingStarts ? "warn" : "";
    const marks = budget.thresholds.map((t) => `${t.percent}%: ${ACTIONS[t.action] || t.action}`
      + (t.crossed ? " (crossed)" : ""));
    const unpriced = budget.unpricedMinutes
      ? ` ${minutes(budget.unpricedMinutes)} of sizes without a rate are not in the spend.` : "";
    $("budget-thresholds").textContent = `Thresholds: ${marks.join("; ")}.${unpriced}`;
    drawBudgetBar(budget);
  }

  // A budget comes and goes only with the app's settings (ARR_BUDGET), that is with a restart: after a 404 the page
  // does not ask every minute again (each 404 is a failed request in the browser's console), only when asked to.
  async function loadBudget({ again = false } = {}) {
    if (budgetState.none && !again) return;
    try {
      renderBudget(await api("budget"));
      budgetState.none = false;
    } catch (error) {
      if (error.status === 404 || error.status === 405) {  // no ARR_BUDGET (or an app from before budgets)
        budgetState.none = true;
        renderBudget(null);
        clearError("budget");
        return;
      }
      throw error;
    }
    clearError("budget");
  }

  // -- schedules ------------------------------------------------------------------------------------------------------
  const scheduleState = { known: true };  // false: an app from before schedules (their route is a 404)

  // An instant of a schedule's in its own time zone: "Tue, Dec 8, 09:00 GMT+1" (or only "08:49" with timeOnly).
  function zoned(iso, timeZone, timeOnly) {
    const options = timeOnly ? { hour: "2-digit", minute: "2-digit", hourCycle: "h23" }
      : { weekday: "short", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
        timeZoneName: "short" };
    try {
      return new Intl.DateTimeFormat(undefined, { ...options, timeZone }).format(new Date(iso));
    } catch {
      return `${dateTimeFormat.format(new Date(iso))} (your time)`;  // a zone this browser does not know
    }
  }

  function scheduleRow(s) {
    const next = s.next;
    const nextCell = next
      ? cell("Next session", el("span", { class: "nowrap", text: zoned(next.readyBy, s.timeZone) }), el("br"),
        el("span", { class: "small", text: `created at ${zoned(next.createAt, s.timeZone, true)}, `
          + `${numberFormat.format(next.leadMinutes)} min ahead, as ` }),
        el("span", { class: "mono small", text: next.sessionId }))
      : cell("Next session", el("span", { class: "muted", text: s.enabled ? "None" : "None: the schedule is disabled" }));
    return el("tr", { "data-id": s.id, role: "row" },
      el("th", { scope: "row", role: "rowheader", "data-label": "Schedule" },
        el("span", { text: s.description }), el("br"), el("span", { class: "mono small", text: s.id })),
      nextCell,
      cell("Ready by", el("span", { text: s.readyBy }), el("br"),
        el("span", { class: "small", text: `for ${minutes(s.durationMinutes)}` })),
      cell("Time zone", s.timeZone),
      cell("Requested by", s.requestedBy || "not given"));
  }

  async function loadSchedules() {
    if (!scheduleState.known) return;
    let list;
    try {
      list = await api("schedules");
    } catch (error) {
      if (error.status === 404 || error.status === 405) {  // an app from before schedules
        scheduleState.known = false;
        $("schedules-panel").hidden = true;
        return;
      }
      throw error;
    }
    $("schedules-panel").hidden = list.schedules.length === 0;  // none made: nothing to show
    $("schedules").tBodies[0].replaceChildren(...list.schedules.map(scheduleRow));
    $("schedules-caption").textContent = `Schedules: ${list.schedules.length}, local times from `
      + `${list.timeZoneDatabase}`;
    clearError("schedules");
  }

  // -- start, and follow it until Ready ---------------------------------------------------------------------------
  const FOLLOW_FAILURES = 5;  // consecutive failed checks before the page stops following (the session may be fine)
  const follow = { id: null };

  const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

  function retryAfterSeconds(response, fallback) {
    const value = Number(response.headers.get("Retry-After"));
    return Number.isFinite(value) && value > 0 ? value : fallback;
  }

  function startStatus(text, { busy = false, done = false, kind = "" } = {}) {
    $("start-status").hidden = false;
    $("start-status").className = `start-status ${kind}`.trim();
    $("start-status-text").textContent = text;
    $("start-progress").hidden = !busy;
    $("start-status-close").hidden = !done;
  }

  const elapsedText = (since) => {
    const s = Math.round((Date.now() - since) / 1000);
    return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
  };

  function showStarting(session, since, checks, nextAt) {
    const left = Math.max(0, Math.round((nextAt - Date.now()) / 1000));
    startStatus(`Session ${session.id} (${session.size || "default size"}) is ${session.status}: `
      + `${elapsedText(since)} since the start, checked ${checks} ${checks === 1 ? "time" : "times"}; `
      + `next check in ${left} s, as the app asks.`, { busy: true });
  }

  async function followStart(session, link, waitSeconds) {
    follow.id = session.id;
    const since = Date.now();
    let checks = 0;
    let failed = 0;
    let wait = waitSeconds;
    let current = session;
    announce(`Session ${session.id} is starting.`);
    for (;;) {
      const nextAt = Date.now() + wait * 1000;
      showStarting(current, since, checks, nextAt);
      const tick = setInterval(() => {
        if (follow.id === session.id) showStarting(current, since, checks, nextAt);
      }, 1000);
      await sleep(wait * 1000);
      clearInterval(tick);
      if (follow.id !== session.id) return;  // another start took over
      try {
        const response = await request(link);
        checks += 1;
        failed = 0;
        current = await response.json();
        state.sessions.set(current.id, current);
        state.readAt = Date.now();
        renderActive();
        if (response.status === 200) {
          const where = current.hostname ? ` Connect to ${current.hostname}:${current.handshakePort}.` : "";
          startStatus(`Session ${current.id} is Ready after ${elapsedText(since)}.${where}`, { done: true, kind: "ok" });
          announce(`Session ${current.id} is Ready.`);
          follow.id = null;
          refreshTables();
          return;
        }
        link = response.headers.get("Location") || link;
        wait = retryAfterSeconds(response, wait);
      } catch (error) {
        if (error.status === 409) {  // it ended before it was Ready: it will not be Ready now
          state.sessions.delete(session.id);
          renderActive();
          startStatus(`Session ${session.id} will not be Ready. ${error.message}`, { done: true, kind: "bad" });
          announce(`Session ${session.id} will not be Ready.`);
          follow.id = null;
          refreshTables();
          return;
        }
        failed += 1;
        if (error.status === 401 || failed >= FOLLOW_FAILURES) {
          startStatus(`Stopped following session ${session.id}: ${error.message} It may still become Ready; `
            + "the list of active sessions shows it.", { done: true, kind: "bad" });
          follow.id = null;
          return;
        }
        wait = Math.max(wait, error.retryAfter || 0, 5);
      }
    }
  }

  async function startSession(body) {
    startStatus("Starting a session…", { busy: true });
    $("start-open").disabled = true;
    try {
      const response = await request("sessions", { method: "POST", body });
      const session = await response.json();
      state.sessions.set(session.id, session);
      state.readAt = Date.now();
      renderActive();
      clearError("action");
      $("start-open").disabled = false;
      if (response.status === 200 || session.status === "Ready") {
        startStatus(`Session ${session.id} is Ready.`, { done: true, kind: "ok" });
        announce(`Session ${session.id} is Ready.`);
        return;
      }
      const link = response.headers.get("Location") || session.links.ready;
      await followStart(session, link, retryAfterSeconds(response, 10));
    } catch (error) {
      $("start-open").disabled = false;
      if (error.status === 409 && error.title === "Budget exceeded") {  // the app's detail says which and how much
        startStatus(`Could not start a session: the monthly budget refuses new starts. ${sentence(error.detail)}`,
          { done: true, kind: "bad" });
        announce("Could not start a session: the monthly budget refuses new starts.");
        loadBudget({ again: true }).catch(reportFailure("budget"));
        return;
      }
      startStatus(`Could not start a session. ${error.message}`, { done: true, kind: "bad" });
      announce("Could not start a session.");
    }
  }

  function wireStart() {
    const dialog = $("start-dialog");
    $("start-open").addEventListener("click", () => {
      dialog.returnValue = "";
      $("start-name").value = savedName();
      $("start-lease").removeAttribute("aria-invalid");
      $("start-lease").setCustomValidity("");
      dialog.showModal();
    });
    dialog.addEventListener("click", (event) => {
      if (event.target.closest("[data-close]")) dialog.close("cancel");
    });
    dialog.addEventListener("close", () => {
      if (dialog.returnValue !== "confirm") $("start-open").focus();
    });
    $("start-lease").addEventListener("input", (event) => {
      event.target.setCustomValidity("");
      event.target.removeAttribute("aria-invalid");
    });
    $("start-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const lease = $("start-lease");
      const body = {};
      if (lease.value.trim() !== "") {
        const n = Number(lease.value);
        if (!Number.isInteger(n) || n < 1 || n > 1440) {
          lease.setAttribute("aria-invalid", "true");
          lease.setCustomValidity("Enter whole minutes from 1 to 1440, or leave it empty for the app's default.");
          lease.reportValidity();
          return;
        }
        body.leaseMinutes = n;
      }
      if ($("start-size").value) body.size = $("start-size").value;
      const reason = $("start-reason").value.trim();
      if (reason) body.reason = reason;
      const name = takeName($("start-name"));
      if (name) body.requestedBy = name;
      if ($("start-keep").checked) body.keepAlive = true;
      dialog.close("confirm");
      $("start-status").focus();
      startSession(body);
    });
    $("start-status-close").addEventListener("click", () => {
      $("start-status").hidden = true;
      $("start-open").focus();
    });
  }

  // -- usage --------------------------------------------------------------------------------------------------------
  function utcDay(date) {
    return date.toISOString().slice(0, 10);
  }

  // The cost of a row of no sessions, as the API gives it: 0 once some rate is configured, null (not known) when
  // none is. The API's own figures tell which: any cost at all (an empty total's 0.0 included) means a rate is set.
  function emptyCost(report) {
    const known = report.total.estimatedCost !== null || report.rows.some((r) => r.estimatedCost !== null);
    return known ? 0 : null;
  }

  function chartDays(report) {
    const keys = new Set(report.rows.map((r) => r.key));
    const day = new Date(`${utcDay(new Date(report.from))}T00:00:00Z`);
    const last = utcDay(new Date(report.to));
    for (let i = 0; i < USAGE_DAYS + 2 && utcDay(day) <= last; i += 1) {
      keys.add(utcDay(day));
      day.setUTCDate(day.getUTCDate() + 1);
    }
    const byKey = new Map(report.rows.map((r) => [r.key, r]));
    return [...keys].sort().slice(-(USAGE_DAYS + 1)).map((key) =>
      byKey.get(key) || { key, sessions: 0, billedMinutes: 0, estimatedCost: emptyCost(report) });
  }

  function niceMax(value) {
    if (value <= 10) return 10;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
    return 10 * power;
  }

  // The estimated cost as text, or null where it is not known (no price is made up).
  function costText(row, currency) {
    return money(row.estimatedCost, currency);
  }

  // "42 min, 1 session, estimated cost $2.10" (sep ", ") or "42 min · 1 session · $2.10"; no cost where unknown.
  function rowFigures(row, currency, sep) {
    const cost = costText(row, currency);
    const parts = [minutes(row.billedMinutes), sessionsText(row.sessions)];
    if (cost !== null) parts.push(sep === ", " ? `estimated cost ${cost}` : cost);
    return parts.join(sep);
  }

  function drawDayChart(days, currency) {
    const box = $("day-chart");
    const width = Math.max(280, Math.floor(box.clientWidth || 600));
    const height = 220;
    const margin = { top: 18, right: 8, bottom: 28, left: 48 };
    const plotW = width - margin.left - margin.right;
    const plotH = height - margin.top - margin.bottom;
    const max = niceMax(Math.max(0, ...days.map((d) => d.billedMinutes)));
    const total = days.reduce((sum, d) => sum + d.billedMinutes, 0);
    const busiest = days.reduce((best, d) => (d.billedMinutes > best.billedMinutes ? d : best), days[0]);
    const chart = svg("svg", {
      width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-labelledby": "day-chart-title day-chart-desc", class: "bars",
    });
    chart.append(svg("title", { id: "day-chart-title" }, "Billed minutes by day, last 30 days"));
    chart.append(svg("desc", { id: "day-chart-desc" }, total === 0
      ? "No billed minutes in the period."
      : `${minutes(total)} in total; the busiest day was ${busiest.key} with ${minutes(busiest.billedMinutes)}. `
        + "The table below the charts lists every day."));
    for (const fraction of [0, 0.5, 1]) {
      const y = margin.top + plotH - fraction * plotH;
      chart.append(svg("line", { x1: margin.left, x2: width - margin.right, y1: y, y2: y, class: "grid" }));
      chart.append(svg("text", { x: margin.left - 6, y: y + 4, class: "axis", "text-anchor": "end" },
        numberFormat.format(max * fraction)));
    }
    const slot = plotW / days.length;
    const barW = Math.max(2, slot * 0.7);
    const labelEvery = Math.ceil(days.length / Math.max(2, Math.floor(plotW / 64)));
    const labelled = days.filter((d) => d.billedMinutes > 0).length <= 12;
    days.forEach((day, i) => {
      const h = (day.billedMinutes / max) * plotH;
      const x = margin.left + i * slot + (slot - barW) / 2;
      const y = margin.top + plotH - h;
      const group = svg("g", {
        class: "bar", "data-day": day.key, "data-minutes": day.billedMinutes, "data-sessions": day.sessions,
        "data-cost": day.estimatedCost === null ? "" : day.estimatedCost,
      });
      const rect = svg("rect", { x, y, width: barW, height: Math.max(h, day.billedMinutes > 0 ? 1 : 0) });
      rect.append(svg("title", {}, `${day.key}: ${rowFigures(day, currency, ", ")}`));
      group.append(rect);
      if (labelled && day.billedMinutes > 0) {
        group.append(svg("text", { x: x + barW / 2, y: y - 4, class: "value", "text-anchor": "middle" },
          numberFormat.format(day.billedMinutes)));
      }
      chart.append(group);
      if (i === days.length - 1) {
        chart.append(svg("text", { x: width - margin.right, y: height - 8, class: "axis", "text-anchor": "end" },
          "today"));
      } else if (i % labelEvery === 0 && days.length - 1 - i >= labelEvery) {
        chart.append(svg("text", { x: margin.left + i * slot + slot / 2, y: height - 8, class: "axis",
          "text-anchor": i === 0 ? "start" : "middle" }, dayFormat.format(new Date(`${day.key}T00:00:00Z`))));
      }
    });
    chart.append(svg("line", { x1: margin.left, x2: width - margin.right, y1: margin.top + plotH,
      y2: margin.top + plotH, class: "baseline" }));
    box.replaceChildren(chart);
  }

  function drawSizeChart(report, currency) {
    const rows = report.rows;
    const box = $("size-chart");
    const width = Math.max(280, Math.floor(box.clientWidth || 300));
    const sizes = ["Standard", "Premium", ...rows.map((r) => r.key).filter((k) => k !== "Standard" && k !== "Premium")];
    const byKey = new Map(rows.map((r) => [r.key, r]));
    const data = sizes.map((key) => byKey.get(key)
      || { key, sessions: 0, billedMinutes: 0, estimatedCost: emptyCost(report) });
    const rowH = 46;
    const height = data.length * rowH + 8;
    const labelW = 84;
    const max = niceMax(Math.max(0, ...data.map((d) => d.billedMinutes)));
    const chart = svg("svg", {
      width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-labelledby": "size-chart-title size-chart-desc", class: "bars sizes",
    });
    chart.append(svg("title", { id: "size-chart-title" }, "Billed minutes by size, last 30 days"));
    chart.append(svg("desc", { id: "size-chart-desc" }, data.map((d) => `${d.key}: ${rowFigures(d, currency, ", ")}`)
      .join("; ")));
    data.forEach((d, i) => {
      const y = 4 + i * rowH;
      const w = ((width - labelW - 8) * d.billedMinutes) / max;
      const group = svg("g", { class: `bar size-${d.key.toLowerCase()}`, "data-size": d.key,
        "data-minutes": d.billedMinutes, "data-cost": d.estimatedCost === null ? "" : d.estimatedCost });
      group.append(svg("text", { x: 0, y: y + 15, class: "label" }, d.key));
      group.append(svg("rect", { x: labelW, y: y + 2, width: Math.max(w, d.billedMinutes > 0 ? 1 : 0), height: 18 }));
      group.append(svg("text", { x: labelW, y: y + 38, class: "axis" }, rowFigures(d, currency, " · ")));
      chart.append(group);
    });
    box.replaceChildren(chart);
  }

  function costCell(row, currency) {
    const cost = costText(row, currency);
    return cost === null
      ? el("td", { class: "num muted", "data-cost": "unknown" }, el("span", { "aria-hidden": "true", text: "—" }),
        hidden("not known: no rate set"))
      : el("td", { class: "num", text: cost });
  }

  // Under the day chart, when rates are set: what the 30 days cost, today, and the costliest day.
  function dayCostNote(days, total, currency) {
    const note = $("day-chart-cost");
    const known = days.filter((d) => d.estimatedCost !== null);
    if (known.length === 0) {
      note.hidden = true;
      $("day-chart-caption").textContent = "Billed minutes by day";
      return;
    }
    $("day-chart-caption").textContent = "Billed minutes and estimated cost by day";
    const totalCost = money(total.estimatedCost, currency);
    const parts = [totalCost === null
      ? "Estimated cost: not known for every day (a rate is not set for every size used)"
      : `Estimated cost: ${totalCost} in ${USAGE_DAYS} days`];
    const today = days[days.length - 1];
    const todayCost = money(today.estimatedCost, currency);
    parts.push(`today ${todayCost === null ? "not known" : todayCost}`);
    const costliest = known.reduce((best, d) => (d.estimatedCost > best.estimatedCost ? d : best), known[0]);
    if (costliest !== today && costliest.estimatedCost > 0) {
      parts.push(`the most on ${dayFormat.format(new Date(`${costliest.key}T00:00:00Z`))}: `
        + money(costliest.estimatedCost, currency));
    }
    note.textContent = `${parts.join("; ")}.`;
    note.hidden = false;
  }

  function renderUsageTable(days, currency) {
    const rows = [...days].reverse().map((d) => el("tr", { "data-day": d.key },
      el("th", { scope: "row", text: d.key }),
      el("td", { class: "num", text: numberFormat.format(d.sessions) }),
      el("td", { class: "num", text: numberFormat.format(d.billedMinutes) }),
      costCell(d, currency)));
    $("usage-table").tBodies[0].replaceChildren(...rows);
  }

  let lastUsage = null;

  function drawUsage() {
    if (!lastUsage) return;
    const { days, sizes, total, currency } = lastUsage;
    drawDayChart(days, currency);
    dayCostNote(days, total, currency);
    drawSizeChart(sizes, currency);
    $("size-chart-caption").textContent = sizes.total.estimatedCost === null && emptyCost(sizes) === null
      ? "Billed minutes by size" : "Billed minutes and estimated cost by size";
  }

  async function loadUsage() {
    const [byDay, bySize] = await Promise.all([api("usage", { params: { groupBy: "day" } }),
      api("usage", { params: { groupBy: "size" } })]);
    const currency = byDay.currency;
    const days = chartDays(byDay);
    lastUsage = { days, sizes: bySize, total: byDay.total, currency };
    const total = byDay.total;
    const cost = money(total.estimatedCost, currency);
    $("usage-summary").textContent = `${minutes(total.billedMinutes)} billed in ${sessionsText(total.sessions)}. `
      + `${cost === null ? "Estimated cost: not known, a rate is not set for every size used."
        : `Estimated cost: ${cost}.`}`;
    drawUsage();
    renderUsageTable(days, currency);
    clearError("usage");
  }

  // -- history ------------------------------------------------------------------------------------------------------
  const historyState = { nextLink: null, pages: 0 };

  function historyParams() {
    const form = $("history-filters");
    const data = new FormData(form);
    const params = {};
    const from = data.get("from");
    const to = data.get("to");
    if (from) params.from = new Date(`${from}T00:00:00`).toISOString();
    if (to) {
      const end = new Date(`${to}T00:00:00`);
      end.setDate(end.getDate() + 1);
      params.to = end.toISOString();
    }
    for (const name of ["requestedBy", "size", "status"]) {
      const value = String(data.get(name) || "").trim();
      if (value) params[name] = value;
    }
    params.order = "newest";  // the API pages newest first; its nextLink goes on in that order
    params.top = "50";
    return params;
  }

  function historyRow(s) {
    return el("tr", { "data-id": s.id },
      el("th", { scope: "row" }, el("span", { class: "mono", text: s.id })),
      el("td", {}, statusPill(s.status)),
      el("td", { text: s.size || "—" }),
      el("td", { text: s.requestedBy || "not given" }),
      el("td", { class: "nowrap", text: when(s.createdAt) }),
      el("td", { class: "nowrap", text: when(s.endedAt) }),
      el("td", { class: "num", text: s.billedMinutes === null ? "—" : numberFormat.format(s.billedMinutes) }),
      el("td", { text: reasons(s) }));
  }

  function reasons(s) {
    const parts = [];
    if (s.reason) parts.push(s.reason);
    if (s.stopReason || s.stoppedBy) {
      parts.push(`stopped${s.stoppedBy ? ` by ${s.stoppedBy}` : ""}${s.stopReason ? `: ${s.stopReason}` : ""}`);
    }
    return parts.join("; ");
  }

  async function loadHistory({ more = false } = {}) {
    const page = more && historyState.nextLink
      ? await api(historyState.nextLink)
      : await api("history", { params: historyParams() });
    const body = $("history").tBodies[0];
    const rows = page.sessions.map(historyRow);
    if (more) body.append(...rows);
    else {
      if (rows.length === 0) {
        rows.push(el("tr", { class: "empty" }, el("td", { colSpan: 8, text: "No sessions match." })));
      }
      body.replaceChildren(...rows);
    }
    historyState.nextLink = page.nextLink;
    historyState.pages = more ? historyState.pages + 1 : 1;
    $("history-more").hidden = !page.nextLink;
    const shown = body.querySelectorAll("tr[data-id]").length;
    $("history-caption").textContent = `Sessions in history, newest first: ${shown}`
      + (page.nextLink ? " shown, more available" : "");
    clearError("history");
  }

  function wireHistory() {
    const form = $("history-filters");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      loadHistory().then(() => announce("History filtered."), reportFailure("history"));
    });
    form.addEventListener("reset", () => {
      setTimeout(() => loadHistory().then(() => announce("History filters cleared."), reportFailure("history")), 0);
    });
    $("history-more").addEventListener("click", () => {
      loadHistory({ more: true }).catch(reportFailure("history"));
    });
  }

  // -- cleanup runs -------------------------------------------------------------------------------------------------
  function actionList(actions, empty) {
    if (!actions.length) return el("span", { class: "muted", text: empty });
    return el("ul", { class: "plain" }, ...actions.map((a) =>
      el("li", {}, el("span", { class: "mono", text: a.id }), ` — ${a.reason}`)));
  }

  async function loadRuns() {
    let page;
    try {
      page = await api("cleanup/runs", { params: { top: "5" } });
    } catch (error) {
      if (error.status === 404 || error.status === 405) {
        $("runs-note").textContent = "This version of the app does not list cleanup runs.";
        return;
      }
      throw error;
    }
    const rows = page.runs.map((run) => el("tr", {},
      el("th", { scope: "row", class: "nowrap", text: when(run.ranAt) }),
      el("td", { text: run.mode + (run.dryRun ? " (dry run)" : "") }),
      el("td", {}, actionList(run.stopped, "nothing")),
      el("td", { class: "num", text: numberFormat.format(run.kept) }),
      el("td", {}, actionList(run.errors, "none"))));
    if (rows.length === 0) rows.push(el("tr", { class: "empty" }, el("td", { colSpan: 5, text: "No runs yet." })));
    $("runs").tBodies[0].replaceChildren(...rows);
    clearError("cleanup runs");
  }

  // -- refreshing ---------------------------------------------------------------------------------------------------
  const clock = { sessionsAt: 0, othersAt: 0, sessionsEvery: SESSIONS_EVERY_MS, busy: null, timer: null };

  function reportFailure(what) {
    return (error) => {
      if (error.status !== 401) showError(what, `Could not load ${what}. ${error.message}`);
    };
  }

  function refreshTables({ manual = false } = {}) {
    return Promise.allSettled([loadUsage().catch(reportFailure("usage")),
      loadBudget({ again: manual }).catch(reportFailure("budget")),
      loadSchedules().catch(reportFailure("schedules")),
      (historyState.pages <= 1 ? loadHistory() : Promise.resolve()).catch(reportFailure("history")),
      loadRuns().catch(reportFailure("cleanup runs"))]);
  }

  async function refresh({ manual = false } = {}) {
    if (clock.busy === keyState.epoch || keyState.needed) return;  // one refresh at a time under each key
    const epoch = keyState.epoch;
    clock.busy = epoch;
    clearTimeout(clock.timer);
    const now = Date.now();
    const jobs = [];
    let failed = false;
    const sessionsDue = now - clock.sessionsAt >= (manual ? MANUAL_MIN_MS : clock.sessionsEvery);
    if (sessionsDue) {
      clock.sessionsAt = now;
      jobs.push(loadSessions().then(() => { clock.sessionsEvery = SESSIONS_EVERY_MS; }, (error) => {
        failed = true;
        if (epoch !== keyState.epoch) return;
        const wait = Math.max(clock.sessionsEvery * 2, (error.retryAfter || 0) * 1000);
        clock.sessionsEvery = Math.min(MAX_BACKOFF_MS, Math.max(SESSIONS_EVERY_MS, wait));
        reportFailure("active sessions")(error);
      }));
      jobs.push(loadOverrides().catch(reportFailure("overrides")));
      jobs.push(loadPools().catch(reportFailure("warm pools")));
    }
    if (manual || now - clock.othersAt >= OTHERS_EVERY_MS) {
      clock.othersAt = now;
      jobs.push(refreshTables({ manual }));
    }
    await Promise.allSettled(jobs);
    if (epoch !== keyState.epoch) return;  // a newer key's refresh owns the clock now
    if (sessionsDue && !failed && !keyState.needed) {
      $("updated").textContent = `Updated ${timeSecondsFormat.format(new Date())}`;
    }
    clock.busy = null;
    schedule();
  }

  function schedule() {
    clearTimeout(clock.timer);
    if (document.visibilityState !== "visible" || keyState.needed) return;
    const now = Date.now();
    const due = Math.min(clock.sessionsAt + clock.sessionsEvery, clock.othersAt + OTHERS_EVERY_MS);
    clock.timer = setTimeout(() => refresh(), Math.max(1000, due - now));
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
    else clearTimeout(clock.timer);
  });

  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      drawUsage();
      if (lastBudget) drawBudgetBar(lastBudget);
    }, 150);
  });

  wireKey();
  wireDialogs();
  wireOverrides();
  wirePools();
  wireStart();
  wireHistory();
  $("refresh").addEventListener("click", () => refresh({ manual: true }));
  refresh();
})();
