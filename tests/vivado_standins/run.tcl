# tclsh run.tcl RECORD SCRIPT: run a Vivado build script against the stand-ins, one
# JSON record per line into RECORD; exit status 1 (and an "error" record) if it fails.
set here [file dirname [file normalize [info script]]]
source [file join $here vivado_standins.tcl]
lassign $argv record script
standin::start $record
if {[catch {uplevel #0 [list source $script]} message options]} {
    standin::emit error message [standin::js $message] \
        where [standin::js [dict get $options -errorinfo]]
    puts stderr [dict get $options -errorinfo]
    exit 1
}
standin::emit done
exit 0
