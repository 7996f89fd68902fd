"""tool-use, in Python: tool calling for models that have no tool format of their own. The system
prompt lists the tools and asks for calls written as

    <tool_use>
    tool_name: get_weather
    arguments: {"city": "Paris"}
    </tool_use>

and the parser reads those blocks back, streaming the arguments as they are generated. It is the
same adapter as the built-in Rust one (plugins/tool-use): it passes the same fixtures and gives
the same call grammar, byte for byte; a file named tool-use.wasm in the plugin folder replaces
the built-in.
"""

import re

from plugboard import (
    ArgsReader,
    CallMarkup,
    CallSyntax,
    OutputParser,
    Spec,
    chatml,
    compact_json,
    invalid_request,
    literal,
    scan,
    text_message,
    tool_json,
    trigger,
)
from wit_world.exports import adapter as t

OPEN = "<tool_use>"
CLOSE = "</tool_use>"
END_OF_TURN = ["<|im_end|>", "<|endoftext|>"]
NAME_LABELS = ["tool_name:", "name:"]
ARGS_LABEL = "arguments:"
P = t.ProblemKind


def strip_label(text, labels):
    """The text after one of `labels` at the start of `text` (any case), or None."""
    for label in labels:
        if text[: len(label)].lower() == label:
            return text[len(label):]
    return None


def may_become(text, labels):
    """Whether `text` may still grow into one of `labels`."""
    return any(len(label) > len(text) and label.startswith(text.lower()) for label in labels)


def block_start(text):
    """How the text after an opening marker starts: "block" with what a block may start with (a
    label, a bare `{` or `"`, the closing marker), "undecided" when empty or a beginning of one of
    those, "prose" with none of it (no call follows the marker)."""
    text = text.lstrip()
    if not text:
        return "undecided"
    if text[0] in '{"':
        return "block"
    start = "prose"
    for label in NAME_LABELS + [ARGS_LABEL, CLOSE]:
        n = min(len(label), len(text))
        if text[:n].lower() == label[:n]:
            if n == len(label):
                return "block"
            start = "undecided"
    return start


def first_of(text, needles):
    found = [i for i in (text.find(n) for n in needles) if i >= 0]
    return min(found) if found else None


class ToolUseBody:
    """One `<tool_use>` block: `tool_name: NAME`, then `arguments: {JSON}`, then `</tool_use>`."""

    def __init__(self, out):
        self.out = out
        # Taken once a block is known to follow: a marker in prose takes none.
        self.index = None
        self.phase = "name"
        self.buf = ""
        self.reader = None

    def push(self, text, at_end):
        self.buf += text
        rest = self.run(False)
        if rest is None and at_end:
            rest = self.run(True)
        return rest

    def fail(self, kind, message):
        self.out.problem(kind, f"call {self.index}: {message}", self.index)
        self.phase = "skip"

    def run(self, at_end):
        out = self.out
        if self.phase == "name":
            start = block_start(self.buf)
            if start == "prose":
                # The marker stands in prose (`write a <tool_use> block`): it and all that
                # follows are output again, and no call index is taken.
                out.content(OPEN)
                rest, self.buf = self.buf, ""
                return rest
            if start == "undecided" and not at_end:
                return None
        if self.index is None:
            self.index = out.start_call()
        index = self.index
        while True:
            if self.phase == "name":
                text = self.buf.lstrip()
                start, found, _ = scan(text, [CLOSE], at_end)
                if found is not None and start == 0:
                    self.fail(P.MISSING_NAME, "the block has no tool_name")
                    continue
                after_label = strip_label(text, NAME_LABELS)
                if after_label is None:
                    if not text or may_become(text, NAME_LABELS):
                        if at_end:
                            self.fail(P.TRUNCATED, "the output ended before the tool name")
                        return None
                    self.fail(P.MISSING_NAME, "the block does not start with 'tool_name:'")
                    continue
                after = after_label.lstrip(" \t")
                # The name ends with its line, or where the arguments or the closing marker start.
                end = first_of(after, ["\n", "\r", ARGS_LABEL, CLOSE, "{"])
                if end is None:
                    if at_end:
                        self.fail(P.TRUNCATED, "the output ended on the tool_name line")
                    return None
                name = after[:end].strip().strip("\"`'")
                self.buf = after[end:]
                if not name:
                    self.fail(P.MISSING_NAME, "the tool_name is empty")
                    continue
                out.begin_call(index, None, name)
                self.phase = "label"
            elif self.phase == "label":
                text = self.buf.lstrip()
                args = strip_label(text, [ARGS_LABEL])
                if args is None and text.startswith("{"):
                    args = text
                if args is not None:
                    self.buf = args
                    self.reader = ArgsReader(index, out)
                    self.phase = "args"
                    continue
                start, found, length = scan(text, [CLOSE], at_end)
                if found is not None and start == 0:
                    # No arguments inside a closed block: `{}`.
                    out.arguments(index, "{}")
                    out.end_call(index)
                    self.buf = ""
                    return text[length:]
                if not text:
                    if at_end:
                        self.fail(P.TRUNCATED, "the output ended before the arguments")
                    return None
                undecided = may_become(text, [ARGS_LABEL]) or (found is None and start == 0)
                if undecided and not at_end:
                    return None
                self.fail(P.MALFORMED_JSON, "expected 'arguments:' after the tool name")
            elif self.phase == "args":
                text, self.buf = self.buf, ""
                step, used = self.reader.push(text)
                if step == "more":
                    if at_end:
                        if self.reader.is_empty():
                            self.fail(P.TRUNCATED, "the output ended before the arguments")
                        else:
                            if self.reader.finish():
                                out.end_call(index)
                            self.phase = "skip"
                    return None
                if step == "done":
                    out.end_call(index)
                    self.phase = "after"
                else:
                    self.phase = "skip"
                self.buf = text[used:]
            else:
                # "after" (the call is complete) or "skip" (it is broken): on to the closing marker.
                start, found, length = scan(self.buf, [CLOSE], at_end)
                if found is None:
                    self.buf = self.buf[start:]
                    return None
                rest = self.buf[start + length:]
                self.buf = ""
                return rest


SPEC = Spec(
    reasoning=("<think>", "</think>"),
    end_of_turn=END_OF_TURN,
    calls=[CallMarkup(OPEN, ToolUseBody)],
)


def info():
    return t.AdapterInfo(
        name="tool-use",
        version="0.1.0+python",
        description="Tool calls as <tool_use> blocks, taught in the system prompt, for models without a native tool format (Python)",
        families=["phi-3", "deepseek-coder", "chatml"],
        capabilities=t.Capabilities.TOOLS | t.Capabilities.PARALLEL_CALLS,
        tool_call_triggers=[OPEN],
        end_of_turn=END_OF_TURN,
    )


def parser(options):
    return OutputParser(SPEC, options)


def instruction(request):
    """The instruction that teaches the call format."""
    text = "You can call the following tools. Each is described by a JSON object:\n"
    text += "\n".join(tool_json(tool) for tool in request.tools)
    text += (
        "\n\nWhen you need a tool, answer with a block in exactly this form and wait for its result:\n"
        f"{OPEN}\ntool_name: NAME\narguments: {{JSON object with the arguments}}\n{CLOSE}\n"
    )
    choice = request.tool_choice
    if isinstance(choice, t.ToolChoice_Required):
        text += "You must call at least one tool now.\n"
    elif isinstance(choice, t.ToolChoice_Function):
        text += f"You must call the tool {choice.value} now.\n"
    else:
        text += "If no tool is needed, answer normally without a block.\n"
    if request.parallel_tool_calls:
        text += "To call several tools at once, write one block per call."
    else:
        text += "Call at most one tool per answer."
    return text


def assistant_text(message):
    """An assistant turn with its calls written as blocks."""
    text = message.content or ""
    for call in message.tool_calls:
        if text:
            text += "\n"
        text += f"{OPEN}\ntool_name: {call.name}\narguments: {compact_json(call.arguments)}\n{CLOSE}"
    return text


def tool_name_of(message, history):
    """The name of the tool whose result `message` is: its own, or that of the call it answers."""
    if message.name is not None:
        return message.name
    for earlier in reversed(history):
        for call in earlier.tool_calls:
            if message.tool_call_id is not None and call.id == message.tool_call_id:
                return call.name
    return "tool"


def format_prompt(request):
    choice = request.tool_choice
    with_tools = bool(request.tools) and not isinstance(choice, t.ToolChoice_None_)
    if isinstance(choice, t.ToolChoice_Function) and not any(tool.name == choice.value for tool in request.tools):
        raise invalid_request(f"tool_choice names the function '{choice.value}', which is not among the tools")
    system, rest = "", request.messages
    if rest and rest[0].role == t.Role.SYSTEM:
        system, rest = rest[0].content or "", rest[1:]
    if with_tools:
        system = f"{system}\n\n{instruction(request)}" if system else instruction(request)
    messages = [text_message(t.Role.SYSTEM, system)] if system else []
    for i, message in enumerate(rest):
        if message.role == t.Role.ASSISTANT:
            messages.append(text_message(t.Role.ASSISTANT, assistant_text(message)))
        elif message.role == t.Role.TOOL:
            block = f"<tool_result>\ntool_name: {tool_name_of(message, rest[:i])}\nresult: {message.content or ''}\n</tool_result>"
            # Consecutive results share one user turn.
            if i > 0 and rest[i - 1].role == t.Role.TOOL:
                messages[-1].content += "\n" + block
            else:
                messages.append(text_message(t.Role.USER, block))
        else:
            messages.append(message)
    return t.Prompt(
        text=chatml(messages, request.add_generation_prompt),
        stop=[END_OF_TURN[0]],
        tool_call_triggers=[OPEN] if with_tools else [],
        reasoning_open=False,
    )


# Whitespace as Rust's `char::is_whitespace` sees it (the built-in adapter's name check), which
# is not what `str.isspace` or `str.strip` see.
RUST_WHITESPACE = re.compile("[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


def is_bare(name):
    """Whether the parser reads `name` back as written on its `tool_name:` line: no quotes or
    whitespace around it (they are trimmed), no line break, `{`, `arguments:` or closing marker
    in it."""

    def edge(c):
        return RUST_WHITESPACE.fullmatch(c) is not None or c in "\"`'"

    return (
        name != ""
        and not edge(name[0])
        and not edge(name[-1])
        and not any(c in name for c in "\n\r{")
        and ARGS_LABEL not in name
        and CLOSE not in name
    )


def tool_use_call(tool, args):
    """Each call in its own block, as the system prompt teaches it. A name is written bare on its
    line, so a tool whose name the parser would read otherwise cannot be called in this format."""
    if not is_bare(tool.name):
        return None
    head = literal(f"{OPEN}\ntool_name: {tool.name}\narguments: ")
    tail = literal("\n" + CLOSE)
    return f"{head} {args} {tail}"


SYNTAX = CallSyntax(tool_use_call, separator='"\\n"', triggers=[trigger(OPEN)], reasoning=("<think>", "</think>"))


def call_grammar(request):
    return SYNTAX.grammar(request)
