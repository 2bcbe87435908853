package client

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"strings"

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
