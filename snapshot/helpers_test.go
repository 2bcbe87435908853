package snapshot

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/sietch-vm/sietch/devices"
	"github.com/sietch-vm/sietch/kvm"
	"github.com/sietch-vm/sietch/virtio"
	"golang.org/x/sys/unix"
)

const testMem = 64 << 20

// captureState builds a two-vCPU VM with the in-kernel irqchip and PIT and
// reads every piece of state a snapshot holds from it, as the vmm will.
func captureState(t testing.TB) *State {
	t.Helper()
	if _, err := os.Stat(kvm.DefaultPath); err != nil {
		t.Skipf("%s not present (%v): capturing real vCPU state needs KVM", kvm.DefaultPath, err)
	}
	sys, err := kvm.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sys.Close() })
	vm, err := sys.CreateVM()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	if err := vm.CreateIRQChip(); err != nil {
		t.Fatal(err)
	}
	if err := vm.CreatePIT2(); err != nil {
		t.Fatal(err)
	}
	cpuid, err := sys.SupportedCPUID()
	if err != nil {
		t.Fatal(err)
	}
	msrList, err := sys.MSRIndexList()
	if err != nil {
		t.Fatal(err)
	}
	s := &State{
		Created: time.Now().UTC(),
		Machine: Machine{
			MemSize: testMem, CPUs: 2,
			Cmdline: "console=ttyS0 reboot=k panic=-1 sietch.compat noxsave",
			Compat:  true, Entry: 1,
			Disks: []Disk{{Path: "/var/lib/sietch/disk.img", Size: 1 << 30, SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
				{Path: "/var/lib/sietch/data.img", ReadOnly: true, Size: 8 << 20, Clone: "disk1.clone"}},
			Net:   &Net{Tap: "tap0", MAC: "02:00:00:00:00:01"},
			Vsock: &Vsock{CID: 3, UDS: "/run/sietch/v.sock"},
			RNG:   true,
		},
		Devices: Devices{
			Serial: devices.SerialState{IER: 0x05, LCR: 0x03, MCR: 0x0b, LSR: 0x60, MSR: 0xb0, SCR: 0x5a, FCR: 0xc1, DLL: 1, THREPending: true, RX: []byte("ls\n")},
			I8042:  devices.I8042State{CommandByte: 0x45, OutputPort: 0x03, Output: 0xfa, OutputFull: true, Pending: 0x60, LastWasCommand: true},
			Virtio: []Virtio{
				{Name: "blk0", Kind: "blk", Transport: virtio.MMIOState{DriverFeatures: 1<<32 | 1<<9, QueueSel: 0, Status: 0xf, InterruptStatus: 1, ConfigGeneration: 2,
					Queues: []virtio.MMIOQueueState{{Num: 256, Ready: true, Desc: 0x3f00000, Avail: 0x3f01000, Used: 0x3f02000}}},
					Queues: []virtio.QueueState{{NextAvail: 17, NextUsed: 15}}},
				{Name: "vsock0", Kind: "vsock", Transport: virtio.MMIOState{Status: 0xf, QueueSel: 2,
					Queues: []virtio.MMIOQueueState{{Num: 128, Ready: true, Desc: 0x100000, Avail: 0x101000, Used: 0x102000}, {Num: 128, Ready: true, Desc: 0x110000, Avail: 0x111000, Used: 0x112000}, {Num: 128, Ready: true, Desc: 0x120000, Avail: 0x121000, Used: 0x122000}}},
					Queues: []virtio.QueueState{{NextAvail: 65535, NextUsed: 65535}, {NextAvail: 1, NextUsed: 1}, {}}},
			},
		},
		Memory: Memory{File: "memory", Size: testMem, Kind: KindFull, Regions: []Region{{GPA: 0, Size: testMem, Offset: 0}}},
	}
	for id := range 2 {
		c, err := vm.CreateVCPU(id)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.SetCPUID2(cpuid); err != nil {
			t.Fatal(err)
		}
		v := VCPU{ID: id}
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		r, err := c.GetRegs()
		must(err)
		r.RIP, r.RAX, r.RFLAGS = 0xffffffff81000000+uint64(id), 0x1122334455667788, 0x246
		v.Regs = *r
		sr, err := c.GetSregs()
		must(err)
		v.Sregs = *sr
		f, err := c.GetFPU()
		must(err)
		v.FPU = *f
		v.XSave, err = c.GetXSave()
		must(err)
		v.XCRS, err = c.GetXCRS()
		must(err)
		v.MSRs, err = c.GetMSRs(msrList)
		must(err)
		l, err := c.GetLAPIC()
		must(err)
		v.LAPIC = *l
		e, err := c.GetVCPUEvents()
		must(err)
		v.Events = *e
		mp, err := c.GetMPState()
		must(err)
		v.MPState = *mp
		d, err := c.GetDebugRegs()
		must(err)
		v.DebugRegs = *d
		v.TSCKHz, err = c.GetTSCKHz()
		must(err)
		v.CPUID, err = c.GetCPUID2()
		must(err)
		s.VCPUs = append(s.VCPUs, v)
	}
	for _, c := range []*kvm.IRQChip{{ChipID: kvm.IRQChipPICMaster}, {ChipID: kvm.IRQChipPICSlave}, {ChipID: kvm.IRQChipIOAPIC}} {
		if err := vm.GetIRQChip(c); err != nil {
			t.Fatal(err)
		}
		switch c.ChipID {
		case kvm.IRQChipPICMaster:
			s.VM.PICMaster = *c
		case kvm.IRQChipPICSlave:
			s.VM.PICSlave = *c
		default:
			s.VM.IOAPIC = *c
		}
	}
	pit, err := vm.GetPIT2()
	if err != nil {
		t.Fatal(err)
	}
	s.VM.PIT = *pit
	clock, err := vm.GetClock()
	if err != nil {
		t.Fatal(err)
	}
	s.VM.Clock = *clock
	return s
}

// snapshotDir writes s and a sparse memory file of the right size.
func snapshotDir(t testing.TB, s *State) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "snap")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, s.Memory.File), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(dir, s.Memory.File), int64(s.Memory.Size)); err != nil {
		t.Fatal(err)
	}
	if err := Write(dir, s); err != nil {
		t.Fatal(err)
	}
	return dir
}

// fill sets every settable field reachable from v to pseudo-random values,
// so that a field an encoder forgets cannot survive a round trip by being
// zero on both sides.
func fill(v reflect.Value, r *rand.Rand) {
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(r.Uint64()>>1) >> (64 - v.Type().Bits()))
		if v.Int() == 0 {
			v.SetInt(1)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(r.Uint64()>>(64-v.Type().Bits()) | 1)
	case reflect.String:
		v.SetString("s" + string(rune('a'+r.IntN(26))))
	case reflect.Array:
		for i := range v.Len() {
			fill(v.Index(i), r)
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 3, 3)
		for i := range 3 {
			fill(s.Index(i), r)
		}
		v.Set(s)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), r)
		v.Set(p)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.Unix(1700000000, 123456789).UTC()))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), r)
			}
		}
	}
}

// newMemfd returns a memfd of size bytes and its read-write mapping.
func newMemfd(t testing.TB, size uint64) (*os.File, []byte) {
	t.Helper()
	fd, err := unix.MemfdCreate("snapshot-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "memfd")
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(int64(size)); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(m) })
	return f, m
}
