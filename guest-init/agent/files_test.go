package agent

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// 64 MiB up and down, compared by SHA-256, with the mode kept both ways.
func TestFilesLargeBothWays(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	const size = 64 << 20
	up := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{7}), size), up)
	path := env.root + "/dir/big.bin"
	if err := env.c.Mkdir(ctx, env.root+"/dir", 0, false); err != nil {
		t.Fatalf("Mkdir: %v", err)
	}
	if err := env.c.Upload(ctx, path, 0o640, src); err != nil {
		t.Fatalf("Upload: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != size || fi.Mode().Perm() != 0o640 {
		t.Fatalf("on disk: %v %v; want %d bytes, mode 0640", fi, err, size)
	}
	down := sha256.New()
	mode, err := env.c.Download(ctx, path, down)
	if err != nil {
		t.Fatalf("Download: %v", err)
	}
	if fmt.Sprintf("%x", down.Sum(nil)) != fmt.Sprintf("%x", up.Sum(nil)) || mode != 0o640 {
		t.Fatalf("download: mode %v, checksum differs: %v", mode, !bytes.Equal(down.Sum(nil), up.Sum(nil)))
	}
	// No temporary file is left beside it.
	if ents, _ := os.ReadDir(env.root + "/dir"); len(ents) != 1 {
		t.Fatalf("dir holds %d entries; want only big.bin", len(ents))
	}
}

func TestFilesModesAndTree(t *testing.T) {
	env := startAgent(t, Config{})
	ctx := testCtx(t)
	r := env.root
	if err := env.c.Upload(ctx, r+"/run.sh", 0o755, strings.NewReader("#!/bin/sh\necho ran\n")); err != nil {
		t.Fatalf("Upload: %v", err)
	}
	// Replacing without a mode keeps the old mode.
	if err := env.c.Upload(ctx, r+"/run.sh", 0, strings.NewReader("#!/bin/sh\necho ran again\n")); err != nil {
		t.Fatalf("Upload again: %v", err)
	}
	var out bytes.Buffer
	if res, err := env.c.Exec(ctx, agentproto.ExecRequest{Cmd: r + "/run.sh"}, nil, &out, nil); err != nil || res.ExitCode != 0 || out.String() != "ran again\n" {
		t.Fatalf("run uploaded script: %q %+v %v", out.String(), res, err)
	}
	if err := env.c.Upload(ctx, r+"/suid", 0o711|os.ModeSetuid, strings.NewReader("x")); err != nil {
		t.Fatalf("Upload setuid: %v", err)
	}
	if err := env.c.Mkdir(ctx, r+"/a/b/c", 0o700, true); err != nil {
		t.Fatalf("Mkdir parents: %v", err)
	}
	var e *Error
	if err := env.c.Mkdir(ctx, r+"/a/b/c", 0o700, false); !errors.As(err, &e) || e.Status != http.StatusConflict {
		t.Fatalf("Mkdir existing: %v; want 409", err)
	}
	if err := env.c.Mkdir(ctx, r+"/x/y", 0, false); !errors.As(err, &e) || e.Status != http.StatusNotFound {
		t.Fatalf("Mkdir without parent: %v; want 404", err)
	}
	os.Symlink("run.sh", r+"/link")

	tests := []struct {
		path, typ string
		mode      os.FileMode
		size      int64
		target    string
	}{
		{"/run.sh", "file", 0o755, 25, ""},
		{"/suid", "file", 0o711 | os.ModeSetuid, 1, ""},
		{"/a/b/c", "dir", 0o700, -1, ""},
		{"/link", "symlink", 0o777, -1, "run.sh"},
	}
	for _, tt := range tests {
		fi, err := env.c.Stat(ctx, r+tt.path)
		if err != nil {
			t.Fatalf("Stat %s: %v", tt.path, err)
		}
		if fi.Type != tt.typ || fi.Mode != tt.mode || (tt.size >= 0 && fi.Size != tt.size) || fi.Target != tt.target || fi.Name != filepath.Base(tt.path) {
			t.Errorf("Stat %s: %+v; want type %s mode %v size %d target %q", tt.path, fi, tt.typ, tt.mode, tt.size, tt.target)
		}
	}
	list, err := env.c.List(ctx, r)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var names []string
	for _, fi := range list {
		names = append(names, fi.Name+":"+fi.Type)
	}
	if got := strings.Join(names, " "); got != "a:dir link:symlink run.sh:file suid:file" {
		t.Fatalf("List: %s", got)
	}
	if _, err := env.c.List(ctx, r+"/run.sh"); !errors.As(err, &e) || e.Status != http.StatusBadRequest {
		t.Fatalf("List of a file: %v; want 400", err)
	}
	if _, err := env.c.Download(ctx, r+"/a", io.Discard); !errors.As(err, &e) || e.Status != http.StatusBadRequest {
		t.Fatalf("Download of a directory: %v; want 400", err)
	}

	// Remove: a symlink, not its target; a tree only when recursive.
	if err := env.c.Remove(ctx, r+"/link", false); err != nil {
		t.Fatalf("Remove link: %v", err)
	}
	if _, err := os.Stat(r + "/run.sh"); err != nil {
		t.Fatalf("removing the link removed its target: %v", err)
	}
	if err := env.c.Remove(ctx, r+"/a", false); !errors.As(err, &e) || e.Status != http.StatusConflict {
		t.Fatalf("Remove non-empty dir: %v; want 409", err)
	}
	if err := env.c.Remove(ctx, r+"/a", true); err != nil {
		t.Fatalf("Remove recursive: %v", err)
	}
	if err := env.c.Remove(ctx, r+"/a", true); !errors.As(err, &e) || e.Status != http.StatusNotFound {
		t.Fatalf("Remove missing: %v; want 404", err)
	}
	if err := env.c.Remove(ctx, r, true); !errors.As(err, &e) || e.Status != http.StatusForbidden {
		t.Fatalf("Remove root: %v; want 403", err)
	}
	if _, err := env.c.Stat(ctx, r+"/nope"); !errors.As(err, &e) || e.Status != http.StatusNotFound {
		t.Fatalf("Stat missing: %v; want 404", err)
	}
}

// Paths that leave the root are refused with a reason, and nothing
// outside the root is read or written.
func TestFilesPathEscapes(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(outside+"/secret", []byte("secret"), 0o644)
	env := startAgent(t, Config{})
	r := env.root
	os.Symlink("/etc", r+"/etc-link")
	os.Symlink(outside, r+"/out-link")
	os.Symlink(outside+"/secret", r+"/secret-link")
	os.Symlink("../../../../../../../..", r+"/up-link")
	os.Mkdir(r+"/sub", 0o755)
	ctx := testCtx(t)

	tests := []struct {
		name, path string
		status     int
		onlyRead   bool // an upload replaces a symlink at path; mkdir meets a file
	}{
		{"dot-dot inside", r + "/sub/../../etc/passwd", 403, false},
		{"dot-dot at root", r + "/..", 403, false},
		{"absolute outside", "/etc/passwd", 403, false},
		{"sibling with root as prefix", r + "-evil/x", 403, false},
		{"relative", "etc/passwd", 400, false},
		{"symlink to /etc", r + "/etc-link/passwd", 403, false},
		{"symlink to outside dir", r + "/out-link/secret", 403, false},
		{"symlink to outside file", r + "/secret-link", 403, true},
		{"relative symlink up", r + "/up-link/etc/passwd", 403, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(op string, err error) {
				t.Helper()
				var e *Error
				if !errors.As(err, &e) || e.Status != tt.status || e.Message == "" {
					t.Errorf("%s %q: %v; want %d with a reason", op, tt.path, err, tt.status)
				}
			}
			_, err := env.c.Download(ctx, tt.path, io.Discard)
			check("Download", err)
			if tt.onlyRead {
				return
			}
			check("Upload", env.c.Upload(ctx, tt.path, 0o644, strings.NewReader("pwned")))
			_, err = env.c.List(ctx, tt.path)
			check("List", err)
			check("Mkdir", env.c.Mkdir(ctx, tt.path+"/d", 0, true))
		})
	}
	var e *Error
	if _, err := env.c.Stat(ctx, ""); !errors.As(err, &e) || e.Status != http.StatusBadRequest {
		t.Errorf("Stat without a path: %v; want 400", err)
	}
	// Uploading to a symlink replaces the link; its target is untouched.
	if err := env.c.Upload(ctx, r+"/secret-link", 0, strings.NewReader("new")); err != nil {
		t.Fatalf("Upload over a symlink: %v", err)
	}
	if fi, err := os.Lstat(r + "/secret-link"); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Fatalf("after upload over a symlink: %v %v; want a regular 0644 file", fi, err)
	}
	if b, _ := os.ReadFile(outside + "/secret"); string(b) != "secret" {
		t.Fatalf("outside file now holds %q", b)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Fatalf("outside dir gained entries: %v", ents)
	}
	// The symlink itself may be described and removed: that stays inside.
	fi, err := env.c.Stat(ctx, r+"/etc-link")
	if err != nil || fi.Type != "symlink" || fi.Target != "/etc" {
		t.Fatalf("Stat symlink: %+v %v", fi, err)
	}
	if err := env.c.Remove(ctx, r+"/out-link", true); err != nil {
		t.Fatalf("Remove symlink to outside: %v", err)
	}
	if _, err := os.Stat(outside + "/secret"); err != nil {
		t.Fatalf("recursive remove of a symlink followed it: %v", err)
	}
}
