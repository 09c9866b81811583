// kpal.js: a decoder for .kpal palette images (spec/kpal.md, format versions 1 and 2).
//
// One ES module, no dependencies, no build step: it runs as is in browsers, Node >= 18
// and Deno. It is a second implementation of the specification, checked against the
// same golden and corrupt files as the Python reference reader, and it accepts and
// rejects exactly the files that reader does, checking in the same order:
//
//   header fields -> payload length -> file length -> metadata blocks -> pixel limit
//   -> checksum -> payload
//
// Every integer here stays below 2**53, so plain numbers are exact (spec §7 asks for at
// least 48 bits): rANS states are below 2**32 and use 32-bit unsigned arithmetic, radix
// groups of up to 64 bits are split into two 32-bit halves, the entropy model's literal
// counts are kept divided by 16 in Int32Array (exact up to the 2**30-pixel limit), and
// its products (a count times 4096, below 2**47) are computed in doubles.
//
// Untrusted input: the header is validated before anything is allocated, the pixel
// count is capped (option maxPixels), and the entropy decoder's time and memory are
// proportional to the pixel count whatever the payload says (spec §7, §8).

// ------------------------------------------------------------------ §2 header
/** Signature, like PNG's: high bit, "KPAL", CR-LF, DOS EOF, LF. */
export const MAGIC = Uint8Array.of(0x89, 0x4b, 0x50, 0x41, 0x4c, 0x0d, 0x0a, 0x1a, 0x0a);
/** The base format version: RGB palette, no metadata. */
export const VERSION = 1;
/** §2.1: the version with RGBA palettes and metadata blocks. */
export const VERSION_2 = 2;
/** magic 9, version u8, coding u8, bits_per_index u8, k u16, width u32, height u32,
 *  payload_length u32: all big-endian. */
export const HEADER_SIZE = 26;
/** §2.1: version 2 adds flags u8 and metadata_length u32 after the 26 bytes. */
export const HEADER_SIZE_V2 = 31;
/** §4: CRC-32 of everything before it, u32 big-endian. */
export const CHECKSUM_SIZE = 4;
/** Bytes that are neither palette nor payload (version 1). */
export const OVERHEAD = HEADER_SIZE + CHECKSUM_SIZE;
/** flags bit 0: palette entries are R, G, B, A. */
export const FLAG_ALPHA = 0x01;
/** §2.1: the metadata is held in memory whole; ICC profiles in use are a few MiB. */
export const MAX_METADATA = 2 ** 24;
/** §3.2: metadata block types this module understands. */
export const KNOWN_BLOCKS = Object.freeze(['iccp']);
export const MAX_K = 256;
/** No real image is wider or taller. */
export const MAX_SIDE = 2 ** 24 - 1;
/** Decoding needs 4 bytes per pixel (index + RGB): 4 GiB at this limit. */
export const MAX_PIXELS = 2 ** 30;
/** Payload codings of this version, by header id. */
export const CODINGS = Object.freeze({ 0: 'fixed', 1: 'radix', 2: 'entropy', 3: 'context' });
/** Codings this reader knows but does not decode: spec §12 makes coding 3 optional for
 *  readers, and a reader without it must say so by name after the checksum. */
const UNSUPPORTED_CODINGS = Object.freeze({
  3: 'coding 3 (context) is not supported by this reader: it needs a sequential '
    + 'context-mixing decoder (spec §12); convert the file with `kpal decode` or re-encode '
    + 'it with another coding',
});
/** Pillow's decompression-bomb error threshold (twice Image.MAX_IMAGE_PIXELS), the
 *  default pixel cap of decode(): the Python reader refuses the same files. */
export const DEFAULT_MAX_PIXELS = 2 * 89478485;

// ------------------------------------------------------------------ §9 errors
/** Any invalid data (mirrors kpal.KpalError). */
export class KpalError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}
/** Bad magic, field value, length or payload (mirrors kpal.errors.FormatError). */
export class FormatError extends KpalError {}
/** The stored CRC-32 does not match the contents (mirrors kpal.errors.ChecksumError). */
export class ChecksumError extends FormatError {}
/** A header field outside the limits of spec §2 (mirrors kpal.errors.LimitError). */
export class LimitError extends FormatError {}
/** The file ends before its header says it does (mirrors kpal.errors.TruncatedError). */
export class TruncatedError extends FormatError {}
/** More pixels than the caller's cap (options.maxPixels); the Python reader raises
 *  Pillow's DecompressionBombError for the same files. */
export class DecompressionBombError extends KpalError {}

// ------------------------------------------------------------------ §4 checksum
// Slicing by 8: table k holds the CRC of a byte followed by k zero bytes, so eight
// bytes are folded in with eight independent look-ups (about 5x the byte-wise loop).
const CRC_TABLES = (() => {
  const table = new Int32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let i = 0; i < 8; i++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  for (let n = 0; n < 256; n++) {
    for (let k = 1; k < 8; k++) {
      const c = table[(k - 1) * 256 + n];
      table[k * 256 + n] = table[c & 0xff] ^ (c >>> 8);
    }
  }
  return table;
})();

/**
 * CRC-32 (ISO-HDLC, as zlib and PNG) of some bytes.
 * @param {Uint8Array} bytes
 * @returns {number} unsigned 32-bit value
 */
export function crc32(bytes) {
  const t = CRC_TABLES;
  const n = bytes.length;
  let c = -1;
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const one = c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    c = t[1792 + (one & 0xff)] ^ t[1536 + ((one >>> 8) & 0xff)] ^ t[1280 + ((one >>> 16) & 0xff)]
      ^ t[1024 + (one >>> 24)] ^ t[768 + bytes[i + 4]] ^ t[512 + bytes[i + 5]]
      ^ t[256 + bytes[i + 6]] ^ t[bytes[i + 7]];
  }
  for (; i < n; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

// ------------------------------------------------------------------ helpers
function asBytes(source) {
  if (source instanceof ArrayBuffer) return new Uint8Array(source);
  // A plain Uint8Array view also of a subclass (Node's Buffer, whose slice() shares memory).
  if (ArrayBuffer.isView(source)) {
    return new Uint8Array(source.buffer, source.byteOffset, source.byteLength);
  }
  throw new TypeError(`expected the bytes of a .kpal file (Uint8Array, ArrayBuffer or view), got ${
    source === null ? 'null' : typeof source}`);
}

/** ceil(log2 k) for k >= 2, 0 for k = 1: the bits_per_index field. */
export function bitsFor(k) {
  return k <= 1 ? 0 : 32 - Math.clz32(k - 1);
}

function pyBytes(bytes) {
  // A Python bytes literal (repr), as the reference reader's message shows it.
  const quote = bytes.includes(0x27) && !bytes.includes(0x22) ? '"' : "'";
  let s = '';
  for (const v of bytes) {
    if (v === 0x5c) s += '\\\\';
    else if (v === quote.charCodeAt(0)) s += '\\' + quote;
    else if (v === 0x09) s += '\\t';
    else if (v === 0x0a) s += '\\n';
    else if (v === 0x0d) s += '\\r';
    else if (v >= 0x20 && v < 0x7f) s += String.fromCharCode(v);
    else s += '\\x' + v.toString(16).padStart(2, '0');
  }
  return `b${quote}${s}${quote}`;
}

// ------------------------------------------------------------------ §6 radix shape
const radixShapes = new Map();

/**
 * Radix group shape for palette size k (spec §6): [m, w], indices and bits per group.
 * @param {number} k 1..256
 * @returns {[number, number]}
 */
export function groupShape(k) {
  let shape = radixShapes.get(k);
  if (shape) return shape;
  if (k === 1) {
    shape = [1, 0];
  } else {
    const big = BigInt(k);
    const limit = 1n << 64n;
    let bestM = 1;
    let bestW = bitsFor(k);
    let power = big * big;
    for (let m = 2; power <= limit; m++, power *= big) {
      const w = (power - 1n).toString(2).length;
      if (w * bestM < bestW * m) [bestM, bestW] = [m, w];
    }
    shape = [bestM, bestW];
  }
  radixShapes.set(k, shape);
  return shape;
}

function tailBits(k, r) {
  // bitlen(k**r - 1) for the short group of r < m indices
  return r === 0 ? 0 : (BigInt(k) ** BigInt(r) - 1n).toString(2).length;
}

function radixPayloadBits(k, n) {
  const [m, w] = groupShape(k);
  return Math.floor(n / m) * w + tailBits(k, n % m);
}

/**
 * The payload length a coding implies for an image, or null when it depends on the data.
 * @param {number} coding 0, 1 or 2
 * @param {number} k
 * @param {number} width
 * @param {number} height
 * @returns {number | null}
 */
export function payloadSize(coding, k, width, height) {
  const n = width * height;
  if (coding === 0) return Math.ceil((n * bitsFor(k)) / 8);
  if (coding === 1) return Math.ceil(radixPayloadBits(k, n) / 8);
  return null;
}

// ------------------------------------------------------------------ §2, §8 header checks
/**
 * Parse and validate a file's header, in the order every reader uses (spec §8):
 * magic and every field, then the payload length the coding implies, then, when
 * fileSize is given, the whole file's length. Allocates nothing for pixels.
 *
 * @param {Uint8Array | ArrayBuffer | ArrayBufferView} source at least the first 26 bytes
 * @param {{fileSize?: number}} [options]
 * @returns {{version: number, coding: number, codingName: string, bitsPerIndex: number,
 *   k: number, width: number, height: number, payloadLength: number, fileSize: number}}
 * @throws {FormatError | LimitError}
 */
export function readHeader(source, { fileSize } = {}) {
  return readHeaderChecked(asBytes(source), fileSize);
}

function readHeaderChecked(data, fileSize) {
  let magicOk = data.length >= MAGIC.length;
  for (let i = 0; magicOk && i < MAGIC.length; i++) magicOk = data[i] === MAGIC[i];
  if (data.length === 0) throw new FormatError('not a .kpal file: the file is empty');
  if (!magicOk) {
    throw new FormatError(`not a .kpal file (magic is ${pyBytes(data.subarray(0, MAGIC.length))
    }, expected ${pyBytes(MAGIC)})`);
  }
  if (data.length < HEADER_SIZE) {
    throw new TruncatedError(`truncated header: ${data.length} of ${HEADER_SIZE} bytes`);
  }
  const view = new DataView(data.buffer, data.byteOffset, HEADER_SIZE);
  const version = view.getUint8(9);
  const coding = view.getUint8(10);
  const bitsPerIndex = view.getUint8(11);
  const k = view.getUint16(12);
  const width = view.getUint32(14);
  const height = view.getUint32(18);
  const payloadLength = view.getUint32(22);
  let flags = 0;
  let metadataLength = 0;
  if (version === VERSION_2) {
    if (data.length < HEADER_SIZE_V2) {
      throw new TruncatedError(`truncated header: ${data.length} of ${HEADER_SIZE_V2} bytes (version 2)`);
    }
    const extension = new DataView(data.buffer, data.byteOffset + HEADER_SIZE, 5);
    flags = extension.getUint8(0);
    metadataLength = extension.getUint32(1);
  }
  if (version !== VERSION && version !== VERSION_2) {
    throw new FormatError(`unsupported version ${version} (this reader knows versions ${VERSION
    } and ${VERSION_2})`);
  }
  if (!(coding in CODINGS)) {
    const known = Object.entries(CODINGS).map(([id, name]) => `${id} (${name})`).join(', ');
    throw new FormatError(`unknown payload coding ${coding} (known: ${known})`);
  }
  if (k < 1 || k > MAX_K) throw new LimitError(`k=${k} is outside 1..${MAX_K}`);
  if (bitsPerIndex !== bitsFor(k)) {
    throw new FormatError(`bits_per_index=${bitsPerIndex} does not match k=${k} (expected ${
      bitsFor(k)})`);
  }
  for (const [name, value] of [['width', width], ['height', height]]) {
    if (value < 1 || value > MAX_SIDE) {
      throw new LimitError(`${name}=${value} is outside 1..${MAX_SIDE}`);
    }
  }
  // Division form, as the spec says, so the check itself cannot overflow.
  if (height > Math.floor(MAX_PIXELS / width)) {
    throw new LimitError(`${width}x${height} is more than ${MAX_PIXELS} pixels`);
  }
  if (flags & ~FLAG_ALPHA) {
    throw new FormatError(`flags=0x${hex2(flags)} has reserved bits set (0x${hex2(flags & ~FLAG_ALPHA)
    }); this reader knows bit 0 (alpha)`);
  }
  if (metadataLength > MAX_METADATA) {
    throw new LimitError(`metadata_length=${metadataLength} is over the limit of ${MAX_METADATA}`);
  }
  const expected = payloadSize(coding, k, width, height);
  if (expected !== null && payloadLength !== expected) {
    throw new FormatError(`payload_length=${payloadLength} but a ${width}x${height} image at k=${
      k} with coding ${coding} needs ${expected}`);
  }
  const headerSize = version === VERSION ? HEADER_SIZE : HEADER_SIZE_V2;
  const channels = flags & FLAG_ALPHA ? 4 : 3;
  const metadataOffset = headerSize + channels * k;
  const payloadOffset = metadataOffset + metadataLength;
  const size = payloadOffset + payloadLength + CHECKSUM_SIZE;
  if (fileSize !== undefined && fileSize !== size) {
    const what = fileSize < size ? 'is truncated' : 'has trailing data';
    const Kind = fileSize < size ? TruncatedError : FormatError;
    throw new Kind(`file ${what}: ${fileSize} bytes, the header implies ${size}`);
  }
  return {
    version, coding, codingName: CODINGS[coding], bitsPerIndex, k, width, height,
    payloadLength, fileSize: size, flags, alpha: channels === 4, channels, metadataLength,
    headerSize, metadataOffset, payloadOffset,
  };
}

const hex2 = (v) => v.toString(16).padStart(2, '0');

// ------------------------------------------------------------------ §3.2 metadata blocks
const isLetter = (v) => (v >= 0x41 && v <= 0x5a) || (v >= 0x61 && v <= 0x7a);

function checkIcc(data, where) {
  if (data.length < 128) {
    throw new FormatError(`iccp block at byte ${where} holds ${data.length} bytes, less than an ICC profile header (128)`);
  }
  const size = new DataView(data.buffer, data.byteOffset, 4).getUint32(0);
  if (size !== data.length) {
    throw new FormatError(`iccp block at byte ${where}: the profile says ${size} bytes, the block holds ${data.length}`);
  }
  const signature = data.subarray(36, 40);
  if (String.fromCharCode(...signature) !== 'acsp') {
    throw new FormatError(`iccp block at byte ${where}: no ICC signature b'acsp' at offset 36 (found ${
      pyBytes(signature)})`);
  }
  const space = data.subarray(16, 20);
  if (String.fromCharCode(...space) !== 'RGB ') {
    throw new FormatError(`iccp block at byte ${where}: the profile's colour space is ${pyBytes(space)
    }, a palette needs b'RGB '`);
  }
}

/**
 * Split and check the metadata blocks of a file whose header and length are valid
 * (spec §3.2): every block, in file order, the unknown skippable ones included.
 * @param {Uint8Array} data the whole file
 * @param {{metadataOffset: number, metadataLength: number}} header
 * @returns {{type: string, data: Uint8Array}[]}
 * @throws {FormatError}
 */
export function readMetadata(data, header) {
  const start = header.metadataOffset;
  const end = start + header.metadataLength;
  const blocks = [];
  let pos = start;
  while (pos < end) {
    const left = end - pos;
    if (left < 8) {
      throw new FormatError(`metadata is truncated at byte ${pos}: ${left} bytes left, a block needs 8 for its type and length`);
    }
    const raw = data.subarray(pos, pos + 4);
    if (!raw.every(isLetter)) {
      throw new FormatError(`metadata block type ${pyBytes(raw)} is not four ASCII letters`);
    }
    const type = String.fromCharCode(...raw);
    const length = new DataView(data.buffer, data.byteOffset + pos + 4, 4).getUint32(0);
    if (length > left - 8) {
      throw new FormatError(`metadata block '${type}' at byte ${pos} claims length=${length}, only ${
        left - 8} bytes remain in metadata_length=${header.metadataLength}`);
    }
    if (!KNOWN_BLOCKS.includes(type) && raw[0] <= 0x5a) {
      throw new FormatError(`unknown metadata block '${type}' at byte ${pos}: an upper-case first letter means readers must understand it`);
    }
    const body = data.slice(pos + 8, pos + 8 + length);
    if (type === 'iccp') {
      if (blocks.some((b) => b.type === 'iccp')) {
        throw new FormatError(`second iccp block at byte ${pos} (a file holds at most one profile)`);
      }
      checkIcc(body, pos);
    }
    blocks.push({ type, data: body });
    pos += 8 + length;
  }
  return blocks;
}

function checkPixelLimit(header, maxPixels) {
  if (maxPixels === null || maxPixels === undefined || maxPixels === Infinity) return;
  const n = header.width * header.height;
  if (n > maxPixels) {
    throw new DecompressionBombError(`Image size (${n} pixels) exceeds limit of ${maxPixels
    } pixels, could be decompression bomb DOS attack.`);
  }
}

// ------------------------------------------------------------------ decoded image
const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

/** A decoded .kpal image: header fields, palette and one index per pixel. */
export class KpalImage {
  constructor(header, palette, indices, metadata = []) {
    /** @type {number} */ this.width = header.width;
    /** @type {number} */ this.height = header.height;
    /** @type {number} */ this.k = header.k;
    /** @type {number} */ this.bitsPerIndex = header.bitsPerIndex;
    /** @type {number} */ this.coding = header.coding;
    /** @type {string} */ this.codingName = header.codingName;
    /** @type {number} */ this.version = header.version;
    /** @type {number} */ this.payloadLength = header.payloadLength;
    /** @type {number} */ this.fileSize = header.fileSize;
    /** flags (version 2; 0 in version 1). @type {number} */ this.flags = header.flags;
    /** Whether palette entries carry alpha. @type {boolean} */ this.alpha = header.alpha;
    /** Bytes per palette entry: 3 (RGB) or 4 (RGBA). @type {number} */
    this.channels = header.channels;
    /** @type {number} */ this.metadataLength = header.metadataLength;
    /** R, G, B (and A when alpha) of each palette entry: channels*k bytes. @type {Uint8Array} */
    this.palette = palette;
    /** Metadata blocks in file order (spec §3.2). @type {{type: string, data: Uint8Array}[]} */
    this.metadata = metadata;
    /** The ICC profile of an iccp block, or null (then the palette is sRGB). */
    this.iccProfile = metadata.find((b) => b.type === 'iccp')?.data ?? null;
    /** Palette index of each pixel, row-major: width*height bytes. @type {Uint8Array} */
    this.indices = indices;
  }

  /**
   * The pixels as RGBA, 4 bytes per pixel, straight alpha (what ImageData holds): the
   * palette's alpha, or 255 for an RGB palette.
   * @returns {Uint8ClampedArray}
   */
  toRGBA() {
    const n = this.indices.length;
    const out = new Uint8ClampedArray(4 * n);
    // one 32-bit word per palette entry, written whole (Int32: no boxing of values >= 2**31)
    const lut = new Int32Array(256);
    const p = this.palette;
    const c = this.channels;
    for (let i = 0; i < this.k; i++) {
      const [r, g, b] = [p[c * i], p[c * i + 1], p[c * i + 2]];
      const a = c === 4 ? p[c * i + 3] : 0xff;
      lut[i] = LITTLE_ENDIAN ? (a << 24) | (b << 16) | (g << 8) | r : (r << 24) | (g << 16) | (b << 8) | a;
    }
    const words = new Int32Array(out.buffer);
    const indices = this.indices;
    let i = 0;
    if (LITTLE_ENDIAN && indices.byteOffset % 4 === 0) {
      // four indices per load: a third faster than one at a time
      const quads = new Uint32Array(indices.buffer, indices.byteOffset, n >> 2);
      for (let q = 0; q < quads.length; q++, i += 4) {
        const x = quads[q];
        words[i] = lut[x & 0xff];
        words[i + 1] = lut[(x >>> 8) & 0xff];
        words[i + 2] = lut[(x >>> 16) & 0xff];
        words[i + 3] = lut[x >>> 24];
      }
    }
    for (; i < n; i++) words[i] = lut[indices[i]];
    return out;
  }

  /**
   * The pixels as an ImageData, for a canvas (where ImageData exists).
   * @returns {ImageData}
   */
  toImageData() {
    if (typeof ImageData === 'undefined') {
      throw new TypeError('ImageData is not available here (use toRGBA())');
    }
    return new ImageData(this.toRGBA(), this.width, this.height);
  }

  /**
   * Size accounting as `kpal info` prints it (kpal.metrics.size_report).
   * @returns {{k: number, nPixels: number, bitsPerIndex: number, paletteBits: number,
   *   indexBits: number, theoreticalBits: number, theoreticalBytes: number,
   *   log2BoundBits: number, order0EntropyBits: number, onDiskBytes: number,
   *   payloadBytes: number, overheadBytes: number, rawBytes: number, ratio: number,
   *   formula: string}}
   */
  sizeReport() {
    const n = this.width * this.height;
    const b = this.bitsPerIndex;
    const entryBits = 8 * this.channels; // 24, or 32 with alpha
    const paletteBits = entryBits * this.k;
    const indexBits = n * b;
    const counts = new Float64Array(256);
    const indices = this.indices;
    for (let i = 0; i < indices.length; i++) counts[indices[i]]++;
    let h = 0;
    for (const c of counts) if (c > 0) h -= c * Math.log2(c / n);
    const onDisk = this.fileSize;
    return {
      k: this.k,
      nPixels: n,
      bitsPerIndex: b,
      paletteBits,
      indexBits,
      theoreticalBits: paletteBits + indexBits,
      theoreticalBytes: Math.ceil((paletteBits + indexBits) / 8),
      log2BoundBits: paletteBits + n * Math.log2(this.k),
      order0EntropyBits: paletteBits + h,
      onDiskBytes: onDisk,
      payloadBytes: this.payloadLength,
      overheadBytes: onDisk - this.channels * this.k - this.payloadLength,
      rawBytes: this.channels * n,
      ratio: (this.channels * n) / onDisk,
      formula: `${this.k}×${entryBits} + ${n}×${b} = ${paletteBits + indexBits} bits`,
    };
  }
}

// ------------------------------------------------------------------ decode
/**
 * Decode a whole .kpal file.
 *
 * Checks, in the reference reader's order: the header (readHeader, with the file's
 * length), the pixel cap, the checksum, then the payload. Returns nothing from a file
 * it rejects.
 *
 * @param {Uint8Array | ArrayBuffer | ArrayBufferView} source the file's bytes
 * @param {{maxPixels?: number | null}} [options] maxPixels: refuse images with more
 *   pixels (DecompressionBombError) before allocating them; default
 *   DEFAULT_MAX_PIXELS, null or Infinity for no cap.
 * @returns {KpalImage}
 * @throws {FormatError | LimitError | ChecksumError | DecompressionBombError}
 */
export function decode(source, { maxPixels = DEFAULT_MAX_PIXELS } = {}) {
  const data = asBytes(source);
  const header = readHeaderChecked(data, data.length);
  const metadata = readMetadata(data, header);
  checkPixelLimit(header, maxPixels);
  const bodyEnd = data.length - CHECKSUM_SIZE;
  const stored = new DataView(data.buffer, data.byteOffset + bodyEnd, 4).getUint32(0);
  const computed = crc32(data.subarray(0, bodyEnd));
  if (stored !== computed) {
    throw new ChecksumError(`checksum mismatch: stored 0x${stored.toString(16).padStart(8, '0')
    }, computed 0x${computed.toString(16).padStart(8, '0')}`);
  }
  const palette = data.slice(header.headerSize, header.metadataOffset);
  const payload = data.subarray(header.payloadOffset, bodyEnd);
  const { k, width, height } = header;
  let indices;
  if (header.coding in UNSUPPORTED_CODINGS) {
    throw new FormatError(UNSUPPORTED_CODINGS[header.coding]);
  }
  if (header.coding === 0) indices = decodeFixed(payload, k, width * height);
  else if (header.coding === 1) indices = decodeRadix(payload, k, width * height);
  else indices = decodeEntropy(payload, k, width, height);
  return new KpalImage(header, palette, indices, metadata);
}

// ------------------------------------------------------------------ §5 fixed width
function badIndex(indices, k) {
  let top = 0;
  for (let i = 0; i < indices.length; i++) if (indices[i] > top) top = indices[i];
  if (top >= k) {
    let pos = 0;
    while (indices[pos] < k) pos++;
    throw new FormatError(`index ${top} >= k=${k} (first bad index at pixel ${pos})`);
  }
}

function checkPadding(payload, padBits) {
  const last = payload[payload.length - 1];
  if (padBits && last & ((1 << padBits) - 1)) {
    throw new FormatError(`padding bits in the last payload byte are not zero (0x${
      last.toString(16).padStart(2, '0')})`);
  }
}

function decodeFixed(payload, k, n) {
  const b = bitsFor(k);
  const indices = new Uint8Array(n);
  if (b === 0) return indices;
  if (b === 8) {
    indices.set(payload);
  } else {
    const mask = (1 << b) - 1;
    let acc = 0;
    let have = 0;
    let p = 0;
    for (let i = 0; i < n; i++) {
      if (have < b) {
        acc = ((acc & 0xff) << 8) | payload[p++];
        have += 8;
      }
      have -= b;
      indices[i] = (acc >>> have) & mask;
    }
    checkPadding(payload, payload.length * 8 - n * b);
  }
  if (k < 1 << b) badIndex(indices, k);
  return indices;
}

// ------------------------------------------------------------------ §6 radix
function decodeRadix(payload, k, n) {
  const [m, w] = groupShape(k);
  if (m === 1) return decodeFixed(payload, k, n);
  checkPadding(payload, payload.length * 8 - radixPayloadBits(k, n));
  const indices = new Uint8Array(n);
  const nFull = Math.floor(n / m);
  let p = 0; // next payload byte
  let acc = 0; // the low `have` bits are unread (have <= 7 between reads)
  let have = 0;
  const read = (bits) => {
    // the next `bits` (<= 32) bits of the stream, MSB first, as an unsigned number
    let value = 0;
    while (bits > 0) {
      if (have === 0) {
        acc = payload[p++];
        have = 8;
      }
      const take = bits < have ? bits : have;
      have -= take;
      value = value * (1 << take) + ((acc >>> have) & ((1 << take) - 1));
      bits -= take;
    }
    return value;
  };
  const tooBig = (value, digits, start) => new FormatError(`radix group value ${value} >= k**m = ${
    BigInt(k) ** BigInt(digits)} (k=${k}, m=${digits}; group starting at pixel ${start})`);
  const group = (start, digits, bits) => {
    // v = hi * 2**32 + lo, split into base-k digits by long division in two halves
    const hi0 = bits > 32 ? read(bits - 32) : 0;
    const lo0 = read(bits > 32 ? 32 : bits);
    let hi = hi0;
    let lo = lo0;
    for (let j = digits - 1; j >= 0; j--) {
      const qHi = Math.floor(hi / k);
      const t = (hi - qHi * k) * 4294967296 + lo; // < 2**40: exact
      const qLo = Math.floor(t / k);
      indices[start + j] = t - qLo * k;
      hi = qHi;
      lo = qLo;
    }
    if (hi !== 0 || lo !== 0) throw tooBig((BigInt(hi0) << 32n) | BigInt(lo0), digits, start);
  };
  if (w <= 32) {
    // fast path: whole groups as one number
    for (let g = 0, start = 0; g < nFull; g++, start += m) {
      const v0 = read(w);
      let v = v0;
      for (let j = m - 1; j >= 0; j--) {
        const q = Math.floor(v / k);
        indices[start + j] = v - q * k;
        v = q;
      }
      if (v !== 0) throw tooBig(v0, m, start);
    }
  } else {
    for (let g = 0; g < nFull; g++) group(g * m, m, w);
  }
  const r = n - nFull * m;
  if (r) group(nFull * m, r, tailBits(k, r));
  return indices;
}

// ------------------------------------------------------------------ §7 entropy
const PROB_BITS = 12;
const PROB_ONE = 1 << PROB_BITS;
const STATE_LOW = 1 << 16;
/** At most this many wavefront steps (spec §7.2): the steps of 64x64 tiles. */
export const MAX_STEPS = 3 * 64 - 2;
const MIN_TILE_LOG2 = 2;
const MAX_TILE_LOG2 = 15;
const FLAG_LIMIT = 1 << 13;
const N_PATTERNS = 128;
/** A ring of recent steps is kept only while it costs at most one byte per this many pixels. */
const RING_PIXELS_PER_BYTE = 10;

/** Fewest lanes an entropy payload of n pixels may have (spec §7.1). */
export function minLanes(n) {
  return Math.min(4096, Math.max(1, Math.floor(n / 1024)));
}

/** Wavefront steps of a width x height image with tiles of 2**tileLog2 (spec §7.2). */
export function nSteps(width, height, tileLog2) {
  const tile = 2 ** tileLog2;
  return 2 * (Math.min(tile, height) - 1) + Math.min(tile, width);
}

function entropyHeader(payload, width, height) {
  if (payload.length < 3) {
    throw new FormatError(`entropy payload is ${payload.length} bytes, shorter than its 3-byte header`);
  }
  const tileLog2 = payload[0];
  const range = `must be between ${MIN_TILE_LOG2} and ${MAX_TILE_LOG2}`;
  if (tileLog2 < MIN_TILE_LOG2 || tileLog2 > MAX_TILE_LOG2) {
    throw new FormatError(`entropy payload tile_log2=${tileLog2} ${range}`);
  }
  const lanes = (payload[1] << 8) | payload[2];
  if (lanes === 0) throw new FormatError('entropy payload lanes=0 must be at least 1');
  const steps = nSteps(width, height, tileLog2);
  if (steps > MAX_STEPS) {
    throw new FormatError(`entropy payload tile_log2=${tileLog2} gives ${steps} wavefront steps on a ${
      width}x${height} image, more than ${MAX_STEPS}`);
  }
  const least = minLanes(width * height);
  if (lanes < least) {
    throw new FormatError(`entropy payload lanes=${lanes} must be at least ${least} for ${
      width * height} pixels (one per 1024, at most 4096)`);
  }
  const body = payload.length - 3 - 4 * lanes;
  if (body < 0 || body % 2) {
    throw new FormatError(`entropy payload is ${payload.length} bytes: not 3 + 4*${lanes
    } + an even number of bytes`);
  }
  const states = new Uint32Array(lanes);
  for (let l = 0, at = 3; l < lanes; l++, at += 4) {
    states[l] = (payload[at] << 24) | (payload[at + 1] << 16) | (payload[at + 2] << 8)
      | payload[at + 3];
    if (states[l] < STATE_LOW) {
      throw new FormatError(`entropy payload has a lane state below ${STATE_LOW}`);
    }
  }
  return { tileLog2, lanes, states, wordsAt: 3 + 4 * lanes };
}

function decodeEntropy(payload, k, width, height) {
  const n = width * height;
  if (k === 1) {
    if (payload.length) {
      throw new FormatError(`entropy payload must be empty for k=1, got ${payload.length} bytes`);
    }
    return new Uint8Array(n);
  }
  const head = entropyHeader(payload, width, height);
  // A tile larger than the image decodes as the smallest power of two covering it
  // (spec §7.6): only the arithmetic changes, buffers follow the pixels either way.
  const cover = Math.max(MIN_TILE_LOG2, 32 - Math.clz32(Math.max(width, height) - 1));
  const tileLog2 = Math.min(head.tileLog2, cover);
  return entropyCore(payload, head, k, width, height, tileLog2);
}

// The decoder follows spec §7 decision by decision, like the reference's compiled path:
// for every step, the pixels' contexts in coding order, then their F1 decisions, their
// F2 decisions, the literal bits level by level, and the model update. Each phase is its
// own small function over typed arrays, which JavaScript engines compile quickly.
//
// Neighbours of tiles of 16 pixels or more come from a ring of the last five steps:
// pixel (i, j) of tile t on step s is at ring[(s % 5) * ringSize + t * (rows + 2) + 2 + i],
// so a step reads a small buffer in order instead of rows scattered over the image.
// Smaller tiles read the image, where their neighbours are close together.

function entropyCore(payload, head, k, width, height, tileLog2) {
  const tile = 1 << tileLog2;
  const tilesX = Math.ceil(width / tile);
  const nTiles = tilesX * Math.ceil(height / tile);
  const rows = Math.min(tile, height);
  const cols = Math.min(tile, width);
  const geometry = {
    width, height, tile, tilesX, nTiles, rows, cols,
    stride: rows + 2,
    ringSize: nTiles * (rows + 2),
  };
  const steps = 2 * (rows - 1) + cols;
  // the most pixels one step holds: at most ceil(cols / 2) per tile
  const perStep = nTiles * Math.min(rows, (cols + 1) >> 1);
  const model = newModel(k);
  const buffers = {
    // ring of the last five steps, while it is cheap next to the image (else the raster)
    ring: RING_PIXELS_PER_BYTE * 5 * geometry.ringSize <= width * height
      ? new Uint8Array(5 * geometry.ringSize) : null,
    raster: new Uint8Array(width * height),
    lefts: new Uint8Array(perStep),
    aboves: new Uint8Array(perStep),
    patterns: new Uint8Array(perStep),
    values: new Int16Array(perStep), // the step's labels in coding order, -1: a literal
    litLeft: new Uint8Array(perStep),
    litAbove: new Uint8Array(perStep),
    litNode: new Int32Array(perStep), // tree node while decoding, then the symbol
  };
  const coder = {
    state: head.states,
    nLanes: head.lanes,
    lane: 0,
    position: head.wordsAt,
    end: payload.length,
    payload,
  };
  for (let s = 0; s < steps; s++) {
    const count = stepContexts(geometry, buffers, s);
    if (count === 0) {
      // odd steps of a 1-pixel-wide image: no decisions, but the halving still follows
      halveFlags(model.flagL);
      halveFlags(model.flagA);
      continue;
    }
    flagTable(model.flagL, model.tableL);
    flagTable(model.flagA, model.tableA);
    decodeF1(coder, model, buffers, count);
    const nLit = decodeF2(coder, model, buffers, count);
    decodeLiterals(coder, model, buffers, nLit);
    const worst = toSymbols(buffers.litNode, nLit, model.b);
    if (worst >= k) throw new FormatError(`entropy payload decodes to index ${worst} >= k=${k}`);
    storeStep(geometry, buffers, s);
    halveFlags(model.flagL);
    halveFlags(model.flagA);
    updateLiterals(model, buffers, nLit);
  }
  if (coder.position !== coder.end) {
    throw new FormatError(`entropy payload has ${(coder.end - coder.position) / 2
    } unread words after the last pixel`);
  }
  for (let l = 0; l < coder.nLanes; l++) {
    if (coder.state[l] !== STATE_LOW) {
      throw new FormatError(`entropy payload is corrupt: lane ${l} ends in state ${coder.state[l]
      }, expected ${STATE_LOW}`);
    }
  }
  return buffers.raster;
}

/** Initial model (spec §7.5) for k symbols. */
function newModel(k) {
  const b = bitsFor(k);
  // Literal counts of context v and inner node n at v*rowLen + 2n, the count of its right
  // child 2n + 1 beside it. Counts grow by 16 per literal, so they are kept divided by 16:
  // at most N <= 2**30 fits an Int32Array.
  const rowLen = 2 << b;
  const prior = new Int32Array(2 << b);
  for (let s = 0; s < k; s++) prior[(1 << b) + s] = 1;
  for (let node = (1 << b) - 1; node > 0; node--) prior[node] = prior[2 * node] + prior[2 * node + 1];
  return {
    b,
    rowLen,
    prior,
    byLeft: new Int32Array(k * rowLen),
    byAbove: new Int32Array(k * rowLen),
    // flag counts (c0, c1) per pattern, all starting at (1, 1)
    flagL: new Int32Array(2 * N_PATTERNS).fill(1),
    flagA: new Int32Array(2 * N_PATTERNS).fill(1),
    tableL: new Int32Array(N_PATTERNS),
    tableA: new Int32Array(N_PATTERNS),
  };
}

function flagTable(counts, table) {
  for (let p = 0; p < N_PATTERNS; p++) {
    const c0 = counts[2 * p];
    const c1 = counts[2 * p + 1];
    const q = Math.floor((c1 * PROB_ONE) / (c0 + c1));
    table[p] = q < 1 ? 1 : q > PROB_ONE - 1 ? PROB_ONE - 1 : q;
  }
}

function halveFlags(counts) {
  for (let p = 0; p < 2 * N_PATTERNS; p += 2) {
    if (counts[p] + counts[p + 1] > FLAG_LIMIT) {
      counts[p] = (counts[p] + 1) >> 1;
      counts[p + 1] = (counts[p + 1] + 1) >> 1;
    }
  }
}

/** L, A and the pattern of the step's pixels in coding order; returns their number. */
function stepContexts(geometry, buffers, s) {
  const { width, height, tile, tilesX, nTiles, rows, cols, stride, ringSize } = geometry;
  const { ring, raster, lefts, aboves, patterns } = buffers;
  const iFirst = Math.max(0, (s - cols + 2) >> 1);
  const iLast = Math.min(s >> 1, rows - 1);
  const back1 = ((s + 4) % 5) * ringSize;
  const back2 = ((s + 3) % 5) * ringSize;
  const back3 = ((s + 2) % 5) * ringSize;
  const back4 = ((s + 1) % 5) * ringSize;
  let count = 0;
  for (let t = 0; t < nTiles; t++) {
    const ty = Math.floor(t / tilesX);
    const row0 = ty * tile;
    const col0 = (t - ty * tilesX) * tile;
    const base = t * stride + 2;
    for (let i = iFirst; i <= iLast; i++) {
      const j = s - 2 * i;
      const row = row0 + i;
      const col = col0 + j;
      if (row >= height || col >= width) continue;
      const hasRight = i > 0 && j + 1 < tile && col + 1 < width;
      let above, left, diag, right, left2, above2;
      if (ring !== null) {
        const cell = base + i;
        above = i > 0 ? ring[back2 + cell - 1] : 0; // (i-1, j)
        left = j > 0 ? ring[back1 + cell] : above; // (i, j-1)
        if (i === 0) above = left;
        diag = i > 0 && j > 0 ? ring[back3 + cell - 1] : above; // (i-1, j-1)
        right = hasRight ? ring[back1 + cell - 1] : above; // (i-1, j+1)
        left2 = j > 1 ? ring[back2 + cell] : left; // (i, j-2)
        above2 = i > 1 ? ring[back4 + cell - 2] : above; // (i-2, j)
      } else {
        const at = row * width + col;
        above = i > 0 ? raster[at - width] : 0;
        left = j > 0 ? raster[at - 1] : above;
        if (i === 0) above = left;
        diag = i > 0 && j > 0 ? raster[at - width - 1] : above;
        right = hasRight ? raster[at - width + 1] : above;
        left2 = j > 1 ? raster[at - 2] : left;
        above2 = i > 1 ? raster[at - 2 * width] : above;
      }
      lefts[count] = left;
      aboves[count] = above;
      patterns[count] = (left === above ? 1 : 0) | (above === diag ? 2 : 0)
        | (left === diag ? 4 : 0) | (above === right ? 8 : 0) | (left === right ? 16 : 0)
        | (left === left2 ? 32 : 0) | (above === above2 ? 64 : 0);
      count++;
    }
  }
  return count;
}

function truncated() {
  return new FormatError('entropy payload is truncated: the coder ran out of words');
}

// One rANS decision (spec §7.6), decodeBit below, used by the three loops that follow:
//   slot = x mod 4096; bit = slot >= f0; x = f * floor(x / 4096) + slot - c;
//   if x < 2**16: x = x * 2**16 + next word.
// States are below 2**32 and f * floor(x / 4096) + slot < 4095 * 2**20 + 4096 < 2**32,
// so 32-bit unsigned arithmetic (Math.imul, >>> 0) is exact.

/**
 * One rANS step of lane `lane` with P(bit = 1) = p1 / 4096 (the rule above): updates
 * state[lane] and returns 2 * position + bit, position being where the next word is read
 * (a function of its own costs nothing measurable: engines inline it).
 */
function decodeBit(state, lane, p1, payload, position, end) {
  const f0 = PROB_ONE - p1;
  const x = state[lane];
  const slot = x & (PROB_ONE - 1);
  let y;
  let bit = 0;
  if (slot >= f0) {
    bit = 1;
    y = (Math.imul(p1, x >>> PROB_BITS) + slot - f0) >>> 0;
  } else {
    y = (Math.imul(f0, x >>> PROB_BITS) + slot) >>> 0;
  }
  if (y < STATE_LOW) {
    if (position + 2 > end) throw truncated();
    y = ((y << 16) | (payload[position] << 8) | payload[position + 1]) >>> 0;
    position += 2;
  }
  state[lane] = y;
  return 2 * position + bit;
}

/** Every F1 of the step; values[q] becomes L or -1 (not L). */
function decodeF1(coder, model, buffers, count) {
  const { state, payload, nLanes, end } = coder;
  const { tableL: table, flagL: counts } = model;
  const { patterns, lefts, values } = buffers;
  let lane = coder.lane;
  let position = coder.position;
  for (let q = 0; q < count; q++) {
    const pattern = patterns[q];
    const p1 = table[pattern];
    const r = decodeBit(state, lane, p1, payload, position, end);
    const bit = r & 1;
    position = (r - bit) / 2;
    if (++lane === nLanes) lane = 0;
    counts[2 * pattern + bit] += 2;
    values[q] = bit ? lefts[q] : -1;
  }
  coder.lane = lane;
  coder.position = position;
}

/** Every F2 of the step; collects the literals in coding order and returns their number. */
function decodeF2(coder, model, buffers, count) {
  const { state, payload, nLanes, end } = coder;
  const { tableA: table, flagA: counts } = model;
  const { patterns, lefts, aboves, values, litLeft, litAbove, litNode } = buffers;
  let lane = coder.lane;
  let position = coder.position;
  let nLit = 0;
  for (let q = 0; q < count; q++) {
    if (values[q] >= 0) continue;
    const left = lefts[q];
    const above = aboves[q];
    if (left !== above) {
      const pattern = patterns[q];
      const p1 = table[pattern];
      const r = decodeBit(state, lane, p1, payload, position, end);
      const bit = r & 1;
      position = (r - bit) / 2;
      if (++lane === nLanes) lane = 0;
      counts[2 * pattern + bit] += 2;
      if (bit) {
        values[q] = above;
        continue;
      }
    }
    litLeft[nLit] = left; // values[q] stays -1 until the literal is known
    litAbove[nLit] = above;
    litNode[nLit] = 1;
    nLit++;
  }
  coder.lane = lane;
  coder.position = position;
  return nLit;
}

/** The literals' bits, most significant first, level by level: litNode ends at the leaf. */
function decodeLiterals(coder, model, buffers, nLit) {
  const { state, payload, nLanes, end } = coder;
  const { b, rowLen, prior, byLeft, byAbove } = model;
  const { litLeft, litAbove, litNode } = buffers;
  let lane = coder.lane;
  let position = coder.position;
  for (let level = 0; level < b; level++) {
    for (let q = 0; q < nLit; q++) {
      const node = litNode[q];
      const at = 2 * node;
      const baseL = litLeft[q] * rowLen + at;
      const baseA = litAbove[q] * rowLen + at;
      // counts are stored divided by 16 (see newModel)
      const num = 16 * (byLeft[baseL + 1] + byAbove[baseA + 1]) + prior[at + 1];
      const den = 16 * (byLeft[baseL] + byAbove[baseA]) + prior[node];
      let p1 = Math.floor((num * PROB_ONE) / (den > 1 ? den : 1));
      p1 = p1 < 1 ? 1 : p1 > PROB_ONE - 1 ? PROB_ONE - 1 : p1;
      const r = decodeBit(state, lane, p1, payload, position, end);
      const bit = r & 1;
      position = (r - bit) / 2;
      if (++lane === nLanes) lane = 0;
      litNode[q] = at + bit;
    }
  }
  coder.lane = lane;
  coder.position = position;
}

/** Leaves to symbols; returns the largest symbol (-1 when there are none). */
function toSymbols(litNode, nLit, b) {
  let worst = -1;
  for (let q = 0; q < nLit; q++) {
    const symbol = litNode[q] - (1 << b);
    litNode[q] = symbol;
    if (symbol > worst) worst = symbol;
  }
  return worst;
}

/** The step's labels (the literals fill the pixels still open) into the image and ring. */
function storeStep(geometry, buffers, s) {
  const { width, height, tile, tilesX, nTiles, rows, cols, stride, ringSize } = geometry;
  const { ring, raster, values, litNode } = buffers;
  const iFirst = Math.max(0, (s - cols + 2) >> 1);
  const iLast = Math.min(s >> 1, rows - 1);
  const here = (s % 5) * ringSize;
  let count = 0;
  let m = 0;
  for (let t = 0; t < nTiles; t++) {
    const ty = Math.floor(t / tilesX);
    const row0 = ty * tile;
    const col0 = (t - ty * tilesX) * tile;
    for (let i = iFirst; i <= iLast; i++) {
      const row = row0 + i;
      const col = col0 + s - 2 * i;
      if (row >= height || col >= width) continue;
      let v = values[count++];
      if (v < 0) v = litNode[m++];
      raster[row * width + col] = v;
      if (ring !== null) ring[here + t * stride + 2 + i] = v;
    }
  }
}

/** Add the step's literals to the counts of every node on their paths (spec §7.5). */
function updateLiterals(model, buffers, nLit) {
  const { b, rowLen, byLeft, byAbove } = model;
  const { litLeft, litAbove, litNode } = buffers;
  for (let q = 0; q < nLit; q++) {
    const leaf = litNode[q] | (1 << b);
    const baseL = litLeft[q] * rowLen;
    const baseA = litAbove[q] * rowLen;
    for (let d = 0; d < b; d++) {
      const at = 2 * (leaf >> (b - d));
      byLeft[baseL + at]++;
      byAbove[baseA + at]++;
      if ((leaf >> (b - d - 1)) & 1) {
        byLeft[baseL + at + 1]++;
        byAbove[baseA + at + 1]++;
      }
    }
  }
}
