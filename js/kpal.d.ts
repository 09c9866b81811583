// Types of kpal.js, the .kpal decoder (spec/kpal.md, format versions 1 and 2).

/** What decode() and readHeader() accept: a whole file (or, for readHeader, its start). */
export type KpalSource = Uint8Array | ArrayBuffer | ArrayBufferView;

/** The signature `89 4B 50 41 4C 0D 0A 1A 0A`. */
export const MAGIC: Uint8Array;
export const VERSION: 1;
export const VERSION_2: 2;
export const HEADER_SIZE: 26;
export const HEADER_SIZE_V2: 31;
export const CHECKSUM_SIZE: 4;
export const OVERHEAD: 30;
/** flags bit 0: RGBA palette entries. */
export const FLAG_ALPHA: 1;
/** Largest metadata_length (spec §2.1). */
export const MAX_METADATA: 16777216;
/** Metadata block types this module understands (spec §3.2). */
export const KNOWN_BLOCKS: readonly string[];
export const MAX_K: 256;
export const MAX_SIDE: 16777215;
export const MAX_PIXELS: 1073741824;
export const MAX_STEPS: 190;
/** Twice Pillow's Image.MAX_IMAGE_PIXELS: the default pixel cap of decode(). */
export const DEFAULT_MAX_PIXELS: 178956970;
export const CODINGS: Readonly<{ 0: 'fixed'; 1: 'radix'; 2: 'entropy'; 3: 'context' }>;

/** Any invalid data. */
export class KpalError extends Error {}
/** Bad magic, field value, length or payload. */
export class FormatError extends KpalError {}
/** The stored CRC-32 does not match the contents. */
export class ChecksumError extends FormatError {}
/** A header field outside the limits of spec §2. */
export class LimitError extends FormatError {}
/** The file ends before its header says it does. */
export class TruncatedError extends FormatError {}
/** More pixels than the caller's cap (DecodeOptions.maxPixels). */
export class DecompressionBombError extends KpalError {}

export interface Header {
  version: number;
  /** 0 fixed, 1 radix, 2 entropy, 3 context (read by readHeader; decode refuses it). */
  coding: 0 | 1 | 2 | 3;
  codingName: 'fixed' | 'radix' | 'entropy' | 'context';
  bitsPerIndex: number;
  k: number;
  width: number;
  height: number;
  payloadLength: number;
  /** The file length the header implies. */
  fileSize: number;
  /** Version 2 flags; 0 in version 1. */
  flags: number;
  /** Palette entries carry alpha (flags bit 0). */
  alpha: boolean;
  /** Bytes per palette entry: 3 or 4. */
  channels: 3 | 4;
  /** Bytes of metadata blocks; 0 in version 1. */
  metadataLength: number;
  /** Offsets in the file: header length (26 or 31), metadata and payload start. */
  headerSize: number;
  metadataOffset: number;
  payloadOffset: number;
}

/** One metadata block (spec §3.2). */
export interface MetadataBlock {
  type: string;
  data: Uint8Array;
}

export interface DecodeOptions {
  /** Refuse images of more pixels before allocating them (DecompressionBombError);
   *  default DEFAULT_MAX_PIXELS; null or Infinity: no cap. */
  maxPixels?: number | null;
}

/** Size accounting as `kpal info` prints it. */
export interface SizeReport {
  k: number;
  nPixels: number;
  bitsPerIndex: number;
  paletteBits: number;
  indexBits: number;
  /** k*24 + N*b (k*32 with alpha), the fixed-width bound. */
  theoreticalBits: number;
  theoreticalBytes: number;
  /** k*24 + N*log2(k). */
  log2BoundBits: number;
  /** k*24 + N*H(indices), H the order-0 entropy. */
  order0EntropyBits: number;
  onDiskBytes: number;
  payloadBytes: number;
  overheadBytes: number;
  rawBytes: number;
  /** rawBytes / onDiskBytes. */
  ratio: number;
  /** e.g. "16×24 + 16384×4 = 65920 bits". */
  formula: string;
}

/** A decoded image. */
export class KpalImage {
  version: number;
  flags: number;
  alpha: boolean;
  channels: 3 | 4;
  metadataLength: number;
  /** Every metadata block in file order, unknown skippable ones included. */
  metadata: MetadataBlock[];
  /** The iccp block's ICC profile, or null (the palette is then sRGB). */
  iccProfile: Uint8Array | null;
  coding: 0 | 1 | 2 | 3;
  codingName: 'fixed' | 'radix' | 'entropy' | 'context';
  bitsPerIndex: number;
  k: number;
  width: number;
  height: number;
  payloadLength: number;
  fileSize: number;
  /** R, G, B (and A when alpha) of each palette entry: channels*k bytes. */
  palette: Uint8Array;
  /** Palette index of each pixel, row-major: width*height bytes. */
  indices: Uint8Array;
  /** The pixels as RGBA: the palette's straight alpha, or 255. */
  toRGBA(): Uint8ClampedArray;
  /** The pixels as an ImageData (browsers, Deno with a canvas). */
  toImageData(): ImageData;
  sizeReport(): SizeReport;
}

/** Decode a whole file; throws KpalError subclasses on invalid data. */
export function decode(source: KpalSource, options?: DecodeOptions): KpalImage;
/** Check the header (and, with fileSize, the file length) without decoding. */
export function readHeader(source: KpalSource, options?: { fileSize?: number }): Header;
/** Split and check the metadata blocks of a file whose header is valid. */
export function readMetadata(data: Uint8Array, header: Header): MetadataBlock[];
/** CRC-32 (zlib / PNG). */
export function crc32(bytes: Uint8Array): number;
/** ceil(log2 k), 0 for k = 1. */
export function bitsFor(k: number): number;
/** Radix group shape [m, w] for palette size k (spec §6). */
export function groupShape(k: number): [number, number];
/** Payload length a coding implies, or null (entropy). */
export function payloadSize(coding: number, k: number, width: number, height: number): number | null;
/** Fewest lanes an entropy payload of n pixels may have (spec §7.1). */
export function minLanes(n: number): number;
/** Wavefront steps of an image with tiles of 2**tileLog2 (spec §7.2). */
export function nSteps(width: number, height: number, tileLog2: number): number;
