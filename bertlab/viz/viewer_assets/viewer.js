/* bertlab attention viewer: plain JavaScript and SVG, no libraries, no network requests.

   bertlab/viewer.py pastes this file into every viewer it renders, followed by a call to
   renderAttentionViewer(root), where root is the viewer's <div>. The data sits in a
   <script type="application/json" class="ba-data"> inside root:
     tokens            list of n strings
     attentions        [layer][head][query][key] weights, rows sum to 1
     sentence_b_start  index of the first token of the second text, or null
     head_colours      one CSS colour per head
     layer, head       what to show first (head null = all heads)

   Left column: the token that attends (query). Right column: the token attended to (key).
   A line's opacity is the attention weight. */

function renderAttentionViewer(root) {
  "use strict";
  if (root.dataset.rendered) return root.bertlabViewer; // already drawn (re-executed output)

  var data = JSON.parse(root.querySelector("script.ba-data").textContent);
  var tokens = data.tokens;
  var n = tokens.length;
  var b = data.sentence_b_start; // null for a single text
  var numLayers = data.attentions.length;
  var numHeads = data.attentions[0].length;
  var colours = data.head_colours;

  var ROW = 20; // px per token row
  var TOP = 26; // room for the column headers
  var GAP = 170; // width of the band the lines cross
  var PAD = 6;
  var CELL = 7; // width of one head's weight swatch (several heads)
  var BAR = 44; // length of a weight of 1 as a bar (one head)
  var MIN_WEIGHT = 0.01; // lighter lines are invisible anyway; skipping them keeps the page fast

  var state = {
    layer: data.layer || 0,
    heads: data.head === null || data.head === undefined ? range(0, numHeads) : [data.head],
    segment: "all",
    focus: null, // {side: "left" | "right", index: token index}
    pinned: false,
  };

  function range(start, stop) {
    var out = [];
    for (var i = start; i < stop; i++) out.push(i);
    return out;
  }

  // An <svg> made by the HTML parser tells us the SVG namespace without spelling it out.
  var holder = document.createElement("div");
  holder.innerHTML = "<svg class='ba-svg' role='img'></svg>";
  var svg = holder.firstChild;
  var SVG_NS = svg.namespaceURI;

  function make(name, attributes, parent) {
    var isSvg = parent && parent.namespaceURI === SVG_NS;
    var node = isSvg ? document.createElementNS(SVG_NS, name) : document.createElement(name);
    for (var key in attributes) {
      if (key === "text") node.textContent = attributes[key];
      else node.setAttribute(key, attributes[key]);
    }
    if (parent) parent.appendChild(node);
    return node;
  }

  // ---- controls --------------------------------------------------------------------------

  var fallback = root.querySelector(".ba-fallback");
  if (fallback) fallback.remove();
  if (data.title) make("div", { class: "ba-title", text: data.title }, root);
  var controls = make("div", { class: "ba-controls" }, root);

  var layerLabel = make("label", { text: "Layer" }, controls);
  var layerSelect = make("select", { class: "ba-layer", "aria-label": "layer" }, layerLabel);
  range(0, numLayers).forEach(function (l) {
    make("option", { value: String(l), text: String(l) }, layerSelect);
  });

  var headLabel = make("label", { text: "Head" }, controls);
  var headSelect = make("select", { class: "ba-head", "aria-label": "head" }, headLabel);
  make("option", { value: "all", text: "all heads" }, headSelect);
  range(0, numHeads).forEach(function (h) {
    make("option", { value: String(h), text: String(h) }, headSelect);
  });
  var customOption = make("option", { value: "custom", hidden: "" }, headSelect);

  var segmentButtons = [];
  if (b !== null && b !== undefined) {
    var segmentLabel = make("label", { text: "Segments" }, controls);
    var group = make("span", { class: "ba-segments", role: "group" }, segmentLabel);
    [["all", "all"], ["AA", "A\u2192A"], ["AB", "A\u2192B"], ["BA", "B\u2192A"], ["BB", "B\u2192B"]]
      .forEach(function (pair) {
        var button = make("button", { type: "button", "data-segment": pair[0], text: pair[1] }, group);
        button.title = pair[0] === "all" ? "every token attending to every token"
          : "tokens of segment " + pair[0][0] + " attending to tokens of segment " + pair[0][1];
        button.addEventListener("click", function () { api.setSegment(pair[0]); });
        segmentButtons.push(button);
      });
  }

  var legend = make("div", { class: "ba-legend" }, root);
  var chips = range(0, numHeads).map(function (h) {
    var chip = make("button", { type: "button", class: "ba-chip", "data-head": String(h), text: String(h) }, legend);
    chip.style.background = colours[h];
    chip.title = "head " + h + ": click to show it alone (again: all heads); shift-click to add or remove it";
    chip.addEventListener("click", function (event) {
      if (event.shiftKey || event.ctrlKey || event.metaKey) {
        var next = state.heads.indexOf(h) >= 0
          ? state.heads.filter(function (x) { return x !== h; })
          : state.heads.concat([h]).sort(function (x, y) { return x - y; });
        api.setHeads(next.length ? next : [h]);
      } else if (state.heads.length === 1 && state.heads[0] === h) {
        api.setHeads("all");
      } else {
        api.setHeads([h]);
      }
    });
    return chip;
  });

  var caption = make("div", { class: "ba-caption" }, root);
  root.appendChild(svg);

  layerSelect.addEventListener("change", function () { api.setLayer(Number(layerSelect.value)); });
  headSelect.addEventListener("change", function () {
    if (headSelect.value === "all") api.setHeads("all");
    else if (headSelect.value !== "custom") api.setHeads([Number(headSelect.value)]);
  });

  // ---- layout ------------------------------------------------------------------------------

  var measureContext = document.createElement("canvas").getContext("2d");
  if (measureContext) measureContext.font = "13px " + getComputedStyle(root).fontFamily;
  function textWidth(text) {
    return measureContext ? measureContext.measureText(text).width : 8 * text.length;
  }
  function shown(token) {
    return token.length > 24 ? token.slice(0, 23) + "\u2026" : token;
  }
  var tokenWidth = Math.ceil(Math.max.apply(null, tokens.map(function (t) {
    return textWidth(shown(t));
  }))) + 2 * PAD;

  function segmentRows() {
    var a = range(0, b), second = range(b, n), all = range(0, n);
    return {
      all: [all, all], AA: [a, a], AB: [a, second], BA: [second, a], BB: [second, second],
    }[state.segment];
  }

  // Geometry of the current drawing; rebuilt by draw().
  var geo = null;
  var fullLines = null, focusLayer = null;

  function rowY(k) { return TOP + k * ROW + ROW / 2; }

  function isSpecial(token) { return /^\[[A-Z]+\]$/.test(token); }

  function draw() {
    var rowsCols = segmentRows();
    var rows = rowsCols[0], cols = rowsCols[1];
    var cellsWidth = (state.heads.length === 1 ? BAR + 34 : state.heads.length * CELL) + 2 * PAD;
    var xLeft = cellsWidth; // left token column starts here
    var xLinesStart = xLeft + tokenWidth;
    var xRight = xLinesStart + GAP; // right token column starts here
    var width = xRight + tokenWidth + cellsWidth;
    var height = TOP + Math.max(rows.length, cols.length) * ROW + 4;
    geo = { rows: rows, cols: cols, rowOf: {}, colOf: {}, xRight: xRight,
            xLinesStart: xLinesStart, tokens: { left: {}, right: {} } };
    rows.forEach(function (i, k) { geo.rowOf[i] = k; });
    cols.forEach(function (j, k) { geo.colOf[j] = k; });

    svg.textContent = "";
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("aria-label", "attention lines, layer " + state.layer);

    make("text", { class: "ba-header", x: xLinesStart - PAD, y: 12, "text-anchor": "end",
                   text: "attending (query)" }, svg);
    make("text", { class: "ba-header", x: xRight + PAD, y: 12, text: "attended to (key)" }, svg);

    fullLines = make("g", { class: "ba-lines ba-lines-all" }, svg);
    focusLayer = make("g", { class: "ba-lines ba-lines-focus" }, svg);

    // A dashed rule between the two texts when both are on show.
    if (b !== null && b !== undefined && state.segment === "all") {
      var yRule = TOP + b * ROW;
      [xLeft, xRight].forEach(function (x) {
        make("line", { class: "ba-rule", x1: x, x2: x + tokenWidth, y1: yRule, y2: yRule,
                       stroke: "#9ca3af", "stroke-dasharray": "3 3" }, svg);
      });
    }

    drawTokens("left", rows, xLeft);
    drawTokens("right", cols, xRight);
    drawAllLines();
    updateControls();
    if (state.focus) {
      var onSide = state.focus.side === "left" ? rows : cols;
      if (onSide.indexOf(state.focus.index) >= 0) focus(state.focus.side, state.focus.index);
      else clearFocus();
    }
  }

  function drawTokens(side, indices, x) {
    indices.forEach(function (i, k) {
      var g = make("g", { class: "ba-token" + (isSpecial(tokens[i]) ? " ba-special" : ""),
                          "data-side": side, "data-index": String(i), tabindex: "0",
                          transform: "translate(" + x + "," + rowY(k) + ")" }, svg);
      make("rect", { x: 0, y: -ROW / 2 + 1, width: tokenWidth, height: ROW - 2, rx: 4 }, g);
      make("text", { x: side === "left" ? tokenWidth - PAD : PAD, y: 0,
                     "dominant-baseline": "central",
                     "text-anchor": side === "left" ? "end" : "start", text: shown(tokens[i]) }, g);
      make("title", { text: tokens[i] + " (position " + i + ")" }, g);
      g.addEventListener("mouseenter", function () { if (!state.pinned) focus(side, i); });
      g.addEventListener("mouseleave", function () { if (!state.pinned) clearFocus(); });
      g.addEventListener("focus", function () { if (!state.pinned) focus(side, i); });
      g.addEventListener("blur", function () { if (!state.pinned) clearFocus(); });
      g.addEventListener("click", function () {
        var same = state.focus && state.focus.side === side && state.focus.index === i;
        state.pinned = !(state.pinned && same);
        focus(side, i);
      });
      geo.tokens[side][i] = g;
    });
  }

  function weight(h, i, j) { return data.attentions[state.layer][h][i][j]; }

  function addLine(parent, h, i, j, w) {
    var yFrom = rowY(geo.rowOf[i]), yTo = rowY(geo.colOf[j]);
    var line = document.createElementNS(SVG_NS, "line");
    line.setAttribute("x1", geo.xLinesStart + 2);
    line.setAttribute("y1", yFrom);
    line.setAttribute("x2", geo.xRight - 2);
    line.setAttribute("y2", yTo);
    line.setAttribute("stroke", colours[h]);
    line.setAttribute("stroke-width", state.heads.length > 1 ? 1.5 : 2);
    line.setAttribute("stroke-opacity", w);
    line.setAttribute("data-head", h);
    line.setAttribute("data-from", i);
    line.setAttribute("data-to", j);
    parent.appendChild(line);
  }

  function drawAllLines() {
    var batch = document.createDocumentFragment();
    state.heads.forEach(function (h) {
      geo.rows.forEach(function (i) {
        geo.cols.forEach(function (j) {
          var w = weight(h, i, j);
          if (w >= MIN_WEIGHT) addLine(batch, h, i, j, w);
        });
      });
    });
    fullLines.appendChild(batch);
  }

  // ---- focus: one token's attention ------------------------------------------------------

  function focus(side, index) {
    clearFocus(true);
    state.focus = { side: side, index: index };
    var token = geo.tokens[side][index];
    if (token) token.classList.add("ba-focus");
    fullLines.style.display = "none";
    var batch = document.createDocumentFragment();
    var others = side === "left" ? geo.cols : geo.rows;
    var single = state.heads.length === 1;
    others.forEach(function (other, k) {
      var i = side === "left" ? index : other;
      var j = side === "left" ? other : index;
      // Beside the other column: one head's weight as a bar and a number; several heads'
      // as a row of swatches, one per head, each as opaque as its weight.
      var x0 = side === "left" ? geo.xRight + tokenWidth + PAD : PAD;
      state.heads.forEach(function (h, p) {
        var w = weight(h, i, j);
        if (w >= MIN_WEIGHT) addLine(batch, h, i, j, w);
        var swatch = document.createElementNS(SVG_NS, "rect");
        swatch.setAttribute("class", "ba-swatch");
        swatch.setAttribute("x", x0 + p * CELL);
        swatch.setAttribute("y", rowY(k) - ROW / 2 + 4);
        swatch.setAttribute("width", single ? Math.max(1, w * BAR) : CELL - 1);
        swatch.setAttribute("height", ROW - 8);
        swatch.setAttribute("fill", colours[h]);
        swatch.setAttribute("fill-opacity", single ? 0.85 : Math.max(w, 0.03));
        batch.appendChild(swatch);
      });
      if (single) {
        var label = document.createElementNS(SVG_NS, "text");
        label.setAttribute("class", "ba-weight");
        label.setAttribute("x", x0 + BAR + 4);
        label.setAttribute("y", rowY(k));
        label.setAttribute("dominant-baseline", "central");
        label.textContent = weight(state.heads[0], i, j).toFixed(2);
        batch.appendChild(label);
      }
    });
    focusLayer.appendChild(batch);
    updateCaption();
  }

  function clearFocus(keepState) {
    if (!keepState) {
      state.focus = null;
      state.pinned = false;
    }
    if (!geo) return;
    var focused = svg.querySelectorAll(".ba-focus");
    for (var k = 0; k < focused.length; k++) focused[k].classList.remove("ba-focus");
    focusLayer.textContent = "";
    fullLines.style.display = "";
    updateCaption();
  }

  // ---- keeping the controls in step ------------------------------------------------------

  function updateControls() {
    layerSelect.value = String(state.layer);
    if (state.heads.length === numHeads) headSelect.value = "all";
    else if (state.heads.length === 1) headSelect.value = String(state.heads[0]);
    else {
      customOption.textContent = state.heads.length + " heads";
      headSelect.value = "custom";
    }
    chips.forEach(function (chip, h) {
      chip.classList.toggle("ba-off", state.heads.indexOf(h) < 0);
      chip.setAttribute("aria-pressed", String(state.heads.indexOf(h) >= 0));
    });
    segmentButtons.forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.dataset.segment === state.segment));
    });
    updateCaption();
  }

  function updateCaption() {
    var heads = state.heads.length === numHeads ? "all " + numHeads + " heads"
      : state.heads.length === 1 ? "head " + state.heads[0] : state.heads.length + " heads";
    var hint;
    if (!state.focus) {
      hint = "Hover a token: on the left to see where it attends, on the right to see what " +
        "attends to it. Click to pin.";
    } else {
      var what = tokens[state.focus.index] + " (" + state.focus.index + ")";
      hint = state.focus.side === "left" ? "Where " + what + " attends."
        : "What attends to " + what + ".";
      hint += state.pinned ? " Pinned: click it again to release." : "";
    }
    var segment = state.segment === "all" ? ""
      : ", segment " + state.segment[0] + " \u2192 " + state.segment[1];
    caption.textContent = "Layer " + state.layer + ", " + heads + segment + ". " + hint;
  }

  // ---- public handle (used by tests and curious learners) ---------------------------------

  var api = {
    state: state,
    setLayer: function (layer) {
      if (!(layer >= 0 && layer < numLayers)) throw new Error("no layer " + layer);
      state.layer = layer;
      draw();
    },
    setHeads: function (heads) {
      state.heads = heads === "all" ? range(0, numHeads) : heads.slice();
      draw();
    },
    setSegment: function (segment) {
      if (segment !== "all" && (b === null || b === undefined)) throw new Error("one text only");
      state.segment = segment;
      draw();
    },
    focus: function (side, index) { focus(side, index); },
    clearFocus: function () { clearFocus(); },
    visibleLines: function () {
      var group = state.focus ? focusLayer : fullLines;
      return Array.prototype.map.call(group.querySelectorAll("line"), function (line) {
        return {
          head: Number(line.getAttribute("data-head")),
          from: Number(line.getAttribute("data-from")),
          to: Number(line.getAttribute("data-to")),
          weight: Number(line.getAttribute("stroke-opacity")),
        };
      });
    },
  };

  draw();
  root.dataset.rendered = "1";
  root.bertlabViewer = api;
  window.bertlabViewers = window.bertlabViewers || {};
  window.bertlabViewers[root.id] = api;
  return api;
}
