// The golden files of samples/golden/ (spec §10) decode to exactly the expected
// header, palette and indices, and the worked examples of the spec hold.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as kpal from '../kpal.js';

const GOLDEN = fileURLToPath(new URL('../../samples/golden/', import.meta.url));
const NAMES = readdirSync(GOLDEN).filter((f) => f.endsWith('.kpal')).map((f) => f.slice(0, -5));

function expected(name) {
  const lines = readFileSync(`${GOLDEN}${name}.expected.txt`, 'utf8').trimEnd().split('\n');
  const fields = {};
  let i = 0;
  for (; lines[i] !== 'indices'; i++) {
    const [key, ...rest] = lines[i].split(' ');
    fields[key] = rest.join(' ');
  }
  const palette = Uint8Array.from(
    fields.palette.split(' ').flatMap((c) => [0, 2, 4].map((j) => parseInt(c.slice(j, j + 2), 16))));
  const indices = Uint8Array.from(lines.slice(i + 1).flatMap((row) => row.trim().split(/\s+/).map(Number)));
  return { fields, palette, indices };
}

test('there are golden files in every coding', () => {
  const codings = new Set(NAMES.map((n) => kpal.readHeader(readFileSync(`${GOLDEN}${n}.kpal`)).codingName));
  assert.deepEqual([...codings].sort(), ['entropy', 'fixed', 'radix']);
});

for (const name of NAMES) {
  test(`golden ${name} decodes to the expected header, palette and indices`, () => {
    const { fields, palette, indices } = expected(name);
    const data = readFileSync(`${GOLDEN}${name}.kpal`);
    assert.equal(data.length, Number(fields.file_size));
    const image = kpal.decode(data);
    assert.equal(image.version, Number(fields.version));
    assert.equal(image.coding, Number(fields.coding));
    assert.equal(image.k, Number(fields.k));
    assert.equal(image.bitsPerIndex, Number(fields.bits_per_index));
    assert.equal(image.width, Number(fields.width));
    assert.equal(image.height, Number(fields.height));
    assert.equal(image.payloadLength, Number(fields.payload_length));
    assert.deepEqual(image.palette, palette);
    assert.deepEqual(image.indices, indices);
    const rgba = image.toRGBA();
    assert.equal(rgba.length, 4 * indices.length);
    for (let p = 0; p < indices.length; p++) {
      const c = indices[p];
      assert.deepEqual([...rgba.subarray(4 * p, 4 * p + 4)],
        [palette[3 * c], palette[3 * c + 1], palette[3 * c + 2], 255], `pixel ${p}`);
    }
  });
}

test('decode accepts an ArrayBuffer and a DataView as well as a Uint8Array', () => {
  const data = readFileSync(`${GOLDEN}k5_7x3.kpal`);
  const buffer = data.buffer.slice(data.byteOffset, data.byteOffset + data.length);
  const a = kpal.decode(buffer);
  const b = kpal.decode(new DataView(buffer));
  assert.deepEqual(a.indices, b.indices);
  assert.throws(() => kpal.decode('not bytes'), TypeError);
});

test('a view into a larger buffer decodes, and the image does not alias the input', () => {
  const data = readFileSync(`${GOLDEN}k256_16x16.kpal`);
  const big = new Uint8Array(data.length + 7);
  big.set(data, 3);
  const view = big.subarray(3, 3 + data.length);
  const image = kpal.decode(view);
  assert.deepEqual(image.indices, kpal.decode(data).indices);
  const before = image.indices.slice();
  view.fill(0);
  assert.deepEqual(image.indices, before);
  assert.equal(image.palette.buffer === big.buffer || image.indices.buffer === big.buffer, false);
});

test('crc32 is the zlib / PNG CRC-32', () => {
  assert.equal(kpal.crc32(new TextEncoder().encode('123456789')), 0xcbf43926);
  assert.equal(kpal.crc32(new Uint8Array(0)), 0);
});

test('radix group shapes match the table of spec §6', () => {
  const table = { 2: [1, 1], 3: [29, 46], 5: [3, 7], 60: [1, 6], 100: [3, 20], 129: [9, 64], 256: [1, 8] };
  for (const [k, shape] of Object.entries(table)) assert.deepEqual(kpal.groupShape(Number(k)), shape);
});

function file(header, palette, payload) {
  // a whole file from its parts, with a correct checksum
  const body = new Uint8Array(26 + palette.length + payload.length);
  body.set(kpal.MAGIC);
  const view = new DataView(body.buffer);
  view.setUint8(9, 1);
  view.setUint8(10, header.coding);
  view.setUint8(11, kpal.bitsFor(header.k));
  view.setUint16(12, header.k);
  view.setUint32(14, header.width);
  view.setUint32(18, header.height);
  view.setUint32(22, payload.length);
  body.set(palette, 26);
  body.set(payload, 26 + palette.length);
  const out = new Uint8Array(body.length + 4);
  out.set(body);
  new DataView(out.buffer).setUint32(body.length, kpal.crc32(body));
  return out;
}

test('spec §5 bit diagram: indices 1 2 3 4 at b = 3 are 29 C0', () => {
  const image = kpal.decode(file({ coding: 0, k: 5, width: 4, height: 1 }, new Uint8Array(15), Uint8Array.of(0x29, 0xc0)));
  assert.deepEqual([...image.indices], [1, 2, 3, 4]);
});

test('spec §6 example: indices 1 2 3 4 at k = 5 in radix are 4D 00', () => {
  const image = kpal.decode(file({ coding: 1, k: 5, width: 4, height: 1 }, new Uint8Array(15), Uint8Array.of(0x4d, 0x00)));
  assert.deepEqual([...image.indices], [1, 2, 3, 4]);
});

test('spec §7 worked example: 2x1, k = 3, indices 2 2', () => {
  const payload = Uint8Array.of(0x06, 0x00, 0x01, 0x00, 0x18, 0x54, 0x81);
  const image = kpal.decode(file({ coding: 2, k: 3, width: 2, height: 1 }, new Uint8Array(9), payload));
  assert.deepEqual([...image.indices], [2, 2]);
});

test('size report matches kpal info for a golden file', () => {
  const report = kpal.decode(readFileSync(`${GOLDEN}entropy_k17_70x3.kpal`)).sizeReport();
  assert.equal(report.formula, '17×24 + 210×5 = 1458 bits');
  assert.equal(report.theoreticalBytes, 183);
  assert.equal(Math.ceil(report.log2BoundBits / 8), 159);
  assert.equal(Math.ceil(report.order0EntropyBits / 8), 157);
  assert.equal(report.onDiskBytes, 230);
  assert.equal(report.overheadBytes, 30);
  assert.equal(report.ratio.toFixed(2), '2.74');
});

test('the pixel cap refuses an image before decoding it, and can be lifted', () => {
  const data = readFileSync(`${GOLDEN}k256_16x16.kpal`);
  assert.throws(() => kpal.decode(data, { maxPixels: 255 }), (e) => e instanceof kpal.DecompressionBombError
    && e instanceof kpal.KpalError && /Image size \(256 pixels\) exceeds limit of 255 pixels/.test(e.message));
  assert.equal(kpal.decode(data, { maxPixels: 256 }).width, 16);
  assert.equal(kpal.decode(data, { maxPixels: null }).width, 16);
});

test('kpal.d.ts declares every export of kpal.js', async () => {
  const declared = readFileSync(new URL('../kpal.d.ts', import.meta.url), 'utf8');
  for (const name of Object.keys(await import('../kpal.js'))) {
    assert.match(declared, new RegExp(`export (const|class|function) ${name}\\b`), name);
  }
});
