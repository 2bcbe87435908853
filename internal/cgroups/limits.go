package cgroups

// Limits are what a group may use; zero fields are unlimited.
type Limits struct {
	CPUPeriodUS int64 // the CFS period the quota is spent in
	CPUQuotaUS  int64 // CPU time per period, all processes together
	MemoryBytes int64
	Pids        int64 // tasks: processes and their threads
	IOWeight    int   // 1 to 10000 (v2's scale; v1 takes 10 to 1000); 0: the host's default
}

// How a sandbox's size becomes its group's limits; docs/ARCHITECTURE.md
// ("Per-sandbox cgroups") gives the measurements behind each.
const (
	// CPUPeriodUS is the kernel's default CFS period.
	CPUPeriodUS = 100_000
	// DeviceCPUUS is the quota each group gets beyond one period per
	// vCPU: the device processes and the vmm's control and pager threads
	// work beside busy vCPUs (a guest streaming to its disk keeps its
	// vCPU and the blk process busy at once), and a quarter CPU keeps
	// them from being throttled along with the vCPUs.
	DeviceCPUUS = 25_000
	// OverheadMiB is memory beyond guest RAM: the vmm's and each device
	// process's Go heap, stacks and binaries, the KVM structures and page
	// tables charged to the group, and the page cache of the kernel,
	// initrd and disks the group reads (reclaimable).
	OverheadMiB = 96
	// BasePids and PidsPerCPU bound tasks (threads count): the vmm and
	// four device processes are Go programs with about ten threads each,
	// plus one thread per vCPU.
	BasePids   = 256
	PidsPerCPU = 8
	// IOWeight is the default weight: sandboxes share a disk equally.
	IOWeight = 100
)

// ForSandbox is the limits of a sandbox of cpus vCPUs and memMiB of guest
// memory.
func ForSandbox(cpus, memMiB int) Limits {
	return Limits{
		CPUPeriodUS: CPUPeriodUS,
		CPUQuotaUS:  int64(cpus)*CPUPeriodUS + DeviceCPUUS,
		MemoryBytes: int64(memMiB+OverheadMiB) << 20,
		Pids:        BasePids + PidsPerCPU*int64(cpus),
		IOWeight:    IOWeight,
	}
}
