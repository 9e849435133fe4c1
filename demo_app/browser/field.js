// The exposed field (the film without a canvas or wide black borders), mirroring
// src/cxrtriage/imaging/exposed_field.py (find_field); its numbers come from config.json's rules.field.

function blockMean(img, step) {
  const hh = Math.floor(img.h / step);
  const ww = Math.floor(img.w / step);
  const out = new Float32Array(hh * ww);
  for (let by = 0; by < hh; by++) {
    for (let bx = 0; bx < ww; bx++) {
      let s = 0;
      for (let y = by * step; y < (by + 1) * step; y++) for (let x = bx * step; x < (bx + 1) * step; x++) s += img.data[y * img.w + x];
      out[by * ww + bx] = s / (step * step);
    }
  }
  return { data: out, h: hh, w: ww };
}

function localRange(s) {
  const { h, w, data } = s;
  const out = new Float32Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let hi = -Infinity;
      let lo = Infinity;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = Math.min(h - 1, Math.max(0, y + dy));
        for (let dx = -1; dx <= 1; dx++) {
          const v = data[yy * w + Math.min(w - 1, Math.max(0, x + dx))];
          if (v > hi) hi = v;
          if (v < lo) lo = v;
        }
      }
      out[y * w + x] = hi - lo;
    }
  }
  return out;
}

function bestRun(content, weight) {
  let best = [0, content.length];
  let bestMass = -1;
  let start = null;
  for (let i = 0; i <= content.length; i++) {
    const flag = i < content.length && content[i];
    if (flag && start === null) start = i;
    else if (!flag && start !== null) {
      let mass = 0;
      for (let j = start; j < i; j++) mass += weight[j];
      if (mass > bestMass) { best = [start, i]; bestMass = mass; }
      start = null;
    }
  }
  return best;
}

/** Share of non-blank pixels of each row (axis 1) or column (axis 0) of blank[r0:r1, c0:c1]. */
function contentShare(blank, w, r0, r1, c0, c1, axis) {
  const n = axis === 1 ? r1 - r0 : c1 - c0;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let b = 0;
    const m = axis === 1 ? c1 - c0 : r1 - r0;
    for (let j = 0; j < m; j++) b += axis === 1 ? blank[(r0 + i) * w + c0 + j] : blank[(r0 + j) * w + c0 + i];
    out[i] = 1 - b / m;
  }
  return out;
}

function edge(img, level, start, stop, lo, hi, axis, minShare) {
  const dir = stop >= start ? 1 : -1;
  for (let i = start; dir === 1 ? i < stop : i > stop; i += dir) {
    let above = 0;
    for (let j = lo; j < hi; j++) if ((axis === 1 ? img.data[i * img.w + j] : img.data[j * img.w + i]) > level) above++;
    if (hi > lo && above / (hi - lo) > minShare) return i;
  }
  return null;
}

function refine(img, level, box, reach, minShare) {
  let [x0, y0, x1, y1] = box;
  const { h, w } = img;
  const top = edge(img, level, Math.max(0, y0 - reach), Math.min(h, y0 + reach), x0, x1, 1, minShare);
  const bottom = edge(img, level, Math.min(h, y1 + reach) - 1, Math.max(0, y1 - reach) - 1, x0, x1, 1, minShare);
  y0 = top ?? y0;
  y1 = bottom !== null ? bottom + 1 : y1;
  const left = edge(img, level, Math.max(0, x0 - reach), Math.min(w, x0 + reach), y0, y1, 0, minShare);
  const right = edge(img, level, Math.min(w, x1 + reach) - 1, Math.max(0, x1 - reach) - 1, y0, y1, 0, minShare);
  return [left ?? x0, y0, right !== null ? right + 1 : x1, y1];
}

/** [x0, y0, x1, y1] of the exposed field; the whole image when no clearly smaller film is found. */
export function findField(img, rules) {
  const { h, w } = img;
  const whole = [0, 0, w, h];
  const step = Math.max(1, Math.ceil(Math.max(h, w) / rules.WORK_SIDE));
  const small = blockMean(img, step);
  if (small.data.length === 0) return whole;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of small.data) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (hi - lo < 2 * rules.DARK_TOL) return whole;
  const range = localRange(small);
  const blank = Uint8Array.from(small.data, (v, i) => (v <= lo + rules.DARK_TOL && range[i] <= rules.FLAT_TOL ? 1 : 0));
  let [r0, r1, c0, c1] = [0, small.h, 0, small.w];
  for (let pass = 0; pass < 2; pass++) {
    let share = contentShare(blank, small.w, r0, r1, c0, c1, 1);
    let [a, b] = bestRun(Array.from(share, (v) => v > rules.MIN_CONTENT_SHARE), share);
    [r0, r1] = [r0 + a, r0 + b];
    share = contentShare(blank, small.w, r0, r1, c0, c1, 0);
    [a, b] = bestRun(Array.from(share, (v) => v > rules.MIN_CONTENT_SHARE), share);
    [c0, c1] = [c0 + a, c0 + b];
  }
  let y0 = r0 * step;
  let y1 = r1 === small.h ? h : Math.min(h, r1 * step);
  let x0 = c0 * step;
  let x1 = c1 === small.w ? w : Math.min(w, c1 * step);
  if (step > 1 || x0 !== 0 || y0 !== 0 || x1 !== w || y1 !== h) {
    [x0, y0, x1, y1] = refine(img, lo + rules.DARK_TOL, [x0, y0, x1, y1], 2 * step, rules.MIN_CONTENT_SHARE);
  }
  const area = (x1 - x0) * (y1 - y0);
  if (area >= rules.MAX_AREA_SHARE * h * w || area < rules.MIN_AREA_SHARE * h * w || Math.min(x1 - x0, y1 - y0) < rules.MIN_SIDE) {
    return whole;
  }
  return [x0, y0, x1, y1];
}
