package agent

import (
	"errors"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/sietch-vm/sietch/internal/unixmode"
)

// mergeEnv returns base with extra's variables set, later ones winning;
// new names are appended in sorted order so that the result is stable.
func mergeEnv(base []string, extra map[string]string) []string {
	out := make([]string, 0, len(base)+len(extra))
	index := map[string]int{}
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := index[k]; ok {
			out[i] = kv
			continue
		}
		index[k] = len(out)
		out = append(out, kv)
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		kv := k + "=" + extra[k]
		if i, ok := index[k]; ok {
			out[i] = kv
		} else {
			index[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

// getenv finds name in env.
func getenv(env []string, name string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}

// lookPath finds cmd as execve would after a shell's PATH search, using
// the exec's own PATH and cwd rather than the agent's.
func lookPath(cmd, pathEnv, cwd string) (string, *Error) {
	if strings.Contains(cmd, "/") {
		p := cmd
		if !filepath.IsAbs(p) {
			p = filepath.Join(cwd, p)
		}
		if e := checkExecutable(p); e != nil {
			return "", e
		}
		return p, nil
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			continue // an empty element means ".", which we do not search
		}
		p := filepath.Join(dir, cmd)
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", apiErr(codeNotFound, "command %q not found in PATH=%s; give a full path or set env.PATH", cmd, pathEnv)
}

func checkExecutable(p string) *Error {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return apiErr(codeNotFound, "command %s: no such file", p)
	case err != nil:
		return apiErr(codeForbidden, "command %s: %v", p, err)
	case fi.IsDir():
		return badRequest("command %s: is a directory", p)
	case fi.Mode().Perm()&0o111 == 0:
		return apiErr(codeForbidden, "command %s: not executable (mode %s)", p, unixmode.Format(fi.Mode()))
	}
	return nil
}

// checkDir says whether cwd can be a working directory.
func checkDir(cwd string) *Error {
	fi, err := os.Stat(cwd)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return badRequest("cwd %s: no such directory", cwd)
	case err != nil:
		return badRequest("cwd %s: %v", cwd, err)
	case !fi.IsDir():
		return badRequest("cwd %s: not a directory", cwd)
	}
	return nil
}

// account is who an exec runs as.
type account struct {
	cred *syscall.Credential
	name string
	home string
}

// lookupUser resolves a user name or decimal uid through /etc/passwd and
// /etc/group. A uid without an entry runs with gid = uid and HOME=/.
func lookupUser(s string) (account, *Error) {
	var u *user.User
	var err error
	uid, numErr := strconv.ParseUint(s, 10, 32)
	if numErr == nil {
		u, err = user.LookupId(s)
		if err != nil {
			return account{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}, name: s, home: "/"}, nil
		}
	} else if u, err = user.Lookup(s); err != nil {
		return account{}, badRequest("user %q: %v; give an existing user name or a decimal uid", s, err)
	}
	id, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return account{}, badRequest("user %q: passwd entry has uid %q gid %q", s, u.Uid, u.Gid)
	}
	groups := []uint32{}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil && n != gid {
				groups = append(groups, uint32(n))
			}
		}
	}
	home := u.HomeDir
	if home == "" {
		home = "/"
	}
	return account{cred: &syscall.Credential{Uid: uint32(id), Gid: uint32(gid), Groups: groups}, name: u.Username, home: home}, nil
}
