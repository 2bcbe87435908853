// Package desktoptest starts X servers for tests.
package desktoptest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Xvfb starts an Xvfb of w×h×24 with a black root on a free display
// number, stopped when the test ends, and returns the display (":90"). It
// skips the test where Xvfb is not installed.
func Xvfb(t testing.TB, w, h int) string {
	t.Helper()
	bin, err := exec.LookPath("Xvfb")
	if err != nil {
		t.Skip("needs Xvfb (apt-get install xvfb; make deps installs it)")
	}
	for n := 90; n < 190; n++ {
		if _, err := os.Stat(fmt.Sprintf("/tmp/.X%d-lock", n)); err == nil {
			continue
		}
		display := fmt.Sprintf(":%d", n)
		cmd := exec.Command(bin, display, "-screen", "0", fmt.Sprintf("%dx%dx24", w, h), "-nolisten", "tcp", "-br")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() { cmd.Process.Kill(); <-exited })
		sock := filepath.Join("/tmp/.X11-unix", fmt.Sprintf("X%d", n))
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			select {
			case <-exited:
				// Another server took the number first: try the next.
				goto next
			default:
			}
			if _, err := os.Stat(sock); err == nil {
				return display
			}
		}
		t.Fatalf("Xvfb %s did not start within 20 s", display)
	next:
	}
	t.Fatal("no free X display number in :90 to :189")
	return ""
}
