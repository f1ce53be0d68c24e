/**
 * Request ids echoed exactly. JSON.parse turns the id 18446744073709551615
 * into 18446744073709552000 (JavaScript numbers hold 53 bits), so a client
 * that matches answers by id would never see its answer. The server keeps
 * the raw source text of every request and this module finds the text of
 * each request's top-level `"id"` member in it; the answer writes that text
 * back verbatim.
 *
 * @module
 */

/** A numeric id kept as its source text (e.g. "18446744073709551615", "1e3"). */
export class RawNumberId {
  constructor(readonly text: string) {}
  toJSON(): string {
    return this.text;
  }
}

/** A request id as answered: the JSON value, or a number kept as its source text. */
export type RpcId = string | number | null | RawNumberId;

/** The JSON text of `id`: numbers kept as source are written as they came. */
export function idJson(id: RpcId): string {
  return id instanceof RawNumberId ? id.text : JSON.stringify(id);
}

const WS = /[ \t\r\n]/;

/** Index just past the JSON value starting at `i` (text is known to be valid JSON). */
function skipValue(text: string, i: number): number {
  const c = text[i];
  if (c === '"') {
    for (let j = i + 1; j < text.length; j++) {
      if (text[j] === "\\") j++;
      else if (text[j] === '"') return j + 1;
    }
    return text.length;
  }
  if (c === "{" || c === "[") {
    let depth = 0;
    for (let j = i; j < text.length; j++) {
      const d = text[j];
      if (d === '"') j = skipValue(text, j) - 1;
      else if (d === "{" || d === "[") depth++;
      else if ((d === "}" || d === "]") && --depth === 0) return j + 1;
    }
    return text.length;
  }
  let j = i;
  while (j < text.length && !WS.test(text[j]!) && text[j] !== "," && text[j] !== "}" && text[j] !== "]") j++;
  return j;
}

function skipWs(text: string, i: number): number {
  while (i < text.length && WS.test(text[i]!)) i++;
  return i;
}

/**
 * The source text of the `"id"` member of the object starting at `i`, or
 * undefined when it has none (the last one wins, as in JSON.parse).
 */
function objectIdText(text: string, i: number): string | undefined {
  let found: string | undefined;
  let j = skipWs(text, i + 1);
  while (j < text.length && text[j] !== "}") {
    const keyEnd = skipValue(text, j);
    const key = JSON.parse(text.slice(j, keyEnd)) as string;
    j = skipWs(text, keyEnd) + 1; // past ':'
    j = skipWs(text, j);
    const valueEnd = skipValue(text, j);
    if (key === "id") found = text.slice(j, valueEnd);
    j = skipWs(text, valueEnd);
    if (text[j] === ",") j = skipWs(text, j + 1);
  }
  return found;
}

/**
 * The source text of the top-level `"id"` of a request (for an object), or
 * of each element (for a batch array; undefined for elements that are not
 * objects or have no id). `text` must be one valid JSON value.
 */
export function requestIdTexts(text: string): string | undefined | (string | undefined)[] {
  const i = skipWs(text, 0);
  if (text[i] === "{") return objectIdText(text, i);
  if (text[i] !== "[") return undefined;
  const out: (string | undefined)[] = [];
  let j = skipWs(text, i + 1);
  while (j < text.length && text[j] !== "]") {
    out.push(text[j] === "{" ? objectIdText(text, j) : undefined);
    j = skipWs(text, skipValue(text, j));
    if (text[j] === ",") j = skipWs(text, j + 1);
  }
  return out;
}

/**
 * The id to answer with: `parsed` as JSON.parse gave it, except a number
 * whose source text would not survive a round trip through a JavaScript
 * number, which is kept as that text.
 */
export function answerId(parsed: unknown, sourceText: string | undefined): RpcId {
  if (typeof parsed !== "number" || sourceText === undefined) return parsed as RpcId;
  return JSON.stringify(parsed) === sourceText ? parsed : new RawNumberId(sourceText);
}
