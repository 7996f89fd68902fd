// tool-use, in JavaScript: tool calling for models that have no tool format of their own. The
// system prompt lists the tools and asks for calls written as
//
//   <tool_use>
//   tool_name: get_weather
//   arguments: {"city": "Paris"}
//   </tool_use>
//
// and the parser reads those blocks back, streaming the arguments as they are generated. It is
// the same adapter as the built-in Rust one (plugins/tool-use): it passes the same fixtures and
// gives the same call grammar, byte for byte; a file named tool-use.wasm in the plugin folder
// replaces the built-in.

import {
  ArgsReader,
  CallSyntax,
  OutputParser,
  chatml,
  compactJson,
  defineAdapter,
  invalidRequest,
  literal,
  scan,
  textMessage,
  toolJson,
  trigger,
} from './plugboard.js';

const OPEN = '<tool_use>';
const CLOSE = '</tool_use>';
const END_OF_TURN = ['<|im_end|>', '<|endoftext|>'];
const NAME_LABELS = ['tool_name:', 'name:'];
const ARGS_LABEL = 'arguments:';

/** The text after one of `labels` at the start of `text` (any case), or undefined. */
function stripLabel(text, labels) {
  for (const label of labels) {
    if (text.slice(0, label.length).toLowerCase() === label) return text.slice(label.length);
  }
  return undefined;
}

/** Whether `text` may still grow into one of `labels`. */
function mayBecome(text, labels) {
  return labels.some((l) => l.length > text.length && l.startsWith(text.toLowerCase()));
}

/**
 * How the text after an opening marker starts: 'block' with what a block may start with (a
 * label, a bare `{` or `"`, the closing marker), 'undecided' when empty or a beginning of one of
 * those, 'prose' with none of it (no call follows the marker).
 */
function blockStart(text) {
  text = text.trimStart();
  if (text === '') return 'undecided';
  if (text[0] === '{' || text[0] === '"') return 'block';
  let start = 'prose';
  for (const label of [...NAME_LABELS, ARGS_LABEL, CLOSE]) {
    const n = Math.min(label.length, text.length);
    if (text.slice(0, n).toLowerCase() === label.slice(0, n)) {
      if (n === label.length) return 'block';
      start = 'undecided';
    }
  }
  return start;
}

const firstOf = (text, needles) =>
  needles.map((n) => text.indexOf(n)).filter((i) => i >= 0).reduce((a, b) => Math.min(a, b), Infinity);

/** One `<tool_use>` block: `tool_name: NAME`, then `arguments: {JSON}`, then `</tool_use>`. */
class ToolUseBody {
  constructor(out) {
    this.out = out;
    // Taken once a block is known to follow: a marker in prose takes none.
    this.index = undefined;
    this.phase = 'name';
    this.buf = '';
    this.reader = undefined;
  }

  push(text, atEnd) {
    this.buf += text;
    let step = this.run(false);
    if (step.more && atEnd) step = this.run(true);
    return step;
  }

  fail(kind, message) {
    this.out.problem(kind, `call ${this.index}: ${message}`, this.index);
    this.phase = 'skip';
  }

  run(atEnd) {
    const out = this.out;
    if (this.phase === 'name') {
      const start = blockStart(this.buf);
      if (start === 'prose') {
        // The marker stands in prose (`write a <tool_use> block`): it and all that follows are
        // output again, and no call index is taken.
        out.content(OPEN);
        const rest = this.buf;
        this.buf = '';
        return { rest };
      }
      if (start === 'undecided' && !atEnd) return { more: true };
    }
    if (this.index === undefined) this.index = out.startCall();
    const index = this.index;
    for (;;) {
      switch (this.phase) {
        case 'name': {
          const text = this.buf.trimStart();
          const s = scan(text, [CLOSE], atEnd);
          if (s.start === 0) {
            this.fail('missing-name', 'the block has no tool_name');
            continue;
          }
          const afterLabel = stripLabel(text, NAME_LABELS);
          if (afterLabel === undefined) {
            if (text === '' || mayBecome(text, NAME_LABELS)) {
              if (atEnd) this.fail('truncated', 'the output ended before the tool name');
              return { more: true };
            }
            this.fail('missing-name', "the block does not start with 'tool_name:'");
            continue;
          }
          const after = afterLabel.replace(/^[ \t]+/, '');
          // The name ends with its line, or where the arguments or the closing marker start.
          const end = firstOf(after, ['\n', '\r', ARGS_LABEL, CLOSE, '{']);
          if (end === Infinity) {
            if (atEnd) this.fail('truncated', 'the output ended on the tool_name line');
            return { more: true };
          }
          const name = after.slice(0, end).trim().replace(/^["`']+|["`']+$/g, '');
          this.buf = after.slice(end);
          if (name === '') {
            this.fail('missing-name', 'the tool_name is empty');
            continue;
          }
          out.beginCall(index, undefined, name);
          this.phase = 'label';
          break;
        }
        case 'label': {
          const text = this.buf.trimStart();
          let args = stripLabel(text, [ARGS_LABEL]);
          if (args === undefined && text.startsWith('{')) args = text;
          if (args !== undefined) {
            this.buf = args;
            this.reader = new ArgsReader(index, out);
            this.phase = 'args';
            continue;
          }
          const s = scan(text, [CLOSE], atEnd);
          if (s.start === 0) {
            // No arguments inside a closed block: `{}`.
            out.arguments(index, '{}');
            out.endCall(index);
            this.buf = '';
            return { rest: text.slice(s.len) };
          }
          if (text === '') {
            if (atEnd) this.fail('truncated', 'the output ended before the arguments');
            return { more: true };
          }
          const undecided = mayBecome(text, [ARGS_LABEL]) || s.safe === 0;
          if (undecided && !atEnd) return { more: true };
          this.fail('malformed-json', "expected 'arguments:' after the tool name");
          break;
        }
        case 'args': {
          const text = this.buf;
          this.buf = '';
          const step = this.reader.push(text);
          if (step.more) {
            if (atEnd) {
              if (this.reader.isEmpty()) {
                this.fail('truncated', 'the output ended before the arguments');
              } else {
                if (this.reader.finish()) out.endCall(index);
                this.phase = 'skip';
              }
            }
            return { more: true };
          }
          if (step.done !== undefined) {
            out.endCall(index);
            this.buf = text.slice(step.done);
            this.phase = 'after';
          } else {
            this.buf = text.slice(step.failed);
            this.phase = 'skip';
          }
          break;
        }
        default: {
          // 'after' (the call is complete) or 'skip' (it is broken): on to the closing marker.
          const s = scan(this.buf, [CLOSE], atEnd);
          if (s.safe !== undefined) {
            this.buf = this.buf.slice(s.safe);
            return { more: true };
          }
          const rest = this.buf.slice(s.start + s.len);
          this.buf = '';
          return { rest };
        }
      }
    }
  }
}

const SPEC = {
  reasoning: ['<think>', '</think>'],
  endOfTurn: END_OF_TURN,
  calls: [{ open: OPEN, body: (out) => new ToolUseBody(out) }],
};

/** The instruction that teaches the call format. */
function instruction(request) {
  let text = 'You can call the following tools. Each is described by a JSON object:\n';
  text += request.tools.map(toolJson).join('\n');
  text += `\n\nWhen you need a tool, answer with a block in exactly this form and wait for its result:\n${OPEN}\ntool_name: NAME\narguments: {JSON object with the arguments}\n${CLOSE}\n`;
  const choice = request.toolChoice;
  if (choice.tag === 'required') text += 'You must call at least one tool now.\n';
  else if (choice.tag === 'function') text += `You must call the tool ${choice.val} now.\n`;
  else text += 'If no tool is needed, answer normally without a block.\n';
  text += request.parallelToolCalls
    ? 'To call several tools at once, write one block per call.'
    : 'Call at most one tool per answer.';
  return text;
}

/** An assistant turn with its calls written as blocks. */
function assistantText(message) {
  let text = message.content ?? '';
  for (const call of message.toolCalls) {
    if (text !== '') text += '\n';
    text += `${OPEN}\ntool_name: ${call.name}\narguments: ${compactJson(call.arguments)}\n${CLOSE}`;
  }
  return text;
}

/** The name of the tool whose result `message` is: its own, or that of the call it answers. */
function toolNameOf(message, history) {
  if (message.name !== undefined && message.name !== null) return message.name;
  const id = message.toolCallId;
  for (let i = history.length - 1; i >= 0; i--) {
    const call = history[i].toolCalls.find((c) => id !== undefined && id !== null && c.id === id);
    if (call) return call.name;
  }
  return 'tool';
}

function formatPrompt(request) {
  const withTools = request.tools.length > 0 && request.toolChoice.tag !== 'none';
  const choice = request.toolChoice;
  if (choice.tag === 'function' && !request.tools.some((t) => t.name === choice.val)) {
    throw invalidRequest(`tool_choice names the function '${choice.val}', which is not among the tools`);
  }
  let system = '';
  let rest = request.messages;
  if (rest.length > 0 && rest[0].role === 'system') {
    system = rest[0].content ?? '';
    rest = rest.slice(1);
  }
  if (withTools) system = system === '' ? instruction(request) : `${system}\n\n${instruction(request)}`;
  const messages = [];
  if (system !== '') messages.push(textMessage('system', system));
  rest.forEach((message, i) => {
    if (message.role === 'assistant') {
      messages.push(textMessage('assistant', assistantText(message)));
    } else if (message.role === 'tool') {
      const block = `<tool_result>\ntool_name: ${toolNameOf(message, rest.slice(0, i))}\nresult: ${message.content ?? ''}\n</tool_result>`;
      // Consecutive results share one user turn.
      if (i > 0 && rest[i - 1].role === 'tool') messages[messages.length - 1].content += `\n${block}`;
      else messages.push(textMessage('user', block));
    } else {
      messages.push(message);
    }
  });
  return {
    text: chatml(messages, request.addGenerationPrompt),
    stop: [END_OF_TURN[0]],
    toolCallTriggers: withTools ? [OPEN] : [],
    reasoningOpen: false,
  };
}

/** Whitespace as Rust's `char::is_whitespace` sees it (the built-in adapter's name check). */
const isWhitespace = (c) => /^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/u.test(c);

/**
 * Whether the parser reads `name` back as written on its `tool_name:` line: no quotes or
 * whitespace around it (they are trimmed), no line break, `{`, `arguments:` or closing marker in it.
 */
function isBare(name) {
  const chars = Array.from(name);
  const edge = (c) => isWhitespace(c) || '"`\''.includes(c);
  return (
    chars.length > 0 &&
    !edge(chars[0]) &&
    !edge(chars[chars.length - 1]) &&
    !/[\n\r{]/.test(name) &&
    !name.includes(ARGS_LABEL) &&
    !name.includes(CLOSE)
  );
}

const SYNTAX = new CallSyntax({
  // Each call in its own block, as the system prompt teaches it. A name is written bare on its
  // line, so a tool whose name the parser would read otherwise cannot be called in this format.
  call: (tool, args) =>
    isBare(tool.name)
      ? `${literal(`${OPEN}\ntool_name: ${tool.name}\narguments: `)} ${args} ${literal(`\n${CLOSE}`)}`
      : undefined,
  separator: '"\\n"',
  triggers: [trigger(OPEN)],
  reasoning: ['<think>', '</think>'],
});

export const adapter = defineAdapter({
  info: () => ({
    name: 'tool-use',
    version: '0.1.0+js',
    description: 'Tool calls as <tool_use> blocks, taught in the system prompt, for models without a native tool format (JavaScript)',
    families: ['phi-3', 'deepseek-coder', 'chatml'],
    capabilities: { tools: true, parallelCalls: true, reasoning: false },
    toolCallTriggers: [OPEN],
    endOfTurn: END_OF_TURN,
  }),
  formatPrompt,
  parser: (options) => new OutputParser(SPEC, options),
  callGrammar: (request) => SYNTAX.grammar(request),
});
