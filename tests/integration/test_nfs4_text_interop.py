"""Our nfs4-acl-tools text parser and printer against the real nfs4_setfacl.

`nfs4_setfacl --test -s SPEC PATH` parses SPEC with libnfs4acl and prints the resulting ACL the
way nfs4_getfacl prints it, without touching PATH's ACL, so it runs on any file system (setting
or reading a real NFSv4 ACL needs an NFS mount: the VM tier's job). The target is a directory,
because the tool prints DELETE_CHILD (`D`) only for directories and we always print it.

Three kinds of spec, each named:
- the tool and we agree: we accept it, and our parse printed back is the tool's output;
- both refuse it;
- the tool accepts it and we refuse it, each for a reason documented in src/acl/nfs4/text.rs
  or nfs.rs (we refuse rather than guess or keep something that cannot round-trip).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness.acl_codec import build_codec, run_codec

pytestmark = pytest.mark.skipif(shutil.which("nfs4_setfacl") is None,
                                reason="nfs4-acl-tools is not installed (scripts/setup.sh installs it)")

MAN5_SAMPLE = ("A::OWNER@:rwatTnNcCy,A::alice@nfsdomain.org:rxtncy,A::bob@nfsdomain.org:rwadtTnNcCy,"
               "A:g:GROUP@:rtncy,D:g:GROUP@:waxTC,A::EVERYONE@:rtncy,D::EVERYONE@:waxTC")
MAN1_STARTING_ACL = ("A::OWNER@:rwatTnNcCy,D::OWNER@:x,A:g:GROUP@:rtncy,D:g:GROUP@:waxTC,"
                     "A::EVERYONE@:rtncy,D::EVERYONE@:waxTC")

AGREED = {
    "nfs4_acl_5_sample": MAN5_SAMPLE,
    "nfs4_setfacl_1_starting_acl": MAN1_STARTING_ACL,
    "nfs4_setfacl_1_aliases": "A::alice@nfsdomain.org:RX",
    "nfs4_setfacl_1_write_delete_owner": "A::OWNER@:Wdo",
    "every_permission_and_inheritance_flag": "A:fdni:OWNER@:rwaDdxtTnNcCoy",
    "audit_and_alarm": "U:SF:EVERYONE@:R,L:F:GROUP@:W",
    "audit_without_access_flags": "U::OWNER@:r",
    "numeric_ids": "A::1000:rwx,A:g:100:R,D:g:GROUP@:X",
    "group_at_gains_g": "A::GROUP@:r",
    "tab_separated": "A::OWNER@:r\tA::EVERYONE@:R",
    "empty_permissions": "A::OWNER@:",
    "empty_entries_skipped": "A::OWNER@:r,,A::EVERYONE@:R,",
}

# An -S file (read from stdin) with comments and one ACE per line.
SPEC_FILE = "# file: /mnt/share/dir\n# owner: 1000\nA::OWNER@:rwaDxtTnNcCy\nA:g:GROUP@:RX\nA::EVERYONE@:R\n"

BOTH_REFUSE = {
    "nfs4_setfacl_1_missing_colon": "A::EVERYONE@rtncy,D::EVERYONE@:waxTC",
    "unknown_type": "X::OWNER@:r",
    "unknown_flag": "A:z:OWNER@:r",
    "who_type_flag_of_0_3": "A:O:OWNER@:r",
    "unknown_permission": "A::OWNER@:rq",
    "space_before_comment": "A::OWNER@:r # x",
}

# The tool accepts these; we refuse, with the documented reason in the message.
WE_REFUSE = {
    "type_longer_than_one_letter": ("AB::OWNER@:r", "bad ACE type"),
    "unknown_special_principal": ("A::FOO@:r", "unknown special identifier"),
    "numeric_principal_with_leading_zero": ("A::0100:r", "leading zero"),
}


@pytest.fixture(scope="module")
def codec_binary() -> Path:
    return build_codec()


def ours(binary: Path, spec: str) -> dict:
    return run_codec(binary, {"op": "parse_text", "spec": spec})


def tool(target: Path, spec: str, from_stdin: bool = False) -> subprocess.CompletedProcess:
    argv = ["nfs4_setfacl", "--test", *(["-S", "-"] if from_stdin else ["-s", spec]), str(target)]
    return subprocess.run(argv, input=spec if from_stdin else None, capture_output=True, text=True, timeout=30)


def printed_aces(result: subprocess.CompletedProcess) -> list[str]:
    """The ACE lines of the tool's output (its `## Test mode only` header is not one)."""
    return [line for line in result.stdout.splitlines() if line and not line.startswith("##")]


@pytest.mark.parametrize("name", list(AGREED))
def test_we_parse_and_print_as_nfs4_setfacl(codec_binary, tmp_path, name):
    spec = AGREED[name]
    result = tool(tmp_path, spec)
    assert result.returncode == 0, f"{name}: nfs4_setfacl refused {spec!r}: {result.stderr}"
    answer = ours(codec_binary, spec)
    assert "error" not in answer, f"{name}: we refuse {spec!r}: {answer['error']}"
    assert answer["text"].splitlines() == printed_aces(result), f"{name}: {spec!r}"


def test_spec_file_with_comments_from_stdin(codec_binary, tmp_path):
    result = tool(tmp_path, SPEC_FILE, from_stdin=True)
    assert result.returncode == 0, result.stderr
    answer = ours(codec_binary, SPEC_FILE)
    assert "error" not in answer, answer
    assert answer["text"].splitlines() == printed_aces(result)


@pytest.mark.parametrize("name", list(BOTH_REFUSE))
def test_what_nfs4_setfacl_refuses_we_refuse(codec_binary, tmp_path, name):
    spec = BOTH_REFUSE[name]
    result = tool(tmp_path, spec)
    assert result.returncode != 0, f"{name}: nfs4_setfacl accepted {spec!r}: {result.stdout}"
    assert "error" in ours(codec_binary, spec), f"{name}: we accept {spec!r}"


@pytest.mark.parametrize("name", list(WE_REFUSE))
def test_documented_strictness_beyond_nfs4_setfacl(codec_binary, tmp_path, name):
    spec, reason = WE_REFUSE[name]
    result = tool(tmp_path, spec)
    assert result.returncode == 0, f"{name}: nfs4_setfacl now refuses {spec!r} too: {result.stderr}"
    answer = ours(codec_binary, spec)
    assert reason in answer.get("error", ""), f"{name}: {spec!r}: {answer}"
