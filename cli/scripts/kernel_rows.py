"""Formats the initret-cpu rows of `initret bench --json` as markdown table rows.

Usage: initret bench --json ... | python3 kernel_rows.py [--measured]
"""

import json
import sys

measured = "--measured" in sys.argv[1:]
for line in sys.stdin:
    row = json.loads(line)
    if row["strategy"] != "initret-cpu":
        continue
    kernel = row["kernel"]
    rows = row["rows"].bit_length() - 1
    memcpy = "%.3f" % row["ratio_to_memcpy"]
    naive = "%.3f" % row["ratio_to_naive_rayon"]
    if measured:
        kernel, memcpy, naive = (
            "**measured: %s**" % kernel,
            "**%s**" % memcpy,
            "**%s**" % naive,
        )
    print("| %s | 2^%d | %.3e | %s | %s |" % (kernel, rows, row["lookups_per_s"], memcpy, naive))
