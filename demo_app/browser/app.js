// The page: one file input (and drag-and-drop), the result drawn and written as JSON into #result-json.
import { loadEngine, NotAChestXray, triage } from "./engine.js";

const $ = (id) => document.getElementById(id);
let engine = null;

// The analysed image in display polarity (MONOCHROME1 shown inverted), on a canvas of its own size.
function greyCanvas(display) {
  const { decoded, flipped } = display;
  const canvas = document.createElement("canvas");
  canvas.width = decoded.w;
  canvas.height = decoded.h;
  const rgba = new Uint8ClampedArray(decoded.w * decoded.h * 4);
  for (let i = 0; i < decoded.data.length; i++) {
    const v = Math.round((flipped ? 1 - decoded.data[i] : decoded.data[i]) * 255);
    rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = v;
    rgba[4 * i + 3] = 255;
  }
  canvas.getContext("2d").putImageData(new ImageData(rgba, decoded.w, decoded.h), 0, 0);
  return canvas;
}

function draw(source, crops) {
  const canvas = $("image");
  const w = (canvas.width = source.width);
  canvas.height = source.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(source, 0, 0);
  ctx.lineWidth = Math.max(2, w / 200);
  ctx.strokeStyle = "#ff3b30";
  ctx.fillStyle = "#ff3b30";
  ctx.font = `${Math.max(12, w / 40)}px sans-serif`;
  crops.forEach((b, i) => {
    ctx.strokeRect(b.x, b.y, b.w, b.h);
    ctx.fillText(`${i + 1}`, b.x + 4, b.y + Math.max(12, w / 40));
  });
}

// The evidence crops, as the server's thumbnails are cut (explain/evidence.py save_crop_thumbnails): the box with a
// margin of THUMB_MARGIN x its size, clipped to the image, scaled so its long side is THUMB_SIZE; nothing drawn on it.
function cropThumbnails(source, crops, { THUMB_MARGIN, THUMB_SIZE }) {
  return crops.map((b, i) => {
    const mx = Math.round(THUMB_MARGIN * b.w), my = Math.round(THUMB_MARGIN * b.h);
    const x0 = Math.max(0, b.x - mx), y0 = Math.max(0, b.y - my);
    const x1 = Math.min(source.width, b.x + b.w + mx), y1 = Math.min(source.height, b.y + b.h + my);
    const scale = THUMB_SIZE / Math.max(x1 - x0, y1 - y0);
    const thumb = document.createElement("canvas");
    thumb.width = Math.max(1, Math.round((x1 - x0) * scale));
    thumb.height = Math.max(1, Math.round((y1 - y0) * scale));
    thumb.getContext("2d").drawImage(source, x0, y0, x1 - x0, y1 - y0, 0, 0, thumb.width, thumb.height);
    const figure = document.createElement("figure");
    const caption = Object.assign(document.createElement("figcaption"), { textContent: `${i + 1}: ${b.region}` });
    thumb.setAttribute("aria-label", `evidence crop ${i + 1}, ${b.region}`);
    figure.append(thumb, caption);
    return figure;
  });
}

function show(result, similar) {
  $("label").textContent = result.label.toUpperCase() + (result.needs_review ? " — needs a radiologist's review" : "");
  $("label").className = result.label === "Urgent" ? "urgent" : "non-urgent";
  $("score").textContent = `score ${result.score.toFixed(4)} · threshold ${result.threshold.toFixed(4)} · review band [${result.review_band.map((v) => v.toFixed(4)).join(", ")})`;
  $("reasons").textContent = result.review_reasons.length ? `Why review: ${result.review_reasons.join("; ")}` : "";
  const a = result.anatomy;
  $("anatomy").textContent = `Lungs found: ${a.lungs_found.join(" and ") || "none"}` +
    (a.cardiothoracic_ratio !== null ? ` · cardiothoracic ratio ${a.cardiothoracic_ratio} (an AP film magnifies the heart)` : "");
  $("evidence").textContent = result.crops.length
    ? result.crops.map((c, i) => `${i + 1}: ${c.region} (${Math.round(c.strength * 100)}% of the positive map)`).join(" · ")
    : "No evidence box (none stands out).";
  $("similar").textContent = similar.length
    ? `Most similar training films: ${similar.map((n) => `${n.key} (${n.urgent ? "Urgent" : "Non-Urgent"}, similarity ${n.similarity.toFixed(2)})`).join(" · ")}`
    : "";
  const warnings = $("warnings");
  warnings.replaceChildren(...result.warnings.map((w) => Object.assign(document.createElement("li"), { textContent: w })));
  $("speed").textContent = `Analysed in this browser in ${result.timings_ms.total.toFixed(0)} ms (model ${result.timings_ms.model.toFixed(0)} ms, segmentation ${result.timings_ms.segment.toFixed(0)} ms).`;
}

async function handle(file) {
  $("status").textContent = `Analysing ${file.name} in this browser…`;
  $("error").textContent = "";
  try {
    const { result, display } = await triage(engine, file);
    const source = greyCanvas(display);
    draw(source, display.boxes);
    $("crops").replaceChildren(...cropThumbnails(source, display.boxes, engine.cfg.rules.evidence));
    show(result, display.similar);
    $("result").hidden = false;
    $("result-json").textContent = JSON.stringify({ file: file.name, ...result }, null, 1);
    $("status").textContent = "";
  } catch (e) {
    $("result").hidden = true;
    $("error").textContent = e instanceof NotAChestXray ? `Not triaged: ${e.message}.` : `Cannot read this file: ${e.message}`;
    $("result-json").textContent = JSON.stringify({ file: file.name, error: e.message, refused: e instanceof NotAChestXray });
    $("status").textContent = "";
  }
  document.body.dataset.done = String(Number(document.body.dataset.done || 0) + 1);
}

async function handleAll(files) {
  for (const file of files) await handle(file);
}

async function start() {
  try {
    engine = await loadEngine();
  } catch (e) {
    $("status").textContent = `The models could not be loaded (${e.message}). Build the page with "make browser" and serve the folder over http.`;
    return;
  }
  const { classifier, segmenter } = engine.cfg;
  const mb = (classifier.size_bytes + segmenter.size_bytes) / 1e6;
  $("model-info").textContent = `${classifier.name} ${classifier.version} + ${segmenter.name} ${segmenter.version}: ${mb.toFixed(1)} MB of int8 ONNX and a ${(engine.embeddings.byteLength / 1e6).toFixed(1)} MB similarity index, loaded in ${engine.loadMs.toFixed(0)} ms, run by onnxruntime-web (WebAssembly, 1 thread).`;
  $("status").textContent = "Ready: choose or drop a chest radiograph (PNG, JPEG or DICOM).";
  $("file").disabled = false;
  $("file").addEventListener("change", (ev) => handleAll([...ev.target.files]));
  const drop = $("drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); handleAll([...ev.dataTransfer.files]); });
  document.body.dataset.ready = "1";
}

start();
