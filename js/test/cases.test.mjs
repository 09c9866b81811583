// Every file tests/test_js.py writes, with the Python reader's verdict on it: the same
// indices and palette, or an error of the same class. Run by that test with
// KPAL_JS_CASES set to the folder; skipped without it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import * as kpal from '../kpal.js';

const folder = process.env.KPAL_JS_CASES;
const ERRORS = new Set(['FormatError', 'ChecksumError', 'LimitError', 'TruncatedError',
  'DecompressionBombError']);

const hex = (bytes) => Array.from(bytes, (v) => v.toString(16).padStart(2, '0')).join('');

/** What the JS decoder does with one case: null when it agrees, else why not. */
function disagreement(entry, cases, indices) {
  const data = cases.subarray(entry.offset, entry.offset + entry.length);
  let image;
  try {
    image = kpal.decode(data);
  } catch (e) {
    if (!(e instanceof kpal.KpalError) || !ERRORS.has(e.name)) {
      return `undocumented ${e.name}: ${e.message}`;
    }
    if (entry.expect === 'ok') return `rejected with ${e.name}: ${e.message}, Python decodes it`;
    if (e.name !== entry.expect) return `${e.name} (${e.message}), Python raises ${entry.expect}`;
    return null;
  }
  if (entry.expect !== 'ok') return `decoded, Python raises ${entry.expect}`;
  if (image.width !== entry.width || image.height !== entry.height) {
    return `size ${image.width}x${image.height}, Python ${entry.width}x${entry.height}`;
  }
  if (hex(image.palette) !== entry.palette) return 'palette differs';
  const n = entry.width * entry.height;
  const want = indices.subarray(entry.indices, entry.indices + n);
  for (let i = 0; i < n; i++) {
    if (image.indices[i] !== want[i]) return `index ${image.indices[i]} at pixel ${i}, Python ${want[i]}`;
  }
  return null;
}

test('cases written by the Python reader', { skip: !folder && 'KPAL_JS_CASES is not set' }, async (t) => {
  const manifest = JSON.parse(readFileSync(join(folder, 'manifest.json'), 'utf8'));
  const cases = new Uint8Array(readFileSync(join(folder, 'cases.bin')));
  const indices = new Uint8Array(readFileSync(join(folder, 'indices.bin')));
  const groups = new Map();
  for (const entry of manifest) {
    if (!groups.has(entry.group)) groups.set(entry.group, []);
    groups.get(entry.group).push(entry);
  }
  assert.ok(groups.size >= 5, `only ${groups.size} groups`);
  // the matrix: one test per file; the others: one test per group listing every mismatch
  for (const entry of groups.get('matrix') ?? []) {
    await t.test(`matrix ${entry.name}`, () => {
      assert.equal(disagreement(entry, cases, indices), null);
    });
  }
  for (const [group, entries] of groups) {
    if (group === 'matrix') continue;
    await t.test(`${group}: ${entries.length} files`, () => {
      const wrong = [];
      for (const entry of entries) {
        const why = disagreement(entry, cases, indices);
        if (why !== null) wrong.push(`${entry.name}: ${why}`);
      }
      assert.deepEqual(wrong.slice(0, 20), [], `${wrong.length} of ${entries.length} disagree`);
    });
  }
});
