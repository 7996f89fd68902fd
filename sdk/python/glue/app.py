"""The component's entry point, the same for every Python adapter: componentize-py looks for the
exported interface's functions on the class `Adapter` of this module. They call the adapter's own
module, `main.py` (`info()`, `format_prompt(request)`, `parser(options)` and, if it defines one,
`call_grammar(request)`); whole-output parsing is the stream parser fed the whole text, so
parsing and streaming never disagree."""

import main
import plugboard
from wit_world import exports


class Adapter(exports.Adapter):
    def info(self):
        return main.info()

    def format_prompt(self, request):
        return main.format_prompt(request)

    def parse_response(self, text, options):
        parser = main.parser(options)
        return plugboard.fold(parser.push(text) + parser.finish())

    def extract_tool_calls(self, text, options):
        return self.parse_response(text, options).tool_calls

    def call_grammar(self, request):
        # An adapter without a call grammar has none: its calls are checked after generation.
        call_grammar = getattr(main, "call_grammar", None)
        return None if call_grammar is None else call_grammar(request)
