// Package unixmode converts between os.FileMode and the octal Unix mode strings ("0644", "4755") the agent and sietchd APIs carry.
package unixmode

import (
	"fmt"
	"os"
	"strconv"
)

// Parse reads one to five octal digits of Unix mode bits, at most 07777;
// the setuid, setgid and sticky bits become their os.FileMode flags.
func Parse(s string) (os.FileMode, error) {
	if s == "" || len(s) > 5 {
		return 0, fmt.Errorf("mode %q: want octal permission bits such as 0644", s)
	}
	u, err := strconv.ParseUint(s, 8, 32)
	if err != nil || u > 0o7777 {
		return 0, fmt.Errorf("mode %q: want octal permission bits such as 0644, at most 07777", s)
	}
	m := os.FileMode(u & 0o777)
	if u&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if u&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if u&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m, nil
}

// Format writes what Parse reads. Unix's own special bits (0o7000, which
// os.FileMode does not use) count too, so that a caller's 0o4755 means
// what it would to chmod.
func Format(m os.FileMode) string {
	u := uint32(m) & 0o7777
	if m&os.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		u |= 0o1000
	}
	return fmt.Sprintf("%04o", u)
}
