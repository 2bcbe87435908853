package vmm

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/snapshot"
)

// MaxForkIDLen bounds a fork id: it becomes part of file and socket names.
const MaxForkIDLen = 64

// CheckForkID accepts fork ids made of letters, digits, '.', '_' and '-' that
// do not start with '.': they name files and sockets, never a path.
func CheckForkID(id string) error {
	if id == "" || len(id) > MaxForkIDLen || id[0] == '.' {
		return fmt.Errorf("fork id %q: use 1 to %d letters, digits, '.', '_' or '-', not starting with '.'", id, MaxForkIDLen)
	}
	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("fork id %q: %q is not allowed; use letters, digits, '.', '_' or '-'", id, c)
		}
	}
	return nil
}

// cloneName is the name of disk i's clone inside a snapshot directory.
func cloneName(i int) string { return fmt.Sprintf("disk%d.img", i) }

// forkDiskName is the name of fork id's copy of disk i inside its work
// directory; the id in it keeps forks that share a work directory apart.
func forkDiskName(id string, i int) string { return fmt.Sprintf("fork-%s-disk%d.img", id, i) }

// cloneDisks writes a copy-on-write clone of every writable disk into the
// snapshot directory and records it, so forks never need the live disk.
// The rings are held, so no request is writing to the images. Read-only
// disks are shared as they are (see snapshot.Disk).
func (m *Machine) cloneDisks(dir string, disks []snapshot.Disk) error {
	for i := range disks {
		if disks[i].ReadOnly {
			continue
		}
		name := cloneName(i)
		if err := copyDisk(disks[i].Path, filepath.Join(dir, name), true); err != nil {
			return fmt.Errorf("clone disk %s into the snapshot: %w", disks[i].Path, err)
		}
		// Read-only, so that nothing attaches the clone itself by mistake.
		if err := os.Chmod(filepath.Join(dir, name), 0o400); err != nil {
			return fmt.Errorf("clone disk %s into the snapshot: %w", disks[i].Path, err)
		}
		disks[i].Clone = name
	}
	return nil
}

// copyDisk copies the image src to dst, sharing blocks (FICLONE) where the
// file system can reflink and copying only data regions otherwise, so a
// sparse image stays sparse. dst appears complete or not at all. With
// replace an existing dst is replaced; without, an existing dst is refused
// so that two forks can never end up writing to one file.
func copyDisk(src, dst string, replace bool) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file; only image files can be cloned", src)
	}
	if !replace {
		if _, err := os.Lstat(dst); err == nil {
			return fmt.Errorf("%s exists: another fork with this id uses it; pick another fork id or work directory", dst)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		tmp.Close()
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	if err := unix.IoctlFileClone(int(tmp.Fd()), int(in.Fd())); err != nil {
		// EOPNOTSUPP/EINVAL (no reflink here), EXDEV (other file system).
		if err := sparseCopy(tmp, in, fi.Size()); err != nil {
			return err
		}
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if replace {
		return os.Rename(tmp.Name(), dst)
	}
	// link fails if dst appeared meanwhile; rename would replace it.
	if err := os.Link(tmp.Name(), dst); err != nil {
		return fmt.Errorf("%w: pick another fork id or work directory", err)
	}
	return os.Remove(tmp.Name())
}

// sparseCopy copies the data regions of in (SEEK_DATA/SEEK_HOLE) into out,
// which it sizes to size; holes stay holes.
func sparseCopy(out, in *os.File, size int64) error {
	if err := out.Truncate(size); err != nil {
		return err
	}
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			return fmt.Errorf("find data in %s: %w", in.Name(), err)
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("find a hole in %s: %w", in.Name(), err)
		}
		if hole > size {
			hole = size
		}
		if _, err := in.Seek(data, io.SeekStart); err != nil {
			return err
		}
		if _, err := out.Seek(data, io.SeekStart); err != nil {
			return err
		}
		// os.File.ReadFrom uses copy_file_range for this.
		if _, err := io.Copy(out, io.LimitReader(in, hole-data)); err != nil {
			return fmt.Errorf("copy %s: %w", in.Name(), err)
		}
		off = hole
	}
	return nil
}

// forkMAC derives a fork's MAC address from the snapshot's and the fork
// id: the same pair always gives the same address, different ids give
// different ones (46 bits of SHA-256), and it stays a locally administered
// unicast address (IEEE 802 §8.2: bit 1 of the first octet set, bit 0 clear).
func forkMAC(saved net.HardwareAddr, id string) net.HardwareAddr {
	h := sha256.New()
	h.Write(saved)
	h.Write([]byte{0})
	h.Write([]byte(id))
	mac := net.HardwareAddr(h.Sum(nil)[:6])
	mac[0] = mac[0]&^1 | 2
	return mac
}

// forkDevices gives a fork what must not be shared with the snapshot's VM
// or other forks: its own copy of each writable disk's clone, its own vsock socket
// and its own MAC. It returns the disk copies it made, for Restore to
// remove should the restore fail.
func forkDevices(dir string, mc *snapshot.Machine, cfg *Config, rc RestoreConfig, m *Machine) ([]string, error) {
	if err := CheckForkID(rc.ForkID); err != nil {
		return nil, err
	}
	if len(mc.VhostUserBlk) > 0 {
		return nil, fmt.Errorf("the snapshot uses external vhost-user-blk backends (%v); forks would share their disks, so fork it without them", mc.VhostUserBlk)
	}
	var made []string
	fail := func(err error) ([]string, error) {
		for _, p := range made {
			os.Remove(p)
		}
		return nil, err
	}
	work := rc.WorkDir
	for i, d := range mc.Disks {
		if d.ReadOnly {
			continue // shared: deviceConfig confirmed its content
		}
		if d.Clone == "" {
			return fail(fmt.Errorf("disk %s has no clone in the snapshot, so forks cannot get their own copy: take the snapshot again with this vmm", d.Path))
		}
		clone := d.Clone
		if !filepath.IsAbs(clone) {
			clone = filepath.Join(dir, clone)
		}
		if fi, err := os.Stat(clone); err != nil {
			return fail(fmt.Errorf("disk %s: its clone: %w", d.Path, err))
		} else if fi.Size() != d.Size {
			return fail(fmt.Errorf("disk %s: its clone %s holds %d bytes, the snapshot recorded %d: the snapshot was changed; take it again", d.Path, clone, fi.Size(), d.Size))
		}
		if work == "" {
			abs, err := filepath.Abs(dir)
			if err != nil {
				return fail(err)
			}
			if work, err = os.MkdirTemp(filepath.Dir(abs), filepath.Base(abs)+".fork-"+rc.ForkID+"-"); err != nil {
				return fail(fmt.Errorf("make a work directory next to the snapshot (or pass one): %w", err))
			}
		}
		dst := filepath.Join(work, forkDiskName(rc.ForkID, i))
		if err := copyDisk(clone, dst, false); err != nil {
			return fail(fmt.Errorf("copy disk %s for fork %s: %w", d.Path, rc.ForkID, err))
		}
		made = append(made, dst)
		m.log.Info("fork disk", "fork", rc.ForkID, "disk", d.Path, "copy", dst)
		cfg.Disks[i].Path = dst
	}
	if n := cfg.Net; n != nil {
		n.MAC = forkMAC(n.MAC, rc.ForkID)
	}
	if v := cfg.Vsock; v != nil && rc.VsockUDS == "" {
		v.UDS += "." + rc.ForkID
	}
	return made, nil
}
