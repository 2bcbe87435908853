package vmm

// compatCmdline is the kernel command line of the compatibility profile, for
// hosts whose KVM emulates guest kernel mode instruction by instruction (see
// DESIGN.md, "The KVM on our build and test machines"). Each parameter keeps
// the guest kernel off an instruction the emulator lacks or off a slow path.
// The project kernel's patches gated by sietch.compat are inert without it.
var compatCmdline = []string{
	"sietch.compat",                    // project kernel: skip the int3 self-test, no fwait in fpu__drop
	"noxsave",                          // xrstor is not emulated
	"noreplace-smp",                    // alternatives patching would use int3
	"clearcpuid=smap,popcnt,erms,fsrm", // clac/stac and popcnt are not emulated; byte-wise rep movs/stos is emulated per byte
	"rodata=off",                       // fewer page-table splits at boot
	"tsc=reliable",                     // skip TSC watchdog/calibration work
}
