"""xnorlearn: train binary multi-layer perceptrons on an FPGA.

Subpackages
-----------
xnorlearn.sw.golden
    The bit-exact NumPy golden model (the single source of truth).
xnorlearn.sw
    Datasets, bit packing, the host-side training loop and the CLI.
xnorlearn.hw
    Amaranth gateware.
xnorlearn.sim
    Simulator helpers and cocotb test benches.
xnorlearn.boards
    Board definitions.
"""

__version__ = "0.1.0"
