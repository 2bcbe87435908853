package mcpserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sietch-vm/sietch/api/model"
)

// File bounds.
const (
	defaultReadBytes = 64 << 10
	maxReadBytes     = 4 << 20
	maxWriteBytes    = 16 << 20 // what one tool call's JSON should carry
	maxEntries       = 1000
)

// ReadFileInput is read_file's input.
type ReadFileInput struct {
	SandboxID string `json:"sandbox_id" jsonschema:"the sandbox to read from"`
	Path      string `json:"path" jsonschema:"absolute path of the file in the sandbox"`
	MaxBytes  int    `json:"max_bytes,omitempty" jsonschema:"read at most this many bytes from the start (default 65536, at most 4194304)"`
}

// ReadFileOutput is read_file's output.
type ReadFileOutput struct {
	Path      string `json:"path"`
	Size      int64  `json:"size" jsonschema:"the file's whole size in bytes (-1: unknown)"`
	Mode      string `json:"mode" jsonschema:"permission bits, octal"`
	Encoding  string `json:"encoding" jsonschema:"utf-8: content is the text; base64: the file is binary and content is its bytes in base64"`
	Content   string `json:"content"`
	Truncated bool   `json:"truncated,omitempty" jsonschema:"only the first max_bytes bytes are in content"`
	MIMEType  string `json:"mime_type" jsonschema:"the type its first bytes suggest"`
}

// WriteFileInput is write_file's input.
type WriteFileInput struct {
	SandboxID string `json:"sandbox_id" jsonschema:"the sandbox to write in"`
	Path      string `json:"path" jsonschema:"absolute path of the file in the sandbox; missing parent directories are made"`
	Content   string `json:"content" jsonschema:"the file's new contents (it is replaced whole)"`
	Encoding  string `json:"encoding,omitempty" jsonschema:"utf-8 (default): content is the text; base64: content is the bytes in base64"`
	Mode      string `json:"mode,omitempty" jsonschema:"permission bits, octal (default 0644; 0755 for a script)"`
}

// WriteFileOutput is write_file's output.
type WriteFileOutput struct {
	Path  string `json:"path"`
	Bytes int    `json:"bytes" jsonschema:"bytes written"`
}

// ListDirectoryInput is list_directory's input.
type ListDirectoryInput struct {
	SandboxID string `json:"sandbox_id" jsonschema:"the sandbox to look in"`
	Path      string `json:"path" jsonschema:"absolute path of the directory in the sandbox"`
}

// Entry is one file in a directory.
type Entry struct {
	Name    string `json:"name"`
	Type    string `json:"type" jsonschema:"file, dir, symlink or other"`
	Size    int64  `json:"size" jsonschema:"bytes"`
	Mode    string `json:"mode" jsonschema:"permission bits, octal"`
	ModTime string `json:"mtime" jsonschema:"last modified (RFC 3339)"`
	Target  string `json:"target,omitempty" jsonschema:"a symlink's target"`
}

// ListDirectoryOutput is list_directory's output.
type ListDirectoryOutput struct {
	Path      string  `json:"path"`
	Entries   []Entry `json:"entries" jsonschema:"sorted by name"`
	Truncated int     `json:"truncated,omitempty" jsonschema:"entries left out past the first 1000"`
}

func (s *Server) addFileTools() {
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:  "read_file",
		Title: "Read a file",
		Description: "Read a file from a sandbox: text comes back as text, a binary file as base64 (and a PNG, JPEG, GIF or WebP image also as an image). " +
			"Reads at most max_bytes from the start and says when the file is longer; use exec (e.g. tail, sed -n) for parts of large files.",
		Annotations: &mcp.ToolAnnotations{Title: "Read a file", ReadOnlyHint: true, OpenWorldHint: ptr(false)},
	}, s.readFile)
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:        "write_file",
		Title:       "Write a file",
		Description: "Write a file in a sandbox, replacing it whole if it exists and making missing parent directories: text as given, or bytes given in base64.",
		Annotations: &mcp.ToolAnnotations{Title: "Write a file", DestructiveHint: ptr(true), IdempotentHint: true, OpenWorldHint: ptr(false)},
		InputSchema: schemaFor[WriteFileInput](map[string][]any{"encoding": {"utf-8", "base64"}}),
	}, s.writeFile)
	mcp.AddTool(s.mcp, &mcp.Tool{
		Name:        "list_directory",
		Title:       "List a directory",
		Description: "List a directory in a sandbox: each entry's name, type (file, dir, symlink), size, permission bits and modification time.",
		Annotations: &mcp.ToolAnnotations{Title: "List a directory", ReadOnlyHint: true, OpenWorldHint: ptr(false)},
	}, s.listDirectory)
}

func (s *Server) readFile(ctx context.Context, _ *mcp.CallToolRequest, in ReadFileInput) (*mcp.CallToolResult, ReadFileOutput, error) {
	limit := in.MaxBytes
	switch {
	case limit == 0:
		limit = defaultReadBytes
	case limit < 0 || limit > maxReadBytes:
		return nil, ReadFileOutput{}, fmt.Errorf("max_bytes %d: want 1 to %d", limit, maxReadBytes)
	}
	f, err := s.api.Open(ctx, in.SandboxID, in.Path)
	if err != nil {
		return nil, ReadFileOutput{}, apiError("read "+in.Path+" in sandbox "+in.SandboxID, err)
	}
	defer f.Body.Close()
	data, err := io.ReadAll(io.LimitReader(f.Body, int64(limit)+1))
	if err != nil {
		return nil, ReadFileOutput{}, apiError("read "+in.Path+" in sandbox "+in.SandboxID, err)
	}
	out := ReadFileOutput{Path: in.Path, Size: f.Size, Mode: fmt.Sprintf("%04o", f.Mode.Perm()), MIMEType: http.DetectContentType(data)}
	if len(data) > limit {
		data, out.Truncated = data[:limit], true
	}
	res := &mcp.CallToolResult{}
	textPart := data
	if out.Truncated {
		textPart = trimPartialEnd(data)
	}
	if isText(textPart) {
		out.Encoding, out.Content = "utf-8", string(textPart)
	} else {
		out.Encoding, out.Content = "base64", base64.StdEncoding.EncodeToString(data)
	}
	var b strings.Builder
	switch {
	case out.Truncated:
		fmt.Fprintf(&b, "%s: the first %d of %s bytes (%s, mode %s)", in.Path, len(data), sizeText(f.Size), out.MIMEType, out.Mode)
	default:
		fmt.Fprintf(&b, "%s: %d bytes (%s, mode %s)", in.Path, len(data), out.MIMEType, out.Mode)
	}
	if out.Encoding == "base64" {
		b.WriteString("; binary, so its bytes are given in base64")
	}
	b.WriteString("\n")
	b.WriteString(out.Content)
	res.Content = []mcp.Content{&mcp.TextContent{Text: b.String()}}
	if !out.Truncated && strings.HasPrefix(out.MIMEType, "image/") && out.MIMEType != "image/x-icon" && out.MIMEType != "image/bmp" {
		res.Content = append(res.Content, &mcp.ImageContent{Data: data, MIMEType: out.MIMEType})
	}
	return res, out, nil
}

func sizeText(n int64) string {
	if n < 0 {
		return "more"
	}
	return strconv.FormatInt(n, 10)
}

// isText reports whether b reads as text: UTF-8 without NULs.
func isText(b []byte) bool {
	return utf8.Valid(b) && bytes.IndexByte(b, 0) < 0
}

func (s *Server) writeFile(ctx context.Context, _ *mcp.CallToolRequest, in WriteFileInput) (*mcp.CallToolResult, WriteFileOutput, error) {
	data := []byte(in.Content)
	switch in.Encoding {
	case "", "utf-8":
	case "base64":
		var err error
		if data, err = base64.StdEncoding.DecodeString(strings.TrimSpace(in.Content)); err != nil {
			return nil, WriteFileOutput{}, fmt.Errorf("content is not base64: %w", err)
		}
	default:
		return nil, WriteFileOutput{}, fmt.Errorf("encoding %q: want utf-8 or base64", in.Encoding)
	}
	if len(data) > maxWriteBytes {
		return nil, WriteFileOutput{}, fmt.Errorf("content of %d bytes: at most %d in one call", len(data), maxWriteBytes)
	}
	mode := fs.FileMode(0o644)
	if in.Mode != "" {
		m, err := strconv.ParseUint(in.Mode, 8, 32)
		if err != nil || m > 0o777 {
			return nil, WriteFileOutput{}, fmt.Errorf("mode %q: want octal permission bits such as 0644", in.Mode)
		}
		mode = fs.FileMode(m)
	}
	if !strings.HasPrefix(in.Path, "/") {
		return nil, WriteFileOutput{}, fmt.Errorf("path %q: want an absolute path", in.Path)
	}
	if dir := parentDir(in.Path); dir != "/" {
		if _, err := s.api.Mkdir(ctx, in.SandboxID, model.MkdirRequest{Path: dir, Parents: true}); err != nil {
			return nil, WriteFileOutput{}, apiError("make "+dir+" in sandbox "+in.SandboxID, err)
		}
	}
	if err := s.api.Upload(ctx, in.SandboxID, in.Path, mode, bytes.NewReader(data)); err != nil {
		return nil, WriteFileOutput{}, apiError("write "+in.Path+" in sandbox "+in.SandboxID, err)
	}
	return text(fmt.Sprintf("Wrote %d bytes to %s (mode %04o).", len(data), in.Path, mode)), WriteFileOutput{Path: in.Path, Bytes: len(data)}, nil
}

func parentDir(p string) string {
	i := strings.LastIndexByte(strings.TrimRight(p, "/"), '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

func (s *Server) listDirectory(ctx context.Context, _ *mcp.CallToolRequest, in ListDirectoryInput) (*mcp.CallToolResult, ListDirectoryOutput, error) {
	infos, err := s.api.ListFiles(ctx, in.SandboxID, in.Path)
	if err != nil {
		return nil, ListDirectoryOutput{}, apiError("list "+in.Path+" in sandbox "+in.SandboxID, err)
	}
	out := ListDirectoryOutput{Path: in.Path, Entries: []Entry{}}
	if len(infos) > maxEntries {
		out.Truncated = len(infos) - maxEntries
		infos = infos[:maxEntries]
	}
	var b strings.Builder
	for _, fi := range infos {
		e := Entry{Name: fi.Name, Type: fi.Type, Size: fi.Size, Mode: fi.Mode, ModTime: fi.ModTime.UTC().Format("2006-01-02T15:04:05Z"), Target: fi.Target}
		out.Entries = append(out.Entries, e)
		name := e.Name
		switch e.Type {
		case "dir":
			name += "/"
		case "symlink":
			name += " -> " + e.Target
		}
		fmt.Fprintf(&b, "%s %10d %s %s\n", e.Mode, e.Size, e.ModTime, name)
	}
	if out.Truncated > 0 {
		fmt.Fprintf(&b, "[… %d more entries left out]\n", out.Truncated)
	}
	if len(infos) == 0 {
		b.WriteString("(empty directory)\n")
	}
	return text(b.String()), out, nil
}
