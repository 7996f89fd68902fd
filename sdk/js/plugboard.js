// plugboard's JavaScript SDK: the pieces every adapter needs, so that an adapter only describes
// its family's markers, reads the inside of one call, and renders its prompt.
//
// The contract's types come from wit/v0.2/adapter.wit; componentize-js maps them to JavaScript
// when the component is built (records are objects with camelCase fields, enums are strings,
// variants are `{tag, val}`, `option` is a value or `undefined`, `result` errors are thrown).
// Nothing here repeats those types: the helpers below build values of that shape.
//
// The parsing rules are those of the Rust SDK (sdk/rust), and whole-output parsing is the stream
// parser fed the whole text, so the two can never disagree.

// ---------------------------------------------------------------------------------------------
// Markers in streamed text

/**
 * Finds the earliest marker in `text`. Where two match at one place the longest wins; where a
 * longer one might still match once more text comes, the scan waits. Returns
 * `{start, index, len}` for a whole marker, or `{safe}`: `text.slice(0, safe)` is plain text and
 * the rest may be the start of a marker (nothing is held back when `atEnd`).
 */
export function scan(text, markers, atEnd) {
  // The native indexOf finds each marker's first whole occurrence; only the last positions
  // (closer to the end than the longest marker) can hold the start of a marker still growing.
  // Looking at every position instead costs the interpreter some 30 000 wasm instructions a
  // character. Plain indexed loops: iterators and closures cost as much again in the
  // interpreter.
  const n = markers.length;
  let start = text.length;
  let longest = 0;
  for (let i = 0; i < n; i++) {
    const m = markers[i];
    if (m.length > longest) longest = m.length;
    const at = text.indexOf(m);
    if (at >= 0 && at < start) start = at;
  }
  if (!atEnd) {
    for (let p = text.length > longest ? text.length - longest + 1 : 0; p < text.length && p <= start; p++) {
      const rest = text.slice(p);
      for (let i = 0; i < n; i++) {
        if (markers[i].length > rest.length && markers[i].startsWith(rest)) return { safe: p };
      }
    }
  }
  if (start === text.length) return { safe: start };
  let best = -1;
  for (let i = 0; i < n; i++) {
    const m = markers[i];
    if ((best < 0 || m.length > markers[best].length) && text.startsWith(m, start)) best = i;
  }
  return { start, index: best, len: markers[best].length };
}

// ---------------------------------------------------------------------------------------------
// Events

const WS = /\s/;

/** Text trimmed at both ends while it streams: deltas concatenate to the trimmed whole. */
class TrimmedText {
  constructor() {
    this.started = false;
    this.trailing = '';
  }

  push(text) {
    if (!this.started) text = text.trimStart();
    if (text === '') return '';
    this.started = true;
    const body = text.trimEnd();
    if (body === '') {
      this.trailing += text;
      return '';
    }
    const out = this.trailing + body;
    this.trailing = text.slice(body.length);
    return out;
  }
}

/**
 * Collects the stream events of one generation, keeping the contract's invariants: content and
 * reasoning trimmed, calls numbered, unknown tools reported, empty deltas dropped.
 */
export class Emitter {
  constructor(tools) {
    this.events = [];
    this.text = { content: new TrimmedText(), reasoning: new TrimmedText() };
    this.nextIndex = 0;
    this.offered = (tools || []).map((t) => t.name);
  }

  emitText(tag, text) {
    const out = this.text[tag].push(text);
    if (out === '') return;
    const last = this.events[this.events.length - 1];
    if (last && last.tag === tag) last.val += out;
    else this.events.push({ tag, val: out });
  }

  content(text) {
    this.emitText('content', text);
  }

  reasoning(text) {
    this.emitText('reasoning', text);
  }

  /** Whether any content has been sent (or is held back as trailing whitespace). */
  hasContent() {
    return this.text.content.started;
  }

  callsStarted() {
    return this.nextIndex;
  }

  /** Reserves the index of a new call attempt. */
  startCall() {
    return this.nextIndex++;
  }

  isOffered(name) {
    return this.offered.length === 0 || this.offered.includes(name);
  }

  /** Sends a call's whole name; a name the request did not offer is reported, the call goes on. */
  beginCall(index, id, name) {
    this.events.push({ tag: 'tool-call-begin', val: { index, id, name } });
    if (!this.isOffered(name)) {
      this.problem(
        'unknown-tool',
        `call ${index} names the tool '${name}', which the request did not offer (offered: ${this.offered.join(', ')})`,
        index,
      );
    }
  }

  arguments(index, delta) {
    if (delta === '') return;
    const last = this.events[this.events.length - 1];
    if (last && last.tag === 'tool-call-arguments' && last.val.index === index) last.val.delta += delta;
    else this.events.push({ tag: 'tool-call-arguments', val: { index, delta } });
  }

  endCall(index) {
    this.events.push({ tag: 'tool-call-end', val: index });
  }

  /** `kind` is a problem-kind of the contract, e.g. 'malformed-json'. */
  problem(kind, message, index) {
    this.events.push({ tag: 'problem', val: { kind, message, index } });
  }

  take() {
    const events = this.events;
    this.events = [];
    return events;
  }
}

/** Folds stream events into the whole result: what parse-response returns for the same text. */
export function fold(events) {
  let content = '';
  let reasoning = '';
  const open = new Map();
  const toolCalls = [];
  const problems = [];
  for (const e of events) {
    switch (e.tag) {
      case 'content':
        content += e.val;
        break;
      case 'reasoning':
        reasoning += e.val;
        break;
      case 'tool-call-begin':
        open.set(e.val.index, { id: e.val.id, name: e.val.name, arguments: '' });
        break;
      case 'tool-call-arguments': {
        const call = open.get(e.val.index);
        if (call) call.arguments += e.val.delta;
        break;
      }
      case 'tool-call-end': {
        const call = open.get(e.val);
        if (call) {
          toolCalls.push(call);
          open.delete(e.val);
        }
        break;
      }
      case 'problem':
        problems.push(e.val);
        break;
    }
  }
  return {
    content: content === '' ? undefined : content,
    reasoning: reasoning === '' ? undefined : reasoning,
    toolCalls,
    problems,
  };
}

// ---------------------------------------------------------------------------------------------
// JSON

/** The JSON type of a parsed value, in words. */
function typeName(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/**
 * A call's arguments value as the text of a JSON object: an object stays as written, a JSON
 * string holding an object is decoded once, `null` or nothing is `{}`. Returns `{text}` or
 * `{kind, message}` (kind `malformed-json` or `invalid-arguments`).
 */
export function argumentsText(raw) {
  raw = raw.trim();
  if (raw === '') return { text: '{}' };
  let value;
  try {
    value = JSON.parse(raw);
  } catch (e) {
    return { kind: 'malformed-json', message: `the arguments are not JSON: ${e.message}` };
  }
  if (value === null) return { text: '{}' };
  if (typeName(value) === 'object') return { text: raw };
  if (typeof value === 'string') {
    const inner = value.trim();
    if (inner === '') return { text: '{}' };
    try {
      if (typeName(JSON.parse(inner)) === 'object') return { text: inner };
    } catch (_) {
      // Falls through to the error below.
    }
    return { kind: 'invalid-arguments', message: 'the arguments are a string that does not hold a JSON object' };
  }
  return { kind: 'invalid-arguments', message: `the arguments are a JSON ${typeName(value)}, not an object` };
}

/**
 * Finds where one JSON value ends in streamed text, without decoding it: containers are
 * counted outside strings, so a brace inside a string never confuses it. The value is checked
 * with JSON.parse once it is complete.
 */
export class JsonEnd {
  constructor() {
    this.kind = undefined; // 'container', 'string' or 'scalar' once the value starts
    this.depth = 0;
    this.inString = false;
    this.escape = false;
    this.done = false;
  }

  isEmpty() {
    return this.kind === undefined;
  }

  /**
   * Reads `text`; returns the offset just past the value's end, -1 while it goes on, or -2 when
   * the text cannot start a JSON value.
   */
  feed(text) {
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (this.kind === undefined) {
        if (WS.test(c)) continue;
        if (c === '{' || c === '[') {
          this.kind = 'container';
          this.depth = 1;
        } else if (c === '"') {
          this.kind = 'string';
          this.inString = true;
        } else if (/[-0-9a-z]/.test(c)) {
          this.kind = 'scalar';
        } else {
          return -2;
        }
        continue;
      }
      if (this.inString) {
        if (this.escape) this.escape = false;
        else if (c === '\\') this.escape = true;
        else if (c === '"') {
          this.inString = false;
          if (this.kind === 'string') {
            this.done = true;
            return i + 1;
          }
        }
        continue;
      }
      if (this.kind === 'scalar') {
        if (!/[-+.0-9a-zA-Z]/.test(c)) {
          this.done = true;
          return i;
        }
        continue;
      }
      if (c === '"') this.inString = true;
      else if (c === '{' || c === '[') this.depth++;
      else if (c === '}' || c === ']') {
        this.depth--;
        if (this.depth === 0) {
          this.done = true;
          return i + 1;
        }
      }
    }
    return -1;
  }
}

/**
 * Reads the JSON value that holds one call's arguments, sending an object's text as argument
 * deltas while it arrives. A string holding an object is decoded once and sent whole; `null`
 * means `{}`; anything else is `invalid-arguments`.
 */
export class ArgsReader {
  constructor(index, out) {
    this.index = index;
    this.out = out;
    this.end = new JsonEnd();
    this.raw = '';
  }

  isEmpty() {
    return this.end.isEmpty();
  }

  /** Returns `{more: true}`, `{done: used}` (arguments sent) or `{failed: used}` (problem reported). */
  push(text) {
    const wasObject = this.raw.trimStart().startsWith('{');
    const stop = this.end.feed(text);
    if (stop === -2) {
      this.out.problem('malformed-json', `call ${this.index}: the arguments are not JSON`, this.index);
      return { failed: 0 };
    }
    const piece = stop < 0 ? text : text.slice(0, stop);
    this.raw += piece;
    const isObject = this.raw.trimStart().startsWith('{');
    if (isObject) {
      // Stream the object's text as it comes (from its opening brace on).
      this.out.arguments(this.index, wasObject ? piece : this.raw.trimStart());
    }
    if (stop < 0) return { more: true };
    return this.complete(stop);
  }

  complete(used) {
    const result = argumentsText(this.raw);
    if (result.text === undefined) {
      this.out.problem(result.kind, `call ${this.index}: ${result.message}`, this.index);
      return { failed: used };
    }
    if (!this.raw.trimStart().startsWith('{')) this.out.arguments(this.index, result.text);
    return { done: used };
  }

  /** The output ended: no value at all is `{}`; a started value is `truncated`. Returns whether the call is complete. */
  finish() {
    if (this.end.isEmpty()) {
      this.out.arguments(this.index, '{}');
      return true;
    }
    if (this.end.kind === 'scalar' && !this.end.done) {
      this.end.done = true;
      return 'done' in this.complete(0);
    }
    if (this.end.done) return true;
    this.out.problem('truncated', `call ${this.index}: the output ended inside the arguments`, this.index);
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs that are calls by their whole shape (lenient mode)

const FENCE = '```';

/** The JSON text inside an optional markdown fence, or undefined when it is not one block. */
function unfence(text) {
  text = text.trim();
  if (!text.startsWith(FENCE)) return text;
  const inner = text.slice(3);
  const newline = inner.indexOf('\n');
  if (newline < 0) return undefined;
  const info = inner.slice(0, newline).trim().toLowerCase();
  if (info !== '' && info !== 'json') return undefined;
  const body = inner.slice(newline + 1).trimEnd();
  if (!body.endsWith(FENCE)) return undefined;
  return body.slice(0, -3).trim();
}

/** Whether `prefix` may still grow into one JSON object or list, bare or in a fence. */
export function couldBeJson(prefix) {
  prefix = prefix.trimStart();
  let json = prefix;
  let fenced = false;
  if (prefix.startsWith(FENCE)) {
    const inner = prefix.slice(3);
    const newline = inner.indexOf('\n');
    if (newline < 0) return 'json'.startsWith(inner.trim().toLowerCase());
    const info = inner.slice(0, newline).trim().toLowerCase();
    if (info !== '' && info !== 'json') return false;
    json = inner.slice(newline + 1);
    fenced = true;
  } else if (FENCE.startsWith(prefix)) {
    return true;
  }
  const trimmed = json.trimStart();
  if (trimmed === '') return true;
  if (trimmed[0] !== '{' && trimmed[0] !== '[') return false;
  const end = new JsonEnd();
  const stop = end.feed(trimmed);
  if (stop < 0) return true;
  const tail = trimmed.slice(stop).trim();
  return fenced ? FENCE.startsWith(tail) : tail === '';
}

/** The name and arguments of a call object, `{"function": {…}}` wrappers included. */
function callOf(object) {
  if (typeName(object.function) === 'object') return callOf(object.function);
  if (typeof object.name !== 'string' || object.name.trim() === '') return undefined;
  const key = ['arguments', 'parameters'].find((k) => k in object);
  const args = argumentsText(key === undefined ? '{}' : JSON.stringify(object[key]));
  if (args.text === undefined) return undefined;
  return { name: object.name.trim(), arguments: args.text };
}

/** A whole output as calls of offered tools (lenient mode), or undefined when it is not. */
export function readLenientJson(text, tools) {
  const json = unfence(text);
  if (json === undefined) return undefined;
  let value;
  try {
    value = JSON.parse(json);
  } catch (_) {
    return undefined;
  }
  const objects = Array.isArray(value) ? value : [value];
  if (objects.length === 0 || objects.some((o) => typeName(o) !== 'object')) return undefined;
  const calls = objects.map(callOf);
  if (calls.some((c) => c === undefined || !tools.some((t) => t.name === c.name))) return undefined;
  return calls;
}

// ---------------------------------------------------------------------------------------------
// A call written as a sentence (lenient mode)
//
// "I'll use the run_analysis tool with variables=['var1', 'var2']": small models write this when
// a prompt describes tools in prose. Only a whole output of that one shape is a call, and only
// when it names an offered tool and every argument fits the tool's schema (a property of it, of
// its type and enum, every required one given); anything else stays content, so prose that
// merely mentions a tool is never a call. The rules are the Rust SDK's (sdk/rust/src/natural.rs)
// step for step, so that both read every output alike, whole and while it streams.
//
// The shape: an optional lead-in (`I'll`, `Let me` …), a verb (`use`, `call`, `run`, `invoke`),
// optionally `the`, the tool's name (bare, or in backticks or quotes), optionally `tool` or
// `function`, then `with`, `using` or `:` and `name=value` pairs (Python or JSON literals)
// separated by commas or `and`, or the same pairs in parentheses right after the name; a full
// stop may end it.
//
// Values keep what JSON.parse would lose, so that calls and schema checks come out as in Rust:
// integers are BigInts (exact to 64 bits), floats numbers, objects Maps (in their key order).

const LEADS = ['', "i'll ", 'i’ll ', 'i will ', 'let me ', "i'm going to ", 'i am going to ', "now i'll ", 'i need to '];
const VERBS = ['use ', 'call ', 'run ', 'invoke ', 'using ', 'calling '];
const NOUNS = [' tool', ' function'];
const OPENERS = [' with ', ' using ', ': '];
const SEPARATORS = [', and ', ', ', ' and '];

// How far a text goes toward the shape: `{value}` when the whole text has it, PREFIX when the
// text ends before the shape does (it may still grow into it), NO otherwise.
const PREFIX = 'prefix';
const NO = 'no';
const isWhole = (read) => read !== PREFIX && read !== NO;

/** ASCII letters lowered only, as Rust's `eq_ignore_ascii_case` compares. */
const lower = (text) => text.replace(/[A-Z]/g, (c) => c.toLowerCase());

/** Whether the output so far may still become a call written as a sentence (while streaming). */
export function couldBeNatural(text) {
  return readSentence(text.trimStart(), false) !== NO;
}

/** The output as a call of an offered tool whose arguments fit its schema, or undefined. */
export function readNatural(text, tools) {
  const read = readSentence(text.trim(), true);
  if (!isWhole(read)) return undefined;
  const { name, args } = read.value;
  const tool = tools.find((t) => t.name === name);
  if (!tool || !fits(args, schemaOf(tool))) return undefined;
  return [{ name, arguments: toJson(args) }];
}

/**
 * Reads the sentence: `{value: {name, args}}`. `complete`: the text is the whole output (a word
 * at its end is not cut short).
 */
function readSentence(text, complete) {
  let best = NO;
  // Every lead-in and verb that the text starts with (or could still start with).
  for (const lead of LEADS) {
    for (const verb of VERBS) {
      for (const article of ['the ', '']) {
        const head = lead + verb + article;
        if (text.length < head.length) {
          if (lower(text) === head.slice(0, text.length)) best = PREFIX;
          continue;
        }
        if (lower(text.slice(0, head.length)) !== head) continue;
        const read = afterVerb(new Cursor(text.slice(head.length), complete));
        if (isWhole(read)) return read;
        if (read === PREFIX) best = PREFIX;
      }
    }
  }
  return best;
}

function afterVerb(s) {
  const quote = ['`', '"', "'"].find((q) => q === s.text[s.at]);
  if (quote) s.at++;
  const start = s.at;
  s.takeWhile(/[A-Za-z0-9_.-]/);
  const name = s.text.slice(start, s.at).replace(/\.+$/, '');
  s.at = start + name.length;
  if (s.atEnd()) return PREFIX;
  if (name === '') return NO;
  if (quote) {
    if (!s.eat(quote)) return NO;
    if (s.atEnd()) return PREFIX;
  }
  const named = (read) => (isWhole(read) ? { value: { name, args: read.value } } : read);
  if (s.eat('(')) return named(pairs(s, ')'));
  if (s.oneOf(NOUNS, true) === PREFIX) return PREFIX;
  const opener = s.oneOf(OPENERS, true);
  if (!isWhole(opener)) return opener;
  return named(pairs(s, undefined));
}

/** `name=value` pairs to the end of the text (or to `close`), then an optional full stop: a Map. */
function pairs(s, close) {
  const args = new Map();
  for (;;) {
    s.skipSpaces();
    if (s.atEnd()) return PREFIX;
    // (A closing parenthesis after a separator is eaten too, as in Rust; the key after it fails.)
    if (close && s.eat(close) && args.size === 0) return end(s, args);
    const start = s.at;
    s.takeWhile(/[A-Za-z0-9_]/);
    const key = s.text.slice(start, s.at);
    s.skipSpaces();
    if (s.atEnd()) return PREFIX;
    if (key === '' || !s.eat('=') || args.has(key)) return NO;
    s.skipSpaces();
    const value = readLiteral(s);
    if (!isWhole(value)) return value;
    args.set(key, value.value);
    // Complete as it is, or the start of what follows.
    if (s.atEnd()) return close ? PREFIX : { value: args };
    if (close && s.eat(close)) return end(s, args);
    const separator = s.oneOf(SEPARATORS, false);
    if (separator === PREFIX) return PREFIX;
    if (separator === NO) return end(s, args);
  }
}

/** After the arguments: a full stop and blank space, nothing else. */
function end(s, value) {
  const rest = s.rest().trimEnd();
  return rest === '' || rest === '.' ? { value } : NO;
}

/**
 * A Python or JSON literal: a string, a number, `True`/`true`, `False`/`false`, `None`/`null`, a
 * list or a dict of them.
 */
function readLiteral(s) {
  const first = s.text[s.at];
  if (first === undefined) return PREFIX;
  if (first === '"' || first === "'") return string(s, first);
  if (first === '[') {
    s.at++;
    const items = [];
    for (;;) {
      s.skipSpaces();
      if (s.atEnd()) return PREFIX;
      if (s.eat(']')) return { value: items };
      if (items.length > 0) {
        if (!s.eat(',')) return NO;
        s.skipSpaces();
        if (s.eat(']')) return { value: items };
      }
      const item = readLiteral(s);
      if (!isWhole(item)) return item;
      items.push(item.value);
    }
  }
  if (first === '{') {
    s.at++;
    const object = new Map();
    for (;;) {
      s.skipSpaces();
      if (s.atEnd()) return PREFIX;
      if (s.eat('}')) return { value: object };
      if (object.size > 0) {
        if (!s.eat(',')) return NO;
        s.skipSpaces();
      }
      const q = s.text[s.at];
      if (q === undefined) return PREFIX;
      if (q !== '"' && q !== "'") return NO;
      const key = string(s, q);
      if (!isWhole(key)) return key;
      s.skipSpaces();
      if (s.atEnd()) return PREFIX;
      if (!s.eat(':')) return NO;
      s.skipSpaces();
      const value = readLiteral(s);
      if (!isWhole(value)) return value;
      object.set(key.value, value.value);
    }
  }
  const start = s.at;
  s.takeWhile(/[A-Za-z0-9.+_-]/);
  let word = s.text.slice(start, s.at);
  // A word cut by the end of the text may still grow.
  if (s.atEnd() && !s.complete) return PREFIX;
  // A full stop that ends the output ends the sentence, not the number.
  if (word.endsWith('.') && s.rest().trim() === '') {
    word = word.slice(0, -1);
    s.at--;
  }
  if (word === 'True' || word === 'true') return { value: true };
  if (word === 'False' || word === 'false') return { value: false };
  if (word === 'None' || word === 'null') return { value: null };
  const n = number(word);
  return n === undefined ? NO : { value: n };
}

/** A number as Rust parses it: an i64 (a BigInt), else a finite f64; undefined when it is none. */
function number(word) {
  if (/^[+-]?[0-9]+$/.test(word)) {
    const i = BigInt(word);
    if (i >= -(2n ** 63n) && i < 2n ** 63n) return i;
  }
  // Rust's float syntax (Number() also takes hex, `Infinity` and blank space).
  if (!/^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/.test(word)) return undefined;
  const f = Number(word);
  return Number.isFinite(f) ? f : undefined;
}

/** A quoted string with backslash escapes (`\n`, `\t`, `\\`, the quote). */
function string(s, quote) {
  let out = '';
  for (let i = s.at + 1; i < s.text.length; i++) {
    const c = s.text[i];
    if (c === quote) {
      s.at = i + 1;
      return { value: out };
    }
    if (c !== '\\') {
      out += c;
    } else if (++i < s.text.length) {
      const e = s.text[i];
      out += e === 'n' ? '\n' : e === 't' ? '\t' : e;
    }
  }
  return PREFIX;
}

class Cursor {
  constructor(text, complete) {
    this.text = text;
    this.at = 0;
    // The text is the whole output.
    this.complete = complete;
  }

  rest() {
    return this.text.slice(this.at);
  }

  atEnd() {
    return this.at >= this.text.length;
  }

  eat(word) {
    const ok = this.text.startsWith(word, this.at);
    if (ok) this.at += word.length;
    return ok;
  }

  skipSpaces() {
    while (this.text[this.at] === ' ') this.at++;
  }

  takeWhile(re) {
    while (this.at < this.text.length && re.test(this.text[this.at])) this.at++;
  }

  /**
   * Eats the first of `words` (lower case) the text starts with, in any case when `ci`; PREFIX
   * when the text ends inside one.
   */
  oneOf(words, ci) {
    const rest = this.rest();
    let prefix = false;
    for (const word of words) {
      const head = rest.slice(0, word.length);
      if (head.length === word.length && (ci ? lower(head) : head) === word) {
        this.at += word.length;
        return { value: word };
      }
      // Any case here, also where the match is exact: as in Rust.
      prefix ||= rest.length < word.length && lower(rest) === word.slice(0, rest.length);
    }
    return prefix ? PREFIX : NO;
  }
}

// The schema check, on the values above.

const field = (schema, key) => (schema instanceof Map ? schema.get(key) : undefined);

/**
 * Whether `args` fit `schema`: every argument a property of it, of its type and in its enum;
 * every required property given.
 */
function fits(args, schema) {
  const properties = field(schema, 'properties');
  const required = field(schema, 'required');
  if (Array.isArray(required) && required.some((name) => typeof name === 'string' && !args.has(name))) return false;
  return [...args].every(([name, value]) => {
    const property = properties instanceof Map ? properties.get(name) : undefined;
    return property !== undefined && valueFits(value, property);
  });
}

function valueFits(value, schema) {
  const options = field(schema, 'enum');
  if (Array.isArray(options) && !options.some((option) => same(option, value))) return false;
  const type = field(schema, 'type');
  let types;
  if (typeof type === 'string') types = [type];
  else if (Array.isArray(type)) types = type.filter((t) => typeof t === 'string');
  else return true;
  return types.some((t) => {
    switch (t) {
      case 'string':
        return typeof value === 'string';
      case 'boolean':
        return typeof value === 'boolean';
      case 'null':
        return value === null;
      case 'number':
        return typeof value === 'number' || typeof value === 'bigint';
      case 'integer':
        return typeof value === 'bigint';
      case 'array': {
        const items = field(schema, 'items');
        return Array.isArray(value) && (items === undefined || value.every((v) => valueFits(v, items)));
      }
      case 'object':
        return (
          value instanceof Map &&
          ((field(schema, 'properties') === undefined && field(schema, 'required') === undefined) || fits(value, schema))
        );
      default:
        return false;
    }
  });
}

/** JSON equality as serde_json has it: an integer never equals a float; key order does not count. */
function same(a, b) {
  if (a instanceof Map) {
    return b instanceof Map && a.size === b.size && [...a].every(([k, v]) => b.has(k) && same(v, b.get(k)));
  }
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((v, i) => same(v, b[i]));
  return a === b;
}

/** A tool's parameters schema as the values above; `{}` when it is not a JSON object. */
function schemaOf(tool) {
  let schema;
  try {
    schema = jsonValue(tool.parameters);
  } catch (_) {
    return new Map();
  }
  return schema instanceof Map ? schema : new Map();
}

/** A JSON text as the values above (numbers typed as serde_json types them); throws when it is not JSON. */
function jsonValue(text) {
  JSON.parse(text);
  // Valid JSON: its strings, words and brackets say all (commas and colons add nothing).
  const tokens = text.match(/"(?:[^"\\]|\\.)*"|[^\s"[\]{},:]+|[[\]{}]/g);
  let i = 0;
  const next = () => {
    const token = tokens[i++];
    if (token === '[') {
      const items = [];
      while (tokens[i] !== ']') items.push(next());
      i++;
      return items;
    }
    if (token === '{') {
      const object = new Map();
      while (tokens[i] !== '}') {
        const key = JSON.parse(tokens[i++]);
        object.set(key, next());
      }
      i++;
      return object;
    }
    if (/^-?[0-9]+$/.test(token) && token !== '-0') {
      // An integer in u64 or i64 is one; a larger one (and -0) serde_json reads as a float.
      const n = BigInt(token);
      if (n >= -(2n ** 63n) && n < 2n ** 64n) return n;
    }
    return JSON.parse(token);
  };
  return next();
}

/** Compact JSON text of a value, as serde_json writes it. */
function toJson(value) {
  if (value instanceof Map) return `{${[...value].map(([k, v]) => `${JSON.stringify(k)}:${toJson(v)}`).join(',')}}`;
  if (Array.isArray(value)) return `[${value.map(toJson).join(',')}]`;
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') return floatText(value);
  return JSON.stringify(value);
}

/**
 * A float as serde_json writes it: the shortest digits that read back as x, in fixed notation for
 * exponents -5 to 15 (`1.0`, `0.05`), else as `toExponential` writes them (`2.5e+20`, `1.5e-7`).
 */
function floatText(x) {
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const scientific = Math.abs(x).toExponential();
  const [mantissa, exponent] = scientific.split('e');
  const digits = mantissa.replace('.', '');
  const e = Number(exponent);
  let text;
  if (e < -5 || e > 15) text = scientific;
  else if (digits.length <= e + 1) text = `${digits}${'0'.repeat(e + 1 - digits.length)}.0`;
  else if (e >= 0) text = `${digits.slice(0, e + 1)}.${digits.slice(e + 1)}`;
  else text = `0.${'0'.repeat(-e - 1)}${digits}`;
  return x < 0 ? `-${text}` : text;
}

// ---------------------------------------------------------------------------------------------
// The stream parser

// Lenient mode's rules for a whole output, in the Rust SDK's order: JSON calls, then a sentence.
const couldBeWholeCalls = (text) => couldBeJson(text) || couldBeNatural(text);
const readWholeCalls = (text, tools) => readLenientJson(text, tools) ?? readNatural(text, tools);

/**
 * A complete stream parser from a description of a family's output format:
 * `{reasoning: [open, close] | undefined, endOfTurn: [..], calls: [{open, body: (out) => body}]}`.
 * A call body reads the text after its opening marker: `body.push(text, atEnd)` returns
 * `{more: true}` or `{rest}` (the text after the call, read as output again).
 *
 * It keeps the contract's rules: reasoning split off first (a call inside closed reasoning is
 * reasoning), explicit call markup is a call anywhere, also inside a markdown fence (the fence
 * goes too), end-of-turn markers removed, content trimmed, markers split across chunks held
 * back, and with `options.lenient` an output that is nothing but a JSON call is a call, as is a
 * ```json fence in prose whose whole body is calls naming offered tools (the prose around stays
 * content; the fence is held back until it closes), and an output that is nothing but a call
 * written as a sentence (held back while it may still become one).
 */
export class OutputParser {
  constructor(spec, options) {
    this.spec = spec;
    this.options = options;
    this.out = new Emitter(options.tools);
    this.pending = '';
    this.mode = spec.reasoning && options.reasoningOpen ? 'reasoning' : 'content';
    this.body = undefined;
    this.fenceHeld = '';
    this.inFence = false;
    this.markers = [];
    this.actions = [];
    if (spec.reasoning) {
      this.markers.push(spec.reasoning[0]);
      this.actions.push({ reasoning: true });
    }
    spec.calls.forEach((call) => {
      this.markers.push(call.open);
      this.actions.push({ call });
    });
    for (const eot of spec.endOfTurn) {
      this.markers.push(eot);
      this.actions.push({ endOfTurn: true });
    }
    this.markers.push(FENCE);
    this.actions.push({ fence: true });
    this.reasoningClose = spec.reasoning ? [spec.reasoning[1], ...spec.endOfTurn] : [];
    this.callOpeners = spec.calls.map((c) => c.open);
    this.wholeDecided = !options.lenient;
  }

  push(delta) {
    this.pending += delta;
    this.drive(false);
    return this.out.take();
  }

  finish() {
    this.drive(true);
    if (this.mode === 'fence') this.out.content(this.fenceHeld);
    this.mode = 'content';
    return this.out.take();
  }

  /** The text without surrounding whitespace and end-of-turn markers at its end. */
  wholeText(text, atEnd) {
    let t = text.trim();
    for (let changed = true; changed; ) {
      changed = false;
      for (const eot of this.spec.endOfTurn) {
        if (t.endsWith(eot)) {
          t = t.slice(0, -eot.length).trimEnd();
          changed = true;
        }
      }
    }
    if (!atEnd) {
      for (const eot of this.spec.endOfTurn) {
        for (let cut = eot.length - 1; cut > 0; cut--) {
          if (t.endsWith(eot.slice(0, cut))) return t.slice(0, t.length - cut).trimEnd();
        }
      }
    }
    return t;
  }

  drive(atEnd) {
    for (;;) {
      switch (this.mode) {
        case 'content': {
          if (!this.wholeDecided) {
            if (!this.decideWhole(atEnd)) return;
            if (this.mode === 'whole') continue;
          }
          if (this.inFence && !this.closeFence(atEnd)) return;
          const s = scan(this.pending, this.markers, atEnd);
          if (s.safe !== undefined) {
            this.out.content(this.pending.slice(0, s.safe));
            this.pending = this.pending.slice(s.safe);
            return;
          }
          this.out.content(this.pending.slice(0, s.start));
          this.pending = this.pending.slice(s.start + s.len);
          const action = this.actions[s.index];
          if (action.reasoning) this.mode = 'reasoning';
          else if (action.call) {
            this.mode = 'call';
            this.body = action.call.body(this.out);
          } else if (action.fence) {
            this.mode = 'fence';
            this.fenceHeld = this.markers[s.index];
          }
          break;
        }
        case 'reasoning': {
          const s = scan(this.pending, this.reasoningClose, atEnd);
          if (s.safe !== undefined) {
            this.out.reasoning(this.pending.slice(0, s.safe));
            this.pending = this.pending.slice(s.safe);
            return;
          }
          this.out.reasoning(this.pending.slice(0, s.start));
          this.pending = this.pending.slice(s.start + s.len);
          // Index 0 closes the reasoning; the others are end-of-turn markers, removed.
          if (s.index === 0) this.mode = 'content';
          break;
        }
        case 'call': {
          const text = this.pending;
          this.pending = '';
          if (text === '' && !atEnd) return;
          const step = this.body.push(text, atEnd);
          if (step.rest === undefined) {
            if (atEnd) this.mode = 'content';
            return;
          }
          this.pending = step.rest;
          this.mode = 'content';
          break;
        }
        case 'fence': {
          // The fence's info string, its line break and blank space, then a call?
          const newline = this.pending.indexOf('\n');
          const info = newline < 0 ? this.pending : this.pending.slice(0, newline);
          const infoOk = info.length < 16 && !info.includes(' ');
          if (newline < 0) {
            if (atEnd || !infoOk) {
              this.out.content(this.fenceHeld);
              this.fenceHeld = '';
              this.mode = 'content';
              continue;
            }
            return;
          }
          const after = this.pending.slice(newline + 1).trimStart();
          const s = scan(after, this.callOpeners, atEnd);
          if (s.start === 0) {
            this.pending = after;
            this.inFence = true;
            this.mode = 'content';
          } else if (s.safe === 0 && !atEnd) {
            return;
          } else if (this.options.lenient && infoOk && (after[0] === '{' || after[0] === '[')) {
            // Perhaps calls written as JSON in the fence: held from the info line on. (The info
            // line is judged as above, where its line break has not come yet, so that a whole
            // output and its stream agree.)
            this.mode = 'fencedCalls';
          } else {
            this.out.content(this.fenceHeld + this.pending.slice(0, newline + 1));
            this.fenceHeld = '';
            this.pending = this.pending.slice(newline + 1);
            this.mode = 'content';
          }
          break;
        }
        case 'fencedCalls': {
          // The pending text starts with the fence's info line; the body follows it, up to the
          // first closing fence.
          const newline = this.pending.indexOf('\n');
          const body = newline < 0 ? this.pending.length : newline + 1;
          const found = this.pending.indexOf(FENCE, body);
          const upto = found < 0 ? this.pending.length : found;
          const fenceEnd = found < 0 ? upto : found + FENCE.length;
          if (couldBeJson(this.fenceHeld + this.pending.slice(0, fenceEnd))) {
            if (found < 0 && !atEnd) return;
            const calls = readLenientJson(this.pending.slice(body, upto).trim(), this.options.tools);
            if (calls) {
              // The fence and its closing line are part of the calls; what follows is output.
              this.emitCalls(calls);
              this.pending = this.pending.slice(fenceEnd);
              this.fenceHeld = '';
              this.mode = 'content';
              break;
            }
          }
          // Not calls: the opener is content, and the rest, info line included, is read again.
          this.out.content(this.fenceHeld);
          this.fenceHeld = '';
          this.mode = 'content';
          break;
        }
        case 'whole': {
          const text = this.wholeText(this.pending, atEnd);
          if (atEnd) {
            const calls = readWholeCalls(text, this.options.tools);
            if (calls) {
              this.emitCalls(calls);
              this.pending = '';
              return;
            }
          } else if (couldBeWholeCalls(text)) {
            return;
          }
          // Not calls after all: read it as ordinary output.
          this.mode = 'content';
          this.wholeDecided = true;
          break;
        }
      }
    }
  }

  /** Sends calls read whole (lenient JSON or a sentence), each complete. */
  emitCalls(calls) {
    for (const call of calls) {
      const index = this.out.startCall();
      this.out.beginCall(index, undefined, call.name);
      this.out.arguments(index, call.arguments);
      this.out.endCall(index);
    }
  }

  /** Looks at the start of the content for a whole-output shape; false while it cannot tell. */
  decideWhole(atEnd) {
    const text = this.pending.trimStart();
    if (text === '' && !atEnd) return false;
    if (this.out.hasContent() || this.out.callsStarted() > 0) {
      this.wholeDecided = true;
      return true;
    }
    if (this.spec.reasoning) {
      const open = this.spec.reasoning[0];
      if (text.startsWith(open)) return true;
      if (open.startsWith(text) && !atEnd) return false;
    }
    if (couldBeWholeCalls(this.wholeText(text, atEnd))) this.mode = 'whole';
    else this.wholeDecided = true;
    return true;
  }

  /** After calls inside a markdown fence: drops the fence's closing line; false while it cannot tell. */
  closeFence(atEnd) {
    const text = this.pending.trimStart();
    if (text === '') {
      if (atEnd) this.inFence = false;
      return atEnd;
    }
    if (text.startsWith(FENCE)) {
      this.pending = text.slice(3);
      this.inFence = false;
      return true;
    }
    if (FENCE.startsWith(text) && !atEnd) return false;
    const s = scan(text, this.callOpeners, atEnd);
    if (s.start === 0) return true;
    if (s.safe === 0 && !atEnd) return false;
    this.inFence = false;
    return true;
  }
}

// ---------------------------------------------------------------------------------------------
// Prompts

/** ChatML: `<|im_start|>ROLE\nTEXT<|im_end|>\n` per message, then the assistant's opening. */
export function chatml(messages, addGenerationPrompt) {
  let out = '';
  for (const m of messages) out += `<|im_start|>${m.role}\n${m.content ?? ''}<|im_end|>\n`;
  if (addGenerationPrompt) out += '<|im_start|>assistant\n';
  return out;
}

/**
 * A tool in OpenAI's shape, `{"type":"function","function":{"name","description","parameters"}}`,
 * as compact JSON text. The host hands the schema over as compact JSON text, which is kept as
 * written (key order included).
 */
export function toolJson(tool) {
  let parameters = tool.parameters;
  try {
    JSON.parse(parameters);
  } catch (_) {
    parameters = JSON.stringify(parameters);
  }
  const description = tool.description === undefined || tool.description === null ? '' : `,"description":${JSON.stringify(tool.description)}`;
  return `{"type":"function","function":{"name":${JSON.stringify(tool.name)}${description},"parameters":${parameters}}}`;
}

/** Compact JSON text of a JSON text (earlier calls' arguments), or the text as a JSON string. */
export function compactJson(text) {
  try {
    return JSON.stringify(JSON.parse(text));
  } catch (_) {
    return JSON.stringify(text);
  }
}

/** A plain text message. */
export function textMessage(role, content) {
  return { role, content, reasoning: undefined, toolCalls: [], toolCallId: undefined, name: undefined };
}

// ---------------------------------------------------------------------------------------------
// Call grammars (contract 0.2)
//
// A family's call syntax as a grammar in llguidance's Lark dialect, so that the host can hold
// generated calls to it. The host defines one rule per offered tool, `args0`, `args1`, …
// (`argsRule`): that tool's arguments as a JSON object valid against its schema. An adapter only
// says what surrounds them; `CallSyntax.grammar` writes the whole grammar for any tool_choice
// (the same rules as the Rust SDK's `grammar` module, so the same syntax gives the same grammar).
// The invariant each adapter keeps: every text its grammar accepts is read by its own parser as
// exactly the calls it encodes, with no problem.

/** The rule the host defines for the arguments of the `index`th offered tool. */
export const argsRule = (index) => `args${index}`;

/** `text` as a Lark string literal (a JSON string is one: the same quotes and escapes). */
export const literal = (text) => JSON.stringify(text);

/** A trigger anywhere in the output. */
export const trigger = (text) => ({ text, atStart: false });

/**
 * A marker as the grammar must name it: by id when the model has it as a control token (text
 * never produces one), as a literal otherwise.
 */
export function marker(request, text) {
  const token = request.controlTokens.find((t) => t.text === text);
  return token === undefined ? literal(text) : `<[${token.id}]>`;
}

/**
 * One call as a JSON object naming the tool then giving its arguments, written as Python's
 * `json.dumps` writes it: `{"name": "get_weather", "arguments": {…}}` (`nameKey` and `argsKey`
 * name the two members; `args` is the tool's arguments rule).
 */
export function jsonEnvelope(tool, args, nameKey, argsKey) {
  const head = `{${literal(nameKey)}: ${literal(tool.name)}, ${literal(argsKey)}: `;
  return `${literal(head)} ${args} "}"`;
}

/**
 * The tools a call may name under the request's tool_choice, as `[index, tool]` pairs (the
 * index among all offered tools names the arguments rule).
 */
export function callable(request) {
  const choice = request.toolChoice;
  return request.tools
    .map((tool, index) => [index, tool])
    .filter(([, tool]) => (choice.tag === 'function' ? tool.name === choice.val : choice.tag !== 'none'));
}

/**
 * How a family writes one call, and how calls follow each other:
 * - `call(tool, args)`: the Lark expression of one call of `tool` whose arguments rule is
 *   `args`, or undefined for a tool whose name the format cannot carry (the grammar leaves it out);
 * - `separator`: between two calls of a parallel turn (a Lark expression; `''` for none);
 * - `list`: `[open, close]` Lark expressions around all the calls of a turn, for families that
 *   write their calls as one list; undefined where each call has markers of its own;
 * - `triggers`: texts that start a call (or the list) in free output (see `trigger`);
 * - `reasoning`: the family's `[open, close]` reasoning markers, if it reasons.
 */
export class CallSyntax {
  constructor({ call, separator = '', list = undefined, triggers = [], reasoning = undefined }) {
    Object.assign(this, { call, separator, list, triggers, reasoning });
  }

  /**
   * The grammar for this request (the value `callGrammar` returns), or undefined when no call
   * may be made. tool_choice `auto` applies it from a trigger on, one call (or one list) at a
   * time; `required` or a named function from the first token, for the whole output.
   */
  grammar(request) {
    const alternatives = callable(request)
      .map(([index, tool]) => this.call(tool, argsRule(index)))
      .filter((alternative) => alternative != null);
    if (alternatives.length === 0) return undefined;
    const auto = request.toolChoice.tag === 'auto';
    let grammar = `call: ${alternatives.join('\n    | ')}\n`;
    const calls = request.parallelToolCalls ? `call (${this.separator} call)*` : 'call';
    let body;
    if (this.list) body = `${this.list[0]} ${calls} ${this.list[1]}`;
    // With a trigger per call, the host waits for the next trigger after each one.
    else if (auto) body = 'call';
    // A separator may also end the turn: a model that writes one after its last call is not
    // forced into another call.
    else if (request.parallelToolCalls && this.separator !== '') body = `${calls} (${this.separator})?`;
    else body = calls;
    let start;
    if (auto) {
      grammar += `start: ${body}\n`;
      start = { tag: 'on-trigger', val: this.triggers };
    } else {
      if (this.reasoning && request.reasoningOpen) {
        // The prompt opened reasoning: it ends (its close marker) before the calls.
        grammar += `start: reasoning /[ \\t\\r\\n]*/ ${body}\nreasoning[suffix=${literal(this.reasoning[1])}]: /(?s:.*)/\n`;
      } else {
        grammar += `start: ${body}\n`;
      }
      start = { tag: 'from-start' };
    }
    return { grammar, start, reasoning: this.reasoning ? [this.reasoning[0], this.reasoning[1]] : undefined };
  }
}

// ---------------------------------------------------------------------------------------------
// Exporting an adapter

/**
 * The object to export as `adapter` (the WIT interface): from `info()`, `formatPrompt(request)`,
 * `parser(options)` (a new stream parser with `push(delta)` and `finish()`) and, optionally,
 * `callGrammar(request)` (the family's call syntax as a grammar, usually
 * `new CallSyntax({…}).grammar(request)`; without it the adapter has none and its calls are
 * checked after generation only). Whole-output parsing is the stream parser fed the whole text.
 * Throw an `AdapterError` value (e.g. `invalidRequest('…')`) to refuse a call.
 */
export function defineAdapter({ info, formatPrompt, parser, callGrammar = () => undefined }) {
  class StreamParser {
    constructor(options) {
      this.inner = parser(options);
    }

    push(delta) {
      return this.inner.push(delta);
    }

    finish() {
      return this.inner.finish();
    }
  }
  const parseResponse = (text, options) => {
    const p = parser(options);
    return fold([...p.push(text), ...p.finish()]);
  };
  return {
    info,
    formatPrompt,
    parseResponse,
    extractToolCalls: (text, options) => parseResponse(text, options).toolCalls,
    callGrammar,
    StreamParser,
  };
}

/** The adapter-error variants, as values to throw. */
export const invalidRequest = (message) => ({ tag: 'invalid-request', val: message });
export const malformedOutput = (message) => ({ tag: 'malformed-output', val: message });
export const unsupported = (message) => ({ tag: 'unsupported', val: message });
