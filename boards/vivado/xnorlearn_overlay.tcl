# Block design, bitstream and hardware handoff of the xnorlearn PYNQ overlay.
# Plain Tcl 8.5, as Vivado's interpreter (no lmap, no try).
#
# Sourced, after xnorlearn_ps7.tcl, by the build script that `xnorlearn overlay` writes;
# that script puts the build's parameters in a dict and calls xnorlearn::build_overlay.
# Keys of the dict:
#   board, part             pynq-z1 or pynq-z2, and the FPGA part
#   vivado_version          the Vivado release the targeted PYNQ image was built with
#   project_name, project_dir, design_name, jobs
#   hdl_files, top_module   the accelerator's Verilog and the top wrapper around it
#   fclk0_mhz               FCLK0, the clock of the accelerator, the DMA and the buses
#   dma_length_width        bits of the DMA's transfer length registers
#   accel_base, accel_range address window of the accelerator's AXI4-Lite registers
#   dma_base, dma_range     address window of the DMA's registers
#   out_dir, stem           where <stem>.bit and <stem>.hwh are copied
#
# Block design (every clock is FCLK0; every reset comes from rst_fclk0):
#   ps7/M_AXI_GP0 -> axi_periph -> accel/s_axil       (registers)
#                              -> axi_dma/S_AXI_LITE  (DMA registers)
#   axi_dma/M_AXIS_MM2S -> accel/s_axis               (command packets)
#   accel/m_axis -> axi_dma/S_AXIS_S2MM               (response packets)
#   axi_dma/M_AXI_MM2S, M_AXI_S2MM -> axi_mem -> ps7/S_AXI_HP0 (DDR)

namespace eval xnorlearn {
    variable accel_cell accel
    variable dma_cell axi_dma
}

# Stop with a message naming the missing keys of the build's parameters.
proc xnorlearn::require {cfg keys} {
    set missing {}
    foreach key $keys {
        if {![dict exists $cfg $key]} {
            lappend missing $key
        }
    }
    if {[llength $missing] > 0} {
        error "xnorlearn overlay: the build script does not set: [join $missing {, }]"
    }
}

# The block-design pin `path`; an error naming it if the design has none.
proc xnorlearn::pin {path} {
    set found [get_bd_pins -quiet $path]
    if {$found eq ""} {
        error "xnorlearn overlay: the block design has no pin $path"
    }
    return $found
}

# The block-design interface pin `path`; an error naming it if the design has none.
proc xnorlearn::intf_pin {path} {
    set found [get_bd_intf_pins -quiet $path]
    if {$found eq ""} {
        error "xnorlearn overlay: the block design has no interface pin $path"
    }
    return $found
}

# A bitstream built with another Vivado release than the targeted PYNQ image's
# usually still works; say so rather than stop.
proc xnorlearn::check_version {cfg} {
    set want [dict get $cfg vivado_version]
    set have [version -short]
    if {[string first $want $have] != 0} {
        puts "WARNING: xnorlearn overlay: written for Vivado $want (the targeted PYNQ\
            image's release), running in Vivado $have"
    }
}

proc xnorlearn::create_overlay_project {cfg} {
    create_project -force [dict get $cfg project_name] [dict get $cfg project_dir] \
        -part [dict get $cfg part]
    set_property target_language Verilog [current_project]
    add_files -norecurse [dict get $cfg hdl_files]
    update_compile_order -fileset sources_1
}

proc xnorlearn::create_block_design {cfg} {
    variable accel_cell
    variable dma_cell
    set design [dict get $cfg design_name]
    create_bd_design $design
    current_bd_design $design

    # Processing system: the board preset, then what the overlay uses of it.
    set ps7 [create_bd_cell -type ip -vlnv xilinx.com:ip:processing_system7:5.5 ps7]
    set_property -dict [ps7_preset [dict get $cfg board]] $ps7
    set_property -dict [list \
        CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ [dict get $cfg fclk0_mhz] \
        CONFIG.PCW_EN_CLK0_PORT 1 \
        CONFIG.PCW_EN_RST0_PORT 1 \
        CONFIG.PCW_USE_M_AXI_GP0 1 \
        CONFIG.PCW_USE_S_AXI_HP0 1 \
        CONFIG.PCW_S_AXI_HP0_DATA_WIDTH 64 \
        CONFIG.PCW_USE_FABRIC_INTERRUPT 0 \
    ] $ps7
    check_fclk0 $ps7 [dict get $cfg fclk0_mhz]
    create_bd_intf_port -mode Master -vlnv xilinx.com:interface:ddrx_rtl:1.0 DDR
    create_bd_intf_port -mode Master \
        -vlnv xilinx.com:display_processing_system7:fixedio_rtl:1.0 FIXED_IO
    connect_bd_intf_net [get_bd_intf_ports DDR] [intf_pin ps7/DDR]
    connect_bd_intf_net [get_bd_intf_ports FIXED_IO] [intf_pin ps7/FIXED_IO]

    # Simple-mode DMA (no scatter-gather): one transfer per packet in each direction,
    # 32-bit streams like the accelerator's.
    set dma [create_bd_cell -type ip -vlnv xilinx.com:ip:axi_dma:7.1 $dma_cell]
    set_property -dict [list \
        CONFIG.c_include_sg 0 \
        CONFIG.c_sg_length_width [dict get $cfg dma_length_width] \
        CONFIG.c_include_mm2s 1 \
        CONFIG.c_include_s2mm 1 \
        CONFIG.c_m_axi_mm2s_data_width 32 \
        CONFIG.c_m_axis_mm2s_tdata_width 32 \
        CONFIG.c_m_axi_s2mm_data_width 32 \
        CONFIG.c_s_axis_s2mm_tdata_width 32 \
        CONFIG.c_mm2s_burst_size 16 \
        CONFIG.c_s2mm_burst_size 16 \
    ] $dma

    set periph [create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect:1.0 axi_periph]
    set_property -dict [list CONFIG.NUM_SI 1 CONFIG.NUM_MI 2] $periph
    set mem [create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect:1.0 axi_mem]
    set_property -dict [list CONFIG.NUM_SI 2 CONFIG.NUM_MI 1] $mem
    create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset:5.0 rst_fclk0
    create_bd_cell -type module -reference [dict get $cfg top_module] $accel_cell

    foreach {from to} [list \
        ps7/M_AXI_GP0 axi_periph/S00_AXI \
        axi_periph/M00_AXI $accel_cell/s_axil \
        axi_periph/M01_AXI $dma_cell/S_AXI_LITE \
        $dma_cell/M_AXIS_MM2S $accel_cell/s_axis \
        $accel_cell/m_axis $dma_cell/S_AXIS_S2MM \
        $dma_cell/M_AXI_MM2S axi_mem/S00_AXI \
        $dma_cell/M_AXI_S2MM axi_mem/S01_AXI \
        axi_mem/M00_AXI ps7/S_AXI_HP0 \
    ] {
        connect_bd_intf_net [intf_pin $from] [intf_pin $to]
    }

    set clocked [list ps7/FCLK_CLK0 ps7/M_AXI_GP0_ACLK ps7/S_AXI_HP0_ACLK \
        rst_fclk0/slowest_sync_clk axi_periph/aclk axi_mem/aclk \
        $dma_cell/s_axi_lite_aclk $dma_cell/m_axi_mm2s_aclk $dma_cell/m_axi_s2mm_aclk \
        $accel_cell/aclk]
    set clock_pins {}
    foreach path $clocked {
        lappend clock_pins [pin $path]
    }
    connect_bd_net {*}$clock_pins
    connect_bd_net [pin ps7/FCLK_RESET0_N] [pin rst_fclk0/ext_reset_in]
    connect_bd_net [pin rst_fclk0/interconnect_aresetn] [pin axi_periph/aresetn] \
        [pin axi_mem/aresetn]
    # The accelerator's reset is active high; its wrapper inverts this one.
    connect_bd_net [pin rst_fclk0/peripheral_aresetn] [pin $dma_cell/axi_resetn] \
        [pin $accel_cell/aresetn]
}

# FCLK0 comes from the IO PLL through two integer dividers: stop if Vivado could not
# reach the requested frequency (the host checks FCLK0 against the build's JSON).
proc xnorlearn::check_fclk0 {ps7 want} {
    set got [get_property CONFIG.PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ $ps7]
    if {abs($got - $want) > 1e-3 * $want} {
        error "xnorlearn overlay: FCLK0 is $got MHz, the build asks for $want MHz"
    }
}

proc xnorlearn::assign_addresses {cfg} {
    variable accel_cell
    variable dma_cell
    set ps_data [get_bd_addr_spaces ps7/Data]
    assign_bd_address -offset [dict get $cfg accel_base] -range [dict get $cfg accel_range] \
        -target_address_space $ps_data [get_bd_addr_segs $accel_cell/s_axil/reg0] -force
    assign_bd_address -offset [dict get $cfg dma_base] -range [dict get $cfg dma_range] \
        -target_address_space $ps_data [get_bd_addr_segs $dma_cell/S_AXI_LITE/Reg] -force
    set ddr [get_bd_addr_segs ps7/S_AXI_HP0/HP0_DDR_LOWOCM]
    foreach space {Data_MM2S Data_S2MM} {
        assign_bd_address -target_address_space [get_bd_addr_spaces $dma_cell/$space] \
            $ddr -force
    }
}

proc xnorlearn::finish_design {cfg} {
    set design [dict get $cfg design_name]
    validate_bd_design
    save_bd_design
    set wrapper [make_wrapper -files [get_files $design.bd] -top]
    add_files -norecurse $wrapper
    set_property top ${design}_wrapper [get_filesets sources_1]
    update_compile_order -fileset sources_1
}

proc xnorlearn::build_bitstream {cfg} {
    set impl [get_runs impl_1]
    launch_runs impl_1 -to_step write_bitstream -jobs [dict get $cfg jobs]
    wait_on_run impl_1
    if {[get_property PROGRESS $impl] ne "100%"} {
        error "xnorlearn overlay: implementation did not finish: [get_property STATUS $impl]\
            (logs in [get_property DIRECTORY $impl])"
    }
    set wns [get_property STATS.WNS $impl]
    if {$wns < 0} {
        error "xnorlearn overlay: timing not met at [dict get $cfg fclk0_mhz] MHz\
            (worst negative slack $wns ns); generate the project again with a lower\
            --clock-mhz"
    }
}

# <stem>.bit and <stem>.hwh side by side in out_dir: pynq.Overlay finds the .hwh by
# the bitstream's stem.
proc xnorlearn::copy_outputs {cfg} {
    set design [dict get $cfg design_name]
    set stem [dict get $cfg stem]
    set out_dir [dict get $cfg out_dir]
    set bit [file join [get_property DIRECTORY [get_runs impl_1]] ${design}_wrapper.bit]
    # Vivado 2020.2 and later write the hand-off under <project>.gen, older ones under
    # <project>.srcs.
    set hwh [lindex [glob -nocomplain -directory [dict get $cfg project_dir] \
        -join * sources_1 bd $design hw_handoff $design.hwh] 0]
    if {![file exists $bit]} {
        error "xnorlearn overlay: no bitstream at $bit"
    }
    if {$hwh eq ""} {
        error "xnorlearn overlay: no $design.hwh under [dict get $cfg project_dir]"
    }
    file copy -force $bit [file join $out_dir $stem.bit]
    file copy -force $hwh [file join $out_dir $stem.hwh]
    puts "xnorlearn overlay: wrote [file join $out_dir $stem.bit] and\
        [file join $out_dir $stem.hwh]"
}

proc xnorlearn::build_overlay {cfg} {
    require $cfg {board part vivado_version project_name project_dir design_name jobs
        hdl_files top_module fclk0_mhz dma_length_width accel_base accel_range
        dma_base dma_range out_dir stem}
    check_version $cfg
    create_overlay_project $cfg
    create_block_design $cfg
    assign_addresses $cfg
    finish_design $cfg
    build_bitstream $cfg
    copy_outputs $cfg
}
