"""generate/ never imports torch: not in its source, not on import (the interpreter backend of
`runtime` may use torch kernels internally; that is the runtime's business, not the generator's)."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch.") or name in ("transformers", "voxcpm"):
            raise ImportError(f"generate must not import {name}")
sys.meta_path.insert(0, Block())
import generate, generate.cli, demo.__main__
from generate.text import TextTokenizer
from generate import audio, vae, sampler, stats, steps, loop, packages, published_steps, synthesizer
assert "torch" not in sys.modules
print("ok")
"""


def test_no_torch_in_the_source():
    pattern = re.compile(r"^\s*(import\s+(torch|transformers|voxcpm)\b|from\s+(torch|transformers|voxcpm|patches)\b)",
                         re.MULTILINE)
    offenders = [p.name for folder in ("generate", "contract", "demo") for p in (ROOT / folder).glob("*.py")
                 if pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_importing_generate_does_not_import_torch():
    result = subprocess.run([sys.executable, "-c", BLOCKER], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
