// The ARR sessions dashboard: reads this app's own API, never ARR directly. No library, no build step.
//
// The function key: the page is opened as .../api/dashboard?code=KEY. The key is read here once, removed from the
// address bar, and sent only as the x-functions-key header of this app's API calls. It is never logged, never
// written into the page, never put in a URL. Locally (a host without keys) there is none, and none is needed.
//
// Pacing: GET /api/sessions asks ARR each time, so it is read at most every 15 seconds, and not at all while the
// page is hidden. Usage, history and cleanup runs come from Table Storage and are read every minute.
(() => {
  "use strict";

  const SESSIONS_EVERY_MS = 15000;
  const OTHERS_EVERY_MS = 60000;
  const MANUAL_MIN_MS = 5000;        // the refresh button does not read ARR more often than this either
  const MAX_BACKOFF_MS = 120000;
  const USAGE_DAYS = 30;
  const SOON_MINUTES = 10;

  // -- the key ----------------------------------------------------------------------------------------------------
  const script = document.currentScript;
  const apiBase = new URL("../", script ? script.src : new URL("dashboard/", location.href));
  const functionKey = (() => {
    const url = new URL(location.href);
    const value = url.searchParams.get("code");
    if (value !== null) {
      url.searchParams.delete("code");
      history.replaceState(history.state, "", url.pathname + url.search + url.hash);
    }
    return value || null;
  })();

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

  async function api(pathOrLink, { method = "GET", params, body } = {}) {
    const headers = { Accept: "application/json" };
    if (functionKey) headers["x-functions-key"] = functionKey;
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
    if (response.ok) return response.json();
    const retryAfter = Number(response.headers.get("Retry-After")) || null;
    if (response.status === 401) {
      throw new ApiError(401, "The function key is missing or wrong",
        "open this page as /api/dashboard?code=<function key>");
    }
    let title = `HTTP ${response.status}`;
    let detail = "";
    try {
      const problem = await response.json();
      title = problem.title || title;
      detail = problem.detail || "";
    } catch { /* not JSON */ }
    throw new ApiError(response.status, title, detail, retryAfter);
  }

  // -- active sessions ----------------------------------------------------------------------------------------------
  const state = {
    sessions: new Map(),   // id -> session view, as last read
    loadedSessions: false,
    readAt: 0,             // Date.now() of the list the table shows
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

  function cell(label, ...content) {
    return el("td", { "data-label": label, role: "cell" }, ...content);
  }

  function activeRow(session) {
    const actions = el("div", { class: "row-actions" },
      el("button", { type: "button", class: "secondary", "data-action": "extend", "data-id": session.id },
        "Extend", hidden(` session ${session.id}`)),
      el("button", { type: "button", class: "danger", "data-action": "stop", "data-id": session.id },
        "Stop", hidden(` session ${session.id}`)));
    return el("tr", { "data-id": session.id, role: "row" },
      el("th", { scope: "row", role: "rowheader", "data-label": "Session" },
        el("span", { class: "mono", text: session.id })),
      cell("Status", statusPill(session.status),
        session.keepAlive ? el("span", { class: "small" }, " kept overnight") : null),
      cell("Size", session.size || "—"),
      cell("Time left", timeLeft(session)),
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
    renderActive();
    clearError("active sessions");
  }

  // -- stop and extend ----------------------------------------------------------------------------------------------
  let dialogSession = null;

  function openDialog(kind, id) {
    const session = state.sessions.get(id);
    if (!session) return;
    dialogSession = id;
    $(`${kind}-dialog`).returnValue = "";
    if (kind === "stop") {
      $("stop-text").textContent = `Session ${id} (${session.size || "unknown size"}, requested by `
        + `${session.requestedBy || "nobody named"}) will end at Azure Remote Rendering. Billing stops; it cannot be `
        + "restarted.";
      $("stop-reason").value = "";
      $("stop-dialog").showModal();
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

  async function stopSession(id, reason) {
    const button = $("active").querySelector(`button[data-action="stop"][data-id="${CSS.escape(id)}"]`);
    if (button) button.disabled = true;
    try {
      const session = await api(`sessions/${encodeURIComponent(id)}/stop`, {
        method: "POST", body: reason ? { reason } : {},
      });
      state.sessions.delete(id);
      renderActive();
      $("active-heading").focus();
      clearError("action");
      announce(`Session ${id} is ${session.status}.`);
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

  function wireDialogs() {
    for (const [dialog, action] of [[$("stop-dialog"), "stop"], [$("extend-dialog"), "extend"]]) {
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
      $("stop-dialog").close("confirm");
      stopSession(id, reason || "stopped from the dashboard");
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
      if (button) openDialog(button.dataset.action, button.dataset.id);
    });
  }

  // -- usage --------------------------------------------------------------------------------------------------------
  function utcDay(date) {
    return date.toISOString().slice(0, 10);
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
      byKey.get(key) || { key, sessions: 0, billedMinutes: 0, estimatedCost: 0 });
  }

  function niceMax(value) {
    if (value <= 10) return 10;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
    return 10 * power;
  }

  function costText(row, currency) {
    const cost = money(row.estimatedCost, currency);
    return cost === null ? "no rate set" : cost;
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
      });
      const rect = svg("rect", { x, y, width: barW, height: Math.max(h, day.billedMinutes > 0 ? 1 : 0) });
      rect.append(svg("title", {}, `${day.key}: ${minutes(day.billedMinutes)}, ${sessionsText(day.sessions)}, `
        + `estimated cost ${costText(day, currency)}`));
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

  function drawSizeChart(rows, currency) {
    const box = $("size-chart");
    const width = Math.max(280, Math.floor(box.clientWidth || 300));
    const sizes = ["Standard", "Premium", ...rows.map((r) => r.key).filter((k) => k !== "Standard" && k !== "Premium")];
    const byKey = new Map(rows.map((r) => [r.key, r]));
    const data = sizes.map((key) => byKey.get(key) || { key, sessions: 0, billedMinutes: 0, estimatedCost: 0 });
    const rowH = 46;
    const height = data.length * rowH + 8;
    const labelW = 84;
    const max = niceMax(Math.max(0, ...data.map((d) => d.billedMinutes)));
    const chart = svg("svg", {
      width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-labelledby": "size-chart-title size-chart-desc", class: "bars sizes",
    });
    chart.append(svg("title", { id: "size-chart-title" }, "Billed minutes by size, last 30 days"));
    chart.append(svg("desc", { id: "size-chart-desc" }, data.map((d) =>
      `${d.key}: ${minutes(d.billedMinutes)}, ${sessionsText(d.sessions)}, estimated cost ${costText(d, currency)}`)
      .join("; ")));
    data.forEach((d, i) => {
      const y = 4 + i * rowH;
      const w = ((width - labelW - 8) * d.billedMinutes) / max;
      const group = svg("g", { class: `bar size-${d.key.toLowerCase()}`, "data-size": d.key,
        "data-minutes": d.billedMinutes });
      group.append(svg("text", { x: 0, y: y + 15, class: "label" }, d.key));
      group.append(svg("rect", { x: labelW, y: y + 2, width: Math.max(w, d.billedMinutes > 0 ? 1 : 0), height: 18 }));
      group.append(svg("text", { x: labelW, y: y + 38, class: "axis" },
        `${minutes(d.billedMinutes)} · ${sessionsText(d.sessions)} · ${costText(d, currency)}`));
      chart.append(group);
    });
    box.replaceChildren(chart);
  }

  function renderUsageTable(days, currency) {
    const rows = [...days].reverse().map((d) => el("tr", { "data-day": d.key },
      el("th", { scope: "row", text: d.key }),
      el("td", { class: "num", text: numberFormat.format(d.sessions) }),
      el("td", { class: "num", text: numberFormat.format(d.billedMinutes) }),
      el("td", { class: "num", text: costText(d, currency) })));
    $("usage-table").tBodies[0].replaceChildren(...rows);
  }

  let lastUsage = null;

  function drawUsage() {
    if (!lastUsage) return;
    const { days, sizes, currency } = lastUsage;
    drawDayChart(days, currency);
    drawSizeChart(sizes, currency);
  }

  async function loadUsage() {
    const [byDay, bySize] = await Promise.all([api("usage", { params: { groupBy: "day" } }),
      api("usage", { params: { groupBy: "size" } })]);
    const currency = byDay.currency;
    const days = chartDays(byDay);
    lastUsage = { days, sizes: bySize.rows, currency };
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
    if (s.stopReason) parts.push(`stopped${s.stoppedBy ? ` by ${s.stoppedBy}` : ""}: ${s.stopReason}`);
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
  const clock = { sessionsAt: 0, othersAt: 0, sessionsEvery: SESSIONS_EVERY_MS, busy: false, timer: null };

  function reportFailure(what) {
    return (error) => showError(what, `Could not load ${what}. ${error.message}`);
  }

  function refreshTables() {
    return Promise.allSettled([loadUsage().catch(reportFailure("usage")),
      (historyState.pages <= 1 ? loadHistory() : Promise.resolve()).catch(reportFailure("history")),
      loadRuns().catch(reportFailure("cleanup runs"))]);
  }

  async function refresh({ manual = false } = {}) {
    if (clock.busy) return;
    clock.busy = true;
    clearTimeout(clock.timer);
    const now = Date.now();
    const jobs = [];
    let failed = false;
    const sessionsDue = now - clock.sessionsAt >= (manual ? MANUAL_MIN_MS : clock.sessionsEvery);
    if (sessionsDue) {
      clock.sessionsAt = now;
      jobs.push(loadSessions().then(() => { clock.sessionsEvery = SESSIONS_EVERY_MS; }, (error) => {
        failed = true;
        const wait = Math.max(clock.sessionsEvery * 2, (error.retryAfter || 0) * 1000);
        clock.sessionsEvery = Math.min(MAX_BACKOFF_MS, Math.max(SESSIONS_EVERY_MS, wait));
        reportFailure("active sessions")(error);
      }));
    }
    if (manual || now - clock.othersAt >= OTHERS_EVERY_MS) {
      clock.othersAt = now;
      jobs.push(refreshTables());
    }
    await Promise.allSettled(jobs);
    if (sessionsDue && !failed) $("updated").textContent = `Updated ${timeSecondsFormat.format(new Date())}`;
    clock.busy = false;
    schedule();
  }

  function schedule() {
    clearTimeout(clock.timer);
    if (document.visibilityState !== "visible") return;
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
    resizeTimer = setTimeout(drawUsage, 150);
  });

  wireDialogs();
  wireHistory();
  $("refresh").addEventListener("click", () => refresh({ manual: true }));
  refresh();
})();
