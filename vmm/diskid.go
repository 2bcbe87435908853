package vmm

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/snapshot"
)

// statID returns the identity of the file at path now.
func statID(path string) (snapshot.FileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return snapshot.FileID{}, fmt.Errorf("disk image %s: %w", path, err)
	}
	return snapshot.FileID{Dev: st.Dev, Ino: st.Ino, Size: st.Size, MtimeNS: st.Mtim.Nano(), CtimeNS: st.Ctim.Nano()}, nil
}

// diskHashes remembers the SHA-256 of file versions this process hashed or
// restored with a matching identity, so that a VM's snapshots do not read
// an unchanged multi-GiB root image again.
var diskHashes sync.Map // snapshot.FileID → string

// hashDisk returns the identity and SHA-256 (hex) of a disk image, reading
// it only when this version of the file has not been hashed before.
func hashDisk(path string) (snapshot.FileID, string, error) {
	id, err := statID(path)
	if err != nil {
		return id, "", err
	}
	if sum, ok := diskHashes.Load(id); ok {
		return id, sum.(string), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return id, "", fmt.Errorf("hash disk image: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return id, "", fmt.Errorf("hash disk image %s: %w", path, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	// Stored only if the file did not change while it was read.
	if after, err := statID(path); err == nil && after == id {
		diskHashes.Store(id, sum)
	}
	return id, sum, nil
}

// checkDisk confirms that the disk at d.Path still holds what the snapshot
// recorded: by its identity when that still matches (no read), else by its
// size and SHA-256.
func checkDisk(d snapshot.Disk) error {
	if d.SHA256 == "" {
		return fmt.Errorf("disk %s: the snapshot records only a clone of it; restore it as a fork (--fork-id)", d.Path)
	}
	if d.FileID != nil {
		if id, err := statID(d.Path); err == nil && id == *d.FileID {
			diskHashes.Store(id, d.SHA256)
			return nil
		}
	}
	id, sum, err := hashDisk(d.Path)
	switch {
	case err != nil:
		return err
	case id.Size != d.Size || sum != d.SHA256:
		return fmt.Errorf("disk %s changed since the snapshot (%d bytes, SHA-256 %s; now %d bytes, %s): restore it from a copy taken with the snapshot",
			d.Path, d.Size, d.SHA256, id.Size, sum)
	}
	return nil
}
