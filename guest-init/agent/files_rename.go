package agent

import (
	"errors"
	"io"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// renameParams are a checked POST /v1/rename.
type renameParams struct {
	From, To fileParams
}

// decodeRename reads and checks a POST /v1/rename body against root.
func decodeRename(r io.Reader, root string) (renameParams, *Error) {
	var req agentproto.RenameRequest
	if e := decodeJSON(r, maxJSONBody, &req); e != nil {
		return renameParams{}, e
	}
	from, e := resolvePath(root, req.From)
	if e != nil {
		e.Message = "from: " + e.Message
		return renameParams{}, e
	}
	to, e := resolvePath(root, req.To)
	if e != nil {
		e.Message = "to: " + e.Message
		return renameParams{}, e
	}
	return renameParams{From: fileParams{Path: req.From, Rel: from}, To: fileParams{Path: req.To, Rel: to}}, nil
}

// handleRename renames a file, symlink or directory: POST /v1/rename
// {"from", "to"}. It replaces an existing file or symlink at to, as
// rename(2) does, but never a directory, and never a file with a
// directory: those are 409s that say what is in the way.
func (a *Agent) handleRename(w http.ResponseWriter, r *http.Request) {
	p, e := decodeRename(r.Body, a.root)
	if e != nil {
		writeError(w, e)
		return
	}
	from, to := p.From, p.To
	if from.Rel == "." || to.Rel == "." {
		writeError(w, apiErr(codeForbidden, "rename %s to %s: the agent's root directory cannot be renamed or replaced", from.Path, to.Path))
		return
	}
	src, err := a.fsRoot.Lstat(from.Rel)
	if err != nil {
		writeError(w, fsError("rename", from.Path, err))
		return
	}
	if from.Rel == to.Rel {
		a.replyInfo(w, to, http.StatusOK)
		return
	}
	if src.IsDir() && strings.HasPrefix(to.Rel, from.Rel+"/") {
		writeError(w, badRequest("rename %s to %s: a directory cannot move into itself", from.Path, to.Path))
		return
	}
	dst, err := a.fsRoot.Lstat(to.Rel)
	switch {
	case err == nil && dst.IsDir():
		writeError(w, apiErr(codeConflict, "rename %s to %s: %s is a directory, which rename does not replace; remove it first or name a path inside it", from.Path, to.Path, to.Path))
		return
	case err == nil && src.IsDir():
		writeError(w, apiErr(codeConflict, "rename %s to %s: %s exists and is not a directory; rename does not replace a file with a directory", from.Path, to.Path, to.Path))
		return
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		writeError(w, fsError("rename", to.Path, err))
		return
	}
	if err := a.fsRoot.Rename(from.Rel, to.Rel); err != nil {
		writeError(w, fsError("rename", from.Path+" to "+to.Path, err))
		return
	}
	a.syncDir(path.Dir(from.Rel))
	if path.Dir(to.Rel) != path.Dir(from.Rel) {
		a.syncDir(path.Dir(to.Rel))
	}
	a.replyInfo(w, to, http.StatusOK)
}
