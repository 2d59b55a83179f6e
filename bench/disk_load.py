"""Writes MB_PER_S megabytes a second to PATH around the page cache (O_DIRECT), in
4 MiB writes from one buffer, until killed: the disk traffic of a tape writer without
sluice, to tell what the disk's writes cost the machine from what recording costs the
proxy (bench/alternate.sh).

    python3 bench/disk_load.py PATH MB_PER_S
"""

import mmap
import os
import sys
import time

WRITE = 4 << 20


def main() -> None:
    path, rate = sys.argv[1], float(sys.argv[2])
    buf = mmap.mmap(-1, WRITE)  # page-aligned, as O_DIRECT needs
    if hasattr(mmap, "MADV_HUGEPAGE"):
        buf.madvise(mmap.MADV_HUGEPAGE)  # as the recorder's buffers
    buf.write(b"x" * WRITE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
    every = WRITE / (rate * 1e6)
    start, writes = time.monotonic(), 0
    try:
        while True:
            os.write(fd, buf)
            writes += 1
            ahead = start + writes * every - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    except KeyboardInterrupt:
        pass
    finally:
        os.close(fd)


if __name__ == "__main__":
    main()
