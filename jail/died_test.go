package jail

import (
	"os/exec"
	"testing"
)

func TestDiedWords(t *testing.T) {
	for _, tc := range []struct {
		script, want string
	}{
		{"exit 3", "exited with status 3"},
		{"exit 0", "exited with status 0"},
		{"kill -KILL $$", "killed by SIGKILL"},
		{"kill -SYS $$", "killed by SIGSYS (seccomp: forbidden system call)"},
	} {
		cmd := exec.Command("/bin/sh", "-c", "ulimit -c 0; "+tc.script)
		cmd.Run()
		if got := Died(cmd.ProcessState); got != tc.want {
			t.Errorf("%s: Died = %q, want %q", tc.script, got, tc.want)
		}
	}
	if got := Died(nil); got != "not finished" {
		t.Errorf("Died(nil) = %q", got)
	}
}
