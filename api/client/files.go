package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/sietch-vm/sietch/api/model"
	"github.com/sietch-vm/sietch/internal/unixmode"
)

// ModeHeader carries a downloaded file's permission bits, in octal.
const ModeHeader = "X-Sietch-Mode"

// Upload writes r's bytes to path in the sandbox with the permission bits of
// mode, streaming (any size). The file appears whole or not at all.
func (c *Client) Upload(ctx context.Context, id, path string, mode fs.FileMode, r io.Reader) error {
	q := url.Values{"path": {path}, "mode": {fmt.Sprintf("%04o", mode.Perm())}}
	req, err := c.newRequest(ctx, http.MethodPut, sandboxPath(id, "/files?"+q.Encode()), r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.send(req, http.StatusNoContent)
	if err != nil {
		return fmt.Errorf("upload %s: %w", path, err)
	}
	resp.Body.Close()
	return nil
}

// File is a download in progress: read Body, then close it.
type File struct {
	Body io.ReadCloser
	Mode fs.FileMode // permission bits in the sandbox
	Size int64       // -1 when the server did not say
}

// Open starts downloading path from the sandbox. The caller closes Body.
func (c *Client) Open(ctx context.Context, id, path string) (*File, error) {
	q := url.Values{"path": {path}}
	req, err := c.newRequest(ctx, http.MethodGet, sandboxPath(id, "/files?"+q.Encode()), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(req, http.StatusOK)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", path, err)
	}
	mode, err := parseMode(resp.Header.Get(ModeHeader))
	if err != nil {
		resp.Body.Close()
		return nil, fmt.Errorf("download %s: %w", path, err)
	}
	return &File{Body: resp.Body, Mode: mode, Size: resp.ContentLength}, nil
}

// Download copies path from the sandbox to w and returns its permission
// bits.
func (c *Client) Download(ctx context.Context, id, path string, w io.Writer) (fs.FileMode, error) {
	f, err := c.Open(ctx, id, path)
	if err != nil {
		return 0, err
	}
	defer f.Body.Close()
	n, err := io.Copy(w, f.Body)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return 0, fmt.Errorf("download %s: %w", path, err)
	}
	if f.Size >= 0 && n != f.Size {
		return 0, fmt.Errorf("download %s: got %d of %d bytes", path, n, f.Size)
	}
	return f.Mode, nil
}

// parseMode reads the octal mode header ("0644"); absent means 0644.
func parseMode(s string) (fs.FileMode, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "0o")
	if s == "" {
		return 0o644, nil
	}
	m, err := unixmode.Parse(s)
	if err != nil {
		return 0, fmt.Errorf("bad %s header: %w", ModeHeader, err)
	}
	return m.Perm(), nil
}

// ListFiles returns the entries of the directory at path in the sandbox,
// sorted by name. (List lists sandboxes.)
func (c *Client) ListFiles(ctx context.Context, id, path string) ([]model.FileInfo, error) {
	var out model.FileList
	if err := c.call(ctx, http.MethodGet, sandboxPath(id, "/files/list?"+url.Values{"path": {path}}.Encode()), nil, &out, http.StatusOK); err != nil {
		return nil, fmt.Errorf("list %s: %w", path, err)
	}
	return out.Entries, nil
}

// Stat describes path in the sandbox (a symlink itself, not its target).
func (c *Client) Stat(ctx context.Context, id, path string) (model.FileInfo, error) {
	var fi model.FileInfo
	if err := c.call(ctx, http.MethodGet, sandboxPath(id, "/files/stat?"+url.Values{"path": {path}}.Encode()), nil, &fi, http.StatusOK); err != nil {
		return fi, fmt.Errorf("stat %s: %w", path, err)
	}
	return fi, nil
}

// Mkdir makes a directory in the sandbox (with req.Parents, its parents
// too, and an existing directory is no error) and describes it.
func (c *Client) Mkdir(ctx context.Context, id string, req model.MkdirRequest) (model.FileInfo, error) {
	var fi model.FileInfo
	if err := c.call(ctx, http.MethodPost, sandboxPath(id, "/files/mkdir"), req, &fi, http.StatusOK); err != nil {
		return fi, fmt.Errorf("mkdir %s: %w", req.Path, err)
	}
	return fi, nil
}

// Remove removes a file, a symlink (not its target) or an empty directory
// in the sandbox; with recursive, a whole tree. A non-empty directory
// without recursive is an *Error with code model.CodeConflict.
func (c *Client) Remove(ctx context.Context, id, path string, recursive bool) error {
	q := url.Values{"path": {path}, "recursive": {strconv.FormatBool(recursive)}}
	if err := c.call(ctx, http.MethodDelete, sandboxPath(id, "/files?"+q.Encode()), nil, nil, http.StatusNoContent); err != nil {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// Rename moves from to to within the sandbox. A file or symlink at to is
// replaced; a directory never is (model.CodeConflict).
func (c *Client) Rename(ctx context.Context, id, from, to string) (model.FileInfo, error) {
	var fi model.FileInfo
	if err := c.call(ctx, http.MethodPost, sandboxPath(id, "/files/rename"), model.RenameRequest{From: from, To: to}, &fi, http.StatusOK); err != nil {
		return fi, fmt.Errorf("rename %s to %s: %w", from, to, err)
	}
	return fi, nil
}

// OpenTar starts downloading the tree under dir in the sandbox as a tar
// archive (names relative to dir). The caller closes it. A read error
// other than io.EOF means the archive was cut short and is incomplete.
func (c *Client) OpenTar(ctx context.Context, id, dir string) (io.ReadCloser, error) {
	req, err := c.newRequest(ctx, http.MethodGet, sandboxPath(id, "/files/tar?"+url.Values{"path": {dir}}.Encode()), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(req, http.StatusOK)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", dir, err)
	}
	return resp.Body, nil
}

// DownloadTar copies the tree under dir in the sandbox to w as a tar
// archive.
func (c *Client) DownloadTar(ctx context.Context, id, dir string, w io.Writer) error {
	body, err := c.OpenTar(ctx, id, dir)
	if err != nil {
		return err
	}
	defer body.Close()
	if _, err := io.Copy(w, body); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = ctxErr
		}
		return fmt.Errorf("download %s: %w", dir, err)
	}
	return nil
}

// UploadTar extracts the tar archive r holds into dir in the sandbox, made
// if missing. Nothing lands outside dir, devices are refused, setuid and
// setgid are dropped, and each file appears whole or not at all; the first
// refused entry ends it with an *Error that names the entry.
func (c *Client) UploadTar(ctx context.Context, id, dir string, r io.Reader) (model.TarResult, error) {
	var res model.TarResult
	req, err := c.newRequest(ctx, http.MethodPut, sandboxPath(id, "/files/tar?"+url.Values{"path": {dir}}.Encode()), r)
	if err != nil {
		return res, err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	// A refusal of dir comes back before the archive is sent.
	req.Header.Set("Expect", "100-continue")
	resp, err := c.send(req, http.StatusOK)
	if err != nil {
		return res, fmt.Errorf("upload into %s: %w", dir, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return res, fmt.Errorf("upload into %s: decode response: %w", dir, err)
	}
	return res, nil
}

// Watcher is a running watch of a directory in a sandbox: call Next for
// each event, Close to end it.
type Watcher struct {
	dir  string
	body io.ReadCloser
	br   *bufio.Reader
}

// maxWatchLine bounds one event line.
const maxWatchLine = 64 << 10

// Watch starts watching dir in the sandbox (recursive: every directory
// under it too, those made later included). When it returns, the watch is
// in place: every change from then on is reported. Cancelling ctx or Close
// ends it.
func (c *Client) Watch(ctx context.Context, id, dir string, recursive bool) (*Watcher, error) {
	q := url.Values{"path": {dir}, "recursive": {strconv.FormatBool(recursive)}}
	req, err := c.newRequest(ctx, http.MethodGet, sandboxPath(id, "/files/watch?"+q.Encode()), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.send(req, http.StatusOK)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	return &Watcher{dir: dir, body: resp.Body, br: bufio.NewReaderSize(resp.Body, 16<<10)}, nil
}

// Next waits for the next event. io.EOF means the watch ended cleanly:
// the directory was removed or moved (the event before said so). Any
// other error means the stream broke or was closed.
func (w *Watcher) Next() (model.WatchEvent, error) {
	var line []byte
	for {
		chunk, err := w.br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxWatchLine {
			return model.WatchEvent{}, fmt.Errorf("watch %s: event line longer than %d bytes", w.dir, maxWatchLine)
		}
		if err == nil {
			break
		}
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return model.WatchEvent{}, io.EOF
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return model.WatchEvent{}, fmt.Errorf("watch %s: %w", w.dir, err)
		}
	}
	var ev model.WatchEvent
	if err := json.Unmarshal(line, &ev); err != nil {
		return model.WatchEvent{}, fmt.Errorf("watch %s: bad event %.80q: %w", w.dir, line, err)
	}
	return ev, nil
}

// Close ends the watch.
func (w *Watcher) Close() error { return w.body.Close() }
