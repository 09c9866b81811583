// The golden files of samples/golden/ (spec §10) decode to exactly the expected
// header, palette and indices, and the worked examples of the spec hold.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as kpal from '../kpal.js';

const GOLDEN = fileURLToPath(new URL('../../samples/golden/', import.meta.url));
const NAMES = readdirSync(GOLDEN).filter((f) => f.endsWith('.kpal')).map((f) => f.slice(0, -5));

function expected(name) {
  const lines = readFileSync(`${GOLDEN}${name}.expected.txt`, 'utf8').trimEnd().split('\n');
  const fields = {};
  const metadata = [];
  let i = 0;
  for (; lines[i] !== 'indices'; i++) {
    const [key, ...rest] = lines[i].split(' ');
    if (key === 'metadata') metadata.push(rest.join(' '));
    else fields[key] = rest.join(' ');
  }
  // rrggbb, or rrggbbaa for an RGBA palette (version 2)
  const palette = Uint8Array.from(fields.palette.split(' ').flatMap(
    (c) => Array.from({ length: c.length / 2 }, (_, j) => parseInt(c.slice(2 * j, 2 * j + 2), 16))));
  const channels = fields.palette.split(' ')[0].length / 2;
  const indices = Uint8Array.from(lines.slice(i + 1).flatMap((row) => row.trim().split(/\s+/).map(Number)));
  return { fields, palette, channels, indices, metadata };
}

test('there are golden files in every coding', () => {
  const codings = new Set(NAMES.map((n) => kpal.readHeader(readFileSync(`${GOLDEN}${n}.kpal`)).codingName));
  assert.deepEqual([...codings].sort(), ['context', 'entropy', 'fixed', 'radix']);
});

for (const name of NAMES) {
  const coding = kpal.readHeader(readFileSync(`${GOLDEN}${name}.kpal`)).coding;
  if (coding === 3) { // coding 3 (context) is optional for readers (spec §12): not in kpal.js
    test(`golden ${name} (coding ${coding}, optional for readers) is rejected by name`, () => {
      assert.throws(() => kpal.decode(readFileSync(`${GOLDEN}${name}.kpal`)),
        { name: 'FormatError', message: /^coding 3 \(context\) is not supported by this reader/ });
    });
    continue;
  }
  test(`golden ${name} decodes to the expected header, palette and indices`, () => {
    const { fields, palette, channels, indices, metadata } = expected(name);
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
    assert.equal(image.flags, Number(fields.flags ?? 0));
    assert.equal(image.metadataLength, Number(fields.metadata_length ?? 0));
    assert.equal(image.channels, channels);
    assert.deepEqual(image.palette, palette);
    assert.deepEqual(image.indices, indices);
    assert.deepEqual(image.metadata.map((b) => `${b.type} ${b.data.length} ${
      createHash('sha256').update(b.data).digest('hex')}`), metadata);
    const rgba = image.toRGBA();
    assert.equal(rgba.length, 4 * indices.length);
    for (let p = 0; p < indices.length; p++) {
      const c = channels * indices[p];
      assert.deepEqual([...rgba.subarray(4 * p, 4 * p + 4)],
        [palette[c], palette[c + 1], palette[c + 2], channels === 4 ? palette[c + 3] : 255], `pixel ${p}`);
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

test('version 2 golden files: RGBA palettes, an ICC profile and a skipped block', () => {
  const versions = new Set(NAMES.map((n) => kpal.readHeader(readFileSync(`${GOLDEN}${n}.kpal`)).version));
  assert.deepEqual([...versions].sort(), [1, 2]);
  const image = kpal.decode(readFileSync(`${GOLDEN}rgba_icc_extra_radix_k5_6x4.kpal`));
  assert.equal(image.alpha, true);
  assert.deepEqual(image.iccProfile, new Uint8Array(readFileSync(`${GOLDEN}srgb.icc`)));
  assert.deepEqual(image.metadata.map((b) => b.type), ['iccp', 'xtra']);
  assert.equal(kpal.decode(readFileSync(`${GOLDEN}k5_7x3.kpal`)).iccProfile, null);
});

test('spec §3.3 worked example: a 44-byte RGBA file, and one with a block to skip', () => {
  const hexBytes = (h) => Uint8Array.from(h.match(/../g).map((b) => parseInt(b, 16)));
  const plain = kpal.decode(hexBytes('894b50414c0d0a1a0a020001000200000003000000010000000101000000000000'
    + '0000ff0000ffa0c5b992f9'));
  assert.deepEqual([...plain.toRGBA()], [255, 0, 0, 255, 0, 0, 0, 0, 255, 0, 0, 255]);
  assert.equal(plain.sizeReport().formula, '2×32 + 3×1 = 67 bits');
  assert.equal(plain.fileSize, Math.ceil(67 / 8) + 35);
  const skipped = kpal.decode(hexBytes('894b50414c0d0a1a0a0200010002000000030000000100000001010000000a00'
    + '000000ff0000ff78747261000000026869a0ed373e7c'));
  assert.deepEqual(skipped.indices, plain.indices);
  assert.deepEqual(skipped.metadata.map((b) => [b.type, [...b.data]]), [['xtra', [0x68, 0x69]]]);
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
