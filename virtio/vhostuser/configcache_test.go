package vhostuser

import (
	"bytes"
	"sync/atomic"
	"testing"
)

// structBackend answers GET_CONFIG as libvhost-user back-ends do
// (qemu-storage-daemon's vu_blk_get_config): from offset 0 whatever the
// offset asked, and with an empty payload (refused) for more than its
// struct.
func structBackend(t *testing.T, config []byte) (*Frontend, *atomic.Int32) {
	t.Helper()
	reads := new(atomic.Int32)
	f, _ := scriptedPeer(t, func(h Header, p []byte) []byte {
		var c ConfigSpace
		if h.Request != GetConfig || c.Unmarshal(p) != nil {
			t.Errorf("structBackend got %s", h.Request)
			return nil
		}
		reads.Add(1)
		if int(c.Size) > len(config) {
			return []byte{}
		}
		return ConfigSpace{Payload: config[:c.Size]}.Marshal()
	})
	return f, reads
}

func TestConfigCacheFindsWhatTheBackendReads(t *testing.T) {
	config := bytes.Repeat([]byte("blkcfg"), 10) // as long as QEMU's virtio_blk_config, give or take

	f, reads := structBackend(t, config)
	c, err := LoadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	loaded := reads.Load()
	if loaded > 10 {
		t.Errorf("%d GET_CONFIG messages to find the config space's size, want at most 1+8", loaded)
	}
	got := make([]byte, 100)
	c.Read(0, got)
	if !bytes.Equal(got[:len(config)], config) || !bytes.Equal(got[len(config):], make([]byte, 100-len(config))) {
		t.Errorf("cache reads %q, want the back-end's %d bytes then zeros", got, len(config))
	}
	c.Read(uint64(len(config)-2), got[:4])
	if string(got[:4]) != "fg\x00\x00" {
		t.Errorf("read across the end: %q", got[:4])
	}
	c.Read(1<<40, got[:4])
	if !bytes.Equal(got[:4], make([]byte, 4)) {
		t.Errorf("read far beyond: %q", got[:4])
	}
	if n := reads.Load(); n != loaded {
		t.Errorf("reads from the cache sent %d GET_CONFIG messages", n-loaded)
	}
}

func TestConfigCacheWithoutConfigSpace(t *testing.T) {
	var c ConfigCache
	got := []byte{1, 2, 3}
	c.Read(0, got)
	if !bytes.Equal(got, []byte{0, 0, 0}) {
		t.Errorf("zero cache reads %v, want zeros", got)
	}
	if err := c.Write(0, []byte{1}); err == nil {
		t.Error("zero cache took a write")
	}
	if err := c.Refresh(); err != nil {
		t.Errorf("Refresh of the zero cache: %v", err)
	}
}
