"""A deep memory built from rows of block RAM, each row's output registered beside it."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from xnorlearn.hw._params import check_int

__all__ = ["BankedMemory"]


class BankedMemory(wiring.Component):
    """Simple dual-port memory of ``depth`` words in rows of ``row_depth`` words, read
    with two or three cycles of latency.

    Synthesis builds a memory deeper than one block RAM from rows of block RAMs and a
    multiplexer after them, whose select fans out to every data bit and whose inputs
    come from block RAMs spread over the die, all in the read cycle. Here each row is a
    memory of its own, its output is registered (zero unless the row was addressed) in
    the cycle after the read, and the rows are ORed: the block RAM's clock-to-output
    delay and the trip across the die fall in different cycles. With ``read_latency=3``
    the ORed word is registered too, so that each row's register feeds only that OR and
    can sit beside its block RAMs.

    The read port is not transparent: a read in the cycle of a write to the same word
    returns the old word. With ``read_enable=True`` it has an enable that moves or holds
    the whole read pipeline (block RAM output and registers), as a stalling stream
    needs.

    Parameters
    ----------
    width : int
        Bits of a word, 1..65536.
    depth : int
        Words, 1..2**24.
    row_depth : int
        Words of a row (default 1024, a DP16KD or RAMB18 in its 18-bit mode), a power of
        two in 1..65536.
    read_latency : int
        2 (default) or 3, as above.
    read_enable : bool
        Give the read port an enable, ``rd_en`` (default ``False``: always enabled).

    Members
    -------
    wr_addr : ``In(addr_width)``
    wr_data : ``In(width)``
    wr_en : ``In(1)``
        Write port: ``wr_data`` goes to word ``wr_addr`` at the clock edge when ``wr_en``.
    rd_addr : ``In(addr_width)``
    rd_data : ``Out(width)``
        Read port: ``rd_data`` is word ``rd_addr`` of :attr:`read_latency` clock edges
        earlier (edges with ``rd_en`` high, when there is an enable). Addresses at or
        past ``depth`` are not allowed.
    rd_en : ``In(1)``
        Only with ``read_enable``: the read pipeline moves at a clock edge with ``rd_en``
        high and holds otherwise; ``rd_addr`` is taken at an edge with ``rd_en`` high.

    Attributes
    ----------
    width, depth, row_depth, read_latency, read_enable
        The parameters (read only).
    rows : int
        Number of rows, ``ceil(depth / row_depth)``.
    addr_width : int

    Raises
    ------
    TypeError
        If a parameter is not an integer (``read_enable``: not a bool).
    ValueError
        If a parameter is out of range, or ``row_depth`` is not a power of two.
    """

    def __init__(self, *, width, depth, row_depth=1024, read_latency=2, read_enable=False):
        self._width = check_int("width", width, 1, 1 << 16)
        self._depth = check_int("depth", depth, 1, 1 << 24)
        self._row_depth = check_int("row_depth", row_depth, 1, 1 << 16)
        if row_depth & (row_depth - 1):
            raise ValueError(f"row_depth must be a power of two, got {row_depth}")
        self._read_latency = check_int("read_latency", read_latency, 2, 3)
        if not isinstance(read_enable, bool):
            raise TypeError(f"read_enable must be a bool, not {read_enable!r}")
        self._read_enable = read_enable
        self._addr_width = max(bits_for(depth - 1), 1)
        members = {
            "wr_addr": In(self._addr_width),
            "wr_data": In(width),
            "wr_en": In(1),
            "rd_addr": In(self._addr_width),
            "rd_data": Out(width),
        }
        if read_enable:
            members["rd_en"] = In(1)
        super().__init__(members)

    width = property(lambda self: self._width)
    depth = property(lambda self: self._depth)
    row_depth = property(lambda self: self._row_depth)
    addr_width = property(lambda self: self._addr_width)
    read_latency = property(lambda self: self._read_latency)
    read_enable = property(lambda self: self._read_enable)

    @property
    def rows(self):
        return -(-self._depth // self._row_depth)

    def elaborate(self, platform):
        m = Module()
        low = min(ceil_log2(self._row_depth), self._addr_width)
        wr_row, rd_row = self.wr_addr[low:], self.rd_addr[low:]
        en = self.rd_en if self._read_enable else 1
        outputs = []
        for r in range(self.rows):
            depth = min(self._row_depth, self._depth - r * self._row_depth)
            mem = Memory(shape=self._width, depth=depth, init=[])
            m.submodules[f"row{r}"] = mem
            wr, rd = mem.write_port(), mem.read_port()
            hit = Signal(name=f"row{r}_hit")
            out = Signal(self._width, name=f"row{r}_q", reset_less=True)
            m.d.comb += [
                wr.addr.eq(self.wr_addr[:low]),
                wr.data.eq(self.wr_data),
                wr.en.eq(self.wr_en & (wr_row == r)),
                rd.addr.eq(self.rd_addr[:low]),
                rd.en.eq(en),
            ]
            with m.If(en):
                m.d.sync += [hit.eq(rd_row == r), out.eq(Mux(hit, rd.data, 0))]
            outputs.append(out)
        result = outputs[0]
        for out in outputs[1:]:
            result = result | out
        if self._read_latency == 3:
            ored = Signal(self._width, name="rd_q", reset_less=True)
            with m.If(en):
                m.d.sync += ored.eq(result)
            result = ored
        m.d.comb += self.rd_data.eq(result)
        return m
