// The triage pipeline in the browser: the stages of src/cxrtriage/pipeline.py that can run here (exposed field,
// gate statistics, polarity, layout, segmentation + frontal check, classifier, similarity to the training films and
// similar cases (the engine's index, models/index.f32), view probe, decision, evidence). Server-only: prior-report
// analysis (the page takes no report).
// The models run as classify_full.onnx / segment_full.onnx (src/cxrtriage/train/browser_graphs.py): each takes the
// exposed-field crop in [0, 1] at its own size and does the resize, quantization, window, normalisation, calibration,
// sigmoid and activation map itself, as the engine does them in numpy, so none of that arithmetic is written here.
import * as ort from "./vendor/ort.wasm.min.mjs";
import { decodeFile } from "./decode.js";
import { findField } from "./field.js";
import { analysisImage, clipUnit, crop, imageStatistics, invert, layoutResidual, percentile, polarityContrast } from "./preprocess.js";
import { lungShare, measureAnatomy, symmetry, zone } from "./anatomy.js";
import { findEvidenceBoxes, peakProminence } from "./evidence.js";

ort.env.wasm.wasmPaths = new URL("./vendor/", import.meta.url).href;
ort.env.wasm.numThreads = 1; // no SharedArrayBuffer: works without cross-origin isolation
ort.env.wasm.proxy = false;

export class NotAChestXray extends Error {}

const round4 = (v) => Math.round(v * 1e4) / 1e4;
const NON_RADIOGRAPH = new Set(["CT", "MR", "US", "NM", "PT", "MG", "XA", "RF", "OCT", "OP", "SM", "ES", "IVUS", "ECG", "SR", "PX", "IO", "SEG", "KO", "PR", "DOC", "XC", "BMD"]);
const LATERAL = new Set(["LL", "RL", "LAT", "LATERAL", "LLD", "RLD"]);

export async function loadEngine(base = "./") {
  const cfg = await (await fetch(new URL("config.json", new URL(base, location.href)))).json();
  const opts = { executionProviders: ["wasm"], graphOptimizationLevel: "all" };
  const t0 = performance.now();
  const [classifier, segmenter, index] = await Promise.all([
    ort.InferenceSession.create(cfg.classifier.file, opts),
    ort.InferenceSession.create(cfg.segmenter.file, opts),
    fetch(new URL(cfg.similarity.file, new URL(base, location.href))).then((r) => r.arrayBuffer()),
  ]);
  const embeddings = new Float32Array(index);
  if (embeddings.length !== cfg.similarity.rows * cfg.similarity.dims) throw new Error(`${cfg.similarity.file} is not the index config.json describes`);
  return { cfg, classifier, segmenter, embeddings, loadMs: performance.now() - t0 };
}

/** embedding_index.py: the embedding centred on the training films' mean and L2-normalised (in float32, as numpy
 * does), its cosine similarity to each training film, the mean of the k highest (knn_similarity, what the
 * out-of-distribution check reads) and the nearest films. */
function similarToTraining(embeddings, sim, embedding) {
  const d = sim.dims;
  const q = new Float32Array(d);
  for (let i = 0; i < d; i++) q[i] = embedding[i] - sim.centre[i];
  let ss = 0;
  for (let i = 0; i < d; i++) ss += q[i] * q[i];
  const norm = Math.max(Math.fround(Math.sqrt(ss)), 1e-8);
  for (let i = 0; i < d; i++) q[i] = q[i] / norm;
  const sims = new Float64Array(sim.rows);
  for (let r = 0; r < sim.rows; r++) {
    let dot = 0;
    for (let i = 0, o = r * d; i < d; i++) dot += embeddings[o + i] * q[i];
    sims[r] = dot;
  }
  const order = Array.from(sims.keys()).sort((a, b) => sims[b] - sims[a]);
  const k = Math.max(1, Math.min(sim.k, sim.rows));
  const knn = order.slice(0, k).reduce((acc, r) => acc + sims[r], 0) / k;
  return { knn, nearest: order.slice(0, sim.neighbours).map((r) => ({ key: sim.keys[r], urgent: sim.urgent[r], similarity: sims[r] })) };
}

/** provenance.case_provenance: a similar training case as the API quotes it. */
function caseProvenance(n, sim) {
  return {
    source: `training_case:${n.key}`, relation: "similar_case", similarity: round4(n.similarity),
    snippet: `similar training image (${sim.populations[n.key.split("/")[0]] ?? n.key.split("/")[0]}), labelled ${n.urgent ? "Urgent" : "Non-Urgent"}, cosine similarity ${n.similarity.toFixed(2)}`,
  };
}

function gateHeaderAndStatistics(img, meta, g) {
  if (meta.modality && NON_RADIOGRAPH.has(meta.modality.toUpperCase())) throw new NotAChestXray(`this DICOM is a ${meta.modality} image, not a chest radiograph (expected CR or DX)`);
  if (meta.view_position && LATERAL.has(meta.view_position.toUpperCase())) throw new NotAChestXray(`this is a lateral view (${meta.view_position}); cxrtriage only triages frontal (PA/AP) chest radiographs`);
  if (Math.min(img.h, img.w) < g.MIN_SIDE) throw new NotAChestXray(`image is ${img.w}x${img.h} pixels; at least ${g.MIN_SIDE} px on each side is needed`);
  const aspect = Math.max(img.h, img.w) / Math.min(img.h, img.w);
  if (aspect > g.MAX_ASPECT) throw new NotAChestXray(`aspect ratio ${aspect.toFixed(1)}:1 is not that of a chest radiograph`);
  if (meta.colourfulness !== null && meta.colourfulness !== undefined && meta.colourfulness > g.MAX_COLOURFULNESS) throw new NotAChestXray("this is a colour image (a photograph or screenshot?), not a grey-scale chest radiograph");
  const stats = imageStatistics(img);
  if (stats.std < g.MIN_STD) {
    if (percentile(img.data, 99) - percentile(img.data, 1) < g.MIN_LOW_CONTRAST_SPREAD) throw new NotAChestXray("the image is blank or has almost no contrast");
    stats.lowContrast = true;
  }
  if (stats.roughness > g.MAX_ROUGHNESS) throw new NotAChestXray("the image looks like noise or a screenshot, not a chest radiograph");
  if (stats.roughness < g.MIN_ROUGHNESS) throw new NotAChestXray("the image is a smooth synthetic pattern, not a chest radiograph");
  return stats;
}

/** One graph on the crop ([1, 1, h, w] in [0, 1]); its outputs by name. */
async function run(session, img) {
  return session.run({ [session.inputNames[0]]: new ort.Tensor("float32", img.data, [1, 1, img.h, img.w]) });
}

/** The `resized` output (the float resize to the model size, before quantizing) as an image. */
function resizedOf(outs) {
  const [, , h, w] = outs.resized.dims;
  return { data: outs.resized.data, h, w };
}

/** Python's round(): halves to even. */
function roundHalfEven(v) {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** exposed_field.to_original_pixels: boxes of the decoded image (w x h) in the original's pixels (a DICOM decoded
 * at 1/k, above CXRTRIAGE_MAX_WORKING_PIXELS). */
function toOriginal(boxes, [aw, ah], [ow, oh]) {
  if (aw === ow && ah === oh) return boxes;
  const sx = ow / aw, sy = oh / ah;
  return boxes.map((c) => {
    const x = Math.min(ow - 1, Math.trunc(c.x * sx)), y = Math.min(oh - 1, Math.trunc(c.y * sy));
    return { ...c, x, y, w: Math.max(1, Math.min(ow - x, roundHalfEven(c.w * sx))), h: Math.max(1, Math.min(oh - y, roundHalfEven(c.h * sy))) };
  });
}

/** ExposedField.xywh(original): the field as [x, y, w, h] in the original's pixels. */
function fieldInOriginal([x0, y0, x1, y1], [aw, ah], [ow, oh]) {
  const sx = ow / aw, sy = oh / ah;
  const x = Math.trunc(x0 * sx), y = Math.trunc(y0 * sy);
  return [x, y, Math.max(1, roundHalfEven(x1 * sx) - x), Math.max(1, roundHalfEven(y1 * sy) - y)];
}

function decide(score, cfg, doubts) {
  const threshold = round4(cfg.threshold);
  const band = [round4(cfg.review_band[0]), round4(cfg.review_band[1])];
  const s = round4(score);
  const inBand = band[0] <= s && s < band[1];
  let label = s >= threshold || inBand ? "Urgent" : "Non-Urgent";
  const warnings = [];
  const reasons = inBand ? ["the score is too close to the threshold for the model to call"] : [];
  for (const why of doubts) {
    label = "Urgent";
    warnings.push(`atypical frontal radiograph: ${why}; labelled Urgent for human review`);
    reasons.push(`the film looks atypical, as ${why}`);
  }
  return { label, score: s, threshold, review_band: band, needs_review: inBand || doubts.length > 0, warnings, reasons };
}

/** Triage one file: the result in the API's field names (the ones computed here), plus what the page draws. */
export async function triage(engine, file) {
  const { cfg } = engine;
  const rules = cfg.rules;
  const timings = {};
  let t = performance.now();
  const tick = (name) => { const now = performance.now(); timings[name] = Math.round((now - t) * 100) / 100; t = now; };
  const start = t;
  const { img: decoded, meta } = await decodeFile(file, rules.analysis.MAX_WORKING_PIXELS);
  tick("decode");
  const warnings = [...meta.warnings];
  const [fx0, fy0, fx1, fy1] = findField(clipUnit(decoded), rules.field);
  // the field, box-averaged when it is 1024 px or more (src/cxrtriage/imaging/analysis_size.py)
  const analysed = analysisImage(crop(decoded, fx0, fy0, fx1, fy1), rules.analysis.ANALYSIS_SIDE);
  const k = analysed.k;
  let pixels = analysed.img;
  tick("field");
  const stats = gateHeaderAndStatistics(pixels, meta, rules.gate);
  tick("gate");
  // the classifier graph first: its `resized` output is what the layout gate (and the polarity check) read
  let outs = await run(engine.classifier, pixels);
  tick("model");
  const layout = cfg.layout;
  let flipped = false;
  if (meta.photometric_interpretation === "MONOCHROME1" && polarityContrast(pixels) < -rules.polarity.INVERSION_MARGIN) {
    const inverse = invert(pixels);
    const inverseOuts = await run(engine.classifier, inverse);
    if (layoutResidual(resizedOf(inverseOuts), layout) < layoutResidual(resizedOf(outs), layout) - rules.polarity.FLIP_MARGIN) {
      [pixels, outs, flipped] = [inverse, inverseOuts, true];
      warnings.push("the MONOCHROME1 image looked like a negative (lung fields brighter than the mediastinum, and its inverse has a far more typical chest layout; a Photometric Interpretation tag error?) and was analysed with positive polarity");
    }
    tick("polarity");
  }
  const residual = layoutResidual(resizedOf(outs), layout);
  const seg = cfg.segmenter;
  const segOut = await run(engine.segmenter, pixels);
  const segSize = segOut.probs.dims[2];
  const sym = symmetry(segOut.model_input.data, segSize);
  const anatomy = measureAnatomy(segOut.probs.data, segSize, seg.structures, seg.threshold, rules.anatomy, sym);
  tick("segment");
  const doubts = [];
  const maxResidual = cfg.classifier.max_layout_residual;
  if (residual > maxResidual * rules.frontal.HARD_LAYOUT_FACTOR) throw new NotAChestXray(`the image does not have the layout of a frontal chest radiograph (layout residual ${residual.toFixed(2)} > ${maxResidual.toFixed(2)})`);
  if (residual > maxResidual && !anatomy.typicalPair) throw new NotAChestXray(`the image does not have the layout of a frontal chest radiograph (layout residual ${residual.toFixed(2)} > ${maxResidual.toFixed(2)}) and ${anatomy.lungs.length ? "no typical pair of lungs was found" : "no lung field was found"}`);
  doubts.push(...anatomy.problems);
  if (residual > maxResidual) doubts.push(`its coarse layout is unusual for a frontal chest film (layout residual ${residual.toFixed(2)} > ${maxResidual.toFixed(2)}: lines and tubes, rotation, collimation or cropping?)`);
  if (stats.lowContrast) {
    if (!anatomy.typicalPair) throw new NotAChestXray("the image is blank or has almost no contrast");
    doubts.push(`its contrast is very low (grey-level spread ${stats.std.toFixed(3)}); window it before reading`);
  }
  const model = cfg.classifier;
  const logit = outs.logit.data[0];
  const score = outs.score.data[0];
  const [, fh, fw] = outs.cam.dims;
  const cam = { data: Float64Array.from(outs.cam.data), h: fh, w: fw };
  const embedding = Float64Array.from(outs.embedding.data);
  // pipeline._check_view_and_similarity: the similarity to the training films first (refuse a film without a
  // typical pair of lungs that resembles none of them, doubt one with), then the view probe
  const similar = similarToTraining(engine.embeddings, cfg.similarity, embedding);
  const minSim = cfg.similarity.min_knn_similarity;
  if (minSim !== null && similar.knn < minSim) {
    const why = `similarity ${similar.knn.toFixed(2)} < ${minSim.toFixed(2)}`;
    if (!anatomy.typicalPair) throw new NotAChestXray(`the image does not resemble the frontal chest radiographs the model was trained on (${why})`);
    doubts.push(`it resembles the training films less than usual (${why})`);
  }
  const probe = model.view_probe;
  let viewScore = null;
  if (probe.coef) {
    const norm = Math.hypot(...embedding) || 1;
    const inputs = [...Array.from(embedding, (v) => v / norm), ...anatomy.viewFeatures];
    if (inputs.length === probe.coef.length) {
      let z = probe.intercept;
      for (let i = 0; i < inputs.length; i++) z += ((inputs[i] - probe.mean[i]) / probe.scale[i]) * probe.coef[i];
      viewScore = 1 / (1 + Math.exp(-z));
      if (viewScore > probe.reject_with_lungs_above || (viewScore > probe.reject_above && !anatomy.typicalPair)) {
        const cut = anatomy.typicalPair ? probe.reject_with_lungs_above : probe.reject_above;
        throw new NotAChestXray(`this looks like a lateral view (view probe ${viewScore.toFixed(2)} > ${cut.toFixed(2)}: no right and left lung side by side); cxrtriage only triages frontal (PA/AP) chest radiographs`);
      }
      if (viewScore > probe.review_above) doubts.push(`it may be a lateral view (view probe ${viewScore.toFixed(2)} > ${probe.review_above.toFixed(2)})`);
    }
  }
  const decision = decide(score, model, doubts);
  warnings.push(...decision.warnings);
  // evidence (pipeline._find_evidence), boxes in the analysed field's pixels, then shifted to the decoded image's
  const ev = rules.evidence;
  const region = anatomy.lungs.length ? anatomy.region : null;
  let boxes = findEvidenceBoxes(cam, pixels.w, pixels.h, {
    maxBoxes: ev.MAX_CROPS, minStrength: ev.MIN_STRENGTH, upsampleBy: ev.UPSAMPLE, allowed: region, allowedSize: segSize,
    zoneOf: (px, py) => zone(anatomy, px, py),
  });
  if (region) boxes = boxes.filter((b) => lungShare(anatomy, [b.x / pixels.w, b.y / pixels.h, (b.x + b.w) / pixels.w, (b.y + b.h) / pixels.h]) >= ev.MIN_BOX_LUNG_SHARE);
  if (decision.label === "Non-Urgent") {
    const standsOut = peakProminence(cam, region, segSize) >= ev.NON_URGENT_MIN_PROMINENCE;
    boxes = boxes.filter((b) => standsOut && b.strength >= ev.NON_URGENT_MIN_STRENGTH).slice(0, 1);
  }
  // in the decoded image's pixels, as the engine maps them (pipeline.Case.to_decoded)
  const shown = boxes.map((b) => ({ x: fx0 + b.x * k, y: fy0 + b.y * k, w: b.w * k, h: b.h * k, strength: round4(b.strength), region: b.region, source: b.source }));
  const sizes = [[decoded.w, decoded.h], [meta.width, meta.height]];
  const crops = toOriginal(shown, ...sizes);
  tick("evidence");
  timings.total = Math.round((performance.now() - start) * 100) / 100;
  const image = { ...meta, warnings: undefined, knn_similarity: round4(similar.knn), layout_residual: round4(residual) };
  if (fx0 || fy0 || fx1 !== decoded.w || fy1 !== decoded.h) image.exposed_field = fieldInOriginal([fx0, fy0, fx1, fy1], ...sizes);
  if (viewScore !== null) image.view_probe = round4(viewScore);
  const anatomyInfo = {
    lungs_found: anatomy.lungs.map(([side]) => side),
    right_lung_area_fraction: round4(anatomy.right ? anatomy.right.area : 0),
    left_lung_area_fraction: round4(anatomy.left ? anatomy.left.area : 0),
    cardiothoracic_ratio: anatomy.ctr !== null ? Math.round(anatomy.ctr * 1000) / 1000 : null,
    segmenter: `${seg.name} ${seg.version}`,
  };
  return {
    result: {
      label: decision.label, score: decision.score, threshold: decision.threshold, review_band: decision.review_band,
      needs_review: decision.needs_review, review_reasons: decision.reasons, crops, warnings,
      provenance: similar.nearest.map((n) => caseProvenance(n, cfg.similarity)),
      model: { name: model.name, version: model.version, sha256: model.sha256, backend: "bundled-onnxruntime-web" },
      model_logit: Math.round(logit * 1e6) / 1e6, timings_ms: timings, image, anatomy: anatomyInfo,
      polarity_flipped: flipped,
    },
    // the boxes in the decoded image's pixels, where they are drawn; the similar films for the page's line
    display: { decoded, flipped, boxes: shown, similar: similar.nearest },
  };
}
