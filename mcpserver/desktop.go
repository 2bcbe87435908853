package mcpserver

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sietch-vm/sietch/api/model"
)

// ScreenshotInput is screenshot's input.
type ScreenshotInput struct {
	SandboxID string  `json:"sandbox_id" jsonschema:"a sandbox that runs a desktop (created from the desktop template)"`
	Region    []int   `json:"region,omitempty" jsonschema:"x, y, width, height: only this part of the screen (default: all of it)"`
	Scale     float64 `json:"scale,omitempty" jsonschema:"shrink the picture by this factor, 0.05 to 1 (0.5 halves each side; coordinates for the computer tool stay screen pixels)"`
}

// ScreenshotOutput is screenshot's output besides the image.
type ScreenshotOutput struct {
	Width  int `json:"width" jsonschema:"the picture's width in pixels"`
	Height int `json:"height" jsonschema:"the picture's height in pixels"`
	Bytes  int `json:"bytes" jsonschema:"size of the PNG"`
}

// Action is one of computer's input actions.
type Action struct {
	Type   string `json:"type" jsonschema:"move, click, drag, scroll, type or key"`
	X      int    `json:"x,omitempty" jsonschema:"move, click, drag: the point (pixels from the top left)"`
	Y      int    `json:"y,omitempty"`
	X2     int    `json:"x2,omitempty" jsonschema:"drag: where to release"`
	Y2     int    `json:"y2,omitempty"`
	Button int    `json:"button,omitempty" jsonschema:"click: 1 left (default), 2 middle, 3 right"`
	Count  int    `json:"count,omitempty" jsonschema:"click: 1 to 3 (a double click is 2)"`
	DY     int    `json:"dy,omitempty" jsonschema:"scroll: wheel steps, negative up"`
	Text   string `json:"text,omitempty" jsonschema:"type: the text, any Unicode"`
	Keys   string `json:"keys,omitempty" jsonschema:"key: a combination such as ctrl+l, Return or alt+F4"`
}

// ComputerInput is computer's input.
type ComputerInput struct {
	SandboxID string   `json:"sandbox_id" jsonschema:"a sandbox that runs a desktop"`
	Actions   []Action `json:"actions" jsonschema:"applied in order; the first refused one stops the rest"`
}

// ComputerOutput is computer's output.
type ComputerOutput struct {
	Width   int `json:"width"`
	Height  int `json:"height"`
	CursorX int `json:"cursor_x"`
	CursorY int `json:"cursor_y"`
}

// OpenURLInput is open_url's input.
type OpenURLInput struct {
	SandboxID string `json:"sandbox_id" jsonschema:"a sandbox that runs a desktop with a browser"`
	URL       string `json:"url" jsonschema:"an absolute http, https, file, data or about URL"`
}

// OpenURLOutput is open_url's output.
type OpenURLOutput struct {
	Started      bool `json:"started" jsonschema:"the browser was not running and now starts with the URL (take screenshots until the page shows)"`
	DevToolsPort int  `json:"devtools_port" jsonschema:"the guest port of the browser's DevTools protocol"`
}

func (s *Server) addDesktopTools() {
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:  "screenshot",
		Title: "Take a screenshot",
		Description: "A PNG of a desktop sandbox's screen (1280x800 on the desktop template), or of a region of it, as an image. " +
			"Look at it, then act with the computer tool.",
		Annotations: &mcp.ToolAnnotations{Title: "Take a screenshot", ReadOnlyHint: true, OpenWorldHint: ptr(false)},
	}, s.screenshot)
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:  "computer",
		Title: "Use the mouse and keyboard",
		Description: "Mouse and keyboard input on a desktop sandbox, applied in order and answered once done, with the pointer position after: " +
			"move, click (button, count), drag, scroll (dy), type (any text), key (a combination such as ctrl+l). Coordinates are screenshot pixels.",
		Annotations: &mcp.ToolAnnotations{Title: "Use the mouse and keyboard", DestructiveHint: ptr(true), OpenWorldHint: ptr(false)},
		InputSchema: schemaFor[ComputerInput](nil),
	}, s.computer)
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:  "open_url",
		Title: "Open a URL in the browser",
		Description: "Open a URL in a desktop sandbox's browser (Chromium), starting it if it is not running: its first start can take minutes on slow hosts, " +
			"so take screenshots until the page shows; a call while it comes up says to retry.",
		Annotations: &mcp.ToolAnnotations{Title: "Open a URL in the browser", OpenWorldHint: ptr(true)},
	}, s.openURL)
}

func (s *Server) screenshot(ctx context.Context, _ *mcp.CallToolRequest, in ScreenshotInput) (*mcp.CallToolResult, ScreenshotOutput, error) {
	var r image.Rectangle
	switch len(in.Region) {
	case 0:
	case 4:
		if in.Region[0] < 0 || in.Region[1] < 0 || in.Region[2] < 1 || in.Region[3] < 1 {
			return nil, ScreenshotOutput{}, fmt.Errorf("region %v: want x, y ≥ 0 and width, height ≥ 1", in.Region)
		}
		r = image.Rect(in.Region[0], in.Region[1], in.Region[0]+in.Region[2], in.Region[1]+in.Region[3])
	default:
		return nil, ScreenshotOutput{}, fmt.Errorf("region has %d numbers: want x, y, width, height", len(in.Region))
	}
	var b bytes.Buffer
	if err := s.api.Screenshot(ctx, in.SandboxID, "", r, in.Scale, &b); err != nil {
		return nil, ScreenshotOutput{}, apiError("screenshot of sandbox "+in.SandboxID, err)
	}
	cfg, _, err := image.DecodeConfig(bytes.NewReader(b.Bytes()))
	if err != nil {
		return nil, ScreenshotOutput{}, fmt.Errorf("screenshot of sandbox %s is not a PNG: %v", in.SandboxID, err)
	}
	out := ScreenshotOutput{Width: cfg.Width, Height: cfg.Height, Bytes: b.Len()}
	return &mcp.CallToolResult{Content: []mcp.Content{
		&mcp.TextContent{Text: fmt.Sprintf("screenshot of %s: %dx%d", in.SandboxID, cfg.Width, cfg.Height)},
		&mcp.ImageContent{Data: b.Bytes(), MIMEType: "image/png"},
	}}, out, nil
}

func (s *Server) computer(ctx context.Context, _ *mcp.CallToolRequest, in ComputerInput) (*mcp.CallToolResult, ComputerOutput, error) {
	if len(in.Actions) == 0 {
		return nil, ComputerOutput{}, fmt.Errorf("no actions: give at least one")
	}
	req := model.DesktopInput{Actions: make([]model.DesktopAction, len(in.Actions))}
	names := make([]string, len(in.Actions))
	for i, a := range in.Actions {
		req.Actions[i] = model.DesktopAction{Type: a.Type, X: a.X, Y: a.Y, X2: a.X2, Y2: a.Y2, Button: a.Button, Count: a.Count, DY: a.DY, Text: a.Text, Keys: a.Keys}
		names[i] = a.Type
	}
	st, err := s.api.Input(ctx, in.SandboxID, req)
	if err != nil {
		return nil, ComputerOutput{}, apiError("input to sandbox "+in.SandboxID, err)
	}
	out := ComputerOutput{Width: st.Width, Height: st.Height, CursorX: st.CursorX, CursorY: st.CursorY}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{
		Text: fmt.Sprintf("done: %s; pointer at %d,%d on a %dx%d screen", strings.Join(names, ", "), st.CursorX, st.CursorY, st.Width, st.Height)}}}, out, nil
}

func (s *Server) openURL(ctx context.Context, _ *mcp.CallToolRequest, in OpenURLInput) (*mcp.CallToolResult, OpenURLOutput, error) {
	b, err := s.api.OpenURL(ctx, in.SandboxID, model.BrowserRequest{URL: in.URL})
	if err != nil {
		return nil, OpenURLOutput{}, apiError("open "+in.URL+" in sandbox "+in.SandboxID, err)
	}
	text := "opened " + in.URL + " in a new tab"
	if b.Started {
		text = "started the browser with " + in.URL + "; take screenshots until the page shows (the first start can take minutes)"
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, OpenURLOutput{Started: b.Started, DevToolsPort: b.DevToolsPort}, nil
}
