"""The READMEs' Python examples run as written: every one in the root README
(the seed's dict placed once per machine), and in python/README.md the numpy
example, the seed's third recipe and the pickled Dispatcher (its Dask
three-liner needs a cluster and is covered by test_dask.py)."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def python_blocks(readme):
    text = (ROOT / readme).read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def run_block(block, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(block, encoding="utf-8")
    # A fresh interpreter, run as __main__, as a reader would run it.
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr


def test_root_readme_examples_run(tmp_path):
    blocks = python_blocks("README.md")
    assert blocks, "README.md lost its Python example"
    for block in blocks:
        run_block(block, tmp_path)


@pytest.mark.parametrize("block", [0, 1])
def test_python_readme_example_runs(block, tmp_path):
    blocks = python_blocks("python/README.md")
    assert len(blocks) >= 3, "python/README.md lost its Python examples"
    run_block(blocks[block], tmp_path)


def test_python_readme_pickled_dispatcher_example_runs(tmp_path):
    blocks = [b for b in python_blocks("python/README.md") if "counts_shared" in b]
    assert len(blocks) == 1, "python/README.md lost its pickled-Dispatcher example"
    run_block(blocks[0], tmp_path)
