package agentproto

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// RenameRequest is the body of POST /v1/rename.
type RenameRequest struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// TarResult is the reply of PUT /v1/tar: what the archive put in place.
type TarResult struct {
	Files    int64 `json:"files"` // regular files, hard links included
	Dirs     int64 `json:"dirs"`
	Symlinks int64 `json:"symlinks"`
	Bytes    int64 `json:"bytes"` // of regular files' contents
}

// Watch event types (WatchEvent.Type). They follow fsnotify: a rename is
// reported as "rename" of the old name and "create" of the new one.
const (
	WatchCreate   = "create"
	WatchWrite    = "write"
	WatchRemove   = "remove"
	WatchRename   = "rename"
	WatchChmod    = "chmod"    // mode, owner, times or extended attributes
	WatchOverflow = "overflow" // events were lost (the kernel's queue overflowed, or Path could not be watched): rescan
)

// WatchEvent is one line of the application/x-ndjson stream of GET /v1/watch.
type WatchEvent struct {
	Type  string    `json:"type"`
	Path  string    `json:"path,omitempty"` // absolute guest path
	IsDir bool      `json:"is_dir,omitempty"`
	Time  time.Time `json:"time"`
}

// maxWatchLine bounds one watch event line (a path is at most 4 KiB).
const maxWatchLine = 64 << 10

// Rename renames from to to (both absolute guest paths). It replaces a
// file or symlink at to, never a directory.
func (c *Client) Rename(ctx context.Context, from, to string) error {
	return c.doJSON(ctx, http.MethodPost, "/v1/rename", nil, RenameRequest{From: from, To: to}, nil)
}

// DownloadTar writes the tree under dir to w as a tar archive. An archive
// cut short (the agent failed after it began) is an error.
func (c *Client) DownloadTar(ctx context.Context, dir string, w io.Writer) error {
	resp, err := c.do(ctx, http.MethodGet, "/v1/tar", url.Values{"path": {dir}}, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("agent tar of %s: %w", dir, err)
	}
	return nil
}

// Layer writes what the guest changed in its root since boot to w, as an
// OCI image layer (tar with whiteouts). An archive cut short is an error.
func (c *Client) Layer(ctx context.Context, w io.Writer) error {
	resp, err := c.do(ctx, http.MethodGet, "/v1/layer", nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("agent layer: %w", err)
	}
	return nil
}

// UploadTar extracts the tar archive r holds into dir, which is made with
// its parents if missing.
func (c *Client) UploadTar(ctx context.Context, dir string, r io.Reader) (TarResult, error) {
	return c.uploadTar(ctx, url.Values{"path": {dir}}, r)
}

// UploadTarOwned is UploadTar keeping the archive's numeric owners, as an
// image build's COPY --chown needs.
func (c *Client) UploadTarOwned(ctx context.Context, dir string, r io.Reader) (TarResult, error) {
	return c.uploadTar(ctx, url.Values{"path": {dir}, "owners": {"true"}}, r)
}

func (c *Client) uploadTar(ctx context.Context, q url.Values, r io.Reader) (TarResult, error) {
	dir := q.Get("path")
	var res TarResult
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, clientBase+"/v1/tar?"+q.Encode(), noClose(r))
	if err != nil {
		return res, fmt.Errorf("agent PUT /v1/tar: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-tar")
	// A refusal of the directory comes back before any of the archive is sent.
	req.Header.Set("Expect", "100-continue")
	resp, err := c.hc.Do(req)
	if err != nil {
		return res, fmt.Errorf("agent PUT /v1/tar: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return res, readError(resp)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxErrorBody)).Decode(&res); err != nil {
		return res, fmt.Errorf("agent tar into %s: decode reply: %w", dir, err)
	}
	return res, nil
}

// Watcher is a running watch; its events come from Next.
type Watcher struct {
	dir  string
	body io.ReadCloser
	br   *bufio.Reader
}

// Watch starts watching dir (and with recursive, every directory under it,
// those made later included). When it returns the watch is in place:
// changes from then on are reported. Close ends it.
func (c *Client) Watch(ctx context.Context, dir string, recursive bool) (*Watcher, error) {
	q := url.Values{"path": {dir}, "recursive": {strconv.FormatBool(recursive)}}
	resp, err := c.do(ctx, http.MethodGet, "/v1/watch", q, nil)
	if err != nil {
		return nil, err
	}
	return &Watcher{dir: dir, body: resp.Body, br: bufio.NewReaderSize(resp.Body, 16<<10)}, nil
}

// Next waits for the next event. It returns io.EOF when the agent ended
// the watch (the directory was removed or moved), and another error when
// the stream broke or was closed.
func (w *Watcher) Next() (WatchEvent, error) {
	line, err := nextLine(w.br, maxWatchLine)
	if err == io.EOF {
		return WatchEvent{}, io.EOF
	}
	if err != nil {
		return WatchEvent{}, fmt.Errorf("agent watch of %s: %w", w.dir, err)
	}
	var ev WatchEvent
	if err := json.Unmarshal(line, &ev); err != nil {
		return WatchEvent{}, fmt.Errorf("agent watch of %s: bad event %.80q: %w", w.dir, line, err)
	}
	return ev, nil
}

// nextLine reads one '\n'-terminated line of at most limit bytes: io.EOF
// at a clean end between lines, io.ErrUnexpectedEOF inside one.
func nextLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > limit {
			return nil, fmt.Errorf("event line longer than %d bytes", limit)
		}
		switch {
		case err == nil:
			return line, nil
		case err == io.EOF && len(line) == 0:
			return nil, io.EOF
		case err == io.EOF:
			return nil, io.ErrUnexpectedEOF
		case err != bufio.ErrBufferFull:
			return nil, err
		}
	}
}

// Close ends the watch.
func (w *Watcher) Close() error { return w.body.Close() }
