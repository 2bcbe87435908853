package sandbox

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/sietch-vm/sietch/wire/agentproto"
)

// FileInfo describes one file in a sandbox.
type FileInfo struct {
	Name    string
	Type    string      // "file", "dir", "symlink" or "other"
	Size    int64       // bytes
	Mode    os.FileMode // permission bits with setuid, setgid and sticky
	ModTime time.Time
	Target  string // of a symlink
}

// TarResult is what an extracted archive put in place.
type TarResult struct {
	Files    int64 // regular files, hard links included
	Dirs     int64
	Symlinks int64
	Bytes    int64
}

// WatchEvent is one change under a watched directory.
type WatchEvent struct {
	Type  string // create, write, remove, rename (the old name), chmod, overflow
	Path  string // absolute path in the sandbox
	IsDir bool
	Time  time.Time
}

func fileInfoOf(fi agentproto.FileInfo) FileInfo {
	return FileInfo{Name: fi.Name, Type: fi.Type, Size: fi.Size, Mode: fi.Mode, ModTime: fi.ModTime, Target: fi.Target}
}

// ListFiles returns the entries of the directory at path, sorted by name.
func (m *Manager) ListFiles(ctx context.Context, id, path string) ([]FileInfo, error) {
	sb, ac, err := m.runningAgent(ctx, id, "list files")
	if err != nil {
		return nil, err
	}
	ents, err := ac.List(ctx, path)
	if err := m.agentDone(sb, err); err != nil {
		return nil, err
	}
	out := make([]FileInfo, 0, len(ents))
	for _, e := range ents {
		out = append(out, fileInfoOf(e))
	}
	return out, nil
}

// StatFile describes path itself (a symlink, not its target).
func (m *Manager) StatFile(ctx context.Context, id, path string) (FileInfo, error) {
	sb, ac, err := m.runningAgent(ctx, id, "stat files")
	if err != nil {
		return FileInfo{}, err
	}
	fi, err := ac.Stat(ctx, path)
	if err := m.agentDone(sb, err); err != nil {
		return FileInfo{}, err
	}
	return fileInfoOf(fi), nil
}

// Mkdir makes a directory (mode 0: 0755), with its parents if asked, and
// describes it.
func (m *Manager) Mkdir(ctx context.Context, id, path string, mode os.FileMode, parents bool) (FileInfo, error) {
	sb, ac, err := m.runningAgent(ctx, id, "make directories")
	if err != nil {
		return FileInfo{}, err
	}
	if err := m.agentDone(sb, ac.Mkdir(ctx, path, mode, parents)); err != nil {
		return FileInfo{}, err
	}
	fi, err := ac.Stat(ctx, path)
	if err := m.agentDone(sb, err); err != nil {
		return FileInfo{}, err
	}
	return fileInfoOf(fi), nil
}

// Remove removes a file, a symlink (not its target) or an empty
// directory; with recursive, a whole tree.
func (m *Manager) Remove(ctx context.Context, id, path string, recursive bool) error {
	sb, ac, err := m.runningAgent(ctx, id, "remove files")
	if err != nil {
		return err
	}
	return m.agentDone(sb, ac.Remove(ctx, path, recursive))
}

// Rename renames from to to, replacing a file or symlink there but never
// a directory, and describes the result.
func (m *Manager) Rename(ctx context.Context, id, from, to string) (FileInfo, error) {
	sb, ac, err := m.runningAgent(ctx, id, "rename files")
	if err != nil {
		return FileInfo{}, err
	}
	if err := m.agentDone(sb, ac.Rename(ctx, from, to)); err != nil {
		return FileInfo{}, err
	}
	fi, err := ac.Stat(ctx, to)
	if err := m.agentDone(sb, err); err != nil {
		return FileInfo{}, err
	}
	return fileInfoOf(fi), nil
}

// DownloadTar writes the tree under dir in the sandbox to w as a tar
// archive.
func (m *Manager) DownloadTar(ctx context.Context, id, dir string, w io.Writer) error {
	sb, ac, err := m.runningAgent(ctx, id, "download files")
	if err != nil {
		return err
	}
	return m.agentDone(sb, ac.DownloadTar(ctx, dir, w))
}

// UploadTar extracts the tar archive r holds into dir in the sandbox
// (made if missing), by the agent's rules: nothing outside dir, no
// devices, setuid and setgid dropped, each file atomic.
func (m *Manager) UploadTar(ctx context.Context, id, dir string, r io.Reader) (TarResult, error) {
	sb, ac, err := m.runningAgent(ctx, id, "upload files")
	if err != nil {
		return TarResult{}, err
	}
	res, err := ac.UploadTar(ctx, dir, r)
	if err := m.agentDone(sb, err); err != nil {
		return TarResult{}, err
	}
	return TarResult{Files: res.Files, Dirs: res.Dirs, Symlinks: res.Symlinks, Bytes: res.Bytes}, nil
}

// Watcher is a running watch of a directory in a sandbox.
type Watcher struct {
	w *agentproto.Watcher
}

// Watch starts watching dir (recursive: and every directory under it,
// those made later too). When it returns the watch is in place. The caller
// closes it; cancelling ctx ends it too.
func (m *Manager) Watch(ctx context.Context, id, dir string, recursive bool) (*Watcher, error) {
	sb, ac, err := m.runningAgent(ctx, id, "watch files")
	if err != nil {
		return nil, err
	}
	w, err := ac.Watch(ctx, dir, recursive)
	if err := m.agentDone(sb, err); err != nil {
		return nil, err
	}
	return &Watcher{w: w}, nil
}

// Next waits for the next event; io.EOF means the watched directory was
// removed or moved, which ends the watch.
func (w *Watcher) Next() (WatchEvent, error) {
	ev, err := w.w.Next()
	if err != nil {
		return WatchEvent{}, err
	}
	return WatchEvent{Type: ev.Type, Path: ev.Path, IsDir: ev.IsDir, Time: ev.Time}, nil
}

// Close ends the watch.
func (w *Watcher) Close() error { return w.w.Close() }
