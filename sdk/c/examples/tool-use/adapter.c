// tool-use, in C: tool calling for models that have no tool format of their own. The system
// prompt lists the tools and asks for calls written as
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

#include <stdlib.h>
#include <string.h>

#include "plugboard.h"

static const char OPEN[] = "<tool_use>";
static const char CLOSE[] = "</tool_use>";
static const char *const END_OF_TURN[] = {"<|im_end|>", "<|endoftext|>", NULL};
static const char *const NAME_LABELS[] = {"tool_name:", "name:", NULL};
static const char *const ARGS_LABELS[] = {"arguments:", NULL};
static const char *const CLOSE_MARKER[] = {CLOSE};

/// ASCII lower case.
static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c; }

/// The length of the label of `labels` that starts `text` (any case), or 0.
static size_t label_at(const char *text, size_t len, const char *const *labels) {
  for (size_t l = 0; labels[l]; l++) {
    size_t n = strlen(labels[l]);
    if (len < n) continue;
    size_t i = 0;
    while (i < n && lower(text[i]) == labels[l][i]) i++;
    if (i == n) return n;
  }
  return 0;
}

/// Whether `text` may still grow into one of `labels`.
static bool may_become(const char *text, size_t len, const char *const *labels) {
  for (size_t l = 0; labels[l]; l++) {
    size_t n = strlen(labels[l]);
    if (n <= len) continue;
    size_t i = 0;
    while (i < len && lower(text[i]) == labels[l][i]) i++;
    if (i == len) return true;
  }
  return false;
}

/// The offset of the first of `needles` in `text`, or `len` when there is none.
static size_t first_of(const char *text, size_t len, const char *const *needles, size_t n) {
  size_t best = len;
  for (size_t k = 0; k < n; k++) {
    size_t m = strlen(needles[k]);
    for (size_t i = 0; i + m <= len && i < best; i++) {
      if (memcmp(text + i, needles[k], m) == 0) {
        best = i;
        break;
      }
    }
  }
  return best;
}

/// How the text after an opening marker starts.
typedef enum {
  /// With what a block may start with (a label, a bare `{` or `"`, the closing marker).
  START_BLOCK,
  /// Empty, or a beginning of what a block may start with.
  START_UNDECIDED,
  /// With none of it: no call follows the marker.
  START_PROSE,
} start_t;

static start_t block_start(const char *text, size_t len) {
  static const char *const starts[] = {"tool_name:", "name:", "arguments:", CLOSE};
  if (len == 0) return START_UNDECIDED;
  if (text[0] == '{' || text[0] == '"') return START_BLOCK;
  start_t start = START_PROSE;
  for (size_t l = 0; l < 4; l++) {
    size_t n = strlen(starts[l]);
    if (n > len) n = len;
    size_t i = 0;
    while (i < n && lower(text[i]) == starts[l][i]) i++;
    if (i < n) continue;
    if (n == strlen(starts[l])) return START_BLOCK;
    start = START_UNDECIDED;
  }
  return start;
}

typedef enum { NAME, LABEL, ARGS, AFTER, SKIP } phase_t;

/// One `<tool_use>` block: `tool_name: NAME`, then `arguments: {JSON}`, then `</tool_use>`.
typedef struct {
  pb_body base;
  pb_emitter *out;
  /// Taken once a block is known to follow (`indexed`): a marker in prose takes none.
  uint32_t index;
  bool indexed;
  phase_t phase;
  pb_buf buf;
  pb_args_reader reader;
} tool_use_body;

static void fail(tool_use_body *b, pb_problem_kind kind, const char *message) {
  pb_buf m = {0};
  pb_buf_addf(&m, "call %u: %s", b->index, message);
  pb_problem(b->out, kind, b->index, m.ptr);
  pb_buf_free(&m);
  b->phase = SKIP;
}

/// Keeps `buf[from..]`.
static void keep_from(pb_buf *buf, size_t from) { pb_buf_drain(buf, from); }

/// Returns true when the block ended (the text after it in `rest`).
static bool run(tool_use_body *b, bool at_end, pb_buf *rest) {
  pb_emitter *out = b->out;
  for (;;) {
    const char *buf = b->buf.ptr ? b->buf.ptr : "";
    size_t ws = pb_skip_ws(buf, b->buf.len);
    const char *text = buf + ws;
    size_t len = b->buf.len - ws;
    switch (b->phase) {
      case NAME: {
        start_t start = block_start(text, len);
        if (start == START_PROSE) {
          // The marker stands in prose (`write a <tool_use> block`): it and all that follows
          // are output again, and no call index is taken.
          pb_content(out, OPEN, strlen(OPEN));
          pb_buf_add(rest, buf, b->buf.len);
          b->buf.len = 0;
          return true;
        }
        if (start == START_UNDECIDED && !at_end) return false;
        if (!b->indexed) {
          b->index = pb_start_call(out);
          b->indexed = true;
        }
        pb_scan_t s = pb_scan(text, len, CLOSE_MARKER, 1, at_end);
        if (s.index >= 0 && s.start == 0) {
          fail(b, PB_MISSING_NAME, "the block has no tool_name");
          continue;
        }
        size_t label = label_at(text, len, NAME_LABELS);
        if (label == 0) {
          if (len == 0 || may_become(text, len, NAME_LABELS)) {
            if (at_end) fail(b, PB_TRUNCATED, "the output ended before the tool name");
            return false;
          }
          fail(b, PB_MISSING_NAME, "the block does not start with 'tool_name:'");
          continue;
        }
        const char *after = text + label;
        size_t after_len = len - label;
        while (after_len && (*after == ' ' || *after == '\t')) after++, after_len--;
        // The name ends with its line, or where the arguments or the closing marker start.
        static const char *const ends[] = {"\n", "\r", "arguments:", CLOSE, "{"};
        size_t end = first_of(after, after_len, ends, 5);
        if (end == after_len) {
          if (at_end) fail(b, PB_TRUNCATED, "the output ended on the tool_name line");
          return false;
        }
        size_t ns = pb_skip_ws(after, end);
        size_t nl = pb_trim_end(after + ns, end - ns);
        const char *name = after + ns;
        while (nl && strchr("\"`'", name[0])) name++, nl--;
        while (nl && strchr("\"`'", name[nl - 1])) nl--;
        if (nl == 0) {
          keep_from(&b->buf, (size_t)(after + end - buf));
          fail(b, PB_MISSING_NAME, "the tool_name is empty");
          continue;
        }
        pb_begin_call(out, b->index, name, nl);
        keep_from(&b->buf, (size_t)(after + end - buf));
        b->phase = LABEL;
        break;
      }
      case LABEL: {
        size_t label = label_at(text, len, ARGS_LABELS);
        if (label > 0 || (len > 0 && text[0] == '{')) {
          keep_from(&b->buf, ws + label);
          pb_args_init(&b->reader, out, b->index);
          b->phase = ARGS;
          continue;
        }
        pb_scan_t s = pb_scan(text, len, CLOSE_MARKER, 1, at_end);
        if (s.index >= 0 && s.start == 0) {
          // No arguments inside a closed block: `{}`.
          pb_arguments(out, b->index, "{}", 2);
          pb_end_call(out, b->index);
          pb_buf_add(rest, text + s.len, len - s.len);
          b->buf.len = 0;
          return true;
        }
        if (len == 0) {
          if (at_end) fail(b, PB_TRUNCATED, "the output ended before the arguments");
          return false;
        }
        bool undecided = may_become(text, len, ARGS_LABELS) || (s.index < 0 && s.start == 0);
        if (undecided && !at_end) return false;
        fail(b, PB_MALFORMED_JSON, "expected 'arguments:' after the tool name");
        break;
      }
      case ARGS: {
        size_t used = 0;
        pb_args_step step = pb_args_push(&b->reader, buf, b->buf.len, &used);
        if (step == PB_ARGS_MORE) {
          b->buf.len = 0;
          if (at_end) {
            if (pb_args_is_empty(&b->reader)) {
              fail(b, PB_TRUNCATED, "the output ended before the arguments");
            } else {
              if (pb_args_finish(&b->reader)) pb_end_call(out, b->index);
              b->phase = SKIP;
            }
          }
          return false;
        }
        if (step == PB_ARGS_DONE) {
          pb_end_call(out, b->index);
          b->phase = AFTER;
        } else {
          b->phase = SKIP;
        }
        keep_from(&b->buf, used);
        break;
      }
      default: {
        // AFTER (the call is complete) or SKIP (it is broken): on to the closing marker.
        pb_scan_t s = pb_scan(buf, b->buf.len, CLOSE_MARKER, 1, at_end);
        if (s.index < 0) {
          keep_from(&b->buf, s.start);
          return false;
        }
        pb_buf_add(rest, buf + s.start + s.len, b->buf.len - s.start - s.len);
        b->buf.len = 0;
        return true;
      }
    }
  }
}

static bool body_push(pb_body *self, const char *text, size_t len, bool at_end, pb_buf *rest) {
  tool_use_body *b = (tool_use_body *)self;
  pb_buf_add(&b->buf, text, len);
  if (run(b, false, rest)) return true;
  return at_end && run(b, true, rest);
}

static void body_free(pb_body *self) {
  tool_use_body *b = (tool_use_body *)self;
  pb_buf_free(&b->buf);
  pb_args_free(&b->reader);
  free(b);
}

static pb_body *body_new(pb_emitter *out) {
  tool_use_body *b = calloc(1, sizeof *b);
  if (!b) __builtin_trap();
  b->base.push = body_push;
  b->base.free = body_free;
  b->out = out;
  b->phase = NAME;
  return &b->base;
}

static const pb_call_markup CALLS[] = {{OPEN, body_new}, {NULL, NULL}};

pb_spec adapter_spec(const pb_parse_options *options) {
  (void)options;
  return (pb_spec){"<think>", "</think>", END_OF_TURN, CALLS};
}

void adapter_info(pb_info *ret) {
  static const char *const families[] = {"phi-3", "deepseek-coder", "chatml"};
  static const char *const triggers[] = {OPEN};
  ret->name = pb_string_dup("tool-use");
  ret->version = pb_string_dup("0.1.0+c");
  ret->description = pb_string_dup(
      "Tool calls as <tool_use> blocks, taught in the system prompt, for models without a native tool format (C)");
  ret->families = pb_list_of(families, 3);
  ret->capabilities = PB_CAP_TOOLS | PB_CAP_PARALLEL_CALLS;
  ret->tool_call_triggers = pb_list_of(triggers, 1);
  ret->end_of_turn = pb_list_of(END_OF_TURN, 2);
}

static void add_string(pb_buf *out, const pb_string *s) { pb_buf_add(out, (const char *)s->ptr, s->len); }

/// The instruction that teaches the call format.
static void instruction(pb_buf *out, const pb_prompt_request *request) {
  pb_buf_adds(out, "You can call the following tools. Each is described by a JSON object:\n");
  for (size_t i = 0; i < request->tools.len; i++) {
    if (i) pb_buf_adds(out, "\n");
    pb_tool_json(out, &request->tools.ptr[i]);
  }
  pb_buf_addf(out,
              "\n\nWhen you need a tool, answer with a block in exactly this form and wait for its result:\n"
              "%s\ntool_name: NAME\narguments: {JSON object with the arguments}\n%s\n",
              OPEN, CLOSE);
  switch (request->tool_choice.tag) {
    case PB_CHOICE_REQUIRED: pb_buf_adds(out, "You must call at least one tool now.\n"); break;
    case PB_CHOICE_FUNCTION:
      pb_buf_adds(out, "You must call the tool ");
      add_string(out, &request->tool_choice.val.function);
      pb_buf_adds(out, " now.\n");
      break;
    default: pb_buf_adds(out, "If no tool is needed, answer normally without a block.\n");
  }
  pb_buf_adds(out, request->parallel_tool_calls ? "To call several tools at once, write one block per call."
                                                : "Call at most one tool per answer.");
}

/// An assistant turn with its calls written as blocks.
static void assistant_text(pb_buf *out, const pb_message *m) {
  if (m->content.is_some) add_string(out, &m->content.val);
  for (size_t i = 0; i < m->tool_calls.len; i++) {
    const pb_tool_call *call = &m->tool_calls.ptr[i];
    if (out->len) pb_buf_adds(out, "\n");
    pb_buf_addf(out, "%s\ntool_name: ", OPEN);
    add_string(out, &call->name);
    pb_buf_adds(out, "\narguments: ");
    if (pb_json_valid((const char *)call->arguments.ptr, call->arguments.len))
      pb_json_compact(out, (const char *)call->arguments.ptr, call->arguments.len);
    else
      pb_json_string(out, (const char *)call->arguments.ptr, call->arguments.len);
    pb_buf_addf(out, "\n%s", CLOSE);
  }
}

static bool same(const pb_string *a, const pb_string *b) { return a->len == b->len && memcmp(a->ptr, b->ptr, a->len) == 0; }

/// The name of the tool whose result `m` is: its own, or that of the call it answers.
static void tool_name_of(pb_buf *out, const pb_message *m, const pb_message *history, size_t n) {
  if (m->name.is_some) return add_string(out, &m->name.val);
  for (size_t i = n; i-- > 0;) {
    for (size_t k = 0; k < history[i].tool_calls.len; k++) {
      const pb_tool_call *call = &history[i].tool_calls.ptr[k];
      if (m->tool_call_id.is_some && call->id.is_some && same(&call->id.val, &m->tool_call_id.val))
        return add_string(out, &call->name);
    }
  }
  pb_buf_adds(out, "tool");
}

bool adapter_format_prompt(const pb_prompt_request *request, pb_prompt *ret, pb_error *err) {
  const pb_string *choice = &request->tool_choice.val.function;
  bool with_tools = request->tools.len > 0 && request->tool_choice.tag != PB_CHOICE_NONE;
  if (request->tool_choice.tag == PB_CHOICE_FUNCTION) {
    bool found = false;
    for (size_t i = 0; i < request->tools.len; i++) found |= same(&request->tools.ptr[i].name, choice);
    if (!found) {
      pb_buf m = {0};
      pb_buf_addf(&m, "tool_choice names the function '%.*s', which is not among the tools", (int)choice->len,
                  (const char *)choice->ptr);
      pb_invalid_request(err, m.ptr);
      pb_buf_free(&m);
      return false;
    }
  }
  const pb_message *rest = request->messages.ptr;
  size_t n = request->messages.len;
  pb_buf system = {0};
  if (n > 0 && rest[0].role == PB_ROLE_SYSTEM) {
    if (rest[0].content.is_some) add_string(&system, &rest[0].content.val);
    rest++, n--;
  }
  if (with_tools) {
    if (system.len) pb_buf_adds(&system, "\n\n");
    instruction(&system, request);
  }
  pb_buf text = {0};
  if (system.len) pb_chatml_turn(&text, "system", system.ptr, system.len);
  pb_buf_free(&system);
  for (size_t i = 0; i < n; i++) {
    const pb_message *m = &rest[i];
    pb_buf turn = {0};
    if (m->role == PB_ROLE_TOOL) {
      // Consecutive results share one user turn.
      for (size_t k = i; k < n && rest[k].role == PB_ROLE_TOOL; k++) {
        if (k > i) pb_buf_adds(&turn, "\n");
        pb_buf_adds(&turn, "<tool_result>\ntool_name: ");
        tool_name_of(&turn, &rest[k], rest, k);
        pb_buf_adds(&turn, "\nresult: ");
        if (rest[k].content.is_some) add_string(&turn, &rest[k].content.val);
        pb_buf_adds(&turn, "\n</tool_result>");
        i = k;
      }
      pb_chatml_turn(&text, "user", turn.ptr, turn.len);
    } else {
      if (m->role == PB_ROLE_ASSISTANT) assistant_text(&turn, m);
      else if (m->content.is_some) add_string(&turn, &m->content.val);
      pb_chatml_turn(&text, pb_role_name(m->role), turn.ptr ? turn.ptr : "", turn.len);
    }
    pb_buf_free(&turn);
  }
  if (request->add_generation_prompt) pb_buf_adds(&text, "<|im_start|>assistant\n");
  static const char *const triggers[] = {OPEN};
  ret->text = pb_buf_into_string(&text);
  ret->stop = pb_list_of(END_OF_TURN, 1);
  ret->tool_call_triggers = pb_list_of(triggers, with_tools ? 1 : 0);
  ret->reasoning_open = false;
  return true;
}

/// Whether `c` is whitespace as Rust's `char::is_whitespace` sees it (the built-in adapter's
/// name check).
static bool is_rust_whitespace(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/// The code point of the UTF-8 character at `s` (the host hands over valid UTF-8).
static uint32_t decode(const unsigned char *s, size_t len) {
  size_t n = s[0] < 0x80 ? 1 : s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : 4;
  if (n > len) return 0xFFFD;
  uint32_t c = n == 1 ? s[0] : s[0] & (0x7F >> n);
  for (size_t i = 1; i < n; i++) c = (c << 6) | (s[i] & 0x3F);
  return c;
}

/// Whether the parser would trim `c` off a name: whitespace or a quote.
static bool is_edge(uint32_t c) { return is_rust_whitespace(c) || c == '"' || c == '`' || c == '\''; }

/// Whether the parser reads `name` back as written on its `tool_name:` line: no quotes or
/// whitespace around it (they are trimmed), no line break, `{`, `arguments:` or closing marker in it.
static bool is_bare(const pb_string *name) {
  const unsigned char *s = name->ptr;
  size_t len = name->len;
  if (len == 0) return false;
  size_t last = len - 1;
  while (last > 0 && (s[last] & 0xC0) == 0x80) last--;
  static const char *const inside[] = {"\n", "\r", "{", "arguments:", CLOSE};
  return !is_edge(decode(s, len)) && !is_edge(decode(s + last, len - last)) &&
         first_of((const char *)s, len, inside, 5) == len;
}

/// Each call in its own block, as the system prompt teaches it. A name is written bare on its
/// line, so a tool whose name the parser would read otherwise cannot be called in this format.
static bool tool_use_call(pb_buf *out, const pb_tool *tool, const char *args) {
  if (!is_bare(&tool->name)) return false;
  pb_buf head = {0};
  pb_buf_addf(&head, "%s\ntool_name: ", OPEN);
  add_string(&head, &tool->name);
  pb_buf_adds(&head, "\narguments: ");
  pb_grammar_literal(out, head.ptr, head.len);
  pb_buf_addf(out, " %s ", args);
  pb_buf_free(&head);
  pb_buf tail = {0};
  pb_buf_addf(&tail, "\n%s", CLOSE);
  pb_grammar_literal(out, tail.ptr, tail.len);
  pb_buf_free(&tail);
  return true;
}

static const pb_trigger_spec TRIGGERS[] = {PB_TRIGGER(OPEN), {NULL, false}};

static const pb_call_syntax SYNTAX = {
    .call = tool_use_call,
    .separator = "\"\\n\"",
    .triggers = TRIGGERS,
    .reasoning_open = "<think>",
    .reasoning_close = "</think>",
};

bool adapter_call_grammar(const pb_grammar_request *request, pb_option_grammar *ret, pb_error *err) {
  (void)err;
  pb_call_grammar(&SYNTAX, request, ret);
  return true;
}
