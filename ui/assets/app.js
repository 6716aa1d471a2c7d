// flowlens ui: draws what /api/stream sends (or, in a saved matrix file,
// what window.FLOWLENS_DATA holds) on the map (map.js), the flow table and
// the explanation panel. The Go side aggregates; this script only keeps
// what it was sent and draws it.
"use strict";

// ---- table ----

function endpointText(ep, pod, port) {
  const name = ep.pod || (ep.kind === "pod" ? ep.id : ep.label + (ep.ip && ep.ip !== ep.label ? " " + ep.ip : ""));
  return port ? name + ":" + port : name;
}

// srcText is a flow's source; ":*" for aggregated connection attempts,
// which come from every source port.
function srcText(f) {
  const s = endpointText(f.src, f.src.pod, f.srcPort);
  return f.attempts ? s + ":*" : s;
}

// portOf is the port a flow's conversation is about: the destination's,
// or for a reply its source's (as the edge it counts on).
function portOf(f) {
  const p = f.reply ? f.srcPort : f.dstPort;
  return p ? p + "/" + f.proto : f.proto;
}

function flowRow(f) {
  const t = new Date(f.time);
  const why = f.mismatch ? el("span", { class: "mm", textContent: "⚠ " + f.mismatch })
    : (f.dropReason || (f.why && f.why.summary) || "");
  const tr = el("tr", { "data-id": f.id, "data-edge": f.edge, title: f.why ? f.why.summary || "" : "" },
    el("td", { textContent: isNaN(t) ? "" : t.toLocaleTimeString() }),
    el("td", { textContent: srcText(f) }),
    el("td", { textContent: endpointText(f.dst, f.dst.pod, f.dstPort) }),
    el("td", { textContent: portOf(f) + (f.reply ? " ↩" : ""), title: f.reply ? "reply" : "" }),
    el("td", { class: "v-" + f.verdict, textContent: verdictText(f.verdict) + (f.attempts ? " ×" + f.attempts : ""),
      title: f.attempts ? f.attempts + " connection attempts from any source port" : "" }),
    el("td", {}, why));
  return tr;
}

// verdictText names a saved matrix's verdicts as what they are: intended.
function verdictText(v) {
  if (state.mode !== "matrix") return v;
  return v === "FORWARDED" ? "ALLOWED" : v === "DROPPED" ? "DENIED" : v;
}

function visibleFlows() {
  let rows = state.flows;
  if (state.mode !== "live") rows = rows.filter(localMatch());
  if (state.edgeFilter) rows = rows.filter((f) => f.edge === state.edgeFilter);
  return rows;
}

let tableDue = false;
let rowCache = new Map(); // flow id -> its row on screen
let tableSig = ""; // what the table on screen shows
function renderTable() {
  if (tableDue) return;
  tableDue = true;
  requestAnimationFrame(() => {
    tableDue = false;
    // New rows would push the one under the pointer away: hold the table
    // still while the pointer is on it.
    // A new filter or edge shows at once.
    const sig = [state.generation, state.edgeFilter, ...filterArgs()].join(" ");
    if ($("#table-wrap").matches(":hover") && sig === tableSig) {
      $("#table-note").textContent = "updates paused while the pointer is on the table";
      return;
    }
    tableSig = sig;
    const all = visibleFlows(), rows = all.slice(0, 300);
    // Rows already on screen are kept, not rebuilt: a click whose press and
    // release straddle a live update still lands on its row.
    const cache = new Map();
    const trs = rows.map((f) => {
      const tr = rowCache.get(f.id) || flowRow(f);
      tr.classList.toggle("sel", state.selected === f.id);
      cache.set(f.id, tr);
      return tr;
    });
    rowCache = cache;
    const body = $("#flows tbody");
    if (trs.length !== body.children.length || trs.some((tr, i) => body.children[i] !== tr)) body.replaceChildren(...trs);
    const total = all.length;
    $("#table-note").textContent = total + " flows" + (total > 300 ? " (newest 300 listed)" : "") +
      (state.skipped ? " · " + state.skipped + " more came too fast to list (counted on the map)" : "");
  });
}

function addFlows(batch) {
  // batches arrive oldest first; the table is newest first.
  cy.batch(() => {
    for (const f of batch) { ensureNode(f.src); ensureNode(f.dst); }
    flushPending();
  });
  state.flows = batch.slice().reverse().concat(state.flows);
  state.flows.sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : 0));
  // Live, the stream resends what a new filter needs; a saved page has
  // nothing to ask, so it keeps every flow.
  if (state.mode === "live" && state.flows.length > MAX_ROWS) state.flows.length = MAX_ROWS;
}

// ---- why ----

function sideText(side, who) {
  if (!side) return "unknown";
  if (!side.applicable) return "not applicable";
  if (!side.isolated) return who + " is not isolated: anything is allowed";
  let s = who + " isolated by " + (side.isolatedBy || []).join(", ");
  s += side.allowed ? "; allowed by " + (side.allowedBy || []).join(", ") : "; no rule allows this";
  return s;
}

function renderWhy(title, v) {
  const box = $("#why");
  const dl = el("dl");
  const row = (k, val) => { if (val) dl.append(el("dt", { textContent: k }), el("dd", { textContent: val })); };
  row("verdict", verdictText(v.verdict) + (v.count ? " (" + v.count + ")" : ""));
  row("drop reason", v.dropReason);
  const w = v.why;
  if (w) {
    row("intended", w.intended);
    row("egress", sideText(w.egress, "source"));
    row("ingress", sideText(w.ingress, "destination"));
    row("policy source", w.source);
  }
  const parts = [el("h2", { textContent: title }),
    v.mismatch ? el("div", { class: "mismatch", textContent: "⚠ " + v.mismatch + ": the kernel " +
      (v.verdict === "DROPPED" ? "dropped" : "forwarded") + " what the intended policy " +
      (v.verdict === "DROPPED" ? "allows" : "denies") }) : null,
    w && w.summary ? el("p", { class: "summary", textContent: w.summary }) : null,
    w ? null : el("p", { class: "placeholder", textContent: "No policy explanation: the agent runs without policies." }),
    dl];
  box.replaceChildren(...parts.filter((p) => p != null));
}

function selectEdge(key) {
  const e = state.edges.get(key);
  if (!e) return;
  state.edgeFilter = key;
  state.selected = key;
  cy.edges(".filtered").removeClass("filtered");
  cy.getElementById(key).addClass("filtered");
  const port = e.port ? e.port + "/" + e.proto : e.proto;
  renderChips();
  renderWhy(e.from.id + " → " + e.to.id + " " + port,
    { verdict: e.verdict, count: e.flows + " flows", dropReason: e.dropReason, mismatch: e.mismatchKind, why: e.why });
  renderTable();
}

function selectFlow(id) {
  const f = state.flows.find((x) => x.id === id);
  if (!f) return;
  state.selected = id;
  renderWhy(srcText(f) + " → " + endpointText(f.dst, f.dst.pod, f.dstPort) + " " + f.proto,
    { verdict: f.verdict, dropReason: f.dropReason, mismatch: f.mismatch, why: f.why });
  for (const tr of rowCache.values()) tr.classList.toggle("sel", tr.dataset.id === id);
}

function clearEdgeFilter() {
  if (!state.edgeFilter) return;
  state.edgeFilter = null;
  cy.edges(".filtered").removeClass("filtered");
  renderChips();
  renderTable();
}

function renderChips() {
  const chips = $("#chips");
  chips.replaceChildren();
  if (state.edgeFilter) {
    chips.append(el("span", { class: "chip", textContent: "edge " + state.edgeFilter + " " },
      el("button", { type: "button", title: "show every edge", textContent: "✕", onclick: clearEdgeFilter })));
  }
}

$("#table-wrap").addEventListener("mouseleave", renderTable);

$("#flows tbody").addEventListener("click", (ev) => {
  const tr = ev.target.closest("tr");
  if (tr) selectFlow(tr.dataset.id);
});

// ---- status and loss: always visible ----

function renderAgents() {
  const box = $("#agents");
  box.replaceChildren(...state.agents.map((a) => {
    const fill = a.maxFlows ? " · store " + a.numFlows + "/" + a.maxFlows : "";
    const err = a.error || a.streamError;
    return el("span", { class: "agent " + a.state, title: JSON.stringify(a, null, 1) },
      el("i", { class: "dot" }),
      (a.node || a.agent) + (a.version ? " " + a.version : "") + " · " + a.interfaces + " ifaces · seen " +
        a.seenFlows + fill + (a.policy ? " · policy " + a.policy : ""),
      err ? el("span", { class: "err", textContent: " · " + err }) : null);
  }));
  renderLost();
}

function renderLost() {
  const parts = [];
  for (const a of state.agents) for (const l of a.lost || []) if (l.lost) parts.push(l.source + " " + l.lost + " on " + (a.node || a.agent));
  for (const [src, n] of state.lostBySource) if (src === "UI_STREAM") parts.push("UI_STREAM " + n + " (this page fell behind)");
  const seen = [...state.lostBySource.values()].reduce((a, b) => a + b, 0);
  const box = $("#lost");
  box.classList.toggle("some", parts.length > 0 || seen > 0);
  box.textContent = "lost events: " + (parts.length ? parts.join(", ") : seen ? seen + " (stream)" : "none");
}

// ---- filters ----

function filterArgs() {
  const form = $("#filters");
  const args = [];
  for (const name of ["namespace", "pod", "verdict", "mismatch", "port"]) {
    const v = form.elements[name].value.trim();
    if (v) args.push("--" + name + "=" + v);
  }
  const more = form.elements.more ? form.elements.more.value.trim() : ""; // a saved page has none
  if (more) args.push(...more.split(/\s+/));
  return args;
}

// localMatch filters a saved page (no server to ask) with the same five
// controls, with observe's meaning: either end, pod as a prefix.
function localMatch() {
  const form = $("#filters");
  const v = (n) => form.elements[n].value.trim();
  const ns = v("namespace"), pod = v("pod"), verdict = v("verdict"), mm = v("mismatch"), port = Number(v("port"));
  const podMatch = (ep) => ep.pod && (pod.includes("/") ? ep.pod.startsWith(pod) : ep.pod.split("/")[1].startsWith(pod));
  return (f) => (!ns || f.src.group === ns || f.dst.group === ns) &&
    (!pod || podMatch(f.src) || podMatch(f.dst)) &&
    (!verdict || f.verdict === verdict) &&
    (!mm || (mm === "none" ? !f.mismatch : mm === "any" ? !!f.mismatch : f.mismatch === (mm === "drop" ? "UNEXPECTED_DROP" : "UNEXPECTED_ALLOW"))) &&
    (!port || f.srcPort === port || f.dstPort === port);
}

let filterTimer;
$("#filters").addEventListener("input", () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(applyFilter, 300);
});
$("#filters").addEventListener("submit", (ev) => ev.preventDefault());

function applyFilter() {
  if (state.mode === "live") { connect(); return; }
  const match = localMatch();
  const keep = new Set(state.flows.filter(match).map((f) => f.edge));
  cy.batch(() => cy.edges().forEach((e) => e.toggleClass("hidden", !keep.has(e.id()))));
  renderTable();
}

// ---- the stream ----

function reset() {
  state.nodes.clear(); state.edges.clear(); state.flows = []; state.skipped = 0;
  state.lostBySource.clear(); state.edgeFilter = null; state.selected = null;
  state.generation = (state.generation || 0) + 1;
  cy.elements().remove();
  renderChips();
}

async function connect() {
  if (state.source) state.source.close();
  const qs = new URLSearchParams();
  for (const a of filterArgs()) qs.append("f", a);
  const url = "/api/stream?" + qs.toString();
  // EventSource hides the body of an error reply; ask once to show why.
  const check = await fetch(url, { method: "GET", headers: { Accept: "text/event-stream" }, signal: AbortSignal.timeout(3000) })
    .then(async (r) => { if (!r.ok) return r.text(); r.body.cancel(); return null; })
    .catch(() => null);
  $("#filter-error").textContent = check || "";
  if (check) return;
  const src = new EventSource(url);
  state.source = src;
  src.addEventListener("hello", (m) => {
    const h = JSON.parse(m.data);
    reset();
    $("#mode").textContent = "live · " + h.agents.join(", ");
  });
  src.addEventListener("edges", (m) => { putEdges(JSON.parse(m.data)); layout(); refreshWhy(); });
  src.addEventListener("flows", (m) => {
    const b = JSON.parse(m.data);
    addFlows(b.flows);
    state.skipped = (state.skipped || 0) + (b.skipped || 0);
    layout();
    renderTable();
  });
  src.addEventListener("lost", (m) => {
    for (const l of JSON.parse(m.data)) state.lostBySource.set(l.source, (state.lostBySource.get(l.source) || 0) + l.lost);
    renderLost();
  });
  src.addEventListener("status", (m) => { state.agents = JSON.parse(m.data); renderAgents(); });
}

// refreshWhy keeps an open edge explanation's counts current.
function refreshWhy() {
  if (state.edgeFilter && state.selected === state.edgeFilter) selectEdge(state.edgeFilter);
}

// A saved matrix holds intended verdicts, not what a kernel did: say so,
// and start with what is allowed (in a default-deny cluster, the few
// edges worth reading).
function loadStatic(d) {
  state.mode = d.mode;
  document.body.classList.add(d.mode); // a matrix has no times to show
  $("#filters").elements.verdict.value = "FORWARDED";
  const legend = document.querySelectorAll(".legend span");
  legend[0].lastChild.textContent = "allowed";
  legend[1].lastChild.textContent = "denied";
  legend[2].remove();
  document.title = d.title;
  $("#mode").textContent = d.title;
  $("#filters .more").remove();
  $("#agents").replaceChildren(el("span", { class: "agent", textContent: d.note || "" }));
  $("#lost").remove();
  putEdges(d.edges);
  addFlows(d.flows);
  layout();
  applyFilter();
  state.drawnMs = Math.round(performance.now());
}

if (window.FLOWLENS_DATA) loadStatic(window.FLOWLENS_DATA);
else connect();

// The browser test reads the page's state through this; it changes nothing.
window.flowlens = { cy, state };
