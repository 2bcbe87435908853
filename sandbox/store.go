package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The state database (<state>/sietch.db) is bbolt: pure Go (no cgo), one
// file, ACID transactions, and a file lock that keeps a second sietchd off
// the same state directory. Each bucket maps an id to a JSON record.
var (
	bucketSandboxes = []byte("sandboxes")
	bucketSnapshots = []byte("snapshots")
	bucketImages    = []byte("images")
	bucketTemplates = []byte("templates")
)

// record is a sandbox as persisted: what the API shows plus what sietchd
// needs to find its vmm again after a restart.
type record struct {
	Sandbox
	Kind         string            `json:"kind"`                    // image kind: "linux" or "testguest"
	Prev         State             `json:"prev,omitempty"`          // state to return to after snapshotting
	ExpiresAt    time.Time         `json:"expires_at,omitempty"`    // lifetime timeout; zero: none
	LastSnapshot string            `json:"last_snapshot,omitempty"` // base of the next diff snapshot
	Env          map[string]string `json:"env,omitempty"`           // given at create; the agent adds it to every exec
	Suspended    string            `json:"suspended,omitempty"`     // state suspended: the snapshot that holds it
	JailUID      int               `json:"jail_uid,omitempty"`      // the host uid its vmm and devices run as (vmm --jail-uid); 0: none
	Workdir      string            `json:"workdir,omitempty"`       // its image's WORKDIR: an exec's default cwd
	User         string            `json:"user,omitempty"`          // its image's USER: an exec's default user
}

// templateRec is a template as persisted.
type templateRec struct {
	Template
	BuildSandbox string `json:"build_sandbox,omitempty"` // the sandbox booted for the build, while building
	ImageID      string `json:"image_id,omitempty"`      // the image's files when the build began (imageID)
}

// snapRecord is a snapshot as persisted: enough to create sandboxes from it.
type snapRecord struct {
	Snapshot
	Dir    string            `json:"dir"`
	Image  string            `json:"image,omitempty"`
	Kind   string            `json:"image_kind"`
	Limits Limits            `json:"limits"`
	Env    map[string]string `json:"env,omitempty"` // the sandbox's at the snapshot: restores and forks keep it
	// Net is the sandbox's network at the snapshot; non-nil: the VM has a
	// virtio-net device, so every restore needs a TAP of its own.
	Net *Network `json:"net,omitempty"`
}

// decodeRecord decodes a stored JSON record.
func decodeRecord(b []byte, v any) error { return json.Unmarshal(b, v) }

type store struct{ db *bolt.DB }

func openStore(path string) (*store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("open state database %s: another sietchd holds it; stop that one or choose another --state-dir", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketSandboxes, bucketSnapshots, bucketImages, bucketTemplates} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise state database %s: %w", path, err)
	}
	return &store{db: db}, nil
}

func (s *store) close() error { return s.db.Close() }

func (s *store) put(bucket []byte, id string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s %s: %w", bucket, id, err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte(id), b) }); err != nil {
		return fmt.Errorf("save %s %s: %w", bucket, id, err)
	}
	return nil
}

func (s *store) delete(bucket []byte, id string) error {
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete([]byte(id)) }); err != nil {
		return fmt.Errorf("delete %s %s: %w", bucket, id, err)
	}
	return nil
}

// each decodes every value of bucket with decode; a record that does not
// decode is reported, not fatal, so one bad record cannot lock sietchd out.
func (s *store) each(bucket []byte, decode func(id string, b []byte) error) []error {
	var errs []error
	s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			if err := decode(string(k), v); err != nil {
				errs = append(errs, fmt.Errorf("%s %s: %w", bucket, k, err))
			}
			return nil
		})
	})
	return errs
}
