"""The training core: memories, sequencer and host packet protocol of the CP+R accelerator.

See ``docs/architecture.md`` for the memory map, the minibatch schedule and the packet
formats; the golden model (:class:`xnorlearn.sw.golden.fast.FastBMLP`) defines the
arithmetic.
"""

from amaranth import Array, Cat, Module, Mux, ResetInserter, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from xnorlearn.contract import STATUS_TAG, ErrorCode, Opcode, Phase
from xnorlearn.hw._arith import divmod_const
from xnorlearn.hw._params import check_draw_lanes, check_lanes
from xnorlearn.hw._params import check_int as _check_int
from xnorlearn.hw.classifier import LocalClassifier
from xnorlearn.hw.cp_sequencer import pick_layout
from xnorlearn.hw.fwd_source import ForwardSource
from xnorlearn.hw.layer_config import LayerConfig
from xnorlearn.hw.packet_engine import AXIS_LAYOUT, PacketEngine
from xnorlearn.hw.pick_drain import PickDrain
from xnorlearn.hw.popcount import XnorPopcount
from xnorlearn.hw.selector import GroupSelector
from xnorlearn.hw.threshold import ThresholdUnit
from xnorlearn.hw.update import THRESHOLD_BITS
from xnorlearn.hw.update_path import UpdatePath
from xnorlearn.hw.weights import WeightStore

__all__ = ["TrainerCore", "Opcode", "ErrorCode", "Phase", "AXIS_LAYOUT", "STATUS_TAG"]

class TrainerCore(wiring.Component):
    """CP+R training accelerator core: one minibatch per ``TRAIN`` packet.

    The core owns the weight memories ``H`` (``lanes * h_bits``-bit words) and ``W``
    (``lanes``-bit sign words, rewritten with every ``H`` write), the classifier rows
    ``Pmem``, the activations ``A`` of one minibatch, its labels, the picks of the group
    selector and the thresholds ``T`` (inside the :class:`~xnorlearn.hw.threshold.ThresholdUnit`,
    with a shadow copy for ``READ_T``). Commands arrive as packets on ``s_axis``, responses
    leave on ``m_axis`` (formats in ``docs/architecture.md``). A minibatch runs as:

    * load: labels and ``a_0`` into the memories, every label and the length checked;
    * forward, layer by layer and group by group of ``fwd_patterns`` (G) patterns: one
      ``W`` word of ``lanes`` weights per cycle, broadcast to G
      :class:`~xnorlearn.hw.popcount.XnorPopcount` units that each take the matching word
      of their pattern's activations, with no gap between neurons or groups and only the
      pipeline drain between layers. ``A`` holds one ``lanes``-bit word per pattern and
      word; the :class:`~xnorlearn.hw.fwd_source.ForwardSource` copies a group's words
      into a cache beside the popcounts while the group before runs, so ``A`` is read
      once per group and not once per neuron. The G exact ``z`` go to the
      threshold unit (one read of the neuron's threshold for all G), and each to its
      lane's :class:`~xnorlearn.hw.classifier.LocalClassifier` and
      :class:`~xnorlearn.hw.selector.GroupSelector` (exact ``z``, the golden default);
      the lanes' picks are drained lane by lane, so that the picks of patterns that need
      an update are appended to a per-layer pick list in pattern order. The lanes of a
      last, partial group past ``bs`` compute, but their classifiers and selectors get
      no input. A group's outputs are stored into ``A`` one pattern's word a cycle, and
      the source spaces the ends of output words by G cycles for that (only layers
      narrower than G neurons per word are slowed). Layer 0 starts with the packet's
      header and follows the load pattern by pattern;
    * per layer, as soon as its pick list is complete: the CP updates of the pick list in
      order (pattern, then group) through the :class:`~xnorlearn.hw.update.UpdateEngine`,
      one word per cycle (the next pick is fetched while the current one streams; a
      neuron picked twice in a row waits one cycle if it has a single word, so that it
      reads its own write-back). Weights are frozen during the forward pass in the golden
      model too, so the CP updates of layer ``l`` run while the forward pass of layer
      ``l + 1`` streams (other memories, and the other bank of ``A``); only the last
      layer's add cycles, and the forward pass of layer ``l + 2`` waits for those of layer
      ``l`` if they are not done;
    * ``step += 1``, ``patterns += bs``, ``errors +=`` the batch's last-layer errors, and the
      status word ``0x8100_0000 | errors`` on ``m_axis``;
    * then, in the background (``reinforcing``), the reinforcement sweep of every word of
      every layer from layer 0 on, with the sweep key ``mix32(key[l] + step *
      0x9E3779B9)`` of the minibatch's ``step``, computed on chip by a
      :class:`~xnorlearn.hw.prng.Mix32`, and the draws of a
      :class:`~xnorlearn.hw.prng.ReinforceDraws` of ``draw_lanes`` draws per cycle: a word
      takes ``lanes / draw_lanes`` cycles (fewer for a partial last word of a neuron). A
      sweep changes no sign (it moves ``h`` away from 0), so ``W`` reads the same during it,
      and the next ``TRAIN`` / ``INFER`` loads and runs its forward passes beside it; the
      next CP updates, ``WRITE_H`` and ``READ_H`` wait for the sweeps to end. The golden
      order (a layer's CP updates, then its sweep, before anything reads ``H`` again)
      holds.

    A minibatch of ``bs`` patterns thus takes
    ``ceil(bs / G) * sum_l K_l * ceil(K_{l-1} / lanes)`` cycles of forward pass, plus about
    15 cycles per layer (and, for every layer after the first, the copy of its first
    group's words into the cache: ``G * ceil(K_{l-1} / lanes)`` cycles), plus the last
    layer's CP words (picks times ``ceil(K_{L-1} / lanes)``) and any earlier layer's that
    outlast the next forward pass, plus the load of the first group (``1 + ceil(K_0 /
    32)`` words per pattern) and about 20 cycles of drains and response, plus the part of the last minibatch's sweeps
    (``sum_l K_l * ceil(K_{l-1} / lanes) * lanes / draw_lanes`` cycles) that its load and
    forward passes do not hide. Each busy cycle is counted once, under ``phase``:
    ``FORWARD`` while the forward pass streams (whatever runs beside it), ``UPDATE`` /
    ``REINFORCE`` while the sequencer waits for the CP updates / sweeps (or only the
    sweeps run), ``IO`` while it waits for packet words or sends a response.

    ``INFER`` runs the load and the forward pass only and returns one prediction word per
    pattern followed by the status word ``0x8200_0000 | errors``.

    A packet with a bad opcode, length, label, layer or a configuration beyond the build
    latches ``error`` and ``error_code`` and is discarded up to its ``tlast``; the core
    then accepts nothing until ``clear_error`` (one that comes before the ``tlast`` is
    ignored). The forward pass that a ``TRAIN`` / ``INFER`` refused during its load has
    started is emptied in the cycle after the refusal, so nothing runs while the core is
    in error and the configuration may change. A refused ``TRAIN`` changes no weight; a
    ``WRITE_*`` refused with ``LENGTH`` has written exactly the ``P`` / ``T`` rows, or the
    ``H`` memory words, whose payload words all come before the failing word (the one
    with an early ``tlast``, or the layer's last word without one).
    ``soft_reset`` returns every register (state machine, counters, ``step``, the error
    flag, the pipelines) to its reset value from any state; memories keep their contents.
    It would cut background sweeps short, which is why the
    :class:`~xnorlearn.hw.accelerator.Accelerator` holds every register write, ``CONTROL``
    included, while ``reinforcing``.

    The core is the memories and the wiring of its components:
    :class:`~xnorlearn.hw.packet_engine.PacketEngine` (the packets and the sequence of
    layers), :class:`~xnorlearn.hw.layer_config.LayerConfig`,
    :class:`~xnorlearn.hw.weights.WeightStore`,
    :class:`~xnorlearn.hw.fwd_source.ForwardSource` (the forward pass's words), the lanes'
    popcounts, threshold unit, classifiers and selectors,
    :class:`~xnorlearn.hw.pick_drain.PickDrain` (the pick list) and
    :class:`~xnorlearn.hw.update_path.UpdatePath` (a layer's CP updates, or its sweep).

    Parameters
    ----------
    lanes : int
        Words are ``lanes`` bits (or hidden weights) wide; a multiple of 32 in 32..1024.
    max_layers : int
        Largest number of hidden layers ``L``, 1..8.
    max_width : int
        Largest layer width ``K_l``, 2..4095.
    max_fan_in : int
        Largest input width ``K_0``, 1..4095.
    classes : int
        Number of classes, 2..16.
    max_batch : int
        Largest minibatch, 1..1024.
    max_groups : int
        Largest number of groups per layer (``ceil(K_l / gamma_l)``), 1..64.
    weight_words : int
        Depth of ``H`` and ``W``, 1..2**20.
    h_bits : int
        Bits of a hidden weight, 2..8 (default 8).
    draw_lanes : int
        Reinforcement draws per cycle, an even divisor of ``lanes`` (default 16): the
        sweep has ``draw_lanes // 2 + 1`` hashers (two 32x32 constant products each) and
        takes ``lanes / draw_lanes`` cycles per full word.
    fwd_patterns : int
        Patterns of a minibatch that the forward pass runs in lockstep, 1..64 (default
        1): each ``W`` word read is broadcast to ``fwd_patterns`` XNOR-popcount units of
        ``lanes`` lanes, each with its own threshold comparator, local classifier and
        group selector. The labels and the predictions are stored ``fwd_patterns``
        patterns to a word; ``A`` one pattern's word to a word.

    Members
    -------
    layers : ``In(unsigned)``
        Number of hidden layers ``L``.
    width : ``In(ArrayLayout(unsigned(width_bits), max_layers + 1))``
        ``K_0 .. K_L``.
    gamma : ``In(ArrayLayout(unsigned(width_bits), max_layers))``
        Group size per layer.
    robust : ``In(ArrayLayout(unsigned(margin_bits), max_layers))``
        Robustness ``R_l = ceil(r * K_l)`` per layer.
    thresh : ``In(ArrayLayout(unsigned(17), max_layers))``
        Reinforcement threshold per layer (``0 .. 65536``).
    key : ``In(ArrayLayout(unsigned(32), max_layers))``
        Reinforcement stream key ``stream_key(seed, 1, l)`` per layer.
    step_value, step_load : ``In(32)``, ``In(1)``
        ``step`` takes ``step_value`` in a cycle with ``step_load`` high.
    soft_reset, clear_error : ``In(1)``
        Strobes.
    busy, error : ``Out(1)``
        A packet is being processed; an error is latched.
    reinforcing : ``Out(1)``
        The reinforcement sweeps of the last ``TRAIN`` are still running; they end on their
        own, within ``sum_l K_l * ceil(K_{l-1} / lanes) * lanes / draw_lanes`` cycles and
        a few per layer.
    error_code : ``Out(ErrorCode)``
        Latched error (:class:`ErrorCode`).
    phase : ``Out(Phase)``
        What the core is doing (:class:`Phase`).
    step : ``Out(32)``
        Minibatch counter ``t`` of the reinforcement draws.
    patterns, errors, cycles, cycles_forward, cycles_update, cycles_reinforce, cycles_io : ``Out(32)``
        Patterns trained, last-layer errors counted, busy cycles (``busy`` or
        ``reinforcing``), and those cycles by ``phase``: forward pass, waiting for CP
        updates, waiting for the reinforcement sweeps or running them while no packet is
        being processed, packet I/O (``IO`` and ``RESPOND``); the four add up to
        ``cycles``.
    s_axis : ``In(stream.Signature(AXIS_LAYOUT))``
        Command packets.
    m_axis : ``Out(stream.Signature(AXIS_LAYOUT))``
        Response packets.

    Attributes
    ----------
    lanes, max_layers, max_width, max_fan_in, classes, max_batch, max_groups, weight_words, h_bits, draw_lanes, fwd_patterns : int
        The parameters.
    width_bits, margin_bits, activation_words : int
        Width of a layer size, of a robustness value, and words of ``A`` per pattern and layer.
    config_latency : int
        Cycles, ``max_layers + 5``, after a change of the configuration ports before a
        packet header may arrive (the derived layout is registered in steps).

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of its range, ``lanes`` is not a multiple of 32
        or ``draw_lanes`` does not divide it.
    """

    def __init__(self, *, lanes, max_layers, max_width, max_fan_in, classes, max_batch,
                 max_groups, weight_words, h_bits=8, draw_lanes=16, fwd_patterns=1):
        check_lanes(lanes)
        _check_int("max_layers", max_layers, 1, 8)
        _check_int("max_width", max_width, 2, 4095)
        _check_int("max_fan_in", max_fan_in, 1, 4095)
        _check_int("classes", classes, 2, 16)
        _check_int("max_batch", max_batch, 1, 1024)
        _check_int("max_groups", max_groups, 1, 64)
        _check_int("weight_words", weight_words, 1, 1 << 20)
        _check_int("h_bits", h_bits, 2, 8)
        check_draw_lanes(draw_lanes, lanes)
        _check_int("fwd_patterns", fwd_patterns, 1, 64)
        self._lanes = lanes
        self._max_layers = max_layers
        self._max_width = max_width
        self._max_fan_in = max_fan_in
        self._classes = classes
        self._max_batch = max_batch
        self._max_groups = max_groups
        self._weight_words = weight_words
        self._h_bits = h_bits
        self._draw_lanes = draw_lanes
        self._fwd_patterns = fwd_patterns

        self._width_bits = bits_for(max(max_width, max_fan_in))
        self._margin_bits = (2 * max_width).bit_length()
        self._activation_words = max(-(-max_fan_in // lanes), -(-max_width // lanes))
        wb = self._width_bits
        counter = unsigned(32)
        super().__init__({
            "layers": In(unsigned(bits_for(max_layers))),
            "width": In(data.ArrayLayout(unsigned(wb), max_layers + 1)),
            "gamma": In(data.ArrayLayout(unsigned(wb), max_layers)),
            "robust": In(data.ArrayLayout(unsigned(self._margin_bits), max_layers)),
            "thresh": In(data.ArrayLayout(unsigned(THRESHOLD_BITS), max_layers)),
            "key": In(data.ArrayLayout(unsigned(32), max_layers)),
            "step_value": In(counter),
            "step_load": In(1),
            "soft_reset": In(1),
            "clear_error": In(1),
            "busy": Out(1),
            "reinforcing": Out(1),
            "error": Out(1),
            "error_code": Out(ErrorCode),
            "phase": Out(Phase),
            "step": Out(counter),
            "patterns": Out(counter),
            "errors": Out(counter),
            "cycles": Out(counter),
            "cycles_forward": Out(counter),
            "cycles_update": Out(counter),
            "cycles_reinforce": Out(counter),
            "cycles_io": Out(counter),
            "s_axis": In(stream.Signature(AXIS_LAYOUT)),
            "m_axis": Out(stream.Signature(AXIS_LAYOUT)),
        })

    lanes = property(lambda self: self._lanes)
    max_layers = property(lambda self: self._max_layers)
    max_width = property(lambda self: self._max_width)
    max_fan_in = property(lambda self: self._max_fan_in)
    classes = property(lambda self: self._classes)
    max_batch = property(lambda self: self._max_batch)
    max_groups = property(lambda self: self._max_groups)
    weight_words = property(lambda self: self._weight_words)
    h_bits = property(lambda self: self._h_bits)
    draw_lanes = property(lambda self: self._draw_lanes)
    fwd_patterns = property(lambda self: self._fwd_patterns)
    width_bits = property(lambda self: self._width_bits)
    margin_bits = property(lambda self: self._margin_bits)
    activation_words = property(lambda self: self._activation_words)

    @property
    def config_latency(self):
        """Cycles after a change of the configuration ports before a packet header may
        arrive: the derived layout (words per neuron, layer bases, checks) is registered
        in steps, one layer base per cycle."""
        return self._max_layers + 5

    def elaborate(self, platform):
        m = Module()
        P = self._lanes
        D = self._draw_lanes
        ML, MW, MB, MG = self._max_layers, self._max_width, self._max_batch, self._max_groups
        HB = self._h_bits
        AW = self._activation_words
        C = self._classes
        label_bits = max(1, (C - 1).bit_length())
        waddr_bits = max(1, ceil_log2(self._weight_words))
        G = self._fwd_patterns
        MBG = -(-MB // G)             # groups: rows of the labels and predictions
        region = MB * AW              # A words per layer region
        pick_region = MB * MG

        # -- configuration, derived once per cycle (static while busy) -------------------------
        m.submodules.config = cfg = LayerConfig(
            lanes=P, max_layers=ML, width_bits=self._width_bits, margin_bits=self._margin_bits,
            max_width=MW, max_fan_in=self._max_fan_in, max_groups=MG,
            weight_words=self._weight_words, draw_lanes=D)
        m.d.comb += [cfg.layers.eq(self.layers), cfg.width.eq(self.width),
                     cfg.gamma.eq(self.gamma), cfg.robust.eq(self.robust),
                     cfg.thresh.eq(self.thresh), cfg.key.eq(self.key)]
        cfg_ok = cfg.ok

        # H and W, with the arbitration of their write port (`WeightStore`).
        m.submodules.weights = weights = WeightStore(lanes=P, h_bits=HB,
                                                     depth=self._weight_words)
        # The packets, and the sequence of a minibatch's layers (`PacketEngine`).
        m.submodules.packets = eng = PacketEngine(
            lanes=P, h_bits=HB, patterns=G, max_layers=ML, max_width=MW,
            max_fan_in=self._max_fan_in, max_batch=MB, classes=C, width_bits=self._width_bits,
            a_words=AW, a_depth=(ML + 1) // 2 * region, weight_words=self._weight_words,
            h_read_latency=weights.h_read_latency)
        wiring.connect(m, wiring.flipped(self.s_axis), eng.s_axis)
        wiring.connect(m, wiring.flipped(self.m_axis), eng.m_axis)
        bs, bs_m1, op, flush = eng.bs, eng.bs_m1, eng.op, eng.flush

        # Two layer indices: `cur_l` (the engine's) for the forward pass and packet I/O,
        # `u_l` for the updates, which run one layer behind the forward pass (see the class
        # docstring).
        cur_l = eng.index
        u_l = Signal(range(ML + 1))   # also the number of layers whose updates are done
        # The layer indices change through their next values, so that what is selected by
        # layer is registered with no lag (`LayerConfig`): the per-layer multiplexers and
        # the arithmetic on them stay out of the cycles that use them.
        u_l_nx = Signal.like(u_l)
        m.d.comb += [u_l_nx.eq(u_l), cfg.fwd_layer.eq(eng.index_next),
                     cfg.upd_layer.eq(u_l_nx)]
        m.d.sync += u_l.eq(u_l_nx)

        fwd, upd = cfg.fwd, cfg.upd
        L_last, L_base, L_kin = fwd.last, fwd.base, fwd.kin
        L_robust, L_gamma = fwd.robust, fwd.gamma
        L_words_m1, L_kout_m1, L_hw_m1 = fwd.words_m1, fwd.kout_m1, fwd.hw_m1
        is_last_layer = fwd.is_last
        L_row = cur_l * MW            # first row of the layer in Pmem / T
        U_row = u_l * MW

        # -- memories (H and W are the `WeightStore` above) --------------------------------------
        m.submodules.p_mem = p_mem = Memory(shape=unsigned(C), depth=ML * MW, init=[])
        m.submodules.t_mem = t_mem = Memory(shape=unsigned(17), depth=ML * MW, init=[])
        m.submodules.y_mem = y_mem = Memory(shape=unsigned(label_bits), depth=MB, init=[])
        # The forward pass reads the labels of its G patterns at once (`yg_mem`); the CP
        # updates read one pattern's (`y_mem`).
        if G > 1:
            m.submodules.yg_mem = yg_mem = Memory(shape=unsigned(G * label_bits), depth=MBG,
                                                  init=[])
        m.submodules.pred_mem = pred_mem = Memory(shape=unsigned(G * label_bits), depth=MBG,
                                                  init=[])
        m.submodules.pick_mem = pick_mem = Memory(
            shape=pick_layout(max_batch=MB, max_width=MW), depth=ML * pick_region,
            init=[])
        # A is split by the parity of its layer region: the forward pass of layer l+1 reads
        # region l+1 while the CP updates of layer l read region l, each from its own bank.
        a_wr, a_rd = [], []
        for b in range(min(ML, 2)):
            mem = Memory(shape=unsigned(P), depth=(ML - b + 1) // 2 * region, init=[])
            m.submodules[f"a_mem{b}"] = mem
            a_wr.append(mem.write_port())
            a_rd.append(mem.read_port())
        # Read ports are not transparent (no bypass multiplexer after the block RAMs): the
        # interlocks below keep every read of a word after its write-back.
        p_wr = p_mem.write_port()
        p_rd = p_mem.read_port()
        p_rd_cp = p_mem.read_port()
        t_wr = t_mem.write_port()
        t_rd = t_mem.read_port()
        y_wr = y_mem.write_port()
        if G > 1:
            yg_wr = yg_mem.write_port(granularity=label_bits)
            y_rd = yg_mem.read_port()
        else:
            y_rd = y_mem.read_port()
        y_rd_cp = y_mem.read_port()
        pred_wr = pred_mem.write_port()
        pred_rd = pred_mem.read_port()
        pick_wr = pick_mem.write_port()
        pick_rd = pick_mem.read_port()

        # -- datapath blocks -------------------------------------------------------------------
        # `flush` (the cycle after a packet is refused) empties the forward pass, which a
        # TRAIN / INFER refused during its load has already started: nothing of it is left
        # to run on a configuration that the host may change while the core is in error.
        fw_flushed = ResetInserter({"sync": flush})
        # One popcount, classifier and selector per pattern lane `j`, in lockstep: they see
        # the same handshakes, so lane 0's stand for all.
        def lane_name(name, j):
            return name if j == 0 else f"{name}{j}"
        pcs = [XnorPopcount(lanes=P, max_fan_in=max(self._max_fan_in, MW)) for _ in range(G)]
        pc = pcs[0]
        zw = pc.z_width
        thr = ThresholdUnit(max_neurons=ML * MW, z_width=zw, theta_width=16, pipelined=True,
                            patterns=G)
        clss = [LocalClassifier(classes=C, max_width=MW) for _ in range(G)]
        sels = [GroupSelector(z_bits=zw, max_width=MW) for _ in range(G)]
        cls = clss[0]
        m.submodules.threshold = fw_flushed(thr)
        for j in range(G):
            m.submodules[lane_name("popcount", j)] = fw_flushed(pcs[j])
            m.submodules[lane_name("classifier", j)] = fw_flushed(clss[j])
            m.submodules[lane_name("selector", j)] = fw_flushed(sels[j])
        m.submodules.source = src = ForwardSource(
            lanes=P, patterns=G, max_batch=MB, max_width=MW, a_words=AW, addr_bits=waddr_bits,
            a_depth=ML * region, end_gap=G)
        m.submodules.updates = upd_path = UpdatePath(
            lanes=P, draw_lanes=D, h_bits=HB, max_batch=MB, max_width=MW,
            classes=C, a_words=AW, width_bits=self._width_bits, addr_bits=waddr_bits,
            a_depth=ML * region, list_depth=ML * pick_region, row_depth=ML * MW,
            max_layers=ML, h_read_latency=weights.h_read_latency)
        # Words between the generator and the FIFOs when `fw_room` falls, at most one per
        # cycle: `fw_room` (1), the generator's two stages, the popcount, `s1`/`t`/`s2`
        # (3), then the selector (1) or the classifier, and a margin of 2.
        fw_slack = 1 + 2 + pc.latency + 3 + max(1, cls.latency) + 2
        m.submodules.drain = drain = PickDrain(patterns=G, max_batch=MB, max_width=MW,
                                               max_groups=MG, list_depth=ML * pick_region,
                                               slack=fw_slack)
        lab_fifo = SyncFIFO(width=G * label_bits, depth=32 + fw_slack)
        fw_room = Signal()
        m.d.sync += fw_room.eq(drain.room & (lab_fifo.level < 8))
        m.submodules.lab_fifo = fw_flushed(lab_fifo)

        # -- registers -------------------------------------------------------------------------
        pick_counts = [Signal(range(pick_region + 1), name=f"picks{l}") for l in range(ML)]
        step = Signal(32)
        counters = {name: Signal(32, name=f"count_{name}") for name in
                    ("patterns", "errors", "cycles", "cycles_forward", "cycles_update",
                     "cycles_reinforce", "cycles_io")}
        for name, sig in counters.items():
            m.d.comb += getattr(self, name).eq(sig)
        # The sweeps of the last TRAIN run in the background (`sweeping`), one layer after
        # the other from layer 0, with the step that TRAIN had (`sweep_step`).
        sweeping = Signal()
        sweep_step = Signal(32)
        m.d.comb += [self.step.eq(step), self.error.eq(eng.error),
                     self.reinforcing.eq(sweeping),
                     self.error_code.eq(eng.error_code), self.busy.eq(eng.busy),
                     self.phase.eq(eng.phase)]
        with m.If(self.step_load):
            m.d.sync += step.eq(self.step_value)
        with m.If(eng.finish):
            m.d.sync += [
                sweeping.eq(1), sweep_step.eq(step),
                step.eq(step + 1),
                counters["patterns"].eq(counters["patterns"] + bs),
                counters["errors"].eq(counters["errors"] + eng.batch_errors),
            ]

        # `busy` (phase neither IDLE nor ERROR) is decoded from the engine's state register,
        # not from `phase`, whose multiplexers depend on the forward and update machines.
        phase = Mux(~self.busy & sweeping, Phase.REINFORCE, eng.phase)
        with m.If(self.busy | sweeping):
            m.d.sync += counters["cycles"].eq(counters["cycles"] + 1)
        for ph, name in ((Phase.FORWARD, "cycles_forward"), (Phase.UPDATE, "cycles_update"),
                         (Phase.REINFORCE, "cycles_reinforce"), (Phase.IO, "cycles_io"),
                         (Phase.RESPOND, "cycles_io")):
            with m.If(phase == ph):
                m.d.sync += counters[name].eq(counters[name] + 1)

        # -- forward pass: word generator -> popcount -------------------------------------------
        # Layer 0 starts with the TRAIN packet's header and follows the load group by
        # group: a group of G patterns streams once they are in A (`ForwardSource`).
        ld_mu = eng.loaded
        assert weights.w_read_latency == src.W_LATENCY
        m.d.comb += [
            src.bs.eq(bs), src.bs_m1.eq(bs_m1), src.loaded.eq(ld_mu), src.flush.eq(flush),
            src.layer.base.eq(L_base), src.layer.words_m1.eq(L_words_m1),
            src.layer.kout_m1.eq(L_kout_m1), src.layer.last.eq(L_last),
            weights.w_rd_addr.eq(src.w_rd.addr),
            weights.w_rd_en.eq(src.w_rd.en),
            src.w_rd.data.eq(weights.w_rd_data),
            src.a_rd.data.eq(Mux(cur_l[0], a_rd[-1].data, a_rd[0].data) if ML > 1
                             else a_rd[0].data),
            src.o.ready.eq(1),
            src.hold.eq(~fw_room),
        ]
        fw_adv = src.a_rd.en
        for j, pcj in enumerate(pcs):
            m.d.comb += [
                pcj.i.valid.eq(src.o.valid),
                pcj.i.payload.a.eq(src.o.payload.a.word_select(j, P)),
                pcj.i.payload.w.eq(src.o.payload.w),
                pcj.i.payload.count.eq(src.o.payload.count),
                pcj.i.payload.last.eq(src.o.payload.last),
            ]

        # -- forward pass: z -> threshold, classifier, selector ---------------------------------
        # Nothing after the generator stalls: the popcounts' results are always taken (so
        # their inputs are always ready, `test_latency_and_throughput`) and the stages after
        # them feed FIFOs and memories. The generator holds while a FIFO is short of room
        # (`fw_room`, a register), and the FIFOs have `fw_slack` entries more for the words
        # already on their way: the wide A and W registers need no clock enable.
        take = pc.o.valid
        c_k = Signal(range(MW + 1))
        c_mu = Signal(range(MB + 1))  # group (row of the labels and predictions)
        c_last = c_k == L_kout_m1
        # Lanes of the group that hold a pattern (the last group of a minibatch may be
        # partial): the others' classifiers and selectors get no input.
        if G > 1:
            c_left = Signal(range(MB + 1))   # patterns from the group's first
            c_mask = Cat(c_left > j for j in range(G))
        else:
            c_mask = 1
        s1_valid = Signal()
        z_all = Cat(pcj.o.payload.z for pcj in pcs)
        s1_z = Signal(G * zw, reset_less=True)
        s1_k = Signal(range(MW + 1))
        s1_mu = Signal(range(MB + 1))
        s1_last = Signal()
        s1_mask = Signal(G)
        for pcj in pcs:
            m.d.comb += pcj.o.ready.eq(1)
        m.d.comb += [
            thr.i.valid.eq(take),
            thr.i.payload.index.eq(L_row + c_k),
            thr.i.payload.z.eq(z_all),
            thr.o.ready.eq(1),
        ]
        m.d.sync += [s1_valid.eq(take), s1_z.eq(z_all), s1_k.eq(c_k), s1_mu.eq(c_mu),
                     s1_last.eq(c_last), s1_mask.eq(c_mask)]
        with m.If(take):
            m.d.sync += [c_k.eq(Mux(c_last, 0, c_k + 1)), c_mu.eq(c_mu + c_last)]
            if G > 1:
                with m.If(c_last):
                    m.d.sync += c_left.eq(c_left - G)

        # Two more register stages, level with the pipelined threshold unit: block RAM
        # outputs (P row, label) are registered as they leave the block RAM, then again, so
        # that the classifier and the selector see them next to the unit's registered `a`.
        def stage(prefix, src):
            regs = {name: Signal.like(value, name=f"{prefix}_{name}",
                                      reset_less=name in ("z", "row", "y"))
                    for name, value in src.items()}
            m.d.sync += [regs[name].eq(value) for name, value in src.items()]
            return regs

        t = stage("t", {"valid": s1_valid, "z": s1_z, "k": s1_k, "mu": s1_mu, "last": s1_last,
                        "mask": s1_mask, "row": p_rd.data, "y": y_rd.data})
        s2 = stage("s2", t)
        s2_valid, s2_z, s2_k, s2_mu, s2_last, s2_mask, s2_row, s2_y = (
            s2[name] for name in ("valid", "z", "k", "mu", "last", "mask", "row", "y"))
        s2_a = thr.o.payload.a
        assert thr.latency == 3
        for j in range(G):
            lane_v = s2_valid & s2_mask[j] if G > 1 else s2_valid
            y_j = s2_y.word_select(j, label_bits)
            m.d.comb += [
                clss[j].i.valid.eq(lane_v),
                clss[j].i.payload.act.eq(s2_a[j]),
                clss[j].i.payload.row.eq(s2_row),
                clss[j].i.payload.label.eq(y_j),
                clss[j].i.payload.last.eq(s2_last),
                clss[j].robustness.eq(L_robust),
                clss[j].o.ready.eq(1),
                sels[j].i.valid.eq(lane_v),
                sels[j].i.payload.z.eq(s2_z.word_select(j, zw)),
                sels[j].i.payload.rho.eq(s2_row.bit_select(y_j, 1)),
                sels[j].i.payload.last.eq(s2_last),
                sels[j].gamma.eq(L_gamma),
                sels[j].o.ready.eq(1),
                drain.picks[j].valid.eq(sels[j].o.valid),
                drain.picks[j].payload.eq(sels[j].o.payload),
            ]
        m.d.comb += [
            lab_fifo.w_en.eq(s2_valid & s2_last),
            lab_fifo.w_data.eq(s2_y),
        ]

        # Activations of this layer, packed into A words for the next layer (region cur_l+1):
        # a group's G words in `abuf`, then stored one pattern a cycle from `aout`. The
        # source spaces the ends of output words by G cycles (`end_gap`), so that `aout`
        # is empty when the next arrives.
        abuf = Signal(G * P, reset_less=True)
        amerged = Signal(G * P)
        a_word, a_bit = divmod_const(s2_k, P, MW - 1)
        m.d.comb += amerged.eq(abuf | Cat(*((s2_a[j] << a_bit)[:P] for j in range(G))))
        a_word_end = (a_bit == P - 1) | s2_last
        with m.If(s2_valid):
            m.d.sync += abuf.eq(Mux(a_word_end, 0, amerged))
        aout = Signal(G * P, reset_less=True)
        aout_mask = Signal(G)         # patterns of `aout` still to store, from bit 0
        fw_a_addr = Signal(range(ML * region + 1))
        fw_wbank = Signal()
        fw_a_we = aout_mask[0]
        with m.If(s2_valid & a_word_end & (cur_l + 1 < self.layers)):
            m.d.sync += [aout.eq(amerged), aout_mask.eq(s2_mask),
                         fw_a_addr.eq(((cur_l + 1) >> 1) * region + s2_mu * (G * AW) + a_word),
                         fw_wbank.eq(~cur_l[0] if ML > 1 else 0)]
        with m.Elif(aout_mask.any()):
            m.d.sync += [aout.eq(aout >> P), aout_mask.eq(aout_mask >> 1),
                         fw_a_addr.eq(fw_a_addr + AW)]

        # Classifier decisions: last-layer errors, predictions, update flags.
        cls_mu = Signal(range(MB + 1))   # group
        cls_err = [c.o.valid & (c.o.payload.pred != lab_fifo.r_data.word_select(j, label_bits))
                   for j, c in enumerate(clss)]
        m.d.comb += [
            lab_fifo.r_en.eq(cls.o.valid),
            drain.decisions.valid.eq(cls.o.valid),
            drain.decisions.payload.eq(Cat(c.o.valid & c.o.payload.update for c in clss)),
            pred_wr.addr.eq(cls_mu),
            pred_wr.data.eq(Cat(c.o.payload.pred for c in clss)),
            pred_wr.en.eq(cls.o.valid & is_last_layer),
        ]
        m.d.comb += eng.errors_add.eq(Mux(cls.o.valid & is_last_layer, sum(cls_err), 0))
        with m.If(cls.o.valid):
            m.d.sync += cls_mu.eq(cls_mu + 1)

        # Picks of patterns that need an update go to the layer's pick list, in pattern order.
        m.d.comb += [drain.bs.eq(bs), drain.list_base.eq(cur_l * pick_region),
                     drain.flush.eq(flush)]
        wiring.connect(m, drain.pick_wr, pick_wr)
        drain_mu, pick_n = drain.drained, drain.count
        layer_done = ~src.active & src.empty & (drain_mu == bs) & ~aout_mask.any()
        # Nothing of the forward pass in flight: the generator waits at a pattern boundary
        # (or is done) and every generated pattern has left the pipeline.
        fw_quiet = src.empty & src.at_group & (drain_mu == src.mu)
        fw_busy = src.go | ~fw_quiet | aout_mask.any()

        # -- updates: the CP updates of layer `u_l` once its pick list is complete
        # (`u_l < fw_done`), while a TRAIN runs; after the TRAIN, the sweeps, `u_l` from 0
        # again. The next TRAIN's CP updates wait for them, its forward pass does not (a
        # sweep changes no sign, so W reads the same).
        m.d.comb += [
            upd_path.go.eq((op == Opcode.TRAIN) & eng.busy & ~sweeping & (u_l < eng.fwd_done)),
            upd_path.sweep.eq(sweeping),
            upd_path.index.eq(u_l),
            upd_path.step.eq(sweep_step),
            upd_path.picks.eq(Array(pick_counts)[u_l]),
            upd_path.list_base.eq(u_l * pick_region),
            upd_path.row_base.eq(U_row),
            upd_path.a_base.eq((u_l >> 1) * region),
            upd_path.a_data.eq(Mux(u_l[0], a_rd[-1].data, a_rd[0].data) if ML > 1
                               else a_rd[0].data),
            upd_path.h_data.eq(weights.h_rd_data),
        ]
        for name in ("words", "words_m1", "last", "base", "kin", "kout_m1", "chunks_m1",
                     "thresh", "key"):
            m.d.comb += upd_path.layer[name].eq(upd[name])
        wiring.connect(m, upd_path.pick_rd, pick_rd)
        wiring.connect(m, upd_path.row_rd, p_rd_cp)
        wiring.connect(m, upd_path.label_rd, y_rd_cp)
        with m.If(upd_path.done):
            m.d.comb += u_l_nx.eq(u_l + 1)
            with m.If(sweeping & (u_l + 1 == self.layers)):
                m.d.comb += u_l_nx.eq(0)
                m.d.sync += sweeping.eq(0)
        with m.If((eng.upd_restart & ~sweeping) | eng.finish):
            m.d.comb += u_l_nx.eq(0)
        u_run = upd_path.running
        # Phase while only the update machine works (it is hidden under later layers'
        # forward passes otherwise).
        u_phase = Mux(upd_path.reinforcing | sweeping, Phase.REINFORCE, Phase.UPDATE)

        # -- the packet engine: host I/O and the sequence of layers ------------------------------
        m.d.comb += [
            eng.cfg_ok.eq(cfg_ok), eng.layers.eq(self.layers), eng.fan_in.eq(self.width[0]),
            eng.clear_error.eq(self.clear_error),
            eng.layer.base.eq(L_base), eng.layer.kin.eq(L_kin),
            eng.layer.kout_m1.eq(L_kout_m1), eng.layer.hw_m1.eq(L_hw_m1),
            eng.layer.is_last.eq(is_last_layer),
            eng.fwd_busy.eq(fw_busy), eng.fwd_complete.eq(layer_done),
            eng.upd_index.eq(Mux(sweeping, 0, u_l)), eng.upd_phase.eq(u_phase),
            eng.sweeping.eq(sweeping),
            eng.p_rd_data.eq(p_rd.data), eng.h_rd_data.eq(weights.h_rd_data),
        ]
        wiring.connect(m, eng.label_wr, y_wr)
        if G > 1:
            wiring.connect(m, eng.label_group_wr, yg_wr)
        wiring.connect(m, eng.pred_rd, pred_rd)
        wiring.connect(m, eng.p_wr, p_wr)
        wiring.connect(m, eng.t_wr, t_wr)
        wiring.connect(m, eng.t_rd, t_rd)
        wiring.connect(m, eng.host, weights.host)
        # The threshold unit's copy of T is written with T.
        m.d.comb += [
            thr.load.valid.eq(eng.t_wr.en),
            thr.load.payload.index.eq(eng.t_wr.addr),
            thr.load.payload.theta.eq(eng.t_wr.data[:16]),
            thr.load.payload.flip.eq(eng.t_wr.data[16]),
        ]
        with m.If(eng.layer_complete):
            m.d.sync += Array(pick_counts)[cur_l].eq(pick_n)

        # Shared ports: A (the load, the forward pass, the CP updates), P (the forward pass,
        # READ_P) and H (the CP updates and the sweep, READ_H).
        for b in range(len(a_rd)):
            # Only a CP job reads A: a sweep may run beside any layer's forward pass.
            cp_here = u_run & ~upd_path.reinforcing & ((u_l[0] == b) if ML > 1 else 1)
            fw_en = fw_a_we & (fw_wbank == b)
            m.d.comb += [
                a_rd[b].addr.eq(Mux(cp_here, upd_path.a_addr, src.a_rd.addr)),
                a_rd[b].en.eq(cp_here | fw_adv),
            ]
            if b == 0:
                # Region 0 is in bank 0: layer 0's forward pass writes bank 1 meanwhile.
                load = eng.a_load
                if ML > 2:
                    m.d.comb += [
                        a_wr[b].addr.eq(Mux(eng.loading, load.addr, fw_a_addr)),
                        a_wr[b].data.eq(Mux(eng.loading, load.data, aout[:P])),
                        a_wr[b].en.eq(Mux(eng.loading, load.en, fw_en)),
                    ]
                else:
                    # No layer's outputs go to region 2 and up: only the load writes bank
                    # 0, and the layer outputs' bus reaches one bank.
                    m.d.comb += [a_wr[b].addr.eq(load.addr), a_wr[b].data.eq(load.data),
                                 a_wr[b].en.eq(Mux(eng.loading, load.en, 0))]
            else:
                m.d.comb += [a_wr[b].addr.eq(fw_a_addr), a_wr[b].data.eq(aout[:P]),
                             a_wr[b].en.eq(fw_en)]
        m.d.comb += [
            p_rd.addr.eq(Mux(eng.p_rd_host, eng.p_rd_addr, L_row + c_k)),
            y_rd.addr.eq(c_mu),
            # Selected by registers only (READ_H runs while the update machine is idle), so
            # the address reaches the block RAMs without the engine's state decoder.
            weights.h_rd_addr.eq(Mux(u_run, upd_path.h_addr, eng.h_rd_addr)),
            weights.update.valid.eq(upd_path.update.valid),
            weights.update.payload.addr.eq(upd_path.update.payload.addr),
            weights.update.payload.h.eq(upd_path.update.payload.h),
            weights.update.payload.w.eq(upd_path.update.payload.w),
        ]

        # A layer's forward pass starts (after the datapath's own assignments: a start wins).
        with m.If(eng.fwd_start):
            m.d.comb += [src.start.eq(1), src.w_base.eq(Array(cfg.bases)[eng.fwd_layer]),
                         src.a_base.eq((eng.fwd_layer >> 1) * region),
                         src.count.eq(eng.fwd_count), drain.start.eq(1)]
            m.d.sync += [c_k.eq(0), c_mu.eq(0), cls_mu.eq(0), abuf.eq(0)]
            if G > 1:
                m.d.sync += c_left.eq(eng.fwd_count)

        with m.If(flush):
            m.d.sync += [s1_valid.eq(0), t["valid"].eq(0), s2_valid.eq(0), aout_mask.eq(0)]

        return ResetInserter({"sync": self.soft_reset})(m)
