"""hostinfo.example.com/v1 — this host's processes and disks as read-only Kubernetes resources.

    python -m examples.hostinfo --kubeconfig ~/.kplane/admin.kubeconfig --secure-port 8445
    kubectl get processes --sort-by=.rss
    kubectl get disks
    kubectl get process 1 -o yaml

Nothing is stored: every get and list reads /proc and statvfs when it is asked (the
metrics.k8s.io pattern, with @app.computed). Linux only.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from kplane.extension import ExtensionServer

app = ExtensionServer(group="hostinfo.example.com", version="v1", namespace="hostinfo")

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
PROC = Path("/proc")


def _process(pid: int) -> dict[str, Any] | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        raw = (PROC / str(pid) / "cmdline").read_bytes()
        cmdline = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        uid = (PROC / str(pid)).stat().st_uid
    except OSError:  # gone, or not ours to read
        return None
    # pid (comm) state ppid ... ; comm may contain spaces and parentheses
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    return {"metadata": {"name": str(pid), "labels": {"hostinfo.example.com/comm": _label(comm)}},
            "pid": pid, "ppid": int(fields[1]), "state": fields[0], "command": comm,
            "args": cmdline[:256], "uid": uid, "threads": int(fields[17]), "rss": int(fields[21]) * PAGE}


def _label(value: str) -> str:
    """A valid label value (63 characters of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", value)[:63].strip("_.-")


def processes(namespace: str) -> list[dict[str, Any]]:
    found = (_process(int(p.name)) for p in PROC.iterdir() if p.name.isdigit())
    return sorted((p for p in found if p is not None), key=lambda p: p["pid"])


def process(namespace: str, name: str) -> dict[str, Any] | None:
    return _process(int(name)) if name.isdigit() else None


app.computed(kind="Process", plural="processes", short_names=["ps"], categories=["hostinfo"],
             printer_columns=[("PID", ".pid", "integer"), ("PPID", ".ppid", "integer"), ("State", ".state"),
                              ("RSS", ".rss", "integer"), ("Command", ".command"), ("Args", ".args",
                                                                                    "string", 1)],
             get=process)(processes)

REAL_FS = {"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "vfat", "exfat", "ntfs", "ntfs3", "f2fs", "overlay",
           "tmpfs", "fuseblk", "9p", "virtiofs"}


def _disk_name(mount: str) -> str:
    """A DNS-1123 subdomain from a mount point: / is "root", /var/lib is "var-lib"."""
    name = re.sub(r"[^a-z0-9.-]+", "-", mount.lower()).strip("-.")
    return name[:253] or "root"


def disks(namespace: str) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    try:
        mounts = (PROC / "mounts").read_text().splitlines()
    except OSError:
        return []
    for line in mounts:
        device, mount, fstype, *_ = line.split()
        if fstype not in REAL_FS:
            continue
        mount = mount.replace("\\040", " ")
        try:
            st = os.statvfs(mount)
        except OSError:
            continue
        size, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
        used = size - st.f_bfree * st.f_frsize
        name = _disk_name(mount)
        out.setdefault(name, {"metadata": {"name": name}, "device": device, "mountPoint": mount,
                              "fsType": fstype, "size": size, "used": used, "available": free,
                              "usedPercent": round(100 * used / size) if size else 0})
    return sorted(out.values(), key=lambda d: d["mountPoint"])


app.computed(kind="Disk", plural="disks", categories=["hostinfo"],
             printer_columns=[("Mount", ".mountPoint"), ("Type", ".fsType"), ("Size", ".size", "integer"),
                              ("Used%", ".usedPercent", "integer"), ("Device", ".device", "string",
                                                                     1)])(disks)
