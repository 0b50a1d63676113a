// The draw-a-digit page: draws on a canvas with Pointer Events, sends the canvas as a PNG to
// POST /api/v1/classify and shows the answer. Plain script, no build step, nothing from another
// origin; it runs under the page's Content-Security-Policy (no inline code, no eval).
"use strict";

(function () {
  const API = "/api/v1";
  const TOKEN_KEY = "mnist-serving.token";
  const MODEL_KEY = "mnist-serving.model";
  const LINE_WIDTH = 20;          // on the 280x280 buffer: a pen stroke on a 28x28 digit, scaled 10x
  const INTERVAL_MS = 200;        // at most one request per interval while a stroke is drawn
  const TOP_CLASSES = 5;

  const $ = (id) => document.getElementById(id);
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  const pad = $("pad");
  const results = $("results");
  const modelPicker = $("model-picker");
  const modelSelect = $("model");
  const fileInput = $("file");
  const tokenForm = $("token-form");
  const tokenInput = $("token");

  // Paper and ink: a dark pen on white paper; an uploaded image may bring a dark background, and
  // the ink then turns light so further strokes show (the server inverts light backgrounds itself).
  let paper = "#ffffff";
  let ink = "#000000";
  let hasInk = false;

  // ---------- the token (only when the server answers 401) ----------

  let memoryToken = "";
  function storedToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }

  function storeToken(value) {
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage off: the token lives until the page closes */ }
    memoryToken = value;
    $("token-set").hidden = !value;
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path, options) {
    const opts = Object.assign({ headers: {} }, options || {});
    const token = memoryToken || storedToken();
    if (token) opts.headers.Authorization = "Bearer " + token;
    let response;
    try {
      response = await fetch(API + path, opts);
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new ApiError(0, "The server cannot be reached (" + e.message + ").");
    }
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const message = body && typeof body.error === "string" ? body.error
        : "The server answered " + response.status + " " + response.statusText + ".";
      // 403 with a token: valid, but not for this service; without one it is not about tokens (mutual TLS).
      if (response.status === 401 || (response.status === 403 && token)) showTokenForm(message, !!token);
      throw new ApiError(response.status, message);
    }
    if (body === null) throw new ApiError(response.status, "The server's answer is not JSON.");
    return body;
  }

  function showTokenForm(message, hadToken) {
    $("token-reason").textContent = hadToken
      ? "The server refused the token: " + message
      : "This server needs a token (" + message + ").";
    if (tokenForm.hidden) {
      tokenForm.hidden = false;
      tokenInput.focus();
    }
  }

  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = tokenInput.value.trim();
    if (!value) return;
    storeToken(value);
    tokenInput.value = "";
    tokenForm.hidden = true;
    showError("");
    loadModels().then(() => { if (hasInk) classifyNow(); });
  });

  $("forget-token").addEventListener("click", () => {
    storeToken("");
    memoryToken = "";
    $("choose").focus();
  });

  // ---------- the models ----------

  async function loadModels() {
    let body;
    try {
      body = await api("/models");
    } catch (e) {
      if (e.status !== 401 && e.status !== 403) showError("The model list cannot be read: " + e.message);
      return;
    }
    const models = (body.models || []).filter((m) => !m.error);
    let saved = null;
    try { saved = sessionStorage.getItem(MODEL_KEY); } catch (e) { /* none */ }
    modelSelect.replaceChildren();
    classNamesByModel = {};
    subjectByModel = {};
    for (const m of models) {
      classNamesByModel[m.name] = m.class_names || [];
      subjectByModel[m.name] = m.metadata && m.metadata.dataset === "fashion-mnist" ? CLOTHING : DIGIT;
      const option = document.createElement("option");
      option.value = m.name;
      const arch = m.metadata && typeof m.metadata.model === "string" ? m.metadata.model : "";
      const kind = arch && arch !== m.name ? " (" + arch + ")" : "";
      option.textContent = m.name + kind + " · version " + m.version;
      modelSelect.append(option);
    }
    const names = models.map((m) => m.name);
    modelSelect.value = names.includes(saved) ? saved : (body.default_model || names[0] || "");
    // One model: nothing to choose; the answer still says which model and version answered.
    modelPicker.hidden = models.length < 2;
    modelSelect.disabled = models.length < 2;
    showSubject();
  }

  // What to draw depends on the model: a digit for MNIST, a garment's outline for Fashion-MNIST.
  const DIGIT = {title: "Draw a digit", lede: "Draw one digit, 0 to 9,", empty: "Draw a digit to see what the model thinks it is."};
  const CLOTHING = {title: "Draw a piece of clothing", lede: "Draw a shirt, a shoe, a bag or trousers",
                    empty: "Draw a piece of clothing, or drop a product photo, to see what the model thinks it is."};
  let subjectByModel = {};

  function subject() {
    return subjectByModel[modelSelect.value] || DIGIT;
  }

  function showSubject() {
    $("title").textContent = subject().title;
    $("lede-subject").textContent = subject().lede;
    document.title = subject().title + " · mnist-serving";
    if (!results.dataset.label) $("top-text").textContent = subject().empty;
  }

  modelSelect.addEventListener("change", () => {
    try { sessionStorage.setItem(MODEL_KEY, modelSelect.value); } catch (e) { /* not kept */ }
    showSubject();
    if (hasInk) classifyNow();
  });

  function chosenModel() {
    return modelPicker.hidden ? "" : modelSelect.value;  // "" = the server's default model
  }

  // ---------- classifying: one request in flight, at most one per interval ----------

  let classNamesByModel = {};  // from /api/v1/models: the bars name every class, not just the top one
  let inFlight = false;
  let dirty = false;         // the canvas changed since the last request was sent
  let lastSent = 0;
  let timer = 0;
  let generation = 0;        // bumped by Clear and by a model change: older answers are dropped
  let controller = null;
  let drawing = false;

  function classifySoon() {
    dirty = true;
    pump(false);
  }

  function classifyNow() {
    dropPending();
    dirty = true;
    pump(true);
  }

  // The canvas is about to be replaced (Clear, a file): answers to what it showed are dropped,
  // and nothing of it is sent again.
  function dropPending() {
    generation += 1;
    if (controller) controller.abort();
    clearTimeout(timer);
    timer = 0;
    dirty = false;
  }

  function pump(now) {
    if (inFlight || !dirty || !hasInk) return;
    const wait = lastSent + INTERVAL_MS - performance.now();
    if (!now && wait > 0) {
      if (!timer) timer = setTimeout(() => { timer = 0; pump(false); }, wait);
      return;
    }
    clearTimeout(timer);
    timer = 0;
    send();
  }

  function canvasPng() {
    return new Promise((resolve, reject) => {
      canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("the canvas cannot be encoded"))), "image/png");
    });
  }

  async function send() {
    dirty = false;
    inFlight = true;
    lastSent = performance.now();
    const mine = generation;
    const final = !drawing;  // only answers to a finished drawing are announced
    controller = new AbortController();
    results.classList.add("busy");
    results.setAttribute("aria-busy", "true");
    try {
      const blob = await canvasPng();
      const model = chosenModel();
      const query = model ? "?model=" + encodeURIComponent(model) : "";
      const body = await api("/classify" + query, {
        method: "POST",
        headers: { "Content-Type": "image/png" },
        body: blob,
        signal: controller.signal,
      });
      if (mine === generation && hasInk) {
        showAnswer(body, final && !dirty);
        showError("");
      }
    } catch (e) {
      if (e.name !== "AbortError" && mine === generation) showError(e.message);
    } finally {
      inFlight = false;
      controller = null;
      results.classList.remove("busy");
      results.removeAttribute("aria-busy");
      // A change made while this request was out is sent now; a finished stroke does not wait.
      if (dirty) pump(!drawing);
    }
  }

  function percent(p) {
    if (p > 0 && p < 0.001) return "<0.1%";
    return (p * 100).toFixed(p >= 0.995 || p === 0 ? 0 : 1) + "%";
  }

  function showAnswer(body, announce) {
    const prediction = (body.predictions || [])[0];
    if (!prediction) { showError("The server's answer holds no prediction."); return; }
    const probabilities = prediction.probabilities || [];
    const names = classNames(body.model_name, probabilities.length);
    const ranked = probabilities.map((p, i) => ({ p, i })).sort((a, b) => b.p - a.p).slice(0, TOP_CLASSES);
    const best = prediction.class_name || names[prediction.label] || String(prediction.label);
    const bestP = probabilities[prediction.label];

    $("top-label").textContent = best;
    $("top-text").textContent = bestP === undefined ? "" : percent(bestP) + " sure";

    const list = $("bars");
    list.replaceChildren();
    for (const { p, i } of ranked) {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = names[i] || String(i);
      const track = document.createElement("span");
      track.className = "track";
      track.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = (p * 100).toFixed(2) + "%";  // CSSOM, which the CSP allows (style attributes it would not)
      track.append(fill);
      const pct = document.createElement("span");
      pct.className = "pct";
      pct.textContent = percent(p);
      li.append(name, track, pct);
      li.dataset.label = String(i);
      list.append(li);
    }
    $("answered-by").textContent = "Answered by " + body.model_name + ", version " + body.model_version;
    results.dataset.model = body.model_name;
    results.dataset.version = String(body.model_version);
    results.dataset.label = String(prediction.label);
    if (announce) {
      $("announce").textContent = "The model " + body.model_name + " says " + best +
        (bestP === undefined ? "" : ", " + percent(bestP) + " sure") + ".";
    }
  }

  function classNames(model, n) {
    const names = classNamesByModel[model];
    return names && names.length === n ? names : Array.from({ length: n }, (_, i) => String(i));
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = !message;
  }

  function resetAnswer() {
    $("top-label").textContent = "–";
    $("top-text").textContent = subject().empty;
    $("bars").replaceChildren();
    $("answered-by").textContent = "";
    delete results.dataset.label;
    delete results.dataset.model;
    delete results.dataset.version;
    $("announce").textContent = "";
  }

  // ---------- drawing ----------

  function fillPaper(color) {
    paper = color;
    ctx.save();
    ctx.globalCompositeOperation = "source-over";
    ctx.fillStyle = paper;
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.restore();
  }

  function setInked(value) {
    hasInk = value;
    pad.classList.toggle("inked", value);
  }

  function clearCanvas() {
    dropPending();
    ink = "#000000";
    fillPaper("#ffffff");
    setInked(false);
    resetAnswer();
    showError("");
  }

  // Where a pointer event falls on the 280x280 buffer, whatever size CSS gives the canvas.
  function point(event) {
    const rect = canvas.getBoundingClientRect();
    return {
      x: (event.clientX - rect.left) * (canvas.width / rect.width),
      y: (event.clientY - rect.top) * (canvas.height / rect.height),
    };
  }

  let activePointer = null;
  let last = null;

  function strokeTo(p) {
    ctx.beginPath();
    ctx.moveTo(last.x, last.y);
    ctx.lineTo(p.x, p.y);
    ctx.stroke();
    last = p;
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (activePointer !== null) return;                          // one finger draws; others are ignored
    if (event.pointerType === "mouse" && event.button !== 0) return;
    event.preventDefault();
    activePointer = event.pointerId;
    canvas.setPointerCapture(event.pointerId);                   // the stroke goes on outside the canvas
    drawing = true;
    ctx.strokeStyle = ink;
    ctx.fillStyle = ink;
    ctx.lineWidth = LINE_WIDTH;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    last = point(event);
    ctx.beginPath();                                             // a tap leaves a dot
    ctx.arc(last.x, last.y, LINE_WIDTH / 2, 0, 2 * Math.PI);
    ctx.fill();
    setInked(true);
    classifySoon();
  });

  canvas.addEventListener("pointermove", (event) => {
    if (event.pointerId !== activePointer) return;
    // Coalesced events keep fast strokes smooth where the browser batches moves per frame.
    const events = typeof event.getCoalescedEvents === "function" ? event.getCoalescedEvents() : [];
    for (const e of events.length ? events : [event]) strokeTo(point(e));
    classifySoon();
  });

  function endStroke(event) {
    if (event.pointerId !== activePointer) return;
    if (event.type === "pointerup") strokeTo(point(event));
    activePointer = null;
    last = null;
    drawing = false;
    if (canvas.hasPointerCapture(event.pointerId)) canvas.releasePointerCapture(event.pointerId);
    classifyNow();                                               // the final answer, at once
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());

  $("clear").addEventListener("click", clearCanvas);

  // ---------- an image file: chosen or dropped ----------

  $("choose").addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => {
    const file = fileInput.files && fileInput.files[0];
    if (file) loadFile(file);
    fileInput.value = "";  // choosing the same file again still fires change
  });

  // The file is drawn onto the canvas and the canvas is sent: what is classified is what is shown,
  // strokes can be added to it, transparent images get a paper background, and any format the
  // browser decodes works.
  async function loadFile(file) {
    dropPending();  // a late answer about the old drawing must not hide what is said about this file
    if (file.type && !file.type.startsWith("image/")) {
      showError("'" + file.name + "' is not an image file.");
      return;
    }
    const url = URL.createObjectURL(file);
    try {
      const image = new Image();
      image.src = url;
      await image.decode();
      drawImage(image);
    } catch (e) {
      showError("'" + file.name + "' cannot be read as an image.");
      return;
    } finally {
      URL.revokeObjectURL(url);
    }
    showError("");
    setInked(true);
    classifyNow();
  }

  function drawImage(image) {
    const w = image.naturalWidth, h = image.naturalHeight;
    // Flatten onto white first (transparent pixels are paper), then read the border's brightness:
    // the canvas's margins get the same background, so the server sees one uniform background.
    const flat = document.createElement("canvas");
    flat.width = w;
    flat.height = h;
    const fctx = flat.getContext("2d", { willReadFrequently: true });
    fctx.fillStyle = "#ffffff";
    fctx.fillRect(0, 0, w, h);
    fctx.drawImage(image, 0, 0);
    const level = Math.round(borderBrightness(fctx, w, h));
    fillPaper("rgb(" + level + "," + level + "," + level + ")");
    ink = level > 127 ? "#000000" : "#ffffff";
    const scale = Math.min(canvas.width / w, canvas.height / h);
    const dw = w * scale, dh = h * scale;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(flat, (canvas.width - dw) / 2, (canvas.height - dh) / 2, dw, dh);
  }

  function borderBrightness(c, w, h) {
    const rows = [c.getImageData(0, 0, w, 1), c.getImageData(0, h - 1, w, 1),
                  c.getImageData(0, 0, 1, h), c.getImageData(w - 1, 0, 1, h)];
    let sum = 0, n = 0;
    for (const { data } of rows) {
      for (let i = 0; i < data.length; i += 4) {
        sum += 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
        n += 1;
      }
    }
    return n ? sum / n : 255;
  }

  // Dropping a file anywhere on the page loads it; the overlay shows while a file is dragged over.
  const overlay = $("drop-overlay");
  let dragDepth = 0;
  const carriesFiles = (event) => event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files");
  document.addEventListener("dragenter", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    dragDepth += 1;
    overlay.hidden = false;
  });
  document.addEventListener("dragover", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) overlay.hidden = true;
  });
  document.addEventListener("drop", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    dragDepth = 0;
    overlay.hidden = true;
    const file = Array.from(event.dataTransfer.files).find((f) => f.type.startsWith("image/"))
      || event.dataTransfer.files[0];
    if (file) loadFile(file);
  });

  // ---------- start ----------

  fillPaper(paper);
  storeToken(storedToken());
  loadModels().then(() => { document.body.dataset.ready = "true"; });
})();
