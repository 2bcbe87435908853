package testguest

import (
	"debug/elf"
	"errors"
	"strings"
	"testing"
)

func TestBuildProducesLoadableELF(t *testing.T) {
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			p := Path(t, name)
			f, err := elf.Open(p)
			if err != nil {
				t.Fatalf("open built guest: %v", err)
			}
			defer f.Close()
			if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
				t.Fatalf("got %v %v %v, want a static ELF64 x86-64 executable", f.Class, f.Machine, f.Type)
			}
			if f.Entry < 0x100000 {
				t.Errorf("entry 0x%x is below 1 MiB, which belongs to the vmm", f.Entry)
			}
			loads := 0
			for _, ph := range f.Progs {
				switch ph.Type {
				case elf.PT_LOAD:
					loads++
					if ph.Paddr < 0x100000 || ph.Paddr+ph.Memsz > 32<<20 {
						t.Errorf("PT_LOAD at 0x%x+0x%x is outside [1 MiB, 32 MiB)", ph.Paddr, ph.Memsz)
					}
					if ph.Paddr != ph.Vaddr {
						t.Errorf("PT_LOAD paddr 0x%x != vaddr 0x%x; guests run on an identity map", ph.Paddr, ph.Vaddr)
					}
				case elf.PT_INTERP, elf.PT_DYNAMIC:
					t.Errorf("unexpected %v: guests must be static", ph.Type)
				}
			}
			if loads == 0 {
				t.Error("no PT_LOAD segments")
			}
		})
	}
}

func TestBuildUnknownGuest(t *testing.T) {
	_, err := Build(t.TempDir(), "no-such-guest")
	if err == nil || !strings.Contains(err.Error(), "hello") || errors.Is(err, ErrNoCompiler) {
		t.Fatalf("got %v, want an error listing the known guests", err)
	}
}

func TestNamesSorted(t *testing.T) {
	want := []string{"counter", "fault", "hello", "pingpong", "poweroff", "reset", "silent", "smp", "virtio-blk", "virtio-hostile", "virtio-net", "virtio-rng", "virtio-vsock"}
	got := Names()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
}

func TestBuildWithoutGCC(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Build(t.TempDir(), "hello")
	if !errors.Is(err, ErrNoCompiler) || !strings.Contains(err.Error(), "install gcc") {
		t.Fatalf("got %v, want an error telling the user to install gcc", err)
	}
}
