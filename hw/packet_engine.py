"""Packet engine of the training core: the host protocol's state machine and its I/O words."""

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort, WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from xnorlearn.contract import LAYER_SHIFT, OPCODE_SHIFT, STATUS_TAG, ErrorCode, Opcode, Phase
from xnorlearn.hw._params import check_int as _check_int
from xnorlearn.hw._arith import divmod_const
from xnorlearn.hw._params import check_lanes
from xnorlearn.hw.layer_config import layer_shapes
from xnorlearn.hw.weights import weight_word_layout

__all__ = ["PacketEngine", "AXIS_LAYOUT"]

#: Payload of the command and response streams (one 32-bit word and ``tlast``).
AXIS_LAYOUT = data.StructLayout({"data": 32, "last": 1})


class PacketEngine(wiring.Component):
    """Runs the core's packets: decodes each header, checks the packet, moves its words
    between the streams and the memories, and sequences a minibatch's layers.

    * ``TRAIN`` / ``INFER``: each label goes to the labels memories and each pattern's
      words, packed ``lanes`` bits to a word, to ``A``'s region 0 (``a_load``), at
      ``mu * a_words`` for pattern ``mu``. The forward pass of layer 0 is started with the header
      (``fwd_start``) and follows the load; each later layer's is started when the layer
      before is complete (``fwd_done``) and, for ``TRAIN``, the updates of the layer two
      before are done (their ``A`` bank is the one the layer reads). After the last layer
      a ``TRAIN`` waits for the updates (``upd_index == layers``) and pulses ``finish``;
      an ``INFER`` answers with one prediction per pattern first. The status word
      ``0x8n00_0000 | batch_errors`` ends the response.
    * ``WRITE_H`` / ``READ_H``: four hidden weights per payload word, assembled into (or
      taken from) ``lanes``-weight words of ``H``; a word is written on ``host`` once its
      last payload word is in place. The header waits while ``sweeping``.
    * ``WRITE_P`` / ``WRITE_T`` / ``READ_P`` / ``READ_T``: one classifier row or threshold
      word per payload word.
    * Any packet that fails a check (opcode, configuration, layer, length, label) latches
      ``error`` and ``error_code``, pulses ``flush`` in the next cycle, and is discarded up
      to its ``tlast``; nothing is taken until ``clear_error``.

    Parameters
    ----------
    lanes : int
        Bits of an ``A`` word and weights of an ``H`` word, a power of two, 32..1024.
    h_bits : int
        Bits of a hidden weight, 2..8.
    patterns : int
        Patterns to a row of ``A``, the labels and the predictions (G), 1..64.
    max_layers, max_width, max_fan_in, max_batch, classes : int
        The build's limits: 1..8, 2..4095, 1..4095, 1..1024, 2..16.
    width_bits : int
        Bits of a layer size, 1..12.
    a_words : int
        Words of ``A`` per pattern and layer, 1..4095.
    a_depth : int
        Words of the ``A`` bank that holds region 0, 1..2**20.
    weight_words : int
        Depth of ``H``, 1..2**20.
    h_read_latency : int
        Cycles from an ``H`` address to its data, 1..8.

    Members
    -------
    s_axis : ``In(stream.Signature(AXIS_LAYOUT))``
        Command packets.
    m_axis : ``Out(stream.Signature(AXIS_LAYOUT))``
        Responses.
    cfg_ok : ``In(1)``
        The configuration fits the build.
    layers : ``In(range(max_layers + 1))``
        Hidden layers ``L``.
    fan_in : ``In(width_bits)``
        ``K_0``, the bits of a pattern.
    layer : ``In(StructLayout({"base", "kin", "kout_m1", "hw_m1", "is_last"}))``
        The values of layer ``index`` (:class:`~xnorlearn.hw.layer_config.LayerConfig`'s
        ``fwd``): first ``H`` word, fan-in, width minus one, payload words per neuron of
        a ``WRITE_H`` minus one, last layer.
    clear_error : ``In(1)``
        Leaves ``ERROR``.
    fwd_busy, fwd_complete : ``In(1)``
        The forward pass has words in flight; the layer it runs is complete (its pick
        list with it).
    upd_index : ``In(range(max_layers + 1))``
        Layers whose updates are done.
    upd_phase : ``In(Phase)``
        What the updates do (``UPDATE`` or ``REINFORCE``), shown while only they run.
    sweeping : ``In(1)``
        The last ``TRAIN``'s reinforcement sweeps still use ``H``.
    errors_add : ``In(range(patterns + 1))``
        Last-layer errors to add to ``batch_errors`` in this cycle.
    index, index_next : ``Out(range(max_layers))``
        The layer of the forward pass and of packet I/O, and its value in the next cycle
        (for :class:`~xnorlearn.hw.layer_config.LayerConfig`'s ``fwd_layer``).
    upd_restart : ``Out(1)``
        A ``TRAIN`` / ``INFER`` header is decoded: the updates start again from layer 0.
    fwd_start : ``Out(1)``
        Start the forward pass of layer ``fwd_layer`` over ``fwd_count`` patterns.
    fwd_layer : ``Out(range(max_layers))``
    fwd_count : ``Out(range(max_batch + 1))``
    layer_complete : ``Out(1)``
        The forward pass of layer ``index`` is complete in this cycle (``fwd_done``
        becomes ``index + 1``).
    fwd_done : ``Out(range(max_layers + 1))``
        Layers of this packet whose forward pass and pick list are complete.
    op : ``Out(8)``
        The opcode of the packet in progress (or last).
    bs, bs_m1 : ``Out``
        Patterns of the minibatch, and that minus one.
    loaded : ``Out(range(max_batch + 1))``
        Patterns of the minibatch in ``A``.
    finish : ``Out(1)``
        A ``TRAIN`` is done: the step and the counters advance in this cycle.
    batch_errors : ``Out(range(max_batch + 1))``
        Last-layer errors of the minibatch.
    busy, error, flush : ``Out(1)``
        A packet is in progress; an error is latched; the cycle after a refusal.
    error_code : ``Out(ErrorCode)``
    phase : ``Out(Phase)``
    label_wr : ``In(WritePort.Signature(...))``
        Labels, one per pattern.
    label_group_wr : ``In(WritePort.Signature(...))``
        Labels, ``patterns`` to a word (only with ``patterns > 1``).
    a_load, loading : ``In(WritePort.Signature(...))``, ``Out(1)``
        The pattern words for ``A``'s region 0, while ``loading``.
    pred_rd, t_rd : ``In(ReadPort.Signature(...))``
        Predictions (``patterns`` to a word) and threshold words.
    p_wr, t_wr : ``In(WritePort.Signature(...))``
        Classifier rows and threshold words.
    p_rd_host, p_rd_addr, p_rd_data : ``Out(1)``, ``Out``, ``In``
        A ``READ_P`` / ``READ_T`` reads row ``p_rd_addr`` of ``P`` in this cycle.
    h_rd_addr, h_rd_data : ``Out``, ``In``
        The ``H`` word a ``READ_H`` reads, and its data ``h_read_latency`` cycles later.
    host : ``Out(stream.Signature(weight_word_layout(...), always_ready=True))``
        The ``H`` and ``W`` words of a ``WRITE_H``.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of range or ``lanes`` is not a multiple of 32.
    """

    def __init__(self, *, lanes, h_bits, patterns, max_layers, max_width, max_fan_in,
                 max_batch, classes, width_bits, a_words, a_depth, weight_words,
                 h_read_latency):
        self._lanes = check_lanes(lanes)
        self._h_bits = _check_int("h_bits", h_bits, 2, 8)
        self._patterns = _check_int("patterns", patterns, 1, 64)
        self._max_layers = _check_int("max_layers", max_layers, 1, 8)
        self._max_width = _check_int("max_width", max_width, 2, 4095)
        self._max_fan_in = _check_int("max_fan_in", max_fan_in, 1, 4095)
        self._max_batch = _check_int("max_batch", max_batch, 1, 1024)
        self._classes = _check_int("classes", classes, 2, 16)
        self._width_bits = _check_int("width_bits", width_bits, 1, 12)
        self._a_words = _check_int("a_words", a_words, 1, 4095)
        self._a_depth = _check_int("a_depth", a_depth, 1, 1 << 20)
        self._weight_words = _check_int("weight_words", weight_words, 1, 1 << 20)
        self._h_read_latency = _check_int("h_read_latency", h_read_latency, 1, 8)
        G, ML, MB = patterns, max_layers, max_batch
        label_bits = max(1, (classes - 1).bit_length())
        rows = ML * max_width
        shapes = layer_shapes(lanes=lanes, max_words=a_words, width_bits=width_bits)
        ports = {
            "s_axis": In(stream.Signature(AXIS_LAYOUT)),
            "m_axis": Out(stream.Signature(AXIS_LAYOUT)),
            "cfg_ok": In(1),
            "layers": In(range(ML + 1)),
            "fan_in": In(width_bits),
            "layer": In(data.StructLayout({
                "base": 32, "kin": shapes["kin"], "kout_m1": shapes["kout_m1"],
                "hw_m1": shapes["hw_m1"], "is_last": 1})),
            "clear_error": In(1),
            "fwd_busy": In(1),
            "fwd_complete": In(1),
            "upd_index": In(range(ML + 1)),
            "upd_phase": In(Phase),
            "sweeping": In(1),
            "errors_add": In(range(G + 1)),
            "index": Out(range(ML)),
            "index_next": Out(range(ML)),
            "upd_restart": Out(1),
            "fwd_start": Out(1),
            "fwd_layer": Out(range(ML)),
            "fwd_count": Out(range(MB + 1)),
            "layer_complete": Out(1),
            "fwd_done": Out(range(ML + 1)),
            "op": Out(8),
            "bs": Out(range(MB + 1)),
            "bs_m1": Out(signed(bits_for(MB) + 1)),
            "loaded": Out(range(MB + 1)),
            "finish": Out(1),
            "batch_errors": Out(range(MB + 1)),
            "busy": Out(1),
            "error": Out(1),
            "flush": Out(1),
            "error_code": Out(ErrorCode),
            "phase": Out(Phase),
            "label_wr": In(WritePort.Signature(addr_width=ceil_log2(MB),
                                               shape=unsigned(label_bits))),
            "a_load": In(WritePort.Signature(addr_width=ceil_log2(a_depth),
                                             shape=unsigned(lanes))),
            "loading": Out(1),
            "pred_rd": In(ReadPort.Signature(addr_width=ceil_log2(-(-MB // G)),
                                             shape=unsigned(G * label_bits))),
            "p_wr": In(WritePort.Signature(addr_width=ceil_log2(rows),
                                           shape=unsigned(classes))),
            "t_wr": In(WritePort.Signature(addr_width=ceil_log2(rows), shape=unsigned(17))),
            "t_rd": In(ReadPort.Signature(addr_width=ceil_log2(rows), shape=unsigned(17))),
            "p_rd_host": Out(1),
            "p_rd_addr": Out(range(rows)),
            "p_rd_data": In(classes),
            "h_rd_addr": Out(ceil_log2(weight_words)),
            "h_rd_data": In(lanes * h_bits),
            "host": Out(stream.Signature(
                weight_word_layout(lanes=lanes, h_bits=h_bits, depth=weight_words),
                always_ready=True)),
        }
        if G > 1:
            ports["label_group_wr"] = In(WritePort.Signature(
                addr_width=ceil_log2(-(-MB // G)), shape=unsigned(G * label_bits),
                granularity=label_bits))
        super().__init__(ports)

    lanes = property(lambda self: self._lanes)
    h_bits = property(lambda self: self._h_bits)
    patterns = property(lambda self: self._patterns)
    max_layers = property(lambda self: self._max_layers)
    max_width = property(lambda self: self._max_width)
    max_fan_in = property(lambda self: self._max_fan_in)
    max_batch = property(lambda self: self._max_batch)
    classes = property(lambda self: self._classes)
    width_bits = property(lambda self: self._width_bits)
    a_words = property(lambda self: self._a_words)
    a_depth = property(lambda self: self._a_depth)
    weight_words = property(lambda self: self._weight_words)
    h_read_latency = property(lambda self: self._h_read_latency)

    def elaborate(self, platform):
        m = Module()
        P, HB, G = self._lanes, self._h_bits, self._patterns
        ML, MW, MB, C = self._max_layers, self._max_width, self._max_batch, self._classes
        AW = self._a_words
        label_bits = max(1, (C - 1).bit_length())
        S = P // 32                   # host words per A word
        Q = P // 4                    # host words per H word
        MBG = -(-MB // G)

        lay = self.layer
        L_base, L_kin, L_kout_m1, L_hw_m1 = lay.base, lay.kin, lay.kout_m1, lay.hw_m1

        cur_l = Signal(range(ML))
        m.d.comb += [self.index.eq(cur_l), self.index_next.eq(cur_l)]
        m.d.sync += cur_l.eq(self.index_next)
        L_row = cur_l * MW

        bs, bs_m1, op = self.bs, self.bs_m1, self.op
        ld_mu = self.loaded
        fw_done = self.fwd_done
        batch_errors = self.batch_errors
        err_flag, err_code, flush = self.error, self.error_code, self.flush
        phase = self.phase
        m.d.sync += batch_errors.eq(batch_errors + self.errors_add)

        io_k = Signal(range(MW + 1))
        io_v = Signal(range(max(AW * S, -(-max(self._max_fan_in, MW) // 4)) + 2))
        # The H word slot `io_v % Q` one-hot (`slot_eq`) and as `slot_gt[i] = slot > i`, kept
        # in step with `io_v` (every assignment goes through `io_v_set`): the slot logic of
        # READ_H / WRITE_H spans the whole word, and a decoder of `io_v` would drive it all.
        slot_eq = Signal(Q, init=1)
        slot_gt = Signal(Q)

        def io_v_set(zero):
            if zero:
                return [io_v.eq(0), slot_eq.eq(1), slot_gt.eq(0)]
            wrap = slot_eq[Q - 1]
            return [io_v.eq(io_v + 1), slot_eq.eq(Cat(slot_eq[Q - 1], slot_eq[:Q - 1])),
                    slot_gt.eq((slot_gt | slot_eq) & ~wrap.replicate(Q))]
        io_addr = Signal(32)
        # Data registers without reset (cleared or masked where a packet needs it): the
        # soft reset's fan-out stays on control state.
        io_buf = Signal(P, reset_less=True)
        hbuf = Signal(P * HB, reset_less=True)
        rh_buf = Signal(P * HB, reset_less=True)
        wbuf = Signal(P, reset_less=True)
        rpt_buf = Signal(32, reset_less=True)
        resp_i = Signal(range(MB + 1))
        # The pattern being loaded / answered within its row of labels and predictions.
        ld_slot, resp_slot = Signal(range(G)), Signal(range(G))
        ld_grp, resp_grp = Signal(range(MBG + 1)), Signal(range(MBG + 1))
        ld_onehot = Cat(ld_slot == j for j in range(G))

        s_in = self.s_axis.payload
        out = self.m_axis.payload

        m.d.comb += [
            self.h_rd_addr.eq(io_addr),
            self.pred_rd.addr.eq(resp_grp if G > 1 else resp_i),
            self.t_rd.addr.eq(L_row + io_k),
            self.p_rd_addr.eq(L_row + io_k),
        ]

        # WRITE_H words: slots before the current one come from the buffer, the current from the
        # beat, later ones (a neuron's partial last word) are zero, so the buffer is never
        # cleared, and each slot loads under its own enable.
        end_q = slot_eq[Q - 1] | (io_v == L_hw_m1)
        hmerged = Signal(P * HB)
        wmerged = Signal(P)
        # Byte `b` of a host word holds a weight (not padding past the fan-in).
        byte_used = [(io_v != L_hw_m1) | (L_kin[:2] == 0) | (b < L_kin[:2]) for b in range(4)]
        hvals = []
        for b in range(4):
            hv = Signal(signed(HB), name=f"wh_h{b}")
            m.d.comb += hv.eq(Mux(byte_used[b], s_in.data.word_select(b, 8).as_signed(), 0))
            hvals.append(hv)
        new_h = Cat(*hvals)
        new_w = Cat(*(hv > 0 for hv in hvals))
        m.d.comb += [
            hmerged.eq(Cat(*(Mux(slot_eq[i], new_h,
                                 Mux(slot_gt[i], hbuf.word_select(i, 4 * HB), 0))
                             for i in range(Q)))),
            wmerged.eq(Cat(*(Mux(slot_eq[i], new_w, Mux(slot_gt[i], wbuf.word_select(i, 4), 0))
                             for i in range(Q)))),
        ]
        # A complete WRITE_H word is registered where it is assembled and written in the
        # next cycle (the update machine is still idle then): the word's slot logic and
        # the write-port registers beside the block RAMs are a cycle apart.
        wh_we = Signal()              # a WRITE_H word is complete (state WH_DATA)
        host = self.host
        host_valid = Signal(reset_less=True)
        host_addr = Signal.like(host.payload.addr, reset_less=True)
        host_h = Signal(P * HB, reset_less=True)
        host_w = Signal(P, reset_less=True)
        # The word registers load only while a WRITE_H runs (`wh_active`, a register that
        # follows the state with a cycle's delay, so the clock enable is a flip-flop):
        # in simulation the slot logic then costs nothing between packets.
        wh_active = Signal()
        m.d.sync += [host_valid.eq(wh_we), wh_active.eq(0)]
        with m.If(wh_active):
            m.d.sync += [host_addr.eq(io_addr), host_h.eq(hmerged), host_w.eq(wmerged)]
        m.d.comb += [host.valid.eq(host_valid), host.payload.addr.eq(host_addr),
                     host.payload.h.eq(host_h), host.payload.w.eq(host_w)]

        m.d.sync += flush.eq(0)

        def fail(code, at_last):
            m.d.sync += [err_flag.eq(1), err_code.eq(code), flush.eq(1)]
            with m.If(at_last):
                m.next = "ERROR"
            with m.Else():
                m.next = "DISCARD"

        def start_fwd(layer, count):
            m.d.comb += [self.fwd_start.eq(1), self.fwd_layer.eq(layer),
                         self.fwd_count.eq(count)]

        # The header word is registered before it is decoded (state DECODE).
        hdr = Signal(32)
        hdr_last = Signal()
        hdr_op = hdr[OPCODE_SHIFT:]
        hdr_layer = hdr[LAYER_SHIFT:OPCODE_SHIFT]
        hdr_count = hdr[:LAYER_SHIFT]

        with m.FSM() as fsm:
            m.d.comb += self.busy.eq(~(fsm.ongoing("IDLE") | fsm.ongoing("DISCARD")
                                       | fsm.ongoing("ERROR")))
            with m.State("IDLE"):
                m.d.comb += [phase.eq(Phase.IDLE), self.s_axis.ready.eq(1)]
                with m.If(self.s_axis.valid):
                    # fw_done = 0: only the pick lists of an accepted TRAIN packet are applied
                    # (an INFER leaves its own behind).
                    m.d.sync += [hdr.eq(s_in.data), hdr_last.eq(s_in.last),
                                 op.eq(s_in.data[OPCODE_SHIFT:]), io_k.eq(0), *io_v_set(zero=True),
                                 ld_mu.eq(0), ld_slot.eq(0), ld_grp.eq(0), resp_slot.eq(0),
                                 resp_grp.eq(0),
                                 batch_errors.eq(0), resp_i.eq(0), fw_done.eq(0)]
                    m.next = "DECODE"

            with m.State("DECODE"):
                m.d.comb += phase.eq(Mux(self.sweeping, Phase.REINFORCE, Phase.IO))
                last = hdr_last
                # The layer indices follow the header whatever the checks decide (nothing
                # uses them in DISCARD or ERROR), which keeps the checks out of the
                # registers selected by layer.
                train_or_infer = (hdr_op == Opcode.TRAIN) | (hdr_op == Opcode.INFER)
                m.d.comb += [self.index_next.eq(Mux(train_or_infer, 0, hdr_layer)),
                             self.upd_restart.eq(train_or_infer)]
                with m.Switch(hdr_op):
                    with m.Case(Opcode.TRAIN, Opcode.INFER):
                        with m.If(~self.cfg_ok):
                            fail(ErrorCode.CONFIG, last)
                        with m.Elif((hdr_count == 0) | (hdr_count > MB) | last):
                            fail(ErrorCode.LENGTH, last)
                        with m.Else():
                            m.d.sync += [bs.eq(hdr_count), bs_m1.eq(hdr_count - 1), io_addr.eq(0)]
                            start_fwd(0, hdr_count)
                            m.next = "LOAD_LABEL"
                    with m.Case(Opcode.WRITE_H, Opcode.WRITE_P, Opcode.WRITE_T,
                                Opcode.READ_H, Opcode.READ_P, Opcode.READ_T):
                        is_write = ~hdr_op[0]
                        with m.If(~self.cfg_ok):
                            fail(ErrorCode.CONFIG, last)
                        with m.Elif(hdr_layer >= self.layers):
                            fail(ErrorCode.LAYER, last)
                        with m.Elif(is_write == last):
                            fail(ErrorCode.LENGTH, last)
                        with m.Else():
                            with m.Switch(hdr_op):
                                # H is the sweeps' until they end.
                                with m.Case(Opcode.WRITE_H):
                                    with m.If(~self.sweeping):
                                        m.next = "WH_START"
                                with m.Case(Opcode.READ_H):
                                    with m.If(~self.sweeping):
                                        m.next = "RH_START"
                                with m.Case(Opcode.WRITE_P, Opcode.WRITE_T):
                                    m.next = "WPT_DATA"
                                with m.Case(Opcode.READ_P, Opcode.READ_T):
                                    m.next = "RPT_RD"
                    with m.Default():
                        fail(ErrorCode.OPCODE, last)

            with m.State("DISCARD"):
                m.d.comb += [phase.eq(Phase.ERROR), self.s_axis.ready.eq(1)]
                with m.If(self.s_axis.valid & s_in.last):
                    m.next = "ERROR"

            # A clear_error that comes before the refused packet's tlast (in DISCARD) is
            # ignored: the words still to come belong to that packet.
            with m.State("ERROR"):
                m.d.comb += phase.eq(Phase.ERROR)
                with m.If(self.clear_error):
                    m.d.sync += [err_flag.eq(0), err_code.eq(ErrorCode.NONE)]
                    m.next = "IDLE"

            # ---- minibatch load (the forward pass of layer 0 follows it) ----------------------
            nw0 = (self.fan_in + 31) >> 5
            load_phase = Mux(self.fwd_busy, Phase.FORWARD, Phase.IO)
            with m.State("LOAD_LABEL"):
                wr = self.label_wr
                m.d.comb += [phase.eq(load_phase), self.s_axis.ready.eq(1),
                             wr.addr.eq(ld_mu), wr.data.eq(s_in.data),
                             wr.en.eq(self.s_axis.valid)]
                if G > 1:
                    wr = self.label_group_wr
                    m.d.comb += [wr.addr.eq(ld_grp),
                                 wr.data.eq(s_in.data[:label_bits].replicate(G)),
                                 wr.en.eq(self.s_axis.valid.replicate(G) & ld_onehot)]
                with m.If(self.s_axis.valid):
                    m.d.sync += [*io_v_set(zero=True), io_buf.eq(0)]
                    with m.If(s_in.last):
                        fail(ErrorCode.LENGTH, 1)
                    with m.Elif(s_in.data >= C):
                        fail(ErrorCode.LABEL, 0)
                    with m.Else():
                        m.next = "LOAD_DATA"

            with m.State("LOAD_DATA"):
                a_word, slot = divmod_const(io_v, S, -(-self._max_fan_in // 32) - 1)
                merged_in = Signal(P)
                m.d.comb += merged_in.eq(io_buf)
                if S > 1:
                    m.d.comb += merged_in.word_select(slot, 32).eq(s_in.data)
                else:
                    m.d.comb += merged_in.eq(s_in.data)
                word_end = (io_v == nw0 - 1)
                exp_last = (ld_mu == bs_m1) & word_end
                a_end = word_end | ((slot == S - 1) if S > 1 else 1)
                # Region 0 is in bank 0; layer 0's forward pass writes bank 1 meanwhile.
                m.d.comb += [phase.eq(load_phase), self.s_axis.ready.eq(1), self.loading.eq(1),
                             self.a_load.addr.eq(io_addr + a_word),
                             self.a_load.data.eq(merged_in),
                             self.a_load.en.eq(self.s_axis.valid & a_end)]
                with m.If(self.s_axis.valid):
                    m.d.sync += io_buf.eq(Mux(a_end, 0, merged_in))
                    with m.If(s_in.last != exp_last):
                        fail(ErrorCode.LENGTH, s_in.last)
                    with m.Elif(word_end):
                        m.d.sync += ld_mu.eq(ld_mu + 1)
                        if G > 1:
                            with m.If(ld_slot == G - 1):
                                m.d.sync += [ld_slot.eq(0), ld_grp.eq(ld_grp + 1)]
                            with m.Else():
                                m.d.sync += ld_slot.eq(ld_slot + 1)
                        m.d.sync += io_addr.eq(io_addr + AW)
                        with m.If(exp_last):
                            m.next = "FWD"
                        with m.Else():
                            m.next = "LOAD_LABEL"
                    with m.Else():
                        m.d.sync += io_v_set(zero=False)

            # ---- forward pass ---------------------------------------------------------------
            with m.State("FWD"):
                m.d.comb += phase.eq(Phase.FORWARD)
                with m.If(self.fwd_complete):
                    m.d.comb += self.layer_complete.eq(1)
                    m.d.sync += fw_done.eq(cur_l + 1)
                    with m.If(lay.is_last):
                        with m.If(op == Opcode.INFER):
                            m.next = "RESP_PRED_RD"
                        with m.Else():
                            m.next = "UPD_WAIT"
                    with m.Else():
                        m.d.comb += self.index_next.eq(cur_l + 1)
                        m.next = "FWD_NEXT"

            # Layer cur_l's forward pass reads the A bank that the updates of layer cur_l-2
            # read: it waits for them (the updates of cur_l-1 use the other bank).
            with m.State("FWD_NEXT"):
                can_start = (op == Opcode.INFER) | (self.upd_index + 1 >= cur_l)
                m.d.comb += phase.eq(Mux(can_start, Phase.FORWARD, self.upd_phase))
                with m.If(can_start):
                    start_fwd(cur_l, bs)
                    m.next = "FWD"

            # ---- the last layer's updates ----------------------------------------------------
            with m.State("UPD_WAIT"):
                m.d.comb += phase.eq(self.upd_phase)
                with m.If(self.upd_index == self.layers):
                    m.d.comb += self.index_next.eq(0)
                    m.next = "FINISH"

            with m.State("FINISH"):
                m.d.comb += [phase.eq(Phase.RESPOND), self.finish.eq(1)]
                m.next = "RESP_STATUS"

            # ---- responses ------------------------------------------------------------------
            with m.State("RESP_PRED_RD"):
                m.d.comb += [phase.eq(Phase.RESPOND), self.index_next.eq(0)]
                m.next = "RESP_PRED"

            with m.State("RESP_PRED"):
                pred = self.pred_rd.data
                m.d.comb += [phase.eq(Phase.RESPOND), self.pred_rd.en.eq(0),
                             self.m_axis.valid.eq(1),
                             out.data.eq(pred.word_select(resp_slot, label_bits)
                                         if G > 1 else pred)]
                with m.If(self.m_axis.ready):
                    m.d.sync += resp_i.eq(resp_i + 1)
                    if G > 1:
                        with m.If(resp_slot == G - 1):
                            m.d.sync += [resp_slot.eq(0), resp_grp.eq(resp_grp + 1)]
                        with m.Else():
                            m.d.sync += resp_slot.eq(resp_slot + 1)
                    with m.If(resp_i == bs_m1):
                        m.next = "RESP_STATUS"
                    with m.Else():
                        m.next = "RESP_PRED_RD"

            with m.State("RESP_STATUS"):
                m.d.comb += [phase.eq(Phase.RESPOND), self.m_axis.valid.eq(1),
                             out.data[:OPCODE_SHIFT].eq(batch_errors),
                             out.data[OPCODE_SHIFT:].eq(op | STATUS_TAG),
                             out.last.eq(1)]
                with m.If(self.m_axis.ready):
                    m.next = "IDLE"

            # ---- WRITE_H / READ_H -----------------------------------------------------------
            with m.State("WH_START"):
                m.d.comb += phase.eq(Phase.IO)
                m.d.sync += [io_addr.eq(L_base), wh_active.eq(1)]
                m.next = "WH_DATA"

            with m.State("WH_DATA"):
                exp_last = (io_k == L_kout_m1) & (io_v == L_hw_m1)
                # A memory word is written only when its last payload word is in place
                # (its tlast where due): a refused packet writes exactly the memory words
                # before the failing word, as WRITE_P / WRITE_T write the rows before it.
                m.d.comb += [phase.eq(Phase.IO), self.s_axis.ready.eq(1),
                             wh_we.eq(self.s_axis.valid & end_q & (s_in.last == exp_last))]
                m.d.sync += wh_active.eq(1)
                with m.If(self.s_axis.valid):
                    for i in range(Q):
                        with m.If(slot_eq[i]):
                            m.d.sync += [hbuf.word_select(i, 4 * HB).eq(new_h),
                                         wbuf.word_select(i, 4).eq(new_w)]
                    with m.If(end_q):
                        m.d.sync += io_addr.eq(io_addr + 1)
                    with m.If(s_in.last != exp_last):
                        fail(ErrorCode.LENGTH, s_in.last)
                    with m.Elif(io_v == L_hw_m1):
                        m.d.sync += [*io_v_set(zero=True), io_k.eq(io_k + 1)]
                        with m.If(exp_last):
                            m.next = "IDLE"
                    with m.Else():
                        m.d.sync += io_v_set(zero=False)

            with m.State("RH_START"):
                m.d.comb += phase.eq(Phase.IO)
                m.d.sync += io_addr.eq(L_base)
                m.next = "RH_WAIT0"

            # The H read's latency, then the word is registered and its slots go out from
            # the bottom, the register shifting by a slot after each: no multiplexer over
            # the word's slots, whose inputs would come from every H block RAM.
            for n in range(self._h_read_latency):
                with m.State(f"RH_WAIT{n}"):
                    m.d.comb += phase.eq(Phase.IO)
                    m.next = f"RH_WAIT{n + 1}" if n + 1 < self._h_read_latency else "RH_LATCH"

            with m.State("RH_LATCH"):
                m.d.comb += phase.eq(Phase.IO)
                m.d.sync += rh_buf.eq(self.h_rd_data)
                m.next = "RH_SEND"

            with m.State("RH_SEND"):
                chunk = Signal(4 * HB, name="rh_chunk")
                m.d.comb += chunk.eq(rh_buf[:4 * HB])
                bytes_out = []
                for b in range(4):
                    # Padding bytes read 0 whatever the lanes past the fan-in hold (weights
                    # left by an earlier, wider configuration).
                    hb = Signal(signed(8), name=f"rh_h{b}")
                    m.d.comb += hb.eq(Mux(byte_used[b], chunk.word_select(b, HB).as_signed(), 0))
                    bytes_out.append(hb)
                is_last = (io_k == L_kout_m1) & (io_v == L_hw_m1)
                m.d.comb += [phase.eq(Phase.IO), self.m_axis.valid.eq(1),
                             out.data.eq(Cat(*bytes_out)), out.last.eq(is_last)]
                with m.If(self.m_axis.ready):
                    with m.If(io_v == L_hw_m1):
                        m.d.sync += [*io_v_set(zero=True), io_k.eq(io_k + 1),
                                     io_addr.eq(io_addr + 1)]
                        with m.If(is_last):
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "RH_WAIT0"
                    with m.Elif(slot_eq[Q - 1]):
                        m.d.sync += [*io_v_set(zero=False), io_addr.eq(io_addr + 1)]
                        m.next = "RH_WAIT0"
                    with m.Else():
                        m.d.sync += [*io_v_set(zero=False), rh_buf.eq(rh_buf >> (4 * HB))]

            # ---- WRITE_P / WRITE_T / READ_P / READ_T ---------------------------------------
            with m.State("WPT_DATA"):
                exp_last = io_k == L_kout_m1
                we = self.s_axis.valid & (s_in.last == exp_last)
                is_p = op == Opcode.WRITE_P
                m.d.comb += [
                    phase.eq(Phase.IO), self.s_axis.ready.eq(1),
                    self.p_wr.addr.eq(L_row + io_k), self.p_wr.data.eq(s_in.data),
                    self.p_wr.en.eq(we & is_p),
                    self.t_wr.addr.eq(L_row + io_k), self.t_wr.data.eq(s_in.data),
                    self.t_wr.en.eq(we & ~is_p),
                ]
                with m.If(self.s_axis.valid):
                    m.d.sync += io_k.eq(io_k + 1)
                    with m.If(s_in.last != exp_last):
                        fail(ErrorCode.LENGTH, s_in.last)
                    with m.Elif(exp_last):
                        m.next = "IDLE"

            with m.State("RPT_RD"):
                m.d.comb += [phase.eq(Phase.IO), self.p_rd_host.eq(1)]
                m.next = "RPT_LATCH"

            # As for READ_H, the word is registered before it goes out.
            with m.State("RPT_LATCH"):
                m.d.comb += phase.eq(Phase.IO)
                m.d.sync += rpt_buf.eq(Mux(op == Opcode.READ_P, self.p_rd_data,
                                           self.t_rd.data))
                m.next = "RPT_SEND"

            with m.State("RPT_SEND"):
                is_last = io_k == L_kout_m1
                m.d.comb += [phase.eq(Phase.IO), self.m_axis.valid.eq(1),
                             out.data.eq(rpt_buf), out.last.eq(is_last)]
                with m.If(self.m_axis.ready):
                    m.d.sync += io_k.eq(io_k + 1)
                    with m.If(is_last):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "RPT_RD"
        return m
