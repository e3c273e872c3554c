"""pytest fixtures shared by every test suite (loaded by tests/conftest.py): a built module, a test user, private smbds.

Every smbd a test starts is registered with `smbd_factory`, stopped at teardown even when the
test fails, and its logs are attached to the failure report.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from .netns import NetNamespace
from .samba import DEFAULT_MODULE, SambaInstance, Share, User, ensure_unix_user

TEST_USER = User("nfsbridge-test", "Test-Pass-" + uuid.uuid4().hex[:8])


@pytest.fixture(scope="session")
def module_path() -> Path:
    if not DEFAULT_MODULE.exists():
        pytest.fail(f"{DEFAULT_MODULE} is missing: run scripts/build.sh (scripts/test.sh does)")
    return DEFAULT_MODULE


@pytest.fixture(scope="session")
def test_user() -> User:
    ensure_unix_user(TEST_USER.name)
    return TEST_USER


@pytest.fixture(scope="session")
def test_uid(test_user) -> int:
    import pwd
    return pwd.getpwnam(test_user.name).pw_uid


_running: list[SambaInstance] = []


@pytest.fixture(scope="session")
def work_root():
    """A directory every test user can traverse (pytest's own tmp root is 0700)."""
    import shutil
    import tempfile
    root = Path(tempfile.mkdtemp(prefix="nfsbridge-test-"))
    root.chmod(0o755)
    yield root
    if os.environ.get("NFSBRIDGE_KEEP_TEST_DIRS") != "1":
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def data_dir(work_root, request):
    """A fresh traversable directory for one test module's shares."""
    import tempfile
    d = Path(tempfile.mkdtemp(prefix=request.module.__name__.rsplit(".", 1)[-1] + "-", dir=work_root))
    d.chmod(0o755)
    return d


@pytest.fixture(scope="module")
def smbd_factory(work_root, test_user, module_path):
    """Returns start(shares, **kw) -> SambaInstance; everything it started stops at teardown."""
    started: list[SambaInstance] = []
    namespaces: list[NetNamespace] = []

    def start(shares: list[Share], module: Path = module_path, addresses: tuple[str, ...] = (),
              **kw) -> SambaInstance:
        """`addresses`: further addresses (CIDR, on lo) of the namespace smbd runs in; add them
        to smbd's `interfaces` through global_options to have it listen there too."""
        import tempfile
        root = Path(tempfile.mkdtemp(prefix="smbd-", dir=work_root))
        # mkdtemp makes 0700. smbd's children, running as the connected user, message each
        # other through sockets under the lock directory; in a directory they cannot enter,
        # every break and share-mode check against another smbd process fails silently (the
        # other open is taken for a dead process), which wrecks the oplock tests.
        root.chmod(0o755)
        for share in shares:
            share.path.mkdir(parents=True, exist_ok=True)
            os.chown(share.path, _uid(test_user.name), -1)
        netns = NetNamespace()
        namespaces.append(netns)
        for address in addresses:
            netns.add_address(address)
        instance = SambaInstance(root, shares, module=module, netns=netns, **kw)
        instance.write_config()
        instance.add_user(test_user)
        started.append(instance)
        _running.append(instance)
        instance.start()
        return instance

    yield start
    for instance in started:
        instance.stop()
        _running.remove(instance)
    for netns in namespaces:
        netns.close()


def _uid(name: str) -> int:
    import pwd
    return pwd.getpwnam(name).pw_uid


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for instance in _running:
            report.sections.append((f"smbd logs ({instance.root})", instance.logs()))
    return report
