package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/sietch-vm/sietch/api/model"
)

// Exec runs a command in the sandbox, writing its output to stdout and
// stderr (nil: discard) as the server streams it, and returns how it ended.
// A non-zero exit is not an error; a stream cut before the exit event is.
// Only ctx bounds how long it runs (req.TimeoutMS bounds the command).
func (c *Client) Exec(ctx context.Context, id string, req model.ExecRequest, stdout, stderr io.Writer) (model.ExecExit, error) {
	path := sandboxPath(id, "/exec")
	b, err := json.Marshal(req)
	if err != nil {
		return model.ExecExit{}, fmt.Errorf("exec: encode request: %w", err)
	}
	hreq, err := c.newRequest(ctx, http.MethodPost, path, bytes.NewReader(b))
	if err != nil {
		return model.ExecExit{}, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.send(hreq, http.StatusOK)
	if err != nil {
		return model.ExecExit{}, err
	}
	defer resp.Body.Close()
	exit, err := readExecStream(resp.Body, stdout, stderr)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return model.ExecExit{}, fmt.Errorf("exec: %w", ctxErr)
		}
		return model.ExecExit{}, fmt.Errorf("exec: %w", err)
	}
	return exit, nil
}

// readExecStream copies the chunks of an ExecEvent stream to stdout and
// stderr (nil: discard) until the exit event.
func readExecStream(r io.Reader, stdout, stderr io.Writer) (model.ExecExit, error) {
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	dec := json.NewDecoder(r)
	for {
		var ev model.ExecEvent
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				return model.ExecExit{}, errors.New("the output stream ended before the exit status (sandbox stopped or sietchd restarted?)")
			}
			return model.ExecExit{}, fmt.Errorf("read output stream: %w", err)
		}
		if err := writeChunk(stdout, ev.Stdout); err != nil {
			return model.ExecExit{}, fmt.Errorf("stdout: %w", err)
		}
		if err := writeChunk(stderr, ev.Stderr); err != nil {
			return model.ExecExit{}, fmt.Errorf("stderr: %w", err)
		}
		if ev.Exit != nil {
			return *ev.Exit, nil
		}
	}
}

func writeChunk(w io.Writer, b64 string) error {
	if b64 == "" {
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return fmt.Errorf("bad base64 chunk from server: %w", err)
	}
	_, err = w.Write(b)
	return err
}
