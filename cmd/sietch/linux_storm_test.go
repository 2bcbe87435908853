package main

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/sietch-vm/sietch/api/model"
)

// storm runs a fork bomb in a new sandbox from the template. Its processes
// are the guest's, not the host's: the sandbox's host tasks stay well
// under its group's pids limit and its memory under its limit while the
// guest's vCPU burns; the sandbox other answers all the while; and the
// host ends the storm at once with sietch rm.
func (e *e2eCLI) storm(other string) {
	t, must := e.t, e.must
	sb := must("create")
	stats := func() model.SandboxStats {
		var st model.SandboxStats
		if err := json.Unmarshal([]byte(must("stats", "--json", sb)), &st); err != nil {
			t.Fatalf("stats of %s: %v", sb, err)
		}
		return st
	}
	before := stats()
	must("exec", "-d", sb, "--", "bash", "-c", "f() { f | f & }; f")
	// The storm is on once the guest has burnt a few more seconds of CPU.
	var during model.SandboxStats
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(time.Second) {
		during = stats()
		if during.CPUUserS+during.CPUSystemS-before.CPUUserS-before.CPUSystemS >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the fork bomb used under 5 s of CPU in 3 minutes: %+v", sb, during)
		}
	}
	if out := must("exec", other, "--", "echo", "still here"); strings.TrimSpace(out) != "still here" {
		t.Errorf("%s during %s's fork bomb: %q", other, sb, out)
	}
	during = stats()
	t.Logf("%s in its fork bomb: %d host tasks (limit %d, %d before), %d MiB (limit %d MiB), %.1fs CPU, %d of %d periods throttled",
		sb, during.Pids, during.PidsLimit, before.Pids, during.MemoryBytes>>20, during.MemoryLimitBytes>>20,
		during.CPUUserS+during.CPUSystemS, during.CPUThrottledPeriods, during.CPUPeriods)
	if during.PidsLimit > 0 && during.Pids >= during.PidsLimit/2 {
		t.Errorf("%s: the guest's fork bomb shows as %d host tasks (limit %d); guest processes must stay in the guest", sb, during.Pids, during.PidsLimit)
	}
	if during.MemoryLimitBytes > 0 && during.MemoryBytes > during.MemoryLimitBytes {
		t.Errorf("%s: %d bytes in use over its limit %d", sb, during.MemoryBytes, during.MemoryLimitBytes)
	}
	must("rm", sb)
}
