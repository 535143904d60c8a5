// Kassa operator console. Vanilla JS, no build step, no dependencies.
//
// Rules this file keeps (the page is served under a CSP that requires Trusted Types, so breaking them fails loudly):
// every piece of data reaches the page through textContent or a text node, never as HTML; the admin token lives
// in sessionStorage and goes out only as an Authorization header, never in a URL; links are built only from
// "#/..." routes or http(s) URLs.
"use strict";

(() => {
  const TOKEN_KEY = "kassa.console.token";
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const state = { config: { traceUrlTemplate: "" }, render: 0 };

  // -- DOM, text only --------------------------------------------------------------------------------------------

  function safeHref(value) {
    const s = String(value);
    if (s.startsWith("#/")) return s;
    try {
      const url = new URL(s, window.location.href);
      if (url.protocol === "http:" || url.protocol === "https:") return url.href;
    } catch (_) {
      // not a URL: fall through
    }
    return "#/";
  }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "href") node.setAttribute("href", safeHref(value));
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const $ = (id) => document.getElementById(id);

  // replaceChildren, leaving out the parts that are absent (it would write "null").
  function put(parent, ...children) {
    parent.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  }

  function facts(pairs) {
    const dl = el("dl", { class: "facts" });
    for (const [term, value] of pairs) {
      dl.append(el("dt", { text: term }), el("dd", {}, value === "" || value === undefined ? "—" : value));
    }
    return dl;
  }

  function table(headers, rows, { empty = "Nothing here.", testid } = {}) {
    if (!rows.length) return el("p", { class: "muted", "data-testid": testid, text: empty });
    const head = el("tr", {}, headers.map((h) => el("th", { class: h.num ? "num" : undefined, text: typeof h === "string" ? h : h.label })));
    const body = rows.map((cells) =>
      el(
        "tr",
        {},
        cells.map((cell, i) => el("td", { class: headers[i].num ? "num" : headers[i].cls }, cell)),
      ),
    );
    return el("table", { "data-testid": testid }, el("thead", {}, head), el("tbody", {}, body));
  }

  function notice(text, kind) {
    return el("p", { class: kind === "error" ? "notice error" : "notice", role: kind === "error" ? "alert" : "status", text });
  }

  // -- formatting ------------------------------------------------------------------------------------------------

  function minorDigits(currency) {
    try {
      return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions().maximumFractionDigits;
    } catch (_) {
      return 2;
    }
  }

  // Money is int64 minor units as a string in proto3 JSON: format it with BigInt, never through a float.
  function money(m) {
    if (!m || !m.currencyCode) return "—";
    const digits = minorDigits(m.currencyCode);
    let amount = BigInt(m.amountMinor || "0");
    const negative = amount < 0n;
    if (negative) amount = -amount;
    const s = amount.toString().padStart(digits + 1, "0");
    const whole = (digits ? s.slice(0, -digits) : s).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return `${negative ? "−" : ""}${whole}${digits ? "." + s.slice(-digits) : ""} ${m.currencyCode}`;
  }

  function when(ts) {
    if (!ts) return "—";
    const d = new Date(ts);
    if (Number.isNaN(d.getTime())) return String(ts);
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace("Z", " UTC");
  }

  function ago(ts) {
    if (!ts) return "";
    const seconds = Math.round((Date.now() - new Date(ts).getTime()) / 1000);
    if (!Number.isFinite(seconds)) return "";
    if (seconds < 90) return `${seconds} s ago`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} d ago`;
  }

  function enumName(value, prefix) {
    const s = String(value || "");
    return s.startsWith(prefix) ? s.slice(prefix.length) : s;
  }

  const GOOD = new Set(["CONFIRMED", "AWAITING_SHIPMENT", "PACKED", "SHIPPED", "DELIVERED", "CAPTURED", "SUCCEEDED"]);
  const BAD = new Set(["PAYMENT_FAILED", "CANCELLED", "FAILED", "VOIDED", "DEAD", "PARKED", "REFUSED", "DECLINED", "ERROR"]);
  const WARN = new Set(["PENDING_PAYMENT", "AUTHORIZED", "PENDING", "REQUIRES_ACTION", "REFUNDED", "PARTIALLY_REFUNDED"]);

  function badge(text) {
    const t = String(text || "—");
    const kind = GOOD.has(t) ? "good" : BAD.has(t) ? "bad" : WARN.has(t) ? "warn" : "";
    return el("span", { class: `badge ${kind}`.trim(), text: t });
  }

  function mono(text) {
    return el("span", { class: "mono", text: text || "—" });
  }

  // -- the admin token and the REST calls ------------------------------------------------------------------------

  function token() {
    return window.sessionStorage.getItem(TOKEN_KEY) || "";
  }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.body = body || {};
    }

    get reason() {
      for (const d of this.body.details || []) if (d.reason) return d.reason;
      return "";
    }
  }

  async function api(method, path, { body, headers, bearer } = {}) {
    const h = { Accept: "application/json", Authorization: `Bearer ${bearer === undefined ? token() : bearer}` };
    if (body !== undefined) h["Content-Type"] = "application/json";
    Object.assign(h, headers || {});
    const response = await fetch(path, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
      redirect: "error",
    });
    let data = {};
    try {
      data = await response.json();
    } catch (_) {
      data = {};
    }
    if (!response.ok) {
      const error = new ApiError(response.status, data);
      if (response.status === 401 && bearer === undefined) signOut("Your token was refused (expired or revoked). Sign in again.");
      throw error;
    }
    return data;
  }

  function explain(error) {
    if (error instanceof ApiError) {
      const reason = error.reason ? ` (${error.reason})` : "";
      return `${error.message}${reason} — HTTP ${error.status}`;
    }
    return String(error && error.message ? error.message : error);
  }

  function idempotencyKey() {
    return window.crypto.randomUUID();
  }

  function subjectOf(jwt) {
    try {
      const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(window.atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
      return String(claims.sub || "");
    } catch (_) {
      return "";
    }
  }

  // -- sign in and out -------------------------------------------------------------------------------------------

  function showLogin(message) {
    $("nav").hidden = true;
    $("who").hidden = true;
    $("screen").hidden = true;
    $("screen").replaceChildren();
    $("login").hidden = false;
    const error = $("login-error");
    error.textContent = message || "";
    error.hidden = !message;
    $("token").focus();
  }

  function signOut(message) {
    window.sessionStorage.removeItem(TOKEN_KEY);
    state.render += 1;
    showLogin(message);
  }

  async function signIn(event) {
    event.preventDefault();
    const candidate = $("token").value.trim().replace(/^Bearer\s+/i, "");
    const button = $("sign-in");
    if (!candidate) return;
    button.disabled = true;
    try {
      // Any admin route proves the role; the warehouse list is a cheap, unaudited read.
      await api("GET", "/v1/admin/warehouses", { bearer: candidate });
      window.sessionStorage.setItem(TOKEN_KEY, candidate);
      $("token").value = "";
      if (!window.location.hash || window.location.hash === "#/") window.location.hash = "#/orders";
      route();
    } catch (error) {
      let message = `Could not check the token: ${explain(error)}`;
      if (error instanceof ApiError && error.status === 401) message = `This token was refused: ${error.message}`;
      if (error instanceof ApiError && error.status === 403) message = "This token is valid but has no admin role.";
      showLogin(message);
    } finally {
      button.disabled = false;
    }
  }

  // -- screens ---------------------------------------------------------------------------------------------------

  function begin(screenName, ...nodes) {
    state.render += 1;
    $("login").hidden = true;
    $("nav").hidden = false;
    $("who").hidden = false;
    $("who-name").textContent = subjectOf(token());
    for (const link of document.querySelectorAll("#nav a")) {
      link.classList.toggle("current", link.dataset.screen === screenName);
    }
    const screen = $("screen");
    screen.dataset.screen = screenName;
    put(screen, ...nodes);
    screen.hidden = false;
    const mine = state.render;
    return () => mine === state.render;
  }

  // Orders: an order id opens its page; a checkout session id opens its order, or shows the session if none yet.
  function showOrders(prefill) {
    const input = el("input", {
      type: "search",
      id: "order-query",
      placeholder: "order id, checkout session id or customer id",
      "aria-label": "Order, session or customer id",
      autocomplete: "off",
      spellcheck: "false",
      value: prefill || undefined,
    });
    const result = el("div", { id: "order-result" });
    const form = el(
      "form",
      { class: "inline", id: "order-search", onsubmit: (e) => findOrder(e, input.value, result, current) },
      input,
      el("button", { type: "submit", text: "Find" }),
    );
    const current = begin(
      "orders",
      el("h1", { text: "Orders" }),
      el(
        "div",
        { class: "card" },
        form,
        el("p", {
          class: "muted",
          text:
            "An order id opens the order; a checkout session id opens its order (or shows the session while it has " +
            "none); a customer id lists that customer's orders, newest first. Emails are encrypted at rest and " +
            "cannot be searched.",
        }),
        result,
      ),
      recentOrders(),
    );
    input.focus();
    if (prefill) form.requestSubmit();
  }

  const RECENT_KEY = "kassa.console.recent";

  function remember(order) {
    const recent = JSON.parse(window.sessionStorage.getItem(RECENT_KEY) || "[]").filter((o) => o.id !== order.orderId);
    recent.unshift({ id: order.orderId, status: enumName(order.status, "ORDER_STATUS_"), total: order.totals && order.totals.grandTotal, at: order.createdAt });
    window.sessionStorage.setItem(RECENT_KEY, JSON.stringify(recent.slice(0, 10)));
  }

  function recentOrders() {
    let recent = [];
    try {
      recent = JSON.parse(window.sessionStorage.getItem(RECENT_KEY) || "[]");
    } catch (_) {
      recent = [];
    }
    if (!recent.length) return el("div");
    return el(
      "div",
      { class: "card" },
      el("h2", { text: "Opened in this tab" }),
      table(
        ["Order", "Status", { label: "Total", num: true }, "Placed"],
        recent.map((o) => [el("a", { href: `#/orders/${o.id}`, class: "mono", text: o.id }), badge(o.status), money(o.total), when(o.at)]),
      ),
    );
  }

  // What the box can hold: an order id, a checkout session id (both UUIDs), or a customer id (a token's subject).
  async function findOrder(event, raw, result, current) {
    event.preventDefault();
    const q = raw.trim();
    if (!q || q.length > 128 || /[\u0000-\u001f\u007f]/.test(q)) {
      put(result, notice("Enter an order id, a checkout session id or a customer id.", "error"));
      return;
    }
    put(result, notice("Searching…"));
    try {
      if (UUID.test(q)) {
        const id = q.toLowerCase();
        try {
          await api("GET", `/v1/orders/${encodeURIComponent(id)}`);
          window.location.hash = `#/orders/${id}`;
          return;
        } catch (error) {
          if (!(error instanceof ApiError) || error.status !== 404) throw error;
        }
        try {
          const session = (await api("GET", `/v1/checkout/sessions/${encodeURIComponent(id)}`)).session;
          if (session.orderId) {
            window.location.hash = `#/orders/${session.orderId}`;
            return;
          }
          if (current()) put(result, notice("This checkout session has no order yet."), sessionFacts(session));
          return;
        } catch (error) {
          if (!(error instanceof ApiError) || error.status !== 404) throw error;
        }
      }
      await customerOrders(q, "", result, current);
    } catch (error) {
      if (current()) put(result, notice(`Search failed: ${explain(error)}`, "error"));
    }
  }

  function sessionFacts(session) {
    return facts([
      ["Session", mono(session.sessionId)],
      ["Status", badge(enumName(session.status, "SESSION_STATUS_"))],
      ["Customer", mono(session.customerId)],
      ["Cart", mono(session.cartId)],
      ["Grand total", money(session.preview && session.preview.grandTotal)],
      ["Created", when(session.createdAt)],
      ["Expires", when(session.expiresAt)],
    ]);
  }

  // A customer's orders, newest first, a page at a time (ListOrders with customer_id, admin only).
  async function customerOrders(customerId, pageToken, result, current, shown = []) {
    const query = new URLSearchParams({ customerId, pageSize: "25" });
    if (pageToken) query.set("pageToken", pageToken);
    const answer = await api("GET", `/v1/orders?${query}`);
    if (!current()) return;
    const orders = shown.concat(answer.orders || []);
    if (!orders.length) {
      put(result, notice(`No order, checkout session or customer's order has the id ${customerId}.`, "error"));
      return;
    }
    const more = answer.nextPageToken
      ? el("button", {
          type: "button",
          class: "secondary",
          text: "More",
          onclick: () => customerOrders(customerId, answer.nextPageToken, result, current, orders).catch((error) => {
            if (current()) result.append(notice(`Could not load more: ${explain(error)}`, "error"));
          }),
        })
      : null;
    put(
      result,
      el("h2", {}, "Orders of customer ", mono(customerId)),
      table(
        ["Order", "Status", "Payment", { label: "Total", num: true }, "Placed"],
        orders.map((o) => [
          orderLink(o.orderId),
          badge(enumName(o.status, "ORDER_STATUS_")),
          badge(enumName(o.paymentStatus, "PAYMENT_STATUS_")),
          money(o.totals && o.totals.grandTotal),
          when(o.createdAt),
        ]),
        { testid: "customer-orders" },
      ),
      more,
    );
  }

  function traceLink(order) {
    const template = state.config.traceUrlTemplate;
    if (!template) return null;
    const values = { order_id: order.orderId, session_id: order.checkoutSessionId, trace_id: "" };
    let missing = false;
    const url = template.replace(/\{(order_id|session_id|trace_id)\}/g, (_, name) => {
      if (!values[name]) missing = true;
      return encodeURIComponent(values[name] || "");
    });
    if (missing) return null;
    return el("a", { href: url, id: "trace-link", target: "_blank", rel: "noopener noreferrer", text: "Trace in the collector ↗" });
  }

  async function showOrder(orderId) {
    const current = begin("orders", el("h1", {}, "Order ", mono(orderId)), notice("Loading…"));
    const id = encodeURIComponent(orderId);
    const [order, timeline, audit] = await Promise.allSettled([
      api("GET", `/v1/orders/${id}`),
      api("GET", `/v1/orders/${id}/timeline`),
      api("GET", `/v1/admin/audit?target=${id}&pageSize=50`),
    ]);
    if (!current()) return;
    if (order.status === "rejected") {
      begin("orders", el("h1", {}, "Order ", mono(orderId)), notice(`Could not load the order: ${explain(order.reason)}`, "error"), el("p", {}, el("a", { href: "#/orders", text: "Back to search" })));
      return;
    }
    const o = order.value.order;
    remember(o);
    const t = o.totals || {};
    const status = enumName(o.status, "ORDER_STATUS_");
    const payment = enumName(o.paymentStatus, "PAYMENT_STATUS_");
    const addr = o.shippingAddress || {};
    const address = [addr.name, addr.line1, addr.line2, [addr.postalCode, addr.city].filter(Boolean).join(" "), addr.region, addr.countryCode]
      .filter(Boolean)
      .join(", ");

    const timelineSection =
      timeline.status === "fulfilled"
        ? table(
            ["When", "Status", "Cause"],
            (timeline.value.events || []).map((e) => [when(e.occurredAt), badge(enumName(e.status, "ORDER_STATUS_")), e.cause || "—"]),
            { empty: "No status changes recorded.", testid: "timeline" },
          )
        : notice(`Could not load the timeline: ${explain(timeline.reason)}`, "error");
    const auditSection =
      audit.status === "fulfilled"
        ? table(
            ["When", "Service", "Action", "By", "Outcome", "Message"],
            (audit.value.entries || []).map((e) => [
              when(e.createTime),
              e.service,
              e.action,
              e.actor,
              badge(enumName(e.outcome, "OUTCOME_")),
              e.message || e.reason || "—",
            ]),
            { empty: "No admin action on this order.", testid: "audit" },
          )
        : notice(`Could not load the admin actions: ${explain(audit.reason)}`, "error");

    begin(
      "orders",
      el("h1", {}, "Order ", mono(o.orderId), " ", badge(status)),
      el(
        "p",
        {},
        el("a", { href: "#/orders", text: "← Search" }),
        " · ",
        el("a", { href: `#/trace/${o.orderId}`, id: "trace", text: "Trace" }),
        traceLink(o) ? [" · ", traceLink(o)] : null,
      ),
      el(
        "div",
        { class: "cols" },
        el(
          "div",
          { class: "card" },
          el("h2", { text: "Order" }),
          facts([
            ["Status", badge(status)],
            ["Customer", mono(o.customerId)],
            ["Email", o.email],
            ["Checkout session", mono(o.checkoutSessionId)],
            ["Placed", when(o.createdAt)],
            ["Updated", when(o.updatedAt)],
            ["Shipping", `${o.shippingMethod || "—"} to ${address || "—"}`],
            ["Carrier / tracking", o.carrier || o.trackingNumber ? `${o.carrier || "—"} ${o.trackingNumber || ""}` : ""],
            ["Notes", o.notes],
          ]),
        ),
        el(
          "div",
          { class: "card", id: "payments" },
          el("h2", { text: "Payment" }),
          facts([
            ["Payment status", badge(payment)],
            ["Payment id", mono(o.paymentId)],
            ["Method", o.paymentMethod],
            ["Subtotal", money(t.subtotal)],
            ["Discounts", money(t.discountTotal)],
            ["Shipping", money(t.shippingTotal)],
            ["Tax", money(t.taxTotal)],
            ["Grand total", el("strong", { text: money(t.grandTotal) })],
          ]),
        ),
      ),
      el(
        "div",
        { class: "card" },
        el("h2", { text: "Lines" }),
        table(
          ["SKU", "Name", { label: "Qty", num: true }, { label: "Unit price", num: true }, { label: "Line total", num: true }, "Warehouse"],
          (o.lines || []).map((l) => [mono(l.sku), l.name, String(l.quantity), money(l.unitPrice), money(l.lineTotal), l.warehouseId]),
          { testid: "lines" },
        ),
        (o.discounts || []).length
          ? el("p", { class: "muted" }, "Discounts: ", (o.discounts || []).map((d) => `${d.code} ${money(d.amount)}`).join(", "))
          : null,
      ),
      el("div", { class: "card", id: "timeline" }, el("h2", { text: "Timeline" }), timelineSection),
      el("div", { class: "card", id: "events" }, el("h2", { text: "Admin actions on this order" }), auditSection),
    );
  }

  function sessionLink(sessionId) {
    if (!sessionId) return "—";
    return el("a", { href: `#/find/${sessionId}`, class: "mono", title: "Find this session's order", text: sessionId });
  }

  function orderLink(orderId) {
    if (!orderId) return "—";
    return el("a", { href: `#/orders/${orderId}`, class: "mono", text: orderId });
  }

  function duration(seconds) {
    const s = Number(seconds);
    if (!Number.isFinite(s)) return "—";
    if (s < 90) return `${Math.round(s)} s`;
    if (s < 5400) return `${Math.round(s / 60)} min`;
    if (s < 172800) return `${Math.round(s / 3600)} h`;
    return `${Math.round(s / 86400)} d`;
  }

  function percent(ratio) {
    const r = Number(ratio);
    return Number.isFinite(r) ? `${(r * 100).toFixed(1)} %` : "—";
  }

  // An action button: runs ``act``, shows what came of it in ``out``, then ``after`` (a reload).
  function actionButton(label, { kind, testid, act, out, after }) {
    const button = el("button", { type: "button", class: kind || "secondary", "data-testid": testid, text: label });
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const message = await act();
        put(out, notice(message));
      } catch (error) {
        put(out, notice(`${label} failed: ${explain(error)}`, "error"));
      } finally {
        button.disabled = false;
      }
      if (after) after();
    });
    return button;
  }

  // -- the dead-letter queue: failed compensations, retried by a worker, parked by an operator, replayed ------------

  const DLQ_TABS = [
    ["DEAD", "Dead", "out of retries: an operator's call (replay runs one once more)"],
    ["PENDING", "Retrying", "the worker retries these with backoff; retry runs one now, park sets it aside"],
    ["PARKED", "Parked", "set aside by an operator; replay runs one once more"],
    ["DONE", "Done", "compensated"],
  ];

  async function showDlq(tab) {
    const status = DLQ_TABS.some(([s]) => s === tab) ? tab : "DEAD";
    const out = el("div", { id: "dlq-result" });
    const list = el("div", { id: "dlq-list" }, notice("Loading…"));
    const tabs = el(
      "div",
      { class: "tabs", role: "tablist" },
      DLQ_TABS.map(([s, label]) =>
        el("button", {
          type: "button",
          role: "tab",
          class: s === status ? "current" : undefined,
          "aria-selected": s === status ? "true" : "false",
          "data-testid": `dlq-tab-${s.toLowerCase()}`,
          text: label,
          onclick: () => {
            window.location.hash = `#/dlq/${s.toLowerCase()}`;
          },
        }),
      ),
    );
    const about = DLQ_TABS.find(([s]) => s === status)[2];
    const current = begin(
      "dlq",
      el("h1", { text: "Dead letters" }),
      el(
        "p",
        { class: "muted" },
        "Compensations that failed (void an authorization, release stock or a promotion use, clean a cart…). ",
        "Each is retried by a worker with backoff, then left dead for an operator.",
      ),
      tabs,
      el("p", { class: "muted", text: `${DLQ_TABS.find(([s]) => s === status)[1]}: ${about}.` }),
      out,
      el("div", { class: "card" }, list),
    );
    const reload = () => {
      if (current()) showDlqList(status, list, out, current, reload);
    };
    await showDlqList(status, list, out, current, reload);
  }

  async function showDlqList(status, list, out, current, reload) {
    let answer;
    try {
      answer = await api("GET", `/v1/admin/dlq?status=COMPENSATION_STATUS_${status}&pageSize=100`);
    } catch (error) {
      if (current()) put(list, notice(`Could not load the dead letters: ${explain(error)}`, "error"));
      return;
    }
    if (!current()) return;
    const rows = (answer.entries || []).map((entry) => {
      const id = encodeURIComponent(entry.id);
      const entryStatus = enumName(entry.status, "COMPENSATION_STATUS_");
      const actions = el("td", { class: "actions" });
      const run = (verb, label, kind) =>
        actionButton(label, {
          kind,
          testid: `dlq-${verb}`,
          out,
          after: reload,
          act: async () => {
            const result = await api("POST", `/v1/admin/dlq/${id}:${verb}`, { body: {}, headers: { "Idempotency-Key": idempotencyKey() } });
            const shown = `${entry.operation} ${entry.id}`;
            if (verb === "park") return `Parked ${shown}.`;
            return result.succeeded ? `${label}: ${shown} succeeded.` : `${label}: ${shown} failed again: ${result.error || "no detail"}.`;
          },
        });
      // What the routes allow: retry and park a pending entry; replay a parked or dead one.
      if (entryStatus === "PENDING") actions.append(run("retry", "Retry now"), run("park", "Park", "danger"));
      if (entryStatus === "PARKED" || entryStatus === "DEAD") actions.append(run("replay", "Replay"));
      const payload = el("pre", { class: "mono", hidden: true });
      const toggle = el("button", { type: "button", class: "link", text: "payload" });
      toggle.addEventListener("click", async () => {
        if (!payload.hidden) {
          payload.hidden = true;
          return;
        }
        try {
          const shown = await api("GET", `/v1/admin/dlq/${id}`);
          payload.textContent = JSON.stringify((shown.entry && shown.entry.payload) || {}, null, 2);
        } catch (error) {
          payload.textContent = `Could not load it: ${explain(error)}`;
        }
        payload.hidden = false;
      });
      return el(
        "tr",
        { "data-id": entry.id, "data-testid": "dlq-row" },
        el("td", {}, el("span", { class: "mono", text: entry.operation }), el("br"), toggle, payload),
        el("td", {}, sessionLink(entry.sessionId)),
        el("td", {}, badge(entryStatus)),
        el("td", { class: "num", text: String(entry.attempts || 0) }),
        el("td", { title: when(entry.createTime), text: ago(entry.createTime) }),
        el("td", { title: when(entry.nextAttemptTime), text: entryStatus === "PENDING" ? when(entry.nextAttemptTime) : "—" }),
        el("td", { class: "error", text: entry.lastError || "—" }),
        actions,
      );
    });
    if (!rows.length) {
      put(list, el("p", { class: "muted", "data-testid": "dlq-empty", text: "No entries." }));
      return;
    }
    const head = ["Operation", "Session", "Status", "Attempts", "Created", "Next attempt", "Last error", ""].map((h) =>
      el("th", { class: h === "Attempts" ? "num" : undefined, text: h }),
    );
    put(
      list,
      el("table", { "data-testid": "dlq-table" }, el("thead", {}, el("tr", {}, head)), el("tbody", {}, rows)),
      answer.nextPageToken ? el("p", { class: "muted", text: "Showing the first 100." }) : null,
    );
  }

  // -- stuck sessions: mid-confirm past their lease ------------------------------------------------------------------

  async function showStuck() {
    const out = el("div", { id: "stuck-result" });
    const list = el("div", { id: "stuck-list" }, notice("Loading…"));
    const current = begin(
      "stuck",
      el("h1", { text: "Stuck sessions" }),
      el(
        "p",
        { class: "muted" },
        "Checkouts whose saga stopped making progress past its lease (a process died mid-confirm, a call hung). ",
        "The recovery worker gets to them; “Drive forward or compensate now” does it at once.",
      ),
      out,
      el("div", { class: "card" }, list),
    );
    const reload = async () => {
      let answer;
      try {
        answer = await api("GET", "/v1/admin/sessions/stuck?pageSize=100");
      } catch (error) {
        if (current()) put(list, notice(`Could not load the stuck sessions: ${explain(error)}`, "error"));
        return;
      }
      if (!current()) return;
      const lease = answer.leaseSeconds ? el("p", { class: "muted", text: `Lease: ${duration(answer.leaseSeconds)}.` }) : null;
      put(
      list,
        table(
          ["Session", "Saga step", "Last progress", { label: "Stuck for", num: true }, { label: "Attempt", num: true }, "Order", { label: "", cls: "actions" }],
          (answer.sessions || []).map((s) => [
            sessionLink(s.sessionId),
            mono(s.sagaStep),
            when(s.lastProgressTime),
            duration(s.ageSeconds),
            String(s.sagaAttempt || 0),
            orderLink(s.orderId),
            actionButton("Drive forward or compensate now", {
              testid: "stuck-resolve",
              out,
              after: reload,
              act: async () => {
                const r = await api("POST", `/v1/admin/sessions/stuck/${encodeURIComponent(s.sessionId)}:resolve`, {
                  body: {},
                  headers: { "Idempotency-Key": idempotencyKey() },
                });
                const order = r.orderId ? `, order ${r.orderId}` : "";
                const error = r.lastError ? ` (${r.lastError})` : "";
                return `Session ${r.sessionId || s.sessionId}: ${r.outcome || "done"}, now ${r.sessionStatus || "—"}${order}${error}.`;
              },
            }),
          ]),
          { empty: "No session is stuck.", testid: "stuck-table" },
        ),
        lease,
      );
    };
    await reload();
  }

  // -- the funnel and failure rates of the last hour, and the outboxes -------------------------------------------

  async function showFunnel() {
    const body = el("div", { id: "funnel" }, notice("Loading…"));
    const outbox = el("div", { id: "outbox" }, notice("Loading…"));
    const paid = el("div", { id: "payment-failures" }, notice("Loading…"));
    const current = begin(
      "funnel",
      el("h1", { text: "Funnel — the last hour" }),
      el("div", { class: "card" }, body),
      el("div", { class: "card" }, el("h2", { text: "Payment failures" }), paid),
      el("div", { class: "card" }, el("h2", { text: "Outbox backlog per service" }), outbox),
    );
    const end = new Date();
    const start = new Date(end.getTime() - 3600 * 1000);
    // Both default to the hour before the server's now (the browser's clock may be off).
    const [funnel, boxes, payments] = await Promise.allSettled([
      api("GET", "/v1/admin/funnel"),
      api("GET", "/v1/admin/outbox"),
      api("GET", "/v1/admin/payments/failure-rates"),
    ]);
    if (!current()) return;
    if (funnel.status === "rejected") {
      put(body, notice(`Could not load the funnel: ${explain(funnel.reason)}`, "error"));
    } else {
      const f = funnel.value;
      const steps = [
        ["Carts created", Number(f.cartsCreated || 0)],
        ["Checkouts started", Number(f.checkoutsStarted || 0)],
        ["Checkouts confirmed", Number(f.checkoutsConfirmed || 0)],
        ["Checkouts failed", Number(f.checkoutsFailed || 0)],
      ];
      const top = Math.max(1, ...steps.map(([, n]) => n));
      const started = steps[1][1];
      const failures = f.failuresByReason || [];
      const failed = Math.max(1, failures.reduce((sum, x) => sum + Number(x.count || 0), 0));
      put(
      body,
        el("p", { class: "muted", text: `${when(f.startTime || start.toISOString())} → ${when(f.endTime || end.toISOString())}` }),
        table(
          ["Step", { label: "Count", num: true }, { label: "Of started", num: true }, { label: "", cls: "barcell" }],
          steps.map(([label, n], i) => [
            label,
            String(n),
            i >= 1 && started ? percent(n / started) : "—",
            el("div", { class: "bar", "data-width": String(Math.round((100 * n) / top)) }),
          ]),
          { testid: "funnel-table" },
        ),
        el("p", {}, "Failure rate: ", el("strong", { "data-testid": "failure-rate", text: percent(f.failureRate) }), " of the checkouts that ended."),
        el("h2", { text: "Failures by reason" }),
        table(
          ["Reason", { label: "Count", num: true }, { label: "Share", num: true }],
          failures.map((x) => [mono(x.reason), String(x.count), percent(Number(x.count || 0) / failed)]),
          { empty: "No checkout failed in this hour.", testid: "failures-table" },
        ),
      );
      // Bar widths through the CSSOM: the CSP refuses inline style attributes.
      for (const bar of body.querySelectorAll(".bar")) bar.style.width = `${bar.dataset.width}%`;
    }
    if (payments.status === "rejected") {
      put(paid, notice(`Could not load the payment failure rates: ${explain(payments.reason)}`, "error"));
    } else {
      const p = payments.value;
      put(
        paid,
        el(
          "p",
          {},
          `${p.failed || 0} of ${p.payments || 0} payments failed: `,
          el("strong", { "data-testid": "payment-failure-rate", text: percent(p.failureRate) }),
        ),
        table(
          ["Code", { label: "Count", num: true }, { label: "Rate", num: true }],
          (p.byCode || []).map((c) => [mono(c.code), String(c.count), percent(c.rate)]),
          { empty: "No payment failed in this hour.", testid: "payment-failures-table" },
        ),
      );
    }
    if (boxes.status === "rejected") {
      put(outbox, notice(`Could not load the outbox status: ${explain(boxes.reason)}`, "error"));
    } else {
      put(
      outbox,
        table(
          ["Service", { label: "Unpublished", num: true }, { label: "In flight", num: true }, { label: "Failing", num: true }, { label: "Oldest waiting", num: true }, "Last published"],
          (boxes.value.services || []).map((b) => [
            b.service,
            String(b.unpublished || 0),
            String(b.processing || 0),
            String(b.failing || 0),
            Number(b.unpublished || 0) ? duration(b.oldestUnpublishedAgeSeconds) : "—",
            b.lastPublishedTime ? `${when(b.lastPublishedTime)} (${ago(b.lastPublishedTime)})` : "—",
          ]),
          { empty: "No service reported.", testid: "outbox-table" },
        ),
      );
    }
  }

  // -- an order's traces: span trees from the gateway's trace files -----------------------------------------------

  async function showTrace(key) {
    const body = el("div", { id: "traces" }, notice("Loading…"));
    const current = begin(
      "orders",
      el("h1", {}, "Trace of ", mono(key)),
      el("p", {}, el("a", { href: UUID.test(key) ? `#/orders/${key}` : "#/orders", text: "← Order" })),
      body,
    );
    let answer;
    try {
      answer = await api("GET", `/console/api/traces/${encodeURIComponent(key)}`);
    } catch (error) {
      if (current()) put(body, notice(`Could not read the traces: ${explain(error)}`, "error"));
      return;
    }
    if (!current()) return;
    const traces = answer.traces || [];
    if (!traces.length) {
      put(
        body,
        notice(
          "No trace names this id in the gateway's trace files (KASSA_TRACE_DIR). Where traces go to an OTLP " +
            "collector, KASSA_CONSOLE_TRACE_URL links the order page to it.",
        ),
      );
      return;
    }
    put(body, traces.map((t) => traceCard(t)));
    // Waterfall bars through the CSSOM: the CSP refuses inline style attributes.
    for (const bar of body.querySelectorAll(".span-bar")) {
      bar.style.marginLeft = `${bar.dataset.left}%`;
      bar.style.width = `${bar.dataset.width}%`;
    }
  }

  function traceCard(trace) {
    const total = Math.max(Number(trace.duration_ms) || 0, 0.001);
    const rows = [];
    const walk = (node, depth) => {
      const left = Math.min(100, (100 * (Number(node.offset_ms) || 0)) / total);
      const width = Math.max(0.3, Math.min(100 - left, (100 * (Number(node.duration_ms) || 0)) / total));
      const failed = node.status && node.status !== "UNSET" && node.status !== "OK";
      rows.push(
        el(
          "tr",
          { "data-testid": "span", class: failed ? "failed" : undefined },
          el(
            "td",
            { class: `span-name depth-${Math.min(depth, 12)}` },
            node.name,
            failed && node.status_message ? el("div", { class: "error small", text: node.status_message }) : null,
          ),
          el("td", { text: node.service }),
          el("td", { class: "num", text: `${(Number(node.offset_ms) || 0).toFixed(1)}` }),
          el("td", { class: "num", text: `${(Number(node.duration_ms) || 0).toFixed(1)}` }),
          el("td", {}, failed ? badge("ERROR") : ""),
          el("td", { class: "waterfall" }, el("div", { class: "span-bar", "data-left": left.toFixed(2), "data-width": width.toFixed(2) })),
        ),
      );
      for (const child of node.children || []) walk(child, depth + 1);
    };
    for (const root of trace.roots || []) walk(root, 0);
    const started = trace.start_ns ? new Date(Number(BigInt(trace.start_ns) / 1000000n)).toISOString() : "";
    return el(
      "div",
      { class: "card", "data-testid": "trace" },
      el("h2", {}, "Trace ", mono(trace.trace_id)),
      el("p", {
        class: "muted",
        text: `${when(started)} · ${trace.span_count} spans · ${(Number(trace.duration_ms) || 0).toFixed(1)} ms · ${(trace.services || []).join(", ")}`,
      }),
      el(
        "table",
        { class: "spans" },
        el("thead", {}, el("tr", {}, ["Span", "Service", "At (ms)", "Took (ms)", "", ""].map((h, i) => el("th", { class: i === 2 || i === 3 ? "num" : undefined, text: h })))),
        el("tbody", {}, rows),
      ),
    );
  }

  // -- routing ---------------------------------------------------------------------------------------------------

  function route() {
    if (!token()) {
      showLogin("");
      return;
    }
    const parts = window.location.hash.replace(/^#\/?/, "").split("/").filter(Boolean);
    let decoded;
    try {
      decoded = parts.map(decodeURIComponent);
    } catch (_) {
      decoded = [];
    }
    const [screen, arg] = decoded;
    if (screen === "orders" && arg) showOrder(arg);
    else if (screen === "find" && arg) showOrders(arg);
    else if (screen === "trace" && arg) showTrace(arg);
    else if (screen === "dlq") showDlq(String(arg || "dead").toUpperCase());
    else if (screen === "stuck") showStuck();
    else if (screen === "funnel") showFunnel();
    else showOrders("");
  }

  async function start() {
    $("login-form").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", () => signOut(""));
    window.addEventListener("hashchange", route);
    try {
      const response = await fetch("/console/config.json", { cache: "no-store", credentials: "omit" });
      if (response.ok) state.config = await response.json();
    } catch (_) {
      // the console works without its settings; the trace link is what goes missing
    }
    route();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
