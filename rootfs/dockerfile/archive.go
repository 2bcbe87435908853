package dockerfile

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"fmt"
	"io"
)

// Compression is how an archive ADD extracts is compressed.
type Compression string

// What ADD recognises, as Docker does: by content, not by name.
const (
	Uncompressed Compression = "tar"
	Gzip         Compression = "gzip"
	Bzip2        Compression = "bzip2"
	Xz           Compression = "xz"
	Zstd         Compression = "zstd"
)

var magics = []struct {
	c     Compression
	magic []byte
}{
	{Gzip, []byte{0x1f, 0x8b, 0x08}},
	{Bzip2, []byte("BZh")},
	{Xz, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},
	{Zstd, []byte{0x28, 0xb5, 0x2f, 0xfd}},
}

// archiveOf says whether the context file rel is a tar archive ADD unpacks,
// and how it is compressed ("" when it is copied as a file). As Docker's
// archive.IsArchivePath does, it decompresses the start and asks for a tar
// header; xz and zstd are recognised by their magic only and refused, as
// the builder cannot unpack them.
func (c *Context) archiveOf(rel string) (Compression, error) {
	f, err := c.openRegular(rel)
	if err != nil {
		return "", err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	head, _ := br.Peek(8)
	var r io.Reader = br
	comp := Uncompressed
	for _, m := range magics {
		if bytes.HasPrefix(head, m.magic) {
			comp = m.c
		}
	}
	switch comp {
	case Xz, Zstd:
		return "", fmt.Errorf("ADD %s: a %s archive would be unpacked, and this builder unpacks only tar, gzip and bzip2: decompress it into the context, or COPY it and RUN tar", rel, comp)
	case Gzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return "", nil
		}
		defer zr.Close()
		r = zr
	case Bzip2:
		r = bzip2.NewReader(br)
	}
	if _, err := tar.NewReader(io.LimitReader(r, 1<<20)).Next(); err != nil {
		return "", nil
	}
	return comp, nil
}
