package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/internal/tarx"
	"github.com/sietch-vm/sietch/wire/agentproto"
)

// maxWatches bounds running watch streams: each holds an inotify
// instance, and the kernel allows 128 per user by default.
const maxWatches = 64

// watchMask is what every watched directory reports (inotify(7)).
const watchMask = unix.IN_CREATE | unix.IN_MODIFY | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
	unix.IN_ATTRIB | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR | unix.IN_EXCL_UNLINK

// handleWatch streams changes under a directory as NDJSON events: GET
// /v1/watch?path=DIR&recursive=. The 200 and its headers are sent once
// the watch is in place. It runs until the client goes away, or until DIR
// itself is removed or moved (after an event saying so). One goroutine
// reads inotify; nothing polls.
func (a *Agent) handleWatch(w http.ResponseWriter, r *http.Request) {
	p, ok := a.fileQuery(w, r)
	if !ok {
		return
	}
	fi, err := a.fsRoot.Stat(p.Rel)
	if err != nil {
		writeError(w, fsError("watch", p.Path, err))
		return
	}
	if !fi.IsDir() {
		writeError(w, badRequest("watch %s: not a directory; watch the directory that holds it", p.Path))
		return
	}
	a.mu.Lock()
	if a.watches >= maxWatches {
		a.mu.Unlock()
		writeError(w, apiErr(codeTooMany, "watch %s: %d watches already run; end one first", p.Path, maxWatches))
		return
	}
	a.watches++
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.watches--
		a.mu.Unlock()
	}()

	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.EMFILE) {
			writeError(w, apiErr(codeTooMany, "watch %s: the guest's inotify instances are used up (fs.inotify.max_user_instances); end other watches", p.Path))
			return
		}
		writeError(w, apiErr(codeInternal, "watch %s: inotify_init1: %v", p.Path, err))
		return
	}
	// Non-blocking, so os.File reads it through the runtime's poller and
	// a read deadline can end the wait.
	f := os.NewFile(uintptr(fd), "inotify")
	defer f.Close()
	wt := &watch{
		fd: fd, root: a.fsRoot, dir: p.Rel, base: path.Clean(p.Path), recursive: p.Recursive,
		dirs: map[int32]string{}, wds: map[string]int32{}, moved: map[uint32]bool{},
		bw: bufio.NewWriterSize(w, 16<<10), rc: http.NewResponseController(w),
	}
	if err := wt.add(""); err != nil {
		writeError(w, watchError(p.Path, err))
		return
	}
	wt.top = wt.wds[""]
	if wt.recursive {
		if err := wt.addTree("", false); err != nil {
			writeError(w, watchError(p.Path, err))
			return
		}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if err := wt.rc.Flush(); err != nil {
		return
	}
	stop := context.AfterFunc(r.Context(), func() { f.SetReadDeadline(time.Now()) })
	defer stop()
	buf := make([]byte, 64<<10)
	for {
		n, err := f.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				a.log.Warn("agent: watch read", "path", p.Path, "err", err)
			}
			return
		}
		end := wt.events(buf[:n])
		if wt.err == nil {
			wt.err = wt.bw.Flush()
		}
		if wt.err == nil {
			wt.err = wt.rc.Flush()
		}
		if end || wt.err != nil {
			return
		}
	}
}

// watchError explains a failure to set up a watch.
func watchError(dir string, err error) *Error {
	if errors.Is(err, unix.ENOSPC) {
		return apiErr(codeTooMany, "watch %s: the guest's inotify watch limit is reached (fs.inotify.max_user_watches); watch a smaller tree or fewer at once", dir)
	}
	return fsError("watch", dir, err)
}

// watch is one running watch stream.
type watch struct {
	fd        int
	root      *os.Root // the agent's
	dir       string   // the watched directory, relative to root (no descriptor is kept open: it would delay IN_DELETE_SELF)
	base      string   // its guest path, for event paths
	recursive bool
	top       int32            // the watched directory's descriptor
	dirs      map[int32]string // watch descriptor → path relative to base ("" is base)
	wds       map[string]int32 // the reverse
	moved     map[uint32]bool  // cookies of directories renamed away from a watched directory
	bw        *bufio.Writer    // the response
	rc        *http.ResponseController
	err       error // the first write error: the client is gone
}

// add watches the directory rel (relative to the watched one). It opens
// the directory through the agent's os.Root, so a symlink cannot take the
// watch out of it, and hands inotify the open descriptor's /proc name.
func (wt *watch) add(rel string) error {
	name := path.Join(wt.dir, rel)
	flags := os.O_RDONLY | syscall.O_DIRECTORY
	if rel != "" {
		flags |= syscall.O_NOFOLLOW // found by walking: a symlink swapped in since is not followed
	}
	d, err := wt.root.OpenFile(name, flags, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	wd, err := unix.InotifyAddWatch(wt.fd, fmt.Sprintf("/proc/self/fd/%d", d.Fd()), watchMask)
	if err != nil {
		return fmt.Errorf("inotify_add_watch %s: %w", name, err)
	}
	if _, ok := wt.dirs[int32(wd)]; ok {
		return nil // the same directory under another name (a bind mount): keep the first
	}
	wt.dirs[int32(wd)] = rel
	wt.wds[rel] = int32(wd)
	return nil
}

// addTree watches every directory under rel. With announce, each entry
// found is reported as created: a directory made or moved in just now may
// have been filled before its watch was in place. A directory that cannot
// be watched is reported as an overflow, since its events will be lost.
func (wt *watch) addTree(rel string, announce bool) error {
	var limitErr error
	fs.WalkDir(wt.root.FS(), path.Join(wt.dir, rel), func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // gone since its directory was read
		}
		r := wt.relative(name)
		if r != rel && announce && !strings.HasPrefix(d.Name(), tarx.TempPrefix) {
			wt.emit(agentproto.WatchCreate, r, d.IsDir())
		}
		if !d.IsDir() {
			return nil
		}
		if r != rel {
			if err := wt.add(r); err != nil {
				if errors.Is(err, unix.ENOSPC) && limitErr == nil {
					limitErr = err
				}
				if rel != "" || announce {
					wt.emit(agentproto.WatchOverflow, r, true)
				}
				return fs.SkipDir
			}
		}
		return nil
	})
	if !announce && rel == "" {
		return limitErr // at the start, the client hears why instead
	}
	return nil
}

// addNew watches a directory made or moved in under a watched one, and
// the tree under it.
func (wt *watch) addNew(rel string, announce bool) {
	if err := wt.add(rel); err != nil {
		if errors.Is(err, unix.ENOSPC) {
			wt.emit(agentproto.WatchOverflow, rel, true)
		}
		return // or gone already: its parent reports that
	}
	wt.addTree(rel, announce)
}

// relative turns a path relative to the agent's root into one relative to
// the watched directory.
func (wt *watch) relative(name string) string {
	switch {
	case name == wt.dir:
		return ""
	case wt.dir == ".":
		return name
	}
	return strings.TrimPrefix(name, wt.dir+"/")
}

// removeTree stops watching rel and every directory under it.
func (wt *watch) removeTree(rel string) {
	for wd, d := range wt.dirs {
		if d == rel || strings.HasPrefix(d, rel+"/") {
			unix.InotifyRmWatch(wt.fd, uint32(wd))
			delete(wt.dirs, wd)
			delete(wt.wds, d)
		}
	}
}

// events handles one read's worth of inotify events; it reports whether
// the watch is over.
func (wt *watch) events(b []byte) bool {
	for off := 0; off+unix.SizeofInotifyEvent <= len(b); {
		wd := int32(binary.NativeEndian.Uint32(b[off:]))
		mask := binary.NativeEndian.Uint32(b[off+4:])
		cookie := binary.NativeEndian.Uint32(b[off+8:])
		nameLen := int(binary.NativeEndian.Uint32(b[off+12:]))
		start := off + unix.SizeofInotifyEvent
		if nameLen > len(b)-start {
			break
		}
		name := string(bytes.TrimRight(b[start:start+nameLen], "\x00"))
		off = start + nameLen
		if wt.event(wd, mask, cookie, name) {
			return true
		}
	}
	return false
}

func (wt *watch) event(wd int32, mask, cookie uint32, name string) bool {
	if mask&unix.IN_Q_OVERFLOW != 0 {
		wt.emit(agentproto.WatchOverflow, "", true)
		return false
	}
	dir, ok := wt.dirs[wd]
	if mask&unix.IN_IGNORED != 0 {
		if ok {
			delete(wt.dirs, wd)
			delete(wt.wds, dir)
		}
		return wd == wt.top
	}
	if !ok {
		return false // a watch removed since
	}
	if mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 {
		if wd != wt.top {
			return false // its parent reports it
		}
		typ := agentproto.WatchRemove
		if mask&unix.IN_MOVE_SELF != 0 {
			typ = agentproto.WatchRename
		}
		wt.emit(typ, "", true)
		return true // the paths would mean nothing now
	}
	if name == "" && wd != wt.top {
		return false // a subdirectory's own change; its parent reports it by name
	}
	if strings.HasPrefix(name, tarx.TempPrefix) {
		return false // an upload's temporary file; its rename into place is reported
	}
	rel := path.Join(dir, name)
	isDir := mask&unix.IN_ISDIR != 0 || (name == "" && wd == wt.top)
	switch {
	case mask&unix.IN_CREATE != 0:
		wt.emit(agentproto.WatchCreate, rel, isDir)
		if isDir && wt.recursive {
			wt.addNew(rel, true)
		}
	case mask&unix.IN_MOVED_TO != 0:
		wt.emit(agentproto.WatchCreate, rel, isDir)
		if isDir && wt.recursive {
			within := wt.moved[cookie]
			delete(wt.moved, cookie)
			wt.addNew(rel, !within)
		}
	case mask&unix.IN_MOVED_FROM != 0:
		wt.emit(agentproto.WatchRename, rel, isDir)
		if isDir && wt.recursive {
			wt.removeTree(rel)
			if len(wt.moved) >= 1024 {
				clear(wt.moved)
			}
			wt.moved[cookie] = true
		}
	case mask&unix.IN_DELETE != 0:
		wt.emit(agentproto.WatchRemove, rel, isDir)
	case mask&unix.IN_MODIFY != 0:
		wt.emit(agentproto.WatchWrite, rel, isDir)
	case mask&unix.IN_ATTRIB != 0:
		wt.emit(agentproto.WatchChmod, rel, isDir)
	}
	return false
}

// emit writes one event line (flushed by the read loop, per batch).
func (wt *watch) emit(typ, rel string, isDir bool) {
	if wt.err != nil || wt.bw == nil {
		return
	}
	ev := agentproto.WatchEvent{Type: typ, Path: path.Join(wt.base, rel), IsDir: isDir, Time: time.Now().UTC()}
	b, err := json.Marshal(ev)
	if err != nil {
		return
	}
	if _, err := wt.bw.Write(append(b, '\n')); err != nil {
		wt.err = err
	}
}
