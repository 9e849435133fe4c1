// Decode a dropped file into grey [0, 1] pixels in display polarity plus the header facts the gate reads, mirroring
// src/cxrtriage/imaging/ (raster.py, arrays.py, dicom.py). PNG and JPEG are decoded by the browser; DICOM by
// dicom-parser (a classic script: window.dicomParser), JPEG-baseline frames again by the browser.
const f32 = Math.fround;
const IMPLICIT_LE = "1.2.840.10008.1.2";
const JPEG_BASELINE = new Set(["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"]);
const UNCOMPRESSED = new Set([IMPLICIT_LE, "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"]);

function isDicom(bytes) {
  if (bytes.length > 132 && String.fromCharCode(...bytes.subarray(128, 132)) === "DICM") return true;
  // ACR-NEMA style (no preamble): starts with a group 0008 (or 0002) tag, little endian
  return bytes.length > 8 && bytes[1] === 0 && (bytes[0] === 8 || bytes[0] === 2) && bytes[3] === 0;
}

async function rgbaOf(blob) {
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const { data } = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  bitmap.close();
  return { rgba: data, w: canvas.width, h: canvas.height };
}

/** arrays.colourfulness on RGBA: mean channel spread over the value range; null for a grey image. */
function toGrey({ rgba, w, h }) {
  const out = new Float32Array(w * h);
  let grey = true;
  let lo = 255;
  let hi = 0;
  let spread = 0;
  for (let i = 0; i < w * h; i++) {
    const r = rgba[4 * i];
    const g = rgba[4 * i + 1];
    const b = rgba[4 * i + 2];
    if (r !== g || g !== b) grey = false;
    lo = Math.min(lo, r, g, b);
    hi = Math.max(hi, r, g, b);
    spread += Math.max(r, g, b) - Math.min(r, g, b);
  }
  for (let i = 0; i < w * h; i++) {
    const r = rgba[4 * i];
    out[i] = grey ? f32(r / 255) : f32((f32(0.299) * r + f32(0.587) * rgba[4 * i + 1] + f32(0.114) * rgba[4 * i + 2]) / 255);
  }
  const colourfulness = grey ? null : hi > lo ? spread / (w * h) / (hi - lo) : 0;
  return { img: { data: out, h, w }, colourfulness };
}

/** arrays.reduction_factor: the whole factor a DICOM above `work` pixels is box-averaged by before its LUTs. */
function reductionFactor(w, h, work) {
  return w * h <= work ? 1 : Math.ceil(Math.sqrt((w * h) / work));
}

/** dicom._reduce_array: k x k block means of the stored values, the partial edge dropped. The sums of whole numbers
 * are exact (below 2^24 for k < 16 and 16-bit values), so the float32 mean is numpy's whatever its order. */
function reduceValues(values, rows, cols, k) {
  const h = Math.max(1, Math.floor(rows / k)), w = Math.max(1, Math.floor(cols / k));
  const out = new Float64Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let i = 0; i < k; i++) {
      const row = (y * k + i) * cols;
      for (let x = 0; x < w; x++) {
        let sum = out[y * w + x];
        for (let j = 0; j < k; j++) sum += values[row + x * k + j];
        out[y * w + x] = sum;
      }
    }
  }
  for (let n = 0; n < out.length; n++) out[n] = f32(out[n] / (k * k));
  return { values: out, h, w };
}

/** numpy's rint: halves to even. */
function rint(v) {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The first VOI LUT of the VOI LUT Sequence as {first, entries}, or null (dicom._voi_lut_unit reads the same). */
function voiLut(ds) {
  const seq = ds.elements.x00283010;
  const item = seq && seq.items && seq.items[0] && seq.items[0].dataSet;
  if (!item || !item.elements.x00283002 || !item.elements.x00283006) return null;
  const count = item.uint16("x00283002", 0) || 65536;
  const signedFirst = item.elements.x00283002.vr === "SS";
  const first = signedFirst ? item.int16("x00283002", 1) : item.uint16("x00283002", 1);
  const el = item.elements.x00283006;
  if (el.length !== 2 * count) throw new Error("LUT data and descriptor disagree");
  const view = new DataView(item.byteArray.buffer, item.byteArray.byteOffset + el.dataOffset, el.length);
  const entries = new Float64Array(count);
  for (let i = 0; i < count; i++) entries[i] = view.getUint16(2 * i, true);
  return { first, entries };
}

function str(ds, tag) {
  const v = ds.string(tag);
  return v ? v.trim() : null;
}

function num(ds, tag) {
  const v = ds.floatString(tag);
  return Number.isFinite(v) ? v : null;
}

async function decodeDicom(bytes, maxWorkingPixels) {
  const dp = globalThis.dicomParser;
  let ds;
  try {
    ds = dp.parseDicom(bytes, { TransferSyntaxUID: IMPLICIT_LE });
  } catch (e) {
    throw new Error("the DICOM file cannot be parsed");
  }
  const syntax = str(ds, "x00020010") || IMPLICIT_LE;
  const pixel = ds.elements.x7fe00010;
  if (!pixel) throw new Error("the DICOM file has no pixel data");
  const rows = ds.uint16("x00280010");
  const cols = ds.uint16("x00280011");
  const bits = ds.uint16("x00280100");
  const stored = ds.uint16("x00280101") || bits;
  const signed = ds.uint16("x00280103") === 1;
  const spp = ds.uint16("x00280002") || 1;
  const photometric = (str(ds, "x00280004") || "MONOCHROME2").toUpperCase();
  const meta = {
    source_format: "dicom", width: cols, height: rows, modality: str(ds, "x00080060"),
    view_position: str(ds, "x00185101"), body_part: str(ds, "x00180015"), photometric_interpretation: photometric,
    bits_stored: stored, colourfulness: null, warnings: [],
  };
  if (spp !== 1) throw new Error("colour DICOM images are not supported in the browser; use the server");
  let values;
  if (JPEG_BASELINE.has(syntax)) {
    const frame = dp.readEncapsulatedImageFrame(ds, pixel, 0, dp.createJPEGBasicOffsetTable(ds, pixel));
    const { img } = toGrey(await rgbaOf(new Blob([frame], { type: "image/jpeg" })));
    values = Float64Array.from(img.data, (v) => Math.round(v * 255));
  } else if (UNCOMPRESSED.has(syntax)) {
    const n = rows * cols;
    const buf = bytes.buffer;
    const off = bytes.byteOffset + pixel.dataOffset;
    const big = syntax === "1.2.840.10008.1.2.2";
    const view = new DataView(buf, off, pixel.length);
    values = new Float64Array(n);
    const mask = stored < 32 ? 2 ** stored - 1 : 0xffffffff;
    for (let i = 0; i < n; i++) {
      let v = bits === 8 ? view.getUint8(i) : view.getUint16(2 * i, !big);
      v &= mask;
      if (signed && v >= 2 ** (stored - 1)) v -= 2 ** stored;
      values[i] = v;
    }
  } else {
    throw new Error(`this DICOM transfer syntax (${syntax}) is not decoded in the browser; use the server`);
  }
  let [h, w] = [rows, cols];
  const k = reductionFactor(cols, rows, maxWorkingPixels);
  if (k > 1) {  // before the LUTs, as the engine does
    ({ values, h, w } = reduceValues(values, rows, cols, k));
    meta.reduction = Math.round((cols / w) * 1e4) / 1e4;
    meta.warnings.push(`large image (${cols} x ${rows}): analysed at 1/${k} resolution to bound memory (CXRTRIAGE_MAX_WORKING_PIXELS); boxes are in original pixels`);
  }
  const slope = num(ds, "x00281053");
  const intercept = num(ds, "x00281052");
  if (slope !== null || intercept !== null) for (let i = 0; i < values.length; i++) values[i] = values[i] * (slope ?? 1) + (intercept ?? 0);
  const centre = num(ds, "x00281050");
  const width = num(ds, "x00281051");
  const out = new Float32Array(values.length);
  let lut = null;
  let lutBroken = false;
  if (ds.elements.x00283010) {
    try {
      lut = voiLut(ds);
    } catch (e) {
      lutBroken = true;
      meta.warnings.push("the DICOM VOI LUT is invalid; min-max scaling used instead");
    }
  }
  if (lut) {
    // dicom._voi_lut_unit: each value (rounded) clamped into the LUT's range, looked up, then normalised by the
    // min..max of the LUT's own entries
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of lut.entries) { if (v < lo) lo = v; if (v > hi) hi = v; }
    const last = lut.entries.length - 1;
    for (let i = 0; i < values.length; i++) {
      const at = Math.min(last, Math.max(0, rint(values[i]) - lut.first));
      out[i] = hi > lo ? Math.min(1, Math.max(0, (lut.entries[at] - lo) / (hi - lo))) : 0;
    }
  } else if (centre !== null && width !== null && width >= 1 && !lutBroken) {
    // pydicom LINEAR windowing, normalised to its output range
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      out[i] = width === 1 ? (v > centre - 0.5 ? 1 : 0) : Math.min(1, Math.max(0, (v - (centre - 0.5)) / (width - 1) + 0.5));
    }
  } else {
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
    for (let i = 0; i < values.length; i++) out[i] = hi > lo ? (values[i] - lo) / (hi - lo) : 0;
  }
  if (photometric === "MONOCHROME1") for (let i = 0; i < out.length; i++) out[i] = f32(1 - out[i]);
  return { img: { data: out, h, w }, meta };
}

/** A File -> {img, meta}; throws Error with a sentence a user can read. */
export async function decodeFile(file, maxWorkingPixels = Infinity) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  if (isDicom(bytes)) return decodeDicom(bytes, maxWorkingPixels);
  const png = bytes[0] === 0x89 && bytes[1] === 0x50;
  const jpeg = bytes[0] === 0xff && bytes[1] === 0xd8;
  if (!png && !jpeg) throw new Error("the file is not a PNG, JPEG or DICOM file");
  let decoded;
  try {
    decoded = await rgbaOf(new Blob([bytes]));
  } catch (e) {
    throw new Error(`the ${png ? "PNG" : "JPEG"} file is corrupt or truncated and cannot be read`);
  }
  const { img, colourfulness } = toGrey(decoded);
  const meta = { source_format: png ? "png" : "jpeg", width: img.w, height: img.h, colourfulness, warnings: [] };
  return { img, meta };
}
