"""The kernel server the take-aways tests run notebooks with (see forks.kernel_server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from conftest import processes_with
from forks import kernel_server
from nbformat.v4 import new_code_cell, new_notebook

#: Runs each notebook named in nbclient, as the take-aways tests do; prints its outputs.
RUNNER = """
import sys
import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

for name in sys.argv[1:]:
    notebook = nbformat.read(name, as_version=4)
    client = NotebookClient(notebook, timeout=60, kernel_name="python3",
                            shutdown_kernel="immediate")
    try:
        client.execute()
    except CellExecutionError as error:
        print(f"{error.ename}: {error.evalue}")
    for cell in notebook.cells:
        for output in cell.outputs:
            print(output.get("text", ""), end="")
"""


def test_a_forked_kernel_starts_fresh_and_ends_with_its_notebook(tmp_path):
    # In a folder deeper than the 108 bytes a socket's path may have.
    tmp_path = tmp_path.joinpath("deep" * 20, "er" * 20)
    tmp_path.mkdir(parents=True)
    cells = [
        "import sys\nprint('torch' in sys.modules, 'torch' in dir(), __name__)",
        "print(torch.ones(2))",  # not imported by the notebook: fails as in a fresh kernel
    ]
    path = tmp_path / "notebook.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell(cell) for cell in cells]), path)
    env = {key: value for key, value in os.environ.items() if key != "JUPYTER_PATH"}
    with kernel_server(sys.executable, tmp_path, env) as jupyter_path:
        spec = Path(jupyter_path, "kernels", "python3", "kernel.json")
        socket_path = json.loads(spec.read_text())["argv"][3]  # the server's too
        result = subprocess.run(
            [sys.executable, "-c", RUNNER, str(path), str(path)],
            cwd=tmp_path,
            env=dict(env, JUPYTER_PATH=jupyter_path),
            capture_output=True,
            text=True,
            timeout=120,  # a guard against a hang: a kernel left running holds the pipes
        )
        # torch is the server's (so the kernel was forked), the notebook's names its own.
        assert result.stdout == 2 * "NameError: name 'torch' is not defined\nTrue False __main__\n"
        # Each kernel ended with its notebook: only the server is left.
        deadline = time.monotonic() + 10
        while len(left := processes_with(socket_path)) > 1:
            assert time.monotonic() < deadline, "\n".join(left)
            time.sleep(0.1)
