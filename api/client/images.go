package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"

	"github.com/sietch-vm/sietch/api/model"
)

// ImageBuild names what BuildImage builds.
type ImageBuild struct {
	Name       string            // the image's name
	Dockerfile string            // the Dockerfile's path in the context; "": Dockerfile
	Target     string            // the stage to build; "": the last
	BuildArgs  map[string]string // --build-arg
	NoCache    bool
}

// BuildImage builds an image from a Dockerfile: contextTar is the build
// context as a tar archive holding the Dockerfile, and log receives the
// build's output as it comes (nil: discarded). A build refused before it
// ran, or one that failed (a RUN's exit status), is an *Error.
func (c *Client) BuildImage(ctx context.Context, b ImageBuild, contextTar io.Reader, log io.Writer) (model.Image, error) {
	if log == nil {
		log = io.Discard
	}
	q := url.Values{"name": {b.Name}}
	if b.Dockerfile != "" {
		q.Set("dockerfile", b.Dockerfile)
	}
	if b.Target != "" {
		q.Set("target", b.Target)
	}
	if b.NoCache {
		q.Set("no_cache", strconv.FormatBool(true))
	}
	keys := make([]string, 0, len(b.BuildArgs))
	for k := range b.BuildArgs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		q.Add("build_arg", k+"="+b.BuildArgs[k])
	}
	req, err := c.newRequest(ctx, http.MethodPost, "/v1/images?"+q.Encode(), contextTar)
	if err != nil {
		return model.Image{}, err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	req.Header.Set("Accept", "application/x-ndjson")
	// A refusal of the query (a bad name) comes back before the context is sent.
	req.Header.Set("Expect", "100-continue")
	resp, err := c.send(req, http.StatusOK)
	if err != nil {
		return model.Image{}, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev model.ImageBuildEvent
		if err := dec.Decode(&ev); err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return model.Image{}, fmt.Errorf("image build: %w", ctxErr)
			}
			if errors.Is(err, io.EOF) {
				return model.Image{}, errors.New("image build: the stream ended before the result (sietchd restarted?)")
			}
			return model.Image{}, fmt.Errorf("image build: read the stream: %w", err)
		}
		if ev.Log != "" {
			if _, err := io.WriteString(log, ev.Log); err != nil {
				return model.Image{}, fmt.Errorf("image build: write the log: %w", err)
			}
		}
		switch {
		case ev.Error != nil:
			return model.Image{}, &Error{Status: http.StatusOK, Code: ev.Error.Code, Message: ev.Error.Message, Retry: ev.Error.Retry}
		case ev.Image != nil:
			return *ev.Image, nil
		}
	}
}
