package clienttest

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sietch-vm/sietch/api/model"
)

// The fake's guest file system: box.files holds regular files by clean
// absolute path, box.dirs directories (with "/" always there). A file's
// parents exist as directories. Watches hear every change made through
// the API.

var fakeTime = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// fileRoutes registers the directory and watch routes.
func (s *Server) fileRoutes(auth func(string, func(http.ResponseWriter, *http.Request))) {
	auth("DELETE /v1/sandboxes/{id}/files", s.withAgent(s.removeFile))
	auth("GET /v1/sandboxes/{id}/files/list", s.withAgent(s.listFiles))
	auth("GET /v1/sandboxes/{id}/files/stat", s.withAgent(s.statFile))
	auth("POST /v1/sandboxes/{id}/files/mkdir", s.withAgent(s.mkdir))
	auth("POST /v1/sandboxes/{id}/files/rename", s.withAgent(s.rename))
	auth("GET /v1/sandboxes/{id}/files/tar", s.withAgent(s.getTar))
	auth("PUT /v1/sandboxes/{id}/files/tar", s.withAgent(s.putTar))
	auth("GET /v1/sandboxes/{id}/files/watch", s.watch)
}

// guestPath reads and cleans the path query parameter.
func guestPath(w http.ResponseWriter, p string) (string, bool) {
	if p == "" || !strings.HasPrefix(p, "/") {
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "want ?path=/absolute/path", false)
		return "", false
	}
	return path.Clean(p), true
}

func (b *box) isDir(p string) bool {
	_, ok := b.dirs[p]
	return ok || p == "/"
}

// children lists the direct entries of dir, by name.
func (b *box) children(dir string) []model.FileInfo {
	var out []model.FileInfo
	for p, f := range b.files {
		if path.Dir(p) == dir && p != dir {
			out = append(out, model.FileInfo{Name: path.Base(p), Type: "file", Size: int64(len(f.data)), Mode: fmt.Sprintf("%04o", f.mode), ModTime: fakeTime})
		}
	}
	for p, mode := range b.dirs {
		if path.Dir(p) == dir && p != dir {
			out = append(out, model.FileInfo{Name: path.Base(p), Type: "dir", Size: 4096, Mode: fmt.Sprintf("%04o", mode), ModTime: fakeTime})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (b *box) stat(p string) (model.FileInfo, bool) {
	if f, ok := b.files[p]; ok {
		return model.FileInfo{Name: path.Base(p), Type: "file", Size: int64(len(f.data)), Mode: fmt.Sprintf("%04o", f.mode), ModTime: fakeTime}, true
	}
	if b.isDir(p) {
		mode, ok := b.dirs[p]
		if !ok {
			mode = 0o755 // the root
		}
		return model.FileInfo{Name: path.Base(p), Type: "dir", Size: 4096, Mode: fmt.Sprintf("%04o", mode), ModTime: fakeTime}, true
	}
	return model.FileInfo{}, false
}

// mkdirAll makes dir and its parents, telling watches.
func (s *Server) mkdirAll(b *box, dir string, mode uint64) {
	if b.isDir(dir) {
		return
	}
	s.mkdirAll(b, path.Dir(dir), 0o755)
	b.dirs[dir] = mode
	s.notify(b, model.WatchCreate, dir, true)
}

func (s *Server) listFiles(w http.ResponseWriter, r *http.Request, b *box) {
	p, ok := guestPath(w, r.URL.Query().Get("path"))
	if !ok {
		return
	}
	if !b.isDir(p) {
		if _, ok := b.files[p]; ok {
			writeError(w, http.StatusBadRequest, model.CodeBadRequest, "list "+p+": not a directory", false)
			return
		}
		writeError(w, http.StatusNotFound, model.CodeNotFound, "list "+p+": no such file or directory", false)
		return
	}
	writeJSON(w, http.StatusOK, model.FileList{Entries: append([]model.FileInfo{}, b.children(p)...)})
}

func (s *Server) statFile(w http.ResponseWriter, r *http.Request, b *box) {
	p, ok := guestPath(w, r.URL.Query().Get("path"))
	if !ok {
		return
	}
	fi, ok := b.stat(p)
	if !ok {
		writeError(w, http.StatusNotFound, model.CodeNotFound, "stat "+p+": no such file or directory", false)
		return
	}
	writeJSON(w, http.StatusOK, fi)
}

func (s *Server) mkdir(w http.ResponseWriter, r *http.Request, b *box) {
	var req model.MkdirRequest
	if !decode(w, r, &req) {
		return
	}
	p, ok := guestPath(w, req.Path)
	if !ok {
		return
	}
	mode := uint64(0o755)
	if req.Mode != "" {
		m, err := strconv.ParseUint(req.Mode, 8, 32)
		if err != nil || m > 0o7777 {
			writeError(w, http.StatusBadRequest, model.CodeBadRequest, "mode: want octal such as 0755", false)
			return
		}
		mode = m
	}
	switch {
	case b.hasFile(p):
		writeError(w, http.StatusConflict, model.CodeConflict, "mkdir "+p+": a file exists there", false)
		return
	case b.isDir(p) && !req.Parents:
		writeError(w, http.StatusConflict, model.CodeConflict, "mkdir "+p+": already exists", false)
		return
	case !b.isDir(path.Dir(p)) && !req.Parents:
		writeError(w, http.StatusNotFound, model.CodeNotFound, "mkdir "+p+": no such file or directory", false)
		return
	}
	s.mkdirAll(b, p, mode)
	fi, _ := b.stat(p)
	writeJSON(w, http.StatusOK, fi)
}

func (b *box) hasFile(p string) bool {
	_, ok := b.files[p]
	return ok
}

// under reports whether p is dir or inside it.
func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

func (s *Server) removeFile(w http.ResponseWriter, r *http.Request, b *box) {
	p, ok := guestPath(w, r.URL.Query().Get("path"))
	if !ok {
		return
	}
	recursive := r.URL.Query().Get("recursive") == "true"
	switch {
	case p == "/":
		writeError(w, http.StatusBadRequest, model.CodeBadRequest, "remove /: is the root directory", false)
	case b.hasFile(p):
		delete(b.files, p)
		s.notify(b, model.WatchRemove, p, false)
		w.WriteHeader(http.StatusNoContent)
	case b.isDir(p):
		if len(b.children(p)) > 0 && !recursive {
			writeError(w, http.StatusConflict, model.CodeConflict, "remove "+p+": directory not empty (use recursive=true)", false)
			return
		}
		for f := range b.files {
			if under(f, p) {
				delete(b.files, f)
				s.notify(b, model.WatchRemove, f, false)
			}
		}
		for d := range b.dirs {
			if under(d, p) {
				delete(b.dirs, d)
				s.notify(b, model.WatchRemove, d, true)
			}
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		writeError(w, http.StatusNotFound, model.CodeNotFound, "remove "+p+": no such file or directory", false)
	}
}

func (s *Server) rename(w http.ResponseWriter, r *http.Request, b *box) {
	var req model.RenameRequest
	if !decode(w, r, &req) {
		return
	}
	from, ok := guestPath(w, req.From)
	if !ok {
		return
	}
	to, ok := guestPath(w, req.To)
	if !ok {
		return
	}
	switch {
	case !b.hasFile(from) && !b.isDir(from):
		writeError(w, http.StatusNotFound, model.CodeNotFound, "rename "+from+": no such file or directory", false)
		return
	case b.isDir(to):
		writeError(w, http.StatusConflict, model.CodeConflict, "rename "+from+" to "+to+": "+to+" is a directory", false)
		return
	case b.isDir(from) && b.hasFile(to):
		writeError(w, http.StatusConflict, model.CodeConflict, "rename "+from+" to "+to+": "+to+" is not a directory", false)
		return
	case !b.isDir(path.Dir(to)):
		writeError(w, http.StatusNotFound, model.CodeNotFound, "rename to "+to+": no such directory", false)
		return
	}
	move := func(p string) string { return to + strings.TrimPrefix(p, from) }
	for f, data := range b.files {
		if under(f, from) {
			delete(b.files, f)
			b.files[move(f)] = data
		}
	}
	for d, mode := range b.dirs {
		if under(d, from) {
			delete(b.dirs, d)
			b.dirs[move(d)] = mode
		}
	}
	s.notify(b, model.WatchRename, from, b.isDir(to))
	s.notify(b, model.WatchCreate, to, b.isDir(to))
	fi, _ := b.stat(to)
	writeJSON(w, http.StatusOK, fi)
}

func (s *Server) getTar(w http.ResponseWriter, r *http.Request, b *box) {
	dir, ok := guestPath(w, r.URL.Query().Get("path"))
	if !ok {
		return
	}
	if !b.isDir(dir) {
		writeError(w, http.StatusNotFound, model.CodeNotFound, "tar "+dir+": no such directory", false)
		return
	}
	type ent struct {
		name string
		hdr  *tar.Header
		data []byte
	}
	var ents []ent
	for d, mode := range b.dirs {
		if under(d, dir) && d != dir {
			name := strings.TrimPrefix(d, strings.TrimSuffix(dir, "/")+"/") + "/"
			ents = append(ents, ent{name, &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: int64(mode), ModTime: fakeTime}, nil})
		}
	}
	for p, f := range b.files {
		if under(p, dir) {
			name := strings.TrimPrefix(p, strings.TrimSuffix(dir, "/")+"/")
			ents = append(ents, ent{name, &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: int64(f.mode), Size: int64(len(f.data)), ModTime: fakeTime}, f.data})
		}
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].name < ents[j].name })
	w.Header().Set("Content-Type", "application/x-tar")
	tw := tar.NewWriter(w)
	for _, e := range ents {
		e.hdr.Format = tar.FormatPAX
		tw.WriteHeader(e.hdr)
		tw.Write(e.data)
	}
	tw.Close()
}

func (s *Server) putTar(w http.ResponseWriter, r *http.Request, b *box) {
	dir, ok := guestPath(w, r.URL.Query().Get("path"))
	if !ok {
		return
	}
	if b.hasFile(dir) {
		writeError(w, http.StatusConflict, model.CodeConflict, "tar into "+dir+": it exists and is not a directory", false)
		return
	}
	s.mkdirAll(b, dir, 0o755)
	var res model.TarResult
	tr := tar.NewReader(r.Body)
	for i := 1; ; i++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, model.CodeBadRequest, fmt.Sprintf("tar entry %d: not a valid tar stream: %v", i, err), false)
			return
		}
		name := hdr.Name
		if strings.HasPrefix(name, "/") || strings.Contains("/"+name+"/", "/../") {
			writeError(w, http.StatusBadRequest, model.CodeBadRequest, fmt.Sprintf("tar entry %d %q: unsafe name", i, name), false)
			return
		}
		p := path.Join(dir, name)
		mode := uint64(hdr.Mode) & 0o1777
		switch hdr.Typeflag {
		case tar.TypeDir:
			if p != dir {
				s.mkdirAll(b, p, mode)
				res.Dirs++
			}
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				writeError(w, http.StatusBadRequest, model.CodeBadRequest, fmt.Sprintf("tar entry %d %q: %v", i, name, err), false)
				return
			}
			s.mkdirAll(b, path.Dir(p), 0o755)
			if data == nil {
				data = []byte{}
			}
			b.files[p] = file{data: data, mode: mode}
			s.notify(b, model.WatchCreate, p, false)
			res.Files++
			res.Bytes += int64(len(data))
		default:
			writeError(w, http.StatusBadRequest, model.CodeBadRequest, fmt.Sprintf("tar entry %d %q: the fake extracts only files and directories", i, name), false)
			return
		}
	}
	writeJSON(w, http.StatusOK, res)
}

// uploaded records a file written by PUT .../files: its parents appear,
// and watches hear of it.
func (s *Server) uploaded(b *box, p string) {
	s.mkdirAll(b, path.Dir(p), 0o755)
	s.notify(b, model.WatchCreate, p, false)
}

// notify tells the box's watches of a change at p. The caller holds s.mu.
func (s *Server) notify(b *box, typ, p string, isDir bool) {
	for _, wt := range b.watches {
		if !under(p, wt.dir) || p == wt.dir || (!wt.recursive && path.Dir(p) != wt.dir) {
			continue
		}
		select {
		case wt.ch <- model.WatchEvent{Type: typ, Path: p, IsDir: isDir, Time: fakeTime}:
		default:
			wt.overflow = true
		}
	}
}

// fakeWatch is one running watch.
type fakeWatch struct {
	dir       string
	recursive bool
	ch        chan model.WatchEvent
	overflow  bool // a full channel lost events
}

func (s *Server) watch(w http.ResponseWriter, r *http.Request) {
	wt := &fakeWatch{ch: make(chan model.WatchEvent, 1024)}
	var b *box
	ok := false
	s.withAgent(func(w http.ResponseWriter, r *http.Request, bx *box) {
		dir, valid := guestPath(w, r.URL.Query().Get("path"))
		if !valid {
			return
		}
		if !bx.isDir(dir) {
			writeError(w, http.StatusNotFound, model.CodeNotFound, "watch "+dir+": no such directory", false)
			return
		}
		wt.dir, wt.recursive = dir, r.URL.Query().Get("recursive") == "true"
		bx.watches = append(bx.watches, wt)
		b, ok = bx, true
	})(w, r)
	if !ok {
		return
	}
	defer func() {
		s.mu.Lock()
		for i, x := range b.watches {
			if x == wt {
				b.watches = append(b.watches[:i], b.watches[i+1:]...)
				break
			}
		}
		s.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case ev := <-wt.ch:
			if err := enc.Encode(ev); err != nil {
				return
			}
			s.mu.Lock()
			lost := wt.overflow
			wt.overflow = false
			s.mu.Unlock()
			if lost {
				enc.Encode(model.WatchEvent{Type: model.WatchOverflow, Path: wt.dir, IsDir: true, Time: fakeTime})
			}
			if fl != nil {
				fl.Flush()
			}
		}
	}
}
