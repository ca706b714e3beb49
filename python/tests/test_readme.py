"""The READMEs' Python examples run as written (the numpy example and the
seed's third recipe; the Dask three-liner needs a cluster and is covered by
test_dask.py)."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def python_blocks(readme):
    text = (ROOT / readme).read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("readme", ["README.md", "python/README.md"])
@pytest.mark.parametrize("block", [0, 1])
def test_readme_example_runs(readme, block, tmp_path):
    blocks = python_blocks(readme)
    assert len(blocks) >= 3, f"{readme} lost its Python examples"
    script = tmp_path / "example.py"
    script.write_text(blocks[block], encoding="utf-8")
    # A fresh interpreter, run as __main__, as a reader would run it.
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("readme", ["README.md", "python/README.md"])
def test_readme_pickled_dispatcher_example_runs(readme, tmp_path):
    blocks = [b for b in python_blocks(readme) if "counts_shared" in b]
    assert len(blocks) == 1, f"{readme} lost its pickled-Dispatcher example"
    script = tmp_path / "example.py"
    script.write_text(blocks[0], encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
