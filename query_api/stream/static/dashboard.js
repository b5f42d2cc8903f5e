// txstats dashboard: live from GET stats/stream (Server-Sent Events), polling GET stats when
// EventSource is unavailable (or ?poll is in the page's URL, or reads need a token).
// Every URL is relative, so the page works under any host name or path prefix.
// Money is shown exactly as the API sends it: strings, never parsed into floats.
(function () {
  "use strict";
  var FIELDS = ["count", "sum", "avg", "max", "min"];
  var HISTORY_SECONDS = 300;
  var POLL_MS = 1000;
  var params = new URLSearchParams(window.location.search);
  var forcePoll = params.has("poll");
  var windowSelect = document.getElementById("window");
  var connection = document.getElementById("connection");
  var samples = []; // {t: ms, count: int, version: int}, one per second
  var latestAll = null;
  var lastEventAt = 0;
  var streams = [];
  var pollTimer = null;
  var token = null;

  function text(id, value) {
    var el = document.getElementById(id);
    var shown = value === null || value === undefined ? "–" : String(value);
    if (el.textContent !== shown) { el.textContent = shown; }
  }

  function setState(state) {
    connection.className = "state " + state;
    connection.dataset.state = state;
    connection.textContent = state;
  }

  function show(prefix, doc) {
    FIELDS.forEach(function (f) { text(prefix + "-" + f, doc[f]); });
  }

  function onAllTime(doc) {
    latestAll = doc;
    show("all", doc);
    text("lag", doc.as_of.total_lag);
    text("version", doc.as_of.version);
    text("as-of", doc.as_of.server_time);
    lastEventAt = Date.now();
  }

  function onWindow(doc) {
    if (doc.as_of.window && String(doc.as_of.window.seconds) === windowSelect.value) {
      show("win", doc);
    }
    lastEventAt = Date.now();
  }

  // --- streaming -----------------------------------------------------------------------
  function open(url, handler) {
    var source = new EventSource(url);
    source.addEventListener("stats", function (e) { handler(JSON.parse(e.data)); });
    source.onopen = function () { setState("live"); };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) {
        setState("offline");
        checkAuth();
      } else {
        setState("reconnecting");
      }
    };
    return source;
  }

  function startStreams() {
    stopStreams();
    streams.push(open("stats/stream", onAllTime));
    streams.push(open("stats/stream?window=" + encodeURIComponent(windowSelect.value), onWindow));
  }

  function stopStreams() {
    streams.forEach(function (s) { s.close(); });
    streams = [];
  }

  // --- polling fallback -------------------------------------------------------------------
  function get(url) {
    var headers = token ? { Authorization: "Bearer " + token } : {};
    return fetch(url, { headers: headers, cache: "no-store" }).then(function (r) {
      if (r.status === 401 || r.status === 403) { throw new Error("auth"); }
      if (!r.ok) { throw new Error("HTTP " + r.status); }
      return r.json();
    });
  }

  function pollOnce() {
    Promise.all([get("stats"), get("stats?window=" + encodeURIComponent(windowSelect.value))])
      .then(function (docs) { onAllTime(docs[0]); onWindow(docs[1]); setState("polling"); })
      .catch(function (err) {
        setState("offline");
        if (err.message === "auth") { showAuth(); }
      });
  }

  function startPolling() {
    stopStreams();
    if (pollTimer === null) { pollTimer = setInterval(pollOnce, POLL_MS); }
    pollOnce();
  }

  function checkAuth() {
    get("stats").catch(function (err) {
      if (err.message === "auth") { stopStreams(); showAuth(); }
    });
  }

  function showAuth() { document.getElementById("auth-panel").classList.remove("hidden"); }

  document.getElementById("use-token").addEventListener("click", function () {
    token = document.getElementById("token").value.trim() || null;
    startPolling();
  });

  windowSelect.addEventListener("change", function () {
    FIELDS.forEach(function (f) { text("win-" + f, null); });
    if (pollTimer !== null) { pollOnce(); } else { startStreams(); }
  });

  // --- transactions per second, sampled once a second from the all-time count -----------------
  var canvas = document.getElementById("tps");
  function rates() {
    var out = [];
    for (var i = 1; i < samples.length; i += 1) {
      var a = samples[i - 1], b = samples[i];
      var dt = (b.t - a.t) / 1000;
      var rate = a.version === b.version && dt > 0 ? (b.count - a.count) / dt : 0;
      out.push({ t: b.t, rate: Math.max(0, rate) });
    }
    return out;
  }

  function draw() {
    var ctx = canvas.getContext("2d");
    var w = canvas.width, h = canvas.height, pad = 34;
    ctx.clearRect(0, 0, w, h);
    var points = rates();
    var top = 1;
    points.forEach(function (p) { top = Math.max(top, p.rate); });
    ctx.strokeStyle = "#33404d";
    ctx.fillStyle = "#8b98a5";
    ctx.font = "12px sans-serif";
    ctx.beginPath(); ctx.moveTo(pad, 4); ctx.lineTo(pad, h - 16); ctx.lineTo(w, h - 16); ctx.stroke();
    ctx.fillText(String(Math.ceil(top)), 2, 14);
    ctx.fillText("0", 2, h - 18);
    ctx.fillText("-" + HISTORY_SECONDS + " s", pad, h - 2);
    ctx.fillText("now", w - 26, h - 2);
    if (points.length < 2) { return; }
    var now = Date.now();
    ctx.strokeStyle = "#4fc3f7";
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach(function (p, i) {
      var x = pad + (w - pad) * (1 - (now - p.t) / (HISTORY_SECONDS * 1000));
      var y = (h - 16) - (h - 24) * (p.rate / top);
      if (i === 0) { ctx.moveTo(x, y); } else { ctx.lineTo(x, y); }
    });
    ctx.stroke();
  }

  setInterval(function () {
    var now = Date.now();
    if (latestAll !== null) {
      samples.push({ t: now, count: latestAll.count, version: latestAll.as_of.version });
      while (samples.length && samples[0].t < now - HISTORY_SECONDS * 1000) { samples.shift(); }
      var r = rates();
      text("tps-now", r.length ? r[r.length - 1].rate.toFixed(1) : null);
      var age = (now - Date.parse(latestAll.as_of.server_time)) / 1000;
      text("freshness", "read " + Math.max(0, age).toFixed(1) + " s ago, event " +
        ((now - lastEventAt) / 1000).toFixed(1) + " s ago");
    }
    draw();
  }, 1000);

  if (forcePoll || typeof window.EventSource !== "function") { startPolling(); } else { startStreams(); }
})();
