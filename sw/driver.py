"""The host driver: one accelerator, any transport.

:class:`Device` speaks the accelerator's register map and packet protocol
(``docs/architecture.md``) over a :class:`~xnorlearn.sw.transport.Transport`, so the same
code trains on a PYNQ board, on the fast simulated board, in a cocotb bench or over a
serial link:

>>> dev = Device(transport)                     # identifies the build from its registers
>>> dev.load(model)                             # a golden-model state: config, H, P, T, STEP
>>> errors = dev.train_batch(a0, y)             # one TRAIN packet
>>> preds, errors = dev.infer(a0, y)            # one INFER packet
>>> dev.read_into(model)                        # H, P, T and STEP back into the model

:class:`DeviceModel` wraps a device in the model API of the golden
:class:`~xnorlearn.sw.golden.model.BMLP` (``train_batch``, ``end_epoch``, ``predict``,
``save``) so the host training loop (:func:`xnorlearn.sw.train.train`) runs on it
unchanged, optionally with the golden model trained beside it and compared weight for
weight.

Every wait has a deadline. A refused packet raises :class:`PacketRefused` naming the
``ERROR_CODE``; the driver clears the error, so the device is usable again. A wait that
runs out raises :class:`DeviceTimeout` with ``STATUS`` and ``ERROR_CODE`` in its message,
after resetting the transport and soft-resetting the accelerator.
"""

import contextlib
import dataclasses
import time

import numpy as np

from xnorlearn.contract import (ID_VALUE, LIMITS, VERSION_MAJOR, Build, ErrorCode, Opcode,
                                Phase, RegisterMap)
from xnorlearn.sw import protocol
from xnorlearn.sw.golden.model import check_batch
from xnorlearn.sw.golden.prng import STREAM_REINFORCE, stream_key
from xnorlearn.sw.transport import TransportError, TransportTimeout

__all__ = ["Device", "DeviceModel", "DeviceError", "DeviceTimeout", "PacketRefused",
           "BuildMismatch", "Status", "Mismatch", "COUNTERS", "CYCLE_COUNTERS",
           "packet_cycle_limit", "check_fits", "build_from_words", "first_difference"]

#: Counters compared with the golden model (register names).
COUNTERS = ("PATTERNS", "ERRORS", "STEP")
#: Cycle counters (only reported).
CYCLE_COUNTERS = ("CYCLES", "CYCLES_FORWARD", "CYCLES_UPDATE", "CYCLES_REINFORCE", "CYCLES_IO")
_MASK32 = 0xFFFFFFFF
_IDENTITY = ("ID", "VERSION", "BUILD0", "BUILD1", "BUILD2", "BUILD3")


class DeviceError(RuntimeError):
    """The accelerator did something the driver cannot go on from."""


class DeviceTimeout(DeviceError):
    """A wait on the accelerator ran past its deadline (the device was reset afterwards)."""


class BuildMismatch(DeviceError):
    """The device is not an xnorlearn accelerator of a compatible version or build."""


class PacketRefused(DeviceError):
    """The accelerator refused a packet (``STATUS.error``).

    Members
    -------
    code : ErrorCode
        ``ERROR_CODE`` as the device reported it.
    what : str
        The packet that was refused.
    """

    def __init__(self, what, code):
        self.what = what
        self.code = ErrorCode(code) if code in ErrorCode._value2member_map_ else code
        name = self.code.name if isinstance(self.code, ErrorCode) else f"unknown code {code}"
        text = self.code.description if isinstance(self.code, ErrorCode) else ""
        super().__init__(f"{what} refused by the accelerator: ERROR_CODE {int(code)} "
                         f"{name} ({text})")


@dataclasses.dataclass(frozen=True)
class Status:
    """``STATUS`` and ``ERROR_CODE`` decoded."""

    busy: bool
    error: bool
    phase: Phase
    error_code: int
    reinforcing: bool = False

    def __str__(self):
        code = (ErrorCode(self.error_code).name if self.error_code in ErrorCode._value2member_map_
                else str(self.error_code))
        phase = Phase(self.phase).name if self.phase in Phase._value2member_map_ else self.phase
        return (f"STATUS busy={int(self.busy)} error={int(self.error)} "
                f"reinforcing={int(self.reinforcing)} phase={phase}, ERROR_CODE {code}")


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """The first difference between what the accelerator gave and the golden model.

    Attributes
    ----------
    what : str
        ``"H"``, ``"P"``, ``"prediction"``, ``"TRAIN errors"``, ``"INFER errors"`` or a
        counter register (``"PATTERNS"``, ``"ERRORS"``, ``"STEP"``).
    layer : int or None
        Hidden layer (from 0) of a weight; ``None`` otherwise.
    index : tuple of int or None
        ``(neuron, input)`` of ``H``, ``(neuron, class)`` of ``P``, ``(pattern,)`` of a
        prediction; ``None`` for a scalar. ``"shape"`` differences give the shapes.
    expected, got : int or tuple
        The golden model's value and the device's.
    batch : int or None
        Minibatch after which it was seen (1-based; 0: after loading).
    """

    what: str
    layer: object
    index: object
    expected: object
    got: object
    batch: object = None

    def __str__(self):
        where = "" if self.batch is None else (
            "after loading: " if self.batch == 0 else f"after minibatch {self.batch}: ")
        return (f"{where}{self.what} layer {self.layer}, index {self.index}, "
                f"expected {self.expected}, got {self.got}")

    def to_dict(self):
        return dataclasses.asdict(self)


def first_difference(expected, got):
    """``(index, expected value, got value)`` of the first element (C order) where two
    arrays differ, ``("shape", expected shape, got shape)`` if their shapes differ, or
    ``None`` if they are equal."""
    expected, got = np.asarray(expected), np.asarray(got)
    if expected.shape != got.shape:
        return "shape", expected.shape, got.shape
    diff = np.flatnonzero(expected.reshape(-1) != got.reshape(-1))
    if diff.size == 0:
        return None
    index = np.unravel_index(int(diff[0]), expected.shape)
    return (tuple(int(i) for i in index), int(expected[index]), int(got[index]))


def packet_cycle_limit(build, sizes, batch_size):
    """A generous bound on the cycles one packet of network ``sizes`` takes on ``build``,
    the last ``TRAIN``'s reinforcement sweeps that it may wait for included."""
    words = sum(k * -(-kin // build.lanes) for kin, k in zip(sizes, sizes[1:]))
    io = batch_size * (1 + -(-sizes[0] // 32)) + sum(
        k * -(-kin // 4) for kin, k in zip(sizes, sizes[1:]))
    sweeps = words * (build.lanes // build.draw_lanes)
    return 8 * (batch_size * words + words * build.max_groups + io + sweeps) + 200_000


def build_from_words(words):
    """The :class:`~xnorlearn.contract.Build` that ``BUILD0..BUILD3`` words report.

    ``draw_lanes`` is not reported (results do not depend on it); the returned build has
    the largest power of two up to 16 that divides ``lanes``.

    Raises
    ------
    BuildMismatch
        If the words do not describe a valid build.
    """
    regmap = RegisterMap(Build())
    fields = {}
    for name in ("BUILD0", "BUILD1", "BUILD2", "BUILD3"):
        fields.update(regmap.decode(name, words[name]))
    if fields["z_bits"] == 0:
        fields["z_bits"] = None
    lanes = fields["lanes"]
    fields["draw_lanes"] = next((d for d in (16, 8, 4, 2, 1) if lanes and lanes % d == 0), 1)
    try:
        return Build(**fields)
    except (TypeError, ValueError) as e:
        raise BuildMismatch(f"the device reports an impossible build ({e}): "
                            + ", ".join(f"{k}={v}" for k, v in fields.items())) from None


def check_fits(build, config, batch_size=None):
    """Refuse a network (a :class:`~xnorlearn.sw.golden.config.NetworkConfig`) that does
    not fit ``build``.

    Raises
    ------
    ValueError
        Naming the first limit the network exceeds, with the allowed range.
    """
    sizes = config.sizes
    checks = [
        ("hidden layers", config.layers, 1, build.max_layers, "max_layers"),
        ("inputs K_0", sizes[0], 1, build.max_fan_in, "max_fan_in"),
        ("classes", config.classes, build.classes, build.classes, "classes"),
    ]
    checks += [(f"width of layer {l}", k, 1, build.max_width, "max_width")
               for l, k in enumerate(sizes[1:])]
    checks += [(f"groups of layer {l} (K/gamma = {k}/{g})", -(-k // g), 1, build.max_groups,
                "max_groups") for l, (k, g) in enumerate(zip(sizes[1:], config.gamma))]
    gamma_max = (1 << RegisterMap(build)["GAMMA_0"].fields[0].width) - 1
    checks += [(f"gamma of layer {l}", g, 1, min(gamma_max, k), "the GAMMA field and the width")
               for l, (k, g) in enumerate(zip(sizes[1:], config.gamma))]
    words = sum(k * -(-kin // build.lanes) for kin, k in zip(sizes, sizes[1:]))
    checks.append((f"weight words (sum K_l * ceil(K_(l-1) / {build.lanes}))", words, 1,
                   build.weight_words, "weight_words"))
    if batch_size is not None:
        checks.append(("patterns per minibatch", batch_size, 1, build.max_batch, "max_batch"))
    for what, value, lo, hi, limit in checks:
        if not lo <= value <= hi:
            rng = f"{lo}" if lo == hi else f"{lo}..{hi}"
            raise ValueError(f"the network does not fit the accelerator: {what} = {value}, "
                             f"the build allows {rng} ({limit})")
    if config.h_bits != build.h_bits:
        raise ValueError(f"the network has {config.h_bits}-bit hidden weights, the build "
                         f"{build.h_bits}-bit (h_bits)")
    if config.z_bits != build.z_bits:
        raise ValueError(f"the network saturates pre-activations to z_bits={config.z_bits}, "
                         f"the build to {build.z_bits} (z_bits; None = exact)")
    for l, (k, g) in enumerate(zip(sizes[1:], config.gamma)):
        if k % g:
            raise ValueError(f"gamma of layer {l} ({g}) must divide its width {k}")


class Device:
    """An xnorlearn accelerator behind a transport.

    Parameters
    ----------
    transport : Transport
    build : Build, optional
        The build the caller expects (from a bitstream's JSON, say); the device's
        ``BUILD*`` registers must match it. By default the build is read from the device.
    timeout : float
        Seconds allowed for a register access, and added to every packet's allowance.
    cycles_per_second : float
        The slowest rate the device is expected to run at; a packet's deadline is
        ``timeout`` plus its cycle bound (:func:`packet_cycle_limit`) at this rate. Default:
        the transport's ``cycles_per_second`` attribute, else 1e5.

    Members
    -------
    build : Build
    regmap : RegisterMap
    transport : Transport
    config : NetworkConfig or None
        The network configured by :meth:`configure`.

    Raises
    ------
    BuildMismatch
        If ``ID`` is not ``"XNRL"``, the major version differs from the driver's, or the
        build differs from ``build``.
    DeviceTimeout
        If the registers do not answer.
    """

    def __init__(self, transport, *, build=None, timeout=10.0, cycles_per_second=None):
        if build is not None and not isinstance(build, Build):
            raise TypeError(f"build must be a xnorlearn.contract.Build, got {build!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self._transport = transport
        self._timeout = float(timeout)
        self._rate = float(cycles_per_second or getattr(transport, "cycles_per_second", 1e5))
        self._config = None
        self._sizes = None
        words = {}
        probe = RegisterMap(Build())
        for name in _IDENTITY:
            words[name] = self._raw_read(probe.offsets()[name], name)
        if words["ID"] != ID_VALUE:
            raise BuildMismatch(f"{transport.name}: ID reads {words['ID']:#010x}, not an xnorlearn "
                                f"accelerator (expected {ID_VALUE:#010x}, 'XNRL')")
        major = words["VERSION"] >> 16
        if major != VERSION_MAJOR:
            raise BuildMismatch(f"{transport.name}: register map version {major}."
                                f"{words['VERSION'] & 0xFFFF}, this driver speaks version "
                                f"{VERSION_MAJOR}.x")
        found = build_from_words(words)
        if build is not None:
            try:
                RegisterMap(build).check_build(words)
            except ValueError as e:
                raise BuildMismatch(f"{transport.name}: {e}") from None
        self._build = build if build is not None else found
        self._regmap = RegisterMap(self._build)
        self._offsets = self._regmap.offsets()

    transport = property(lambda self: self._transport)
    build = property(lambda self: self._build)
    regmap = property(lambda self: self._regmap)
    config = property(lambda self: self._config)

    # -- registers ---------------------------------------------------------------------------

    def _raw_read(self, offset, name):
        try:
            return self._transport.read32(offset, timeout=self._timeout)
        except TransportTimeout:
            raise DeviceTimeout(f"{self._transport.name}: no answer to the read of {name} "
                                f"within {self._timeout} s") from None

    def read(self, name):
        """The word of register ``name``."""
        return self._raw_read(self._offsets[name], name)

    def write(self, name, value):
        """Write ``value`` (a word) to register ``name``."""
        try:
            self._transport.write32(self._offsets[name], int(value) & _MASK32,
                                    timeout=self._timeout)
        except TransportTimeout:
            raise DeviceTimeout(f"{self._transport.name}: no answer to the write of {name} "
                                f"within {self._timeout} s") from None

    def write_field(self, name, value):
        """Write register ``name`` whose single field is set to ``value``."""
        field = self._regmap[name].fields[0].name
        self.write(name, self._regmap.encode(name, **{field: int(value)}))

    def status(self):
        """``STATUS`` and ``ERROR_CODE`` as a :class:`Status`."""
        st = self._regmap.decode("STATUS", self.read("STATUS"))
        return Status(busy=bool(st["busy"]), error=bool(st["error"]), phase=st["phase"],
                      error_code=self._regmap.decode("ERROR_CODE",
                                                     self.read("ERROR_CODE"))["error_code"],
                      reinforcing=bool(st["reinforcing"]))

    def wait_idle(self):
        """Wait until the device is neither busy nor reinforcing (the last ``TRAIN``'s
        reinforcement sweeps run after its response), so that the cycle counters hold
        all of its work.

        Raises
        ------
        DeviceTimeout
            If it is still busy after the deadline of one minibatch of the largest size.
        """
        deadline = time.monotonic() + self._deadline(self._build.max_batch)
        while True:
            st = self.status()
            if not (st.busy or st.reinforcing):
                return st
            if time.monotonic() >= deadline:
                raise DeviceTimeout(f"{self._transport.name}: still {st} after "
                                    f"{self._deadline(self._build.max_batch):.1f} s")

    def counters(self):
        """``{name: value}`` of ``PATTERNS``, ``ERRORS``, ``STEP`` and the cycle counters,
        read once the device is idle (:meth:`wait_idle`), so that they count the same
        cycles."""
        self.wait_idle()
        return {name: self.read(name) for name in COUNTERS + CYCLE_COUNTERS}

    def clear_error(self):
        self.write("CONTROL", self._regmap.encode("CONTROL", clear_error=1))

    def soft_reset(self, *, keep_step=True):
        """Abandon the packets in flight, return the core to idle and clear its error and
        counters (configuration registers and weights are kept). ``STEP`` is written back
        unless ``keep_step`` is False, so that training can go on."""
        step = None
        if keep_step:
            try:
                step = self.read("STEP")
            except DeviceError:
                pass
        self._transport.reset()
        self.write("CONTROL", self._regmap.encode("CONTROL", soft_reset=1))
        self._transport.reset()
        if step is not None:
            self.write("STEP", step)

    # -- configuration and state -------------------------------------------------------------

    def check_fits(self, config, batch_size=None):
        """:func:`check_fits` against this device's build."""
        check_fits(self._build, config, batch_size)

    def configure(self, config, *, thresholds, step=0):
        """Write the configuration registers of network ``config`` (inactive layers 0),
        the reinforcement thresholds of the current epoch and ``STEP``.

        Raises
        ------
        ValueError
            If the network does not fit the build (before anything is written).
        """
        self.check_fits(config)
        if len(thresholds) != config.layers:
            raise ValueError(f"thresholds must have one entry per layer ({config.layers}), "
                             f"got {len(thresholds)}")
        self.write_field("LAYERS", config.layers)
        self.write_field("INPUTS", config.sizes[0])
        robust_max = (1 << self._regmap["ROBUST_0"].fields[0].width) - 1
        for l in range(self._build.max_layers):
            active = l < config.layers
            values = {
                "WIDTH": config.sizes[l + 1] if active else 0,
                "GAMMA": config.gamma[l] if active else 0,
                "ROBUST": min(config.robustness[l], robust_max) if active else 0,
                "THRESH": int(thresholds[l]) if active else 0,
                "KEY": stream_key(config.seed, STREAM_REINFORCE, l) if active else 0,
            }
            for reg, value in values.items():
                self.write_field(f"{reg}_{l}", value)
        self.write("STEP", int(step) & _MASK32)
        self._config = config
        self._sizes = config.sizes

    def set_thresholds(self, thresholds):
        """Write the reinforcement thresholds (``THRESH_l``) of a new epoch."""
        self._need_config()
        for l, t in enumerate(thresholds):
            self.write_field(f"THRESH_{l}", int(t))

    def load(self, model):
        """Configure ``model``'s network and write its whole state: ``H``, ``P``, the
        thresholds ``theta``/``flip`` of every layer, its reinforcement thresholds and
        ``STEP``."""
        cfg = model.config
        self.configure(cfg, thresholds=model.thresholds, step=model.step)
        for l in range(cfg.layers):
            self._write_packet(protocol.write_h_packet(l, model.H[l], h_bits=cfg.h_bits),
                               f"WRITE_H of layer {l}")
            self._write_packet(protocol.write_p_packet(l, model.P[l]), f"WRITE_P of layer {l}")
            self._write_packet(protocol.write_t_packet(l, model.theta[l], model.flip[l]),
                               f"WRITE_T of layer {l}")

    def read_h(self, layer):
        """``H`` of ``layer`` (protocol numbering, from 0) as ``int64`` ``(K_l, K_{l-1})``."""
        k, fan_in = self._layer_shape(layer)
        words = self._request(protocol.read_h_packet(layer, k), k * -(-fan_in // 4),
                              f"READ_H of layer {layer}")
        return self._parse(Opcode.READ_H, words, width=k, fan_in=fan_in).astype(np.int64)

    def read_p(self, layer):
        """``P`` of ``layer`` as ±1 ``int64`` ``(K_l, classes)``."""
        k, _ = self._layer_shape(layer)
        words = self._request(protocol.read_p_packet(layer, k), k, f"READ_P of layer {layer}")
        return self._parse(Opcode.READ_P, words, width=k,
                           classes=self._config.classes).astype(np.int64)

    def read_t(self, layer):
        """``(theta, flip)`` of ``layer``."""
        k, _ = self._layer_shape(layer)
        words = self._request(protocol.read_t_packet(layer, k), k, f"READ_T of layer {layer}")
        return self._parse(Opcode.READ_T, words, width=k)

    def read_weights(self):
        """``(H, P)``: lists over the layers."""
        self._need_config()
        layers = range(self._config.layers)
        return [self.read_h(l) for l in layers], [self.read_p(l) for l in layers]

    def read_into(self, model):
        """Copy the device's ``H``, ``P``, ``theta``/``flip`` and ``STEP`` into ``model``
        (same configuration), so it can be saved or compared."""
        self._need_config()
        if model.config != self._config:
            raise ValueError("the model's configuration differs from the device's")
        for l in range(self._config.layers):
            model.H[l] = self.read_h(l).astype(np.int32)
            model.P[l] = self.read_p(l).astype(np.int8)
            theta, flip = self.read_t(l)
            model.theta[l] = theta.astype(np.int32)
            model.flip[l] = flip.astype(bool)
        model.step = self.read("STEP")
        model._sync()
        return model

    def compare_weights(self, model, batch=None):
        """The first :class:`Mismatch` between the device's ``H``/``P`` and ``model``'s
        (whole matrices, element by element), or ``None``."""
        H, P = self.read_weights()
        for what, want_layers, got_layers in (("H", model.H, H), ("P", model.P, P)):
            for l, (want, got) in enumerate(zip(want_layers, got_layers)):
                diff = first_difference(want, got)
                if diff is not None:
                    return Mismatch(what, l, *diff, batch)
        return None

    # -- training and inference --------------------------------------------------------------

    def _batch(self, a0, y):
        self._need_config()
        if y is None:
            y = np.zeros(len(np.asarray(a0)), dtype=np.int64)
        a0, y = check_batch(self._config, a0, y)
        if not 1 <= len(y) <= self._build.max_batch:
            raise ValueError(f"a minibatch of {len(y)} patterns; the build takes "
                             f"1..{self._build.max_batch} (max_batch)")
        return a0, y

    def train_batch(self, a0, y):
        """Train one minibatch (``a0`` ±1 ``(n, K_0)``, labels ``y``); returns the number of
        patterns whose last-layer prediction was wrong before the update."""
        a0, y = self._batch(a0, y)
        packet = protocol.train_packet(a0, y, classes=self._config.classes)
        words = self._request(packet, 1, "TRAIN", batch=len(y))
        return self._parse_response(protocol.parse_train_response, words, len(y))

    def infer(self, a0, y=None):
        """``(predictions, errors)`` of one INFER packet (``errors`` against ``y``,
        default all 0)."""
        a0, y = self._batch(a0, y)
        packet = protocol.infer_packet(a0, y, classes=self._config.classes)
        words = self._request(packet, len(y) + 1, "INFER", batch=len(y))
        return self._parse_response(protocol.parse_infer_response, words, len(y),
                                    classes=self._config.classes)

    def predict(self, a0):
        """Predicted classes of any number of patterns (INFER packets of ``max_batch``)."""
        a0, _ = check_batch(self._need_config(), a0)
        n = self._build.max_batch
        return np.concatenate([self.infer(a0[i:i + n])[0] for i in range(0, len(a0), n)]) \
            if len(a0) else np.zeros(0, np.int64)

    def train_batches(self, batches, on_batch=None):
        """Train a sequence of ``(a0, y)`` minibatches, the next packet queued while one
        trains where the transport allows it; returns the list of errors.

        ``on_batch(i, errors)`` is called after each response.
        """
        self._need_config()
        classes = self._config.classes
        packets = []
        for a0, y in batches:
            a0, y = self._batch(a0, y)
            packets.append((protocol.train_packet(a0, y, classes=classes), len(y)))
        depth = 2 if self._transport.queued_sends else 1
        staged = self._transport.stage([p for p, _ in packets])
        errors = []
        sent = 0
        for i, (packet, n) in enumerate(packets):
            while sent < min(i + depth, len(packets)):
                self._send(staged[sent], "TRAIN", packets[sent][1])
                sent += 1
            words = self._recv(1, "TRAIN", n)
            errors.append(self._parse_response(protocol.parse_train_response, words, n))
            if on_batch is not None:
                on_batch(i, errors[-1])
        return errors

    # -- packets -----------------------------------------------------------------------------

    def _need_config(self):
        if self._config is None:
            raise DeviceError("no network configured: call configure() or load() first")
        return self._config

    def _layer_shape(self, layer):
        cfg = self._need_config()
        if not 0 <= layer < cfg.layers:
            raise ValueError(f"layer must be in 0..{cfg.layers - 1}, got {layer}")
        return cfg.sizes[layer + 1], cfg.sizes[layer]

    def _deadline(self, batch):
        sizes = self._sizes or (self._build.max_fan_in, self._build.max_width)
        cycles = packet_cycle_limit(self._build, sizes, batch)
        return self._timeout + cycles / self._rate

    def _parse(self, opcode, words, **kw):
        try:
            return protocol.parse_read_response(opcode, words, **kw)
        except ValueError as e:
            raise DeviceError(f"malformed {Opcode(opcode).name} response: {e}") from None

    def _parse_response(self, parse, words, *args, **kw):
        try:
            return parse(words, *args, **kw)
        except ValueError as e:
            raise DeviceError(f"malformed response: {e}") from None

    def _send(self, packet, what, batch=1):
        try:
            self._transport.send(packet, timeout=self._deadline(batch))
        except TransportTimeout:
            self._fail(what, "the device did not take the packet")

    def _recv(self, max_words, what, batch=1):
        timeout = self._deadline(batch)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                # A short first wait, so that a refused packet (which gets no response) is
                # reported without waiting for the whole deadline.
                return self._transport.recv(max_words, timeout=max(min(left, 0.05), 1e-3))
            except TransportTimeout:
                pass
            except TransportError as e:
                raise DeviceError(f"{what}: {e}") from None
            st = self.status()
            if st.error:
                self._refused(what, st)
            if time.monotonic() >= deadline:
                self._fail(what, f"no response within {timeout:.1f} s")

    def _refused(self, what, st):
        # The refused packet (and any queued behind it) is dropped by a reset rather than
        # drained, so that recovery does not depend on how much of it was sent.
        self.soft_reset()
        raise PacketRefused(what, st.error_code)

    def _fail(self, what, problem):
        try:
            st = self.status()
        except DeviceError as e:
            st = f"STATUS unreadable ({e})"
        self.soft_reset()
        raise DeviceTimeout(f"{self._transport.name}: {what}: {problem}; {st}; the device "
                            f"was soft-reset")

    def _request(self, packet, max_words, what, batch=1):
        self._send(packet, what, batch)
        return self._recv(max_words, what, batch)

    def _write_packet(self, packet, what):
        """A packet with no response: sent, taken, and checked for a refusal."""
        self._send(packet, what)
        try:
            self._transport.wait_sent(timeout=self._deadline(1))
        except TransportTimeout:
            self._fail(what, "the device did not take the whole packet")
        deadline = time.monotonic() + self._deadline(1)
        while True:
            st = self.status()
            if st.error:
                self._refused(what, st)
            if not st.busy:
                return
            if time.monotonic() >= deadline:
                self._fail(what, "still busy")


class DeviceModel:
    """A device in the golden model's API, for :func:`xnorlearn.sw.train.train`.

    The host side of the schedule (epochs, the per-epoch reinforcement thresholds) lives
    in ``shadow``, a golden model of the same network; with ``golden_check`` the shadow
    also trains every minibatch beside the device, and the device's weights are compared
    with it at the end of every epoch (and every ``check_every`` minibatches).

    Parameters
    ----------
    device : Device
    model : BMLP
        The starting state (a new model or one loaded to resume); it is written to the
        device and becomes the shadow.
    golden_check : bool
    check_every : int or None
        Also compare after every this many minibatches.

    Raises
    ------
    ValueError
        If the network does not fit the device's build.
    """

    def __init__(self, device, model, *, golden_check=True, check_every=None):
        self._device = device
        self._shadow = model
        self._golden = bool(golden_check)
        self._check_every = check_every
        self._batches = 0
        device.load(model)
        self.cycles = {name: 0 for name in CYCLE_COUNTERS}
        self._last = device.counters()
        self.checks = 0

    device = property(lambda self: self._device)
    shadow = property(lambda self: self._shadow)
    config = property(lambda self: self._shadow.config)
    epoch = property(lambda self: self._shadow.epoch)
    thresholds = property(lambda self: self._shadow.thresholds)

    def train_batch(self, a0, y, validate=True):
        with self._recovering():
            errors = self._device.train_batch(a0, y)
        self._account(errors, a0, y)
        if self._check_due():
            self.check()
        return errors

    def train_batches(self, batches, on_batch=None):
        """Train minibatches with the next packet queued while one trains; the queue is
        drained before each check of ``check_every``."""
        batches = list(batches)
        i = 0
        while i < len(batches):
            n = len(batches) - i
            if self._golden and self._check_every:
                n = min(n, self._check_every - self._batches % self._check_every)

            def done(j, errors, base=i):
                self._account(errors, *batches[base + j])
                if on_batch is not None:
                    on_batch(base + j, errors)
            with self._recovering():
                self._device.train_batches(batches[i:i + n], on_batch=done)
            i += n
            if self._check_due():
                self.check()

    @contextlib.contextmanager
    def _recovering(self):
        """A minibatch cut off by a timeout may have updated part of ``H`` (the soft reset
        interrupts it, docs/architecture.md); with the golden model beside the device, its
        state (all minibatches the device completed) is written back, so the run can go on
        from there."""
        try:
            yield
        except (DeviceTimeout, PacketRefused) as e:
            if not self._golden:
                raise DeviceError(f"{e}; the weights of the interrupted minibatch may be "
                                  f"partly applied: load the last saved model") from e
            self._device.load(self._shadow)
            raise DeviceError(f"{e}; the device was reloaded with the golden model's state "
                              f"after minibatch {self._batches}") from e

    def _check_due(self):
        return bool(self._golden and self._check_every
                    and self._batches % self._check_every == 0)

    def _account(self, errors, a0, y):
        if self._golden:
            want = self._shadow.train_batch(a0, y)
            if want != errors:
                raise DeviceError(f"minibatch {self._batches + 1}: the device reports {errors} "
                                  f"errors, the golden model {want}")
        else:
            self._shadow._count(errors, len(y))
        self._batches += 1

    def check(self):
        """Compare every weight with the golden model; raise on the first difference."""
        mismatch = self._device.compare_weights(self._shadow, batch=self._batches)
        self.checks += 1
        if mismatch is not None:
            raise DeviceError(f"the device differs from the golden model {mismatch}")

    def end_epoch(self):
        if self._golden:
            self.check()
        err = self._shadow.end_epoch()
        self._device.set_thresholds(self._shadow.thresholds)
        return err

    def epoch_cycles(self):
        """Cycle counters since the last call (differences mod 2**32)."""
        now = self._device.counters()
        diff = {k: (now[k] - self._last[k]) & _MASK32 for k in CYCLE_COUNTERS}
        self._last = now
        return diff

    def predict(self, a0, batch_size=None):
        return self._device.predict(a0)

    def save(self, path):
        """Read the device's state into the shadow (when it is not trained beside) and
        save it; the file is the golden model's format."""
        if not self._golden:
            self._device.read_into(self._shadow)
        self._shadow.save(path)
