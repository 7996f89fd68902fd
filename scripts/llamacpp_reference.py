#!/usr/bin/env python3
"""Write llama.cpp's answers for the test models, for plugboard's engine to be checked against.

llama.cpp is the reference implementation of GGUF inference: for the same file, plugboard's
tokenizers must give the same ids and its decoder (host/src/engine/model.rs) the same logits.
This script asks llama.cpp, through the `llama-cpp-python` bindings, and writes what it says to
tests/references/llamacpp/<model>.json; tests/all/llamacpp.rs reads those files. The tests never
need llama.cpp itself, only the committed JSON.

How the references were made (to redo them, same steps):

    python3 -m venv /tmp/llama-venv
    CMAKE_BUILD_PARALLEL_LEVEL=2 /tmp/llama-venv/bin/pip install llama-cpp-python==0.3.36 numpy
    scripts/fetch_test_models.py                       # models/*.gguf, checksums verified
    /tmp/llama-venv/bin/python scripts/llamacpp_reference.py [--models DIR] [--only qwen|gemma]

`--spread` writes nothing: it prints how far llama.cpp's own logits move for the chat prompt
when only its configuration changes (f32 instead of f16 KV cache, flash attention, smaller
batches), the yardstick for how close another engine can be expected to come.

(pip compiles llama.cpp from source for the machine, CPU only; about 10 minutes on 2 cores.)

What each file holds:
  - `tokenize`: for every string of `test_strings()` (at least 200: code, JSON, many scripts,
    emoji, whitespace runs, digits, special-token look-alikes typed as text, empty and long
    strings …) the ids of `llama_tokenize(text, add_special=False, parse_special=False)`, and
    the text llama.cpp detokenizes those ids back to (control tokens written out).
  - `tokenize_special`: strings with real control tokens, tokenized with parse_special=True.
  - `logits`: fixed chat prompts in the model's own chat format (the ids llama.cpp gives them,
    BOS included where the file asks for one), the next-token logits after the whole prompt
    (top 50 exactly, and optionally the whole vector quantised to int16 in steps of 1/100,
    little-endian, base64), and the first 32 greedy tokens (argmax, never stopping at an end
    token), each with its top 5 so that a near tie can be told from a real disagreement.

Everything is deterministic: fixed strings, a seeded generator for the random ones, greedy
decoding. llama.cpp runs on the CPU with its defaults otherwise (f16 KV cache, no flash
attention); the settings are recorded in each file.
"""

import argparse
import base64
import json
import random
import sys
from pathlib import Path

import numpy as np

from fetch_test_models import sha256_of

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "references" / "llamacpp"

MODELS = {
    "qwen": {
        "file": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "specials": [
            "<|im_start|>",
            "<|im_end|>",
            "<|endoftext|>",
            "<tool_call>",
            "</tool_call>",
            "<|fim_prefix|>",
            "<|fim_middle|>",
            "<|file_sep|>",
            "[PAD151665]",
            "[PAD151935]",
        ],
    },
    # Random-weight models of the architectures no small real model covers, written by
    # `cargo test -p plugboard-tests --test all -- --ignored write_tiny_models`.
    "tiny-llama": {"file": "tiny-llama.gguf", "tiny": True},
    "tiny-llama3": {"file": "tiny-llama3.gguf", "tiny": True},
    "tiny-llama-linear": {"file": "tiny-llama-linear.gguf", "tiny": True},
    "tiny-phi3": {"file": "tiny-phi3.gguf", "tiny": True},
    "gemma": {
        "file": "gemma-3-270m-q4_k_m.gguf",
        "specials": [
            "<start_of_turn>",
            "<end_of_turn>",
            "<bos>",
            "<eos>",
            "<pad>",
            "<unk>",
            "<mask>",
            "<unused0>",
            "<unused99>",
            "[multimodal]",
            "<start_of_image>",
            "<table>",
            "</td>",
            "<0x41>",
            "<0x0A>",
        ],
    },
}

N_CTX = 2048
N_BATCH = 512
N_THREADS = 2
TOP = 50
GREEDY = 32

# Strings typed by people and programs. Every model gets all of them, plus its own special-token
# look-alikes.
FIXED = [
    "",
    " ",
    "  ",
    "   ",
    "\t",
    "\n",
    "\n\n",
    "\n\n\n",
    "\r\n",
    "\r\n\r\n",
    " \n ",
    "\t\t\t",
    "\n" * 40,
    " " * 40,
    "\t" * 40,
    " \t \n\t \r\n  \t",
    "a",
    "A",
    " a",
    "  a",
    "   a",
    "\ta",
    "\n a",
    "a ",
    "a  ",
    "a\n",
    "Hello world",
    "hello world",
    " Hello world",
    "  Hello  world  ",
    "Hello\tworld",
    "Hello\nworld",
    "Hello\n\nworld",
    "HELLO WORLD",
    "The quick brown fox jumps over the lazy dog.",
    "It's a dog's life; they'll say we've done what I'd've done.",
    "I'M SHOUTING, YOU'RE NOT, WE'LL SEE.",
    "don't DON'T Don'T",
    "e.g. i.e. etc... (sic) [sic] {sic}",
    "mixedCase camelCase snake_case kebab-case SCREAMING_SNAKE PascalCase",
    "https://example.com/path/to/page?query=1&other=two#frag",
    "user.name+tag@example.co.uk",
    "C:\\Users\\me\\Documents\\file.txt",
    "/usr/local/bin/python3 -m pip install --upgrade pip",
    "0",
    "7",
    "42",
    " 42",
    "1234567890",
    "12345678901234567890",
    "3.14159265358979",
    "1,000,000.00",
    "-273.15°C",
    "2024-01-15T10:30:00Z",
    "0x1F 0b1010 0o777 1e-10 6.02e23",
    "version 1.2.3-rc.4+build.5",
    "Call 555-0123 or +1 (800) 555-0199.",
    "1st 2nd 3rd 4th 100th",
    "١٢٣٤٥ ०१२३४ 一二三 ①②③ ⅠⅡⅢ",
    "def add(a, b):\n    return a + b\n",
    "class Foo:\n\tdef __init__(self):\n\t\tself.x = 1\n",
    "fn main() {\n    println!(\"Hello, {}!\", name);\n}\n",
    "impl<'a, T: Clone + Send> Iterator for Iter<'a, T> { type Item = &'a T; }",
    "const x = async () => { await fetch(`/api/${id}`); };",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name ORDER BY 2 DESC;",
    "for i in $(seq 1 10); do echo \"$i\" >> out.log 2>&1; done",
    "x = [i**2 for i in range(10) if i % 2 == 0]  # squares",
    "if (a && b || !c) { return a ?? b; } else if (x !== y) {}",
    "<div class=\"row\"><span id='x'>text</span></div>",
    "<html><body><table><tr><td>cell</td></tr></table></body></html>",
    "<h1>Title</h1><p><strong>bold</strong> and <em>em</em></p>",
    "<!-- comment --> <![CDATA[ data ]]> &amp; &lt; &gt; &#x27;",
    "| a | b |\n|---|---|\n| 1 | 2 |\n",
    "# Heading\n\n- item one\n- item two\n\n```python\nprint('hi')\n```\n",
    "$$\\int_0^\\infty e^{-x^2} dx = \\frac{\\sqrt{\\pi}}{2}$$",
    "^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+)@\\w+\\.[a-z]{2,}$",
    '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}',
    '{"a":1,"b":[true,false,null],"c":{"d":"e\\n\\"f\\""},"g":-1.5e3}',
    '[{"id": 1}, {"id": 2}]',
    '{\n  "nested": {\n    "deep": [\n      1,\n      2\n    ]\n  }\n}',
    '{"emoji": "\\ud83d\\ude00", "unicode": "\\u00e9"}',
    "key: value\nlist:\n  - one\n  - two\nnested:\n  inner: true\n",
    "[section]\nname = \"plugboard\"\nversion = \"0.1.0\"\n",
    "Ceci n'est pas une pipe. Où est la bibliothèque ? Ça va très bien.",
    "Größenwahn Straße Übermäßig ÄÖÜ äöü ß ẞ",
    "¿Qué tal? ¡Muy bien! El niño comió piñata.",
    "Português: ação, coração, não, pão.",
    "Tiếng Việt có dấu: Xin chào, cảm ơn bạn rất nhiều.",
    "Türkçe: İstanbul ılık ışık Iğdır",
    "Polski: zażółć gęślą jaźń",
    "Čeština: Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Русский язык: Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Українська: Ґанок, їжак, єдність.",
    "Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
    "中文：我能吞下玻璃而不伤身体。",
    "繁體中文：我能吞下玻璃而不傷身體。",
    "日本語：私はガラスを食べられます。それは私を傷つけません。カタカナ ひらがな",
    "한국어: 나는 유리를 먹을 수 있어요. 그래도 아프지 않아요.",
    "العربية: أنا قادر على أكل الزجاج و هذا لا يؤلمني.",
    "עברית: אני יכול לאכול זכוכית וזה לא מזיק לי.",
    "हिन्दी: मैं काँच खा सकता हूँ और मुझे उससे कोई चोट नहीं पहुंचती.",
    "বাংলা: আমি কাঁচ খেতে পারি, তাতে আমার কোনো ক্ষতি হয় না।",
    "தமிழ்: நான் கண்ணாடி சாப்பிடுவேன், அதனால் எனக்கு ஒரு கேடும் வராது.",
    "ไทย: ฉันกินกระจกได้ แต่มันไม่ทำให้ฉันเจ็บ",
    "ქართული: მინას ვჭამ და არა მტკივა.",
    "አማርኛ: ብርጭቆ መብላት እችላለሁ፣ አይጎዳኝም።",
    "Հայերեն: Կրնամ ապակի ուտել և ինծի անհանգիստ չըներ։",
    "ᐃᓄᒃᑎᑐᑦ ᑐᑭᓯᓇᔭᕆᐊᖃᖅᑐᑦ",
    "ꦧꦱꦗꦮ ᮘᮞ ᮞᮥᮔ᮪ᮓ",
    "𓀀𓀁𓀂 𐎀𐎁𐎂 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕌𝕟𝕚𝕔𝕠𝕕𝕖",
    "𠀀𠀁𠀂 𪚥 𰻞",
    "ꙮ ꙭ ⸘ ‽ ⁂",
    "😀",
    "😀😃😄😁",
    "👨‍👩‍👧‍👦 family",
    "👍🏽 👍🏿 🧑🏻‍💻",
    "🇫🇷🇯🇵🇺🇸 flags",
    "❤️ ♥ ❣️ 💔",
    "1️⃣ #️⃣ *️⃣",
    "I ❤️ 🍕 and 🍣!",
    "🧬🦀🐍🦙🪐",
    "Caf\u00e9 vs Cafe\u0301",
    "A\u030a \u00c5 \u212b",
    "\ufb01le \ufb02ow",
    "ｆｕｌｌｗｉｄｔｈ　ＡＢＣ１２３",
    "zero\u200bwidth\u200cjoin\u200dhere",
    "\u00a0nbsp\u00a0and\u2009thin\u2002en\u3000ideographic",
    "line\u2028sep\u2029para",
    "\ufeffbom at start",
    "rtl \u202eoverride\u202c and \u200fmark",
    "\x00",
    "\x01\x02\x03",
    "a\x00b",
    "\x7f\x1b[31mred\x1b[0m",
    "\u0085next line",
    "\ue002\uf8ff private use",
    "\U000f0000\U0010fffd",
    "tab\tseparated\tvalues\t1\t2\t3",
    "trailing spaces   \nand tabs\t\t\n",
    "    indented four\n        indented eight\n",
    "\t\tdouble tab indent\n\t\t\treturn x",
    "a  b   c    d     e      f",
    "!!!???...,,,;;;:::",
    "!@#$%^&*()_+-=[]{}|;':\",./<>?`~",
    "-- --- ---- ===== ****** ~~~~~~~",
    "...",
    "…",
    "“smart quotes” ‘single’ «guillemets» „German“",
    "— – - ‐ ‑ ‒ ―",
    "© ® ™ § ¶ † ‡ • · °",
    "€ £ ¥ ₹ ₽ ₿ $ ¢",
    "∀x∈ℝ: x² ≥ 0 ∧ √x ∉ ∅ ≠ ∞",
    "→ ← ↑ ↓ ⇒ ⇔ ↦",
    "┌─┐\n│ │\n└─┘",
    "░▒▓█",
    "<s>",
    "</s>",
    "<|eot_id|>",
    "<|start_header_id|>user<|end_header_id|>",
    "[INST] hi [/INST]",
    "<think>reasoning</think>",
    "<|im_",
    "<|im_end",
    "im_end|>",
    "<|",
    "|>",
    "< |im_end| >",
    "<<|im_end|>>",
    "<|im_end|><|im_end|>",
    " <|im_end|> ",
    "text<|im_end|>text",
    "<|im_start|>user\nhello<|im_end|>",
    "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>",
    "<start_of_turn>user\nhello<end_of_turn>",
    "<bos><eos>",
    "<0x00><0xFF>",
    "<unused12>",
    "\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n",
    "x" * 100,
    "ab" * 80,
    "aaaa bbbb cccc dddd " * 10,
    "🙂" * 30,
    "中" * 60,
]

LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt "
    "ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation "
    "ullamco laboris nisi ut aliquip ex ea commodo consequat. "
)

LONG_CODE = '''import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tool:
    """A function the model may call."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


def parse_calls(text: str) -> list[dict[str, Any]]:
    calls = []
    for block in text.split("<tool_call>")[1:]:
        body, _, _ = block.partition("</tool_call>")
        try:
            calls.append(json.loads(body))
        except json.JSONDecodeError as err:  # keep going: one bad call must not lose the rest
            print(f"bad call: {err!r}")
    return calls
'''

# Pools for the seeded random strings: each mixes scripts, whitespace and punctuation in ways
# nobody would write by hand, which is where tokenizers disagree.
POOLS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789",
    " \t\n\r",
    "  \n\n\t\t",
    ".,;:!?'\"()[]{}<>/\\|-_=+*&^%$#@~`",
    "éèêëàâäôöûüçñßøåæœ",
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年",
    "あいうえおかきくけこアイウエオカキクケコ",
    "가나다라마바사아자차카타파하",
    "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
    "😀😂🥲🤖👍🔥✨🚀🎉💡",
    "\u0301\u0308\u200d\ufe0f",
]


def random_strings(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(1, 60)
        pools = rng.sample(POOLS, rng.randint(1, 4))
        out.append("".join(rng.choice(rng.choice(pools)) for _ in range(length)))
    return out


def test_strings(specials: list[str]) -> list[str]:
    strings = list(FIXED)
    strings += [LOREM * 4, LONG_CODE, "\n".join(FIXED[90:110]) * 2]
    for s in specials:
        strings += [s, f"a{s}b", f" {s} ", f"{s}\n{s}", f"Hello{s}world{s}"]
    strings += random_strings(60, seed=20240601)
    seen = set()
    unique = []
    for s in strings:
        if s not in seen:
            seen.add(s)
            unique.append(s)
    return unique


SYSTEM = """You are a careful senior software engineer who answers questions about Rust, Python and
shell scripting. Keep answers short and correct, show code where it helps, and explain the one
or two things that matter. When a question is ambiguous, state the assumption you make.

You may call these functions when they help:
- read_file(path: string) -> the file's text
- run_tests(package: string, filter: string) -> the test output
- search_docs(query: string, crate: string) -> matching passages"""

USER = """I have this Rust function that reads a config file and I get a borrow checker error I do
not understand. Here is the code:

```rust
use std::collections::HashMap;
use std::fs;

pub struct Config {
    values: HashMap<String, String>,
}

impl Config {
    pub fn load(path: &str) -> Result<Config, String> {
        let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
        let mut values = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once('=').ok_or("missing =")?;
            values.insert(key.trim(), value.trim());
        }
        Ok(Config { values })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|v| v.as_str())
    }
}
```

The compiler says:

```
error[E0308]: mismatched types
  --> src/config.rs:19:23
   |
19 |         Ok(Config { values })
   |                     ^^^^^^ expected `HashMap<String, String>`, found `HashMap<&str, &str>`
```

Why does it infer `&str` here, and what is the cleanest fix? Also, is `ok_or("missing =")?`
fine inside a function that returns `Result<Config, String>`, or does it need a conversion?
Please explain step by step, then show the corrected function."""

# A second, longer prompt for Gemma 3: past 512 positions its local layers' sliding window
# starts to drop the oldest keys, which a shorter prompt never exercises.
LONG_USER = (
    USER
    + "\n\nFor context, here is the rest of the module, which already compiles:\n\n```rust\n"
    + "\n".join(
        f"pub fn setting_{i}(config: &Config) -> Option<u{8 << (i % 4)}> {{\n"
        f"    config.get(\"setting_{i}\").and_then(|v| v.parse().ok())\n}}\n"
        for i in range(14)
    )
    + "```\n\nThe helpers are generated by a build script; please keep their signatures."
)


def chat_prompt(model: str, user: str) -> str:
    if model == "qwen":
        return (
            f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
            f"<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n"
        )
    # Gemma's template has no system role: the system text opens the first user turn. The BOS
    # token comes from the tokenizer (add_bos_token is set in the file).
    return (
        f"<start_of_turn>user\n{SYSTEM}\n\n{user}<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


class Reference:
    """llama.cpp for one model file, through llama-cpp-python's low-level API where the
    high-level one is lossy (its detokenizer truncates pieces longer than 32 bytes)."""

    def __init__(self, path: Path):
        import llama_cpp

        self.llama_cpp = llama_cpp
        self.llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=N_CTX,
            n_batch=N_BATCH,
            n_threads=N_THREADS,
            n_threads_batch=N_THREADS,
            logits_all=False,
            verbose=False,
        )
        self.vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.n_vocab = self.llm.n_vocab()

    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)

    def piece(self, token: int) -> bytes:
        buf = (self.llama_cpp.ctypes.c_char * 1024)()
        n = self.llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
        if n < 0:
            raise RuntimeError(f"piece of token {token} does not fit")
        return bytes(buf[:n])

    def detokenize(self, ids: list[int]) -> str:
        return b"".join(self.piece(i) for i in ids).decode("utf-8", errors="replace")

    def last_logits(self) -> np.ndarray:
        pointer = self.llm._ctx.get_logits_ith(-1)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).astype(np.float32).copy()

    def logits_after(self, ids: list[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(ids)
        return self.last_logits()

    def step(self, token: int) -> np.ndarray:
        self.llm.eval([token])
        return self.last_logits()


def top(logits: np.ndarray, n: int) -> list[list]:
    order = np.argsort(-logits, kind="stable")[:n]
    return [[int(i), round(float(logits[i]), 4)] for i in order]


def quantised(logits: np.ndarray) -> str:
    q = np.clip(np.round(logits * 100.0), -32768, 32767).astype("<i2")
    return base64.b64encode(q.tobytes()).decode("ascii")


def logits_case(ref: Reference, name: str, prompt: str | list[int], full: bool) -> dict:
    """`prompt`: text in the model's chat format, or token ids as they are (tiny models)."""
    if isinstance(prompt, str):
        ids = ref.tokenize(prompt, add_special=True, parse_special=True)
        case = {"name": name, "prompt": prompt}
    else:
        ids = prompt
        case = {"name": name}
    logits = ref.logits_after(ids)
    case["prompt_ids"] = ids
    case["top"] = top(logits, TOP)
    if full:
        case["logits_q100_i16_base64"] = quantised(logits)
    greedy = []
    current = logits
    for _ in range(GREEDY):
        token = int(np.argmax(current))
        greedy.append({"id": token, "top": top(current, 5)})
        current = ref.step(token)
    case["greedy"] = greedy
    print(f"  {name}: {len(ids)} prompt tokens, greedy {ref.detokenize([g['id'] for g in greedy])!r}")
    return case


def about(spec: dict, path: Path, ref: Reference) -> dict:
    """What every reference file says of the model file and of llama.cpp's settings."""
    import llama_cpp

    return {
        "model": spec["file"],
        "sha256": sha256_of(path),
        "generator": "scripts/llamacpp_reference.py",
        "llama_cpp_python": llama_cpp.__version__,
        "settings": {
            "n_ctx": N_CTX,
            "n_batch": N_BATCH,
            "n_threads": N_THREADS,
            "kv_cache": "f16 (default)",
            "flash_attn": False,
        },
        "n_vocab": ref.n_vocab,
    }


def build(model: str, models_dir: Path) -> dict:
    spec = MODELS[model]
    path = models_dir / spec["file"]
    if not path.is_file():
        sys.exit(f"{path} is missing: run scripts/fetch_test_models.py")
    ref = Reference(path)
    if spec.get("tiny"):
        return build_tiny(spec, path, ref)

    strings = test_strings(spec["specials"])
    tokenize = []
    for s in strings:
        ids = ref.tokenize(s, add_special=False, parse_special=False)
        tokenize.append({"text": s, "ids": ids, "decoded": ref.detokenize(ids)})
    special_inputs = [chat_prompt(model, "Hi there!"), chat_prompt(model, USER)]
    special_inputs += [s for s in strings if any(t in s for t in spec["specials"])]
    special_inputs += FIXED[-12:]
    tokenize_special = []
    for s in dict.fromkeys(special_inputs):
        ids = ref.tokenize(s, add_special=False, parse_special=True)
        tokenize_special.append({"text": s, "ids": ids})
    print(f"{model}: {len(tokenize)} strings, {len(tokenize_special)} with control tokens")

    logits = [logits_case(ref, "chat", chat_prompt(model, USER), full=True)]
    if model == "gemma":
        logits.append(logits_case(ref, "chat_past_window", chat_prompt(model, LONG_USER), full=False))
    return {
        **about(spec, path, ref),
        "tokenize": tokenize,
        "tokenize_special": tokenize_special,
        "logits": logits,
    }


def spread(model: str, models_dir: Path) -> None:
    import llama_cpp

    path = models_dir / MODELS[model]["file"]

    def logits(**settings) -> np.ndarray:
        llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=N_CTX,
            n_threads=N_THREADS,
            n_threads_batch=N_THREADS,
            verbose=False,
            **settings,
        )
        ids = llm.tokenize(chat_prompt(model, USER).encode(), add_bos=True, special=True)
        llm.eval(ids)
        pointer = llm._ctx.get_logits_ith(-1)
        return np.ctypeslib.as_array(pointer, shape=(llm.n_vocab(),)).astype(np.float32).copy()

    base = logits(n_batch=N_BATCH)
    top = np.argsort(-base)[:TOP]
    for name, settings in [
        ("f32 KV cache", dict(n_batch=N_BATCH, type_k=0, type_v=0)),
        ("flash attention", dict(n_batch=N_BATCH, flash_attn=True)),
        ("batches of 64", dict(n_batch=64, n_ubatch=64)),
    ]:
        other = logits(**settings)
        whole = np.corrcoef(base, other)[0, 1]
        best = np.corrcoef(base[top], other[top])[0, 1]
        print(f"{model}, {name}: correlation with the default {whole:.6f} (whole), {best:.6f} (top {TOP})")


def build_tiny(spec: dict, path: Path, ref: Reference) -> dict:
    """A tiny random-weight model (tests/support/tiny.rs): logits and greedy tokens after a
    fixed run of random token ids; no text, its vocabulary is a placeholder."""
    rng = np.random.default_rng(7)
    ids = [1] + [int(i) for i in rng.integers(3, ref.n_vocab, size=120)]
    return {
        **about(spec, path, ref),
        "logits": [logits_case(ref, "random_ids", ids, full=True)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--only", choices=sorted(MODELS))
    parser.add_argument("--spread", action="store_true", help="print llama.cpp's own spread")
    args = parser.parse_args()
    if args.spread:
        real = [m for m in sorted(MODELS) if not MODELS[m].get("tiny")]
        for model in [args.only] if args.only else real:
            spread(model, args.models)
        return
    OUT.mkdir(parents=True, exist_ok=True)
    for model in [args.only] if args.only else sorted(MODELS):
        data = build(model, args.models)
        out = OUT / f"{model}.json"
        out.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out.relative_to(ROOT)} ({out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
