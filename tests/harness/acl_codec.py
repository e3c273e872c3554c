"""Our ACL codecs and mapping from Python: examples/acl_codec.rs, one JSON request per run.

Used by the interop suites to compare our codecs with Samba's and nfs4-acl-tools' output. It is
the library itself, not the `nfsbridge acl` CLI.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .samba import REPO

CODEC_BINARY = REPO / "target" / "debug" / "examples" / "acl_codec"


def build_codec() -> Path:
    """Builds the example (a no-op when `cargo test` already did) and returns its path."""
    subprocess.run(["cargo", "build", "-q", "--locked", "--example", "acl_codec"], cwd=REPO, check=True)
    return CODEC_BINARY


def run_codec(binary: Path, request: dict) -> dict:
    """One request; an `{"error": ...}` answer is returned, not raised."""
    out = subprocess.run([str(binary)], input=json.dumps(request), capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, f"acl_codec failed on {request}: {out.stderr}"
    return json.loads(out.stdout)


def codec_ok(binary: Path, request: dict) -> dict:
    """One request that must succeed."""
    answer = run_codec(binary, request)
    assert "error" not in answer, f"acl_codec {request['op']}: {answer['error']}"
    return answer
