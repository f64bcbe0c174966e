# amaranth: UnusedElaboratable=no
"""The accelerator against an adversarial host (:mod:`xnorlearn.sim.tb_hardening`): register
writes racing packet headers at every cycle offset, configuration changes after a refused
packet, refused writes word for word and the protocol's decided corner cases, on Verilator
and Icarus."""

import dataclasses
import json
from pathlib import Path

import pytest

from xnorlearn.contract import Build
from xnorlearn.hw.accelerator import Accelerator
from xnorlearn.sim.runner import run_cocotb

#: The build of the issue's adversarial test.
BUILD = Build(lanes=64, max_layers=2, max_width=64, max_fan_in=128, classes=6, max_batch=16,
              max_groups=8, weight_words=160)
_VERILATOR_ARGS = ["--no-public-flat-rw", "--public-depth", "1", "-CFLAGS", "-O0"]
TESTS = ["test_config_after_refused_train", "test_config_races", "test_refused_write_h",
         "test_refused_writes_word_for_word", "test_decided_rules", "test_soft_reset_mid_write",
         "test_soft_reset_after_write_h", "test_train_keeps_padding"]


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_hardening_cocotb(build_root, simulator):
    build_dir = Path(build_root) / f"hardening_{simulator}"
    run_cocotb(Accelerator(build=BUILD), name="xnorlearn_accelerator",
               test_module="xnorlearn.sim.tb_hardening", simulator=simulator,
               build_dir=build_dir, params={"build": dataclasses.asdict(BUILD)},
               extra_build_args=_VERILATOR_ARGS if simulator == "verilator" else ())
    cases = json.loads((build_dir / "cases.json").read_text())
    assert set(cases["tests"]) == set(TESTS), cases
    assert cases["tests"]["test_config_races"] == 6 * 25
