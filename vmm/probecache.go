package vmm

import (
	"os"
	"path/filepath"
	"strings"
)

// The probe's verdict is a property of the host kernel, so `vmm run` keeps
// it until the host reboots: in /run (a tmpfs), keyed by the boot ID. Any
// problem with the cache just means probing again.
var (
	profileCachePath = "/run/sietch/host-profile"
	bootIDPath       = "/proc/sys/kernel/random/boot_id"
)

func bootID() string {
	b, err := os.ReadFile(bootIDPath)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// cachedProfile returns the verdict recorded during this boot, if any.
func cachedProfile() (emulated, ok bool) {
	id := bootID()
	b, err := os.ReadFile(profileCachePath)
	if id == "" || err != nil {
		return false, false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] != id {
		return false, false
	}
	switch f[1] {
	case "emulated":
		return true, true
	case "native":
		return false, true
	}
	return false, false
}

// recordProfile stores the verdict for later runs (best effort, atomic).
func recordProfile(emulated bool) {
	id := bootID()
	if id == "" {
		return
	}
	verdict := "native"
	if emulated {
		verdict = "emulated"
	}
	dir := filepath.Dir(profileCachePath)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	tmp, err := os.CreateTemp(dir, ".host-profile-*")
	if err != nil {
		return
	}
	_, err = tmp.WriteString(id + " " + verdict + "\n")
	if cerr := tmp.Close(); err == nil && cerr == nil {
		if os.Rename(tmp.Name(), profileCachePath) == nil {
			return
		}
	}
	os.Remove(tmp.Name())
}
