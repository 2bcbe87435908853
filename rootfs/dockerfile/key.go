package dockerfile

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"strconv"
)

// keyVersion is hashed into every key; bump it when what a key covers
// changes, so old cache entries are not taken for new ones.
const keyVersion = "sietch-dockerfile-key-v1"

// keyer hashes fields unambiguously: each is length-prefixed.
type keyer struct{ h hash.Hash }

func newKeyer(what string) *keyer {
	k := &keyer{h: sha256.New()}
	k.str(keyVersion)
	k.str(what)
	return k
}

func (k *keyer) str(s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	k.h.Write(n[:])
	k.h.Write([]byte(s))
}

func (k *keyer) strs(ss []string) {
	k.str(strconv.Itoa(len(ss)))
	for _, s := range ss {
		k.str(s)
	}
}

func (k *keyer) sum() string { return "sha256:" + hex.EncodeToString(k.h.Sum(nil)) }

// baseKey keys what a stage starts from: an image by reference and digest,
// a local image by path and digest, a stage by its key.
func baseKey(b Base, stages []Stage) string {
	k := newKeyer("base")
	k.str(string(b.Kind))
	switch b.Kind {
	case BaseStage:
		k.str(stages[b.Stage].Key)
	case BaseImage:
		k.str(b.Ref)
		k.str(b.Digest)
	case BaseLocal:
		k.str(b.Path)
		k.str(b.Digest)
	}
	return k.sum()
}

// stepKey is H(parent, the expanded instruction, the workdir, user and shell,
// the context files it reads: path, destination, type, mode, size, link
// target, content digest; or the key of the stage it copies from).
func stepKey(parent string, s *Step, stages []Stage) string {
	k := newKeyer("step")
	k.str(parent)
	k.str(string(s.Kind))
	k.strs(s.Args)
	k.strs(s.Command)
	// Env is not hashed: it follows from the base (its digest) and the
	// ENV and ARG steps before, whose values are in the parent key.
	k.str(s.Workdir)
	k.str(s.User)
	k.strs(s.Shell)
	cp := s.Copy
	if cp == nil {
		return k.sum()
	}
	k.str(strconv.Itoa(cp.FromStage))
	if cp.FromStage >= 0 {
		k.str(stages[cp.FromStage].Key)
	}
	k.strs(cp.Sources)
	k.str(cp.Dest)
	k.str(strconv.FormatBool(cp.DestDir))
	k.str(cp.Chown)
	k.str(strconv.FormatBool(cp.ChmodSet))
	k.str(cp.Chmod.String())
	k.str(strconv.Itoa(len(cp.Files)))
	for _, f := range cp.Files {
		k.strs([]string{f.Path, f.Dest, string(f.Type), f.Mode.String(), strconv.FormatInt(f.Size, 10), f.Link, f.Digest, string(f.Extract)})
	}
	return k.sum()
}
