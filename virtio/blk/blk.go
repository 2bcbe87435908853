// Package blk is the virtio-blk device (virtio 1.2 §5.2) over a disk image file, served as a vhost-user back-end.
package blk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/sietch-vm/sietch/virtio"
	"github.com/sietch-vm/sietch/virtio/vhostuser"
)

// Feature bits (virtio 1.2 §5.2.3).
const (
	FeatureSegMax      = 1 << 2  // VIRTIO_BLK_F_SEG_MAX
	FeatureRO          = 1 << 5  // VIRTIO_BLK_F_RO
	FeatureBlkSize     = 1 << 6  // VIRTIO_BLK_F_BLK_SIZE
	FeatureFlush       = 1 << 9  // VIRTIO_BLK_F_FLUSH
	FeatureDiscard     = 1 << 13 // VIRTIO_BLK_F_DISCARD
	FeatureWriteZeroes = 1 << 14 // VIRTIO_BLK_F_WRITE_ZEROES
)

// Limits this device offers in config space.
const (
	SectorSize = 512
	IDBytes    = 20 // VIRTIO_BLK_ID_BYTES

	// MaxQueueSize is what QEMU's virtio-mmio offers (1024), so QEMU can
	// be our frontend. Longer vectors than IOV_MAX are issued in parts.
	MaxQueueSize = 1024
	// segMax is the data segments per request the driver may use: 256
	// descriptors less the header and status.
	segMax = 254

	maxDiscardSectors     = 1 << 22 // 2 GiB per segment
	maxDiscardSeg         = 32
	discardAlignment      = 8 // sectors: 4 KiB, the host file system's hole granularity
	maxWriteZeroesSectors = 1 << 22
	maxWriteZeroesSeg     = 32
)

// Config space layout (virtio 1.2 §5.2.4, struct virtio_blk_config). Fields
// of features we do not offer (geometry, topology, writeback, num_queues,
// secure erase, zoned) read as zero.
const (
	cfgCapacity              = 0
	cfgSegMax                = 12
	cfgBlkSize               = 20
	cfgMaxDiscardSectors     = 36
	cfgMaxDiscardSeg         = 40
	cfgDiscardAlignment      = 44
	cfgMaxWriteZeroesSectors = 48
	cfgMaxWriteZeroesSeg     = 52
	cfgWriteZeroesMayUnmap   = 56
	configSize               = 72 // through the secure-erase fields
)

// Options configure a Device.
type Options struct {
	ReadOnly bool         // offer VIRTIO_BLK_F_RO and refuse every write
	ID       string       // GET_ID serial, at most IDBytes bytes
	Log      *slog.Logger // nil discards
}

// Device is a virtio-blk device backed by an open disk image or block
// device. It implements vhostuser.DeviceModel, serving batches of requests
// on a pool of goroutines. After New it makes no system calls but preadv,
// pwritev, pwrite64, fdatasync and fallocate on the disk (plus the Go
// runtime's and the eventfds' reads and writes).
type Device struct {
	disk     *os.File // kept so that the descriptor stays open
	fd       int
	readOnly bool
	id       [IDBytes]byte
	sectors  uint64
	log      *slog.Logger
	config   [configSize]byte
	zeroes   zeroer

	mu    sync.Mutex
	acked uint64

	pool *pool // while the request queue runs; its Vring's worker's
}

var (
	_ vhostuser.DeviceModel    = (*Device)(nil)
	_ vhostuser.BatchHandler   = (*Device)(nil)
	_ vhostuser.VringLifecycle = (*Device)(nil)
)

// New serves disk, which must be open for reading (and writing unless
// o.ReadOnly). Its size, in 512-byte sectors, is the capacity; a tail
// shorter than a sector is unreachable.
func New(disk *os.File, o Options) (*Device, error) {
	if disk == nil {
		return nil, errors.New("virtio-blk: no disk file")
	}
	if len(o.ID) > IDBytes {
		return nil, fmt.Errorf("virtio-blk: disk ID %q is %d bytes, at most %d fit (VIRTIO_BLK_ID_BYTES)", o.ID, len(o.ID), IDBytes)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fd := int(disk.Fd())
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return nil, fmt.Errorf("virtio-blk: disk %s: file status flags: %w", disk.Name(), err)
	}
	if !o.ReadOnly && flags&unix.O_ACCMODE == unix.O_RDONLY {
		return nil, fmt.Errorf("virtio-blk: disk %s is open read-only: open it read-write or set ReadOnly", disk.Name())
	}
	size, err := diskSize(disk)
	if err != nil {
		return nil, fmt.Errorf("virtio-blk: disk %s: %w", disk.Name(), err)
	}
	if size%SectorSize != 0 {
		log.Warn("virtio-blk: disk size is not a multiple of 512 bytes; the guest cannot reach the tail",
			"disk", disk.Name(), "size", size, "unreachable", size%SectorSize)
	}
	d := &Device{
		disk: disk, fd: fd, readOnly: o.ReadOnly, sectors: uint64(size) / SectorSize,
		log: log,
	}
	d.zeroes.fd = fd
	copy(d.id[:], o.ID)
	d.fillConfig()
	return d, nil
}

// diskSize is the byte size of a regular file or block device.
func diskSize(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat: %w", err)
	}
	if st.Mode().IsRegular() {
		return st.Size(), nil
	}
	if st.Mode()&os.ModeDevice == 0 || st.Mode()&os.ModeCharDevice != 0 {
		return 0, fmt.Errorf("is %v, want a regular file or block device", st.Mode().Type())
	}
	n, err := f.Seek(0, io.SeekEnd) // a block device's stat size is 0
	if err != nil {
		return 0, fmt.Errorf("size of block device: %w", err)
	}
	return n, nil
}

func (d *Device) fillConfig() {
	le := binary.LittleEndian
	c := d.config[:]
	le.PutUint64(c[cfgCapacity:], d.sectors)
	le.PutUint32(c[cfgSegMax:], segMax)
	le.PutUint32(c[cfgBlkSize:], SectorSize)
	if !d.readOnly {
		le.PutUint32(c[cfgMaxDiscardSectors:], maxDiscardSectors)
		le.PutUint32(c[cfgMaxDiscardSeg:], maxDiscardSeg)
		le.PutUint32(c[cfgDiscardAlignment:], discardAlignment)
		le.PutUint32(c[cfgMaxWriteZeroesSectors:], maxWriteZeroesSectors)
		le.PutUint32(c[cfgMaxWriteZeroesSeg:], maxWriteZeroesSeg)
		c[cfgWriteZeroesMayUnmap] = 1
	}
}

// Capacity is the disk size in 512-byte sectors.
func (d *Device) Capacity() uint64 { return d.sectors }

// Features: discard and write-zeroes only on a writable disk.
func (d *Device) Features() uint64 {
	f := uint64(virtio.FeatureVersion1 | virtio.FeatureEventIdx | virtio.FeatureIndirectDesc |
		FeatureSegMax | FeatureBlkSize | FeatureFlush)
	if d.readOnly {
		f |= FeatureRO
	} else {
		f |= FeatureDiscard | FeatureWriteZeroes
	}
	return f
}

// ProtocolFeatures: REPLY_ACK, CONFIG (the vmm reads config space from us)
// and MQ (GET_QUEUE_NUM).
func (d *Device) ProtocolFeatures() uint64 {
	return vhostuser.ProtocolReplyAck | vhostuser.ProtocolConfig | vhostuser.ProtocolMQ
}

// NumQueues is 1: one request queue, served by a pool of workers.
func (d *Device) NumQueues() int { return 1 }

// MaxQueueSize bounds descriptors per request (see the constant).
func (d *Device) MaxQueueSize() uint16 { return MaxQueueSize }

// ReadConfig reads the config space; bytes past its end read as zero.
func (d *Device) ReadConfig(off uint32, data []byte) {
	for i := range data {
		data[i] = 0
		if o := uint64(off) + uint64(i); o < configSize {
			data[i] = d.config[o]
		}
	}
}

// WriteConfig refuses: the only writable field, writeback, needs
// VIRTIO_BLK_F_CONFIG_WCE, which is not offered.
func (d *Device) WriteConfig(off uint32, data []byte) error {
	return fmt.Errorf("virtio-blk config space is read-only (CONFIG_WCE not offered); write of %d bytes at %d", len(data), off)
}

// SetFeatures records what the driver acked, which must be a subset of
// Features.
func (d *Device) SetFeatures(acked uint64) error {
	if extra := acked &^ d.Features(); extra != 0 {
		return fmt.Errorf("virtio-blk: driver acked features %#x that were not offered", extra)
	}
	d.mu.Lock()
	d.acked = acked
	d.mu.Unlock()
	return nil
}
