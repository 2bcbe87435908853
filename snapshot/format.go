package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// StateFile is the name of the state file inside a snapshot directory.
const StateFile = "state"

// The state file is a header followed by the payload (little-endian):
//
//	offset  size  field
//	0       8     magic "SIETCHSN"
//	8       4     format version
//	12      8     payload length
//	20      32    SHA-256 of the payload
//	52      n     payload: State as JSON
const (
	magic      = "SIETCHSN"
	headerSize = 8 + 4 + 8 + sha256.Size
	// maxPayload bounds what Read allocates: real states are tens of KiB
	// per vCPU plus 32 KiB of dirty bitmap per GiB of RAM.
	maxPayload = 256 << 20
)

// Write stores s as dir's state file, creating dir if needed. The file is
// replaced atomically (temporary file, fsync, rename, fsync of dir), so a
// crash leaves the old state or the new one. Write the memory file first:
// the state file is what makes a directory a snapshot. Write refuses a
// state that Read would refuse as incomplete.
func Write(dir string, s *State) error {
	if s == nil {
		return fmt.Errorf("write snapshot %s: no state", dir)
	}
	st := *s
	if st.Version == 0 {
		st.Version = FormatVersion
	}
	if st.Created.IsZero() {
		st.Created = time.Now().UTC()
	}
	if err := validate(&st); err != nil {
		return fmt.Errorf("write snapshot %s: %w", dir, err)
	}
	payload, err := marshalState(&st)
	if err != nil {
		return fmt.Errorf("write snapshot %s: encode state: %w", dir, err)
	}
	if len(payload) > maxPayload {
		return fmt.Errorf("write snapshot %s: state is %d bytes, more than the %d a reader accepts", dir, len(payload), maxPayload)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write snapshot: create directory: %w", err)
	}
	if err := writeAtomic(filepath.Join(dir, StateFile), frame(payload)); err != nil {
		return fmt.Errorf("write snapshot %s: %w", dir, err)
	}
	return nil
}

// frame puts the header in front of payload.
func frame(payload []byte) []byte {
	sum := sha256.Sum256(payload)
	buf := make([]byte, 0, headerSize+len(payload))
	buf = append(buf, magic...)
	buf = binary.LittleEndian.AppendUint32(buf, FormatVersion)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(payload)))
	buf = append(buf, sum[:]...)
	return append(buf, payload...)
}

// writeAtomic replaces path with data so that readers see all or nothing.
func writeAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("create temporary state file: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write state file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync state file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close state file: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("rename state file into place: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory to fsync the rename: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// Read loads and checks dir's state file and the memory file's size. Every
// refusal wraps one of ErrNotSnapshot, ErrVersion, ErrChecksum,
// ErrTruncated, ErrMemorySize or ErrIncomplete. For a diff snapshot Read
// does not open Memory.Base; the caller resolves it (see BasePath).
func Read(dir string) (*State, error) {
	path := filepath.Join(dir, StateFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read snapshot %s: no %s file: %w (is this a snapshot directory?)", dir, StateFile, ErrNotSnapshot)
	}
	if err != nil {
		return nil, fmt.Errorf("read snapshot %s: %w", dir, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read snapshot %s: %w", dir, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read snapshot %s: %s is not a regular file: %w", dir, StateFile, ErrNotSnapshot)
	}
	s, err := decode(f, fi.Size())
	if err != nil {
		return nil, fmt.Errorf("read snapshot %s: %w", dir, err)
	}
	if err := checkMemoryFile(dir, &s.Memory); err != nil {
		return nil, fmt.Errorf("read snapshot %s: %w", dir, err)
	}
	return s, nil
}

// decode parses a state file of size bytes from r.
func decode(r io.Reader, size int64) (*State, error) {
	hdr := make([]byte, headerSize)
	n, err := io.ReadFull(r, hdr)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read state header: %w", err)
	}
	hdr = hdr[:n]
	if m := min(n, len(magic)); !bytes.Equal(hdr[:m], []byte(magic[:m])) {
		return nil, fmt.Errorf("state file does not start with %q: %w", magic, ErrNotSnapshot)
	}
	if n < headerSize {
		return nil, fmt.Errorf("state file is %d bytes, shorter than its %d-byte header: %w", n, headerSize, ErrTruncated)
	}
	if v := binary.LittleEndian.Uint32(hdr[8:]); v != FormatVersion {
		return nil, fmt.Errorf("snapshot format version %d, this vmm reads version %d: %w", v, FormatVersion, ErrVersion)
	}
	length := binary.LittleEndian.Uint64(hdr[12:])
	have := uint64(size) - headerSize
	if size < headerSize {
		have = 0
	}
	if length > have {
		return nil, fmt.Errorf("state file holds %d of its %d payload bytes: %w", have, length, ErrTruncated)
	}
	if length < have {
		return nil, fmt.Errorf("state file has %d bytes after its %d-byte payload: %w", have-length, length, ErrChecksum)
	}
	if length > maxPayload {
		return nil, fmt.Errorf("state payload is %d bytes, more than the %d this vmm accepts: %w", length, maxPayload, ErrNotSnapshot)
	}
	payload := make([]byte, length)
	if n, err := io.ReadFull(r, payload); err != nil {
		return nil, fmt.Errorf("state file holds %d of its %d payload bytes (%v): %w", n, length, err, ErrTruncated)
	}
	if sum := sha256.Sum256(payload); !bytes.Equal(sum[:], hdr[20:headerSize]) {
		return nil, fmt.Errorf("payload SHA-256 %x, header says %x: %w", sum[:8], hdr[20:28], ErrChecksum)
	}
	s, err := unmarshalState(payload)
	if err != nil {
		return nil, err
	}
	if s.Version != FormatVersion {
		return nil, fmt.Errorf("state says format version %d inside a version %d file: %w", s.Version, FormatVersion, ErrVersion)
	}
	if err := validate(s); err != nil {
		return nil, err
	}
	return s, nil
}

// marshalState is the payload Write stores for s. The golden test
// (golden_test.go) pins its output.
func marshalState(s *State) ([]byte, error) { return json.Marshal(s) }

// unmarshalState decodes a payload as Read does: unknown fields are
// refused at every depth (see strictUnmarshal), and so is anything after
// the state.
func unmarshalState(payload []byte) (*State, error) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	s := new(State)
	if err := dec.Decode(s); err != nil {
		return nil, fmt.Errorf("state payload does not decode (%v): %w", err, ErrIncomplete)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("state payload has data after the state: %w", ErrIncomplete)
	}
	return s, nil
}

// checkMemoryFile checks that the memory file exists and has the size the
// state says.
func checkMemoryFile(dir string, m *Memory) error {
	fi, err := os.Stat(filepath.Join(dir, m.File))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("memory file %s is missing: %w", m.File, ErrIncomplete)
	}
	if err != nil {
		return fmt.Errorf("memory file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("memory file %s is not a regular file: %w", m.File, ErrIncomplete)
	}
	if uint64(fi.Size()) != m.Size {
		return fmt.Errorf("memory file %s is %d bytes, the state says %d: %w", m.File, fi.Size(), m.Size, ErrMemorySize)
	}
	if m.Sums != nil {
		if err := m.Sums.check(m.Size); err != nil {
			return fmt.Errorf("%w: %w", err, ErrIncomplete)
		}
	}
	return nil
}

// BasePath resolves a diff snapshot's Memory.Base to a memory file: a
// directory means that snapshot's memory file (read from its state).
func BasePath(dir string, s *State) (string, error) {
	if s.Memory.Kind != KindDiff {
		return "", fmt.Errorf("snapshot %s is a %s snapshot, it has no base", dir, s.Memory.Kind)
	}
	base := s.Memory.Base
	if !filepath.IsAbs(base) {
		base = filepath.Join(dir, base)
	}
	fi, err := os.Stat(base)
	if err != nil {
		return "", fmt.Errorf("base of diff snapshot %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return base, nil
	}
	bs, err := Read(base)
	if err != nil {
		return "", fmt.Errorf("base of diff snapshot %s: %w", dir, err)
	}
	if bs.Memory.Kind != KindFull {
		return "", fmt.Errorf("base %s of diff snapshot %s is itself a diff; merge it onto its base first", base, dir)
	}
	if bs.Memory.Size != s.Memory.Size {
		return "", fmt.Errorf("base %s holds %d bytes of memory, the diff %d: %w", base, bs.Memory.Size, s.Memory.Size, ErrMemorySize)
	}
	return filepath.Join(base, bs.Memory.File), nil
}
