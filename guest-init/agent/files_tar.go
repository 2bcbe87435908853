package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/internal/tarx"
	"github.com/sietch-vm/sietch/wire/agentproto"
)

// maxTarEntries bounds the entries of one uploaded archive.
const maxTarEntries = 1 << 20

// handleTarDownload streams a directory tree as a PAX tar archive: GET
// /v1/tar?path=DIR. Names are relative to DIR; devices, fifos and
// sockets are left out (package tarx). An error after the first byte cuts
// the response short, so the client sees it incomplete rather than a tar
// that looks whole.
func (a *Agent) handleTarDownload(w http.ResponseWriter, r *http.Request) {
	p, ok := a.fileQuery(w, r)
	if !ok {
		return
	}
	fi, err := a.fsRoot.Stat(p.Rel)
	if err != nil {
		writeError(w, fsError("tar", p.Path, err))
		return
	}
	if !fi.IsDir() {
		writeError(w, badRequest("tar %s: not a directory; use GET /v1/files for one file", p.Path))
		return
	}
	sub, err := a.fsRoot.OpenRoot(p.Rel)
	if err != nil {
		writeError(w, fsError("tar", p.Path, err))
		return
	}
	defer sub.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	skipped := 0
	n, err := tarx.Write(w, sub, func(string, fs.FileMode) { skipped++ })
	if err != nil {
		a.log.Warn("agent: tar download cut short", "path", p.Path, "err", err)
		panic(http.ErrAbortHandler)
	}
	a.log.Debug("agent: tar sent", "path", p.Path, "files", n.Files, "dirs", n.Dirs, "symlinks", n.Symlinks, "bytes", n.Bytes, "skipped", skipped)
}

// handleTarUpload extracts a tar archive into a directory, made with its
// parents if missing: PUT /v1/tar?path=DIR&mode=&owners=. owners=true
// keeps the archive's numeric owners (an image build's COPY --chown). Every entry must stay
// inside DIR (package tarx has the rules); the first refused entry ends
// the extraction with an error naming it, and what came before it stays.
// The file system is synced before the reply, so a reply means the files
// are on disk.
func (a *Agent) handleTarUpload(w http.ResponseWriter, r *http.Request) {
	p, ok := a.fileQuery(w, r)
	if !ok {
		return
	}
	mode := os.FileMode(0o755)
	if p.HasMode {
		mode = p.Mode
	}
	if p.Rel != "." {
		if _, err := a.fsRoot.Lstat(p.Rel); errors.Is(err, fs.ErrNotExist) {
			if err := a.fsRoot.MkdirAll(p.Rel, mode); err != nil {
				writeError(w, fsError("tar into", p.Path, err))
				return
			}
			if err := a.fsRoot.Chmod(p.Rel, mode); err != nil {
				writeError(w, fsError("chmod", p.Path, err))
				return
			}
		}
	}
	fi, err := a.fsRoot.Stat(p.Rel)
	if err != nil {
		writeError(w, fsError("tar into", p.Path, err))
		return
	}
	if !fi.IsDir() {
		writeError(w, apiErr(codeConflict, "tar into %s: it exists and is not a directory", p.Path))
		return
	}
	sub, err := a.fsRoot.OpenRoot(p.Rel)
	if err != nil {
		writeError(w, fsError("tar into", p.Path, err))
		return
	}
	defer sub.Close()
	br := bufio.NewReaderSize(r.Body, 64<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		io.Copy(io.Discard, br)
		writeError(w, badRequest("tar into %s: the body is gzip-compressed; send an uncompressed tar (gunzip it first)", p.Path))
		return
	}
	n, err := tarx.Extract(br, sub, tarx.Limits{MaxEntries: maxTarEntries, MaxNameLen: maxPathLen, Owners: p.Owners})
	syncFS(sub)
	if err != nil {
		// Read the rest, so that the client, still sending, gets to read
		// the reply rather than a broken pipe.
		io.Copy(io.Discard, br)
		writeError(w, tarError(p.Path, n, err))
		return
	}
	writeJSON(w, http.StatusOK, agentproto.TarResult{Files: n.Files, Dirs: n.Dirs, Symlinks: n.Symlinks, Bytes: n.Bytes})
}

// syncFS flushes the file system root is on; failure only costs durability.
func syncFS(root *os.Root) {
	d, err := root.Open(".")
	if err != nil {
		return
	}
	unix.Syncfs(int(d.Fd()))
	d.Close()
}

// tarError turns an extraction error into an API error that names the
// entry, and says what was written before it.
func tarError(dir string, n tarx.Counts, err error) *Error {
	before := ""
	if n != (tarx.Counts{}) {
		before = fmt.Sprintf("; the %d files, %d directories and %d symlinks before it were written", n.Files, n.Dirs, n.Symlinks)
	}
	var ee *tarx.EntryError
	if !errors.As(err, &ee) {
		return apiErr(codeInternal, "tar into %s: %v%s", dir, err, before)
	}
	switch {
	case errors.Is(err, tarx.ErrUnsafe):
		return apiErr(codeForbidden, "tar into %s: %v%s", dir, err, before)
	case errors.Is(err, tarx.ErrRefused), errors.Is(err, tarx.ErrLimit), errors.Is(err, tarx.ErrFormat):
		return badRequest("tar into %s: %v%s", dir, err, before)
	case errors.Is(err, tarx.ErrConflict):
		return apiErr(codeConflict, "tar into %s: %v%s", dir, err, before)
	}
	e := fsError(fmt.Sprintf("tar into %s: entry %d", dir, ee.Index), fmt.Sprintf("%q", ee.Name), ee.Err)
	e.Message += before
	return e
}

// runtimeFiles are what sietch writes into every guest's root at run time
// (guest-init and POST /v1/identity): a layer of the image being built
// leaves them out, as Docker leaves out the files it bind-mounts there.
var runtimeFiles = map[string]bool{"etc/hostname": true, "etc/hosts": true, "etc/resolv.conf": true}

// handleLayer streams what the guest changed in its root since boot, as
// an OCI image layer: GET /v1/layer. That is the overlayfs upper
// directory, with deletions and replaced directories as whiteouts
// (tarx.WriteLayer); an image build captures each step with it. Files
// changing while it runs make an inconsistent layer, so the builder asks
// between steps, with nothing running.
func (a *Agent) handleLayer(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Layer == "" {
		writeError(w, apiErr(codeNotImplemented, "this guest's root has no writable layer to read (not booted by guest-init with a root disk)"))
		return
	}
	root, err := os.OpenRoot(a.cfg.Layer)
	if err != nil {
		writeError(w, apiErr(codeInternal, "open the root's writable layer: %v", err))
		return
	}
	defer root.Close()
	// Data still in the page cache is in the upper directory's files
	// already (overlayfs writes through); sync is for an ext4 upper.
	unix.Sync()
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	skipped := 0
	n, err := tarx.WriteLayer(w, root, tarx.Layer{Dir: a.cfg.Layer, Skip: func(name string) bool { return runtimeFiles[name] }},
		func(string, fs.FileMode) { skipped++ })
	if err != nil {
		a.log.Warn("agent: layer cut short", "err", err)
		panic(http.ErrAbortHandler)
	}
	a.log.Info("agent: layer sent", "files", n.Files, "dirs", n.Dirs, "symlinks", n.Symlinks, "whiteouts", n.Whiteouts, "bytes", n.Bytes, "skipped", skipped)
}
