package imagebuild

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/sietch-vm/sietch/rootfs/dockerfile"
)

// defaultPath is the PATH a RUN step gets when the image sets none, as in
// Docker.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// step executes one step in m and says whether it changed files.
func (r *build) step(ctx context.Context, m Machine, s *dockerfile.Step) (bool, error) {
	switch s.Kind {
	case dockerfile.Run:
		env := s.Env
		if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
			env = append([]string{defaultPath}, env...)
		}
		if err := m.Mkdir(ctx, s.Workdir); err != nil {
			return false, fmt.Errorf("make the working directory %s: %w", s.Workdir, err)
		}
		code, err := m.Run(ctx, RunSpec{Argv: s.Command, Env: env, Dir: s.Workdir, User: s.User}, r.req.Out)
		if err != nil {
			return false, fmt.Errorf("RUN: %w", err)
		}
		if code != 0 {
			return false, fmt.Errorf("RUN %s: exit status %d", strings.Join(s.Command, " "), code)
		}
		return true, nil
	case dockerfile.Workdir:
		return true, m.Mkdir(ctx, s.Workdir)
	case dockerfile.Copy, dockerfile.Add:
		own, err := owner(ctx, m, s.Copy.Chown)
		if err != nil {
			return false, err
		}
		pr, pw := io.Pipe()
		go func() {
			if s.Copy.FromStage >= 0 {
				pw.CloseWithError(r.writeFromStage(ctx, pw, s.Copy, own))
			} else if r.ctx == nil {
				pw.CloseWithError(fmt.Errorf("%s reads the build context, and there is none", s.Kind))
			} else {
				pw.CloseWithError(r.ctx.WriteCopy(pw, s.Copy, own))
			}
		}()
		err = m.Extract(ctx, pr)
		pr.CloseWithError(err)
		return true, err
	}
	return false, nil
}

// owner resolves --chown (user[:group], names or ids) in the image being
// built. A user without a group takes the same number as its group, as in
// Docker.
func owner(ctx context.Context, m Machine, chown string) (dockerfile.Owner, error) {
	if chown == "" {
		return dockerfile.Owner{}, nil
	}
	user, group, hasGroup := strings.Cut(chown, ":")
	uid, err := lookup(ctx, m, "/etc/passwd", user)
	if err != nil {
		return dockerfile.Owner{}, fmt.Errorf("--chown=%s: %w", chown, err)
	}
	gid := uid
	if hasGroup {
		if gid, err = lookup(ctx, m, "/etc/group", group); err != nil {
			return dockerfile.Owner{}, fmt.Errorf("--chown=%s: %w", chown, err)
		}
	}
	return dockerfile.Owner{UID: uid, GID: gid}, nil
}

// lookup finds a user or group id by number or by name in file.
func lookup(ctx context.Context, m Machine, file, name string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		if n < 0 || n > 1<<31-2 {
			return 0, fmt.Errorf("id %d is out of range", n)
		}
		return n, nil
	}
	data, err := m.ReadFile(ctx, file)
	if err != nil {
		return 0, fmt.Errorf("read %s in the image to find %q: %w", file, name, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) >= 3 && f[0] == name {
			n, err := strconv.Atoi(f[2])
			if err != nil || n < 0 {
				return 0, fmt.Errorf("%s: %q has id %q", file, name, f[2])
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("no %q in the image's %s", name, file)
}

// writeFromStage writes COPY --from's files, read from that stage's
// flattened tree through os.Root (the tree was built by untrusted steps:
// its symlinks must not lead the host out of it), as a tar archive for the
// image's root.
func (r *build) writeFromStage(ctx context.Context, w io.Writer, cp *dockerfile.CopyStep, own dockerfile.Owner) error {
	dir, err := r.tree(ctx, cp.FromStage)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tw := tar.NewWriter(w)
	var matches []string
	for _, src := range cp.Sources {
		rel := strings.TrimPrefix(path.Clean("/"+src), "/")
		if rel == "" {
			rel = "."
		}
		ms, err := fs.Glob(root.FS(), rel)
		if err != nil {
			return fmt.Errorf("COPY --from source %s: %w", src, err)
		}
		if len(ms) == 0 {
			return fmt.Errorf("COPY --from source %s: not found in stage %s", src, r.plan.Stages[cp.FromStage].Name)
		}
		matches = append(matches, ms...)
	}
	for _, rel := range matches {
		fi, err := root.Lstat(rel)
		if err != nil {
			return err
		}
		dest := strings.TrimPrefix(cp.Dest, "/")
		if !fi.IsDir() && (cp.DestDir || len(matches) > 1) {
			dest = path.Join(dest, path.Base(rel))
		}
		if !fi.IsDir() {
			if err := addEntry(tw, root, rel, dest, fi, cp, own); err != nil {
				return err
			}
			continue
		}
		// A directory's contents are copied, not the directory.
		err = fs.WalkDir(root.FS(), rel, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p == rel {
				return nil
			}
			fi, err := root.Lstat(p)
			if err != nil {
				return err
			}
			return addEntry(tw, root, p, path.Join(dest, strings.TrimPrefix(p, rel+"/")), fi, cp, own)
		})
		if err != nil {
			return fmt.Errorf("COPY --from %s: %w", rel, err)
		}
	}
	return tw.Close()
}

// addEntry writes one file of a stage's tree to tw under dest.
func addEntry(tw *tar.Writer, root *os.Root, rel, dest string, fi fs.FileInfo, cp *dockerfile.CopyStep, own dockerfile.Owner) error {
	if dest == "" || dest == "." {
		return nil
	}
	link := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = root.Readlink(rel); err != nil {
			return err
		}
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return nil // a device or socket: not copied
	}
	if !fi.IsDir() && !fi.Mode().IsRegular() && link == "" {
		return nil
	}
	hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname, hdr.Format = dest, own.UID, own.GID, "", "", tar.FormatPAX
	if fi.IsDir() {
		hdr.Name += "/"
	}
	if cp.ChmodSet && link == "" {
		hdr.Mode = int64(cp.Chmod.Perm())
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyN(tw, f, hdr.Size)
	return err
}
