// flowlens ui, the map: the page's state and the Cytoscape.js graph of
// namespaces, workloads and edges. app.js feeds it.
"use strict";

const MAX_ROWS = 1000;
const GROUP_ORDER = { outside: 1, nodes: 2, unknown: 3 }; // after namespaces

const state = {
  mode: "live",
  nodes: new Map(), // map node id -> endpoint view
  edges: new Map(), // edge key -> edge view
  flows: [], // newest first
  edgeFilter: null, // edge key the table is narrowed to
  selected: null, // flow id or edge key shown in #why
  lostBySource: new Map(), // lost records seen on the stream
  agents: [],
  source: null,
  userMoved: false,
  layoutDue: false,
};

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
};

// ---- map ----

const cy = cytoscape({
  container: $("#map"),
  wheelSensitivity: 0.3,
  // Big maps stay smooth: draw a snapshot while panning and zooming.
  textureOnViewport: true,
  hideEdgesOnViewport: true,
  minZoom: 0.1,
  maxZoom: 3,
  style: [
    { selector: "node", style: {
      "label": "data(label)", "font-size": 11, "text-valign": "bottom", "text-margin-y": 3,
      "text-wrap": "ellipsis", "text-max-width": 130,
      "width": 22, "height": 22, "background-color": "#4dabf7", "border-width": 1, "border-color": "#1c7ed6" } },
    { selector: "node.outside", style: { "shape": "round-rectangle", "background-color": "#adb5bd", "border-color": "#495057" } },
    { selector: "node.nodes", style: { "shape": "diamond", "background-color": "#ced4da", "border-color": "#495057" } },
    { selector: ":parent", style: {
      "label": "data(label)", "text-valign": "top", "text-halign": "center", "font-size": 12, "font-weight": "bold",
      "background-color": "#f1f3f5", "background-opacity": 0.7, "border-color": "#adb5bd", "border-width": 1,
      "shape": "round-rectangle", "padding": 14, "color": "#495057" } },
    { selector: "edge", style: {
      "curve-style": "bezier", "target-arrow-shape": "triangle", "arrow-scale": 0.9,
      "width": "data(width)", "line-color": "#2f9e44", "target-arrow-color": "#2f9e44",
      "label": "data(label)", "font-size": 9, "text-background-color": "#fff", "text-background-opacity": 0.85,
      "text-background-padding": 1, "text-rotation": "autorotate", "color": "#343a40",
      "min-zoomed-font-size": 8 } },
    { selector: "edge.DROPPED", style: { "line-color": "#e03131", "target-arrow-color": "#e03131" } },
    { selector: "edge.mismatch", style: { "line-style": "dashed", "line-dash-pattern": [6, 3], "color": "#d9480f",
      "font-weight": "bold", "underlay-color": "#f08c00", "underlay-opacity": 0.35, "underlay-padding": 4 } },
    { selector: "edge:selected, edge.filtered", style: { "overlay-color": "#1c7ed6", "overlay-opacity": 0.2, "overlay-padding": 5 } },
    { selector: "node:selected", style: { "border-width": 3, "border-color": "#1c7ed6" } },
    { selector: ".hidden", style: { "display": "none" } },
  ],
});
// Once the user pans or zooms, new nodes no longer refit the map; a double
// click on the background fits it again.
cy.on("dragpan scrollzoom pinchzoom", () => { state.userMoved = true; });
cy.on("dbltap", (ev) => { if (ev.target === cy) { state.userMoved = false; fit(); } });
cy.on("tap", "edge", (ev) => selectEdge(ev.target.id()));
cy.on("tap", (ev) => { if (ev.target === cy) clearEdgeFilter(); });

// fit shows the whole map, but never blown up past readable size.
function fit() {
  cy.fit(undefined, 30);
  if (cy.zoom() > 1.1) { cy.zoom(1.1); cy.center(); }
}

// pending collects elements to add, so a batch is added in one call:
// cytoscape is much faster adding one array than many single elements.
let pending = [];

function ensureNode(ep) {
  if (state.nodes.has(ep.id)) return;
  state.nodes.set(ep.id, ep);
  const gid = "g:" + ep.group;
  if (!state.nodes.has(gid)) {
    state.nodes.set(gid, null); // a group, not a workload
    pending.push({ group: "nodes", data: { id: gid, label: ep.group } });
  }
  pending.push({ group: "nodes", data: { id: ep.id, label: ep.label, parent: gid }, classes: ep.group === "outside" || ep.group === "nodes" ? ep.group : "" });
  state.layoutDue = true;
}

function flushPending() {
  if (pending.length) cy.add(pending);
  pending = [];
}

function edgeLabel(e) {
  const port = e.port ? e.port + "/" + e.proto : e.proto;
  return (e.mismatches ? "⚠ " : "") + port + " · " + e.flows;
}

function putEdge(e) {
  ensureNode(e.from);
  ensureNode(e.to);
  state.edges.set(e.key, e);
  const data = { id: e.key, source: e.from.id, target: e.to.id, label: edgeLabel(e),
    width: Math.min(1.5 + Math.log2(1 + e.flows), 9) };
  const cls = e.verdict + (e.mismatches ? " mismatch" : "");
  const old = cy.getElementById(e.key);
  if (old.empty()) pending.push({ group: "edges", data, classes: cls });
  else { old.data(data); old.classes(cls + (old.hasClass("filtered") ? " filtered" : "")); }
}

// putEdges draws a batch in one go: cytoscape restyles once, not per edge.
function putEdges(list) {
  cy.batch(() => {
    for (const e of list) putEdge(e);
    flushPending();
  });
  // Bezier curves keep parallel edges apart but cost much more to draw;
  // past a few hundred edges, straight lines keep the map responsive.
  if (!state.bigMap && cy.edges().length > 400) {
    state.bigMap = true;
    cy.style().selector("edge").style("curve-style", "straight").update();
  }
}

const CELL_W = 170, CELL_H = 100, GAP = 90;

// arrange places a group's members relative to its top left corner and
// returns its size. A few members sit on a circle, more on a grid whose odd
// rows are shifted by half a cell: either way no three nodes line up, so an
// edge from elsewhere rarely runs through a node.
function arrange(members) {
  const n = members.length, at = {};
  if (n > 1 && n <= 8) {
    const r = Math.max(70, (n * CELL_W) / (2 * Math.PI));
    members.forEach((m, i) => {
      const a = -Math.PI / 2 + (2 * Math.PI * i) / n;
      at[m.id] = { x: r + r * Math.cos(a), y: r + r * Math.sin(a) };
    });
    return { at, w: 2 * r + CELL_W, h: 2 * r + CELL_H };
  }
  const cols = Math.ceil(Math.sqrt(n));
  members.forEach((m, i) => {
    const row = Math.floor(i / cols);
    at[m.id] = { x: (i % cols) * CELL_W + (row % 2) * CELL_W / 2, y: row * CELL_H };
  });
  return { at, w: cols * CELL_W + (n > cols ? CELL_W / 2 : 0), h: Math.ceil(n / cols) * CELL_H };
}

// shelve puts boxes left to right in rows no wider than maxW.
function shelve(boxes, maxW) {
  let x = 0, y = 0, rowH = 0, w = 0, rows = 1;
  const pos = {};
  for (const b of boxes) {
    if (x > 0 && x + b.w > maxW) { x = 0; y += rowH + GAP; rowH = 0; rows++; }
    for (const [id, p] of Object.entries(b.at)) pos[id] = { x: x + p.x, y: y + p.y };
    x += b.w + GAP;
    w = Math.max(w, x - GAP);
    rowH = Math.max(rowH, b.h);
  }
  return { pos, w, h: y + rowH, rows };
}

// layout places namespaces as boxes on shelves, each arranged inside:
// deterministic, so live updates do not reshuffle the map.
function layout() {
  if (!state.layoutDue) return;
  state.layoutDue = false;
  const groups = new Map();
  for (const n of state.nodes.values()) {
    if (n === null) continue; // a group box
    if (!groups.has(n.group)) groups.set(n.group, []);
    groups.get(n.group).push(n);
  }
  const names = [...groups.keys()].sort((a, b) =>
    (GROUP_ORDER[a] || 0) - (GROUP_ORDER[b] || 0) || a.localeCompare(b));
  const boxes = names.map((g) => arrange(groups.get(g).sort((a, b) => a.label.localeCompare(b.label))));
  // Shelves as wide as makes the whole map take the pane's shape: start
  // from the square root of the area and widen until it is wide enough.
  const aspect = cy.width() / Math.max(cy.height(), 1);
  const area = boxes.reduce((sum, b) => sum + (b.w + GAP) * (b.h + GAP), 0);
  let maxW = Math.max(3 * CELL_W, Math.sqrt(area * aspect));
  let packed = shelve(boxes, maxW);
  for (let i = 0; i < 20 && packed.h * aspect > packed.w * 1.1 && packed.rows > 1; i++) {
    maxW *= 1.15;
    packed = shelve(boxes, maxW);
  }
  const pos = packed.pos;
  cy.nodes().filter((n) => !n.isParent()).layout({ name: "preset", positions: (n) => pos[n.id()],
    fit: false, animate: false }).run();
  if (!state.userMoved) fit();
}
