package sandbox

import (
	"os/exec"
	"testing"
)

// A built image's ENTRYPOINT and CMD become a template's start command,
// quoted so that sh -c runs exactly those words.
func TestImageStartCmd(t *testing.T) {
	for _, tc := range []struct {
		c    *ImageConfig
		want string
	}{
		{nil, ""},
		{&ImageConfig{}, ""},
		{&ImageConfig{Cmd: []string{"python", "-m", "http.server", "8000"}}, "exec 'python' '-m' 'http.server' '8000'"},
		{&ImageConfig{Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo 'it''s' $HOME"}}, `exec '/bin/sh' '-c' 'echo '\''it'\'''\''s'\'' $HOME'`},
	} {
		if got := imageStartCmd(tc.c); got != tc.want {
			t.Errorf("imageStartCmd(%+v) = %q; want %q", tc.c, got, tc.want)
		}
	}
	// The quoting survives a real shell: printf sees each word whole.
	cmd := imageStartCmd(&ImageConfig{Entrypoint: []string{"printf", "[%s]"}, Cmd: []string{"a b", "it's", "$HOME", "`x`"}})
	out, err := exec.Command("sh", "-c", cmd).Output()
	if err != nil || string(out) != "[a b][it's][$HOME][`x`]" {
		t.Errorf("sh -c %q printed %q (%v)", cmd, out, err)
	}
}
