"""plugboard's Python SDK: the pieces every adapter needs, so that an adapter only describes its
family's markers, reads the inside of one call, and renders its prompt.

The contract's types come from wit/v0.2/adapter.wit: componentize-py generates them as the
`wit_world.exports.adapter` module when the component is built (records are dataclasses with
snake_case fields, enums are Enum members, variants are one class per case, `option` is a value
or None, `result` errors are raised as `componentize_py_types.Err`). Nothing here repeats those
types; the helpers below build values of them.

The parsing rules are those of the Rust SDK (sdk/rust), and whole-output parsing is the stream
parser fed the whole text, so the two can never disagree.
"""

import json
import math
import re

from componentize_py_types import Err
from wit_world.exports import adapter as t

# ---------------------------------------------------------------------------------------------
# Markers in streamed text


def scan(text, markers, at_end):
    """Finds the earliest marker in `text`. Where two match at one place the longest wins; where
    a longer one might still match once more text comes, the scan waits.

    Returns `(start, index, length)` for a whole marker, or `(safe, None, 0)`: `text[:safe]` is
    plain text and the rest may be the start of a marker (nothing is held back when `at_end`).
    """
    first = {m[0] for m in markers}
    for start in range(len(text)):
        if text[start] not in first:
            continue
        rest = text[start:]
        best = None
        could_grow = False
        for i, m in enumerate(markers):
            if rest.startswith(m):
                if best is None or len(m) > len(markers[best]):
                    best = i
            elif not at_end and m.startswith(rest):
                could_grow = True
        if best is not None and not could_grow:
            return start, best, len(markers[best])
        if could_grow:
            return start, None, 0
    return len(text), None, 0


# ---------------------------------------------------------------------------------------------
# Events


class _TrimmedText:
    """Text trimmed at both ends while it streams: deltas concatenate to the trimmed whole."""

    def __init__(self):
        self.started = False
        self.trailing = ""

    def push(self, text):
        if not self.started:
            text = text.lstrip()
        if not text:
            return ""
        self.started = True
        body = text.rstrip()
        if not body:
            self.trailing += text
            return ""
        out = self.trailing + body
        self.trailing = text[len(body):]
        return out


class Emitter:
    """Collects the stream events of one generation, keeping the contract's invariants: content
    and reasoning trimmed, calls numbered, unknown tools reported, empty deltas dropped."""

    def __init__(self, tools):
        self.events = []
        self._content = _TrimmedText()
        self._reasoning = _TrimmedText()
        self.next_index = 0
        self.offered = [tool.name for tool in tools]

    def _text(self, trimmed, kind, text):
        out = trimmed.push(text)
        if not out:
            return
        if self.events and isinstance(self.events[-1], kind):
            self.events[-1].value += out
        else:
            self.events.append(kind(out))

    def content(self, text):
        self._text(self._content, t.StreamEvent_Content, text)

    def reasoning(self, text):
        self._text(self._reasoning, t.StreamEvent_Reasoning, text)

    def has_content(self):
        """Whether any content has been sent (or is held back as trailing whitespace)."""
        return self._content.started

    def calls_started(self):
        return self.next_index

    def start_call(self):
        """Reserves the index of a new call attempt."""
        self.next_index += 1
        return self.next_index - 1

    def is_offered(self, name):
        return not self.offered or name in self.offered

    def begin_call(self, index, id, name):
        """Sends a call's whole name; a name the request did not offer is reported, the call
        goes on."""
        self.events.append(t.StreamEvent_ToolCallBegin(t.ToolCallBegin(index, id, name)))
        if not self.is_offered(name):
            offered = ", ".join(self.offered)
            self.problem(
                t.ProblemKind.UNKNOWN_TOOL,
                f"call {index} names the tool '{name}', which the request did not offer (offered: {offered})",
                index,
            )

    def arguments(self, index, delta):
        if not delta:
            return
        last = self.events[-1] if self.events else None
        if isinstance(last, t.StreamEvent_ToolCallArguments) and last.value.index == index:
            last.value.delta += delta
        else:
            self.events.append(t.StreamEvent_ToolCallArguments(t.ToolCallArguments(index, delta)))

    def end_call(self, index):
        self.events.append(t.StreamEvent_ToolCallEnd(index))

    def problem(self, kind, message, index):
        self.events.append(t.StreamEvent_Problem(t.Problem(kind, message, index)))

    def take(self):
        events, self.events = self.events, []
        return events


def fold(events):
    """Folds stream events into the whole result: what parse-response returns for the text."""
    content, reasoning = "", ""
    open_calls, calls, problems = {}, [], []
    for e in events:
        if isinstance(e, t.StreamEvent_Content):
            content += e.value
        elif isinstance(e, t.StreamEvent_Reasoning):
            reasoning += e.value
        elif isinstance(e, t.StreamEvent_ToolCallBegin):
            open_calls[e.value.index] = t.ToolCall(e.value.id, e.value.name, "")
        elif isinstance(e, t.StreamEvent_ToolCallArguments):
            if e.value.index in open_calls:
                open_calls[e.value.index].arguments += e.value.delta
        elif isinstance(e, t.StreamEvent_ToolCallEnd):
            if e.value in open_calls:
                calls.append(open_calls.pop(e.value))
        elif isinstance(e, t.StreamEvent_Problem):
            problems.append(e.value)
    return t.ParsedResponse(content or None, reasoning or None, calls, problems)


# ---------------------------------------------------------------------------------------------
# JSON


def _reject_constant(name):
    # NaN and Infinity are Python's extensions, not JSON.
    raise ValueError(f"{name} is not JSON")


def loads(text):
    """Strict JSON: what the host's serde_json accepts."""
    return json.loads(text, parse_constant=_reject_constant)


def dumps(value):
    """Compact JSON as serde_json writes it: no spaces, non-ASCII text as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _type_name(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def arguments_text(raw):
    """A call's arguments value as the text of a JSON object: an object stays as written, a JSON
    string holding an object is decoded once, `null` or nothing is `{}`.

    Returns `(text, None)`, or `(None, (problem kind, message))`."""
    raw = raw.strip()
    if not raw:
        return "{}", None
    try:
        value = loads(raw)
    except ValueError as e:
        return None, (t.ProblemKind.MALFORMED_JSON, f"the arguments are not JSON: {e}")
    if value is None:
        return "{}", None
    if isinstance(value, dict):
        return raw, None
    if isinstance(value, str):
        inner = value.strip()
        if not inner:
            return "{}", None
        try:
            if isinstance(loads(inner), dict):
                return inner, None
        except ValueError:
            pass
        return None, (t.ProblemKind.INVALID_ARGUMENTS, "the arguments are a string that does not hold a JSON object")
    return None, (t.ProblemKind.INVALID_ARGUMENTS, f"the arguments are a JSON {_type_name(value)}, not an object")


_SCALAR_START = set("-0123456789abcdefghijklmnopqrstuvwxyz")
_SCALAR = _SCALAR_START | set("+.ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class JsonEnd:
    """Finds where one JSON value ends in streamed text, without decoding it: containers are
    counted outside strings, so a brace inside a string never confuses it. The value is checked
    with `loads` once it is complete."""

    def __init__(self):
        self.kind = None  # "container", "string" or "scalar" once the value starts
        self.depth = 0
        self.in_string = False
        self.escape = False
        self.done = False

    def is_empty(self):
        return self.kind is None

    def feed(self, text):
        """Returns the offset just past the value's end, -1 while it goes on, or -2 when the text
        cannot start a JSON value."""
        for i, c in enumerate(text):
            if self.kind is None:
                if c.isspace():
                    continue
                if c in "{[":
                    self.kind, self.depth = "container", 1
                elif c == '"':
                    self.kind, self.in_string = "string", True
                elif c in _SCALAR_START:
                    self.kind = "scalar"
                else:
                    return -2
                continue
            if self.in_string:
                if self.escape:
                    self.escape = False
                elif c == "\\":
                    self.escape = True
                elif c == '"':
                    self.in_string = False
                    if self.kind == "string":
                        self.done = True
                        return i + 1
                continue
            if self.kind == "scalar":
                if c not in _SCALAR:
                    self.done = True
                    return i
                continue
            if c == '"':
                self.in_string = True
            elif c in "{[":
                self.depth += 1
            elif c in "}]":
                self.depth -= 1
                if self.depth == 0:
                    self.done = True
                    return i + 1
        return -1


class ArgsReader:
    """Reads the JSON value that holds one call's arguments, sending an object's text as argument
    deltas while it arrives. A string holding an object is decoded once and sent whole; `null`
    means `{}`; anything else is `invalid-arguments`."""

    MORE = ("more", 0)

    def __init__(self, index, out):
        self.index = index
        self.out = out
        self.end = JsonEnd()
        self.raw = ""

    def is_empty(self):
        return self.end.is_empty()

    def push(self, text):
        """Returns ("more", 0), ("done", used) (arguments sent) or ("failed", used) (problem
        reported)."""
        was_object = self.raw.lstrip().startswith("{")
        stop = self.end.feed(text)
        if stop == -2:
            self.out.problem(t.ProblemKind.MALFORMED_JSON, f"call {self.index}: the arguments are not JSON", self.index)
            return ("failed", 0)
        piece = text if stop < 0 else text[:stop]
        self.raw += piece
        if self.raw.lstrip().startswith("{"):
            # Stream the object's text as it comes (from its opening brace on).
            self.out.arguments(self.index, piece if was_object else self.raw.lstrip())
        if stop < 0:
            return self.MORE
        return self._complete(stop)

    def _complete(self, used):
        text, problem = arguments_text(self.raw)
        if text is None:
            self.out.problem(problem[0], f"call {self.index}: {problem[1]}", self.index)
            return ("failed", used)
        if not self.raw.lstrip().startswith("{"):
            self.out.arguments(self.index, text)
        return ("done", used)

    def finish(self):
        """The output ended: no value at all is `{}`; a started value is `truncated`. Returns
        whether the call is complete."""
        if self.end.is_empty():
            self.out.arguments(self.index, "{}")
            return True
        if self.end.kind == "scalar" and not self.end.done:
            self.end.done = True
            return self._complete(0)[0] == "done"
        if self.end.done:
            return True
        self.out.problem(t.ProblemKind.TRUNCATED, f"call {self.index}: the output ended inside the arguments", self.index)
        return False


# ---------------------------------------------------------------------------------------------
# Outputs that are calls by their whole shape (lenient mode)

FENCE = "```"


def _unfence(text):
    text = text.strip()
    if not text.startswith(FENCE):
        return text
    inner = text[3:]
    newline = inner.find("\n")
    if newline < 0:
        return None
    if inner[:newline].strip().lower() not in ("", "json"):
        return None
    body = inner[newline + 1:].rstrip()
    if not body.endswith(FENCE):
        return None
    return body[:-3].strip()


def could_be_json(prefix):
    """Whether `prefix` may still grow into one JSON object or list, bare or in a fence."""
    prefix = prefix.lstrip()
    json_text, fenced = prefix, False
    if prefix.startswith(FENCE):
        inner = prefix[3:]
        newline = inner.find("\n")
        if newline < 0:
            return "json".startswith(inner.strip().lower())
        if inner[:newline].strip().lower() not in ("", "json"):
            return False
        json_text, fenced = inner[newline + 1:], True
    elif FENCE.startswith(prefix):
        return True
    trimmed = json_text.lstrip()
    if not trimmed:
        return True
    if trimmed[0] not in "{[":
        return False
    stop = JsonEnd().feed(trimmed)
    if stop < 0:
        return True
    tail = trimmed[stop:].strip()
    return FENCE.startswith(tail) if fenced else tail == ""


def _call_of(obj):
    if isinstance(obj.get("function"), dict):
        return _call_of(obj["function"])
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    key = next((k for k in ("arguments", "parameters") if k in obj), None)
    text, _ = arguments_text("{}" if key is None else dumps(obj[key]))
    if text is None:
        return None
    return name.strip(), text


def read_lenient_json(text, tools):
    """A whole output as calls of offered tools (lenient mode): a list of (name, arguments), or
    None when it is not."""
    json_text = _unfence(text)
    if json_text is None:
        return None
    try:
        value = loads(json_text)
    except ValueError:
        return None
    objects = value if isinstance(value, list) else [value]
    if not objects or not all(isinstance(o, dict) for o in objects):
        return None
    calls = [_call_of(o) for o in objects]
    names = {tool.name for tool in tools}
    if any(c is None or c[0] not in names for c in calls):
        return None
    return calls


# ---------------------------------------------------------------------------------------------
# A call written as a sentence (lenient mode)
#
# "I'll use the run_analysis tool with variables=['var1', 'var2']": small models write this when
# a prompt describes tools in prose. Only a whole output of that one shape is a call, and only
# when it names an offered tool and every argument fits the tool's schema (a property of it, of
# its type and enum, every required one given); anything else stays content, so prose that
# merely mentions a tool is never a call. The rules are the Rust SDK's (sdk/rust/src/natural.rs)
# step for step, so that both read every output alike, whole and while it streams.
#
# The shape: an optional lead-in (`I'll`, `Let me` …), a verb (`use`, `call`, `run`, `invoke`),
# optionally `the`, the tool's name (bare, or in backticks or quotes), optionally `tool` or
# `function`, then `with`, `using` or `:` and `name=value` pairs (Python or JSON literals)
# separated by commas or `and`, or the same pairs in parentheses right after the name; a full
# stop may end it.

_LEADS = (
    "",
    "i'll ",
    "i’ll ",
    "i will ",
    "let me ",
    "i'm going to ",
    "i am going to ",
    "now i'll ",
    "i need to ",
)
_VERBS = ("use ", "call ", "run ", "invoke ", "using ", "calling ")
_NOUNS = (" tool", " function")
_OPENERS = (" with ", " using ", ": ")
_SEPARATORS = (", and ", ", ", " and ")

# How far a text goes toward the shape: `(value,)` when the whole text has it, _PREFIX when the
# text ends before the shape does (it may still grow into it), _NO otherwise.
_PREFIX = "prefix"
_NO = "no"

# ASCII letters lowered only, as Rust's `eq_ignore_ascii_case` compares.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_INT = re.compile(r"[+-]?[0-9]+")
# Rust's float syntax (Python's float() also takes `_`, `inf` and blank space).
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def could_be_natural(text):
    """Whether the output so far may still become a call written as a sentence (while
    streaming)."""
    return _read_sentence(text.lstrip(), False) != _NO


def read_natural(text, tools):
    """The output as a call of an offered tool whose arguments fit its schema: a list of one
    (name, arguments), or None."""
    read = _read_sentence(text.strip(), True)
    if not isinstance(read, tuple):
        return None
    name, args = read[0]
    tool = next((tool for tool in tools if tool.name == name), None)
    if tool is None or not _fits(args, _schema_of(tool)):
        return None
    return [(name, _to_json(args))]


def _read_sentence(text, complete):
    """Reads the sentence: `((name, args),)`. `complete`: the text is the whole output (a word at
    its end is not cut short)."""
    best = _NO
    # Every lead-in and verb that the text starts with (or could still start with).
    for lead in _LEADS:
        for verb in _VERBS:
            for article in ("the ", ""):
                head = lead + verb + article
                if len(text) < len(head):
                    if text.translate(_ASCII_LOWER) == head[: len(text)]:
                        best = _PREFIX
                    continue
                if text[: len(head)].translate(_ASCII_LOWER) != head:
                    continue
                read = _after_verb(_Cursor(text[len(head):], complete))
                if isinstance(read, tuple):
                    return read
                if read == _PREFIX:
                    best = _PREFIX
    return best


def _after_verb(s):
    quote = s.text[s.at : s.at + 1]
    if quote in ("`", '"', "'"):
        s.at += 1
    else:
        quote = ""
    start = s.at
    s.take_while(lambda c: c.isascii() and (c.isalnum() or c in "_-."))
    name = s.text[start : s.at].rstrip(".")
    s.at = start + len(name)
    if s.at_end():
        return _PREFIX
    if not name:
        return _NO
    if quote:
        if not s.eat(quote):
            return _NO
        if s.at_end():
            return _PREFIX
    if s.eat("("):
        args = _pairs(s, ")")
    else:
        if s.one_of(_NOUNS, True) == _PREFIX:
            return _PREFIX
        opener = s.one_of(_OPENERS, True)
        if not isinstance(opener, tuple):
            return opener
        args = _pairs(s, None)
    return ((name, args[0]),) if isinstance(args, tuple) else args


def _pairs(s, close):
    """`name=value` pairs to the end of the text (or to `close`), then an optional full stop: a
    dict."""
    args = {}
    while True:
        s.skip_spaces()
        if s.at_end():
            return _PREFIX
        # (A closing parenthesis after a separator is eaten too, as in Rust; the key after it
        # fails.)
        if close and s.eat(close) and not args:
            return _end(s, args)
        start = s.at
        s.take_while(lambda c: c.isascii() and (c.isalnum() or c == "_"))
        key = s.text[start : s.at]
        s.skip_spaces()
        if s.at_end():
            return _PREFIX
        if not key or not s.eat("=") or key in args:
            return _NO
        s.skip_spaces()
        value = _literal(s)
        if not isinstance(value, tuple):
            return value
        args[key] = value[0]
        # Complete as it is, or the start of what follows.
        if s.at_end():
            return _PREFIX if close else (args,)
        if close and s.eat(close):
            return _end(s, args)
        separator = s.one_of(_SEPARATORS, False)
        if separator == _PREFIX:
            return _PREFIX
        if separator == _NO:
            return _end(s, args)


def _end(s, value):
    """After the arguments: a full stop and blank space, nothing else."""
    return (value,) if s.rest().rstrip() in ("", ".") else _NO


def _literal(s):
    """A Python or JSON literal: a string, a number, `True`/`true`, `False`/`false`,
    `None`/`null`, a list or a dict of them."""
    first = s.text[s.at : s.at + 1]
    if not first:
        return _PREFIX
    if first in ('"', "'"):
        return _string(s, first)
    if first == "[":
        s.at += 1
        items = []
        while True:
            s.skip_spaces()
            if s.at_end():
                return _PREFIX
            if s.eat("]"):
                return (items,)
            if items:
                if not s.eat(","):
                    return _NO
                s.skip_spaces()
                if s.eat("]"):
                    return (items,)
            item = _literal(s)
            if not isinstance(item, tuple):
                return item
            items.append(item[0])
    if first == "{":
        s.at += 1
        obj = {}
        while True:
            s.skip_spaces()
            if s.at_end():
                return _PREFIX
            if s.eat("}"):
                return (obj,)
            if obj:
                if not s.eat(","):
                    return _NO
                s.skip_spaces()
            q = s.text[s.at : s.at + 1]
            if not q:
                return _PREFIX
            if q not in ('"', "'"):
                return _NO
            key = _string(s, q)
            if not isinstance(key, tuple):
                return key
            s.skip_spaces()
            if s.at_end():
                return _PREFIX
            if not s.eat(":"):
                return _NO
            s.skip_spaces()
            value = _literal(s)
            if not isinstance(value, tuple):
                return value
            obj[key[0]] = value[0]
    start = s.at
    s.take_while(lambda c: c.isascii() and (c.isalnum() or c in ".-+_"))
    word = s.text[start : s.at]
    # A word cut by the end of the text may still grow.
    if s.at_end() and not s.complete:
        return _PREFIX
    # A full stop that ends the output ends the sentence, not the number.
    if word.endswith(".") and not s.rest().strip():
        word = word[:-1]
        s.at -= 1
    if word in ("True", "true"):
        return (True,)
    if word in ("False", "false"):
        return (False,)
    if word in ("None", "null"):
        return (None,)
    n = _number(word)
    return _NO if n is None else (n,)


def _number(word):
    """A number as Rust parses it: an i64, else a finite f64; None when it is none."""
    if _INT.fullmatch(word):
        # (Leading zeros kept out of int(), which refuses very long texts.)
        digits = word.lstrip("+-").lstrip("0")
        if len(digits) <= 19:
            n = int(digits or "0") * (-1 if word[0] == "-" else 1)
            if -(2**63) <= n < 2**63:
                return n
    if not _FLOAT.fullmatch(word):
        return None
    f = float(word)
    return f if math.isfinite(f) else None


def _string(s, quote):
    """A quoted string with backslash escapes (`\\n`, `\\t`, `\\\\`, the quote)."""
    out = []
    i = s.at + 1
    while i < len(s.text):
        c = s.text[i]
        if c == quote:
            s.at = i + 1
            return ("".join(out),)
        if c == "\\":
            i += 1
            if i >= len(s.text):
                break
            c = {"n": "\n", "t": "\t"}.get(s.text[i], s.text[i])
        out.append(c)
        i += 1
    return _PREFIX


class _Cursor:
    def __init__(self, text, complete):
        self.text = text
        self.at = 0
        # The text is the whole output.
        self.complete = complete

    def rest(self):
        return self.text[self.at :]

    def at_end(self):
        return self.at >= len(self.text)

    def eat(self, word):
        ok = self.text.startswith(word, self.at)
        if ok:
            self.at += len(word)
        return ok

    def skip_spaces(self):
        self.take_while(lambda c: c == " ")

    def take_while(self, keep):
        while self.at < len(self.text) and keep(self.text[self.at]):
            self.at += 1

    def one_of(self, words, ci):
        """Eats the first of `words` (lower case) the text starts with, in any case when `ci`;
        _PREFIX when the text ends inside one."""
        rest = self.rest()
        prefix = False
        for word in words:
            head = rest[: len(word)]
            if len(head) == len(word) and (head.translate(_ASCII_LOWER) if ci else head) == word:
                self.at += len(word)
                return (word,)
            # Any case here, also where the match is exact: as in Rust.
            if len(rest) < len(word) and rest.translate(_ASCII_LOWER) == word[: len(rest)]:
                prefix = True
        return _PREFIX if prefix else _NO


# The schema check, on the values above and on the schema as serde_json reads it (integers are
# not floats, and a boolean is neither).


def _fits(args, schema):
    """Whether `args` fit `schema`: every argument a property of it, of its type and in its
    enum; every required property given."""
    properties = schema.get("properties")
    required = schema.get("required")
    if isinstance(required, list) and any(isinstance(n, str) and n not in args for n in required):
        return False
    return all(
        isinstance(properties, dict) and name in properties and _value_fits(value, properties[name])
        for name, value in args.items()
    )


def _value_fits(value, schema):
    if not isinstance(schema, dict):
        return True
    options = schema.get("enum")
    if isinstance(options, list) and not any(_same(option, value) for option in options):
        return False
    types = schema.get("type")
    if isinstance(types, str):
        types = [types]
    elif isinstance(types, list):
        types = [t for t in types if isinstance(t, str)]
    else:
        return True
    return any(_is_of_type(value, t, schema) for t in types)


def _is_of_type(value, t, schema):
    kind = type(value)
    if t == "array":
        return kind is list and ("items" not in schema or all(_value_fits(v, schema["items"]) for v in value))
    if t == "object":
        return kind is dict and (not ("properties" in schema or "required" in schema) or _fits(value, schema))
    # By type(), not isinstance(): a boolean is no integer, and an integer no float.
    kinds = {"string": (str,), "boolean": (bool,), "null": (type(None),), "number": (int, float), "integer": (int,)}
    return kind in kinds.get(t, ())


def _same(a, b):
    """JSON equality as serde_json has it: an integer never equals a float; key order does not
    count."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return a == b


def _schema_int(text):
    # serde_json reads -0 and integers beyond u64 and i64 as floats.
    if text != "-0" and len(text) <= 20:
        n = int(text)
        if -(2**63) <= n < 2**64:
            return n
    return float(text)


def _schema_of(tool):
    """A tool's parameters schema; `{}` when it is not a JSON object."""
    try:
        schema = json.loads(tool.parameters, parse_int=_schema_int, parse_constant=_reject_constant)
    except (TypeError, ValueError):
        return {}
    return schema if isinstance(schema, dict) else {}


def _to_json(value):
    """Compact JSON text of a value, as serde_json writes it."""
    if isinstance(value, dict):
        return "{" + ",".join(dumps(k) + ":" + _to_json(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(map(_to_json, value)) + "]"
    if type(value) is float:
        return _float_text(value)
    return dumps(value)


def _float_text(x):
    """A float as serde_json writes it: the shortest digits that read back as x, in fixed
    notation for exponents -5 to 15 (`1.0`, `0.05`), else `2.5e+20`, `1.5e-7`."""
    if x == 0:
        return "-0.0" if math.copysign(1, x) < 0 else "0.0"
    # repr() has the shortest digits: "100.0", "0.05", "1e-05", "2.5e+20".
    mantissa, _, exponent = repr(abs(x)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    e = len(digits) - 1 + int(exponent or 0) - len(fraction)
    digits = digits.rstrip("0")
    if e < -5 or e > 15:
        text = digits[0] + ("." + digits[1:] if len(digits) > 1 else "") + f"e{e:+d}"
    elif len(digits) <= e + 1:
        text = digits + "0" * (e + 1 - len(digits)) + ".0"
    elif e >= 0:
        text = digits[: e + 1] + "." + digits[e + 1 :]
    else:
        text = "0." + "0" * (-e - 1) + digits
    return ("-" if x < 0 else "") + text


# ---------------------------------------------------------------------------------------------
# The stream parser


def _could_be_whole_calls(text):
    # Lenient mode's rules for a whole output, in the Rust SDK's order: JSON calls, then a
    # sentence.
    return could_be_json(text) or could_be_natural(text)


def _read_whole_calls(text, tools):
    calls = read_lenient_json(text, tools)
    return calls if calls is not None else read_natural(text, tools)


class CallMarkup:
    """A string that opens a tool call, and how to make the reader of the call's text:
    `body(out)` returns an object whose `push(text, at_end)` returns None while the call goes on,
    or the text after the call (read as output again)."""

    def __init__(self, open, body):
        self.open = open
        self.body = body


class Spec:
    """A family's output format: reasoning markers (open, close) or None, end-of-turn markers,
    and the call markups."""

    def __init__(self, reasoning=None, end_of_turn=(), calls=()):
        self.reasoning = reasoning
        self.end_of_turn = list(end_of_turn)
        self.calls = list(calls)


class OutputParser:
    """A complete stream parser from a `Spec`. It keeps the contract's rules: reasoning split off
    first (a call inside closed reasoning is reasoning), explicit call markup is a call anywhere,
    also inside a markdown fence (the fence goes too), end-of-turn markers removed, content
    trimmed, markers split across chunks held back, and with `options.lenient` an output that is
    nothing but a JSON call is a call, as is a ```json fence in prose whose whole body is calls
    naming offered tools (the prose around stays content; the fence is held back until it
    closes), and an output that is nothing but a call written as a sentence (held back while it
    may still become one)."""

    def __init__(self, spec, options):
        self.spec = spec
        self.options = options
        self.out = Emitter(options.tools)
        self.pending = ""
        self.mode = "reasoning" if spec.reasoning and options.reasoning_open else "content"
        self.body = None
        self.fence_held = ""
        self.in_fence = False
        self.markers, self.actions = [], []
        if spec.reasoning:
            self.markers.append(spec.reasoning[0])
            self.actions.append(("reasoning", None))
        for call in spec.calls:
            self.markers.append(call.open)
            self.actions.append(("call", call))
        for eot in spec.end_of_turn:
            self.markers.append(eot)
            self.actions.append(("end-of-turn", None))
        self.markers.append(FENCE)
        self.actions.append(("fence", None))
        self.reasoning_close = [spec.reasoning[1]] + spec.end_of_turn if spec.reasoning else []
        self.call_openers = [c.open for c in spec.calls]
        self.whole_decided = not options.lenient

    def push(self, delta):
        self.pending += delta
        self._drive(False)
        return self.out.take()

    def finish(self):
        self._drive(True)
        if self.mode == "fence":
            self.out.content(self.fence_held)
        self.mode = "content"
        return self.out.take()

    def _whole_text(self, text, at_end):
        """The text without surrounding whitespace and end-of-turn markers at its end."""
        t_ = text.strip()
        changed = True
        while changed:
            changed = False
            for eot in self.spec.end_of_turn:
                if t_.endswith(eot):
                    t_ = t_[: -len(eot)].rstrip()
                    changed = True
        if not at_end:
            for eot in self.spec.end_of_turn:
                for cut in range(len(eot) - 1, 0, -1):
                    if t_.endswith(eot[:cut]):
                        return t_[: len(t_) - cut].rstrip()
        return t_

    def _drive(self, at_end):
        while True:
            if self.mode == "content":
                if not self.whole_decided:
                    if not self._decide_whole(at_end):
                        return
                    if self.mode == "whole":
                        continue
                if self.in_fence and not self._close_fence(at_end):
                    return
                start, index, length = scan(self.pending, self.markers, at_end)
                self.out.content(self.pending[:start])
                if index is None:
                    self.pending = self.pending[start:]
                    return
                self.pending = self.pending[start + length:]
                action, call = self.actions[index]
                if action == "reasoning":
                    self.mode = "reasoning"
                elif action == "call":
                    self.mode = "call"
                    self.body = call.body(self.out)
                elif action == "fence":
                    self.mode = "fence"
                    self.fence_held = self.markers[index]
            elif self.mode == "reasoning":
                start, index, length = scan(self.pending, self.reasoning_close, at_end)
                self.out.reasoning(self.pending[:start])
                if index is None:
                    self.pending = self.pending[start:]
                    return
                self.pending = self.pending[start + length:]
                # Index 0 closes the reasoning; the others are end-of-turn markers, removed.
                if index == 0:
                    self.mode = "content"
            elif self.mode == "call":
                text, self.pending = self.pending, ""
                if not text and not at_end:
                    return
                rest = self.body.push(text, at_end)
                if rest is None:
                    if at_end:
                        self.mode = "content"
                    return
                self.pending = rest
                self.mode = "content"
            elif self.mode == "fence":
                # The fence's info string, its line break and blank space, then a call?
                newline = self.pending.find("\n")
                info = self.pending if newline < 0 else self.pending[:newline]
                info_ok = len(info) < 16 and " " not in info
                if newline < 0:
                    if at_end or not info_ok:
                        self.out.content(self.fence_held)
                        self.fence_held = ""
                        self.mode = "content"
                        continue
                    return
                after = self.pending[newline + 1:].lstrip()
                start, index, _ = scan(after, self.call_openers, at_end)
                if index is not None and start == 0:
                    self.pending = after
                    self.in_fence = True
                    self.mode = "content"
                elif index is None and start == 0 and not at_end:
                    return
                elif self.options.lenient and info_ok and after[:1] in ("{", "["):
                    # Perhaps calls written as JSON in the fence: held from the info line on.
                    # (The info line is judged as above, where its line break has not come yet,
                    # so that a whole output and its stream agree.)
                    self.mode = "fenced-calls"
                else:
                    self.out.content(self.fence_held + self.pending[: newline + 1])
                    self.fence_held = ""
                    self.pending = self.pending[newline + 1:]
                    self.mode = "content"
            elif self.mode == "fenced-calls":
                # The pending text starts with the fence's info line; the body follows it, up to
                # the first closing fence.
                newline = self.pending.find("\n")
                body = len(self.pending) if newline < 0 else newline + 1
                found = self.pending.find(FENCE, body)
                upto = len(self.pending) if found < 0 else found
                fence_end = upto if found < 0 else found + len(FENCE)
                if could_be_json(self.fence_held + self.pending[:fence_end]):
                    if found < 0 and not at_end:
                        return
                    calls = read_lenient_json(self.pending[body:upto].strip(), self.options.tools)
                    if calls is not None:
                        # The fence and its closing line are part of the calls; what follows is
                        # output.
                        self._emit_calls(calls)
                        self.pending = self.pending[fence_end:]
                        self.fence_held = ""
                        self.mode = "content"
                        continue
                # Not calls: the opener is content, and the rest, info line included, is read
                # again.
                self.out.content(self.fence_held)
                self.fence_held = ""
                self.mode = "content"
            elif self.mode == "whole":
                text = self._whole_text(self.pending, at_end)
                if at_end:
                    calls = _read_whole_calls(text, self.options.tools)
                    if calls is not None:
                        self._emit_calls(calls)
                        self.pending = ""
                        return
                elif _could_be_whole_calls(text):
                    return
                # Not calls after all: read it as ordinary output.
                self.mode = "content"
                self.whole_decided = True

    def _emit_calls(self, calls):
        """Sends calls read whole (lenient JSON or a sentence), each complete."""
        for name, arguments in calls:
            index = self.out.start_call()
            self.out.begin_call(index, None, name)
            self.out.arguments(index, arguments)
            self.out.end_call(index)

    def _decide_whole(self, at_end):
        """Looks at the start of the content for a whole-output shape; False while it cannot
        tell."""
        text = self.pending.lstrip()
        if not text and not at_end:
            return False
        if self.out.has_content() or self.out.calls_started() > 0:
            self.whole_decided = True
            return True
        if self.spec.reasoning:
            open_ = self.spec.reasoning[0]
            if text.startswith(open_):
                return True
            if open_.startswith(text) and not at_end:
                return False
        if _could_be_whole_calls(self._whole_text(text, at_end)):
            self.mode = "whole"
        else:
            self.whole_decided = True
        return True

    def _close_fence(self, at_end):
        """After calls inside a markdown fence: drops the fence's closing line; False while it
        cannot tell."""
        text = self.pending.lstrip()
        if not text:
            if at_end:
                self.in_fence = False
            return at_end
        if text.startswith(FENCE):
            self.pending = text[3:]
            self.in_fence = False
            return True
        if FENCE.startswith(text) and not at_end:
            return False
        start, index, _ = scan(text, self.call_openers, at_end)
        if start == 0 and index is not None:
            return True
        if start == 0 and not at_end:
            return False
        self.in_fence = False
        return True


# ---------------------------------------------------------------------------------------------
# Prompts

ROLE_NAMES = {t.Role.SYSTEM: "system", t.Role.USER: "user", t.Role.ASSISTANT: "assistant", t.Role.TOOL: "tool"}


def chatml(messages, add_generation_prompt):
    """ChatML: `<|im_start|>ROLE\\nTEXT<|im_end|>\\n` per message, then the assistant's opening."""
    out = "".join(f"<|im_start|>{ROLE_NAMES[m.role]}\n{m.content or ''}<|im_end|>\n" for m in messages)
    if add_generation_prompt:
        out += "<|im_start|>assistant\n"
    return out


def tool_json(tool):
    """A tool in OpenAI's shape, `{"type":"function","function":{"name","description",
    "parameters"}}`, as compact JSON text. The host hands the schema over as compact JSON text,
    which is kept as written (key order included)."""
    parameters = tool.parameters
    try:
        loads(parameters)
    except ValueError:
        parameters = dumps(parameters)
    description = "" if tool.description is None else f',"description":{dumps(tool.description)}'
    return f'{{"type":"function","function":{{"name":{dumps(tool.name)}{description},"parameters":{parameters}}}}}'


def compact_json(text):
    """Compact JSON text of a JSON text (earlier calls' arguments), or the text as a JSON string."""
    try:
        return dumps(loads(text))
    except ValueError:
        return dumps(text)


def text_message(role, content):
    """A plain text message."""
    return t.Message(role, content, None, [], None, None)


# ---------------------------------------------------------------------------------------------
# Call grammars (contract 0.2)
#
# A family's call syntax as a grammar in llguidance's Lark dialect, so that the host can hold
# generated calls to it. The host defines one rule per offered tool, `args0`, `args1`, …
# (`args_rule`): that tool's arguments as a JSON object valid against its schema. An adapter only
# says what surrounds them; `CallSyntax.grammar` writes the whole grammar for any tool_choice (the
# same rules as the Rust SDK's `grammar` module, so the same syntax gives the same grammar). The
# invariant each adapter keeps: every text its grammar accepts is read by its own parser as
# exactly the calls it encodes, with no problem.


def args_rule(index):
    """The rule the host defines for the arguments of the `index`th offered tool."""
    return f"args{index}"


def literal(text):
    """`text` as a Lark string literal (a JSON string is one: the same quotes and escapes)."""
    return json.dumps(text, ensure_ascii=False)


def trigger(text):
    """A trigger anywhere in the output."""
    return t.Trigger(text, False)


def marker(request, text):
    """A marker as the grammar must name it: by id when the model has it as a control token (text
    never produces one), as a literal otherwise."""
    for token in request.control_tokens:
        if token.text == text:
            return f"<[{token.id}]>"
    return literal(text)


def json_envelope(tool, args, name_key, args_key):
    """One call as a JSON object naming the tool then giving its arguments, written as Python's
    `json.dumps` writes it: `{"name": "get_weather", "arguments": {…}}` (`name_key` and
    `args_key` name the two members; `args` is the tool's arguments rule)."""
    head = f"{{{literal(name_key)}: {literal(tool.name)}, {literal(args_key)}: "
    return f'{literal(head)} {args} "}}"'


def callable_tools(request):
    """The tools a call may name under the request's tool_choice, as `(index, tool)` pairs (the
    index among all offered tools names the arguments rule). (The Rust SDK's `callable`, renamed
    so as not to hide Python's builtin.)"""
    choice = request.tool_choice
    if isinstance(choice, t.ToolChoice_Function):
        return [(i, tool) for i, tool in enumerate(request.tools) if tool.name == choice.value]
    if isinstance(choice, t.ToolChoice_None_):
        return []
    return list(enumerate(request.tools))


class CallSyntax:
    """How a family writes one call, and how calls follow each other.

    - `call(tool, args)`: the Lark expression of one call of `tool` whose arguments rule is
      `args`, or None for a tool whose name the format cannot carry (the grammar leaves it out);
    - `separator`: between two calls of a parallel turn (a Lark expression; `""` for none);
    - `list_markers`: `(open, close)` Lark expressions around all the calls of a turn, for
      families that write their calls as one list; None where each call has markers of its own;
    - `triggers`: texts that start a call (or the list) in free output (see `trigger`);
    - `reasoning`: the family's `(open, close)` reasoning markers, if it reasons.
    """

    def __init__(self, call, separator="", list_markers=None, triggers=(), reasoning=None):
        self.call = call
        self.separator = separator
        self.list_markers = list_markers
        self.triggers = list(triggers)
        self.reasoning = reasoning

    def grammar(self, request):
        """The grammar for this request (what `call_grammar` returns), or None when no call may
        be made. tool_choice `auto` applies it from a trigger on, one call (or one list) at a
        time; `required` or a named function from the first token, for the whole output."""
        calls = (self.call(tool, args_rule(i)) for i, tool in callable_tools(request))
        alternatives = [call for call in calls if call is not None]
        if not alternatives:
            return None
        auto = isinstance(request.tool_choice, t.ToolChoice_Auto)
        parallel = request.parallel_tool_calls
        grammar = "call: " + "\n    | ".join(alternatives) + "\n"
        calls = f"call ({self.separator} call)*" if parallel else "call"
        if self.list_markers is not None:
            body = f"{self.list_markers[0]} {calls} {self.list_markers[1]}"
        elif auto:
            # With a trigger per call, the host waits for the next trigger after each one.
            body = "call"
        elif parallel and self.separator:
            # A separator may also end the turn: a model that writes one after its last call is
            # not forced into another call.
            body = f"{calls} ({self.separator})?"
        else:
            body = calls
        if auto:
            grammar += f"start: {body}\n"
            start = t.GrammarStart_OnTrigger(list(self.triggers))
        else:
            if self.reasoning is not None and request.reasoning_open:
                # The prompt opened reasoning: it ends (its close marker) before the calls.
                grammar += (
                    f"start: reasoning /[ \\t\\r\\n]*/ {body}\n"
                    f"reasoning[suffix={literal(self.reasoning[1])}]: /(?s:.*)/\n"
                )
            else:
                grammar += f"start: {body}\n"
            start = t.GrammarStart_FromStart()
        reasoning = None if self.reasoning is None else (self.reasoning[0], self.reasoning[1])
        return t.ToolCallGrammar(grammar, start, reasoning)


# ---------------------------------------------------------------------------------------------
# Refusals


def invalid_request(message):
    """An error to raise from format_prompt: the request cannot be rendered."""
    return Err(t.AdapterError_InvalidRequest(message))


def unsupported(message):
    """An error to raise: the adapter does not support what was asked."""
    return Err(t.AdapterError_Unsupported(message))


def malformed_output(message):
    """An error to raise: the output cannot be read at all."""
    return Err(t.AdapterError_MalformedOutput(message))
