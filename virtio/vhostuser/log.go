package vhostuser

import (
	"encoding/binary"
	"fmt"
	"math"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/virtio"
)

// LogBase is the SET_LOG_BASE payload (struct vhost_user_log): where in the
// attached file descriptor the dirty log lies.
type LogBase struct {
	Size   uint64 // bytes of log
	Offset uint64 // offset of the log in the file
}

// Marshal encodes the payload.
func (l LogBase) Marshal() []byte {
	b := make([]byte, 16)
	binary.NativeEndian.PutUint64(b[0:], l.Size)
	binary.NativeEndian.PutUint64(b[8:], l.Offset)
	return b
}

// Unmarshal decodes the payload.
func (l *LogBase) Unmarshal(p []byte) error {
	if len(p) != 16 {
		return fmt.Errorf("log base payload is %d bytes, want 16", len(p))
	}
	l.Size = binary.NativeEndian.Uint64(p[0:])
	l.Offset = binary.NativeEndian.Uint64(p[8:])
	return nil
}

// dirtyLog is the back-end's mapping of a front-end's dirty log.
type dirtyLog struct {
	mapping []byte
	log     *virtio.DirtyLog
}

// mapLog maps the log and closes fd.
func mapLog(fd int, l LogBase) (*dirtyLog, error) {
	defer unix.Close(fd)
	if l.Size == 0 || l.Size%8 != 0 || l.Size > MaxLogSize {
		return nil, fmt.Errorf("dirty log of %d bytes: want a non-zero multiple of 8 of at most %d", l.Size, MaxLogSize)
	}
	if l.Offset%uint64(unix.Getpagesize()) != 0 || l.Offset > math.MaxInt64-l.Size {
		return nil, fmt.Errorf("dirty log offset %#x is not page aligned or too large", l.Offset)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("dirty log: fstat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || uint64(st.Size) < l.Offset+l.Size {
		return nil, fmt.Errorf("dirty log file of %d bytes cannot hold %d bytes at %#x", st.Size, l.Size, l.Offset)
	}
	b, err := unix.Mmap(fd, int64(l.Offset), int(l.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map dirty log of %d bytes: %w", l.Size, err)
	}
	return &dirtyLog{mapping: b, log: virtio.NewDirtyLog(b)}, nil
}

func (d *dirtyLog) unmap() {
	if d != nil && d.mapping != nil {
		unix.Munmap(d.mapping)
		d.mapping = nil
	}
}

// SetLogBase shares the dirty log in fd (a memfd of at least offset+size
// bytes) with the back-end; it needs ProtocolLogSHMFD. The back-end records
// writes there while FeatureLogAll is acked with SetFeatures.
func (f *Frontend) SetLogBase(fd int, l LogBase) error {
	// The back-end replies whether or not REPLY_ACK was negotiated; ours
	// puts a status in it, others may send no payload.
	p, err := f.call(SetLogBase, l.Marshal(), []int{fd}, true)
	if err != nil {
		return err
	}
	if len(p) == 8 {
		if status, _ := unmarshalU64(p); status != 0 {
			return fmt.Errorf("vhost-user %s: %w (status %d)", SetLogBase, errRefused, status)
		}
	}
	return nil
}
