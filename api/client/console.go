package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// Console returns the sandbox's serial console log. With follow, the stream
// stays open and delivers new output until the sandbox ends or ctx is done.
// The caller closes it.
func (c *Client) Console(ctx context.Context, id string, follow bool) (io.ReadCloser, error) {
	path := sandboxPath(id, "/console")
	if follow {
		path += "?follow=1"
	}
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(req, http.StatusOK)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	return resp.Body, nil
}
