package agent

import (
	"fmt"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/sietch-vm/sietch/internal/unixmode"
)

const maxPathLen = 4096 // PATH_MAX

// fileParams are the query parameters of the files endpoints.
type fileParams struct {
	Path      string      // as the client sent it, for messages
	Rel       string      // relative to the agent's root, for os.Root; "." is the root
	Mode      os.FileMode // when HasMode
	HasMode   bool
	Parents   bool // mkdir -p
	Recursive bool // rm -r
	Owners    bool // PUT /v1/tar: keep the archive's numeric owners
}

// parseFileQuery checks a files request's query against root (a cleaned
// absolute directory). Paths are absolute guest paths that must lie in root.
func parseFileQuery(q url.Values, root string) (fileParams, *Error) {
	for k, v := range q {
		switch k {
		case "path", "mode", "parents", "recursive", "owners":
			if len(v) != 1 {
				return fileParams{}, badRequest("query parameter %q given %d times; give it once", k, len(v))
			}
		default:
			return fileParams{}, badRequest("unknown query parameter %q; known: path, mode, parents, recursive, owners", k)
		}
	}
	p := fileParams{Path: q.Get("path")}
	rel, e := resolvePath(root, p.Path)
	if e != nil {
		return fileParams{}, e
	}
	p.Rel = rel
	if s := q.Get("mode"); s != "" {
		m, err := unixmode.Parse(s)
		if err != nil {
			return fileParams{}, badRequest("%v", err)
		}
		p.Mode, p.HasMode = m, true
	}
	var err error
	if p.Parents, err = parseBool(q, "parents"); err != nil {
		return fileParams{}, badRequest("%v", err)
	}
	if p.Recursive, err = parseBool(q, "recursive"); err != nil {
		return fileParams{}, badRequest("%v", err)
	}
	if p.Owners, err = parseBool(q, "owners"); err != nil {
		return fileParams{}, badRequest("%v", err)
	}
	return p, nil
}

func parseBool(q url.Values, k string) (bool, error) {
	s := q.Get(k)
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("%s=%q: want true or false", k, s)
	}
	return b, nil
}

// resolvePath turns an absolute guest path into one relative to root.
// It refuses ".." outright rather than reasoning about where it lands;
// symlinks are left to os.Root, which refuses those that leave root.
func resolvePath(root, p string) (string, *Error) {
	switch {
	case p == "":
		return "", badRequest("path is required, such as ?path=/root/file")
	case len(p) > maxPathLen:
		return "", badRequest("path longer than %d bytes", maxPathLen)
	case strings.IndexByte(p, 0) >= 0:
		return "", badRequest("path contains a NUL byte")
	case !strings.HasPrefix(p, "/"):
		return "", badRequest("path %q: must be absolute, such as /root/file", p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", apiErr(codeForbidden, "path %q: \"..\" elements are refused; send the path without them", p)
		}
	}
	clean := path.Clean(p)
	if root == "/" {
		if clean == "/" {
			return ".", nil
		}
		return clean[1:], nil
	}
	if clean == root {
		return ".", nil
	}
	if !strings.HasPrefix(clean, root+"/") {
		return "", apiErr(codeForbidden, "path %q: outside the agent's root %s", p, root)
	}
	return clean[len(root)+1:], nil
}
