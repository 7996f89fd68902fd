// plugboard's C SDK: the pieces every adapter needs, so that an adapter only describes its
// family's markers, reads the inside of one call, and renders its prompt.
//
// The contract's types come from wit/v0.2/adapter.wit: `plugboard-c-tool bindings` generates
// model_adapter.h from it at build time. The short names below are aliases of those generated
// types, not copies. plugboard.c implements the world's exports (info, format-prompt,
// parse-response, extract-tool-calls, call-grammar, the stream-parser resource) on top of three
// functions an adapter defines, adapter_info, adapter_format_prompt and adapter_spec, and one it
// may define, adapter_call_grammar.
//
// The parsing rules are those of the Rust SDK (sdk/rust), and whole-output parsing is the
// stream parser fed the whole text, so the two can never disagree.

#ifndef PLUGBOARD_H
#define PLUGBOARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model_adapter.h"

typedef model_adapter_string_t pb_string;
typedef model_adapter_option_string_t pb_option_string;
typedef model_adapter_list_string_t pb_list_string;
typedef exports_plugboard_adapter_adapter_adapter_info_t pb_info;
typedef exports_plugboard_adapter_adapter_prompt_request_t pb_prompt_request;
typedef exports_plugboard_adapter_adapter_prompt_t pb_prompt;
typedef exports_plugboard_adapter_adapter_message_t pb_message;
typedef exports_plugboard_adapter_adapter_tool_t pb_tool;
typedef exports_plugboard_adapter_adapter_tool_call_t pb_tool_call;
typedef exports_plugboard_adapter_adapter_parse_options_t pb_parse_options;
typedef exports_plugboard_adapter_adapter_adapter_error_t pb_error;
typedef exports_plugboard_adapter_adapter_stream_event_t pb_event;
typedef exports_plugboard_adapter_adapter_problem_kind_t pb_problem_kind;
typedef exports_plugboard_adapter_adapter_grammar_request_t pb_grammar_request;
typedef exports_plugboard_adapter_adapter_option_tool_call_grammar_t pb_option_grammar;

#define PB_ROLE_SYSTEM EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_ROLE_SYSTEM
#define PB_ROLE_USER EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_ROLE_USER
#define PB_ROLE_ASSISTANT EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_ROLE_ASSISTANT
#define PB_ROLE_TOOL EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_ROLE_TOOL
#define PB_CHOICE_AUTO EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_TOOL_CHOICE_AUTO
#define PB_CHOICE_NONE EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_TOOL_CHOICE_NONE
#define PB_CHOICE_REQUIRED EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_TOOL_CHOICE_REQUIRED
#define PB_CHOICE_FUNCTION EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_TOOL_CHOICE_FUNCTION
#define PB_TRUNCATED EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_PROBLEM_KIND_TRUNCATED
#define PB_MALFORMED_JSON EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_PROBLEM_KIND_MALFORMED_JSON
#define PB_UNKNOWN_TOOL EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_PROBLEM_KIND_UNKNOWN_TOOL
#define PB_INVALID_ARGUMENTS EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_PROBLEM_KIND_INVALID_ARGUMENTS
#define PB_MISSING_NAME EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_PROBLEM_KIND_MISSING_NAME
#define PB_CAP_TOOLS EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_CAPABILITIES_TOOLS
#define PB_CAP_PARALLEL_CALLS EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_CAPABILITIES_PARALLEL_CALLS
#define PB_CAP_REASONING EXPORTS_PLUGBOARD_ADAPTER_ADAPTER_CAPABILITIES_REASONING

// ---------------------------------------------------------------------------------------------
// Growable text

typedef struct {
  char *ptr;
  size_t len, cap;
} pb_buf;

void pb_buf_add(pb_buf *b, const char *text, size_t len);
void pb_buf_adds(pb_buf *b, const char *text);
/// Appends printf-style.
void pb_buf_addf(pb_buf *b, const char *format, ...);
/// Removes the first `n` bytes.
void pb_buf_drain(pb_buf *b, size_t n);
void pb_buf_free(pb_buf *b);
/// The text as a contract string (the buffer's memory moves into it).
pb_string pb_buf_into_string(pb_buf *b);
/// A contract string holding a copy of `text`.
pb_string pb_string_of(const char *text, size_t len);
pb_string pb_string_dup(const char *text);
/// A contract list of copies of `n` C strings.
pb_list_string pb_list_of(const char *const *items, size_t n);
/// Whether a contract string equals a C string.
bool pb_string_is(const pb_string *s, const char *text);

/// Skips leading whitespace: the offset of the first other byte.
size_t pb_skip_ws(const char *text, size_t len);
/// The length without trailing whitespace.
size_t pb_trim_end(const char *text, size_t len);
bool pb_starts_with(const char *text, size_t len, const char *prefix);

// ---------------------------------------------------------------------------------------------
// Markers in streamed text

/// What pb_scan found: a whole marker (`index` >= 0, at `start`, `len` bytes long), or none
/// (`index` < 0): text[0..start] is plain text and the rest may be the start of a marker.
typedef struct {
  size_t start;
  int index;
  size_t len;
} pb_scan_t;

/// Finds the earliest of `n` markers in `text`. Where two match at one place the longest wins;
/// where a longer one might still match once more text comes, the scan waits (not at_end).
pb_scan_t pb_scan(const char *text, size_t len, const char *const *markers, size_t n, bool at_end);

// ---------------------------------------------------------------------------------------------
// Events

typedef struct {
  bool started;
  pb_buf trailing;
} pb_trimmed;

/// Collects the stream events of one generation, keeping the contract's invariants: content
/// and reasoning trimmed, calls numbered, unknown tools reported, empty deltas dropped.
typedef struct {
  pb_event *events;
  size_t len, cap;
  pb_trimmed content, reasoning;
  uint32_t next_index;
  char **offered;
  size_t offered_len;
} pb_emitter;

void pb_content(pb_emitter *out, const char *text, size_t len);
void pb_reasoning(pb_emitter *out, const char *text, size_t len);
/// Reserves the index of a new call attempt.
uint32_t pb_start_call(pb_emitter *out);
/// Sends a call's whole name; a name the request did not offer is reported, the call goes on.
void pb_begin_call(pb_emitter *out, uint32_t index, const char *name, size_t len);
void pb_arguments(pb_emitter *out, uint32_t index, const char *delta, size_t len);
void pb_end_call(pb_emitter *out, uint32_t index);
void pb_problem(pb_emitter *out, pb_problem_kind kind, uint32_t index, const char *message);

// ---------------------------------------------------------------------------------------------
// JSON

/// Finds where one JSON value ends in streamed text, without decoding it: containers are
/// counted outside strings, so a brace inside a string never confuses it.
typedef struct {
  char kind;  // 0 before the value, then 'c' container, 's' string, 'x' scalar
  int depth;
  bool in_string, escape, done;
} pb_json_end;

/// Returns the offset just past the value's end, -1 while it goes on, -2 when the text cannot
/// start a JSON value.
long pb_json_end_feed(pb_json_end *j, const char *text, size_t len);
/// Whether `text` is exactly one valid JSON value (surrounding whitespace allowed).
bool pb_json_valid(const char *text, size_t len);
/// Compact JSON text of a JSON text: whitespace outside strings removed.
void pb_json_compact(pb_buf *out, const char *text, size_t len);
/// Writes `text` as a JSON string.
void pb_json_string(pb_buf *out, const char *text, size_t len);

/// A call's arguments value as the text of a JSON object: an object stays as written, a JSON
/// string holding an object is decoded once, `null` or nothing is `{}`. Returns 0 and sets
/// `out`, or the problem kind + 1 and sets `message`.
int pb_arguments_text(const char *raw, size_t len, pb_buf *out, const char **message);

/// Reads the JSON value that holds one call's arguments, sending an object's text as argument
/// deltas while it arrives. A string holding an object is decoded once and sent whole; `null`
/// means `{}`; anything else is `invalid-arguments`.
typedef struct {
  uint32_t index;
  pb_emitter *out;
  pb_json_end end;
  pb_buf raw;
} pb_args_reader;

typedef enum { PB_ARGS_MORE, PB_ARGS_DONE, PB_ARGS_FAILED } pb_args_step;

void pb_args_init(pb_args_reader *r, pb_emitter *out, uint32_t index);
/// Reads `text`; on DONE or FAILED, `*used` bytes of it belong to the value.
pb_args_step pb_args_push(pb_args_reader *r, const char *text, size_t len, size_t *used);
/// The output ended: returns whether the call is complete (a started value is `truncated`).
bool pb_args_finish(pb_args_reader *r);
bool pb_args_is_empty(const pb_args_reader *r);
void pb_args_free(pb_args_reader *r);

// ---------------------------------------------------------------------------------------------
// The adapter: what each C adapter defines

/// A call body reads the text after one call's opening marker. `push` takes the next text and
/// returns true when the call span ended, putting the text after it into `rest` (read as output
/// again); with `at_end` no more text comes.
typedef struct pb_body pb_body;
struct pb_body {
  bool (*push)(pb_body *self, const char *text, size_t len, bool at_end, pb_buf *rest);
  void (*free)(pb_body *self);
};

typedef struct {
  const char *open;
  pb_body *(*make)(pb_emitter *out);
} pb_call_markup;

/// A family's output format: reasoning markers (NULL when none), end-of-turn markers and call
/// markups (NULL-terminated lists).
typedef struct {
  const char *reasoning_open, *reasoning_close;
  const char *const *end_of_turn;
  const pb_call_markup *calls;
} pb_spec;

/// Who the adapter is (strings from pb_string_dup and lists from pb_list_of).
void adapter_info(pb_info *ret);
/// The prompt for a conversation; false with `err` set to refuse (see pb_invalid_request).
bool adapter_format_prompt(const pb_prompt_request *request, pb_prompt *ret, pb_error *err);
/// The output format, for the options of one generation.
pb_spec adapter_spec(const pb_parse_options *options);

/// The family's call syntax as a grammar (contract 0.2): set `ret->is_some` and fill
/// `ret->val`, usually with pb_call_grammar; false with `err` set to refuse. Optional: an adapter
/// that does not define it has none (plugboard.c's weak default sets `ret->is_some = false`), and
/// its calls are checked after generation only.
bool adapter_call_grammar(const pb_grammar_request *request, pb_option_grammar *ret, pb_error *err);

/// Fills `err` with an invalid-request refusal and returns false.
bool pb_invalid_request(pb_error *err, const char *message);

// ---------------------------------------------------------------------------------------------
// Prompts

/// Appends one ChatML turn: `<|im_start|>ROLE\nTEXT<|im_end|>\n`.
void pb_chatml_turn(pb_buf *out, const char *role, const char *text, size_t len);
const char *pb_role_name(uint8_t role);
/// A tool in OpenAI's shape, `{"type":"function","function":{"name","description","parameters"}}`,
/// as compact JSON text (the schema arrives as compact JSON text and is kept as written).
void pb_tool_json(pb_buf *out, const pb_tool *tool);

// ---------------------------------------------------------------------------------------------
// Call grammars (contract 0.2)
//
// A family's call syntax as a grammar in llguidance's Lark dialect, so that the host can hold
// generated calls to it. The host defines one rule per offered tool, `args0`, `args1`, …
// (pb_grammar_args_rule): that tool's arguments as a JSON object valid against its schema. An
// adapter only says what surrounds them (pb_call_syntax); pb_call_grammar writes the whole
// grammar for any tool_choice (the same rules as the Rust SDK's `grammar` module, so the same
// syntax gives the same grammar). The invariant each adapter keeps: every text its grammar
// accepts is read by its own parser as exactly the calls it encodes, with no problem.

/// Appends the rule the host defines for the arguments of the `index`th offered tool: `argsN`.
void pb_grammar_args_rule(pb_buf *out, size_t index);
/// Appends `text` as a Lark string literal (a JSON string is one: the same quotes and escapes).
void pb_grammar_literal(pb_buf *out, const char *text, size_t len);
/// Appends a marker as the grammar must name it: by id when the model has it as a control token
/// (text never produces one), as a literal otherwise.
void pb_grammar_marker(pb_buf *out, const pb_grammar_request *request, const char *text);
/// Appends one call as a JSON object naming the tool then giving its arguments, written as
/// Python's `json.dumps` writes it: `{"name": "get_weather", "arguments": {…}}` (`name_key` and
/// `args_key` name the two members; `args` is the tool's arguments rule).
void pb_grammar_json_envelope(pb_buf *out, const pb_tool *tool, const char *args, const char *name_key,
                              const char *args_key);
/// Whether a call may name the `index`th offered tool under the request's tool_choice.
bool pb_grammar_callable(const pb_grammar_request *request, size_t index);

/// Text that switches a call grammar on; `at_start`: only at the start of the output, after
/// whitespace (bare JSON calls), not anywhere in prose.
typedef struct {
  const char *text;
  bool at_start;
} pb_trigger_spec;

/// A trigger anywhere in the output, as an initializer: `{PB_TRIGGER("<call>"), {NULL}}`.
#define PB_TRIGGER(text) {(text), false}

/// How a family writes one call, and how calls follow each other.
typedef struct {
  /// Appends the Lark expression of one call of `tool`, whose arguments rule is `args`, and
  /// returns true; returns false for a tool whose name the format cannot carry (the grammar
  /// leaves it out).
  bool (*call)(pb_buf *out, const pb_tool *tool, const char *args);
  /// Between two calls of a parallel turn (a Lark expression; "" or NULL for none).
  const char *separator;
  /// Lark expressions around all the calls of a turn, for families that write their calls as
  /// one list; NULL where each call has markers of its own.
  const char *list_open, *list_close;
  /// Texts that start a call (or the list) in free output; ends at an entry whose text is NULL.
  const pb_trigger_spec *triggers;
  /// The family's reasoning markers; NULL when it does not reason.
  const char *reasoning_open, *reasoning_close;
} pb_call_syntax;

/// The grammar for this request into `ret` (`ret->is_some` false when no call may be made).
/// tool_choice `auto` applies it from a trigger on, one call (or one list) at a time; `required`
/// or a named function from the first token, for the whole output.
void pb_call_grammar(const pb_call_syntax *syntax, const pb_grammar_request *request, pb_option_grammar *ret);

#endif
