// The .kpal viewer: open or drop files, draw them on a canvas, show what `kpal info`
// shows (header, size accounting, palette). Decoding is js/kpal.js; this file is only
// the page around it.
import * as kpal from './kpal.js';

const ZOOMS = [1 / 256, 1 / 128, 1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64];
// Pillow warns of a possible decompression bomb above this many pixels; so does the page.
const LARGE_PIXELS = 89478485;

const $ = (id) => document.getElementById(id);
const els = {
  input: $('file-input'),
  drop: $('drop-overlay'),
  stage: $('stage'),
  canvas: $('canvas'),
  empty: $('empty'),
  files: $('files'),
  name: $('file-name'),
  info: $('info'),
  palette: $('palette'),
  paletteTitle: $('palette-title'),
  error: $('error'),
  zoomOut: $('zoom-out'),
  zoomIn: $('zoom-in'),
  zoomFit: $('zoom-fit'),
  zoomLabel: $('zoom-label'),
  status: $('status'),
};

/** Opened files: {name, size, image?, error?, millis}. */
const opened = [];
let current = -1;
let zoom = 1;
let fitted = true;

const plural = (n, word) => `${n.toLocaleString('en-US')} ${word}${n === 1 ? '' : 's'}`;
const bytes = (n) => plural(n, 'byte');
// #rrggbb, or #rrggbbaa for an RGBA palette (c = 4 bytes per entry)
const hexColour = (p, i, c = 3) => '#' + Array.from(p.subarray(c * i, c * i + c))
  .map((v) => v.toString(16).padStart(2, '0')).join('');

/**
 * Decode one file's bytes and add it to the list.
 * @param {string} name
 * @param {Uint8Array} data
 * @param {string} [problem] what the Python reader found wrong with a file that this
 *   reader cannot tell by itself: one in a coding it does not decode, or one longer
 *   than its header implies of which `data` is only the start (a page written by
 *   `kpal view` carries it)
 * @param {number} [size] the file's length, when `data` is only its start
 */
export function openBytes(name, data, problem, size = data.length) {
  const entry = { name, size };
  const start = performance.now();
  try {
    entry.image = kpal.decode(data);
  } catch (e) {
    entry.error = e instanceof kpal.KpalError ? e.message : `${e.name}: ${e.message}`;
    try {
      entry.header = kpal.readHeader(data); // a readable header is still shown
    } catch {
      entry.header = null;
    }
    // A valid file in a coding this reader does not decode (3, context): not an error.
    entry.unsupported = Boolean(entry.header && entry.header.coding === 3
      && entry.error.includes('is not supported by this reader'));
    if ((entry.unsupported || size !== data.length) && problem) {
      // damaged after all, or longer than these bytes: the error kpal decode gives
      entry.unsupported = false;
      entry.error = problem;
    }
    if (entry.header && data.length >= entry.header.metadataOffset) {
      // and the palette (a file this reader does not decode, e.g. coding 3, still has one)
      entry.palette = data.slice(entry.header.headerSize, entry.header.metadataOffset);
    }
    if (entry.unsupported) {
      try { // its metadata blocks too (an ICC profile), when they are whole and valid
        entry.metadata = kpal.readMetadata(data, entry.header);
      } catch {
        entry.metadata = null;
      }
    }
  }
  entry.millis = performance.now() - start;
  opened.push(entry);
  select(opened.length - 1);
  return entry;
}

async function openFiles(fileList) {
  for (const file of fileList) {
    openBytes(file.name, new Uint8Array(await file.arrayBuffer()));
  }
}

function select(index) {
  current = index;
  fitted = true;
  render();
}

function render() {
  renderList();
  const entry = opened[current];
  els.empty.hidden = Boolean(entry);
  els.canvas.hidden = !entry?.image;
  els.name.textContent = entry ? entry.name : '';
  els.error.hidden = !entry?.error;
  els.error.classList.toggle('note', Boolean(entry?.unsupported));
  els.error.textContent = !entry?.error ? ''
    : `kpal: ${entry.unsupported ? 'warning' : 'error'}: ${entry.name}: ${entry.error}`;
  renderInfo(entry);
  renderPalette(entry);
  if (entry?.image) {
    const { image } = entry;
    const step = canvasStep(image.width, image.height);
    const shown = shownPixels(image, step);
    els.canvas.width = shown.width;
    els.canvas.height = shown.height;
    els.canvas.getContext('2d').putImageData(shown, 0, 0);
    if (fitted) zoom = fitZoom(image);
    applyZoom();
    const n = image.width * image.height;
    els.status.textContent = `decoded in ${entry.millis.toFixed(1)} ms` + (step === 1 ? ''
      : `; drawn at 1/${step} scale (a browser draws a canvas of at most `
        + `${MAX_SIDE.toLocaleString('en-US')} pixels a side, ${MAX_AREA.toLocaleString('en-US')} in all)`)
      + (n > LARGE_PIXELS ? `; a very large image (${plural(n, 'pixel')}, `
        + `${(4 * n / 2 ** 20).toFixed(0)} MiB drawn): Pillow would warn of a decompression bomb` : '')
      + (image.iccProfile ? '; its ICC profile is not applied: colours shown as sRGB' : '');
  } else {
    els.status.textContent = !entry ? '' : entry.unsupported
      ? 'not decoded: its header and palette are shown' : 'not decoded';
  }
  document.body.classList.toggle('has-image', Boolean(entry?.image));
}

// The largest canvas every current browser draws (Chromium's limits; larger ones stay blank).
const MAX_SIDE = 32767;
const MAX_AREA = 16384 * 16384;

/** Every step-th pixel of each row and column is drawn: 1 unless the image is too large. */
function canvasStep(width, height) {
  let step = Math.max(1, Math.ceil(width / MAX_SIDE), Math.ceil(height / MAX_SIDE));
  while (Math.ceil(width / step) * Math.ceil(height / step) > MAX_AREA) step++;
  return step;
}

/** The pixels to draw: the whole image, or every step-th pixel of it (nearest neighbour). */
function shownPixels(image, step) {
  if (step === 1) return image.toImageData();
  const width = Math.ceil(image.width / step);
  const height = Math.ceil(image.height / step);
  const out = new Uint8ClampedArray(4 * width * height);
  const { palette, channels: c, indices } = image;
  for (let y = 0, o = 0; y < height; y++) {
    const row = y * step * image.width;
    for (let x = 0; x < width; x++, o += 4) {
      const v = c * indices[row + x * step];
      out[o] = palette[v];
      out[o + 1] = palette[v + 1];
      out[o + 2] = palette[v + 2];
      out[o + 3] = c === 4 ? palette[v + 3] : 255;
    }
  }
  return new ImageData(out, width, height);
}

function renderList() {
  els.files.replaceChildren(...opened.map((entry, i) => {
    const item = document.createElement('button');
    item.type = 'button';
    item.className = 'file' + (i === current ? ' current' : '')
      + (entry.error && !entry.unsupported ? ' bad' : '');
    item.textContent = entry.name;
    item.title = entry.error ?? `${entry.image.width}×${entry.image.height}, k=${entry.image.k}`;
    item.addEventListener('click', () => select(i));
    return item;
  }));
}

function row(label, value) {
  const tr = document.createElement('tr');
  const th = document.createElement('th');
  const td = document.createElement('td');
  th.textContent = label;
  td.textContent = value;
  tr.append(th, td);
  return tr;
}

function renderInfo(entry) {
  const rows = [];
  const h = entry?.image ?? entry?.header;
  if (h) {
    const n = h.width * h.height;
    rows.push(row('version', String(h.version)));
    rows.push(row('size', `${h.width}×${h.height} = ${plural(n, 'pixel')}`));
    rows.push(row('k', `${plural(h.k, 'colour')}, ${plural(h.bitsPerIndex, 'bit')} per index`));
    rows.push(row('coding', h.codingName));
    if (h.version === 2) rows.push(row('alpha', h.alpha ? 'RGBA palette (32-bit entries)' : 'none'));
  }
  const metadata = entry?.image?.metadata ?? entry?.metadata;
  if (metadata?.length) {
    rows.push(row('metadata', metadata.map((b) => `${b.type} ${bytes(b.data.length)}${
      b.type === 'iccp' ? ' (ICC profile; not applied here: colours shown as sRGB)' : ''}`)
      .join(', ')));
  }
  if (entry?.image) {
    entry.report ??= entry.image.sizeReport(); // counted once per file, not per render
    const s = entry.report;
    rows.push(row('fixed width', `${s.formula} = ${bytes(s.theoreticalBytes)}`));
    rows.push(row('log2 k', bytes(Math.ceil(s.log2BoundBits / 8))));
    rows.push(row('order-0', `${bytes(Math.ceil(s.order0EntropyBits / 8))} (each index coded alone)`));
    rows.push(row('on disk', `${bytes(s.onDiskBytes)} = ${layoutSum(entry.image)}`));
    rows.push(row('ratio', ratioText(s.ratio, 8 * entry.image.channels,
      entry.image.metadataLength > 0)));
    rows.push(row('checksum', 'ok'));
  } else if (entry?.unsupported) {
    // What needs only the header: the textbook sizes, beside the real one.
    const n = h.width * h.height;
    const paletteBits = 8 * h.channels * h.k;
    const bits = paletteBits + n * h.bitsPerIndex;
    rows.push(row('fixed width', `${h.k}×${8 * h.channels} + ${n}×${h.bitsPerIndex} = ${bits} bits = ${
      bytes(Math.ceil(bits / 8))}`));
    rows.push(row('log2 k', bytes(Math.ceil((paletteBits + n * Math.log2(h.k)) / 8))));
    rows.push(row('on disk', `${bytes(entry.size)} (payload ${bytes(h.payloadLength)})`));
    rows.push(row('ratio', ratioText(h.channels * n / entry.size, 8 * h.channels,
      h.metadataLength > 0)));
  } else if (entry) {
    rows.push(row('on disk', bytes(entry.size)));
  }
  els.info.replaceChildren(...rows);
}

/** The file's parts, in file order, summed by hand, as `kpal info` prints them. */
function layoutSum(image) {
  const n = (v) => v.toLocaleString('en-US');
  const palette = image.channels * image.k;
  const header = image.fileSize - palette - image.metadataLength - image.payloadLength - 4;
  const parts = [['header', header], ['palette', palette], ['metadata', image.metadataLength],
    ['payload', image.payloadLength], ['checksum', 4]];
  return parts.filter(([, v]) => v).map(([name, v]) => `${name} ${n(v)}`).join(' + ');
}

/**
 * `v` (>= 0) to `digits` decimals, thousands separated, as Python's `:,.2f` gives it:
 * toFixed rounds the exact binary value (2.675 is 2.67499...: 2.67), as Python does,
 * except on an exact tie (5.625), which Python rounds to the even digit (5.62).
 * (toLocaleString rounds the shortest decimal instead: 2.68.)
 */
function pyFixed(v, digits) {
  let text = v.toFixed(digits);
  // v * 10 ** digits may round to a tie that v is not (2.675 * 100 is 267.5): the
  // exact expansion (100 digits hold a ratio's) says whether it is one
  const exact = v.toFixed(100).split('.')[1];
  if (/^50*$/.test(exact.slice(digits))) {
    const kept = Number(`${v.toFixed(100).split('.')[0]}${exact.slice(0, digits)}`);
    text = ((kept % 2 === 0 ? kept : kept + 1) / 10 ** digits).toFixed(digits);
  }
  const [whole, fraction] = text.split('.');
  return Number(whole).toLocaleString('en-US') + (fraction ? `.${fraction}` : '');
}

/** Raw size against the file, the right way round, as `kpal info` words it. */
function ratioText(ratio, bits, metadata = false) {
  // where 2 decimals would read 1.00×, a percentage, as `kpal info` says it
  const times = (f) => (f < 1.005 ? `${pyFixed((f - 1) * 100, 1)} %` : `${pyFixed(f, 2)}×`);
  if (ratio >= 1) return `${times(ratio)} smaller than raw ${bits}-bit`;
  return `${times(1 / ratio)} larger than raw ${bits}-bit (the palette${metadata ? ', header and metadata' : ' and header'} outweigh what the indices save)`;
}

function renderPalette(entry) {
  // a decoded image, else the palette of a file whose pixels this reader cannot decode
  const image = entry?.image ?? (entry?.palette && { ...entry.header, palette: entry.palette });
  els.paletteTitle.hidden = !image;
  if (!image) {
    els.palette.replaceChildren();
    return;
  }
  let counts = entry.counts ?? null;
  if (!counts && image.indices) {
    // An indexed loop: iterating a typed array with for-of is several times slower.
    counts = new Float64Array(256);
    const { indices } = image;
    for (let i = 0; i < indices.length; i++) counts[indices[i]]++;
    entry.counts = counts;
  }
  const n = image.width * image.height;
  els.palette.replaceChildren(...Array.from({ length: image.k }, (_, i) => {
    const swatch = document.createElement('span');
    const colour = hexColour(image.palette, i, image.channels);
    swatch.className = 'swatch';
    // with alpha, the colour over a checkerboard, as the image itself is shown
    swatch.style.background = image.alpha ? `linear-gradient(${colour}, ${colour}), `
      + 'repeating-conic-gradient(#ccc 0 25%, #fff 0 50%) 0 0 / 8px 8px' : colour;
    swatch.title = `${i}: ${colour}` + (counts
      ? `, ${(100 * counts[i] / n).toFixed(2)} % of the pixels` : '');
    return swatch;
  }));
}

/** Shortest side a fitted image is shown at, in CSS pixels, or its own at 1× when shorter
 * (the stage scrolls along the other). */
const MIN_SHOWN_SIDE = 16;

/** The zoom that fits the stage: a whole step above 1×, the exact fraction below it;
 * never so small that the short side of a very wide or tall image vanishes. */
function fitZoom(image) {
  const floor = Math.min(1, MIN_SHOWN_SIDE / Math.min(image.width, image.height));
  const room = Math.max(floor, Math.min((els.stage.clientWidth - 32) / image.width,
    (els.stage.clientHeight - 32) / image.height));
  if (room < 1) return Math.max(ZOOMS[0], room);
  let best = 1;
  for (const z of ZOOMS) if (z <= room) best = z;
  return best;
}

function applyZoom() {
  const entry = opened[current];
  if (!entry?.image) return;
  els.canvas.style.width = `${entry.image.width * zoom}px`;
  els.canvas.style.height = `${entry.image.height * zoom}px`;
  els.zoomLabel.textContent = zoom >= 1 ? `${zoom}×`
    : ZOOMS.includes(zoom) ? `1/${1 / zoom}×` : `${(100 * zoom).toPrecision(2)} %`;
}

function stepZoom(direction) {
  let next = ZOOMS.indexOf(zoom) + direction;
  if (!ZOOMS.includes(zoom)) { // a fitted fraction: the next listed step that way
    next = direction > 0 ? ZOOMS.findIndex((z) => z > zoom) : ZOOMS.findLastIndex((z) => z < zoom);
  }
  zoom = ZOOMS[Math.max(0, Math.min(ZOOMS.length - 1, next))];
  fitted = false;
  applyZoom();
}

// ------------------------------------------------------------------ wiring
els.input.addEventListener('change', async () => {
  await openFiles(els.input.files);
  els.input.value = '';
});
els.zoomIn.addEventListener('click', () => stepZoom(1));
els.zoomOut.addEventListener('click', () => stepZoom(-1));
els.zoomFit.addEventListener('click', () => {
  fitted = true;
  const entry = opened[current];
  if (entry?.image) zoom = fitZoom(entry.image);
  applyZoom();
});
document.addEventListener('keydown', (e) => {
  if (e.target instanceof HTMLInputElement) return;
  if (e.key === '+' || e.key === '=') stepZoom(1);
  else if (e.key === '-') stepZoom(-1);
  else if (e.key === '0') els.zoomFit.click();
});
els.stage.addEventListener('wheel', (e) => {
  if (!e.ctrlKey) return;
  e.preventDefault();
  stepZoom(e.deltaY < 0 ? 1 : -1);
}, { passive: false });

let dragDepth = 0;
document.addEventListener('dragenter', (e) => {
  e.preventDefault();
  dragDepth++;
  els.drop.hidden = false;
});
document.addEventListener('dragleave', () => {
  if (--dragDepth <= 0) {
    dragDepth = 0;
    els.drop.hidden = true;
  }
});
document.addEventListener('dragover', (e) => e.preventDefault());
document.addEventListener('drop', async (e) => {
  e.preventDefault();
  dragDepth = 0;
  els.drop.hidden = true;
  await openFiles(e.dataTransfer.files);
});

// A page written by `kpal view` carries its file inline, base64.
const embedded = document.getElementById('kpal-embedded');
if (embedded) {
  const text = atob(embedded.textContent.trim());
  const data = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) data[i] = text.charCodeAt(i);
  const size = embedded.dataset.bytes ? Number(embedded.dataset.bytes) : data.length;
  openBytes(embedded.dataset.name || 'image.kpal', data, embedded.dataset.problem, size);
}
window.kpalViewer = { openBytes, kpal };
document.documentElement.dataset.ready = 'true';
render();
