"""Update path: one layer's CP updates, or one layer's reinforcement sweep, through the
update engine and back into the weight store."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from xnorlearn.hw._arith import adder_tree, shifted_terms
from xnorlearn.hw._params import check_int as _check_int
from xnorlearn.hw.cp_sequencer import CpSequencer
from xnorlearn.hw.layer_config import layer_shapes
from xnorlearn.hw.prng import Mix32
from xnorlearn.hw.sweep import ReinforceSweep
from xnorlearn.hw.update import THRESHOLD_BITS, UpdateEngine, UpdateOp
from xnorlearn.hw.weights import weight_word_layout
from xnorlearn.sw.golden.prng import GOLDEN

__all__ = ["UpdatePath"]


class UpdatePath(wiring.Component):
    """The updates of one layer at a time: its CP updates, or its reinforcement sweep.

    Two kinds of job, one at a time, each for the layer ``index``:

    * ``go`` (the layer's pick list is complete and a ``TRAIN`` runs): the
      :class:`CpSequencer` over the pick list;
    * ``sweep``, once the sweep key's input ``key + step * 0x9E3779B9`` has been computed
      for this ``(step, index)``: the path hashes it into the sweep key with a
      :class:`~xnorlearn.hw.prng.Mix32` and runs the :class:`ReinforceSweep` over every
      word of the layer.

    Each word's operands (the pattern's ``A`` word for a CP word, the bits of the weights
    its draws reinforce for a sweep word) wait for its ``H`` word, read with ``h_read_latency`` cycles of latency, then
    the :class:`~xnorlearn.hw.update.UpdateEngine` updates it and the result leaves on
    ``update``, to be written to ``H`` and ``W``. ``done`` rises once the job's last word
    has left the engine, so the next job's first ``H`` read comes after every write-back
    of this one.

    Run as ``go`` of a layer then ``sweep`` of the same layer and ``step``, this is, word
    for word, the golden model's :func:`~xnorlearn.sw.golden.literal.cp_step` over the
    pick list in order, then :func:`~xnorlearn.sw.golden.literal.reinforce_step` of every
    weight with the draws of :func:`~xnorlearn.sw.golden.prng.reinforce_draws`. A sweep
    changes no sign (it moves ``h`` away from 0), so ``W`` reads the same during it.

    Parameters
    ----------
    lanes, draw_lanes, h_bits : int
        Weights per word (32..1024), reinforcement draws per cycle (a power of two
        dividing ``lanes``), bits of a hidden weight (2..16).
    max_batch, max_width, classes, a_words : int
        As for :class:`CpSequencer`.
    width_bits : int
        Bits of a layer size, 1..16.
    addr_bits, a_depth, list_depth, row_depth : int
        Address bits of ``H``, words of ``A``, depth of the pick list and of the
        classifier rows.
    max_layers : int
        1..8 (the width of ``index``).
    h_read_latency : int
        Cycles from ``h_addr`` to ``h_data``, 1..8.

    Members
    -------
    go : ``In(1)``
        Run the CP updates of layer ``index`` (sampled while idle; ``sweep`` wins).
    sweep : ``In(1)``
        Run the reinforcement sweep of layer ``index`` with ``step``.
    index : ``In(range(max_layers + 1))``
        The layer.
    step : ``In(32)``
        The minibatch counter of the reinforcement draws.
    layer : ``In(StructLayout)``
        The layer's ``words``, ``words_m1``, ``last``, ``base``, ``kin``, ``kout_m1``,
        ``chunks_m1`` (as :class:`~xnorlearn.hw.layer_config.LayerConfig`'s ``upd``),
        ``thresh`` and ``key`` (``stream_key(seed, 1, index)``); static while it runs.
    picks, list_base, row_base, a_base : ``In``
        The layer's pick count and the bases of its pick list, classifier rows and ``A``
        region.
    pick_rd, row_rd, label_rd : ``In(ReadPort.Signature(...))``
        The :class:`CpSequencer`'s read ports.
    a_addr : ``Out``
    a_data : ``In(lanes)``
        ``A`` read, one cycle of latency; ``a_addr`` is valid while ``running`` and not
        ``reinforcing``.
    h_addr : ``Out(addr_bits)``
    h_data : ``In(lanes * h_bits)``
        ``H`` read, ``h_read_latency`` cycles; ``h_addr`` is valid while ``running``.
    update : ``Out(stream.Signature(weight_word_layout(...), always_ready=True))``
        The updated words.
    running : ``Out(1)``
        A job runs: the path reads ``H``, and ``A`` unless ``reinforcing``.
    reinforcing : ``Out(1)``
        A sweep runs.
    done : ``Out(1)``
        The job's words are written: the caller moves ``index`` on (and drops ``go`` or
        ``sweep``) in this cycle.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of range.
    """

    def __init__(self, *, lanes, draw_lanes, h_bits, max_batch, max_width, classes,
                 a_words, width_bits, addr_bits, a_depth, list_depth, row_depth, max_layers,
                 h_read_latency):
        self._h_read_latency = _check_int("h_read_latency", h_read_latency, 1, 8)
        self._max_layers = _check_int("max_layers", max_layers, 1, 8)
        self._engine = UpdateEngine(lanes=lanes, h_bits=h_bits,
                                    tag_shape=data.StructLayout({"addr": addr_bits}))
        self._cp = CpSequencer(
            lanes=lanes, max_batch=max_batch, max_width=max_width, classes=classes,
            a_words=a_words, addr_bits=addr_bits, a_depth=a_depth,
            list_depth=list_depth, row_depth=row_depth,
            hazard=h_read_latency + self._engine.latency)
        self._sweep = ReinforceSweep(lanes=lanes, draw_lanes=draw_lanes, width_bits=width_bits,
                                     max_words=a_words, addr_bits=addr_bits, mul_stages=3)
        self._lanes = lanes
        shapes = layer_shapes(lanes=lanes, max_words=a_words, width_bits=width_bits,
                              draw_lanes=draw_lanes)
        self._layer = data.StructLayout({
            **{name: shapes[name] for name in ("words", "words_m1", "last", "kin", "kout_m1",
                                               "chunks_m1")},
            "base": 32, "thresh": THRESHOLD_BITS, "key": 32})
        cp_ports = self._cp.signature.members
        super().__init__({
            "go": In(1),
            "sweep": In(1),
            "index": In(range(max_layers + 1)),
            "step": In(32),
            "layer": In(self._layer),
            "picks": In(range(list_depth + 1)),
            "list_base": In(range(list_depth)),
            "row_base": In(range(row_depth)),
            "a_base": In(range(a_depth + 1)),
            "pick_rd": cp_ports["pick_rd"],
            "row_rd": cp_ports["row_rd"],
            "label_rd": cp_ports["label_rd"],
            "a_addr": Out(range(a_depth + 1)),
            "a_data": In(lanes),
            "h_addr": Out(addr_bits),
            "h_data": In(lanes * h_bits),
            "update": Out(stream.Signature(weight_word_layout(
                lanes=lanes, h_bits=h_bits, depth=1 << addr_bits), always_ready=True)),
            "running": Out(1),
            "reinforcing": Out(1),
            "done": Out(1),
        })

    h_read_latency = property(lambda self: self._h_read_latency)
    max_layers = property(lambda self: self._max_layers)

    def elaborate(self, platform):
        m = Module()
        P = self._lanes
        m.submodules.engine = eng = self._engine
        m.submodules.cp = cps = self._cp
        m.submodules.sweep = sweep = self._sweep
        m.submodules.mix = mix = Mix32(lanes=1, soft_multipliers=True)
        geo = self.layer
        run = Signal()

        # CP updates: the pick list streamed as the words to update.
        sweeping = Signal()           # the job is a sweep
        m.d.comb += [
            cps.run.eq(run & ~sweeping),
            cps.picks.eq(self.picks),
            cps.list_base.eq(self.list_base),
            cps.row_base.eq(self.row_base),
            cps.a_base.eq(self.a_base),
            cps.layer.words.eq(geo.words),
            cps.layer.words_m1.eq(geo.words_m1),
            cps.layer.last.eq(geo.last),
            cps.layer.base.eq(geo.base),
        ]
        for name in ("pick_rd", "row_rd", "label_rd"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(cps, name))
        cp = cps.o
        # A CP job ends two cycles after the sequencer's `done`, when its last word is
        # counted in `inflight`, and once that count is back to zero.
        cp_end = Signal()
        cp_done_d = Signal()
        with m.If(run & ~sweeping):
            m.d.sync += [cp_done_d.eq(cps.done), cp_end.eq(cp_done_d)]

        m.d.comb += [
            sweep.base.eq(geo.base),
            sweep.layer.kin.eq(geo.kin),
            sweep.layer.kout_m1.eq(geo.kout_m1),
            sweep.layer.words_m1.eq(geo.words_m1),
            sweep.layer.last.eq(geo.last),
            sweep.layer.chunks_m1.eq(geo.chunks_m1),
            sweep.threshold.eq(geo.thresh),
            sweep.enable.eq(run & sweeping),
        ]
        rf = sweep.o

        # The engine's operands wait in `e1`, `e2` for H, which is read with two cycles more
        # latency than A.
        e0 = Signal(eng.input_layout)
        e_prev, v_prev = e0, cp.valid | rf.valid
        for d in range(1, self._h_read_latency):
            e_d = Signal(eng.input_layout, name=f"e{d}", reset_less=True)
            v_d = Signal(name=f"e{d}_valid")
            # Operands load only with a word (the engine never stalls).
            with m.If(v_prev):
                m.d.sync += e_d.eq(e_prev)
            m.d.sync += v_d.eq(v_prev)
            e_prev, v_prev = e_d, v_d
        # Words from their H read to their write-back: counted from the issue registers,
        # which keeps the issue decisions off this adder.
        inflight = Signal(16)
        m.d.sync += inflight.eq(inflight + (cp.valid | rf.valid) - eng.o.valid)
        count = Mux(cp.valid, cp.payload.count, rf.payload.count)
        m.d.comb += [
            e0.op.eq(Mux(cp.valid, UpdateOp.CP, UpdateOp.REINFORCE)),
            e0.a.eq(self.a_data),
            e0.rho.eq(cp.payload.rho),
            e0.mask.eq(Cat(*(count > n for n in range(P)))),
            e0.hit.eq(rf.payload.hit),
            e0.tag.addr.eq(Mux(cp.valid, cp.payload.addr, rf.payload.addr)),
            eng.i.valid.eq(v_prev),
            eng.i.payload.eq(e_prev),
            eng.i.payload.h.as_value().eq(self.h_data),
            eng.o.ready.eq(1),
            mix.o.ready.eq(1),
            self.update.valid.eq(eng.o.valid),
            self.update.payload.addr.eq(eng.o.payload.tag.addr),
            self.update.payload.h.eq(eng.o.payload.h.as_value()),
            self.update.payload.w.eq(eng.o.payload.w),
            self.a_addr.eq(cps.a_addr),
            # A CP word's H read goes out while it is active, a sweep word's as its draws
            # complete.
            self.h_addr.eq(Mux(cps.active, cps.h_addr, sweep.h_addr)),
            self.running.eq(run),
            self.reinforcing.eq(run & sweeping),
        ]
        finished = run & Mux(sweeping, sweep.done, cp_end) & (inflight == 0)

        # The sweep key's input `key + step * GOLDEN`: `step` copied into a register, the
        # product by an adder tree of its shifted copies, then plus the key. `seed_tag`
        # names the (step, index) it was made from, and a layer starts only once that is
        # the current one.
        tag_now = Cat(self.step, self.index)
        seed_step = Signal(32, reset_less=True)
        m.d.sync += seed_step.eq(self.step)
        seed_prod, seed_levels = adder_tree(m, shifted_terms(seed_step, GOLDEN, 32), 32,
                                            "seed_prod")
        seed_key, seed_tag = geo.key, tag_now
        for k in range(1 + seed_levels):
            key = Signal(32, name=f"seed_key{k}", reset_less=True)
            tag = Signal(len(tag_now), name=f"seed_tag{k}")
            m.d.sync += [key.eq(seed_key), tag.eq(seed_tag)]
            seed_key, seed_tag = key, tag
        seed = Signal(32, reset_less=True)
        m.d.sync += seed.eq((seed_key + seed_prod)[:32])
        seed_tag_prev, seed_tag = seed_tag, Signal(len(tag_now), name="seed_tag")
        m.d.sync += seed_tag.eq(seed_tag_prev)
        seed_ok = seed_tag == tag_now

        with m.FSM(name="update"):
            with m.State("U_IDLE"):
                start_sweep = self.sweep & seed_ok
                m.d.comb += [mix.i.valid.eq(start_sweep), mix.i.payload.x[0].eq(seed)]
                m.d.sync += [cp_end.eq(0), cp_done_d.eq(0)]
                m.d.comb += [cps.clear.eq(1), sweep.clear.eq(1)]
                with m.If(start_sweep & mix.i.ready):
                    m.d.sync += sweeping.eq(1)
                    m.next = "U_RUN"
                with m.Elif(self.go & ~self.sweep):
                    m.d.sync += sweeping.eq(0)
                    m.next = "U_RUN"
            with m.State("U_RUN"):
                m.d.comb += [run.eq(1), sweep.key.valid.eq(mix.o.valid),
                             sweep.key.payload.eq(mix.o.payload.x[0])]
                with m.If(finished):
                    m.d.comb += self.done.eq(1)
                    m.next = "U_IDLE"
        return m
