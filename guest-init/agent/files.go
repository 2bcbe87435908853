package agent

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"sort"
	"strconv"

	"github.com/sietch-vm/sietch/internal/unixmode"
	"github.com/sietch-vm/sietch/wire/agentproto"
)

const copyBuffer = 1 << 20

// fileQuery parses the request's query or answers the error itself.
func (a *Agent) fileQuery(w http.ResponseWriter, r *http.Request) (fileParams, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, badRequest("query: %v", err))
		return fileParams{}, false
	}
	p, e := parseFileQuery(q, a.root)
	if e != nil {
		writeError(w, e)
		return fileParams{}, false
	}
	return p, true
}

// handleDownload streams a regular file: GET /v1/files?path=.
func (a *Agent) handleDownload(w http.ResponseWriter, r *http.Request) {
	p, ok := a.fileQuery(w, r)
	if !ok {
		return
	}
	f, err := a.fsRoot.Open(p.Rel)
	if err != nil {
		writeError(w, fsError("open", p.Path, err))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		writeError(w, fsError("stat", p.Path, err))
		return
	}
	if !fi.Mode().IsRegular() {
		writeError(w, badRequest("download %s: not a regular file (%s); use GET /v1/list for directories", p.Path, fileType(fi.Mode())))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	h.Set(agentproto.ModeHeader, unixmode.Format(fi.Mode()))
	h.Set("Last-Modified", fi.ModTime().UTC().Format(http.TimeFormat))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	// A file that shrinks while we send it makes a short body, which the
	// client sees as an error against Content-Length; that is the truth.
	if _, err := io.CopyBuffer(w, io.LimitReader(f, fi.Size()), make([]byte, copyBuffer)); err != nil {
		a.log.Debug("agent: download interrupted", "path", p.Path, "err", err)
	}
}

// handleUpload writes the body to path atomically: PUT /v1/files?path=&mode=.
// The bytes go to a temporary file in the same directory, which is synced
// and renamed over path, so readers see the old file or the whole new one.
func (a *Agent) handleUpload(w http.ResponseWriter, r *http.Request) {
	p, ok := a.fileQuery(w, r)
	if !ok {
		return
	}
	if p.Rel == "." {
		writeError(w, badRequest("upload %s: is the agent's root directory", p.Path))
		return
	}
	// An existing symlink at path is replaced, not followed (as mv does).
	mode := os.FileMode(0o644)
	if old, err := a.fsRoot.Lstat(p.Rel); err == nil {
		if old.IsDir() {
			writeError(w, badRequest("upload %s: is a directory", p.Path))
			return
		}
		if old.Mode().IsRegular() {
			mode = modeBits(old.Mode()) // keep the mode of the file it replaces
		}
	}
	if p.HasMode {
		mode = p.Mode
	}
	dir := path.Dir(p.Rel)
	tmp := path.Join(dir, ".sietch-upload-"+randomHex(8))
	f, err := a.fsRoot.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		writeError(w, fsError("upload", p.Path, err))
		return
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			a.fsRoot.Remove(tmp)
		}
	}()
	if _, err := io.CopyBuffer(f, r.Body, make([]byte, copyBuffer)); err != nil {
		writeError(w, fsError("upload", p.Path, err))
		return
	}
	// Chmod after create: the umask must not change what the client asked for.
	if err := f.Chmod(mode); err != nil {
		writeError(w, fsError("chmod", p.Path, err))
		return
	}
	if err := f.Sync(); err != nil {
		writeError(w, fsError("sync", p.Path, err))
		return
	}
	if err := f.Close(); err != nil {
		writeError(w, fsError("close", p.Path, err))
		return
	}
	done = true
	if err := a.fsRoot.Rename(tmp, p.Rel); err != nil {
		a.fsRoot.Remove(tmp)
		writeError(w, fsError("rename", p.Path, err))
		return
	}
	a.syncDir(dir)
	a.replyInfo(w, p, http.StatusOK)
}

// syncDir makes a rename in dir durable; failure only costs durability.
func (a *Agent) syncDir(dir string) {
	d, err := a.fsRoot.Open(dir)
	if err != nil {
		return
	}
	d.Sync()
	d.Close()
}

// handleStat describes path itself, not a symlink's target: GET /v1/stat?path=.
func (a *Agent) handleStat(w http.ResponseWriter, r *http.Request) {
	p, ok := a.fileQuery(w, r)
	if !ok {
		return
	}
	a.replyInfo(w, p, http.StatusOK)
}

func (a *Agent) replyInfo(w http.ResponseWriter, p fileParams, status int) {
	fi, err := a.fsRoot.Lstat(p.Rel)
	if err != nil {
		writeError(w, fsError("stat", p.Path, err))
		return
	}
	name := path.Base(p.Path)
	writeJSON(w, status, a.fileInfo(name, p.Rel, fi))
}

func (a *Agent) fileInfo(name, rel string, fi fs.FileInfo) agentproto.FileInfo {
	info := agentproto.FileInfo{
		Name:    name,
		Type:    fileType(fi.Mode()),
		Size:    fi.Size(),
		Mode:    modeBits(fi.Mode()),
		ModTime: fi.ModTime().UTC(),
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		info.Target, _ = a.fsRoot.Readlink(rel)
	}
	return info
}

func fileType(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "file"
	case m.IsDir():
		return "dir"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	}
	return "other"
}

// handleList lists a directory sorted by name: GET /v1/list?path=.
func (a *Agent) handleList(w http.ResponseWriter, r *http.Request) {
	p, ok := a.fileQuery(w, r)
	if !ok {
		return
	}
	d, err := a.fsRoot.Open(p.Rel)
	if err != nil {
		writeError(w, fsError("open", p.Path, err))
		return
	}
	defer d.Close()
	fi, err := d.Stat()
	if err != nil {
		writeError(w, fsError("stat", p.Path, err))
		return
	}
	if !fi.IsDir() {
		writeError(w, badRequest("list %s: not a directory; use GET /v1/stat", p.Path))
		return
	}
	ents, err := d.ReadDir(-1)
	if err != nil {
		writeError(w, fsError("list", p.Path, err))
		return
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	reply := agentproto.ListReply{Entries: make([]agentproto.FileInfo, 0, len(ents))}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			continue // removed since ReadDir
		}
		reply.Entries = append(reply.Entries, a.fileInfo(e.Name(), path.Join(p.Rel, e.Name()), info))
	}
	writeJSON(w, http.StatusOK, reply)
}

// handleMkdir makes a directory: POST /v1/mkdir?path=&mode=&parents=.
func (a *Agent) handleMkdir(w http.ResponseWriter, r *http.Request) {
	p, ok := a.fileQuery(w, r)
	if !ok {
		return
	}
	mode := os.FileMode(0o755)
	if p.HasMode {
		mode = p.Mode
	}
	var err error
	if p.Parents {
		err = a.fsRoot.MkdirAll(p.Rel, mode)
	} else {
		err = a.fsRoot.Mkdir(p.Rel, mode)
	}
	if err != nil {
		writeError(w, fsError("mkdir", p.Path, err))
		return
	}
	if err := a.fsRoot.Chmod(p.Rel, mode); err != nil { // past the umask
		writeError(w, fsError("chmod", p.Path, err))
		return
	}
	a.replyInfo(w, p, http.StatusOK)
}

// handleRemove removes a file, a symlink (not its target) or a directory:
// DELETE /v1/files?path=&recursive=.
func (a *Agent) handleRemove(w http.ResponseWriter, r *http.Request) {
	p, ok := a.fileQuery(w, r)
	if !ok {
		return
	}
	if p.Rel == "." {
		writeError(w, apiErr(codeForbidden, "remove %s: is the agent's root directory", p.Path))
		return
	}
	if _, err := a.fsRoot.Lstat(p.Rel); err != nil {
		writeError(w, fsError("remove", p.Path, err))
		return
	}
	var err error
	if p.Recursive {
		err = a.fsRoot.RemoveAll(p.Rel)
	} else {
		err = a.fsRoot.Remove(p.Rel)
	}
	if err != nil {
		writeError(w, fsError("remove", p.Path, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// modeBits keeps the parts of an os.FileMode that chmod sets.
func modeBits(m os.FileMode) os.FileMode {
	return m & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
}
