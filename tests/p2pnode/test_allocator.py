"""p2pnode.allocator: a daemon fixes glibc's mmap threshold unless the operator set it."""

import platform
import subprocess
import sys

import pytest

from p2pnode import allocator

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="mallopt's mmap threshold is glibc's")
def test_freed_large_buffers_go_back_to_the_system() -> None:
    # Freeing a 4 MiB mmapped block makes glibc raise its threshold; 8 MiB of 256 KiB
    # buffers then come from the heap. With the threshold fixed they are mmapped and
    # leave when freed, so the process ends where it began.
    code = (
        "import ctypes, sys\n"
        "from p2pnode import allocator\n"
        "if sys.argv[1] == 'fixed': assert allocator.return_freed_memory()\n"
        "libc = ctypes.CDLL(None)\n"
        "libc.malloc.restype = ctypes.c_void_p; libc.free.argtypes = [ctypes.c_void_p]\n"
        "def rss(): return int(open('/proc/self/statm').read().split()[1])\n"
        "libc.free(libc.malloc(4 << 20))\n"
        "before = rss()\n"
        "blocks = [libc.malloc(256 << 10) for _ in range(32)]\n"
        "for b in blocks: ctypes.memset(b, 1, 256 << 10)\n"
        "for b in blocks[:-1]: libc.free(b)\n"  # the last one pins the heap's top
        "print(rss() - before)\n"
    )
    kept = {
        mode: int(subprocess.run([sys.executable, "-c", code, mode], capture_output=True,
                                 text=True, check=True, env={"PATH": "/usr/bin"}).stdout)
        for mode in ("default", "fixed")
    }
    page = 4096
    print(f"kept after free: default {kept['default'] * page >> 10} KiB, "
          f"fixed {kept['fixed'] * page >> 10} KiB")
    assert kept["default"] * page > 4 << 20  # the control: glibc kept the freed buffers
    assert kept["fixed"] * page < 1 << 20


def test_an_operators_own_setting_stands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(allocator.ENV_OVERRIDE, "65536")
    assert allocator.return_freed_memory() is False
