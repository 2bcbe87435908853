package client

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/sietch-vm/sietch/api/model"
)

// maxTextBody bounds the metrics and OpenAPI documents read into memory.
const maxTextBody = 32 << 20

// Health asks whether sietchd is up; it needs no token.
func (c *Client) Health(ctx context.Context) (model.Health, error) {
	var h model.Health
	err := c.call(ctx, http.MethodGet, "/v1/health", nil, &h, http.StatusOK)
	return h, err
}

// Images lists the images sandboxes can start from.
func (c *Client) Images(ctx context.Context) ([]model.Image, error) {
	var out struct {
		Images []model.Image `json:"images"`
	}
	err := c.call(ctx, http.MethodGet, "/v1/images", nil, &out, http.StatusOK)
	return out.Images, err
}

// Metrics returns sietchd's metrics in the Prometheus text format.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	b, err := c.getText(ctx, "/metrics")
	return string(b), err
}

// OpenAPI returns the OpenAPI 3 document (YAML) describing the API.
func (c *Client) OpenAPI(ctx context.Context) ([]byte, error) {
	return c.getText(ctx, "/v1/openapi.yaml")
}

func (c *Client) getText(ctx context.Context, path string) ([]byte, error) {
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(req, http.StatusOK)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxTextBody+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	if len(b) > maxTextBody {
		return nil, fmt.Errorf("GET %s: response larger than %d MiB", path, maxTextBody>>20)
	}
	return b, nil
}
