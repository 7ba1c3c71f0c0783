// Rumor web UI: keeps a server-rendered page live. No framework, no build step.
//
// The page names the JSON API endpoints it depends on in <body data-watch="...">. For each one
// we run a Consul blocking query (?index=N&wait=...). When an endpoint reports a new
// X-Consul-Index, the page itself is fetched again and only the elements whose HTML changed are
// replaced (elements carry data-key; keyed children are matched by key). Pages with nothing to
// watch (LB counters) give data-poll="seconds" and are refreshed on that period. Without this
// script the page is still complete; it is just not live.
(function () {
  "use strict";
  var body = document.body;
  var main = document.getElementById("main");
  // The datacenter selector is a plain GET form; choosing a datacenter submits it at once.
  var dcForm = document.getElementById("dc-form"), dcSelect = document.getElementById("dc");
  if (dcForm && dcSelect && dcSelect.tagName === "SELECT") {
    dcSelect.addEventListener("change", function () { dcForm.submit(); });
  }
  if (!main || !window.fetch || !window.DOMParser || body.hasAttribute("data-static")) return;

  var WAIT = "30s", WAIT_MS = 30000;
  var watches = (body.getAttribute("data-watch") || "").split(/\s+/).filter(Boolean);
  var poll = parseFloat(body.getAttribute("data-poll") || "0") || 0;
  var live = document.getElementById("live");
  // With ACLs on, the token form stores the token in the rumor_token cookie (see ui_routes.py);
  // the JSON API wants it in X-Consul-Token.
  var token = null;
  document.cookie.split(";").forEach(function (c) {
    var kv = c.trim().split("=");
    if (kv[0] === "rumor_token" && kv[1]) {
      try { token = decodeURIComponent(kv.slice(1).join("=")); } catch (e) { token = null; }
    }
  });

  function setState(state, text) {
    if (!live) return;
    live.setAttribute("data-state", state);
    live.textContent = text || state;
  }

  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  function get(url, timeoutMs) {
    var ctl = window.AbortController ? new AbortController() : null;
    var timer = ctl ? setTimeout(function () { ctl.abort(); }, timeoutMs) : null;
    var headers = {};
    if (token) headers["X-Consul-Token"] = token;
    return fetch(url, { headers: headers, cache: "no-store", credentials: "same-origin",
                        signal: ctl ? ctl.signal : undefined })
      .finally(function () { if (timer) clearTimeout(timer); });
  }

  // --- patching the DOM -------------------------------------------------------------------------
  function keyed(el) {
    var kids = el.children;
    if (!kids.length) return false;
    for (var i = 0; i < kids.length; i++) if (!kids[i].hasAttribute("data-key")) return false;
    return true;
  }

  function syncAttributes(cur, next) {
    var i, a;
    for (i = cur.attributes.length - 1; i >= 0; i--) {
      a = cur.attributes[i].name;
      if (!next.hasAttribute(a)) cur.removeAttribute(a);
    }
    for (i = 0; i < next.attributes.length; i++) {
      a = next.attributes[i];
      if (cur.getAttribute(a.name) !== a.value) cur.setAttribute(a.name, a.value);
    }
  }

  function mark(el) {
    el.classList.remove("changed");
    void el.offsetWidth;  // restart the animation
    el.classList.add("changed");
  }

  // Make `cur` look like `next`; returns the node now in the document.
  function patch(cur, next) {
    if (cur.isEqualNode(next)) return cur;
    if (cur.tagName !== next.tagName || !keyed(cur) || !keyed(next)) {
      var fresh = document.importNode(next, true);
      cur.replaceWith(fresh);
      if (fresh.hasAttribute("data-key") && fresh !== main) mark(fresh);
      return fresh;
    }
    syncAttributes(cur, next);
    patchChildren(cur, next);
    return cur;
  }

  function patchChildren(cur, next) {
    var old = {};
    Array.prototype.forEach.call(cur.children, function (c) { old[c.getAttribute("data-key")] = c; });
    var wanted = Array.prototype.slice.call(next.children);
    var prev = null;  // the last element put in place; the next one goes right after it
    wanted.forEach(function (n) {
      var k = n.getAttribute("data-key");
      var o = Object.prototype.hasOwnProperty.call(old, k) ? old[k] : null;
      var placed;
      if (o) {
        delete old[k];
        placed = patch(o, n);
      } else {
        placed = document.importNode(n, true);
        mark(placed);
      }
      var ref = prev ? prev.nextElementSibling : cur.firstElementChild;
      if (placed !== ref) cur.insertBefore(placed, ref);
      prev = placed;
    });
    Object.keys(old).forEach(function (k) { old[k].remove(); });
  }

  // A folded check output (<details data-key>) the reader opened stays open across refreshes.
  function keepOpen(nextMain) {
    var open = {};
    Array.prototype.forEach.call(main.querySelectorAll("details[open][data-key]"), function (d) {
      open[d.getAttribute("data-key")] = true;
    });
    Array.prototype.forEach.call(nextMain.querySelectorAll("details[data-key]"), function (d) {
      if (open[d.getAttribute("data-key")] === true) d.setAttribute("open", "");
    });
  }

  // --- refreshing the page ----------------------------------------------------------------------
  var busy = false, again = false;
  var watching = false;   // a blocking query answered lately: the page is live without polling

  function refresh() {
    if (busy) { again = true; return Promise.resolve(); }
    busy = true;
    return get(window.location.href, 15000)
      .then(function (r) {
        var type = r.headers.get("Content-Type") || "";
        if (type.indexOf("text/html") !== 0) throw new Error("not html: " + r.status);
        return r.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var nextMain = doc.getElementById("main");
        if (!nextMain) return;
        keepOpen(nextMain);
        if (!keyed(main) || !keyed(nextMain)) main = patch(main, nextMain);
        else patchChildren(main, nextMain);
        if (doc.title && doc.title !== document.title) document.title = doc.title;
        var idx = doc.getElementById("index"), mine = document.getElementById("index");
        if (idx && mine) mine.textContent = idx.textContent;
        if (!watching) setState("live", "live (polling)");
      })
      .catch(function () { setState("offline", "reconnecting…"); })
      .finally(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  // A burst of changes (a deploy touching many instances) wakes several watches at once: fetch
  // the page at most every MIN_GAP ms, and always once more after the last change.
  var MIN_GAP = 500, lastRefresh = 0, timer = null;
  function scheduleRefresh() {
    if (timer) return;
    var delay = Math.max(0, lastRefresh + MIN_GAP - Date.now());
    timer = setTimeout(function () {
      timer = null;
      lastRefresh = Date.now();
      refresh();
    }, delay);
  }

  // --- blocking queries -------------------------------------------------------------------------
  async function watch(url) {
    var index = 0, backoff = 1000;
    for (;;) {
      var r;
      try {
        var sep = url.indexOf("?") < 0 ? "?" : "&";
        r = await get(url + sep + "index=" + index + "&wait=" + WAIT, WAIT_MS + 15000);
      } catch (e) {
        watching = false;
        setState("offline", "reconnecting…");
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 15000);
        continue;
      }
      var got = parseInt(r.headers.get("X-Consul-Index") || "", 10);
      if (r.status === 403) { setState("offline", "token refused"); await sleep(15000); continue; }
      if (!(got > 0)) {
        // The endpoint does not answer blocking queries (or is not in this build): poll.
        return fallbackPoll();
      }
      backoff = 1000;
      watching = true;
      setState("live");
      if (got < index) index = 0;                    // the index went backwards: start over
      else if (got !== index) { index = got; scheduleRefresh(); }
      else index = got;
      // A 404 for a missing service still carries an index, so the loop goes on.
      if (!r.ok && r.status !== 404) await sleep(1000);
    }
  }

  var polling = false;
  async function fallbackPoll() {
    if (polling) return;
    polling = true;
    var every = (poll || 5) * 1000;
    for (;;) {
      await sleep(every);
      await refresh();
    }
  }

  if (watches.length) watches.forEach(function (u) { watch(u); });
  if (poll || !watches.length) fallbackPoll();
})();
