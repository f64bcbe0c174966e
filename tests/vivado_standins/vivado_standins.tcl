# Stand-ins for the Vivado commands the overlay flow uses, for a plain tclsh.
#
# Each command checks its arguments the way Vivado would fail on them (an unknown cell,
# pin, address segment or IP parameter, a wrong number of objects) and appends one
# JSON object per line to the record file, so that a test can compare the block design
# with the accelerator's ports, the register map and the DMA's needs. The pins of the
# Xilinx IPs follow their product guides (PG082 processing_system7, PG021 AXI DMA,
# PG247 SmartConnect, PG164 Processor System Reset) and appear only when the IP's
# configuration enables them; a module reference gets the interfaces that the
# X_INTERFACE_INFO attributes of its Verilog declare. wait_on_run leaves placeholder
# .bit and .hwh files where Vivado writes them.
#
# Usage: standin::start RECORD_FILE, then source the build script.

namespace eval standin {
    variable log {}
    variable project {}
    variable project_dir {}
    variable design {}
    variable files {}
    variable cells [dict create]
    variable props [dict create]
    variable intf_ports {}
    variable connected {}
    variable vivado_version 2022.1
}

proc standin::start {path} {
    variable log
    set log [open $path w]
    if {[info exists ::env(STANDIN_VIVADO_VERSION)]} {
        variable vivado_version
        set vivado_version $::env(STANDIN_VIVADO_VERSION)
    }
}

# -- the record ------------------------------------------------------------------------

proc standin::js {text} {
    set map [list \\ \\\\ \" \\\" \n \\n \r \\r \t \\t]
    return "\"[string map $map $text]\""
}

proc standin::jl {items} {
    set out {}
    foreach item $items {
        lappend out [js $item]
    }
    return "\[[join $out ,]\]"
}

proc standin::jd {d} {
    set out {}
    dict for {key value} $d {
        lappend out "[js $key]:[js $value]"
    }
    return "\{[join $out ,]\}"
}

# One record: `op` and pairs of a key and an already encoded JSON value.
proc standin::emit {op args} {
    variable log
    set fields [list "\"op\":[js $op]"]
    foreach {key value} $args {
        lappend fields "[js $key]:$value"
    }
    puts $log "\{[join $fields ,]\}"
    flush $log
}

proc standin::fail {message} {
    emit error message [js $message]
    error $message
}

# -- options ---------------------------------------------------------------------------

# Split `arguments` into a dict of the options named in `spec` (name -> takes a value)
# and the remaining positional arguments.
proc standin::options {command arguments spec} {
    set opts [dict create]
    set rest {}
    for {set i 0} {$i < [llength $arguments]} {incr i} {
        set word [lindex $arguments $i]
        if {[string index $word 0] eq "-" && ![string is double -strict $word]} {
            if {![dict exists $spec $word]} {
                fail "$command: unknown option $word"
            }
            if {[dict get $spec $word]} {
                incr i
                dict set opts $word [lindex $arguments $i]
            } else {
                dict set opts $word 1
            }
        } else {
            lappend rest $word
        }
    }
    return [list $opts $rest]
}

proc standin::flat {objects} {
    set out {}
    foreach object $objects {
        foreach item $object {
            lappend out $item
        }
    }
    return $out
}

# -- IP catalog ------------------------------------------------------------------------

# Parameter defaults of the IPs the flow uses; for the AXI DMA and SmartConnect, also
# the only CONFIG names accepted.
proc standin::ip_defaults {vlnv} {
    switch -glob -- $vlnv {
        xilinx.com:ip:processing_system7:* {
            return [dict create CONFIG.PCW_USE_M_AXI_GP0 1 CONFIG.PCW_USE_S_AXI_HP0 0 \
                CONFIG.PCW_EN_CLK0_PORT 1 CONFIG.PCW_EN_RST0_PORT 1 \
                CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ 50 CONFIG.PCW_S_AXI_HP0_DATA_WIDTH 64 \
                CONFIG.PCW_USE_FABRIC_INTERRUPT 0]
        }
        xilinx.com:ip:axi_dma:* {
            return [dict create CONFIG.c_include_sg 1 CONFIG.c_sg_length_width 14 \
                CONFIG.c_include_mm2s 1 CONFIG.c_include_s2mm 1 \
                CONFIG.c_m_axi_mm2s_data_width 32 CONFIG.c_m_axis_mm2s_tdata_width 32 \
                CONFIG.c_m_axi_s2mm_data_width 32 CONFIG.c_s_axis_s2mm_tdata_width 32 \
                CONFIG.c_mm2s_burst_size 16 CONFIG.c_s2mm_burst_size 16 \
                CONFIG.c_include_mm2s_dre 0 CONFIG.c_include_s2mm_dre 0 \
                CONFIG.c_addr_width 32 CONFIG.c_micro_dma 0 \
                CONFIG.c_sg_include_stscntrl_strm 1 CONFIG.c_enable_multi_channel 0]
        }
        xilinx.com:ip:smartconnect:* {
            return [dict create CONFIG.NUM_SI 1 CONFIG.NUM_MI 2 CONFIG.NUM_CLKS 1 \
                CONFIG.HAS_ARESETN 1]
        }
        default {
            return [dict create]
        }
    }
}

proc standin::prop {object name} {
    variable props
    if {[dict exists $props $object $name]} {
        return [dict get $props $object $name]
    }
    variable cells
    set cell [string trimleft $object /]
    if {[dict exists $cells $cell]} {
        set defaults [ip_defaults [dict get $cells $cell vlnv]]
        if {[dict exists $defaults $name]} {
            return [dict get $defaults $name]
        }
    }
    return {}
}

# What a cell has now: dict of pins, intf (interface pins), spaces (address spaces of
# its managers) and segs (address segments of its subordinates), by its configuration.
proc standin::cell_objects {cell} {
    variable cells
    set info [dict get $cells $cell]
    set c /$cell
    set pins {}
    set intf {}
    set spaces {}
    set segs {}
    switch -glob -- [dict get $info vlnv] {
        xilinx.com:ip:processing_system7:* {
            lappend intf DDR FIXED_IO
            lappend spaces Data
            if {[prop $c CONFIG.PCW_EN_CLK0_PORT] == 1} {
                lappend pins FCLK_CLK0
            }
            if {[prop $c CONFIG.PCW_EN_RST0_PORT] == 1} {
                lappend pins FCLK_RESET0_N
            }
            if {[prop $c CONFIG.PCW_USE_M_AXI_GP0] == 1} {
                lappend intf M_AXI_GP0
                lappend pins M_AXI_GP0_ACLK
            }
            if {[prop $c CONFIG.PCW_USE_S_AXI_HP0] == 1} {
                lappend intf S_AXI_HP0
                lappend pins S_AXI_HP0_ACLK
                lappend segs S_AXI_HP0/HP0_DDR_LOWOCM S_AXI_HP0/HP0_HIGH_OCM
            }
        }
        xilinx.com:ip:axi_dma:* {
            lappend intf S_AXI_LITE
            lappend pins s_axi_lite_aclk axi_resetn
            lappend segs S_AXI_LITE/Reg
            if {[prop $c CONFIG.c_include_mm2s] == 1} {
                lappend intf M_AXI_MM2S M_AXIS_MM2S
                lappend pins m_axi_mm2s_aclk mm2s_introut mm2s_prmry_reset_out_n
                lappend spaces Data_MM2S
            }
            if {[prop $c CONFIG.c_include_s2mm] == 1} {
                lappend intf M_AXI_S2MM S_AXIS_S2MM
                lappend pins m_axi_s2mm_aclk s2mm_introut s2mm_prmry_reset_out_n
                lappend spaces Data_S2MM
            }
            if {[prop $c CONFIG.c_include_sg] == 1} {
                lappend intf M_AXI_SG
                lappend pins m_axi_sg_aclk
                lappend spaces Data_SG
            }
        }
        xilinx.com:ip:smartconnect:* {
            lappend pins aclk aresetn
            for {set i 0} {$i < [prop $c CONFIG.NUM_SI]} {incr i} {
                lappend intf [format S%02d_AXI $i]
            }
            for {set i 0} {$i < [prop $c CONFIG.NUM_MI]} {incr i} {
                lappend intf [format M%02d_AXI $i]
            }
        }
        xilinx.com:ip:proc_sys_reset:* {
            lappend pins slowest_sync_clk ext_reset_in aux_reset_in mb_debug_sys_rst \
                dcm_locked mb_reset bus_struct_reset peripheral_reset \
                interconnect_aresetn peripheral_aresetn
        }
        module_ref:* {
            dict for {name interface} [dict get $info interfaces] {
                if {[string match xilinx.com:signal:* [dict get $interface vlnv]]} {
                    lappend pins $name
                } else {
                    lappend intf $name
                    if {[dict get $interface vlnv] eq "xilinx.com:interface:aximm:1.0"
                            && [dict get $interface mode] eq "slave"} {
                        lappend segs $name/reg0
                    }
                }
            }
            foreach port [dict get $info plain_ports] {
                lappend pins $port
            }
        }
    }
    return [dict create pins $pins intf $intf spaces $spaces segs $segs]
}

# The interfaces a module's Verilog declares with X_INTERFACE_INFO attributes, as a dict
# name -> {vlnv, mode (master/slave), signals (LOGICAL -> port)}, and its ports without
# an attribute. Reads the ANSI port list the overlay's wrapper uses.
proc standin::module_interfaces {module} {
    variable files
    foreach path $files {
        if {[file extension $path] ne ".v" || ![file exists $path]} {
            continue
        }
        set f [open $path]
        set text [read $f]
        close $f
        set start [string first "module $module (" $text]
        if {$start < 0} {
            continue
        }
        set header [string range $text $start [string first ");" $text $start]]
        set interfaces [dict create]
        set plain {}
        set pending {}
        foreach line [split $header \n] {
            if {[regexp {X_INTERFACE_INFO\s*=\s*"([^"]*)"} $line -> info]} {
                set pending $info
                continue
            }
            if {![regexp {^\s*(input|output|inout)\s+(?:wire\s+)?(?:\[[^]]*\]\s*)?(\w+)} \
                    $line -> direction port]} {
                continue
            }
            if {$pending eq ""} {
                lappend plain $port
                continue
            }
            lassign $pending vlnv name logical
            set pending {}
            if {![dict exists $interfaces $name]} {
                dict set interfaces $name [dict create vlnv $vlnv mode slave \
                    signals [dict create]]
            }
            dict set interfaces $name signals $logical $port
            # The manager side of an interface drives its valid signals.
            if {$logical in {TVALID AWVALID ARVALID} && $direction eq "output"} {
                dict set interfaces $name mode master
            }
        }
        return [list $path $interfaces $plain]
    }
    fail "create_bd_cell: no Verilog module $module among the project's files ($files)"
}

# -- project ---------------------------------------------------------------------------

proc version {args} {
    return $::standin::vivado_version
}

proc create_project {args} {
    lassign [standin::options create_project $args {-part 1 -force 0}] opts rest
    if {[llength $rest] != 2 || ![dict exists $opts -part]} {
        standin::fail "create_project: expected NAME DIR -part PART, got $args"
    }
    lassign $rest name dir
    set standin::project $name
    set standin::project_dir $dir
    file mkdir $dir
    standin::emit create_project name [standin::js $name] dir [standin::js $dir] \
        part [standin::js [dict get $opts -part]]
    return $name
}

proc current_project {args} {
    return $standin::project
}

proc get_filesets {name} {
    if {$name ni {sources_1 constrs_1 sim_1}} {
        standin::fail "get_filesets: no fileset $name"
    }
    return $name
}

proc add_files {args} {
    lassign [standin::options add_files $args {-norecurse 0 -fileset 1}] opts rest
    set paths [standin::flat $rest]
    foreach path $paths {
        if {![file exists $path]} {
            standin::fail "add_files: no file $path"
        }
        lappend standin::files $path
    }
    standin::emit add_files files [standin::jl $paths]
}

proc update_compile_order {args} {
    standin::emit update_compile_order
}

proc set_property {args} {
    lassign [standin::options set_property $args {-dict 1 -quiet 0}] opts rest
    if {[dict exists $opts -dict]} {
        set pairs [dict get $opts -dict]
        set objects [standin::flat $rest]
    } else {
        if {[llength $rest] < 3} {
            standin::fail "set_property: expected NAME VALUE OBJECTS, got $args"
        }
        set pairs [lrange $rest 0 1]
        set objects [standin::flat [lrange $rest 2 end]]
    }
    if {[llength $pairs] % 2} {
        standin::fail "set_property: odd name/value list $pairs"
    }
    if {[llength $objects] == 0} {
        standin::fail "set_property: no object to set [lindex $pairs 0] on"
    }
    foreach object $objects {
        standin::check_object $object
        foreach {name value} $pairs {
            standin::check_param $object $name
            dict set standin::props $object $name $value
            standin::emit set_property object [standin::js $object] \
                name [standin::js $name] value [standin::js $value]
        }
    }
}

proc standin::check_object {object} {
    variable project
    variable cells
    if {$object in [list $project sources_1 constrs_1 impl_1 synth_1]} {
        return
    }
    if {![dict exists $cells [string trimleft $object /]]} {
        fail "set_property: no object $object"
    }
}

proc standin::check_param {object name} {
    variable cells
    set cell [string trimleft $object /]
    if {![dict exists $cells $cell]} {
        return
    }
    set vlnv [dict get $cells $cell vlnv]
    if {![string match CONFIG.* $name]} {
        fail "set_property: $name is not a CONFIG parameter of $object"
    }
    switch -glob -- $vlnv {
        xilinx.com:ip:processing_system7:* {
            if {![string match CONFIG.PCW_* $name]} {
                fail "set_property: processing_system7 has no parameter $name"
            }
        }
        xilinx.com:ip:axi_dma:* - xilinx.com:ip:smartconnect:* {
            if {![dict exists [ip_defaults $vlnv] $name]} {
                fail "set_property: $vlnv has no parameter $name"
            }
        }
    }
}

proc get_property {name object} {
    set object [lindex $object 0]
    set value [standin::prop $object $name]
    if {$value ne ""} {
        return $value
    }
    switch -- $name {
        CONFIG.PCW_ACT_FPGA0_PERIPHERAL_FREQMHZ {
            return [format %.6f [standin::prop $object CONFIG.PCW_FPGA0_PERIPHERAL_FREQMHZ]]
        }
        PROGRESS {
            return 100%
        }
        STATUS {
            return "write_bitstream Complete!"
        }
        STATS.WNS {
            return 0.100
        }
        DIRECTORY {
            return [file join $standin::project_dir $standin::project.runs $object]
        }
    }
    standin::fail "get_property: $object has no property $name"
}

# -- block design ----------------------------------------------------------------------

proc create_bd_design {name} {
    set standin::design $name
    standin::emit create_bd_design name [standin::js $name]
    return $name
}

proc current_bd_design {args} {
    if {[llength $args] > 0 && [lindex $args end] ne $standin::design} {
        standin::fail "current_bd_design: no design [lindex $args end]"
    }
    return $standin::design
}

proc create_bd_cell {args} {
    lassign [standin::options create_bd_cell $args {-type 1 -vlnv 1 -reference 1}] opts rest
    if {$standin::design eq ""} {
        standin::fail "create_bd_cell: no block design"
    }
    if {[llength $rest] != 1} {
        standin::fail "create_bd_cell: expected one cell name, got $rest"
    }
    set name [lindex $rest 0]
    if {[dict exists $standin::cells $name]} {
        standin::fail "create_bd_cell: a cell $name exists already"
    }
    set type [dict get $opts -type]
    if {$type eq "ip"} {
        set vlnv [dict get $opts -vlnv]
        if {[llength [split $vlnv :]] != 4} {
            standin::fail "create_bd_cell: $vlnv is not vendor:library:name:version"
        }
        dict set standin::cells $name [dict create vlnv $vlnv]
        standin::emit create_bd_cell name [standin::js $name] type [standin::js ip] \
            vlnv [standin::js $vlnv] defaults [standin::jd [standin::ip_defaults $vlnv]]
    } elseif {$type eq "module"} {
        set module [dict get $opts -reference]
        lassign [standin::module_interfaces $module] path interfaces plain
        dict set standin::cells $name [dict create vlnv module_ref:$module \
            interfaces $interfaces plain_ports $plain]
        set encoded {}
        dict for {iname interface} $interfaces {
            lappend encoded "[standin::js $iname]:\{\"vlnv\":[standin::js \
                [dict get $interface vlnv]],\"mode\":[standin::js \
                [dict get $interface mode]],\"signals\":[standin::jd \
                [dict get $interface signals]]\}"
        }
        standin::emit create_bd_cell name [standin::js $name] type [standin::js module] \
            reference [standin::js $module] file [standin::js $path] \
            interfaces "\{[join $encoded ,]\}" plain_ports [standin::jl $plain]
    } else {
        standin::fail "create_bd_cell: unknown -type $type"
    }
    return /$name
}

proc create_bd_intf_port {args} {
    lassign [standin::options create_bd_intf_port $args {-mode 1 -vlnv 1}] opts rest
    set name [lindex $rest 0]
    lappend standin::intf_ports $name
    standin::emit create_bd_intf_port name [standin::js $name] \
        mode [standin::js [dict get $opts -mode]] vlnv [standin::js [dict get $opts -vlnv]]
    return /$name
}

# The objects of `kind` (pins, intf, spaces, segs) that `pattern` (cell/rest) names.
proc standin::lookup {command kind arguments} {
    lassign [options $command $arguments {-quiet 0}] opts rest
    if {[llength $rest] != 1} {
        fail "$command: expected one name, got $rest"
    }
    set path [string trimleft [lindex $rest 0] /]
    set cell [lindex [split $path /] 0]
    set inner [join [lrange [split $path /] 1 end] /]
    variable cells
    if {![dict exists $cells $cell]} {
        return {}
    }
    if {$inner in [dict get [cell_objects $cell] $kind]} {
        return /$path
    }
    return {}
}

proc get_bd_cells {args} {
    if {[llength $args] == 0} {
        set out {}
        foreach name [dict keys $standin::cells] {
            lappend out /$name
        }
        return $out
    }
    lassign [standin::options get_bd_cells $args {-quiet 0}] opts rest
    set name [string trimleft [lindex $rest 0] /]
    if {[dict exists $standin::cells $name]} {
        return /$name
    }
    return {}
}

proc get_bd_pins {args} {
    return [standin::lookup get_bd_pins pins $args]
}

proc get_bd_intf_pins {args} {
    return [standin::lookup get_bd_intf_pins intf $args]
}

proc get_bd_addr_spaces {args} {
    return [standin::lookup get_bd_addr_spaces spaces $args]
}

proc get_bd_addr_segs {args} {
    return [standin::lookup get_bd_addr_segs segs $args]
}

proc get_bd_intf_ports {args} {
    lassign [standin::options get_bd_intf_ports $args {-quiet 0}] opts rest
    set name [string trimleft [lindex $rest 0] /]
    if {$name in $standin::intf_ports} {
        return /$name
    }
    return {}
}

proc connect_bd_intf_net {args} {
    lassign [standin::options connect_bd_intf_net $args {-intf_net 1}] opts rest
    set objects [standin::flat $rest]
    if {[llength $rest] != 2 || [llength $objects] != 2} {
        standin::fail "connect_bd_intf_net: expected two interface objects, got '$rest'"
    }
    foreach object $objects {
        if {$object in $standin::connected} {
            standin::fail "connect_bd_intf_net: $object is connected already"
        }
        lappend standin::connected $object
    }
    standin::emit connect_bd_intf_net objects [standin::jl $objects]
}

proc connect_bd_net {args} {
    lassign [standin::options connect_bd_net $args {-net 1}] opts rest
    set objects [standin::flat $rest]
    if {[llength $objects] < 2 || [llength $objects] != [llength $rest]} {
        standin::fail "connect_bd_net: expected two or more pins, got '$rest'"
    }
    standin::emit connect_bd_net objects [standin::jl $objects]
}

proc assign_bd_address {args} {
    lassign [standin::options assign_bd_address $args \
        {-offset 1 -range 1 -target_address_space 1 -force 0}] opts rest
    set segs [standin::flat $rest]
    if {[llength $segs] != 1} {
        standin::fail "assign_bd_address: expected one address segment, got '$rest'"
    }
    if {![dict exists $opts -target_address_space]
            || [dict get $opts -target_address_space] eq ""} {
        standin::fail "assign_bd_address: no target address space for $segs"
    }
    set offset auto
    set range auto
    if {[dict exists $opts -offset]} {
        set offset [dict get $opts -offset]
    }
    if {[dict exists $opts -range]} {
        set range [dict get $opts -range]
    }
    standin::emit assign_bd_address space [standin::js [dict get $opts \
        -target_address_space]] seg [standin::js [lindex $segs 0]] \
        offset [standin::js $offset] range [standin::js $range]
}

proc validate_bd_design {args} {
    standin::emit validate_bd_design
}

proc save_bd_design {args} {
    standin::emit save_bd_design
}

proc get_files {pattern} {
    set bd [file join $standin::project_dir $standin::project.srcs sources_1 bd \
        $standin::design $standin::design.bd]
    if {[string match $pattern [file tail $bd]]} {
        return $bd
    }
    standin::fail "get_files: no file $pattern"
}

proc make_wrapper {args} {
    lassign [standin::options make_wrapper $args {-files 1 -top 0}] opts rest
    set d $standin::design
    set path [file join $standin::project_dir $standin::project.gen sources_1 bd $d hdl \
        ${d}_wrapper.v]
    file mkdir [file dirname $path]
    set f [open $path w]
    puts $f "// stand-in wrapper of $d"
    close $f
    standin::emit make_wrapper files [standin::js [dict get $opts -files]] \
        top [standin::js [dict exists $opts -top]] wrapper [standin::js $path]
    return $path
}

# -- runs ------------------------------------------------------------------------------

proc get_runs {name} {
    if {$name ni {synth_1 impl_1}} {
        standin::fail "get_runs: no run $name"
    }
    return $name
}

proc launch_runs {args} {
    lassign [standin::options launch_runs $args {-to_step 1 -jobs 1}] opts rest
    standin::emit launch_runs runs [standin::jl $rest] options [standin::jd $opts]
}

proc wait_on_run {run} {
    set top [standin::prop sources_1 top]
    set d $standin::design
    set dir [file join $standin::project_dir $standin::project.runs $run]
    file mkdir $dir
    set f [open [file join $dir $top.bit] w]
    puts $f "stand-in bitstream of $top"
    close $f
    set handoff [file join $standin::project_dir $standin::project.gen sources_1 bd $d \
        hw_handoff]
    file mkdir $handoff
    set f [open [file join $handoff $d.hwh] w]
    puts $f "<!-- stand-in hardware handoff of $d -->"
    close $f
    standin::emit wait_on_run run [standin::js $run] top [standin::js $top]
}

# A command the stand-ins do not define is one the flow started to use: say so.
proc unknown {args} {
    standin::fail "no stand-in for the Vivado command: [lindex $args 0]"
}
