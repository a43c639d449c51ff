"""Every prune/cluster/int8/QAT combination for the CNN (a file of its own, so that the test
workers share the load: the CNN's 3.9 M weights make each run the slowest)."""

from __future__ import annotations

import pytest
from conftest import shared_cache_root
from test_compression import COMBOS, check_combination

from compress import StageCache

# the CNN's combinations: the slowest runs of the suite
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return StageCache(shared_cache_root(tmp_path_factory))


@pytest.mark.parametrize(("prune", "cluster", "mode"), COMBOS)
def test_every_combination_runs_for_the_cnn(prune, cluster, mode, cache, tmp_path):
    check_combination("cnn", prune, cluster, mode, cache, tmp_path)
