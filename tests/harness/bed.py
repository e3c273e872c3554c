"""The multi-protocol test bed: one export directory served by a private smbd and by NFS at once,
plus the three actors a coherence test needs (docs/test-bed.md).

    def test_smb_write_nfs_read(bed):
        with bed.smb() as smb:
            f = smb.open("a.txt", lease="RWH"); f.write(b"x"); f.close()
        assert bed.nfs.read("a.txt") == b"x" == bed.local.read("a.txt")

Two tiers, chosen by NFSBRIDGE_TIER (scripts/test.sh --tier sets it):

- host (default): NFS-Ganesha 5.9 (FSAL_VFS) exports a fresh directory; the NFS actor is nfs-rs;
  smbd and Ganesha share one network namespace the bed creates (ports 445 and 2049 are private).
- kernel (inside the 7.x VM, scripts/kernel-vm.sh): kernel nfsd exports an ext4 disk mounted at
  NFSBRIDGE_KERNEL_EXPORT and mounted over NFSv4.2 at NFSBRIDGE_KERNEL_NFS_MOUNT by the guest
  script; each bed is a fresh directory on it and the NFS actor is the kernel mount.

Markers: `host_tier`, `kernel_tier` say where a test runs (both: in both); a test marked with
neither runs in the host tier only. `@pytest.mark.bed_share("nfsbridge", **{"opt": "v"})` picks the
share profile (see SHARE_PROFILES) and extra smb.conf options for the `bed` fixture.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import tempfile
from pathlib import Path

import pytest

from . import fixtures
from .ganesha import GaneshaInstance
from .local import LocalActor
from .netns import NetNamespace
from .nfs_client import KernelMountClient, NfsRsClient
from .samba import SambaInstance, Share
from .smb_lease_client import SmbLeaseClient

TIER = os.environ.get("NFSBRIDGE_TIER", "host")
KERNEL_EXPORT = Path(os.environ.get("NFSBRIDGE_KERNEL_EXPORT", "/srv/export"))
KERNEL_NFS_MOUNT = Path(os.environ.get("NFSBRIDGE_KERNEL_NFS_MOUNT", "/run/nfsmnt"))
SHARE_NAME = "bed"

# The smb.conf share options a bed can be built with (the four configurations).
SHARE_PROFILES: dict[str, dict[str, str]] = {
    "plain": {},
    "nfsbridge": {"vfs objects": "nfsbridge"},
    "kernel_oplocks": {"kernel oplocks": "yes"},
    # validate_mode off: with it, stock 4.22.6 fails opens with STATUS_INTERNAL_ERROR whenever
    # it tries to drop a stale security.nfs4acl_ndr xattr as the (non-root) SMB user (EPERM).
    # A test of that behaviour passes options={"nfs4acl_xattr:validate_mode": "yes"}.
    "nfs4acl_xattr": {"vfs objects": "nfs4acl_xattr", "nfs4acl_xattr:validate_mode": "no"},
}

_counter = itertools.count()
_live_beds: list["Bed"] = []


class Bed:
    """One export served over SMB and NFS; `smb()`, `nfs`, `local` are the actors.
    Use as a context manager (the `bed`/`bed_factory` fixtures do)."""

    def __init__(self, work_root: Path, user, profile: str = "plain",
                 options: dict[str, str] | None = None, nfs_version: str = "4.1"):
        if profile not in SHARE_PROFILES:
            raise ValueError(f"unknown share profile {profile!r}; one of {sorted(SHARE_PROFILES)}")
        self.tier = TIER
        self.user = user
        self.profile = profile
        self.share_options = {**SHARE_PROFILES[profile], **(options or {})}
        self.nfs_version = nfs_version
        self.root = Path(tempfile.mkdtemp(prefix="bed-", dir=work_root))
        self.root.chmod(0o755)
        self.netns: NetNamespace | None = None
        self.smbd: SambaInstance | None = None
        self.ganesha: GaneshaInstance | None = None
        self.nfs = None
        self._smb_clients: list[SmbLeaseClient] = []
        if TIER == "kernel":
            # A fresh directory on the ext4 disk that kernel nfsd exports (fsid=0 at the root).
            self.name = f"bed-{os.getpid()}-{next(_counter)}"
            self.export = KERNEL_EXPORT / self.name
        else:
            self.name = ""
            self.export = self.root / "export"
        self.local = LocalActor(self.export)

    # -- life cycle --------------------------------------------------------------------------
    def __enter__(self) -> "Bed":
        _live_beds.append(self)
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    @property
    def smb_uid(self) -> int:
        """The SMB user's uid on this machine."""
        return pwd.getpwnam(self.user.name).pw_uid

    def give_to_smb_user(self, name: str) -> None:
        """Makes the SMB user the owner of `name` (an owner may set its times and its ACL)."""
        os.chown(self.local.path(name), self.smb_uid, -1)

    def _start(self) -> None:
        self.export.mkdir(parents=True)
        # The SMB user must be able to create files; NFS (root, no_root_squash) and local can anyway.
        os.chown(self.export, self.smb_uid, -1)
        self.netns = NetNamespace()
        smbd_root = self.root / "smbd"
        self.smbd = SambaInstance(smbd_root, [Share(SHARE_NAME, self.export, self.share_options)],
                                  netns=self.netns)
        self.smbd.write_config()
        self.smbd.add_user(self.user)
        fixtures._running.append(self.smbd)      # its logs go into any failure report
        self.smbd.start()
        if TIER == "kernel":
            self.nfs = KernelMountClient(KERNEL_NFS_MOUNT / self.name)
        else:
            (self.root / "ganesha").mkdir()
            self.ganesha = GaneshaInstance(self.root / "ganesha", self.export, self.netns)
            self.ganesha.start()
            self.nfs = NfsRsClient(self.ganesha.url(self.nfs_version), self.netns)

    def __exit__(self, *exc) -> None:
        # Each step runs even when an earlier one fails: nothing may outlive the test.
        with contextlib.ExitStack() as stack:
            if self.netns is not None:
                stack.callback(self.netns.close)
            if self.smbd is not None:
                stack.callback(self._stop_smbd)
            if self.ganesha is not None:
                stack.callback(self.ganesha.stop)
            if self.nfs is not None:
                stack.callback(self.nfs.close)
            for client in self._smb_clients:
                stack.callback(client.close)
            stack.callback(self.local.close)
        if self in _live_beds:
            _live_beds.remove(self)

    def _stop_smbd(self) -> None:
        self.smbd.stop()
        if self.smbd in fixtures._running:
            fixtures._running.remove(self.smbd)

    # -- actors ------------------------------------------------------------------------------
    def smb(self) -> SmbLeaseClient:
        """A new SMB connection to the bed's share (closed at teardown, or use `with`)."""
        client = SmbLeaseClient(SHARE_NAME, self.user.name, self.user.password,
                                port=self.smbd.port, netns=self.netns)
        self._smb_clients.append(client)
        return client

    def logs(self) -> str:
        parts = []
        if self.ganesha is not None:
            parts.append(self.ganesha.logs())
        return "\n".join(parts)


# -- pytest plugin -----------------------------------------------------------------------------
def pytest_configure(config):
    config.addinivalue_line("markers", "host_tier: runs in the host tier (Ganesha + nfs-rs on this kernel)")
    config.addinivalue_line("markers", "kernel_tier: runs in the kernel tier (7.x VM with kernel nfsd and an NFSv4.2 mount)")
    config.addinivalue_line("markers", "bed_share(profile, **options): share profile and smb.conf options for `bed`")


def _tiers(item) -> set[str]:
    tiers = {t for t in ("host", "kernel") if item.get_closest_marker(f"{t}_tier")}
    return tiers or {"host"}


def pytest_collection_modifyitems(config, items):
    """Keeps only the tests of this run's tier (the others run in the other tier, so they are
    deselected, not skipped)."""
    keep, drop = [], []
    for item in items:
        (keep if TIER in _tiers(item) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_header(config):
    return f"nfsbridge test bed tier: {TIER}"


@pytest.hookimpl(wrapper=True)
def pytest_report_teststatus(report, config):
    """Shows the tier next to each verbose result: "PASSED [kernel tier]"."""
    category, letter, word = yield
    if report.when == "call" and isinstance(word, str) and word:
        word = f"{word} [{TIER} tier]"
    return category, letter, word


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    report.user_properties.append(("tier", TIER))
    if report.failed:
        for live in _live_beds:
            text = live.logs()
            if text:
                report.sections.append((f"ganesha logs ({live.root})", text))
    return report


@pytest.fixture
def bed_factory(work_root, test_user):
    """bed_factory(profile="plain", options=None, nfs_version="4.1") -> a started Bed; all are
    torn down after the test, even when it fails."""
    with contextlib.ExitStack() as stack:
        def make(profile: str = "plain", options: dict[str, str] | None = None,
                 nfs_version: str = "4.1") -> Bed:
            return stack.enter_context(Bed(work_root, test_user, profile, options, nfs_version))
        yield make


@pytest.fixture
def bed(request, bed_factory) -> Bed:
    """A started Bed: the profile and options of the test's `bed_share` marker, else "plain"."""
    marker = request.node.get_closest_marker("bed_share")
    if marker is None:
        return bed_factory()
    return bed_factory(*marker.args, options=dict(marker.kwargs) or None)
