import os

import numpy as np
import pytest

from xnorlearn.sim.runner import default_seed, simulator_path

os.environ["PATH"] = simulator_path()


@pytest.fixture
def seed():
    """Base seed of randomised tests (``XNORLEARN_SEED``, default fixed)."""
    return default_seed()


@pytest.fixture
def rng(seed, request):
    """A NumPy generator seeded from ``XNORLEARN_SEED`` and the test's own id."""
    return np.random.default_rng([seed, sum(map(ord, request.node.nodeid))])


@pytest.fixture(scope="session")
def build_root(tmp_path_factory):
    """Root of per-parameter-set simulator build directories."""
    root = os.environ.get("XNORLEARN_BUILD_DIR")
    if root:
        os.makedirs(root, exist_ok=True)
        return root
    return str(tmp_path_factory.mktemp("sim_build"))


@pytest.fixture(scope="session")
def fastsim_cache(tmp_path_factory):
    """Cache of simulated-board programs shared by the session's tests (``XNORLEARN_CACHE``
    if set, so that a developer's warm cache is reused; else a fresh directory)."""
    return os.environ.get("XNORLEARN_CACHE") or str(tmp_path_factory.mktemp("fastsim-cache"))
