// QMP's JSON, read and written as QEMU does (qobject/json-parser.c, qobject/qjson.c), where
// JSON.parse/JSON.stringify differ:
// - a duplicate key is an error ("JSON parse error, duplicate key"), not last-one-wins;
// - an integer keeps its exact value up to the int64/uint64 range (QEMU's QNum): one beyond 2^53
//   becomes a BigInt and is written back digit for digit; beyond 64 bits it is a double, as in QEMU;
// - nesting deeper than MAX_JSON_NESTING is refused before anything is built, so neither the parser
//   nor the writer can run out of stack ("JSON nesting depth limit exceeded", QEMU's json-streamer.c);
// - a "__proto__" key is an ordinary member, never the object's prototype.
// Not taken over from QEMU: its single-quoted strings and %-interpolation (no QMP client needs them).

/** QEMU's MAX_NESTING (qobject/json-streamer.c). */
export const MAX_JSON_NESTING = 1024;

export type JsonValue = null | boolean | number | bigint | string | JsonValue[] | { [key: string]: JsonValue };

/** Input that is not JSON; `message` is the whole QMP error description. */
export class QmpJsonError extends Error {
  override name = 'QmpJsonError';
}

const INT64_MIN = -(2n ** 63n);
const UINT64_MAX = 2n ** 64n - 1n;
const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
const KEYWORD = /[A-Za-z_][A-Za-z0-9_]*/y;
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/** Parses one complete JSON text. Throws QmpJsonError with QEMU's wording. */
export function parseQmpJson(text: string): JsonValue {
  let pos = 0;
  let depth = 0;
  const fail = (what: string): never => {
    throw new QmpJsonError(`JSON parse error, ${what}`);
  };
  const skipWs = () => {
    while (pos < text.length && ' \t\r\n'.includes(text[pos]!)) pos++;
  };
  const enter = () => {
    if (++depth > MAX_JSON_NESTING) throw new QmpJsonError('JSON nesting depth limit exceeded');
  };
  const str = (): string => {
    pos++; // opening quote
    let out = '';
    for (;;) {
      const c = text[pos];
      if (c === undefined) fail('missing closing quote');
      if (c === '"') {
        pos++;
        return out;
      }
      if (c! < ' ') fail(`control character 0x${c!.charCodeAt(0).toString(16).padStart(2, '0')} in string`);
      if (c === '\\') {
        const e = text[pos + 1] ?? '';
        if (e === 'u') {
          const hex = text.slice(pos + 2, pos + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail('invalid \\u escape in string');
          out += String.fromCharCode(Number.parseInt(hex, 16));
          pos += 6;
        } else if (e in ESCAPES) {
          out += ESCAPES[e];
          pos += 2;
        } else {
          fail(`invalid escape '\\${e}' in string`);
        }
        continue;
      }
      out += c;
      pos++;
    }
  };
  const value = (): JsonValue => {
    skipWs();
    const c = text[pos];
    if (c === '{') {
      enter();
      pos++;
      const obj: { [key: string]: JsonValue } = {};
      skipWs();
      if (text[pos] === '}') {
        pos++;
        depth--;
        return obj;
      }
      for (;;) {
        skipWs();
        if (text[pos] !== '"') fail('key is not a string in object');
        const key = str();
        skipWs();
        if (text[pos] !== ':') fail('missing : in object pair');
        pos++;
        if (Object.prototype.hasOwnProperty.call(obj, key)) fail('duplicate key');
        // defineProperty: a "__proto__" key must stay data, not replace the prototype.
        Object.defineProperty(obj, key, { value: value(), enumerable: true, writable: true, configurable: true });
        skipWs();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === '}') {
          pos++;
          depth--;
          return obj;
        }
        fail('expected separator in dict');
      }
    }
    if (c === '[') {
      enter();
      pos++;
      const arr: JsonValue[] = [];
      skipWs();
      if (text[pos] === ']') {
        pos++;
        depth--;
        return arr;
      }
      for (;;) {
        arr.push(value());
        skipWs();
        if (text[pos] === ',') {
          pos++;
          continue;
        }
        if (text[pos] === ']') {
          pos++;
          depth--;
          return arr;
        }
        fail('expected separator in list');
      }
    }
    if (c === '"') return str();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      NUMBER.lastIndex = pos;
      const m = NUMBER.exec(text);
      if (!m) fail('invalid number');
      pos += m![0].length;
      if (m![1] !== undefined || m![2] !== undefined) return Number(m![0]);
      const n = Number(m![0]);
      if (Number.isSafeInteger(n)) return n;
      const big = BigInt(m![0]);
      return big >= INT64_MIN && big <= UINT64_MAX ? big : n;
    }
    KEYWORD.lastIndex = pos;
    const kw = KEYWORD.exec(text)?.[0];
    if (kw !== undefined) {
      pos += kw.length;
      if (kw === 'true') return true;
      if (kw === 'false') return false;
      if (kw === 'null') return null;
      fail(`invalid keyword '${kw}'`);
    }
    if (c === undefined || c === '}' || c === ']' || c === ',') fail('expecting value');
    return fail(`stray '${c}'`);
  };
  const v = value();
  skipWs();
  if (pos < text.length) fail(`unexpected '${text[pos]}' after the JSON value`);
  return v;
}

/** Writes a value in QEMU's layout (`{"a": 1, "b": [2, 3]}`), BigInts exactly. */
export function stringifyQmpJson(v: unknown): string {
  switch (typeof v) {
    case 'bigint':
      return v.toString();
    case 'number':
      return Number.isFinite(v) ? JSON.stringify(v) : 'null';
    case 'string':
    case 'boolean':
      return JSON.stringify(v);
    case 'object': {
      if (v === null) return 'null';
      if (Array.isArray(v)) return `[${v.map((e) => stringifyQmpJson(e === undefined ? null : e)).join(', ')}]`;
      const parts: string[] = [];
      for (const [k, e] of Object.entries(v)) if (e !== undefined) parts.push(`${JSON.stringify(k)}: ${stringifyQmpJson(e)}`);
      return `{${parts.join(', ')}}`;
    }
    default:
      return 'null';
  }
}
