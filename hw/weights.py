"""Weight store: the hidden weights ``H`` and their signs ``W``, with the arbitration of
their one write port between the update engine and the host's ``WRITE_H`` words."""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from xnorlearn.hw._params import check_int as _check_int
from xnorlearn.hw.bank import BankedMemory

__all__ = ["WeightStore", "weight_word_layout"]


def weight_word_layout(*, lanes, h_bits, depth):
    """Payload of a write: ``addr``, the word's hidden weights ``h`` (lane ``n`` at bits
    ``n * h_bits``) and their signs ``w`` (bit 1 = +1)."""
    return data.StructLayout({"addr": max(bits_for(depth - 1), 1), "h": lanes * h_bits,
                              "w": lanes})


class WeightStore(wiring.Component):
    """``H`` and ``W`` of the training core: ``depth`` words of ``lanes`` weights each.

    Both memories are :class:`~xnorlearn.hw.bank.BankedMemory` (rows of block RAM, each
    row's output registered beside it). ``H`` is read by the updates and ``READ_H`` with
    three cycles of latency; ``W`` by the forward pass with two, under a read enable that
    moves or holds its pipeline. Neither read port is transparent: a read in the cycle of
    a write to the same word returns the old word, and the core's interlocks order every
    read after its word's write-back.

    A word is written to ``H`` and ``W`` together, from one of two sources: ``update``
    (the update engine's results) or ``host`` (the words of a ``WRITE_H``). An update word
    has priority: a host word in the same cycle is dropped (the core never presents both:
    the update machine is idle during a ``WRITE_H``). The write goes through free-running
    registers (no clock enable, data without reset), which placement can put beside the
    block RAMs: a word presented in cycle ``t`` is in memory for reads from cycle
    ``t + 1 +`` :attr:`write_latency` on. The registers have no reset, so a write on its way
    lands even through a reset of the core.

    Parameters
    ----------
    lanes : int
        Weights per word, 8..1024.
    h_bits : int
        Bits of a hidden weight, 2..16.
    depth : int
        Words, 1..2**20.

    Members
    -------
    update : ``In(stream.Signature(weight_word_layout(...), always_ready=True))``
        Words from the update engine.
    host : ``In(stream.Signature(weight_word_layout(...), always_ready=True))``
        Words of a ``WRITE_H``.
    h_rd_addr : ``In(addr_width)``
    h_rd_data : ``Out(lanes * h_bits)``
        ``H`` read port: word ``h_rd_addr`` of :attr:`h_read_latency` edges earlier.
    w_rd_addr : ``In(addr_width)``
    w_rd_en : ``In(1)``
    w_rd_data : ``Out(lanes)``
        ``W`` read port: word ``w_rd_addr`` of :attr:`w_read_latency` edges with
        ``w_rd_en`` high earlier; the pipeline holds while ``w_rd_en`` is low.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of range.
    """

    def __init__(self, *, lanes, h_bits, depth):
        self._lanes = _check_int("lanes", lanes, 8, 1024)
        self._h_bits = _check_int("h_bits", h_bits, 2, 16)
        self._depth = _check_int("depth", depth, 1, 1 << 20)
        layout = weight_word_layout(lanes=lanes, h_bits=h_bits, depth=depth)
        self._addr_width = max(bits_for(depth - 1), 1)
        super().__init__({
            "update": In(stream.Signature(layout, always_ready=True)),
            "host": In(stream.Signature(layout, always_ready=True)),
            "h_rd_addr": In(self._addr_width),
            "h_rd_data": Out(lanes * h_bits),
            "w_rd_addr": In(self._addr_width),
            "w_rd_en": In(1),
            "w_rd_data": Out(lanes),
        })

    lanes = property(lambda self: self._lanes)
    h_bits = property(lambda self: self._h_bits)
    depth = property(lambda self: self._depth)
    addr_width = property(lambda self: self._addr_width)
    h_read_latency = property(lambda self: 3)
    w_read_latency = property(lambda self: 2)
    write_latency = property(lambda self: 1)

    def elaborate(self, platform):
        m = Module()
        P, HB = self._lanes, self._h_bits
        m.submodules.h_mem = h_mem = BankedMemory(width=P * HB, depth=self._depth,
                                                  read_latency=self.h_read_latency)
        m.submodules.w_mem = w_mem = BankedMemory(width=P, depth=self._depth,
                                                  read_enable=True)
        assert w_mem.read_latency == self.w_read_latency
        # The write sources are told apart by the update word's valid alone (a register
        # in the engine), not by the core's state.
        upd, host = self.update, self.host
        word = Signal.like(upd.payload, name="wr_word")
        en = Signal(name="wr_en")
        m.d.comb += [word.eq(Mux(upd.valid, upd.payload, host.payload)),
                     en.eq(upd.valid | host.valid)]
        for name, mem, data_ in (("h", h_mem, word.h), ("w", w_mem, word.w)):
            addr_q = Signal.like(word.addr, reset_less=True, name=f"{name}w_addr_q")
            data_q = Signal(len(data_), reset_less=True, name=f"{name}w_data_q")
            en_q = Signal(reset_less=True, name=f"{name}w_en_q")
            m.d.sync += [addr_q.eq(word.addr), data_q.eq(data_), en_q.eq(en)]
            m.d.comb += [mem.wr_addr.eq(addr_q), mem.wr_data.eq(data_q), mem.wr_en.eq(en_q)]
        m.d.comb += [
            h_mem.rd_addr.eq(self.h_rd_addr), self.h_rd_data.eq(h_mem.rd_data),
            w_mem.rd_addr.eq(self.w_rd_addr), w_mem.rd_en.eq(self.w_rd_en),
            self.w_rd_data.eq(w_mem.rd_data),
        ]
        return m
