// Evidence boxes from the class activation map, mirroring src/cxrtriage/explain/evidence.py (find_evidence_boxes,
// peak_prominence) and the pipeline's evidence stage. The CAM is {data: Float64Array, h, w}: the classifier graph's
// `cam` output (head weight . feature map).
import { labelComponents, nearestResize } from "./anatomy.js";

function upsample(cam, f) {
  const { h, w, data } = cam;
  const axis = (n) => Array.from({ length: n * f }, (_, i) => {
    const src = Math.min(Math.max((i + 0.5) / f - 0.5, 0), n - 1);
    const lo = Math.floor(src);
    return [lo, Math.min(lo + 1, n - 1), src - lo];
  });
  const rows = axis(h);
  const cols = axis(w);
  const out = new Float64Array(h * f * w * f);
  rows.forEach(([r0, r1, fr], i) => cols.forEach(([c0, c1, fc], j) => {
    const top = data[r0 * w + c0] * (1 - fc) + data[r0 * w + c1] * fc;
    const bottom = data[r1 * w + c0] * (1 - fc) + data[r1 * w + c1] * fc;
    out[i * w * f + j] = top * (1 - fr) + bottom * fr;
  }));
  return out;
}

function geometricZone(cx, cy, width, height) {
  // evidence.anatomical_zone is used only when no lung was found; a plain fallback here
  const fx = cx / width;
  const fy = cy / height;
  if (Math.abs(fx - 0.5) < 0.1) return "central (mediastinal) zone";
  const side = fx < 0.5 ? "right" : "left";
  return `${side} ${fy < 1 / 3 ? "upper" : fy < 2 / 3 ? "middle" : "lower"} zone`;
}

/** Boxes (pixels of an image of width x height) around the strongest regions of positive CAM. */
export function findEvidenceBoxes(cam, width, height, { maxBoxes, minStrength, upsampleBy, allowed, allowedSize, zoneOf }) {
  const relThreshold = 0.5;
  let camMax = -Infinity;
  for (const v of cam.data) camMax = Math.max(camMax, v);
  if (maxBoxes === 0 || camMax <= 0) return [];
  const up = upsample(cam, upsampleBy);
  const gh = cam.h * upsampleBy;
  const gw = cam.w * upsampleBy;
  const cellPos = cam.data.map((v) => Math.max(v, 0));
  if (allowed) {
    const a = nearestResize(allowed, allowedSize, allowedSize, gh, gw);
    for (let i = 0; i < up.length; i++) if (!a[i]) up[i] = 0;
    const c = nearestResize(allowed, allowedSize, allowedSize, cam.h, cam.w);
    for (let i = 0; i < cellPos.length; i++) cellPos[i] *= c[i];
  }
  let peak = -Infinity;
  for (const v of up) peak = Math.max(peak, v);
  if (peak <= 0) return [];
  const mask = Uint8Array.from(up, (v) => (v >= relThreshold * peak && v > 0 ? 1 : 0));
  const { labels, n } = labelComponents(mask, gh, gw, true);
  if (!n) return [];
  const sx = width / gw;
  const sy = height / gh;
  const total = cellPos.reduce((p, v) => p + v, 0);
  if (total <= 0) return [];
  // each CAM cell belongs to the component covering most of its working pixels (ties: the lower label)
  const masses = new Float64Array(n + 1);
  for (let i = 0; i < cam.h; i++) for (let j = 0; j < cam.w; j++) {
    const counts = new Map();
    for (let y = 0; y < upsampleBy; y++) for (let x = 0; x < upsampleBy; x++) {
      const l = labels[(i * upsampleBy + y) * gw + j * upsampleBy + x];
      if (l) counts.set(l, (counts.get(l) || 0) + 1);
    }
    let best = 0;
    let bestCount = 0;
    for (const [l, c] of counts) if (c > bestCount || (c === bestCount && l < best)) { best = l; bestCount = c; }
    masses[best] += cellPos[i * cam.w + j];
  }
  const order = Array.from({ length: n }, (_, k) => k + 1).sort((p, q) => masses[q] - masses[p] || p - q);
  const boxes = [];
  for (const k of order) {
    const strength = masses[k] / total;
    if (strength < minStrength || masses[k] <= 0) break;
    let r0 = Infinity, r1 = -1, c0 = Infinity, c1 = -1, bestV = -Infinity, bestR = 0, bestC = 0;
    for (let i = 0; i < labels.length; i++) {
      if (labels[i] !== k) continue;
      const r = Math.floor(i / gw);
      const c = i % gw;
      r0 = Math.min(r0, r); r1 = Math.max(r1, r); c0 = Math.min(c0, c); c1 = Math.max(c1, c);
      if (up[i] > bestV) { bestV = up[i]; bestR = r; bestC = c; }
    }
    const x0 = Math.min(Math.floor(c0 * sx), width - 1);
    const y0 = Math.min(Math.floor(r0 * sy), height - 1);
    const x1 = Math.min(Math.ceil((c1 + 1) * sx), width);
    const y1 = Math.min(Math.ceil((r1 + 1) * sy), height);
    const bw = Math.max(1, x1 - x0);
    const bh = Math.max(1, y1 - y0);
    const region = (zoneOf && zoneOf((x0 + bw / 2) / width, (y0 + bh / 2) / height)) || geometricZone(x0 + bw / 2, y0 + bh / 2, width, height);
    boxes.push({
      x: x0, y: y0, w: bw, h: bh, strength: Math.min(1, strength), region, source: "activation_map",
      peak_xy: [Math.min(Math.trunc((bestC + 0.5) * sx), width - 1), Math.min(Math.trunc((bestR + 0.5) * sy), height - 1)],
    });
    if (boxes.length >= maxBoxes) break;
  }
  return boxes;
}

/** (max - mean) / std of the CAM cells inside the allowed region (all cells when none). */
export function peakProminence(cam, allowed, allowedSize) {
  let cells = Array.from(cam.data);
  if (allowed) {
    const inside = nearestResize(allowed, allowedSize, allowedSize, cam.h, cam.w);
    const kept = cells.filter((_, i) => inside[i]);
    if (kept.length) cells = kept;
  }
  const mean = cells.reduce((p, v) => p + v, 0) / cells.length;
  const std = Math.sqrt(cells.reduce((p, v) => p + (v - mean) * (v - mean), 0) / cells.length);
  return std > 0 ? (Math.max(...cells) - mean) / std : 0;
}
