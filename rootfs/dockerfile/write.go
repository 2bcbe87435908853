package dockerfile

import (
	"archive/tar"
	"bufio"
	"compress/bzip2"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// Owner is who the files a COPY or ADD writes belong to: --chown, resolved
// in the image, or root.
type Owner struct{ UID, GID int }

// WriteCopy writes what a COPY or ADD from the build context puts in the
// image as a tar archive with names relative to "/" (the builder extracts
// it at the image's root, keeping owners). Every file is read again and
// must still have the digest the plan hashed (which the step's cache key
// holds), so a context that changes during the build fails the step
// rather than producing an image its key does not describe. Directories
// the files need are created by the extractor; a copied directory's own
// entry carries its mode. An ADD archive is unpacked under its Dest with
// its own owners, names cleaned and kept under Dest.
func (c *Context) WriteCopy(w io.Writer, cp *CopyStep, own Owner) error {
	if cp.FromStage >= 0 {
		return fmt.Errorf("COPY --from a stage: its files are in that stage's image, not the context")
	}
	tw := tar.NewWriter(w)
	for _, f := range cp.Files {
		name := strings.TrimPrefix(path.Clean(f.Dest), "/")
		if name == "" {
			// Copying into / itself: only the contents matter.
			if f.Type == TypeDir {
				continue
			}
			return fmt.Errorf("%s: cannot replace the image's root with a %s", f.Path, f.Type)
		}
		hdr := &tar.Header{Name: name, Mode: int64(f.Mode.Perm()), Uid: own.UID, Gid: own.GID, Format: tar.FormatPAX}
		switch {
		case f.Extract != "":
			if err := c.writeArchive(tw, f); err != nil {
				return err
			}
			continue
		case f.Type == TypeDir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
		case f.Type == TypeSymlink:
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, f.Link, 0o777
		case f.Type == TypeFile:
			hdr.Typeflag, hdr.Size = tar.TypeReg, f.Size
			if err := c.writeFile(tw, hdr, f); err != nil {
				return err
			}
			continue
		default:
			return fmt.Errorf("%s: a %s is not copied", f.Path, f.Type)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
	return tw.Close()
}

// writeFile copies a context file into tw, checking its size and digest
// against the plan's.
func (c *Context) writeFile(tw *tar.Writer, hdr *tar.Header, f File) error {
	fh, err := c.openRegular(f.Path)
	if err != nil {
		return err
	}
	defer fh.Close()
	if fi, err := fh.Stat(); err == nil {
		hdr.ModTime = fi.ModTime() // kept, as docker build keeps it
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tw, h), io.LimitReader(fh, f.Size+1))
	if err != nil {
		return fmt.Errorf("read %s from the build context: %w", f.Path, err)
	}
	if n != f.Size || digestOf(h) != f.Digest {
		return fmt.Errorf("%s changed in the build context during the build (planned %d bytes, %s): build again", f.Path, f.Size, f.Digest)
	}
	return nil
}

func digestOf(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

// writeArchive unpacks an ADD archive into tw under f.Dest. Entry names
// are cleaned and refused if they climb out of Dest; links must point
// inside the archive's tree (hard links) or are kept as written (symlinks,
// which the extractor confines); devices and other special files are
// refused, as the extractor would refuse them.
func (c *Context) writeArchive(tw *tar.Writer, f File) error {
	fh, err := c.openRegular(f.Path)
	if err != nil {
		return err
	}
	defer fh.Close()
	var r io.Reader = bufio.NewReader(fh)
	switch f.Extract {
	case Gzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("ADD %s: %w", f.Path, err)
		}
		defer zr.Close()
		r = zr
	case Bzip2:
		r = bzip2.NewReader(r)
	case Uncompressed:
	default:
		return fmt.Errorf("ADD %s: cannot unpack a %s archive", f.Path, f.Extract)
	}
	dest := strings.TrimPrefix(path.Clean(f.Dest), "/")
	under := func(n string) (string, error) {
		clean := path.Clean("/" + n)
		if clean == "/" {
			return dest, nil
		}
		if strings.Contains(n, "\x00") || strings.HasPrefix(path.Clean(n), "..") {
			return "", fmt.Errorf("ADD %s: entry %q leaves the destination", f.Path, n)
		}
		return strings.TrimPrefix(path.Join(dest, clean), "/"), nil
	}
	tr := tar.NewReader(r)
	// Unpacked bytes count against the context's bound: a small archive
	// (sparse entries, a compression bomb) must not expand without end.
	budget := c.limits.MaxBytes
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("ADD %s: %w", f.Path, err)
		}
		if hdr.Typeflag == tar.TypeGNUSparse || hasSparseRecords(hdr) {
			return fmt.Errorf("ADD %s: entry %q is a sparse file, which is not unpacked (make the archive without tar -S)", f.Path, hdr.Name)
		}
		if hdr.Size < 0 || hdr.Size > budget {
			return fmt.Errorf("ADD %s: unpacked, it holds more than %d bytes (the build context's bound)", f.Path, c.limits.MaxBytes)
		}
		budget -= hdr.Size
		name, err := under(hdr.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue // the root of the image itself
		}
		out := &tar.Header{Name: name, Mode: hdr.Mode &^ 0o6000, Uid: hdr.Uid, Gid: hdr.Gid, ModTime: hdr.ModTime, Format: tar.FormatPAX}
		switch hdr.Typeflag {
		case tar.TypeDir:
			out.Typeflag, out.Name = tar.TypeDir, name+"/"
		case tar.TypeReg, tar.TypeRegA:
			out.Typeflag, out.Size = tar.TypeReg, hdr.Size
		case tar.TypeSymlink:
			out.Typeflag, out.Linkname = tar.TypeSymlink, hdr.Linkname
		case tar.TypeLink:
			target, err := under(hdr.Linkname)
			if err != nil {
				return err
			}
			out.Typeflag, out.Linkname = tar.TypeLink, target
		default:
			return fmt.Errorf("ADD %s: entry %q is a %q, which is not unpacked (only files, directories and links)", f.Path, hdr.Name, hdr.Typeflag)
		}
		if err := tw.WriteHeader(out); err != nil {
			return err
		}
		if out.Typeflag == tar.TypeReg {
			if _, err := io.Copy(tw, tr); err != nil {
				return fmt.Errorf("ADD %s: %s: %w", f.Path, hdr.Name, err)
			}
		}
	}
}

// WriteTar writes the context as a client sends it to a builder: every
// entry .dockerignore leaves in (files, directories, symlinks; modes and
// times), plus the context files named in keep even if ignored (the
// Dockerfile and the ignore file, as docker build sends them), plus add:
// files that are not in the context (a Dockerfile kept elsewhere), by the
// name they get in the archive. Devices and other special files are left
// out.
func (c *Context) WriteTar(w io.Writer, keep []string, add map[string][]byte) error {
	if err := c.walk(); err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	seen := map[string]bool{}
	addEntry := func(rel string) error {
		if seen[rel] {
			return nil
		}
		seen[rel] = true
		fi, err := c.root.Lstat(rel)
		if err != nil {
			return fmt.Errorf("build context: %w", err)
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = c.root.Readlink(rel); err != nil {
				return fmt.Errorf("build context: %w", err)
			}
		} else if !fi.IsDir() && !fi.Mode().IsRegular() {
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name, hdr.Uname, hdr.Gname, hdr.Uid, hdr.Gid, hdr.Format = rel, "", "", 0, 0, tar.FormatPAX
		if fi.IsDir() {
			hdr.Name += "/"
			return tw.WriteHeader(hdr)
		}
		if !fi.Mode().IsRegular() {
			return tw.WriteHeader(hdr)
		}
		f, err := c.openRegular(rel)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		n, err := io.Copy(tw, io.LimitReader(f, hdr.Size))
		if err == nil && n != hdr.Size {
			err = fmt.Errorf("%s shrank while it was read", rel)
		}
		return err
	}
	for _, rel := range c.paths {
		if err := addEntry(rel); err != nil {
			return err
		}
	}
	for _, rel := range keep {
		if rel == "" {
			continue
		}
		if err := addEntry(rel); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(add))
	for n := range add {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if seen[n] {
			return fmt.Errorf("%s is in the build context already", n)
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(add[n])), Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(add[n]); err != nil {
			return err
		}
	}
	return tw.Close()
}

// hasSparseRecords says whether a PAX header describes a sparse file.
func hasSparseRecords(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}
