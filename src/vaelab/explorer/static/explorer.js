// vaelab explorer: the trained VAE of one run, run in the page (no libraries, no network).
// The payload (contract "vaelab-explorer/1") is the JSON in #vaelab-data; text from it
// reaches the DOM only through textContent, so hostile strings stay text.
"use strict";
(() => {
  // --- payload decoding -------------------------------------------------------
  function bytesOf(b64) {
    const s = atob(b64);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }

  const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

  function floatsOf(b64) {  // float32 little-endian, as numpy writes them
    const b = bytesOf(b64);
    if (LITTLE_ENDIAN) return new Float32Array(b.buffer, 0, b.length >> 2);
    const view = new DataView(b.buffer);
    const out = new Float32Array(b.length >> 2);
    for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * i, true);
    return out;
  }

  function unpackBits(bytes, start, count) {  // numpy.packbits, most significant bit first
    const out = new Float32Array(count);
    for (let k = 0; k < count; k++) {
      const bit = start + k;
      out[k] = (bytes[bit >> 3] >> (7 - (bit & 7))) & 1;
    }
    return out;
  }

  // --- the networks (vaelab.models.mlp and vaelab.models.conv) ----------------
  const KERNEL = 4;  // every (transposed) convolution: kernel 4, stride 2, padding 1

  function linear(layer, x) {  // y = W x + b, W (out, in)
    const [nOut, nIn] = layer.shape;
    const w = layer.w, b = layer.b;
    const y = new Float64Array(nOut);
    for (let o = 0; o < nOut; o++) {
      let s = b[o];
      const row = o * nIn;
      for (let i = 0; i < nIn; i++) s += w[row + i] * x[i];
      y[o] = s;
    }
    return y;
  }

  // The (transposed) convolutions gather over channels in their innermost loop: weights are re-laid out
  // once as (Cout, ky, kx, Cin) and activations read channels-last, so that loop runs over contiguous memory.
  function channelsLast(x, c, side) {  // (C, s, s) -> (s, s, C)
    const area = side * side, out = new Float64Array(x.length);
    for (let ci = 0; ci < c; ci++) for (let p = 0; p < area; p++) out[p * c + ci] = x[ci * area + p];
    return out;
  }

  function gatherWeights(layer, transposed) {  // -> (Cout, 4, 4, Cin)
    if (layer.g) return layer.g;
    const [a, b] = layer.shape, cIn = transposed ? a : b, cOut = transposed ? b : a;
    const g = new Float64Array(cOut * 16 * cIn);
    for (let ci = 0; ci < cIn; ci++) {
      for (let co = 0; co < cOut; co++) {
        const src = (transposed ? ci * cOut + co : co * cIn + ci) * 16;
        for (let k = 0; k < 16; k++) g[(co * 16 + k) * cIn + ci] = layer.w[src + k];
      }
    }
    return (layer.g = g);
  }

  function conv2d(layer, x, side) {  // Conv2d(k 4, s 2, p 1): (Cin, s, s) -> (Cout, s/2, s/2); W (Cout, Cin, 4, 4)
    const [cOut, cIn] = layer.shape;
    const g = gatherWeights(layer, false), xl = channelsLast(x, cIn, side), b = layer.b, half = side >> 1;
    const y = new Float64Array(cOut * half * half);
    for (let co = 0; co < cOut; co++) {
      for (let oy = 0; oy < half; oy++) {
        for (let ox = 0; ox < half; ox++) {
          let s = b[co];
          for (let ky = 0; ky < KERNEL; ky++) {
            const iy = 2 * oy - 1 + ky;
            if (iy < 0 || iy >= side) continue;
            for (let kx = 0; kx < KERNEL; kx++) {
              const ix = 2 * ox - 1 + kx;
              if (ix < 0 || ix >= side) continue;
              const wBase = (co * 16 + ky * 4 + kx) * cIn, xBase = (iy * side + ix) * cIn;
              for (let ci = 0; ci < cIn; ci++) s += g[wBase + ci] * xl[xBase + ci];
            }
          }
          y[(co * half + oy) * half + ox] = s;
        }
      }
    }
    return y;
  }

  function deconv2d(layer, x, side) {  // ConvTranspose2d(k 4, s 2, p 1): (Cin, s, s) -> (Cout, 2s, 2s); W (Cin, Cout, 4, 4)
    const [cIn, cOut] = layer.shape;
    const g = gatherWeights(layer, true), xl = channelsLast(x, cIn, side), b = layer.b, twice = side * 2;
    const y = new Float64Array(cOut * twice * twice);
    for (let co = 0; co < cOut; co++) {
      for (let oy = 0; oy < twice; oy++) {
        for (let ox = 0; ox < twice; ox++) {
          let s = b[co];
          // output oy = 2 iy - 1 + ky: two input rows (and two columns) reach each output pixel
          for (let iy = (oy + 1 >> 1) - 1; iy <= (oy + 1 >> 1); iy++) {
            if (iy < 0 || iy >= side) continue;
            const ky = oy + 1 - 2 * iy;
            for (let ix = (ox + 1 >> 1) - 1; ix <= (ox + 1 >> 1); ix++) {
              if (ix < 0 || ix >= side) continue;
              const kx = ox + 1 - 2 * ix;
              const wBase = (co * 16 + ky * 4 + kx) * cIn, xBase = (iy * side + ix) * cIn;
              for (let ci = 0; ci < cIn; ci++) s += g[wBase + ci] * xl[xBase + ci];
            }
          }
          y[(co * twice + oy) * twice + ox] = s;
        }
      }
    }
    return y;
  }

  const relu = (x) => (x > 0 ? x : 0);
  const softplus = (x) => (x > 20 ? x : Math.log1p(Math.exp(x)));  // torch: beta 1, threshold 20
  const sigmoid = (x) => 1 / (1 + Math.exp(-x));

  function buildModel(model, imageShape) {
    const tensors = model.tensors, args = model.args;
    const layer = (name) => {
      const w = tensors[`${name}.weight`], b = tensors[`${name}.bias`];
      if (!w || !b) return null;
      return { shape: w.shape, w: floatsOf(w.data), b: floatsOf(b.data) };
    };
    const layers = (prefix) => {
      const out = [];
      for (let l; (l = layer(`${prefix}${out.length + 1}`));) out.push(l);
      return out;
    };
    const act = args.activation === "tanh" ? Math.tanh : relu;
    const applyAct = (h) => { for (let i = 0; i < h.length; i++) h[i] = act(h[i]); return h; };
    const L = args.latent_size, D = imageShape[0] * imageShape[1], side = imageShape[0];
    const encDense = layers("encoder.layer"), decDense = layers("decoder.layer");
    const convs = layers("encoder.conv"), deconvs = layers("decoder.deconv");
    // mlp2 (two stochastic layers): x -> h1 -> z and back, through h1's means (vaelab.models.mlp2)
    const upEnc = layers("upper_encoder.layer"), upDec = layers("upper_decoder.layer");
    const L1 = args.lower_latent_size;
    const positive = args.variance === "exp" ? (p) => Math.exp(2 * p) : softplus;
    const dense = (ls, h) => {
      ls.forEach((l, i) => { h = linear(l, h); if (i < ls.length - 1) applyAct(h); });
      return h;
    };

    function encode(pixels) {
      let h = Float64Array.from(pixels);
      let s = side;
      for (const c of convs) { h = applyAct(conv2d(c, h, s)); s >>= 1; }  // flattened (C, s, s) in C order
      h = dense(encDense, h);
      if (upEnc.length) h = dense(upEnc, h.slice(0, L1));  // q(z | h1) at h1's mean
      const mu = new Float32Array(L), variance = new Float32Array(L);
      for (let j = 0; j < L; j++) { mu[j] = h[j]; variance[j] = positive(h[L + j]); }
      return { mu, var: variance };
    }

    function logits(z) {
      let h = Float64Array.from(z);
      if (upDec.length) h = dense(upDec, h).slice(0, L1);  // the mean of p(h1 | z)
      const conv = deconvs.length > 0;
      decDense.forEach((l, i) => { h = linear(l, h); if (conv || i < decDense.length - 1) applyAct(h); });
      let s = side >> deconvs.length;
      deconvs.forEach((l, i) => { h = deconv2d(l, h, s); s <<= 1; if (i < deconvs.length - 1) applyAct(h); });
      return h;
    }

    function decode(z) {
      const h = logits(z), p = new Float32Array(D);
      for (let i = 0; i < D; i++) p[i] = sigmoid(h[i]);
      return p;
    }
    return { encode, decode, L, D };
  }

  // --- latent arithmetic (vaelab.latent) --------------------------------------
  const norm = (a) => Math.hypot(...a);
  const lerp = (a, b, t) => a.map((v, j) => (1 - t) * v + t * b[j]);

  function slerp(a, b, t) {  // along the great circle, the norm changing linearly; lerp where none is unique
    const na = norm(a), nb = norm(b);
    if (na === 0 || nb === 0) return lerp(a, b, t);
    let cos = 0;
    for (let j = 0; j < a.length; j++) cos += (a[j] / na) * (b[j] / nb);
    const omega = Math.acos(Math.min(1, Math.max(-1, cos)));
    if (Math.abs(omega) < 1e-6 || Math.PI - omega < 1e-3) return lerp(a, b, t);
    const sa = Math.sin((1 - t) * omega) / Math.sin(omega), sb = Math.sin(t * omega) / Math.sin(omega);
    const n = (1 - t) * na + t * nb;
    return a.map((v, j) => (sa * (v / na) + sb * (b[j] / nb)) * n);
  }

  function median(values) {
    const s = [...values].sort((x, y) => x - y);
    return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  }

  // --- DOM helpers ---------------------------------------------------------------
  function el(tag, props = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c != null) e.append(c);  // strings become text nodes
    return e;
  }

  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf"];
  const colour = (label) => (label < PALETTE.length ? PALETTE[label] : `hsl(${(label * 137.5) % 360}, 60%, 45%)`);
  const fmt = (x, d = 2) => {
    if (x == null || !Number.isFinite(x)) return "—";
    const s = x.toFixed(d);
    return Number(s) === 0 ? (0).toFixed(d) : s.replace("-", "−");  // never "−0.00"
  };

  function start() {
    const data = JSON.parse(document.getElementById("vaelab-data").textContent);
    if (data.format !== "vaelab-explorer/1") throw new Error(`unknown payload format ${String(data.format)}`);
    const [H, W] = data.image_shape, D = H * W;
    const net = buildModel(data.model, data.image_shape);
    const L = net.L, N = data.test.n;
    const labels = data.test.labels, fileIndex = data.test.index;
    const imageLL = data.run.scores ? data.test.log_likelihood : null;  // estimates of these weights only
    const testBits = bytesOf(data.test.images);
    const testMu = floatsOf(data.test.mu);
    const pcaMean = data.pca.mean, comps = data.pca.components, pcaStd = data.pca.std;
    const classNames = data.classes.names, word = data.classes.word || "class";
    const className = (label) => (label >= 0 && label < classNames.length ? String(classNames[label]) : String(label));
    const meanLabels = data.class_means.labels, means = data.class_means.means;
    const testImage = (i) => unpackBits(testBits, i * D, D);
    const testCode = (i) => Array.from(testMu.subarray(i * L, (i + 1) * L));
    const fromPlane = (a) => pcaMean.map((m, j) => a.reduce((s, ai, i) => s + ai * comps[i][j], m));
    const toPlane = (z) => comps.slice(0, 2).map((c) => c.reduce((s, cj, j) => s + cj * (z[j] - pcaMean[j]), 0));

    // The decode time of this model in this browser: median of 50 decodes.
    const times = [];
    const probe = pcaMean.slice();
    for (let k = 0; k < 50; k++) {
      probe[k % L] += 1e-3;
      const t0 = performance.now();
      net.decode(probe);
      times.push(performance.now() - t0);
    }
    const decodeMs = median(times);

    // Images: probabilities painted as grey levels, white ink on black, scaled without smoothing.
    const scratch = el("canvas", { width: W, height: H });
    function bitmap(p) {
      const ctx = scratch.getContext("2d"), img = ctx.createImageData(W, H);
      for (let i = 0; i < D; i++) {
        const g = Math.round(255 * p[i]);
        img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = g;
        img.data[4 * i + 3] = 255;
      }
      ctx.putImageData(img, 0, 0);
      return scratch;
    }
    function tile(caption, size = "m") {
      const canvas = el("canvas", { class: `img ${size}`, width: W, height: H });
      const cap = el("figcaption", { text: caption });
      const fig = el("figure", { class: "tile" }, canvas, cap);
      const ctx = canvas.getContext("2d");
      return {
        fig, canvas,
        show(p) { ctx.drawImage(bitmap(p), 0, 0); fig.classList.remove("empty"); },
        clear() { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, W, H); fig.classList.add("empty"); },
        label(text) { cap.textContent = text; },
      };
    }
    function slider(min, max, step, value) {
      return el("input", { type: "range", min: String(min), max: String(max), step: String(step), value: String(value) });
    }
    function classSelect(selected) {
      const s = el("select");
      meanLabels.forEach((label, i) => s.append(el("option", { value: String(i), text: className(label) })));
      s.value = String(selected);
      return s;
    }
    function section(id, title, blurb) {
      const s = el("section", { id, class: "view" }, el("h2", { text: title }), el("p", { class: "blurb", text: blurb }));
      app.append(s);
      return s;
    }

    const app = document.getElementById("app");
    app.textContent = "";

    // --- run panel (the corner: what the screenshots show) -----------------------
    const info = document.getElementById("info");
    const cfg = data.run.config || {}, args = data.model.args, scores = data.run.scores;
    const hidden = Array.isArray(args.hidden) ? args.hidden.join("-") : String(args.hidden);
    const modelText = `${data.model.name} · latent ${L} · hidden ${hidden}` +
      (args.channels ? ` · channels ${args.channels.join("-")}` : "") +
      (args.upper_hidden ? ` · h1 ${args.lower_latent_size} · upper ${args.upper_hidden.join("-")}` : "") +
      ` · ${args.activation} · ${args.variance}`;
    const objective = cfg.objective === "beta" ? `beta (β = ${cfg.beta})` : String(cfg.objective ?? "elbo");
    const rows = [["run", String(data.title)], ["model", modelText],
      ["objective", cfg.samples > 1 ? `${objective}, ${cfg.samples} samples` : objective],
      ["dataset", String(cfg.dataset ?? "mnist")],
      ["epoch", `${data.run.epoch.toLocaleString("en")}` +
        (data.run.epoch < cfg.epochs ? ` of ${cfg.epochs.toLocaleString("en")}` : "") +
        ` (step ${Number(data.run.step).toLocaleString("en")})`]];
    if (scores) {
      rows.push(["test ELBO", `${fmt(scores.elbo)} ± ${fmt(scores.elbo_stderr)} nats`]);
      if (scores.log_likelihood != null) {
        rows.push([`log p(x), K=${scores.iw_k}`, `${fmt(scores.log_likelihood)} ± ${fmt(scores.log_likelihood_stderr)} nats`]);
      }
      rows.push(["active units", `${scores.active_units} of ${L}, ${scores.n_images.toLocaleString("en")} test images`]);
      if (scores.data_matches_run === false) {
        rows.push(["scored on", "other test files than the run's own (vaelab eval --data-dir)"]);
      }
    } else {
      rows.push(["test scores", "not scored yet"]);
    }
    rows.push(["decode", `${fmt(decodeMs, 2)} ms in this browser`]);
    const dl = el("dl");
    for (const [k, v] of rows) dl.append(el("dt", { text: k }), el("dd", { text: v }));
    info.textContent = "";
    info.append(dl);

    // --- map ---------------------------------------------------------------------
    const maps = Object.entries({ pca: "PCA", tsne: "t-SNE", umap: "UMAP" }).filter(([k]) => data.maps[k]);
    const coords = Object.fromEntries(maps.map(([k]) => [k, floatsOf(data.maps[k])]));
    let mapKind = "pca", hover = -1, pinned = -1, planePoint = null, drawnCode = null;
    const mapSec = section("map", "Map", "The test images' codes, laid out in two dimensions and coloured by " +
      `${word}. Hover or tap a point to see the image and its reconstruction; on the PCA map a click also ` +
      "decodes that point of the plane.");
    const tabs = el("div", { class: "tabs", role: "tablist" });
    const mapCanvas = el("canvas", { class: "map", tabindex: "0",
      "aria-label": "map of the test codes; arrow keys step through the test images" });
    const legend = el("ul", { class: "legend" });
    meanLabels.forEach((label) => {
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = colour(label);
      legend.append(el("li", {}, swatch, className(label)));
    });
    const tImage = tile("test image"), tRecon = tile("reconstruction"), tPlane = tile("plane point");
    [tImage, tRecon, tPlane].forEach((t) => t.clear());
    const pointText = el("p", { class: "note", text: "Hover over a point.", "aria-live": "polite" });
    mapSec.append(el("div", { class: "row" },
      el("div", { class: "mapbox" }, tabs, mapCanvas, legend),
      el("div", { class: "side" }, el("div", { class: "tiles" }, tImage.fig, tRecon.fig, tPlane.fig), pointText)));
    for (const [k, name] of maps) {
      const b = el("button", { type: "button", role: "tab", text: `${name} map`, "data-map": k });
      b.addEventListener("click", () => { mapKind = k; renderMap(true); });
      tabs.append(b);
    }

    let base = null, view = null;  // the points, drawn once per size and map kind
    function layout() {
      const dpr = window.devicePixelRatio || 1, w = Math.max(200, mapCanvas.clientWidth);
      const xy = coords[mapKind];
      let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
      for (let i = 0; i < N; i++) {
        x0 = Math.min(x0, xy[2 * i]); x1 = Math.max(x1, xy[2 * i]);
        y0 = Math.min(y0, xy[2 * i + 1]); y1 = Math.max(y1, xy[2 * i + 1]);
      }
      if (!(x1 > x0)) { x0 -= 1; x1 += 1; }
      if (!(y1 > y0)) { y0 -= 1; y1 += 1; }
      const size = Math.round(w * dpr), pad = 12 * dpr;
      const scale = Math.min((size - 2 * pad) / (x1 - x0), (size - 2 * pad) / (y1 - y0));  // equal aspect
      const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
      return { dpr, size, scale, toPx: (x, y) => [size / 2 + (x - cx) * scale, size / 2 - (y - cy) * scale],
        fromPx: (px, py) => [cx + (px - size / 2) / scale, cy - (py - size / 2) / scale] };
    }
    function renderMap(relayout = false) {
      if (relayout || !view || view.size !== Math.round(Math.max(200, mapCanvas.clientWidth) * (window.devicePixelRatio || 1))) {
        view = layout();
        mapCanvas.width = mapCanvas.height = view.size;
        base = el("canvas", { width: view.size, height: view.size });
        const b = base.getContext("2d"), xy = coords[mapKind], r = 2.2 * view.dpr;
        b.fillStyle = "#fff"; b.fillRect(0, 0, view.size, view.size);
        b.globalAlpha = 0.75;
        for (let i = 0; i < N; i++) {
          const [px, py] = view.toPx(xy[2 * i], xy[2 * i + 1]);
          b.fillStyle = colour(labels[i]);
          b.beginPath(); b.arc(px, py, r, 0, 2 * Math.PI); b.fill();
        }
        for (const btn of tabs.children) btn.setAttribute("aria-selected", String(btn.dataset.map === mapKind));
      }
      const ctx = mapCanvas.getContext("2d"), xy = coords[mapKind], d = view.dpr;
      ctx.drawImage(base, 0, 0);
      const ring = (i, stroke, r) => {
        if (i < 0) return;
        const [px, py] = view.toPx(xy[2 * i], xy[2 * i + 1]);
        ctx.lineWidth = 2 * d; ctx.strokeStyle = stroke;
        ctx.beginPath(); ctx.arc(px, py, r * d, 0, 2 * Math.PI); ctx.stroke();
      };
      ring(pinned, "#000", 7);
      ring(hover, "#444", 5);
      if (mapKind === "pca" && planePoint) {
        const [px, py] = view.toPx(planePoint[0], planePoint[1]);
        ctx.lineWidth = 2 * d; ctx.strokeStyle = "#000";
        ctx.beginPath(); ctx.moveTo(px - 8 * d, py); ctx.lineTo(px + 8 * d, py);
        ctx.moveTo(px, py - 8 * d); ctx.lineTo(px, py + 8 * d); ctx.stroke();
      }
      if (mapKind === "pca" && drawnCode) {  // the drawing's code, projected on the first two directions
        const [a, b] = toPlane(drawnCode);
        const [px, py] = view.toPx(a, b), s = 8 * d;
        ctx.fillStyle = "#ffd400"; ctx.strokeStyle = "#000"; ctx.lineWidth = 2 * d;
        ctx.beginPath(); ctx.moveTo(px, py - s); ctx.lineTo(px + s, py); ctx.lineTo(px, py + s); ctx.lineTo(px - s, py);
        ctx.closePath(); ctx.fill(); ctx.stroke();
        ctx.fillStyle = "#000"; ctx.font = `${12 * d}px system-ui, sans-serif`;
        ctx.fillText("your drawing", px + s + 3 * d, py + 4 * d);
      }
    }
    function nearest(ev, within) {
      const rect = mapCanvas.getBoundingClientRect(), f = view.size / rect.width;
      const px = (ev.clientX - rect.left) * f, py = (ev.clientY - rect.top) * f, xy = coords[mapKind];
      let best = -1, bestD = (within * view.dpr) ** 2;
      for (let i = 0; i < N; i++) {
        const [qx, qy] = view.toPx(xy[2 * i], xy[2 * i + 1]);
        const dd = (qx - px) ** 2 + (qy - py) ** 2;
        if (dd < bestD) { bestD = dd; best = i; }
      }
      return { best, at: view.fromPx(px, py) };
    }
    function showPoint(i) {
      if (i < 0) {  // nothing pinned: no test image to show
        tImage.clear(); tRecon.clear(); tImage.label("test image");
        pointText.textContent = "Hover over a point.";
        return;
      }
      tImage.show(testImage(i));
      tRecon.show(net.decode(testCode(i)));
      tImage.label(`test image #${i}`);
      pointText.textContent = `Test image #${i} of the ${N.toLocaleString("en")} shown (number ` +
        `${fileIndex[i].toLocaleString("en")} in the test files, from 0): ${word} ${className(labels[i])}.` +
        (imageLL ? ` log p(x) ≈ ${fmt(imageLL[i])} nats (IW K=${data.run.scores.iw_k.toLocaleString("en")}, ` +
          "eval.json)." : "");
    }
    mapCanvas.addEventListener("pointermove", (ev) => {
      const { best } = nearest(ev, 10);
      if (best !== hover) { hover = best; if (best >= 0) showPoint(best); else if (pinned >= 0) showPoint(pinned); renderMap(); }
    });
    mapCanvas.addEventListener("pointerleave", () => { hover = -1; showPoint(pinned); renderMap(); });
    mapCanvas.addEventListener("click", (ev) => {
      const { best, at } = nearest(ev, 14);
      pinned = best;
      showPoint(best);
      if (mapKind === "pca") {
        planePoint = at;
        tPlane.show(net.decode(fromPlane(at)));
        tPlane.label(`plane (${fmt(at[0])}, ${fmt(at[1])})`);
        if (best < 0) pointText.textContent = `No test image there: the plane point (${fmt(at[0])}, ` +
          `${fmt(at[1])}) is decoded on the right.`;
      }
      renderMap();
    });
    mapCanvas.addEventListener("keydown", (ev) => {  // the keyboard's way to every image: step through them
      const step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1, PageDown: 10, PageUp: -10 }[ev.key];
      if (step === undefined) return;
      ev.preventDefault();
      pinned = ((pinned < 0 ? 0 : pinned + step) % N + N) % N;
      showPoint(pinned);
      renderMap();
    });
    new ResizeObserver(() => renderMap()).observe(mapCanvas);
    renderMap(true);
    pinned = 0;
    showPoint(0);

    // --- sliders -------------------------------------------------------------------
    const sliderSec = section("sliders", "Sliders", "Move along the principal directions of the test codes " +
      "(±3 standard deviations), or along each latent dimension, ordered by its KL divergence (active units first).");
    const pcaOut = tile("decoded", "l"), latOut = tile("decoded", "l");
    const pcaSliders = pcaStd.map((s) => slider(-3 * s, 3 * s, (s || 1) / 50, 0));
    const pcaRows = el("div", { class: "sliders" });
    const valueLabels = [];
    pcaSliders.forEach((input, i) => {
      const out = el("output", { text: "0.00" });
      valueLabels.push(out);
      pcaRows.append(el("label", {}, el("span", { class: "name", text: `PC${i + 1}` }), input, out));
    });
    function updatePca() {
      const a = pcaSliders.map((s) => Number(s.value));
      a.forEach((v, i) => { valueLabels[i].textContent = fmt(v); pcaSliders[i].setAttribute("aria-valuetext", fmt(v)); });
      pcaOut.show(net.decode(fromPlane(a)));
    }
    pcaSliders.forEach((s) => s.addEventListener("input", updatePca));
    const pcaReset = el("button", { type: "button", text: "reset" });
    pcaReset.addEventListener("click", () => { pcaSliders.forEach((s) => { s.value = "0"; }); updatePca(); });
    pcaSliders.forEach((s) => s.setAttribute("aria-valuetext", fmt(0)));  // not the 1e-16 a step leaves

    const kl = data.latent.kl, active = data.latent.active, lstd = data.latent.std;
    const order = [...data.latent.order].sort((i, j) => Number(active[j]) - Number(active[i]));
    const latValues = pcaMean.slice();
    const activeRows = el("div", { class: "sliders" }), inactiveRows = el("div", { class: "sliders" });
    const latInputs = [];
    for (const j of order) {
      const half = 3 * (active[j] ? lstd[j] || 1 : 1);
      const input = slider(pcaMean[j] - half, pcaMean[j] + half, half / 150, pcaMean[j]);
      input.dataset.dim = String(j);
      latInputs.push(input);
      const value = el("output", { class: "value", text: fmt(pcaMean[j]) });
      const shown = () => { value.textContent = fmt(latValues[j]); input.setAttribute("aria-valuetext", fmt(latValues[j])); };
      input.addEventListener("input", () => { latValues[j] = Number(input.value); shown(); latOut.show(net.decode(latValues)); });
      input.show = shown;
      const row = el("label", { class: active[j] ? "" : "inactive" }, el("span", { class: "name", text: `z${j}` }), input,
        value, el("output", { text: `KL ${fmt(kl[j])}` }));
      shown();
      (active[j] ? activeRows : inactiveRows).append(row);
    }
    const nInactive = inactiveRows.children.length;
    const latReset = el("button", { type: "button", text: "reset" });
    latReset.addEventListener("click", () => {
      latInputs.forEach((s) => { const j = Number(s.dataset.dim); latValues[j] = pcaMean[j]; s.value = String(pcaMean[j]); s.show(); });
      latOut.show(net.decode(latValues));
    });
    sliderSec.append(el("div", { class: "row two" },
      el("div", { class: "panel", id: "pca-sliders" }, el("h3", { text: "Principal directions" }),
        el("div", { class: "with-out" }, pcaOut.fig, el("div", {}, pcaRows, pcaReset)), ),
      el("div", { class: "panel", id: "latent-sliders" }, el("h3", { text: `Latent dimensions (${L - nInactive} active of ${L} on the ${N.toLocaleString("en")} test images shown)` }),
        el("div", { class: "with-out" }, latOut.fig, el("div", {}, activeRows,
          nInactive ? el("details", {}, el("summary", { text: `${nInactive} inactive units` }), inactiveRows) : null,
          latReset)))));
    pcaOut.label("mean code + Σ aᵢ · PCᵢ");
    latOut.label("the code z");
    updatePca();
    latOut.show(net.decode(latValues));

    // --- draw ----------------------------------------------------------------------
    const drawSec = section("draw", "Draw", `Draw a ${word} with the mouse or a finger. The drawing, ` +
      `downsampled to ${H}×${W} and binarized, is encoded: its code appears on the PCA map, ` +
      `its reconstruction below, and the nearest ${word} mean is named.`);
    const SCALE = 10;
    const pad = el("canvas", { class: "pad", width: W * SCALE, height: H * SCALE, "aria-label": "drawing pad" });
    const padCtx = pad.getContext("2d", { willReadFrequently: true });  // read back after every stroke
    const clearBtn = el("button", { type: "button", text: "clear" });
    const tSeen = tile("what the model sees"), tDrawRecon = tile("reconstruction");
    const guess = el("p", { class: "guess", text: "Nothing drawn yet." });
    const codeBars = el("canvas", { class: "bars", width: 480, height: 90, "aria-label": "the drawing's code" });
    drawSec.append(el("div", { class: "row" },
      el("div", { class: "padbox" }, pad, el("div", {}, clearBtn)),
      el("div", { class: "side" }, el("div", { class: "tiles" }, tSeen.fig, tDrawRecon.fig), guess,
        el("p", { class: "note", text: "Its code, dimensions in KL order (posterior mean ± sd):" }), codeBars)));
    let drawnPixels = null, inked = false, stroke = null, pending = false;
    function clearPad() {
      padCtx.fillStyle = "#000"; padCtx.fillRect(0, 0, pad.width, pad.height);
      inked = false; drawnCode = null; drawnPixels = null;
      tSeen.clear(); tDrawRecon.clear();
      guess.textContent = "Nothing drawn yet.";
      codeBars.getContext("2d").clearRect(0, 0, codeBars.width, codeBars.height);
      renderMap(); refreshBetween();
    }
    function padPoint(ev) {
      const r = pad.getBoundingClientRect();
      return [(ev.clientX - r.left) * pad.width / r.width, (ev.clientY - r.top) * pad.height / r.height];
    }
    function downsample() {  // mean ink of each SCALE x SCALE block, binarized at 0.5
      const img = padCtx.getImageData(0, 0, pad.width, pad.height).data, out = new Float32Array(D);
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          let s = 0;
          for (let dy = 0; dy < SCALE; dy++) {
            const row = ((y * SCALE + dy) * pad.width + x * SCALE) * 4;
            for (let dx = 0; dx < SCALE; dx++) s += img[row + 4 * dx];
          }
          out[y * W + x] = s / (255 * SCALE * SCALE) >= 0.5 ? 1 : 0;
        }
      }
      return out;
    }
    function encodeDrawing() {
      pending = false;
      if (!inked) return;
      drawnPixels = downsample();
      const { mu, var: v } = net.encode(drawnPixels);
      drawnCode = Array.from(mu);
      tSeen.show(drawnPixels);
      tDrawRecon.show(net.decode(drawnCode));
      let best = 0, bestD = Infinity;
      means.forEach((m, c) => {
        const dd = Math.hypot(...m.map((x, j) => x - drawnCode[j]));
        if (dd < bestD) { bestD = dd; best = c; }
      });
      guess.textContent = `Nearest ${word} mean: ${className(meanLabels[best])} (distance ${fmt(bestD)}).`;
      guess.dataset.nearest = String(meanLabels[best]);
      drawBars(mu, v);
      renderMap(); refreshBetween();
    }
    function drawBars(mu, v) {
      const ctx = codeBars.getContext("2d"), w = codeBars.width, h = codeBars.height, bw = w / L, mid = h / 2;
      const lim = 3;
      ctx.clearRect(0, 0, w, h);
      ctx.fillStyle = "#eee"; ctx.fillRect(0, mid - 0.5, w, 1);
      data.latent.order.forEach((j, k) => {
        const y = (val) => mid - Math.max(-lim, Math.min(lim, val)) / lim * (mid - 2);
        const sd = Math.sqrt(v[j]);
        ctx.fillStyle = active[j] ? "#bcd" : "#eee";
        ctx.fillRect(k * bw + 1, y(mu[j] + sd), Math.max(1, bw - 2), y(mu[j] - sd) - y(mu[j] + sd));
        ctx.fillStyle = active[j] ? "#1f4e79" : "#999";
        ctx.fillRect(k * bw + 1, Math.min(mid, y(mu[j])), Math.max(1, bw - 2), Math.max(1, Math.abs(y(mu[j]) - mid)));
      });
    }
    pad.addEventListener("pointerdown", (ev) => {
      pad.setPointerCapture(ev.pointerId);
      stroke = padPoint(ev);
      padCtx.fillStyle = "#fff";
      padCtx.beginPath(); padCtx.arc(stroke[0], stroke[1], 1.25 * SCALE, 0, 2 * Math.PI); padCtx.fill();
      inked = true;
      ev.preventDefault();
    });
    pad.addEventListener("pointermove", (ev) => {
      if (!stroke) return;
      const p = padPoint(ev);
      padCtx.strokeStyle = "#fff"; padCtx.lineWidth = 2.5 * SCALE; padCtx.lineCap = padCtx.lineJoin = "round";
      padCtx.beginPath(); padCtx.moveTo(stroke[0], stroke[1]); padCtx.lineTo(p[0], p[1]); padCtx.stroke();
      stroke = p;
      if (!pending) { pending = true; requestAnimationFrame(encodeDrawing); }
    });
    const endStroke = () => { if (stroke) { stroke = null; encodeDrawing(); } };
    pad.addEventListener("pointerup", endStroke);
    pad.addEventListener("pointercancel", endStroke);
    clearBtn.addEventListener("click", clearPad);

    // --- mix -----------------------------------------------------------------------
    const mixSec = section("mix", "Mix", `Blend two ${word} means: decode (1 − w) · mean A + w · mean B.`);
    const selA = classSelect(0), selB = classSelect(Math.min(1, meanLabels.length - 1));
    const weight = slider(0, 1, 0.01, 0.5);
    const wOut = el("output", { text: "0.50" });
    const tA = tile("A", "m"), tMix = tile("mix", "l"), tB = tile("B", "m");
    mixSec.append(el("div", { class: "controls" }, el("label", {}, "A ", selA),
      el("label", { class: "walk" }, el("span", { class: "name", text: "w" }), weight, wOut), el("label", {}, "B ", selB)),
    el("div", { class: "tiles mixrow" }, tA.fig, tMix.fig, tB.fig));
    function updateMix() {
      const a = means[Number(selA.value)], b = means[Number(selB.value)], w = Number(weight.value);
      wOut.textContent = fmt(w);
      tA.show(net.decode(a)); tB.show(net.decode(b));
      tA.label(`${word} ${className(meanLabels[Number(selA.value)])}`);
      tB.label(`${word} ${className(meanLabels[Number(selB.value)])}`);
      tMix.show(net.decode(a.map((v, j) => (1 - w) * v + w * b[j])));
    }
    [selA, selB, weight].forEach((c) => c.addEventListener("input", updateMix));
    updateMix();

    // --- between -------------------------------------------------------------------
    const STEPS = 10;
    const betweenSec = section("between", "Between", "Two codes and the paths between them: straight (lerp) " +
      "and along the great circle (slerp), each decoded at 10 points. The slider walks along both.");
    function endpoint(name, index) {
      const kind = el("select", { "aria-label": `${name}: what the end is` },
        el("option", { value: "test", text: "test image" }),
        el("option", { value: "mean", text: `${word} mean` }), el("option", { value: "drawing", text: "your drawing" }));
      const num = el("input", { type: "number", min: "0", max: String(N - 1), step: "1", value: String(index),
        "aria-label": `${name}: test image number, 0 to ${N - 1} of the ${N.toLocaleString("en")} shown` });
      const cls = classSelect(Math.min(index, meanLabels.length - 1));
      cls.setAttribute("aria-label", `${name}: ${word}`);
      const testIndex = () => Math.max(0, Math.min(N - 1, Math.floor(Number(num.value)) || 0));
      const preview = tile(name, "s");
      const box = el("fieldset", { class: "endpoint" }, el("legend", { text: name }), kind, num, cls, preview.fig);
      const sync = () => { num.hidden = kind.value !== "test"; cls.hidden = kind.value !== "mean"; };
      [kind, num, cls].forEach((c) => c.addEventListener("input", () => { sync(); refreshBetween(); }));
      num.addEventListener("change", () => { num.value = String(testIndex()); });  // 5000 or "" shows what is used
      sync();
      return {
        box, preview,
        code() {
          if (kind.value === "mean") {
            preview.label(`${name}: ${word} ${className(meanLabels[Number(cls.value)])} mean`);
            return means[Number(cls.value)].slice();
          }
          if (kind.value === "drawing") { preview.label(`${name}: your drawing`); return drawnCode ? drawnCode.slice() : null; }
          const i = testIndex();
          preview.label(`${name}: test image #${i}`);
          return testCode(i);
        },
      };
    }
    const ends = [endpoint("from", 0), endpoint("to", Math.min(1, N - 1))];
    const strip = (label) => {
      const c = el("canvas", { class: "strip", width: STEPS * (W + 2) + 2, height: H + 4, "aria-label": label });
      return { canvas: c, tiles: [] };
    };
    const lerpStrip = strip("lerp path"), slerpStrip = strip("slerp path");
    const walk = slider(0, 1, 0.01, 0.5);
    const tLerp = tile("lerp", "l"), tSlerp = tile("slerp", "l");
    const walkNote = el("p", { class: "note" });
    betweenSec.append(el("div", { class: "row" }, el("div", { class: "ends" }, ...ends.map((e) => e.box)),
      el("div", { class: "paths" },
        el("div", { class: "strip-row" }, el("span", { class: "name", text: "lerp" }), lerpStrip.canvas),
        el("div", { class: "strip-row" }, el("span", { class: "name", text: "slerp" }), slerpStrip.canvas),
        el("label", { class: "walk" }, el("span", { class: "name", text: "t" }), walk),
        el("div", { class: "tiles" }, tLerp.fig, tSlerp.fig), walkNote)));
    let endCodes = null;
    function paintStrip(s, t) {
      const ctx = s.canvas.getContext("2d");
      ctx.imageSmoothingEnabled = false;
      ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, s.canvas.width, s.canvas.height);
      if (!s.tiles.length) return;  // no path (an end not there yet): nothing to mark
      const k = Math.round(t * (STEPS - 1));
      ctx.fillStyle = "#e0a000"; ctx.fillRect(k * (W + 2), 0, W + 4, H + 4);
      s.tiles.forEach((p, i) => ctx.drawImage(bitmap(p), i * (W + 2) + 2, 2));
    }
    function updateWalk() {
      if (!endCodes) return;
      const t = Number(walk.value);
      tLerp.show(net.decode(lerp(endCodes[0], endCodes[1], t)));
      tSlerp.show(net.decode(slerp(endCodes[0], endCodes[1], t)));
      tLerp.label(`lerp, t = ${fmt(t)}`); tSlerp.label(`slerp, t = ${fmt(t)}`);
      paintStrip(lerpStrip, t); paintStrip(slerpStrip, t);
    }
    function refreshBetween() {
      const codes = ends.map((e) => e.code());
      ends.forEach((e, i) => (codes[i] ? e.preview.show(net.decode(codes[i])) : e.preview.clear()));
      if (codes.some((c) => !c)) {
        endCodes = null;
        walkNote.textContent = "Draw something first to use your drawing as an end.";
        [lerpStrip, slerpStrip].forEach((s) => { s.tiles = []; paintStrip(s, 0); });
        tLerp.clear(); tSlerp.clear(); tLerp.label("lerp"); tSlerp.label("slerp");
        return;
      }
      walkNote.textContent = "";
      endCodes = codes;
      for (const [s, path] of [[lerpStrip, lerp], [slerpStrip, slerp]]) {
        s.tiles = Array.from({ length: STEPS }, (_, i) => net.decode(path(codes[0], codes[1], i / (STEPS - 1))));
      }
      updateWalk();
    }
    walk.addEventListener("input", updateWalk);
    refreshBetween();

    clearPad();
    window.vaelab = {
      decode: (z) => net.decode(Array.from(z)),
      encode: (pixels) => net.encode(Array.from(pixels)),
      decodeMs, decodeTimes: times, ready: true,
    };
  }

  try {
    start();
  } catch (err) {
    const app = document.getElementById("app");
    app.textContent = "";
    app.append(el("p", { class: "error", text: `The explorer could not start: ${err && err.message}` }));
    window.vaelab = { ready: false, error: String(err && err.message) };
    throw err;
  }
})();
