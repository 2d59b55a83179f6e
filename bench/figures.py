"""How bench/table.py and bench/targets.py print sizes and rates."""


def size_name(size):
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def fmt_rate(x):
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.0f} k"
    return f"{x:.0f}"
