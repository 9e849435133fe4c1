// Lung and heart masks -> the measurements the pipeline uses, mirroring src/cxrtriage/anatomy/ (components.py,
// measure.py, segmenter.py's symmetry). Masks are Uint8Array of S x S at the network's resolution.

/** Components of a mask (4- or 8-connected) as label array + count, numbered in raster order of first pixel. */
export function labelComponents(mask, h, w, diagonal) {
  const labels = new Int32Array(h * w);
  let n = 0;
  const stack = [];
  for (let start = 0; start < h * w; start++) {
    if (!mask[start] || labels[start]) continue;
    n++;
    labels[start] = n;
    stack.push(start);
    while (stack.length) {
      const p = stack.pop();
      const y = Math.floor(p / w);
      const x = p % w;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          if ((!dx && !dy) || (!diagonal && dx && dy)) continue;
          const yy = y + dy;
          const xx = x + dx;
          if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
          const q = yy * w + xx;
          if (mask[q] && !labels[q]) { labels[q] = n; stack.push(q); }
        }
      }
    }
  }
  return { labels, n };
}

/** The largest 4-connected piece (ties: the one whose first pixel comes first). */
export function largestComponent(mask, h, w) {
  const { labels, n } = labelComponents(mask, h, w, false);
  if (!n) return new Uint8Array(h * w);
  const sizes = new Int32Array(n + 1);
  for (const l of labels) sizes[l]++;
  let best = 1;
  for (let k = 2; k <= n; k++) if (sizes[k] > sizes[best]) best = k;
  return Uint8Array.from(labels, (l) => (l === best ? 1 : 0));
}

export function grow(mask, h, w, radius) {
  const out = Uint8Array.from(mask);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (!mask[y * w + x]) continue;
      for (let yy = Math.max(0, y - radius); yy <= Math.min(h - 1, y + radius); yy++) {
        for (let xx = Math.max(0, x - radius); xx <= Math.min(w - 1, x + radius); xx++) out[yy * w + xx] = 1;
      }
    }
  }
  return out;
}

export function nearestResize(mask, h, w, oh, ow) {
  const out = new Uint8Array(oh * ow);
  for (let i = 0; i < oh; i++) {
    const r = Math.min(Math.floor(((i + 0.5) * h) / oh), h - 1);
    for (let j = 0; j < ow; j++) out[i * ow + j] = mask[r * w + Math.min(Math.floor(((j + 0.5) * w) / ow), w - 1)];
  }
  return out;
}

function fieldOf(mask, s) {
  let n = 0;
  let sx = 0;
  let sy = 0;
  let x0 = s;
  let y0 = s;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < s; y++) {
    for (let x = 0; x < s; x++) {
      if (!mask[y * s + x]) continue;
      n++; sx += x; sy += y;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
  }
  if (!n) return null;
  return { box: [x0 / s, y0 / s, (x1 + 1) / s, (y1 + 1) / s], centroid: [(sx / n + 0.5) / s, (sy / n + 0.5) / s], area: n / (s * s) };
}

function mirrorIou(right, left, s) {
  let rmax = -1;
  let lmin = s;
  for (let i = 0; i < s * s; i++) {
    if (right[i]) rmax = Math.max(rmax, i % s);
    if (left[i]) lmin = Math.min(lmin, i % s);
  }
  if (rmax < 0 || lmin >= s) return 0;
  const mid = (rmax + lmin) / 2;
  const m = new Uint8Array(s * s);
  for (let i = 0; i < s * s; i++) {
    if (!right[i]) continue;
    const c = roundHalfEven(2 * mid - (i % s));
    if (c >= 0 && c < s) m[Math.floor(i / s) * s + c] = 1;
  }
  let inter = 0;
  let union = 0;
  for (let i = 0; i < s * s; i++) { inter += m[i] & left[i]; union += m[i] | left[i]; }
  return inter / Math.max(union, 1);
}

function roundHalfEven(v) {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** segmenter._symmetry: mirror correlation and centre brightness of the (windowed, normalised) model input. */
export function symmetry(x, size) {
  const s = Math.floor(size / 64) * 64;
  const b = s / 64;
  const t = new Float64Array(64 * 64);
  for (let i = 0; i < 64; i++) for (let j = 0; j < 64; j++) {
    let acc = 0;
    for (let y = 0; y < b; y++) for (let xx = 0; xx < b; xx++) acc += x[(i * b + y) * size + j * b + xx];
    t[i * 64 + j] = acc / (b * b);
  }
  let best = -1;
  for (let shift = -8; shift <= 8; shift++) {
    const a = [];
    for (let i = 0; i < 64; i++) for (let j = 16 + shift; j < 48 + shift; j++) a.push(t[i * 64 + j]);
    const mean = a.reduce((p, v) => p + v, 0) / a.length;
    let ab = 0;
    let aa = 0;
    for (let i = 0; i < 64; i++) for (let j = 0; j < 32; j++) {
      const u = a[i * 32 + j] - mean;
      const v = a[i * 32 + 31 - j] - mean;
      ab += u * v;
      aa += u * u;
    }
    if (aa > 0) best = Math.max(best, ab / aa);
  }
  const col = new Float64Array(64);
  for (let j = 0; j < 64; j++) { let acc = 0; for (let i = 8; i < 56; i++) acc += t[i * 64 + j]; col[j] = acc / 48; }
  const avg = (a, b2) => { let acc = 0; for (let j = a; j < b2; j++) acc += col[j]; return acc / (b2 - a); };
  const tm = t.reduce((p, v) => p + v, 0) / t.length;
  const spread = Math.sqrt(t.reduce((p, v) => p + (v - tm) * (v - tm), 0) / t.length) || 1;
  return [best, (avg(24, 40) - 0.5 * (avg(8, 20) + avg(44, 56))) / spread];
}

/** measure.measure + Anatomy: fields, lungs, confidence, typical pair, evidence region, zones, view features. */
export function measureAnatomy(probs, s, structures, threshold, rules, sym) {
  const idx = (name) => structures.indexOf(name);
  const prob = (k) => probs.subarray(k * s * s, (k + 1) * s * s);
  const lowRes = (k) => largestComponent(Uint8Array.from(prob(k), (p) => (p >= threshold ? 1 : 0)), s, s);
  const right = lowRes(idx("right_lung"));
  const left = lowRes(idx("left_lung"));
  const heartMask = lowRes(idx("heart"));
  const lungsGrid = right.map((v, i) => v | left[i]);
  const pr = prob(idx("right_lung"));
  const pl = prob(idx("left_lung"));
  let seen = 0;
  let conf = 0;
  for (let i = 0; i < s * s; i++) {
    const p = Math.max(pr[i], pl[i]);
    if (p > 0.1) { seen++; conf += Math.abs(p - 0.5); }
  }
  const a = {
    s,
    right: fieldOf(right, s),
    left: fieldOf(left, s),
    heart: fieldOf(heartMask, s),
    lungsGrid,
    confidence: seen ? (conf / seen) * 2 : 0,
    mirrorIou: mirrorIou(right, left, s),
    symmetry: sym[0],
    centreBrightness: sym[1],
  };
  a.lungs = [["right", a.right], ["left", a.left]].filter(([, f]) => f && f.area >= rules.MIN_LUNG_FRACTION);
  a.problems = frontalProblems(a);
  const areas = a.lungs.map(([, f]) => f.area).sort((p, q) => p - q);
  a.typicalPair = a.lungs.length === 2 && a.heart !== null && a.confidence >= rules.MIN_CONFIDENCE &&
    a.heart.area >= rules.MIN_HEART_FRACTION && areas[0] >= rules.MIN_AREA_RATIO * areas[1] && !a.problems.length;
  const lungMean = lungsGrid.reduce((p, v) => p + v, 0) / (s * s);
  const ratio = a.lungs.length === 2 && areas[1] > 0 ? areas[0] / areas[1] : 0;
  a.viewFeatures = [a.confidence, a.heart ? a.heart.area : 0, a.mirrorIou, ratio, lungMean, a.symmetry, a.centreBrightness];
  a.region = grow(lungsGrid, s, s, Math.max(1, roundHalfEven(rules.EVIDENCE_MARGIN * s)));
  if (a.heart && a.lungs.length === 2) {
    const thorax = a.left.box[2] - a.right.box[0];
    a.ctr = thorax > 0 ? (a.heart.box[2] - a.heart.box[0]) / thorax : null;
  } else a.ctr = null;
  return a;
}

function frontalProblems(a) {
  const lungs = Object.fromEntries(a.lungs);
  if (!a.lungs.length) return ["no lung field was found"];
  const out = [];
  for (const side of ["right", "left"]) if (!lungs[side]) out.push(`no ${side} lung field was found`);
  if (a.lungs.length === 2) {
    const r = lungs.right;
    const l = lungs.left;
    if (r.centroid[0] >= l.centroid[0]) out.push("the lung fields are not on the expected sides (patient's right on the image left)");
    const overlap = Math.min(r.box[2], l.box[2]) - Math.max(r.box[0], l.box[0]);
    if (overlap > 0.5 * Math.min(r.box[2] - r.box[0], l.box[2] - l.box[0])) out.push("the two lung fields overlap side to side, as on a lateral view");
  }
  return out;
}

/** Share of a box (fractions x0, y0, x1, y1) on the lung fields. */
export function lungShare(a, box) {
  const s = a.s;
  const x0 = Math.floor(box[0] * s);
  const y0 = Math.floor(box[1] * s);
  const x1 = Math.max(x0 + 1, Math.ceil(box[2] * s));
  const y1 = Math.max(y0 + 1, Math.ceil(box[3] * s));
  let n = 0;
  let on = 0;
  for (let y = Math.max(0, y0); y < Math.min(s, y1); y++) for (let x = Math.max(0, x0); x < Math.min(s, x1); x++) { n++; on += a.lungsGrid[y * s + x]; }
  return n ? on / n : 0;
}

function distance(f, fx, fy) {
  const dx = Math.max(f.box[0] - fx, 0, fx - f.box[2]);
  const dy = Math.max(f.box[1] - fy, 0, fy - f.box[3]);
  return Math.hypot(dx, dy);
}

/** Anatomy.zone: the lung zone of a point (fractions of the image), or null when no lung was found. */
export function zone(a, fx, fy) {
  if (!a.lungs.length) return null;
  const s = a.s;
  const i = Math.min(s - 1, Math.max(0, Math.floor(fy * s)));
  const j = Math.min(s - 1, Math.max(0, Math.floor(fx * s)));
  let [side, lung] = a.lungs[0];
  for (const [sd, f] of a.lungs) if (distance(f, fx, fy) < distance(lung, fx, fy)) [side, lung] = [sd, f];
  if (!a.lungsGrid[i * s + j] && a.lungs.length === 2 && a.heart) {
    const [hx0, , hx1] = a.heart.box;
    if (hx0 <= fx && fx <= hx1 && Math.min(...a.lungs.map(([, f]) => distance(f, fx, fy))) > 0.02) return "central (mediastinal) zone";
  }
  const rel = (fy - lung.box[1]) / Math.max(lung.box[3] - lung.box[1], 1e-6);
  return `${side} ${rel < 1 / 3 ? "upper" : rel < 2 / 3 ? "middle" : "lower"} zone`;
}
