"""Run a sim test body in a fresh spawned process: MuJoCo's EGL renderer (Mesa llvmpipe here) and
TensorFlow segfault in one process in either import order (measured: a render after
`import tensorflow`, and TensorFlow's native import after a render), and the test session imports
TensorFlow for the data tests. tests/test_sim_*.py run everything that renders through this."""

import multiprocessing
import traceback


def _call(function, args):
    try:
        function(*args)
    except BaseException:  # noqa: BLE001 - every failure goes back to the parent as text
        return traceback.format_exc()
    return None


def run_in_fresh_process(function, *args) -> None:
    """Call module-level `function(*args)` in a spawned process; its failure fails the caller."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        error = pool.apply(_call, (function, args))
    assert error is None, error
