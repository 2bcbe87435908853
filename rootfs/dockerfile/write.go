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
	"path"
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
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("ADD %s: %w", f.Path, err)
		}
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
