// Hostile files: the decoder's time and memory follow the pixels, whatever the payload
// claims (spec §7, §8), and nothing is allocated before the header is checked.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as kpal from '../kpal.js';

const CORRUPT = fileURLToPath(new URL('../../tests/corrupt/', import.meta.url));

function file(header, payload) {
  // a whole file with a zero palette and a correct checksum
  const k = header.k;
  const body = new Uint8Array(26 + 3 * k + payload.length);
  body.set(kpal.MAGIC);
  const view = new DataView(body.buffer);
  view.setUint8(9, 1);
  view.setUint8(10, header.coding);
  view.setUint8(11, kpal.bitsFor(k));
  view.setUint16(12, k);
  view.setUint32(14, header.width);
  view.setUint32(18, header.height);
  view.setUint32(22, payload.length);
  body.set(payload, 26 + 3 * k);
  const out = new Uint8Array(body.length + 4);
  out.set(body);
  new DataView(out.buffer).setUint32(body.length, kpal.crc32(body));
  return out;
}

function entropyPayload(tileLog2, lanes, words) {
  // every lane state 2**16, then `words` pseudo-random words
  const payload = new Uint8Array(3 + 4 * lanes + 2 * words);
  payload[0] = tileLog2;
  payload[1] = lanes >> 8;
  payload[2] = lanes & 0xff;
  for (let l = 0; l < lanes; l++) payload[3 + 4 * l + 1] = 1;
  let seed = 12345;
  for (let i = 3 + 4 * lanes; i < payload.length; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    payload[i] = seed >>> 24;
  }
  return payload;
}

function arrayBufferGrowth(fn) {
  const before = process.memoryUsage().arrayBuffers;
  let result;
  try {
    result = fn();
  } catch (e) {
    result = e;
  }
  return [process.memoryUsage().arrayBuffers - before, result];
}

for (const name of ['entropy_tile_log2_15.kpal', 'fuzz_entropy_tile_log2_14.kpal']) {
  test(`${name}: a tile far larger than the image decodes in little memory`, () => {
    const data = readFileSync(`${CORRUPT}${name}`);
    const [grown, image] = arrayBufferGrowth(() => kpal.decode(data));
    assert.ok(image instanceof kpal.KpalImage, String(image));
    assert.ok(grown < 1 << 20, `${grown} bytes`);
  });
}

test('a 33-byte k = 1 file claiming 2**30 pixels is refused before allocating', () => {
  const data = readFileSync(`${CORRUPT}bomb_k1_2p30_pixels.kpal`);
  const [grown, error] = arrayBufferGrowth(() => kpal.decode(data));
  assert.ok(error instanceof kpal.DecompressionBombError, String(error));
  assert.match(error.message, /Image size \(1073741824 pixels\) exceeds limit of 178956970 pixels/);
  assert.ok(grown < 1 << 20, `${grown} bytes`);
});

test('a huge header on a tiny file fails on its length, before allocating', () => {
  const data = readFileSync(`${CORRUPT}huge_header_tiny_file.kpal`);
  const [grown, error] = arrayBufferGrowth(() => kpal.decode(data, { maxPixels: null }));
  assert.ok(error instanceof kpal.FormatError && /file is truncated/.test(error.message), String(error));
  assert.ok(grown < 1 << 20, `${grown} bytes`);
});

test('more than 190 wavefront steps are refused at once (1x65536, tile_log2 15)', () => {
  const data = file({ coding: 2, k: 2, width: 1, height: 65536 }, entropyPayload(15, 64, 0));
  const start = performance.now();
  assert.throws(() => kpal.decode(data), /gives 65535 wavefront steps on a 1x65536 image, more than 190/);
  assert.ok(performance.now() - start < 100);
});

test('fewer lanes than one per 1024 pixels are refused', () => {
  const data = file({ coding: 2, k: 2, width: 100, height: 100 }, entropyPayload(6, 8, 0));
  assert.throws(() => kpal.decode(data), /lanes=8 must be at least 9 for 10000 pixels/);
});

test('random words over many pixels cost time and memory in proportion to the pixels', () => {
  // 4x4 tiles (a step holds an eighth of the image), k = 256: up to 10 decisions per
  // pixel, and enough words that the coder never runs out before the last pixel.
  const width = 512;
  const height = 512;
  const n = width * height;
  const data = file({ coding: 2, k: 256, width, height }, entropyPayload(2, 256, 10 * n));
  const start = performance.now();
  const [grown, error] = arrayBufferGrowth(() => kpal.decode(data));
  const seconds = (performance.now() - start) / 1000;
  assert.ok(error instanceof kpal.FormatError, String(error));
  assert.ok(grown < 8 * n, `${grown} bytes for ${n} pixels`);
  assert.ok(seconds < 10, `${seconds} s`);
});
