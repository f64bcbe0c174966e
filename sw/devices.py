"""Open an accelerator by name: a PYNQ board, the simulated board, or a serial board.

The one place that knows every transport, so that the CLI and notebooks say
``open_device("auto")`` and get a :class:`~xnorlearn.sw.driver.Device` on whatever is
there: the PYNQ board when the ``pynq`` package finds one and an overlay is given, the
simulated board (the accelerator's Verilog in Verilator) otherwise. Each transport is
imported only when it is opened, so a board install needs neither the simulators nor the
gateware tools.
"""

from pathlib import Path

from xnorlearn.sw.driver import Device

__all__ = ["DEVICES", "open_device", "pynq_board_present"]

#: Accelerator devices by name (``golden`` is no device: the model itself).
DEVICES = ("sim", "pynq", "ulx3s")


def pynq_board_present():
    """True when the ``pynq`` package is installed and sees a device (a board's PL)."""
    try:
        import pynq
    except ImportError:
        return False
    try:
        return bool(pynq.Device.devices)
    except Exception:           # pynq raises a bare RuntimeError off-board
        return False


def open_device(kind="auto", *, build=None, overlay=None, port=None, baud=3_000_000,
                timeout=60.0, progress=None, **sim_options):
    """A :class:`~xnorlearn.sw.driver.Device` on the accelerator ``kind``.

    Parameters
    ----------
    kind : {"auto", "sim", "pynq", "ulx3s"}
        ``auto``: ``pynq`` when a board is present and ``overlay`` is given, else ``sim``.
    build : Build, optional
        The build to simulate (``sim``; default the board build) or to expect.
    overlay : path
        The ``.bit`` of a PYNQ overlay (``pynq``).
    port, baud
        The serial port of a ULX3S board (``ulx3s``).
    timeout : float
        Seconds allowed for each register access (the driver's ``timeout``).
    progress : callable, optional
        Receives progress lines (building the simulated board).
    **sim_options
        More options of :class:`xnorlearn.sim.fastsim.FastSimTransport` (stalls).

    Raises
    ------
    ValueError
        For an unknown kind or a missing ``overlay``/``port``.
    """
    if kind == "auto":
        kind = "pynq" if overlay is not None and pynq_board_present() else "sim"
    if kind not in DEVICES:
        raise ValueError(f"device must be one of {('auto',) + DEVICES}, got {kind!r}")
    if kind == "sim":
        from xnorlearn.sim.fastsim import FastSimTransport
        kwargs = {} if build is None else {"build": build}
        transport = FastSimTransport(progress=progress, **kwargs, **sim_options)
    elif kind == "pynq":
        if overlay is None:
            raise ValueError("the pynq device needs --overlay DIR/xnorlearn.bit")
        from xnorlearn.sw.pynq_transport import PynqTransport
        transport = PynqTransport(Path(overlay))
        build = build or transport.build
    else:
        if port is None:
            raise ValueError("the ulx3s device needs --port (e.g. /dev/ttyUSB0)")
        from xnorlearn.sw.serial_transport import open_ulx3s_transport
        transport = open_ulx3s_transport(port, baud, timeout)
    try:
        device = Device(transport, build=build, timeout=timeout)
        if device.status().error:
            # A host that went away mid-packet leaves the accelerator in error (a serial
            # board ends the packet so that it is refused): start from a clean state.
            device.soft_reset()
        return device
    except BaseException:
        transport.close()
        raise
