package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/sietch-vm/sietch/api/model"
)

// maxRunEvent bounds one line of a run's stream: a result may carry a
// large image.
const maxRunEvent = 64 << 20

func contextPath(id, ctxID, rest string) string {
	return sandboxPath(id, "/contexts/"+url.PathEscape(ctxID)+rest)
}

// NewContext starts a code context (a python, node or bash interpreter
// that keeps its state between runs) and returns it once it is ready.
// The default contexts need no create: see model.DefaultContext.
func (c *Client) NewContext(ctx context.Context, id string, req model.ContextRequest) (model.Context, error) {
	var out model.Context
	err := c.call(ctx, http.MethodPost, sandboxPath(id, "/contexts"), req, &out, http.StatusCreated)
	return out, err
}

// Contexts lists a sandbox's code contexts.
func (c *Client) Contexts(ctx context.Context, id string) ([]model.Context, error) {
	var out struct {
		Contexts []model.Context `json:"contexts"`
	}
	err := c.call(ctx, http.MethodGet, sandboxPath(id, "/contexts"), nil, &out, http.StatusOK)
	return out.Contexts, err
}

// DeleteContext ends a code context and its interpreter.
func (c *Client) DeleteContext(ctx context.Context, id, ctxID string) error {
	return c.call(ctx, http.MethodDelete, contextPath(id, ctxID, ""), nil, nil, http.StatusNoContent)
}

// Interrupt stops the code running in a context, as Ctrl-C would; the
// context and its state live on.
func (c *Client) Interrupt(ctx context.Context, id, ctxID string) error {
	return c.call(ctx, http.MethodPost, contextPath(id, ctxID, "/interrupt"), nil, nil, http.StatusNoContent)
}

// RestartContext starts a context's interpreter anew; its state is lost.
func (c *Client) RestartContext(ctx context.Context, id, ctxID string) (model.Context, error) {
	var out model.Context
	err := c.call(ctx, http.MethodPost, contextPath(id, ctxID, "/restart"), nil, &out, http.StatusOK)
	return out, err
}

// Run runs code in a context, calling each (if not nil) for every stdout,
// stderr, result and error event as the code produces it, and returns the
// end event. An exception in the code is not an error: it arrives as an
// event and the end's status is "error". Cancelling ctx interrupts the run.
func (c *Client) Run(ctx context.Context, id, ctxID string, req model.RunRequest, each func(model.RunEvent) error) (model.RunEnd, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return model.RunEnd{}, fmt.Errorf("run: encode request: %w", err)
	}
	hreq, err := c.newRequest(ctx, http.MethodPost, contextPath(id, ctxID, "/run"), bytes.NewReader(b))
	if err != nil {
		return model.RunEnd{}, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/x-ndjson")
	resp, err := c.send(hreq, http.StatusOK)
	if err != nil {
		return model.RunEnd{}, err
	}
	defer resp.Body.Close()
	end, err := readRunStream(resp.Body, each)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return model.RunEnd{}, fmt.Errorf("run: %w", ctxErr)
		}
		return model.RunEnd{}, fmt.Errorf("run in context %s: %w", ctxID, err)
	}
	return end, nil
}

// readRunStream hands each event to each until the end event.
func readRunStream(r io.Reader, each func(model.RunEvent) error) (model.RunEnd, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxRunEvent)
	for sc.Scan() {
		var ev model.RunEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return model.RunEnd{}, fmt.Errorf("bad event from server %.80q: %w", sc.Bytes(), err)
		}
		if ev.End != nil {
			return *ev.End, nil
		}
		if each != nil {
			if err := each(ev); err != nil {
				return model.RunEnd{}, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return model.RunEnd{}, fmt.Errorf("read run stream: %w", err)
	}
	return model.RunEnd{}, errors.New("the run's stream ended before its end event (sandbox stopped or sietchd restarted?)")
}
