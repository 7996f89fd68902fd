"""The exported `stream-parser` resource, the same for every Python adapter: componentize-py looks
for a resource's class in a module named after the exported interface (`adapter`). It wraps the
parser that the adapter's `main.parser(options)` makes."""

import main
from wit_world.exports import adapter


class StreamParser(adapter.StreamParser):
    def __init__(self, options):
        self.inner = main.parser(options)

    def push(self, delta):
        return self.inner.push(delta)

    def finish(self):
        return self.inner.finish()
