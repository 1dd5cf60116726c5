"""kplane.testing: the context manager (in-process and subprocess) and the pytest plugin's
fixtures, each checked against the real server it starts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kplane.testing import KplaneThread, kplane_server

kubernetes = pytest.importorskip("kubernetes")


@pytest.mark.parametrize("in_process", [True, False], ids=["thread", "subprocess"])
def test_kplane_server_hands_back_ready_clients(in_process: bool) -> None:
    start = time.monotonic()
    with kplane_server(in_process=in_process) as kp:
        ready_in = time.monotonic() - start
        assert Path(kp.kubeconfig).exists() and isinstance(kp, KplaneThread) == in_process
        # The official client, ready to use.
        core = kubernetes.client.CoreV1Api(kp.api_client())
        core.create_namespace({"metadata": {"name": "from-python"}})
        # The real kubectl sees what the client wrote.
        assert "namespace/from-python" in kp.kubectl("get", "namespaces", "-o", "name").split()

        # kplane's async client.
        async def names() -> list[str]:
            async with kp.client() as c:
                found = await c.request("GET", "/api/v1/namespaces")
                return [n["metadata"]["name"] for n in found["items"]]
        assert "from-python" in asyncio.run(names())
        data_dir = kp.data_dir
    assert not data_dir.exists()  # the temporary store is removed
    assert ready_in < 20


def test_pytest_plugin_fixtures(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(textwrap.dedent('''
        import kubernetes

        def test_fixtures(kplane, kubeconfig, kplane_client, kubectl):
            assert kubeconfig == kplane.kubeconfig
            kubectl("create", "configmap", "c1", "--from-literal=a=1")
            cm = kubernetes.client.CoreV1Api(kplane_client).read_namespaced_config_map("c1", "default")
            assert cm.data == {"a": "1"}
            assert kubectl.json("get", "configmap", "c1")["data"] == {"a": "1"}
    '''))
    for extra in ([], ["--kplane-in-process"]):
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "kplane.testing.plugin",
                               "-p", "no:cacheprovider", str(tmp_path / "test_user.py"), *extra],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path,
                              env={**os.environ,
                                   "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "1 passed" in proc.stdout
