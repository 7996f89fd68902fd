// plugboard's C SDK: see plugboard.h.

#include "plugboard.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Growable text

static void *pb_alloc(size_t size) {
  void *p = malloc(size ? size : 1);
  // Out of memory: trap, so the host fails this one call with a clear error.
  if (!p) __builtin_trap();
  return p;
}

void pb_buf_add(pb_buf *b, const char *text, size_t len) {
  if (b->len + len + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 64;
    while (cap < b->len + len + 1) cap *= 2;
    char *p = realloc(b->ptr, cap);
    if (!p) __builtin_trap();
    b->ptr = p;
    b->cap = cap;
  }
  if (len) memcpy(b->ptr + b->len, text, len);
  b->len += len;
  b->ptr[b->len] = 0;
}

void pb_buf_adds(pb_buf *b, const char *text) { pb_buf_add(b, text, strlen(text)); }

void pb_buf_addf(pb_buf *b, const char *format, ...) {
  va_list args;
  va_start(args, format);
  int n = vsnprintf(NULL, 0, format, args);
  va_end(args);
  if (n <= 0) return;
  char *tmp = pb_alloc((size_t)n + 1);
  va_start(args, format);
  vsnprintf(tmp, (size_t)n + 1, format, args);
  va_end(args);
  pb_buf_add(b, tmp, (size_t)n);
  free(tmp);
}

void pb_buf_drain(pb_buf *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
  } else {
    memmove(b->ptr, b->ptr + n, b->len - n);
    b->len -= n;
  }
  if (b->ptr) b->ptr[b->len] = 0;
}

void pb_buf_free(pb_buf *b) {
  free(b->ptr);
  b->ptr = NULL;
  b->len = b->cap = 0;
}

pb_string pb_buf_into_string(pb_buf *b) {
  pb_string s = {(uint8_t *)b->ptr, b->len};
  if (!s.ptr) s = pb_string_of("", 0);
  b->ptr = NULL;
  b->len = b->cap = 0;
  return s;
}

pb_string pb_string_of(const char *text, size_t len) {
  pb_string s = {pb_alloc(len), len};
  if (len) memcpy(s.ptr, text, len);
  return s;
}

pb_string pb_string_dup(const char *text) { return pb_string_of(text, strlen(text)); }

pb_list_string pb_list_of(const char *const *items, size_t n) {
  pb_list_string list = {pb_alloc(n * sizeof(pb_string)), n};
  for (size_t i = 0; i < n; i++) list.ptr[i] = pb_string_dup(items[i]);
  return list;
}

bool pb_string_is(const pb_string *s, const char *text) {
  return s->len == strlen(text) && memcmp(s->ptr, text, s->len) == 0;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

size_t pb_skip_ws(const char *text, size_t len) {
  size_t i = 0;
  while (i < len && is_ws(text[i])) i++;
  return i;
}

size_t pb_trim_end(const char *text, size_t len) {
  while (len > 0 && is_ws(text[len - 1])) len--;
  return len;
}

bool pb_starts_with(const char *text, size_t len, const char *prefix) {
  size_t n = strlen(prefix);
  return len >= n && memcmp(text, prefix, n) == 0;
}

/// Whether `text` (len bytes) is a proper prefix of the C string `whole`.
static bool is_prefix_of(const char *text, size_t len, const char *whole) {
  size_t n = strlen(whole);
  return len < n && memcmp(whole, text, len) == 0;
}

// ---------------------------------------------------------------------------------------------
// Markers

pb_scan_t pb_scan(const char *text, size_t len, const char *const *markers, size_t n, bool at_end) {
  for (size_t start = 0; start < len; start++) {
    const char *rest = text + start;
    size_t rest_len = len - start;
    int best = -1;
    size_t best_len = 0;
    bool could_grow = false;
    for (size_t i = 0; i < n; i++) {
      size_t m = strlen(markers[i]);
      if (rest_len >= m && memcmp(rest, markers[i], m) == 0) {
        if (best < 0 || m > best_len) {
          best = (int)i;
          best_len = m;
        }
      } else if (!at_end && is_prefix_of(rest, rest_len, markers[i])) {
        could_grow = true;
      }
    }
    if (best >= 0 && !could_grow) return (pb_scan_t){start, best, best_len};
    if (could_grow) return (pb_scan_t){start, -1, 0};
  }
  return (pb_scan_t){len, -1, 0};
}

static size_t list_len(const char *const *list) {
  size_t n = 0;
  while (list && list[n]) n++;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Events

/// Text trimmed at both ends while it streams: deltas concatenate to the trimmed whole. Returns
/// what may be sent now in `out`.
static void trimmed_push(pb_trimmed *t, const char *text, size_t len, pb_buf *out) {
  if (!t->started) {
    size_t skip = pb_skip_ws(text, len);
    text += skip;
    len -= skip;
  }
  if (len == 0) return;
  t->started = true;
  size_t body = pb_trim_end(text, len);
  if (body == 0) {
    pb_buf_add(&t->trailing, text, len);
    return;
  }
  pb_buf_add(out, t->trailing.ptr ? t->trailing.ptr : "", t->trailing.len);
  pb_buf_add(out, text, body);
  t->trailing.len = 0;
  pb_buf_add(&t->trailing, text + body, len - body);
}

static pb_event *push_event(pb_emitter *out) {
  if (out->len == out->cap) {
    out->cap = out->cap ? out->cap * 2 : 8;
    out->events = realloc(out->events, out->cap * sizeof(pb_event));
    if (!out->events) __builtin_trap();
  }
  pb_event *e = &out->events[out->len++];
  memset(e, 0, sizeof *e);
  return e;
}

static void append_to_string(pb_string *s, const char *text, size_t len) {
  uint8_t *p = realloc(s->ptr, s->len + len);
  if (!p) __builtin_trap();
  memcpy(p + s->len, text, len);
  s->ptr = p;
  s->len += len;
}

static void emit_text(pb_emitter *out, pb_trimmed *t, uint8_t tag, const char *text, size_t len) {
  pb_buf sendable = {0};
  trimmed_push(t, text, len, &sendable);
  if (sendable.len == 0) {
    pb_buf_free(&sendable);
    return;
  }
  pb_event *last = out->len ? &out->events[out->len - 1] : NULL;
  if (last && last->tag == tag) {
    // content and reasoning share the layout of their payload.
    append_to_string(&last->val.content, sendable.ptr, sendable.len);
    pb_buf_free(&sendable);
    return;
  }
  pb_event *e = push_event(out);
  e->tag = tag;
  e->val.content = pb_buf_into_string(&sendable);
}

void pb_content(pb_emitter *out, const char *text, size_t len) {
  emit_text(out, &out->content, EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_STREAM_EVENT_CONTENT, text, len);
}

void pb_reasoning(pb_emitter *out, const char *text, size_t len) {
  emit_text(out, &out->reasoning, EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_STREAM_EVENT_REASONING, text, len);
}

uint32_t pb_start_call(pb_emitter *out) { return out->next_index++; }

static bool is_offered(const pb_emitter *out, const char *name, size_t len) {
  if (out->offered_len == 0) return true;
  for (size_t i = 0; i < out->offered_len; i++) {
    if (strlen(out->offered[i]) == len && memcmp(out->offered[i], name, len) == 0) return true;
  }
  return false;
}

void pb_begin_call(pb_emitter *out, uint32_t index, const char *name, size_t len) {
  pb_event *e = push_event(out);
  e->tag = EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_STREAM_EVENT_TOOL_CALL_BEGIN;
  e->val.tool_call_begin.index = index;
  e->val.tool_call_begin.name = pb_string_of(name, len);
  if (!is_offered(out, name, len)) {
    pb_buf message = {0};
    pb_buf_addf(&message, "call %u names the tool '%.*s', which the request did not offer", index, (int)len, name);
    pb_problem(out, PB_UNKNOWN_TOOL, index, message.ptr);
    pb_buf_free(&message);
  }
}

void pb_arguments(pb_emitter *out, uint32_t index, const char *delta, size_t len) {
  if (len == 0) return;
  pb_event *last = out->len ? &out->events[out->len - 1] : NULL;
  if (last && last->tag == EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_STREAM_EVENT_TOOL_CALL_ARGUMENTS &&
      last->val.tool_call_arguments.index == index) {
    append_to_string(&last->val.tool_call_arguments.delta, delta, len);
    return;
  }
  pb_event *e = push_event(out);
  e->tag = EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_STREAM_EVENT_TOOL_CALL_ARGUMENTS;
  e->val.tool_call_arguments.index = index;
  e->val.tool_call_arguments.delta = pb_string_of(delta, len);
}

void pb_end_call(pb_emitter *out, uint32_t index) {
  pb_event *e = push_event(out);
  e->tag = EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_STREAM_EVENT_TOOL_CALL_END;
  e->val.tool_call_end = index;
}

void pb_problem(pb_emitter *out, pb_problem_kind kind, uint32_t index, const char *message) {
  pb_event *e = push_event(out);
  e->tag = EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_STREAM_EVENT_PROBLEM;
  e->val.problem.kind = kind;
  e->val.problem.message = pb_string_dup(message);
  e->val.problem.index.is_some = true;
  e->val.problem.index.val = index;
}

// ---------------------------------------------------------------------------------------------
// JSON

long pb_json_end_feed(pb_json_end *j, const char *text, size_t len) {
  for (size_t i = 0; i < len; i++) {
    char c = text[i];
    if (j->kind == 0) {
      if (is_ws(c)) continue;
      if (c == '{' || c == '[') {
        j->kind = 'c';
        j->depth = 1;
      } else if (c == '"') {
        j->kind = 's';
        j->in_string = true;
      } else if (c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')) {
        j->kind = 'x';
      } else {
        return -2;
      }
      continue;
    }
    if (j->in_string) {
      if (j->escape) {
        j->escape = false;
      } else if (c == '\\') {
        j->escape = true;
      } else if (c == '"') {
        j->in_string = false;
        if (j->kind == 's') {
          j->done = true;
          return (long)i + 1;
        }
      }
      continue;
    }
    if (j->kind == 'x') {
      bool scalar = c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                    (c >= 'A' && c <= 'Z');
      if (!scalar) {
        j->done = true;
        return (long)i;
      }
      continue;
    }
    if (c == '"') {
      j->in_string = true;
    } else if (c == '{' || c == '[') {
      j->depth++;
    } else if (c == '}' || c == ']') {
      if (--j->depth == 0) {
        j->done = true;
        return (long)i + 1;
      }
    }
  }
  return -1;
}

/// A strict JSON reader over a complete text: returns the offset after the value starting at
/// `i` (after whitespace), or -1 when it is not valid JSON.
static long json_value(const char *s, size_t len, size_t i, int depth);

static long json_ws(const char *s, size_t len, size_t i) {
  while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
  return (long)i;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static long json_string(const char *s, size_t len, size_t i) {
  if (i >= len || s[i] != '"') return -1;
  for (i++; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"') return (long)i + 1;
    if (c < 0x20) return -1;
    if (c == '\\') {
      if (++i >= len) return -1;
      if (s[i] == 'u') {
        for (int k = 0; k < 4; k++)
          if (++i >= len || hex_digit(s[i]) < 0) return -1;
      } else if (!strchr("\"\\/bfnrt", s[i])) {
        return -1;
      }
    }
  }
  return -1;
}

static long json_number(const char *s, size_t len, size_t i) {
  size_t start = i;
  if (i < len && s[i] == '-') i++;
  if (i < len && s[i] == '0') {
    i++;
  } else {
    if (i >= len || s[i] < '1' || s[i] > '9') return -1;
    while (i < len && s[i] >= '0' && s[i] <= '9') i++;
  }
  if (i < len && s[i] == '.') {
    i++;
    if (i >= len || s[i] < '0' || s[i] > '9') return -1;
    while (i < len && s[i] >= '0' && s[i] <= '9') i++;
  }
  if (i < len && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < len && (s[i] == '+' || s[i] == '-')) i++;
    if (i >= len || s[i] < '0' || s[i] > '9') return -1;
    while (i < len && s[i] >= '0' && s[i] <= '9') i++;
  }
  return i > start ? (long)i : -1;
}

static long json_value(const char *s, size_t len, size_t i, int depth) {
  if (depth > 512) return -1;
  i = (size_t)json_ws(s, len, i);
  if (i >= len) return -1;
  char c = s[i];
  if (c == '"') return json_string(s, len, i);
  if (c == '{' || c == '[') {
    char close = c == '{' ? '}' : ']';
    i = (size_t)json_ws(s, len, i + 1);
    if (i < len && s[i] == close) return (long)i + 1;
    for (;;) {
      if (c == '{') {
        long k = json_string(s, len, (size_t)json_ws(s, len, i));
        if (k < 0) return -1;
        i = (size_t)json_ws(s, len, (size_t)k);
        if (i >= len || s[i] != ':') return -1;
        i++;
      }
      long v = json_value(s, len, i, depth + 1);
      if (v < 0) return -1;
      i = (size_t)json_ws(s, len, (size_t)v);
      if (i < len && s[i] == ',') {
        i++;
        continue;
      }
      if (i < len && s[i] == close) return (long)i + 1;
      return -1;
    }
  }
  static const char *const literals[] = {"true", "false", "null"};
  for (int k = 0; k < 3; k++) {
    if (pb_starts_with(s + i, len - i, literals[k])) return (long)(i + strlen(literals[k]));
  }
  return json_number(s, len, i);
}

bool pb_json_valid(const char *text, size_t len) {
  long end = json_value(text, len, 0, 0);
  return end >= 0 && (size_t)json_ws(text, len, (size_t)end) == len;
}

void pb_json_compact(pb_buf *out, const char *text, size_t len) {
  bool in_string = false, escape = false;
  for (size_t i = 0; i < len; i++) {
    char c = text[i];
    if (in_string) {
      if (escape) escape = false;
      else if (c == '\\') escape = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (is_ws(c)) {
      continue;
    }
    pb_buf_add(out, &c, 1);
  }
}

void pb_json_string(pb_buf *out, const char *text, size_t len) {
  pb_buf_adds(out, "\"");
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)text[i];
    switch (c) {
      case '"': pb_buf_adds(out, "\\\""); break;
      case '\\': pb_buf_adds(out, "\\\\"); break;
      case '\n': pb_buf_adds(out, "\\n"); break;
      case '\r': pb_buf_adds(out, "\\r"); break;
      case '\t': pb_buf_adds(out, "\\t"); break;
      case '\b': pb_buf_adds(out, "\\b"); break;
      case '\f': pb_buf_adds(out, "\\f"); break;
      default:
        if (c < 0x20) pb_buf_addf(out, "\\u%04x", c);
        else pb_buf_add(out, (const char *)&c, 1);
    }
  }
  pb_buf_adds(out, "\"");
}

static void add_utf8(pb_buf *out, uint32_t cp) {
  char b[4];
  size_t n;
  if (cp < 0x80) {
    b[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    b[0] = (char)(0xC0 | (cp >> 6));
    b[1] = (char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    b[0] = (char)(0xE0 | (cp >> 12));
    b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    b[2] = (char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    b[0] = (char)(0xF0 | (cp >> 18));
    b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  pb_buf_add(out, b, n);
}

static uint32_t hex4(const char *s) {
  uint32_t v = 0;
  for (int k = 0; k < 4; k++) v = v * 16 + (uint32_t)hex_digit(s[k]);
  return v;
}

/// Decodes a valid JSON string token (quotes included) into `out`.
static void json_decode_string(const char *s, size_t len, pb_buf *out) {
  for (size_t i = 1; i + 1 < len; i++) {
    if (s[i] != '\\') {
      pb_buf_add(out, s + i, 1);
      continue;
    }
    char e = s[++i];
    switch (e) {
      case 'n': pb_buf_adds(out, "\n"); break;
      case 'r': pb_buf_adds(out, "\r"); break;
      case 't': pb_buf_adds(out, "\t"); break;
      case 'b': pb_buf_adds(out, "\b"); break;
      case 'f': pb_buf_adds(out, "\f"); break;
      case 'u': {
        uint32_t cp = hex4(s + i + 1);
        i += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < len && s[i + 1] == '\\' && s[i + 2] == 'u') {
          uint32_t low = hex4(s + i + 3);
          if (low >= 0xDC00 && low < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            i += 6;
          }
        }
        add_utf8(out, cp);
        break;
      }
      default: pb_buf_add(out, &e, 1);
    }
  }
}

int pb_arguments_text(const char *raw, size_t len, pb_buf *out, const char **message) {
  size_t skip = pb_skip_ws(raw, len);
  raw += skip;
  len = pb_trim_end(raw, len - skip);
  if (len == 0 || (len == 4 && memcmp(raw, "null", 4) == 0)) {
    pb_buf_adds(out, "{}");
    return 0;
  }
  if (!pb_json_valid(raw, len)) {
    *message = "the arguments are not JSON";
    return PB_MALFORMED_JSON + 1;
  }
  if (raw[0] == '{') {
    pb_buf_add(out, raw, len);
    return 0;
  }
  if (raw[0] == '"') {
    pb_buf inner = {0};
    json_decode_string(raw, len, &inner);
    size_t s = pb_skip_ws(inner.ptr ? inner.ptr : "", inner.len);
    size_t n = pb_trim_end(inner.ptr ? inner.ptr + s : "", inner.len - s);
    bool ok = n == 0 || (inner.ptr[s] == '{' && pb_json_valid(inner.ptr + s, n));
    if (ok) {
      if (n == 0) pb_buf_adds(out, "{}");
      else pb_buf_add(out, inner.ptr + s, n);
    }
    pb_buf_free(&inner);
    if (ok) return 0;
    *message = "the arguments are a string that does not hold a JSON object";
    return PB_INVALID_ARGUMENTS + 1;
  }
  *message = "the arguments are not a JSON object";
  return PB_INVALID_ARGUMENTS + 1;
}

void pb_args_init(pb_args_reader *r, pb_emitter *out, uint32_t index) {
  memset(r, 0, sizeof *r);
  r->out = out;
  r->index = index;
}

bool pb_args_is_empty(const pb_args_reader *r) { return r->end.kind == 0; }

void pb_args_free(pb_args_reader *r) { pb_buf_free(&r->raw); }

static bool raw_is_object(const pb_args_reader *r) {
  size_t s = pb_skip_ws(r->raw.ptr ? r->raw.ptr : "", r->raw.len);
  return s < r->raw.len && r->raw.ptr[s] == '{';
}

static pb_args_step args_complete(pb_args_reader *r) {
  pb_buf text = {0};
  const char *message = NULL;
  int problem = pb_arguments_text(r->raw.ptr ? r->raw.ptr : "", r->raw.len, &text, &message);
  if (problem) {
    pb_buf m = {0};
    pb_buf_addf(&m, "call %u: %s", r->index, message);
    pb_problem(r->out, (pb_problem_kind)(problem - 1), r->index, m.ptr);
    pb_buf_free(&m);
    pb_buf_free(&text);
    return PB_ARGS_FAILED;
  }
  if (!raw_is_object(r)) pb_arguments(r->out, r->index, text.ptr, text.len);
  pb_buf_free(&text);
  return PB_ARGS_DONE;
}

pb_args_step pb_args_push(pb_args_reader *r, const char *text, size_t len, size_t *used) {
  bool was_object = raw_is_object(r);
  long stop = pb_json_end_feed(&r->end, text, len);
  if (stop == -2) {
    pb_buf m = {0};
    pb_buf_addf(&m, "call %u: the arguments are not JSON", r->index);
    pb_problem(r->out, PB_MALFORMED_JSON, r->index, m.ptr);
    pb_buf_free(&m);
    *used = 0;
    return PB_ARGS_FAILED;
  }
  size_t piece = stop < 0 ? len : (size_t)stop;
  size_t before = r->raw.len;
  pb_buf_add(&r->raw, text, piece);
  if (raw_is_object(r)) {
    // Stream the object's text as it comes (from its opening brace on).
    if (was_object) {
      pb_arguments(r->out, r->index, text, piece);
    } else {
      size_t s = pb_skip_ws(r->raw.ptr, r->raw.len);
      pb_arguments(r->out, r->index, r->raw.ptr + s, r->raw.len - s);
    }
  }
  (void)before;
  if (stop < 0) return PB_ARGS_MORE;
  *used = (size_t)stop;
  return args_complete(r);
}

bool pb_args_finish(pb_args_reader *r) {
  if (r->end.kind == 0) {
    pb_arguments(r->out, r->index, "{}", 2);
    return true;
  }
  if (r->end.kind == 'x' && !r->end.done) {
    r->end.done = true;
    return args_complete(r) == PB_ARGS_DONE;
  }
  if (r->end.done) return true;
  pb_buf m = {0};
  pb_buf_addf(&m, "call %u: the output ended inside the arguments", r->index);
  pb_problem(r->out, PB_TRUNCATED, r->index, m.ptr);
  pb_buf_free(&m);
  return false;
}

// ---------------------------------------------------------------------------------------------
// Outputs that are calls by their whole shape (lenient mode)

static const char FENCE[] = "```";

static bool info_is_json(const char *info, size_t len) {
  size_t s = pb_skip_ws(info, len);
  size_t n = pb_trim_end(info + s, len - s);
  if (n == 0) return true;
  if (n != 4) return false;
  for (size_t i = 0; i < 4; i++)
    if ((info[s + i] | 0x20) != "json"[i] || info[s + i] == '_') return false;
  return true;
}

/// Whether `prefix` may still grow into one JSON object or list, bare or in a fence.
static bool could_be_json(const char *p, size_t len) {
  size_t s = pb_skip_ws(p, len);
  p += s;
  len -= s;
  bool fenced = false;
  if (pb_starts_with(p, len, FENCE)) {
    const char *inner = p + 3;
    size_t inner_len = len - 3;
    const char *newline = memchr(inner, '\n', inner_len);
    if (!newline) {
      size_t a = pb_skip_ws(inner, inner_len);
      size_t n = pb_trim_end(inner + a, inner_len - a);
      for (size_t i = 0; i < n; i++)
        if (i >= 4 || (inner[a + i] | 0x20) != "json"[i]) return false;
      return true;
    }
    if (!info_is_json(inner, (size_t)(newline - inner))) return false;
    len = inner_len - (size_t)(newline + 1 - inner);
    p = newline + 1;
    fenced = true;
  } else if (is_prefix_of(p, len, FENCE) || len == 0) {
    return true;
  }
  s = pb_skip_ws(p, len);
  p += s;
  len -= s;
  if (len == 0) return true;
  if (p[0] != '{' && p[0] != '[') return false;
  pb_json_end end = {0};
  long stop = pb_json_end_feed(&end, p, len);
  if (stop < 0) return true;
  const char *tail = p + stop;
  size_t tail_len = len - (size_t)stop;
  size_t a = pb_skip_ws(tail, tail_len);
  size_t n = pb_trim_end(tail + a, tail_len - a);
  if (!fenced) return n == 0;
  return n <= 3 && memcmp(tail + a, FENCE, n) == 0;
}

/// A member of a JSON object: the value's span for `key`, or false.
static bool json_member(const char *s, size_t len, const char *key, size_t *start, size_t *end) {
  size_t i = (size_t)json_ws(s, len, 0);
  if (i >= len || s[i] != '{') return false;
  i = (size_t)json_ws(s, len, i + 1);
  while (i < len && s[i] == '"') {
    long k = json_string(s, len, i);
    if (k < 0) return false;
    pb_buf name = {0};
    json_decode_string(s + i, (size_t)k - i, &name);
    bool match = name.len == strlen(key) && memcmp(name.ptr, key, name.len) == 0;
    pb_buf_free(&name);
    i = (size_t)json_ws(s, len, (size_t)k) + 1;  // past ':'
    size_t v = (size_t)json_ws(s, len, i);
    long e = json_value(s, len, v, 0);
    if (e < 0) return false;
    if (match) {
      *start = v;
      *end = (size_t)e;
      return true;
    }
    i = (size_t)json_ws(s, len, (size_t)e);
    if (i < len && s[i] == ',') i = (size_t)json_ws(s, len, i + 1);
  }
  return false;
}

/// Reads one call object: `{"name", "arguments"|"parameters"}`, `{"function": {…}}` wrappers
/// included. Returns false when it is not a call of an offered tool.
static bool lenient_call(const char *s, size_t len, const pb_emitter *out, pb_buf *name, pb_buf *args) {
  size_t a, b;
  if (json_member(s, len, "function", &a, &b) && s[a] == '{') return lenient_call(s + a, b - a, out, name, args);
  if (!json_member(s, len, "name", &a, &b) || s[a] != '"') return false;
  pb_buf raw_name = {0};
  json_decode_string(s + a, b - a, &raw_name);
  size_t ns = pb_skip_ws(raw_name.ptr ? raw_name.ptr : "", raw_name.len);
  size_t nl = pb_trim_end(raw_name.ptr ? raw_name.ptr + ns : "", raw_name.len - ns);
  bool ok = nl > 0 && out->offered_len > 0 && is_offered(out, raw_name.ptr + ns, nl);
  if (ok) pb_buf_add(name, raw_name.ptr + ns, nl);
  pb_buf_free(&raw_name);
  if (!ok) return false;
  const char *message;
  if (json_member(s, len, "arguments", &a, &b) || json_member(s, len, "parameters", &a, &b))
    return pb_arguments_text(s + a, b - a, args, &message) == 0;
  pb_buf_adds(args, "{}");
  return true;
}

typedef struct {
  pb_buf name, args;
} lenient_item;

/// A whole output as calls of offered tools: the number of calls (in `items`), or 0.
static size_t read_lenient(const char *text, size_t len, const pb_emitter *out, lenient_item **items) {
  size_t s = pb_skip_ws(text, len);
  text += s;
  len = pb_trim_end(text, len - s);
  if (pb_starts_with(text, len, FENCE)) {
    const char *newline = memchr(text, '\n', len);
    if (!newline || !info_is_json(text + 3, (size_t)(newline - text - 3))) return 0;
    size_t body = len - (size_t)(newline + 1 - text);
    const char *b = newline + 1;
    body = pb_trim_end(b, body);
    if (body < 3 || memcmp(b + body - 3, FENCE, 3) != 0) return 0;
    text = b;
    len = body - 3;
  }
  if (!pb_json_valid(text, len)) return 0;
  s = pb_skip_ws(text, len);
  size_t count = 0, cap = 4;
  *items = calloc(cap, sizeof(lenient_item));
  if (!*items) __builtin_trap();
  bool ok = true;
  if (text[s] == '{') {
    ok = lenient_call(text + s, len - s, out, &(*items)[0].name, &(*items)[0].args);
    count = 1;
  } else if (text[s] == '[') {
    size_t i = (size_t)json_ws(text, len, s + 1);
    while (ok && i < len && text[i] != ']') {
      long e = json_value(text, len, i, 0);
      if (e < 0 || text[i] != '{') {
        ok = false;
        break;
      }
      if (count == cap) {
        cap *= 2;
        *items = realloc(*items, cap * sizeof(lenient_item));
        if (!*items) __builtin_trap();
        memset(*items + count, 0, (cap - count) * sizeof(lenient_item));
      }
      ok = lenient_call(text + i, (size_t)e - i, out, &(*items)[count].name, &(*items)[count].args);
      count++;
      i = (size_t)json_ws(text, len, (size_t)e);
      if (i < len && text[i] == ',') i = (size_t)json_ws(text, len, i + 1);
    }
  } else {
    ok = false;
  }
  if (!ok || count == 0) {
    for (size_t k = 0; k < count; k++) {
      pb_buf_free(&(*items)[k].name);
      pb_buf_free(&(*items)[k].args);
    }
    free(*items);
    *items = NULL;
    return 0;
  }
  return count;
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
// Each literal is written as JSON text as it is read (as serde_json writes it), and the schema
// check reads that text and the schema's, so no value tree is built.

static const char *const NAT_LEADS[] = {
    "", "i'll ", "i\xe2\x80\x99ll ", "i will ", "let me ", "i'm going to ", "i am going to ", "now i'll ",
    "i need to ",
};
static const char *const NAT_VERBS[] = {"use ", "call ", "run ", "invoke ", "using ", "calling "};
static const char *const NAT_NOUNS[] = {" tool", " function"};
static const char *const NAT_OPENERS[] = {" with ", " using ", ": "};
static const char *const NAT_SEPARATORS[] = {", and ", ", ", " and "};
#define NAT_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/// How far a text goes toward the shape: all of it has the shape, it ends before the shape does
/// (it may still grow into it), or neither.
typedef enum { NAT_NO, NAT_PREFIX, NAT_WHOLE } nat_read;

typedef struct {
  const char *text;
  size_t len, at;
  bool complete;  // the text is the whole output (a word at its end is not cut short)
} nat_cursor;

static char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c; }

/// Whether a[0..n] and b[0..n] are equal ignoring ASCII case, as Rust's eq_ignore_ascii_case.
static bool eq_ci(const char *a, const char *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

static bool is_alnum(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_name_char(char c) { return is_alnum(c) || c == '_' || c == '-' || c == '.'; }
static bool is_key_char(char c) { return is_alnum(c) || c == '_'; }
static bool is_word_char(char c) { return is_alnum(c) || c == '.' || c == '-' || c == '+' || c == '_'; }

static bool nat_at_end(const nat_cursor *s) { return s->at >= s->len; }

static bool nat_eat(nat_cursor *s, const char *word) {
  bool ok = pb_starts_with(s->text + s->at, s->len - s->at, word);
  if (ok) s->at += strlen(word);
  return ok;
}

static void nat_take_while(nat_cursor *s, bool (*keep)(char)) {
  while (s->at < s->len && keep(s->text[s->at])) s->at++;
}

static void nat_skip_spaces(nat_cursor *s) {
  while (s->at < s->len && s->text[s->at] == ' ') s->at++;
}

/// Eats the first of `words` the text starts with (in any case when `ci`); NAT_PREFIX when the
/// text ends inside one (in any case: as in Rust).
static nat_read nat_one_of(nat_cursor *s, const char *const *words, size_t n, bool ci) {
  const char *rest = s->text + s->at;
  size_t left = s->len - s->at;
  bool prefix = false;
  for (size_t i = 0; i < n; i++) {
    size_t m = strlen(words[i]);
    if (left >= m && (ci ? eq_ci(rest, words[i], m) : memcmp(rest, words[i], m) == 0)) {
      s->at += m;
      return NAT_WHOLE;
    }
    prefix |= left < m && eq_ci(rest, words[i], left);
  }
  return prefix ? NAT_PREFIX : NAT_NO;
}

/// After the arguments: a full stop and blank space, nothing else.
static nat_read nat_end(const nat_cursor *s) {
  size_t n = pb_trim_end(s->text + s->at, s->len - s->at);
  return n == 0 || (n == 1 && s->text[s->at] == '.') ? NAT_WHOLE : NAT_NO;
}

/// A quoted string with backslash escapes (`\n`, `\t`, `\\`, the quote), its text into `out`.
static nat_read nat_string(nat_cursor *s, char quote, pb_buf *out) {
  for (size_t i = s->at + 1; i < s->len; i++) {
    char c = s->text[i];
    if (c == quote) {
      s->at = i + 1;
      return NAT_WHOLE;
    }
    if (c == '\\') {
      if (++i >= s->len) break;
      c = s->text[i] == 'n' ? '\n' : s->text[i] == 't' ? '\t' : s->text[i];
    }
    pb_buf_add(out, &c, 1);
  }
  return NAT_PREFIX;
}

/// Whether the decimal digits[0..n] × 10^(e-n+1) reads back as x.
static bool reads_back(const char *digits, int n, int e, double x) {
  char text[48];
  snprintf(text, sizeof text, "%.*se%d", n, digits, e - n + 1);
  return strtod(text, NULL) == x;
}

/// Appends a float as serde_json writes it: the shortest digits that read back as x, in fixed
/// notation for exponents -5 to 15 (`1.0`, `0.05`), else `2.5e+20`, `1.5e-7`.
static void add_float(pb_buf *out, double x) {
  if (x == 0) {
    pb_buf_adds(out, signbit(x) ? "-0.0" : "0.0");
    return;
  }
  if (x < 0) pb_buf_adds(out, "-");
  x = fabs(x);
  char digits[24];
  int n = 0, e = 0;
  for (int p = 1; p <= 17; p++) {
    char sci[40];  // "d.ddde±XX"
    snprintf(sci, sizeof sci, "%.*e", p - 1, x);
    n = 0;
    for (const char *c = sci; *c != 'e'; c++)
      if (*c != '.') digits[n++] = *c;
    e = atoi(strchr(sci, 'e') + 1);
    if (reads_back(digits, n, e, x)) break;
    // printf rounds to the nearest p digits; a power of two, whose lower neighbour is nearer
    // than its upper one, may read back only from the p digits just above.
    int k = n - 1;
    while (k >= 0 && digits[k] == '9') digits[k--] = '0';
    if (k < 0) {
      digits[0] = '1';
      e++;
    } else {
      digits[k]++;
    }
    if (reads_back(digits, n, e, x)) break;
  }
  while (n > 1 && digits[n - 1] == '0') n--;
  if (e < -5 || e > 15) {
    pb_buf_add(out, digits, 1);
    if (n > 1) {
      pb_buf_adds(out, ".");
      pb_buf_add(out, digits + 1, (size_t)n - 1);
    }
    pb_buf_addf(out, "e%+d", e);
  } else if (n <= e + 1) {
    pb_buf_add(out, digits, (size_t)n);
    for (int k = n; k <= e; k++) pb_buf_adds(out, "0");
    pb_buf_adds(out, ".0");
  } else if (e >= 0) {
    pb_buf_add(out, digits, (size_t)e + 1);
    pb_buf_adds(out, ".");
    pb_buf_add(out, digits + e + 1, (size_t)(n - e - 1));
  } else {
    pb_buf_adds(out, "0.");
    for (int k = 1; k < -e; k++) pb_buf_adds(out, "0");
    pb_buf_add(out, digits, (size_t)n);
  }
}

/// Appends a number as Rust parses it: an i64, else a finite f64; false when it is none.
static bool nat_number(const char *w, size_t n, pb_buf *out) {
  size_t i = n > 0 && (w[0] == '+' || w[0] == '-');
  size_t digits = 0;
  while (i + digits < n && w[i + digits] >= '0' && w[i + digits] <= '9') digits++;
  if (digits > 0 && i + digits == n) {
    uint64_t v = 0;
    bool big = false;
    for (size_t k = i; k < n && !big; k++) {
      uint64_t d = (uint64_t)(w[k] - '0');
      big = v > (UINT64_MAX - d) / 10;
      v = v * 10 + d;
    }
    bool negative = w[0] == '-';
    if (!big && v <= (uint64_t)INT64_MAX + negative) {
      pb_buf_addf(out, negative && v > 0 ? "-%llu" : "%llu", (unsigned long long)v);  // -0 is 0
      return true;
    }
  }
  // Rust's float syntax (strtod also takes hex, `inf` and blank space).
  size_t k = n > 0 && (w[0] == '+' || w[0] == '-');
  size_t whole = 0, fraction = 0;
  while (k < n && w[k] >= '0' && w[k] <= '9') k++, whole++;
  if (k < n && w[k] == '.') {
    k++;
    while (k < n && w[k] >= '0' && w[k] <= '9') k++, fraction++;
  }
  if (whole + fraction == 0) return false;
  if (k < n && (w[k] == 'e' || w[k] == 'E')) {
    k++;
    if (k < n && (w[k] == '+' || w[k] == '-')) k++;
    size_t exponent = 0;
    while (k < n && w[k] >= '0' && w[k] <= '9') k++, exponent++;
    if (exponent == 0) return false;
  }
  if (k != n) return false;
  pb_buf copy = {0};
  pb_buf_add(&copy, w, n);
  double f = strtod(copy.ptr, NULL);
  pb_buf_free(&copy);
  if (!isfinite(f)) return false;
  add_float(out, f);
  return true;
}

/// An object's members while it is read: keys as JSON strings, values as JSON texts.
typedef struct {
  pb_buf *keys, *values;
  size_t n, cap;
} nat_members;

static size_t members_find(const nat_members *m, const pb_buf *key) {
  size_t i = 0;
  while (i < m->n && !(m->keys[i].len == key->len && memcmp(m->keys[i].ptr, key->ptr, key->len) == 0)) i++;
  return i;
}

/// Sets a member (taking both buffers): a key already there keeps its place and takes the new
/// value, as a serde_json map does.
static void members_set(nat_members *m, pb_buf *key, pb_buf *value) {
  size_t i = members_find(m, key);
  if (i < m->n) {
    pb_buf_free(key);
    pb_buf_free(&m->values[i]);
    m->values[i] = *value;
    return;
  }
  if (m->n == m->cap) {
    m->cap = m->cap ? m->cap * 2 : 4;
    m->keys = realloc(m->keys, m->cap * sizeof(pb_buf));
    m->values = realloc(m->values, m->cap * sizeof(pb_buf));
    if (!m->keys || !m->values) __builtin_trap();
  }
  m->keys[m->n] = *key;
  m->values[m->n] = *value;
  m->n++;
}

/// Appends the object's JSON text to `out`.
static void members_finish(nat_members *m, pb_buf *out) {
  pb_buf_adds(out, "{");
  for (size_t i = 0; i < m->n; i++) {
    if (i) pb_buf_adds(out, ",");
    pb_buf_add(out, m->keys[i].ptr, m->keys[i].len);
    pb_buf_adds(out, ":");
    pb_buf_add(out, m->values[i].ptr, m->values[i].len);
  }
  pb_buf_adds(out, "}");
}

static void members_free(nat_members *m) {
  for (size_t i = 0; i < m->n; i++) {
    pb_buf_free(&m->keys[i]);
    pb_buf_free(&m->values[i]);
  }
  free(m->keys);
  free(m->values);
}

static nat_read nat_literal(nat_cursor *s, pb_buf *out);

/// A dict's members, after its opening brace.
static nat_read nat_dict(nat_cursor *s, nat_members *m) {
  for (;;) {
    nat_skip_spaces(s);
    if (nat_at_end(s)) return NAT_PREFIX;
    if (nat_eat(s, "}")) return NAT_WHOLE;
    if (m->n > 0) {
      if (!nat_eat(s, ",")) return NAT_NO;
      nat_skip_spaces(s);
    }
    if (nat_at_end(s)) return NAT_PREFIX;
    char q = s->text[s->at];
    if (q != '"' && q != '\'') return NAT_NO;
    pb_buf raw = {0}, key = {0}, value = {0};
    nat_read r = nat_string(s, q, &raw);
    pb_json_string(&key, raw.ptr ? raw.ptr : "", raw.len);
    pb_buf_free(&raw);
    if (r == NAT_WHOLE) {
      nat_skip_spaces(s);
      r = nat_at_end(s) ? NAT_PREFIX : !nat_eat(s, ":") ? NAT_NO : NAT_WHOLE;
    }
    if (r == NAT_WHOLE) {
      nat_skip_spaces(s);
      r = nat_literal(s, &value);
    }
    if (r != NAT_WHOLE) {
      pb_buf_free(&key);
      pb_buf_free(&value);
      return r;
    }
    members_set(m, &key, &value);
  }
}

/// A Python or JSON literal (a string, a number, `True`/`true`, `False`/`false`, `None`/`null`,
/// a list or a dict of them), appended to `out` as JSON text.
static nat_read nat_literal(nat_cursor *s, pb_buf *out) {
  if (nat_at_end(s)) return NAT_PREFIX;
  char first = s->text[s->at];
  if (first == '"' || first == '\'') {
    pb_buf raw = {0};
    nat_read r = nat_string(s, first, &raw);
    if (r == NAT_WHOLE) pb_json_string(out, raw.ptr ? raw.ptr : "", raw.len);
    pb_buf_free(&raw);
    return r;
  }
  if (first == '[') {
    s->at++;
    pb_buf_adds(out, "[");
    for (size_t items = 0;; items++) {
      nat_skip_spaces(s);
      if (nat_at_end(s)) return NAT_PREFIX;
      if (nat_eat(s, "]")) break;
      if (items > 0) {
        if (!nat_eat(s, ",")) return NAT_NO;
        nat_skip_spaces(s);
        if (nat_eat(s, "]")) break;
        pb_buf_adds(out, ",");
      }
      nat_read r = nat_literal(s, out);
      if (r != NAT_WHOLE) return r;
    }
    pb_buf_adds(out, "]");
    return NAT_WHOLE;
  }
  if (first == '{') {
    s->at++;
    nat_members m = {0};
    nat_read r = nat_dict(s, &m);
    if (r == NAT_WHOLE) members_finish(&m, out);
    members_free(&m);
    return r;
  }
  size_t start = s->at;
  nat_take_while(s, is_word_char);
  size_t n = s->at - start;
  // A word cut by the end of the text may still grow.
  if (nat_at_end(s) && !s->complete) return NAT_PREFIX;
  // A full stop that ends the output ends the sentence, not the number.
  if (n > 0 && s->text[s->at - 1] == '.' && pb_skip_ws(s->text + s->at, s->len - s->at) == s->len - s->at) {
    n--;
    s->at--;
  }
  const char *w = s->text + start;
  static const char *const words[][2] = {{"True", "true"}, {"true", "true"},   {"False", "false"},
                                         {"false", "false"}, {"None", "null"}, {"null", "null"}};
  for (size_t i = 0; i < NAT_COUNT(words); i++) {
    if (n == strlen(words[i][0]) && memcmp(w, words[i][0], n) == 0) {
      pb_buf_adds(out, words[i][1]);
      return NAT_WHOLE;
    }
  }
  return nat_number(w, n, out) ? NAT_WHOLE : NAT_NO;
}

/// `name=value` pairs to the end of the text (or to `close`), then an optional full stop.
static nat_read nat_pairs(nat_cursor *s, char close, nat_members *m) {
  char closing[2] = {close, 0};
  for (;;) {
    nat_skip_spaces(s);
    if (nat_at_end(s)) return NAT_PREFIX;
    // (A closing parenthesis after a separator is eaten too, as in Rust; the key after it fails.)
    if (close && nat_eat(s, closing) && m->n == 0) return nat_end(s);
    size_t start = s->at;
    nat_take_while(s, is_key_char);
    size_t n = s->at - start;
    nat_skip_spaces(s);
    if (nat_at_end(s)) return NAT_PREFIX;
    pb_buf key = {0}, value = {0};
    pb_json_string(&key, s->text + start, n);
    if (n == 0 || !nat_eat(s, "=") || members_find(m, &key) < m->n) {
      pb_buf_free(&key);
      return NAT_NO;
    }
    nat_skip_spaces(s);
    nat_read r = nat_literal(s, &value);
    if (r != NAT_WHOLE) {
      pb_buf_free(&key);
      pb_buf_free(&value);
      return r;
    }
    members_set(m, &key, &value);
    // Complete as it is, or the start of what follows.
    if (nat_at_end(s)) return close ? NAT_PREFIX : NAT_WHOLE;
    if (close && nat_eat(s, closing)) return nat_end(s);
    r = nat_one_of(s, NAT_SEPARATORS, NAT_COUNT(NAT_SEPARATORS), false);
    if (r == NAT_PREFIX) return NAT_PREFIX;
    if (r == NAT_NO) return nat_end(s);
  }
}

/// After the verb: the tool's name into `name`, its arguments into `args`.
static nat_read nat_after_verb(nat_cursor *s, pb_buf *name, nat_members *args) {
  char quote = nat_at_end(s) ? 0 : s->text[s->at];
  if (quote == '`' || quote == '"' || quote == '\'') s->at++;
  else quote = 0;
  size_t start = s->at;
  nat_take_while(s, is_name_char);
  while (s->at > start && s->text[s->at - 1] == '.') s->at--;
  if (nat_at_end(s)) return NAT_PREFIX;
  if (s->at == start) return NAT_NO;
  pb_buf_add(name, s->text + start, s->at - start);
  if (quote) {
    char q[2] = {quote, 0};
    if (!nat_eat(s, q)) return NAT_NO;
    if (nat_at_end(s)) return NAT_PREFIX;
  }
  if (nat_eat(s, "(")) return nat_pairs(s, ')', args);
  if (nat_one_of(s, NAT_NOUNS, NAT_COUNT(NAT_NOUNS), true) == NAT_PREFIX) return NAT_PREFIX;
  nat_read opener = nat_one_of(s, NAT_OPENERS, NAT_COUNT(NAT_OPENERS), true);
  if (opener != NAT_WHOLE) return opener;
  return nat_pairs(s, 0, args);
}

/// Reads the sentence: the tool's name and its arguments (a JSON object's text) when it is whole.
static nat_read nat_sentence(const char *text, size_t len, bool complete, pb_buf *name, pb_buf *args) {
  nat_read best = NAT_NO;
  // Every lead-in and verb that the text starts with (or could still start with).
  for (size_t l = 0; l < NAT_COUNT(NAT_LEADS); l++) {
    for (size_t v = 0; v < NAT_COUNT(NAT_VERBS); v++) {
      for (int article = 1; article >= 0; article--) {
        char head[64];
        snprintf(head, sizeof head, "%s%s%s", NAT_LEADS[l], NAT_VERBS[v], article ? "the " : "");
        size_t n = strlen(head);
        if (len < n) {
          if (eq_ci(text, head, len)) best = NAT_PREFIX;
          continue;
        }
        if (!eq_ci(text, head, n)) continue;
        nat_cursor s = {text + n, len - n, 0, complete};
        nat_members m = {0};
        name->len = 0;
        nat_read r = nat_after_verb(&s, name, &m);
        if (r == NAT_WHOLE) members_finish(&m, args);
        members_free(&m);
        if (r == NAT_WHOLE) return r;
        if (r == NAT_PREFIX) best = NAT_PREFIX;
      }
    }
  }
  return best;
}

// The schema check, on JSON texts: the arguments as written above and the tool's schema. Where
// a key comes twice the last one counts, and integers are not floats, as in serde_json.

/// Steps through the members of a JSON object or the items of a list (`s` one valid JSON value,
/// `*at` 0 at first): the next key's span (objects) and value's span; false after the last.
static bool json_next(const char *s, size_t len, size_t *at, size_t *key, size_t *key_end, size_t *value,
                      size_t *value_end) {
  if (s[*at] == '}' || s[*at] == ']') return false;
  size_t i = (size_t)json_ws(s, len, *at + 1);
  if (s[i] == '}' || s[i] == ']') {
    *at = i;
    return false;
  }
  if (s[0] == '{') {
    *key = i;
    *key_end = (size_t)json_string(s, len, i);
    i = (size_t)json_ws(s, len, (size_t)json_ws(s, len, *key_end) + 1);  // past ':'
  }
  *value = i;
  *value_end = (size_t)json_value(s, len, i, 0);
  *at = (size_t)json_ws(s, len, *value_end);
  return true;
}

/// Whether a JSON string token holds the text `name[0..n]`.
static bool json_string_is(const char *token, size_t len, const char *name, size_t n) {
  pb_buf text = {0};
  json_decode_string(token, len, &text);
  bool same = text.len == n && (n == 0 || memcmp(text.ptr, name, n) == 0);
  pb_buf_free(&text);
  return same;
}

/// The span of the last member `name` of a JSON object (any other value has none).
static bool json_get(const char *s, size_t len, const char *name, size_t n, size_t *start, size_t *end) {
  bool found = false;
  size_t at = 0, k, ke, v, ve;
  while (s[0] == '{' && json_next(s, len, &at, &k, &ke, &v, &ve)) {
    if (json_string_is(s + k, ke - k, name, n)) {
      *start = v;
      *end = ve;
      found = true;
    }
  }
  return found;
}

/// A JSON number as serde_json holds it: 'u' (u64, in `u`), 'i' (a negative i64, its magnitude
/// in `u`) or 'f' (f64, in `f`).
static char number_kind(const char *s, size_t len, uint64_t *u, double *f) {
  bool negative = s[0] == '-', integer = true, big = false;
  uint64_t v = 0;
  for (size_t i = negative; i < len && integer; i++) {
    integer = s[i] >= '0' && s[i] <= '9';
    uint64_t d = (uint64_t)(s[i] - '0');
    big |= v > (UINT64_MAX - d) / 10;
    v = v * 10 + d;
  }
  *u = v;
  if (integer && !big && !negative) return 'u';
  if (integer && !big && v > 0 && v <= (uint64_t)1 << 63) return 'i';
  *f = strtod(s, NULL);  // (the text goes on with a JSON delimiter or its terminating 0)
  return 'f';
}

/// JSON equality as serde_json has it: an integer never equals a float; key order does not count.
static bool json_same(const char *a, size_t alen, const char *b, size_t blen) {
  char ka = a[0] == '-' || (a[0] >= '0' && a[0] <= '9') ? '0' : a[0];
  char kb = b[0] == '-' || (b[0] >= '0' && b[0] <= '9') ? '0' : b[0];
  if (ka != kb) return false;
  size_t i = 0, j = 0, k, ke, v, ve, k2, ke2, v2, ve2;
  switch (ka) {
    case '"': {
      pb_buf text = {0};
      json_decode_string(a, alen, &text);
      bool same = json_string_is(b, blen, text.ptr ? text.ptr : "", text.len);
      pb_buf_free(&text);
      return same;
    }
    case '0': {
      uint64_t ua, ub;
      double fa = 0, fb = 0;
      char na = number_kind(a, alen, &ua, &fa), nb = number_kind(b, blen, &ub, &fb);
      return na == nb && (na == 'f' ? fa == fb : ua == ub);
    }
    case '[':
      for (;;) {
        bool more = json_next(a, alen, &i, &k, &ke, &v, &ve);
        if (more != json_next(b, blen, &j, &k2, &ke2, &v2, &ve2)) return false;
        if (!more) return true;
        if (!json_same(a + v, ve - v, b + v2, ve2 - v2)) return false;
      }
    case '{':
      // The same keys, and under each the same (last) value.
      while (json_next(a, alen, &i, &k, &ke, &v, &ve)) {
        pb_buf key = {0};
        json_decode_string(a + k, ke - k, &key);
        const char *name = key.ptr ? key.ptr : "";
        bool same = json_get(a, alen, name, key.len, &v, &ve) && json_get(b, blen, name, key.len, &v2, &ve2) &&
                    json_same(a + v, ve - v, b + v2, ve2 - v2);
        pb_buf_free(&key);
        if (!same) return false;
      }
      while (json_next(b, blen, &j, &k, &ke, &v, &ve)) {
        pb_buf key = {0};
        json_decode_string(b + k, ke - k, &key);
        bool in_a = json_get(a, alen, key.ptr ? key.ptr : "", key.len, &v2, &ve2);
        pb_buf_free(&key);
        if (!in_a) return false;
      }
      return true;
    default:
      return true;  // true, false, null: the first letter says which
  }
}

static bool value_fits(const char *value, size_t len, const char *schema, size_t slen);

/// Whether `args` (a JSON object) fit `schema`: every argument a property of it, of its type
/// and in its enum; every required property given.
static bool fits(const char *args, size_t len, const char *schema, size_t slen) {
  size_t ps = 0, pe = 0, at = 0, k, ke, v, ve;
  bool has_properties = json_get(schema, slen, "properties", 10, &ps, &pe) && schema[ps] == '{';
  if (json_get(schema, slen, "required", 8, &v, &ve) && schema[v] == '[') {
    const char *required = schema + v;
    size_t rlen = ve - v;
    while (json_next(required, rlen, &at, &k, &ke, &v, &ve)) {
      if (required[v] != '"') continue;
      pb_buf name = {0};
      json_decode_string(required + v, ve - v, &name);
      bool given = json_get(args, len, name.ptr ? name.ptr : "", name.len, &k, &ke);
      pb_buf_free(&name);
      if (!given) return false;
    }
  }
  at = 0;
  while (json_next(args, len, &at, &k, &ke, &v, &ve)) {
    pb_buf name = {0};
    json_decode_string(args + k, ke - k, &name);
    size_t s, e;
    bool ok = has_properties && json_get(schema + ps, pe - ps, name.ptr ? name.ptr : "", name.len, &s, &e) &&
              value_fits(args + v, ve - v, schema + ps + s, e - s);
    pb_buf_free(&name);
    if (!ok) return false;
  }
  return true;
}

/// Whether a value (JSON text) is of the type that a JSON string token names.
static bool of_type(const char *value, size_t len, const char *schema, size_t slen, const char *type, size_t tlen) {
#define TYPE_IS(name) json_string_is(type, tlen, name, strlen(name))
  size_t s, e, at = 0, k, ke, v, ve;
  uint64_t u;
  double f;
  char c = value[0];
  bool number = c == '-' || (c >= '0' && c <= '9');
  if (TYPE_IS("string")) return c == '"';
  if (TYPE_IS("boolean")) return c == 't' || c == 'f';
  if (TYPE_IS("null")) return c == 'n';
  if (TYPE_IS("number")) return number;
  if (TYPE_IS("integer")) return number && number_kind(value, len, &u, &f) != 'f';
  if (TYPE_IS("array")) {
    if (c != '[') return false;
    if (!json_get(schema, slen, "items", 5, &s, &e)) return true;
    while (json_next(value, len, &at, &k, &ke, &v, &ve))
      if (!value_fits(value + v, ve - v, schema + s, e - s)) return false;
    return true;
  }
  if (TYPE_IS("object")) {
    bool open = !json_get(schema, slen, "properties", 10, &s, &e) && !json_get(schema, slen, "required", 8, &s, &e);
    return c == '{' && (open || fits(value, len, schema, slen));
  }
  return false;
#undef TYPE_IS
}

static bool value_fits(const char *value, size_t len, const char *schema, size_t slen) {
  size_t s, e, at = 0, k, ke, v, ve;
  if (schema[0] != '{') return true;
  if (json_get(schema, slen, "enum", 4, &s, &e) && schema[s] == '[') {
    bool listed = false;
    while (!listed && json_next(schema + s, e - s, &at, &k, &ke, &v, &ve))
      listed = json_same(value, len, schema + s + v, ve - v);
    if (!listed) return false;
  }
  if (!json_get(schema, slen, "type", 4, &s, &e)) return true;
  if (schema[s] == '"') return of_type(value, len, schema, slen, schema + s, e - s);
  if (schema[s] != '[') return true;
  at = 0;
  while (json_next(schema + s, e - s, &at, &k, &ke, &v, &ve))
    if (schema[s + v] == '"' && of_type(value, len, schema, slen, schema + s + v, ve - v)) return true;
  return false;
}

/// Whether the output so far may still become a call written as a sentence (while streaming).
static bool could_be_natural(const char *text, size_t len) {
  size_t s = pb_skip_ws(text, len);
  pb_buf name = {0}, args = {0};
  nat_read r = nat_sentence(text + s, len - s, false, &name, &args);
  pb_buf_free(&name);
  pb_buf_free(&args);
  return r != NAT_NO;
}

/// The output as a call of an offered tool whose arguments fit its schema (`schemas` are the
/// offered tools' parameters, NUL-terminated): one call (in `items`), or 0.
static size_t read_natural(const char *text, size_t len, const pb_emitter *out, char *const *schemas,
                           lenient_item **items) {
  size_t s = pb_skip_ws(text, len);
  pb_buf name = {0}, args = {0};
  size_t tool = out->offered_len;
  if (nat_sentence(text + s, pb_trim_end(text + s, len - s), true, &name, &args) == NAT_WHOLE) {
    tool = 0;
    while (tool < out->offered_len &&
           !(strlen(out->offered[tool]) == name.len && memcmp(out->offered[tool], name.ptr, name.len) == 0))
      tool++;
  }
  if (tool < out->offered_len) {
    // A schema that is not a JSON object is `{}`.
    const char *schema = schemas[tool];
    size_t slen = strlen(schema), ss = pb_skip_ws(schema, slen);
    if (!pb_json_valid(schema, slen) || schema[ss] != '{') schema = "{}", slen = 2, ss = 0;
    long end = json_value(schema, slen, ss, 0);
    if (!fits(args.ptr, args.len, schema + ss, (size_t)end - ss)) tool = out->offered_len;
  }
  if (tool == out->offered_len) {
    pb_buf_free(&name);
    pb_buf_free(&args);
    return 0;
  }
  *items = calloc(1, sizeof(lenient_item));
  if (!*items) __builtin_trap();
  (*items)[0].name = name;
  (*items)[0].args = args;
  return 1;
}

// ---------------------------------------------------------------------------------------------
// The stream parser

// MODE_FENCED_CALLS (lenient): a ```json fence in prose whose body may be calls naming offered
// tools, held from its info line on until the fence closes, the output ends, or the body can no
// longer be calls.
typedef enum { MODE_CONTENT, MODE_REASONING, MODE_CALL, MODE_FENCE, MODE_WHOLE, MODE_FENCED_CALLS } mode_t_;

typedef struct {
  pb_spec spec;
  bool lenient;
  pb_emitter out;
  char **schemas;  // the offered tools' parameters (NUL-terminated), beside out.offered
  pb_buf pending;
  mode_t_ mode;
  pb_body *body;
  bool in_fence, whole_decided;
  // Content markers: reasoning opener, call openers, end-of-turn markers, the fence.
  const char *markers[64];
  char actions[64];  // 'r' reasoning, 'c' call, 'e' end of turn, 'f' fence
  int call_of[64];
  size_t n_markers;
  const char *reasoning_close[32];
  size_t n_close;
  const char *openers[32];
  size_t n_openers;
} parser_t;

static void add_marker(parser_t *p, const char *marker, char action, int call) {
  if (p->n_markers >= 64) return;
  p->markers[p->n_markers] = marker;
  p->actions[p->n_markers] = action;
  p->call_of[p->n_markers] = call;
  p->n_markers++;
}

static parser_t *parser_new(const pb_parse_options *options) {
  parser_t *p = calloc(1, sizeof(parser_t));
  if (!p) __builtin_trap();
  p->spec = adapter_spec(options);
  p->lenient = options->lenient;
  p->whole_decided = !options->lenient;
  p->out.offered_len = options->tools.len;
  p->out.offered = pb_alloc(options->tools.len * sizeof(char *));
  p->schemas = pb_alloc(options->tools.len * sizeof(char *));
  for (size_t i = 0; i < options->tools.len; i++) {
    const pb_string *name = &options->tools.ptr[i].name;
    p->out.offered[i] = pb_alloc(name->len + 1);
    memcpy(p->out.offered[i], name->ptr, name->len);
    p->out.offered[i][name->len] = 0;
    const pb_string *schema = &options->tools.ptr[i].parameters;
    p->schemas[i] = pb_alloc(schema->len + 1);
    memcpy(p->schemas[i], schema->ptr, schema->len);
    p->schemas[i][schema->len] = 0;
  }
  if (p->spec.reasoning_open) add_marker(p, p->spec.reasoning_open, 'r', -1);
  for (int i = 0; p->spec.calls && p->spec.calls[i].open; i++) {
    add_marker(p, p->spec.calls[i].open, 'c', i);
    if (p->n_openers < 32) p->openers[p->n_openers++] = p->spec.calls[i].open;
  }
  size_t eots = list_len(p->spec.end_of_turn);
  for (size_t i = 0; i < eots; i++) add_marker(p, p->spec.end_of_turn[i], 'e', -1);
  add_marker(p, FENCE, 'f', -1);
  if (p->spec.reasoning_close) {
    p->reasoning_close[p->n_close++] = p->spec.reasoning_close;
    for (size_t i = 0; i < eots && p->n_close < 32; i++) p->reasoning_close[p->n_close++] = p->spec.end_of_turn[i];
  }
  p->mode = p->spec.reasoning_open && options->reasoning_open ? MODE_REASONING : MODE_CONTENT;
  return p;
}

static void parser_free(parser_t *p) {
  if (p->body) p->body->free(p->body);
  pb_buf_free(&p->pending);
  for (size_t i = 0; i < p->out.offered_len; i++) {
    free(p->out.offered[i]);
    free(p->schemas[i]);
  }
  free(p->out.offered);
  free(p->schemas);
  pb_buf_free(&p->out.content.trailing);
  pb_buf_free(&p->out.reasoning.trailing);
  free(p->out.events);
  free(p);
}

static const char *pend(const parser_t *p) { return p->pending.ptr ? p->pending.ptr : ""; }

/// The whole text without surrounding whitespace and end-of-turn markers at its end: its span.
static void whole_text(const parser_t *p, const char *text, size_t len, bool at_end, size_t *start, size_t *n) {
  size_t s = pb_skip_ws(text, len);
  size_t l = pb_trim_end(text + s, len - s);
  const char *t = text + s;
  size_t eots = list_len(p->spec.end_of_turn);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t i = 0; i < eots; i++) {
      size_t m = strlen(p->spec.end_of_turn[i]);
      if (l >= m && memcmp(t + l - m, p->spec.end_of_turn[i], m) == 0) {
        l = pb_trim_end(t, l - m);
        changed = true;
      }
    }
  }
  if (!at_end) {
    for (size_t i = 0; i < eots; i++) {
      const char *eot = p->spec.end_of_turn[i];
      for (size_t cut = strlen(eot) - 1; cut > 0; cut--) {
        if (l >= cut && memcmp(t + l - cut, eot, cut) == 0) {
          l = pb_trim_end(t, l - cut);
          *start = s;
          *n = l;
          return;
        }
      }
    }
  }
  *start = s;
  *n = l;
}

/// Whether the output so far may still be calls by its whole shape (lenient mode).
static bool could_be_whole_calls(const char *text, size_t len) {
  return could_be_json(text, len) || could_be_natural(text, len);
}

static bool decide_whole(parser_t *p, bool at_end) {
  size_t s = pb_skip_ws(pend(p), p->pending.len);
  const char *text = pend(p) + s;
  size_t len = p->pending.len - s;
  if (len == 0 && !at_end) return false;
  if (p->out.content.started || p->out.next_index > 0) {
    p->whole_decided = true;
    return true;
  }
  if (p->spec.reasoning_open) {
    if (pb_starts_with(text, len, p->spec.reasoning_open)) return true;
    if (is_prefix_of(text, len, p->spec.reasoning_open) && !at_end) return false;
  }
  size_t ws, wn;
  whole_text(p, text, len, at_end, &ws, &wn);
  if (could_be_whole_calls(text + ws, wn)) p->mode = MODE_WHOLE;
  else p->whole_decided = true;
  return true;
}

/// Sends calls read whole (lenient JSON or a sentence), each complete, and frees them.
static void emit_calls(parser_t *p, lenient_item *items, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint32_t index = pb_start_call(&p->out);
    pb_begin_call(&p->out, index, items[i].name.ptr, items[i].name.len);
    pb_arguments(&p->out, index, items[i].args.ptr, items[i].args.len);
    pb_end_call(&p->out, index);
    pb_buf_free(&items[i].name);
    pb_buf_free(&items[i].args);
  }
  free(items);
}

/// The offset of the first fence in `text[from..len]`, or `len` when there is none.
static size_t find_fence(const char *text, size_t len, size_t from) {
  for (size_t i = from; i + 3 <= len; i++)
    if (memcmp(text + i, FENCE, 3) == 0) return i;
  return len;
}

static bool close_fence(parser_t *p, bool at_end) {
  size_t s = pb_skip_ws(pend(p), p->pending.len);
  const char *text = pend(p) + s;
  size_t len = p->pending.len - s;
  if (len == 0) {
    if (at_end) p->in_fence = false;
    return at_end;
  }
  if (pb_starts_with(text, len, FENCE)) {
    pb_buf_drain(&p->pending, s + 3);
    p->in_fence = false;
    return true;
  }
  if (is_prefix_of(text, len, FENCE) && !at_end) return false;
  pb_scan_t r = pb_scan(text, len, p->openers, p->n_openers, at_end);
  if (r.start == 0 && r.index >= 0) return true;
  if (r.start == 0 && !at_end) return false;
  p->in_fence = false;
  return true;
}

static void drive(parser_t *p, bool at_end) {
  for (;;) {
    switch (p->mode) {
      case MODE_CONTENT: {
        if (!p->whole_decided) {
          if (!decide_whole(p, at_end)) return;
          if (p->mode == MODE_WHOLE) continue;
        }
        if (p->in_fence && !close_fence(p, at_end)) return;
        pb_scan_t r = pb_scan(pend(p), p->pending.len, p->markers, p->n_markers, at_end);
        pb_content(&p->out, pend(p), r.start);
        if (r.index < 0) {
          pb_buf_drain(&p->pending, r.start);
          return;
        }
        pb_buf_drain(&p->pending, r.start + r.len);
        switch (p->actions[r.index]) {
          case 'r': p->mode = MODE_REASONING; break;
          case 'c':
            p->mode = MODE_CALL;
            p->body = p->spec.calls[p->call_of[r.index]].make(&p->out);
            break;
          case 'f': p->mode = MODE_FENCE; break;
          default: break;
        }
        break;
      }
      case MODE_REASONING: {
        pb_scan_t r = pb_scan(pend(p), p->pending.len, p->reasoning_close, p->n_close, at_end);
        pb_reasoning(&p->out, pend(p), r.start);
        if (r.index < 0) {
          pb_buf_drain(&p->pending, r.start);
          return;
        }
        pb_buf_drain(&p->pending, r.start + r.len);
        // Index 0 closes the reasoning; the others are end-of-turn markers, removed.
        if (r.index == 0) p->mode = MODE_CONTENT;
        break;
      }
      case MODE_CALL: {
        pb_buf text = p->pending;
        p->pending = (pb_buf){0};
        if (text.len == 0 && !at_end) {
          pb_buf_free(&text);
          return;
        }
        pb_buf rest = {0};
        bool ended = p->body->push(p->body, text.ptr ? text.ptr : "", text.len, at_end, &rest);
        pb_buf_free(&text);
        if (!ended) {
          pb_buf_free(&rest);
          if (at_end) {
            p->body->free(p->body);
            p->body = NULL;
            p->mode = MODE_CONTENT;
          }
          return;
        }
        p->body->free(p->body);
        p->body = NULL;
        p->pending = rest;
        p->mode = MODE_CONTENT;
        break;
      }
      case MODE_FENCE: {
        // The fence's info string, its line break and blank space, then a call?
        const char *newline = memchr(pend(p), '\n', p->pending.len);
        size_t info = newline ? (size_t)(newline - pend(p)) : p->pending.len;
        bool info_ok = info < 16 && !memchr(pend(p), ' ', info);
        if (!newline) {
          if (at_end || !info_ok) {
            pb_content(&p->out, FENCE, 3);
            p->mode = MODE_CONTENT;
            continue;
          }
          return;
        }
        size_t line = (size_t)(newline - pend(p)) + 1;
        size_t s = line + pb_skip_ws(pend(p) + line, p->pending.len - line);
        pb_scan_t r = pb_scan(pend(p) + s, p->pending.len - s, p->openers, p->n_openers, at_end);
        if (r.start == 0 && r.index >= 0) {
          pb_buf_drain(&p->pending, s);
          p->in_fence = true;
          p->mode = MODE_CONTENT;
        } else if (r.start == 0 && r.index < 0 && !at_end) {
          return;
        } else if (p->lenient && info_ok && s < p->pending.len && (pend(p)[s] == '{' || pend(p)[s] == '[')) {
          // Perhaps calls written as JSON in the fence: held from the info line on. (The info
          // line is judged as above, where its line break has not come yet, so that a whole
          // output and its stream agree.)
          p->mode = MODE_FENCED_CALLS;
        } else {
          pb_buf held = {0};
          pb_buf_adds(&held, FENCE);
          pb_buf_add(&held, pend(p), line);
          pb_content(&p->out, held.ptr, held.len);
          pb_buf_free(&held);
          pb_buf_drain(&p->pending, line);
          p->mode = MODE_CONTENT;
        }
        break;
      }
      case MODE_WHOLE: {
        size_t ws, wn;
        whole_text(p, pend(p), p->pending.len, at_end, &ws, &wn);
        if (at_end) {
          // Lenient mode's rules for a whole output, in the Rust SDK's order: JSON calls, then
          // a sentence.
          lenient_item *items = NULL;
          size_t n = read_lenient(pend(p) + ws, wn, &p->out, &items);
          if (n == 0) n = read_natural(pend(p) + ws, wn, &p->out, p->schemas, &items);
          if (n > 0) {
            emit_calls(p, items, n);
            p->pending.len = 0;
            return;
          }
        } else if (could_be_whole_calls(pend(p) + ws, wn)) {
          return;
        }
        // Not calls after all: read it as ordinary output.
        p->mode = MODE_CONTENT;
        p->whole_decided = true;
        break;
      }
      case MODE_FENCED_CALLS: {
        // The pending text starts with the fence's info line; the body follows it, up to the
        // first closing fence.
        const char *text = pend(p);
        size_t len = p->pending.len;
        const char *newline = memchr(text, '\n', len);
        size_t body = newline ? (size_t)(newline - text) + 1 : len;
        size_t upto = find_fence(text, len, body);
        bool closed = upto < len;
        size_t fence_end = closed ? upto + 3 : upto;
        pb_buf fenced = {0};
        pb_buf_adds(&fenced, FENCE);
        pb_buf_add(&fenced, text, fence_end);
        bool alive = could_be_json(fenced.ptr, fenced.len);
        pb_buf_free(&fenced);
        if (alive) {
          if (!closed && !at_end) return;
          lenient_item *items = NULL;
          size_t n = read_lenient(text + body, upto - body, &p->out, &items);
          if (n > 0) {
            // The fence and its closing line are part of the calls; what follows is output.
            emit_calls(p, items, n);
            pb_buf_drain(&p->pending, fence_end);
            p->mode = MODE_CONTENT;
            break;
          }
        }
        // Not calls: the opener is content, and the rest, info line included, is read again.
        pb_content(&p->out, FENCE, 3);
        p->mode = MODE_CONTENT;
        break;
      }
    }
  }
}

static void parser_finish(parser_t *p) {
  drive(p, true);
  if (p->mode == MODE_FENCE) pb_content(&p->out, FENCE, 3);
  p->mode = MODE_CONTENT;
}

static exports_plugboard_adapter_adapter_list_stream_event_t take_events(parser_t *p) {
  exports_plugboard_adapter_adapter_list_stream_event_t list = {p->out.events, p->out.len};
  if (!list.ptr) list.ptr = pb_alloc(sizeof(pb_event));
  p->out.events = NULL;
  p->out.len = p->out.cap = 0;
  return list;
}

// ---------------------------------------------------------------------------------------------
// The world's exports

struct exports_plugboard_adapter_adapter_stream_parser_t {
  parser_t *parser;
};

void exports_plugboard_adapter_adapter_info(pb_info *ret) { adapter_info(ret); }

bool exports_plugboard_adapter_adapter_format_prompt(pb_prompt_request *request, pb_prompt *ret, pb_error *err) {
  bool ok = adapter_format_prompt(request, ret, err);
  exports_plugboard_adapter_adapter_prompt_request_free(request);
  return ok;
}

// An adapter without a call grammar: none, its calls are checked after generation only. An
// adapter's own adapter_call_grammar (a strong definition) replaces this one at link time.
__attribute__((weak)) bool adapter_call_grammar(const pb_grammar_request *request, pb_option_grammar *ret,
                                                pb_error *err) {
  (void)request;
  (void)err;
  ret->is_some = false;
  return true;
}

bool exports_plugboard_adapter_adapter_call_grammar(pb_grammar_request *request, pb_option_grammar *ret,
                                                    pb_error *err) {
  bool ok = adapter_call_grammar(request, ret, err);
  exports_plugboard_adapter_adapter_grammar_request_free(request);
  return ok;
}

bool pb_invalid_request(pb_error *err, const char *message) {
  err->tag = EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_ADAPTER_ERROR_INVALID_REQUEST;
  err->val.invalid_request = pb_string_dup(message);
  return false;
}

/// Folds the events of a whole output into the parsed response (and frees them).
static void fold(exports_plugboard_adapter_adapter_list_stream_event_t events,
                 exports_plugboard_adapter_adapter_parsed_response_t *ret) {
  memset(ret, 0, sizeof *ret);
  pb_buf content = {0}, reasoning = {0};
  size_t n = events.len;
  pb_tool_call *open = calloc(n + 1, sizeof(pb_tool_call));
  uint32_t *open_index = calloc(n + 1, sizeof(uint32_t));
  bool *is_open = calloc(n + 1, sizeof(bool));
  ret->tool_calls.ptr = calloc(n + 1, sizeof(pb_tool_call));
  ret->problems.ptr = calloc(n + 1, sizeof(exports_plugboard_adapter_adapter_problem_t));
  if (!open || !open_index || !is_open || !ret->tool_calls.ptr || !ret->problems.ptr) __builtin_trap();
  size_t n_open = 0;
  for (size_t i = 0; i < n; i++) {
    pb_event *e = &events.ptr[i];
    switch (e->tag) {
      case EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_STREAM_EVENT_CONTENT:
        pb_buf_add(&content, (const char *)e->val.content.ptr, e->val.content.len);
        free(e->val.content.ptr);
        break;
      case EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_STREAM_EVENT_REASONING:
        pb_buf_add(&reasoning, (const char *)e->val.reasoning.ptr, e->val.reasoning.len);
        free(e->val.reasoning.ptr);
        break;
      case EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_STREAM_EVENT_TOOL_CALL_BEGIN:
        open[n_open].id = e->val.tool_call_begin.id;
        open[n_open].name = e->val.tool_call_begin.name;
        open[n_open].arguments = pb_string_of("", 0);
        open_index[n_open] = e->val.tool_call_begin.index;
        is_open[n_open] = true;
        n_open++;
        break;
      case EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_STREAM_EVENT_TOOL_CALL_ARGUMENTS:
        for (size_t k = 0; k < n_open; k++) {
          if (is_open[k] && open_index[k] == e->val.tool_call_arguments.index) {
            append_to_string(&open[k].arguments, (const char *)e->val.tool_call_arguments.delta.ptr,
                             e->val.tool_call_arguments.delta.len);
          }
        }
        free(e->val.tool_call_arguments.delta.ptr);
        break;
      case EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_STREAM_EVENT_TOOL_CALL_END:
        for (size_t k = 0; k < n_open; k++) {
          if (is_open[k] && open_index[k] == e->val.tool_call_end) {
            ret->tool_calls.ptr[ret->tool_calls.len++] = open[k];
            is_open[k] = false;
          }
        }
        break;
      case EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_STREAM_EVENT_PROBLEM:
        ret->problems.ptr[ret->problems.len++] = e->val.problem;
        break;
    }
  }
  for (size_t k = 0; k < n_open; k++) {
    if (is_open[k]) {
      free(open[k].name.ptr);
      free(open[k].arguments.ptr);
      if (open[k].id.is_some) free(open[k].id.val.ptr);
    }
  }
  free(open);
  free(open_index);
  free(is_open);
  free(events.ptr);
  if (content.len) {
    ret->content.is_some = true;
    ret->content.val = pb_buf_into_string(&content);
  }
  if (reasoning.len) {
    ret->reasoning.is_some = true;
    ret->reasoning.val = pb_buf_into_string(&reasoning);
  }
  pb_buf_free(&content);
  pb_buf_free(&reasoning);
}

static void parse_whole(pb_string *text, pb_parse_options *options,
                        exports_plugboard_adapter_adapter_parsed_response_t *ret) {
  parser_t *p = parser_new(options);
  pb_buf_add(&p->pending, (const char *)text->ptr, text->len);
  drive(p, false);
  parser_finish(p);
  fold(take_events(p), ret);
  parser_free(p);
  model_adapter_string_free(text);
  exports_plugboard_adapter_adapter_parse_options_free(options);
}

bool exports_plugboard_adapter_adapter_parse_response(pb_string *text, pb_parse_options *options,
                                                       exports_plugboard_adapter_adapter_parsed_response_t *ret,
                                                       pb_error *err) {
  (void)err;
  parse_whole(text, options, ret);
  return true;
}

bool exports_plugboard_adapter_adapter_extract_tool_calls(pb_string *text, pb_parse_options *options,
                                                           exports_plugboard_adapter_adapter_list_tool_call_t *ret,
                                                           pb_error *err) {
  (void)err;
  exports_plugboard_adapter_adapter_parsed_response_t parsed;
  parse_whole(text, options, &parsed);
  *ret = parsed.tool_calls;
  parsed.tool_calls = (exports_plugboard_adapter_adapter_list_tool_call_t){0};
  exports_plugboard_adapter_adapter_parsed_response_free(&parsed);
  return true;
}

exports_plugboard_adapter_adapter_own_stream_parser_t exports_plugboard_adapter_adapter_constructor_stream_parser(
    pb_parse_options *options) {
  exports_plugboard_adapter_adapter_stream_parser_t *rep = pb_alloc(sizeof *rep);
  rep->parser = parser_new(options);
  exports_plugboard_adapter_adapter_parse_options_free(options);
  return exports_plugboard_adapter_adapter_stream_parser_new(rep);
}

bool exports_plugboard_adapter_adapter_method_stream_parser_push(
    exports_plugboard_adapter_adapter_borrow_stream_parser_t self, pb_string *delta,
    exports_plugboard_adapter_adapter_list_stream_event_t *ret, pb_error *err) {
  (void)err;
  pb_buf_add(&self->parser->pending, (const char *)delta->ptr, delta->len);
  model_adapter_string_free(delta);
  drive(self->parser, false);
  *ret = take_events(self->parser);
  return true;
}

bool exports_plugboard_adapter_adapter_method_stream_parser_finish(
    exports_plugboard_adapter_adapter_borrow_stream_parser_t self,
    exports_plugboard_adapter_adapter_list_stream_event_t *ret, pb_error *err) {
  (void)err;
  parser_finish(self->parser);
  *ret = take_events(self->parser);
  return true;
}

void exports_plugboard_adapter_adapter_stream_parser_destructor(exports_plugboard_adapter_adapter_stream_parser_t *rep) {
  parser_free(rep->parser);
  free(rep);
}

// ---------------------------------------------------------------------------------------------
// Prompts

const char *pb_role_name(uint8_t role) {
  switch (role) {
    case PB_ROLE_SYSTEM: return "system";
    case PB_ROLE_USER: return "user";
    case PB_ROLE_ASSISTANT: return "assistant";
    default: return "tool";
  }
}

void pb_chatml_turn(pb_buf *out, const char *role, const char *text, size_t len) {
  pb_buf_addf(out, "<|im_start|>%s\n", role);
  pb_buf_add(out, text, len);
  pb_buf_adds(out, "<|im_end|>\n");
}

void pb_tool_json(pb_buf *out, const pb_tool *tool) {
  pb_buf_adds(out, "{\"type\":\"function\",\"function\":{\"name\":");
  pb_json_string(out, (const char *)tool->name.ptr, tool->name.len);
  if (tool->description.is_some) {
    pb_buf_adds(out, ",\"description\":");
    pb_json_string(out, (const char *)tool->description.val.ptr, tool->description.val.len);
  }
  pb_buf_adds(out, ",\"parameters\":");
  if (pb_json_valid((const char *)tool->parameters.ptr, tool->parameters.len))
    pb_json_compact(out, (const char *)tool->parameters.ptr, tool->parameters.len);
  else
    pb_json_string(out, (const char *)tool->parameters.ptr, tool->parameters.len);
  pb_buf_adds(out, "}}");
}

// ---------------------------------------------------------------------------------------------
// Call grammars

void pb_grammar_args_rule(pb_buf *out, size_t index) { pb_buf_addf(out, "args%zu", index); }

void pb_grammar_literal(pb_buf *out, const char *text, size_t len) {
  // pb_json_string escapes as serde_json does, so the grammars match the Rust SDK's byte for byte.
  pb_json_string(out, text, len);
}

void pb_grammar_marker(pb_buf *out, const pb_grammar_request *request, const char *text) {
  for (size_t i = 0; i < request->control_tokens.len; i++) {
    if (pb_string_is(&request->control_tokens.ptr[i].text, text)) {
      pb_buf_addf(out, "<[%u]>", (unsigned)request->control_tokens.ptr[i].id);
      return;
    }
  }
  pb_grammar_literal(out, text, strlen(text));
}

void pb_grammar_json_envelope(pb_buf *out, const pb_tool *tool, const char *args, const char *name_key,
                              const char *args_key) {
  pb_buf head = {0};
  pb_buf_adds(&head, "{");
  pb_grammar_literal(&head, name_key, strlen(name_key));
  pb_buf_adds(&head, ": ");
  pb_grammar_literal(&head, (const char *)tool->name.ptr, tool->name.len);
  pb_buf_adds(&head, ", ");
  pb_grammar_literal(&head, args_key, strlen(args_key));
  pb_buf_adds(&head, ": ");
  pb_grammar_literal(out, head.ptr, head.len);
  pb_buf_addf(out, " %s \"}\"", args);
  pb_buf_free(&head);
}

bool pb_grammar_callable(const pb_grammar_request *request, size_t index) {
  const pb_string *name = &request->tools.ptr[index].name;
  const pb_string *chosen = &request->tool_choice.val.function;
  switch (request->tool_choice.tag) {
    case PB_CHOICE_FUNCTION: return name->len == chosen->len && memcmp(name->ptr, chosen->ptr, name->len) == 0;
    case PB_CHOICE_NONE: return false;
    default: return true;
  }
}

void pb_call_grammar(const pb_call_syntax *syntax, const pb_grammar_request *request, pb_option_grammar *ret) {
  memset(ret, 0, sizeof *ret);
  pb_buf grammar = {0};
  size_t alternatives = 0;
  for (size_t i = 0; i < request->tools.len; i++) {
    if (!pb_grammar_callable(request, i)) continue;
    pb_buf call = {0}, args = {0};
    pb_grammar_args_rule(&args, i);
    if (syntax->call(&call, &request->tools.ptr[i], args.ptr)) {
      pb_buf_adds(&grammar, alternatives++ ? "\n    | " : "call: ");
      pb_buf_add(&grammar, call.ptr ? call.ptr : "", call.len);
    }
    pb_buf_free(&call);
    pb_buf_free(&args);
  }
  if (alternatives == 0) {
    pb_buf_free(&grammar);
    return;
  }
  pb_buf_adds(&grammar, "\n");
  bool automatic = request->tool_choice.tag == PB_CHOICE_AUTO;
  bool parallel = request->parallel_tool_calls;
  const char *separator = syntax->separator ? syntax->separator : "";
  pb_buf calls = {0}, body = {0};
  if (parallel) pb_buf_addf(&calls, "call (%s call)*", separator);
  else pb_buf_adds(&calls, "call");
  if (syntax->list_open) pb_buf_addf(&body, "%s %s %s", syntax->list_open, calls.ptr, syntax->list_close);
  // With a trigger per call, the host waits for the next trigger after each one.
  else if (automatic) pb_buf_adds(&body, "call");
  // A separator may also end the turn: a model that writes one after its last call is not
  // forced into another call.
  else if (parallel && *separator) pb_buf_addf(&body, "%s (%s)?", calls.ptr, separator);
  else pb_buf_adds(&body, calls.ptr);
  if (automatic) {
    pb_buf_addf(&grammar, "start: %s\n", body.ptr);
    size_t n = 0;
    while (syntax->triggers && syntax->triggers[n].text) n++;
    exports_plugboard_adapter_adapter_trigger_t *triggers = pb_alloc(n * sizeof *triggers);
    for (size_t i = 0; i < n; i++) {
      triggers[i].text = pb_string_dup(syntax->triggers[i].text);
      triggers[i].at_start = syntax->triggers[i].at_start;
    }
    ret->val.start.tag = EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_GRAMMAR_START_ON_TRIGGER;
    ret->val.start.val.on_trigger.ptr = triggers;
    ret->val.start.val.on_trigger.len = n;
  } else {
    if (syntax->reasoning_open && request->reasoning_open) {
      // The prompt opened reasoning: it ends (its close marker) before the calls.
      pb_buf_addf(&grammar, "start: reasoning /[ \\t\\r\\n]*/ %s\nreasoning[suffix=", body.ptr);
      pb_grammar_literal(&grammar, syntax->reasoning_close, strlen(syntax->reasoning_close));
      pb_buf_adds(&grammar, "]: /(?s:.*)/\n");
    } else {
      pb_buf_addf(&grammar, "start: %s\n", body.ptr);
    }
    ret->val.start.tag = EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_GRAMMAR_START_FROM_START;
  }
  if (syntax->reasoning_open) {
    ret->val.reasoning.is_some = true;
    ret->val.reasoning.val.f0 = pb_string_dup(syntax->reasoning_open);
    ret->val.reasoning.val.f1 = pb_string_dup(syntax->reasoning_close);
  }
  ret->val.grammar = pb_buf_into_string(&grammar);
  ret->is_some = true;
  pb_buf_free(&calls);
  pb_buf_free(&body);
}
