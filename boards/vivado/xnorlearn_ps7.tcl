# Processing-system presets of the PYNQ-Z1 and PYNQ-Z2 (Zynq xc7z020clg400-1).
#
# The settings Vivado's board files would apply to processing_system7, kept here so
# that a build needs no installed board files: the 50 MHz PS clock, the MIO bank
# voltages, the 512 MiB DDR3 on a 16-bit bus with the boards' trace delays, and the
# MIO peripherals a PYNQ image uses (QSPI, Ethernet, USB, SD card, UART). Vivado
# derives the PLL multipliers, the divisors and the ACT_* values from these.
# The programmable-logic side (FCLK0, GP0, HP0) is set by xnorlearn_overlay.tcl.

namespace eval xnorlearn {
    variable ps7_boards {pynq-z1 pynq-z2}
}

# The CONFIG.* dict shared by both boards: they carry the same DDR3 layout and
# route the same PS peripherals to the same MIO pins.
proc xnorlearn::ps7_common {} {
    set config [dict create]
    foreach {name value} {
        PCW_PRESET_BANK0_VOLTAGE {LVCMOS 3.3V}
        PCW_PRESET_BANK1_VOLTAGE {LVCMOS 1.8V}
        PCW_CRYSTAL_PERIPHERAL_FREQMHZ 50
        PCW_APU_PERIPHERAL_FREQMHZ 650
        PCW_APU_CLK_RATIO_ENABLE 6:2:1
        PCW_UIPARAM_DDR_ENABLE 1
        PCW_UIPARAM_DDR_MEMORY_TYPE {DDR 3}
        PCW_UIPARAM_DDR_PARTNO {MT41J256M16 RE-125}
        PCW_UIPARAM_DDR_BUS_WIDTH {16 Bit}
        PCW_UIPARAM_DDR_DRAM_WIDTH {16 Bits}
        PCW_UIPARAM_DDR_DEVICE_CAPACITY {4096 MBits}
        PCW_UIPARAM_DDR_SPEED_BIN DDR3_1066F
        PCW_UIPARAM_DDR_FREQ_MHZ 525
        PCW_UIPARAM_DDR_BANK_ADDR_COUNT 3
        PCW_UIPARAM_DDR_ROW_ADDR_COUNT 15
        PCW_UIPARAM_DDR_COL_ADDR_COUNT 10
        PCW_UIPARAM_DDR_CL 7
        PCW_UIPARAM_DDR_CWL 6
        PCW_UIPARAM_DDR_T_RCD 7
        PCW_UIPARAM_DDR_T_RP 7
        PCW_UIPARAM_DDR_T_RC 48.91
        PCW_UIPARAM_DDR_T_RAS_MIN 35.0
        PCW_UIPARAM_DDR_T_FAW 40.0
        PCW_UIPARAM_DDR_AL 0
        PCW_UIPARAM_DDR_BL 8
        PCW_UIPARAM_DDR_ECC Disabled
        PCW_UIPARAM_DDR_USE_INTERNAL_VREF 0
        PCW_UIPARAM_DDR_TRAIN_WRITE_LEVEL 1
        PCW_UIPARAM_DDR_TRAIN_READ_GATE 1
        PCW_UIPARAM_DDR_TRAIN_DATA_EYE 1
        PCW_UIPARAM_DDR_BOARD_DELAY0 0.223
        PCW_UIPARAM_DDR_BOARD_DELAY1 0.212
        PCW_UIPARAM_DDR_BOARD_DELAY2 0.085
        PCW_UIPARAM_DDR_BOARD_DELAY3 0.092
        PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_0 0.040
        PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_1 0.058
        PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_2 -0.009
        PCW_UIPARAM_DDR_DQS_TO_CLK_DELAY_3 -0.033
        PCW_UIPARAM_DDR_CLOCK_0_LENGTH_MM 25.8
        PCW_UIPARAM_DDR_CLOCK_1_LENGTH_MM 25.8
        PCW_UIPARAM_DDR_CLOCK_2_LENGTH_MM 0
        PCW_UIPARAM_DDR_CLOCK_3_LENGTH_MM 0
        PCW_UIPARAM_DDR_DQS_0_LENGTH_MM 15.6
        PCW_UIPARAM_DDR_DQS_1_LENGTH_MM 18.8
        PCW_UIPARAM_DDR_DQS_2_LENGTH_MM 0
        PCW_UIPARAM_DDR_DQS_3_LENGTH_MM 0
        PCW_UIPARAM_DDR_DQ_0_LENGTH_MM 16.5
        PCW_UIPARAM_DDR_DQ_1_LENGTH_MM 18
        PCW_UIPARAM_DDR_DQ_2_LENGTH_MM 0
        PCW_UIPARAM_DDR_DQ_3_LENGTH_MM 0
        PCW_QSPI_PERIPHERAL_ENABLE 1
        PCW_QSPI_QSPI_IO {MIO 1 .. 6}
        PCW_QSPI_GRP_SINGLE_SS_ENABLE 1
        PCW_QSPI_GRP_FBCLK_ENABLE 1
        PCW_QSPI_GRP_FBCLK_IO {MIO 8}
        PCW_QSPI_PERIPHERAL_FREQMHZ 200
        PCW_ENET0_PERIPHERAL_ENABLE 1
        PCW_ENET0_ENET0_IO {MIO 16 .. 27}
        PCW_ENET0_GRP_MDIO_ENABLE 1
        PCW_ENET0_GRP_MDIO_IO {MIO 52 .. 53}
        PCW_ENET0_PERIPHERAL_FREQMHZ {1000 Mbps}
        PCW_ENET0_RESET_ENABLE 1
        PCW_ENET0_RESET_IO {MIO 9}
        PCW_USB0_PERIPHERAL_ENABLE 1
        PCW_USB0_USB0_IO {MIO 28 .. 39}
        PCW_USB0_RESET_ENABLE 1
        PCW_USB0_RESET_IO {MIO 46}
        PCW_SD0_PERIPHERAL_ENABLE 1
        PCW_SD0_SD0_IO {MIO 40 .. 45}
        PCW_SD0_GRP_CD_ENABLE 1
        PCW_SD0_GRP_CD_IO {MIO 47}
        PCW_SDIO_PERIPHERAL_FREQMHZ 50
        PCW_UART0_PERIPHERAL_ENABLE 1
        PCW_UART0_UART0_IO {MIO 14 .. 15}
        PCW_UART0_BAUD_RATE 115200
        PCW_UART_PERIPHERAL_FREQMHZ 100
        PCW_GPIO_MIO_GPIO_ENABLE 1
        PCW_GPIO_MIO_GPIO_IO MIO
    } {
        dict set config CONFIG.$name $value
    }
    return $config
}

# The CONFIG.* dict of processing_system7 for `board` (pynq-z1 or pynq-z2), ready for
# `set_property -dict`. Settings a board does not share with the other go here.
proc xnorlearn::ps7_preset {board} {
    variable ps7_boards
    if {$board ni $ps7_boards} {
        error "no processing-system preset for board '$board'; known: $ps7_boards"
    }
    return [ps7_common]
}
