// The statistics the gate, the polarity check and the layout gate compute on small copies of the image, mirroring
// imaging/gate.py, polarity.py and layout.py. Images are {data: Float32Array, h, w}, grey in [0, 1], display polarity.
// The model inputs are not made here: the ONNX graphs make them. The 128 px and 32 px copies are Pillow's float ("F")
// bilinear resample: a triangle filter whose support grows with the shrink factor (antialias), applied horizontally
// then vertically, accumulated in double and stored as float32.

const f32 = Math.fround;

function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filterscale; // bilinear filter support 1.0
  const inv = 1 / filterscale;
  const taps = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const k = new Float64Array(Math.max(xmax, 0));
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * inv);
      k[x] = t < 1 ? 1 - t : 0;
      total += k[x];
    }
    if (total !== 0) for (let x = 0; x < xmax; x++) k[x] /= total;
    taps.push({ xmin, k });
  }
  return taps;
}

/** Pillow "F" bilinear resize of a grey image to (oh, ow), aspect ratio not kept. */
export function resize(img, oh, ow) {
  let { data, h, w } = img;
  if (ow !== w) {
    const taps = coefficients(w, ow);
    const out = new Float32Array(h * ow);
    for (let y = 0; y < h; y++) {
      const row = y * w;
      for (let xx = 0; xx < ow; xx++) {
        const { xmin, k } = taps[xx];
        let s = 0;
        for (let x = 0; x < k.length; x++) s += data[row + xmin + x] * k[x];
        out[y * ow + xx] = s;
      }
    }
    data = out;
    w = ow;
  }
  if (oh !== h) {
    const taps = coefficients(h, oh);
    const out = new Float32Array(oh * w);
    for (let yy = 0; yy < oh; yy++) {
      const { xmin, k } = taps[yy];
      for (let x = 0; x < w; x++) {
        let s = 0;
        for (let y = 0; y < k.length; y++) s += data[(xmin + y) * w + x] * k[y];
        out[yy * w + x] = s;
      }
    }
    data = out;
    h = oh;
  }
  return { data: data === img.data ? new Float32Array(data) : data, h, w };
}

/** numpy's linear-interpolated percentile of an array. */
export function percentile(data, p) {
  const sorted = Float64Array.from(data).sort();
  const pos = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
}

/** The analysis image (src/cxrtriage/imaging/analysis_size.py): a film whose longer side is k * side px or more
 * (k >= 2) is box-averaged over k x k blocks, the partial edge dropped; each block summed in doubles in the engine's
 * order (rows, then columns of the block, from zero), divided by k * k and rounded to float32: the engine's bits. */
export function analysisImage(img, side) {
  const k = Math.max(1, Math.floor(Math.max(img.h, img.w) / side));
  if (k === 1) return { img, k };
  const h = Math.floor(img.h / k), w = Math.floor(img.w / k);
  const total = new Float64Array(h * w);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      for (let y = 0; y < h; y++) {
        const row = (y * k + i) * img.w + j;
        for (let x = 0; x < w; x++) total[y * w + x] += img.data[row + x * k];
      }
    }
  }
  const out = new Float32Array(h * w);
  for (let n = 0; n < out.length; n++) out[n] = total[n] / (k * k);
  return { img: { data: out, h, w }, k };
}

export function clipUnit(img) {
  let inside = true;
  for (const v of img.data) if (v < 0 || v > 1) { inside = false; break; }
  if (inside) return img;
  return { ...img, data: img.data.map((v) => Math.min(1, Math.max(0, v))) };
}

export function crop(img, x0, y0, x1, y1) {
  if (x0 === 0 && y0 === 0 && x1 === img.w && y1 === img.h) return img;
  const w = x1 - x0;
  const h = y1 - y0;
  const out = new Float32Array(w * h);
  for (let y = 0; y < h; y++) out.set(img.data.subarray((y + y0) * img.w + x0, (y + y0) * img.w + x1), y * w);
  return { data: out, h, w };
}

export function invert(img) {
  return { ...img, data: img.data.map((v) => f32(1 - v)) };
}

function meanStd(data) {
  let s = 0;
  for (const v of data) s += v;
  const m = s / data.length;
  let q = 0;
  for (const v of data) q += (v - m) * (v - m);
  return [m, Math.sqrt(q / data.length)];
}

/** gate.image_statistics: contrast (std) and roughness (mean |Laplacian| / std) on a 128 px copy. */
export function imageStatistics(img) {
  const s = resize(img, 128, 128).data;
  const [, std] = meanStd(s);
  let lap = 0;
  for (let y = 1; y < 127; y++) {
    for (let x = 1; x < 127; x++) {
      const i = y * 128 + x;
      lap += Math.abs(4 * s[i] - s[i - 128] - s[i + 128] - s[i - 1] - s[i + 1]);
    }
  }
  return { std, roughness: lap / (126 * 126) / Math.max(std, 1e-6) };
}

/** layout.ChestLayoutModel.residual: share of a 32 px thumbnail's variance the chest components leave unexplained;
 * `resized` is the classifier graph's `resized` output (the crop at the model's input size, before quantizing). */
export function layoutResidual(resized, layout) {
  const t = resize(resized, layout.thumb, layout.thumb).data;
  const [m, sd] = meanStd(t);
  const x = Float64Array.from(t, (v) => (v - m) / Math.max(sd, 1e-6));
  const z = x.map((v, i) => v - layout.mean[i]);
  const r = Float64Array.from(z);
  for (const comp of layout.components) {
    let dot = 0;
    for (let i = 0; i < z.length; i++) dot += comp[i] * z[i];
    for (let i = 0; i < z.length; i++) r[i] -= comp[i] * dot;
  }
  let rr = 0;
  let xx = 0;
  for (let i = 0; i < x.length; i++) {
    rr += r[i] * r[i];
    xx += x[i] * x[i];
  }
  return rr / Math.max(xx, 1e-9);
}

/** polarity.polarity_contrast: central column minus lateral lung fields on a 128 px copy. */
export function polarityContrast(img) {
  const s = resize(img, 128, 128).data;
  let c = 0;
  let nc = 0;
  let l = 0;
  let nl = 0;
  for (let y = 26; y < 102; y++) for (let x = 54; x < 74; x++) { c += s[y * 128 + x]; nc++; }
  for (let y = 32; y < 90; y++) {
    for (let x = 19; x < 45; x++) { l += s[y * 128 + x]; nl++; }
    for (let x = 83; x < 109; x++) { l += s[y * 128 + x]; nl++; }
  }
  return c / nc - l / nl;
}
