package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/internal/httpjson"
	"github.com/sietch-vm/sietch/internal/unixmode"
)

// maxPathLen bounds a guest path (PATH_MAX); the agent checks the rest.
const maxPathLen = 4096

// filesQuery is the query of a files route.
type filesQuery struct {
	Path      string
	Recursive bool
}

// parseFilesQuery reads raw strictly: only the parameters in allowed, each
// once; path is required and must be a plausible absolute guest path.
func parseFilesQuery(raw string, allowed ...string) (filesQuery, *httpjson.Error) {
	bad := func(format string, args ...any) (filesQuery, *httpjson.Error) {
		return filesQuery{}, httpjson.Errorf(http.StatusBadRequest, model.CodeBadRequest, format, args...)
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return bad("query: %v", err)
	}
	for k, v := range q {
		if !slices.Contains(allowed, k) {
			return bad("unknown query parameter %q; this route takes %s", k, strings.Join(allowed, ", "))
		}
		if len(v) != 1 {
			return bad("query parameter %q given %d times; give it once", k, len(v))
		}
	}
	var fq filesQuery
	if !q.Has("path") {
		return bad("the path query parameter is missing: ?path=/absolute/path/in/the/sandbox")
	}
	fq.Path = q.Get("path")
	if e := checkGuestPath("path", fq.Path); e != nil {
		return filesQuery{}, e
	}
	if s := q.Get("recursive"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return bad("recursive=%q: want true or false", s)
		}
		fq.Recursive = b
	}
	return fq, nil
}

// checkGuestPath refuses what cannot be a guest path; the agent resolves
// the rest (.., symlinks, its root).
func checkGuestPath(field, p string) *httpjson.Error {
	bad := func(format string, args ...any) *httpjson.Error {
		return httpjson.Errorf(http.StatusBadRequest, model.CodeBadRequest, field+" "+format, args...)
	}
	switch {
	case p == "":
		return bad("is empty; give an absolute path in the sandbox, such as /root/file")
	case len(p) > maxPathLen:
		return bad("is longer than %d bytes", maxPathLen)
	case strings.IndexByte(p, 0) >= 0:
		return bad("contains a NUL byte")
	case !strings.HasPrefix(p, "/"):
		return bad("%q is not absolute; paths in a sandbox start with /", p)
	}
	return nil
}

// decodeMkdir reads and checks a POST .../files/mkdir body.
func decodeMkdir(w http.ResponseWriter, r *http.Request) (model.MkdirRequest, os.FileMode, *httpjson.Error) {
	var req model.MkdirRequest
	if e := decodeRequest(w, r, &req, false); e != nil {
		return req, 0, e
	}
	if e := checkGuestPath("path", req.Path); e != nil {
		return req, 0, e
	}
	var mode os.FileMode
	if req.Mode != "" {
		m, err := unixmode.Parse(req.Mode)
		if err != nil {
			return req, 0, httpjson.Errorf(http.StatusBadRequest, model.CodeBadRequest, "%v", err)
		}
		mode = m
	}
	return req, mode, nil
}

// decodeRename reads and checks a POST .../files/rename body.
func decodeRename(w http.ResponseWriter, r *http.Request) (model.RenameRequest, *httpjson.Error) {
	var req model.RenameRequest
	if e := decodeRequest(w, r, &req, false); e != nil {
		return req, e
	}
	if e := checkGuestPath("from", req.From); e != nil {
		return req, e
	}
	if e := checkGuestPath("to", req.To); e != nil {
		return req, e
	}
	return req, nil
}

// query parses the request's files query or answers the error itself.
func query(w http.ResponseWriter, r *http.Request, allowed ...string) (filesQuery, bool) {
	q, e := parseFilesQuery(r.URL.RawQuery, allowed...)
	if e != nil {
		httpjson.WriteError(w, e)
		return q, false
	}
	return q, true
}

func (s *Server) listFiles(w http.ResponseWriter, r *http.Request) {
	q, ok := query(w, r, "path")
	if !ok {
		return
	}
	ents, err := s.m.ListFiles(r.Context(), r.PathValue("id"), q.Path)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, model.FileList{Entries: mapOut(ents, fileInfoOut)})
}

func (s *Server) statFile(w http.ResponseWriter, r *http.Request) {
	q, ok := query(w, r, "path")
	if !ok {
		return
	}
	fi, err := s.m.StatFile(r.Context(), r.PathValue("id"), q.Path)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, fileInfoOut(fi))
}

func (s *Server) mkdir(w http.ResponseWriter, r *http.Request) {
	req, mode, e := decodeMkdir(w, r)
	if e != nil {
		httpjson.WriteError(w, e)
		return
	}
	fi, err := s.m.Mkdir(r.Context(), r.PathValue("id"), req.Path, mode, req.Parents)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, fileInfoOut(fi))
}

func (s *Server) removeFile(w http.ResponseWriter, r *http.Request) {
	q, ok := query(w, r, "path", "recursive")
	if !ok {
		return
	}
	if err := s.m.Remove(r.Context(), r.PathValue("id"), q.Path, q.Recursive); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) rename(w http.ResponseWriter, r *http.Request) {
	req, e := decodeRename(w, r)
	if e != nil {
		httpjson.WriteError(w, e)
		return
	}
	fi, err := s.m.Rename(r.Context(), r.PathValue("id"), req.From, req.To)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, fileInfoOut(fi))
}

// downloadTar streams a directory as tar; an error after the first byte
// cuts the response short (s.end), so the archive never looks whole.
func (s *Server) downloadTar(w http.ResponseWriter, r *http.Request) {
	q, ok := query(w, r, "path")
	if !ok {
		return
	}
	l := newLazyWriter(w, "application/x-tar")
	s.end(l, s.m.DownloadTar(r.Context(), r.PathValue("id"), q.Path, l))
}

func (s *Server) uploadTar(w http.ResponseWriter, r *http.Request) {
	q, ok := query(w, r, "path")
	if !ok {
		return
	}
	res, err := s.m.UploadTar(r.Context(), r.PathValue("id"), q.Path, r.Body)
	if err != nil {
		// A client that did not wait for 100 Continue is still sending:
		// read the rest, so it gets to read the reason rather than a
		// broken pipe. One that waits never sent it, and need not.
		if !strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
			io.Copy(io.Discard, r.Body)
		}
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, model.TarResult{Files: res.Files, Dirs: res.Dirs, Symlinks: res.Symlinks, Bytes: res.Bytes})
}

// watch streams a directory's changes as NDJSON. The headers go out once
// the watch is in place in the guest; each event is flushed as it comes.
func (s *Server) watch(w http.ResponseWriter, r *http.Request) {
	q, ok := query(w, r, "path", "recursive")
	if !ok {
		return
	}
	wt, err := s.m.Watch(r.Context(), r.PathValue("id"), q.Path, q.Recursive)
	if err != nil {
		s.fail(w, err)
		return
	}
	defer wt.Close()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	for {
		ev, err := wt.Next()
		if errors.Is(err, io.EOF) {
			return // the directory went away; the stream ends whole
		}
		if err != nil {
			if r.Context().Err() == nil {
				s.log.Warn("watch stream from the guest broke; cutting the response", "sandbox", r.PathValue("id"), "path", q.Path, "err", err)
				panic(http.ErrAbortHandler)
			}
			return
		}
		line, _ := json.Marshal(model.WatchEvent{Type: ev.Type, Path: ev.Path, IsDir: ev.IsDir, Time: ev.Time})
		if _, err := w.Write(append(line, '\n')); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
	}
}
