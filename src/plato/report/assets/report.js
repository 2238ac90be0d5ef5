// The interactive report's behaviour (plato.report.interactive). Every text from the store is
// written with textContent, never as HTML: names are data, not markup.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("plato-data").textContent);
  const SEP = "\u001f";  // a cell's key: sender, receiver, sender point, receiver point
  const plot = document.getElementById("heatmap");
  const panel = document.getElementById("details");
  let current = null;  // the table shown
  let opened = null;  // the cell whose panel is open: {pair, sp, rp}

  function el(tag, text, attrs) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  // A number rounded for reading (4 decimals; `digits` 0 for counts), with the stored value
  // beside it (data-value, and the tooltip): what the browser test compares with the store.
  function num(value, field, digits) {
    const td = el("td", null, {class: "num", "data-field": field});
    if (value === null || value === undefined) { td.textContent = "\u2013"; return td; }
    td.setAttribute("data-value", String(value));
    td.title = String(value);
    td.textContent = value.toFixed(digits ?? 4);
    return td;
  }

  function table(headers, rows) {
    const t = el("table", null, {class: "meta"});
    const head = el("tr");
    headers.forEach(h => head.appendChild(el("th", h)));
    t.appendChild(head);
    rows.forEach(cells => {
      const tr = el("tr");
      cells.forEach(c => tr.appendChild(c instanceof Node ? c : el("td", c)));
      t.appendChild(tr);
    });
    return t;
  }

  // ------------------------------------------------------------------ choosing a table
  const pairKey = t => t.sender + SEP + t.receiver;
  const pairs = [...new Set(data.tables.map(pairKey))];
  const VIEWS = {mean: "mean over seeds", measure: "the measure", debiased: "trained minus control",
                 normalized: "trained minus control, normalized"};
  const controls = document.getElementById("controls");
  function select(label, id) {
    const wrap = el("label", label + " ");
    const s = el("select", null, {id: id});
    wrap.appendChild(s);
    controls.appendChild(wrap);
    return s;
  }
  const pairSel = select("pair", "pick-pair");
  const metricSel = select("metric", "pick-metric");
  const viewSel = select("view", "pick-view");
  const controlSel = select("control", "pick-control");

  function fill(s, values, labels, keep) {
    s.replaceChildren();
    values.forEach((v, i) => s.appendChild(el("option", labels ? labels[i] : v, {value: v})));
    if (values.includes(keep)) s.value = keep;
  }
  pairs.forEach(p => pairSel.appendChild(el("option", p.split(SEP).join(" \u2192 "),
                                             {value: p})));

  // Each choice narrows the next: pair, then metric, then view, then control. `want` asks for
  // values the selects do not offer yet (a check's link to another pair's table).
  function refresh(want) {
    want = want || {};
    if (want.pair) pairSel.value = want.pair;
    const ofPair = data.tables.filter(t => pairKey(t) === pairSel.value);
    const metrics = [...new Set(ofPair.filter(t => t.view === "mean" || t.view === "measure")
                                      .map(t => t.metric))];
    fill(metricSel, metrics, null, want.metric || metricSel.value || data.metric);
    const base = m => m.replace(/^(debiased|normalized) /, "");
    const ofMetric = ofPair.filter(t => base(t.metric) === metricSel.value);
    const views = [...new Set(ofMetric.map(t => t.view))];
    fill(viewSel, views, views.map(v => VIEWS[v]), "view" in want ? want.view : viewSel.value);
    const ofView = ofMetric.filter(t => t.view === viewSel.value);
    // the trained table first: what a reader looks at before its controls
    const names = ofView.map(t => t.control).sort((a, b) =>
      (b === "trained->trained") - (a === "trained->trained"));
    fill(controlSel, names, null, want.control || controlSel.value);
    show(ofView.find(t => t.control === controlSel.value));
  }
  [pairSel, metricSel, viewSel, controlSel].forEach(s =>
    s.addEventListener("change", () => refresh()));

  function show(t) {
    if (!t) return;
    current = t;
    Plotly.react(plot, t.figure.data, t.figure.layout, {responsive: true});
    if (opened && opened.pair === pairKey(t)) mark(opened.sp, opened.rp);  // still outlined
  }

  // Choose the table of a cell (from a check's link) and open the cell.
  function choose(ref, metric) {
    refresh({pair: ref.sender + SEP + ref.receiver, metric: metric || "stitched_accuracy",
             view: "", control: ref.control});  // view "": the metric's first (its mean)
    openCell(ref.sender, ref.receiver, ref.sender_point, ref.receiver_point);
    plot.scrollIntoView({behavior: "smooth"});
  }

  // ------------------------------------------------------------------ the details panel
  function mark(sp, rp) {
    if (!current) return;
    const i = current.rows.indexOf(sp), j = current.columns.indexOf(rp);
    const shapes = i < 0 || j < 0 ? [] : [{type: "rect", xref: "x", yref: "y",
      x0: j - 0.5, x1: j + 0.5, y0: i - 0.5, y1: i + 0.5, line: {color: "#d00", width: 3}}];
    Plotly.relayout(plot, {shapes: shapes});
  }

  function openCell(s, r, sp, rp) {
    const cell = data.cells[[s, r, sp, rp].join(SEP)];
    panel.replaceChildren();
    const head = el("h3", null, {id: "cell-title"});
    head.textContent = s + ":" + sp + " \u2192 " + r + ":" + rp;
    panel.appendChild(head);
    opened = {pair: s + SEP + r, sp: sp, rp: rp};
    mark(sp, rp);
    if (!cell) { panel.appendChild(el("p", "The store holds nothing for this cell.")); return; }
    panel.setAttribute("data-cell", [s, r, sp, rp].join(SEP));
    if (cell.stitching.length) {
      panel.appendChild(el("h4", "Stitched accuracy by control"));
      panel.appendChild(table(["control", "mean", "95% low", "95% high", "interval over",
                               "seeds", "converged"],
        cell.stitching.map(c => [el("td", c.control, {"data-field": "control"}),
          num(c.stitched_accuracy, "stitched_accuracy"), num(c.low, "low"),
          num(c.high, "high"), c.interval, num(c.n, "n", 0),
          c.converged === null ? "not recorded" : c.converged + "/" + c.fits])))
      panel.lastChild.id = "cell-stitching";
      panel.appendChild(el("h4", "Each fit"));
      const rows = [];
      cell.stitching.forEach(c => c.seeds.forEach(f => rows.push([
        c.control, num(f.seed, "seed", 0), f.status, num(f.stitched_accuracy, "stitched_accuracy"),
        num(f.accuracy_low, "accuracy_low"), num(f.accuracy_high, "accuracy_high"),
        f.converged === null ? "not recorded" : (f.converged ? "yes" : "NO"),
        f.stop_reason || "–", num(f.steps, "steps", 0), num(f.seconds, "seconds", 1),
        num(f.receiver_distance, "receiver_distance"),
        num(f.receiver_own_distance, "receiver_own_distance"),
        num(f.stitch_parameters, "stitch_parameters", 0)])));
      panel.appendChild(table(["control", "seed", "status", "accuracy", "low", "high",
        "converged", "stopped", "steps", "seconds", "distance from receiver",
        "receiver's own", "parameters"], rows));
      panel.lastChild.id = "cell-fits";
    }
    if (cell.debiased.length) {
      panel.appendChild(el("h4", "Trained minus control (paired on the same test examples)"));
      panel.appendChild(table(["control", "difference", "95% low", "95% high", "seeds"],
        cell.debiased.map(d => [d.control, num(d.difference, "difference"),
                                num(d.low, "low"), num(d.high, "high"), num(d.seeds, "seeds", 0)])));
      panel.lastChild.id = "cell-debiased";
    }
    if (cell.similarity.length) {
      panel.appendChild(el("h4", "Similarity measures"));
      panel.appendChild(table(["control", "measure", "value", "calibrated", "p", "family-wise p"],
        cell.similarity.map(m => [m.control, el("td", m.measure, {"data-field": "measure"}),
          num(m.value, "value"), num(m.calibrated, "calibrated"), num(m.p_value, "p_value"),
          num(m.fw_p_value, "fw_p_value")])));
      panel.lastChild.id = "cell-similarity";
    }
    if (cell.pictures.length) {
      panel.appendChild(el("h4", "Pictures"));
      const list = el("ul", null, {id: "cell-pictures"});
      cell.pictures.forEach(p => {
        const target = document.getElementById(p.anchor);
        if (target && target.closest("#cell-figures")) {  // this cell's own: shown here
          const copy = target.cloneNode(true);
          copy.removeAttribute("id");
          panel.appendChild(copy);
          return;
        }
        const li = el("li");
        li.appendChild(el("a", p.label, {href: "#" + p.anchor}));
        list.appendChild(li);
      });
      if (list.children.length) panel.appendChild(list);
    }
    if (data.pictures_note && !cell.pictures.some(p => p.anchor.startsWith("saliency"))) {
      panel.appendChild(el("p", data.pictures_note, {class: "note"}));
    }
  }

  // ------------------------------------------------------------------ the checks
  const VERDICT = {true: ["pass", "pass"], false: ["FAIL", "fail"], null: ["n/a", "na"]};
  const checks = document.getElementById("checks");
  const head = el("tr");
  ["", "check", "detail", "cells that fail it"].forEach(h => head.appendChild(el("th", h)));
  checks.appendChild(head);
  const order = {false: 0, true: 1, null: 2};
  [...data.checks].sort((a, b) => order[a.passed] - order[b.passed]).forEach(c => {
    const [word, cls] = VERDICT[c.passed];
    const tr = el("tr", null, {"data-check": c.name});
    tr.appendChild(el("td", word, {class: cls}));
    tr.appendChild(el("td", c.name));
    tr.appendChild(el("td", c.detail));
    const links = el("td");
    c.cells.slice(0, 12).forEach(ref => {
      const a = el("a", ref.sender + ":" + ref.sender_point + " \u2192 " + ref.receiver + ":" +
                   ref.receiver_point, {href: "#heatmap", class: "cell-link"});
      a.addEventListener("click", ev => { ev.preventDefault(); choose(ref, ref.metric); });
      links.appendChild(a);
      links.appendChild(document.createTextNode(" "));
    });
    if (c.cells.length > 12) links.appendChild(el("span", "and " + (c.cells.length - 12) + " more"));
    tr.appendChild(links);
    checks.appendChild(tr);
  });

  // ------------------------------------------------------------------ start
  if (data.tables.length) {
    refresh();
    plot.on("plotly_click", ev => {
      const [i, j] = ev.points[0].pointNumber;  // heatmap: [row, column]
      openCell(current.sender, current.receiver, current.rows[i], current.columns[j]);
    });
  } else {
    plot.appendChild(el("p", "The store holds no tables."));
  }
})();
